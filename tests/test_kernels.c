/* kernels/: every reference op against an independent double-precision
 * computation on small cases, and every dispatching op against its reference
 * on random and odd shapes and strides, with guard values around the outputs.
 * Each test runs three times: with the fastest variants this CPU has (loop
 * index 0), with the instruction sets capped at AVX2 (1: the AVX2 variants on
 * an AVX-512 machine) and with the reference path forced (2). */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "tests/util.h"

/* Check's assertions each log a checkpoint, which dominates loops over
 * millions of elements: element loops use EXPECT, which only reports. */
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)
#define EXPECT_NEAR(got, want, tol)                                                                \
    EXPECT(fabs((double)(got) - (double)(want)) <= (tol), "%s = %.9g, want %.9g (tol %.3g)", #got, \
           (double)(got), (double)(want), (double)(tol))

#define GUARD 16
static const float k_sentinel = -12345.5f;

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float *alloc_f(int64_t n)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *random_f(int64_t n, float lo, float hi)
{
    float *p = alloc_f(n);
    ms_test_fill_uniform(p, n, lo, hi, &g_rng);
    return p;
}

static int64_t rand_int(int64_t lo, int64_t hi) /* inclusive */
{
    float u;
    ms_test_fill_uniform(&u, 1, 0, 1, &g_rng);
    int64_t v = lo + (int64_t)(u * (float)(hi - lo + 1));
    return v > hi ? hi : v;
}

/* An output of `rows` rows of `cols` floats with row stride ld, followed by
 * GUARD floats; everything starts as the sentinel. */
static float *guarded(int64_t rows, int64_t cols, int64_t ld)
{
    int64_t n = (rows ? (rows - 1) * ld + cols : 0) + GUARD;
    float *p = alloc_f(n);
    for (int64_t i = 0; i < n; i++) p[i] = k_sentinel;
    return p;
}

static void check_guards(const float *p, int64_t rows, int64_t cols, int64_t ld,
                         const char *what)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = cols; c < ld && r + 1 < rows; c++)
            EXPECT(p[r * ld + c] == k_sentinel, "%s: gap overwritten at row %lld col %lld",
                          what, (long long)r, (long long)c);
    int64_t end = rows ? (rows - 1) * ld + cols : 0;
    for (int64_t i = 0; i < GUARD; i++)
        EXPECT(p[end + i] == k_sentinel, "%s: overrun %lld past the end", what,
                      (long long)i);
}

/* |got - want| <= atol + rtol |want| on a rows x cols block with strides. */
static void check_close(const float *got, int64_t ldg, const float *want, int64_t ldw,
                        int64_t rows, int64_t cols, double atol, double rtol, const char *what)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double g = got[r * ldg + c], w = want[r * ldw + c];
            EXPECT(fabs(g - w) <= atol + rtol * fabs(w),
                          "%s: [%lld, %lld] got %.9g want %.9g", what, (long long)r,
                          (long long)c, g, w);
        }
}

static void set_mode(int mode)
{
    ms_kernels_cap_isa(mode == 1 ? MS_ISA_AVX2 : MS_ISA_AVX512);
    ms_kernels_force_reference(mode == 2);
}

/* ---- weights in every storage type ------------------------------------ */

/* A weight tensor holding `vals` (rows x cols) in dtype dt; `deq` receives
 * the values the kernels will actually see (rounded to f16, quantised). */
static ms_tensor *make_weight(ms_dtype dt, int ndim, const int64_t *shape, const float *vals,
                              float *deq)
{
    ms_tensor *t = ms_tensor_new(dt, ndim, shape);
    ck_assert_ptr_nonnull(t);
    int64_t rows = shape[0], n = ms_tensor_nelem(t), cols = n / rows;
    if (dt == MS_F32) {
        memcpy(t->data, vals, (size_t)n * sizeof(float));
        memcpy(deq, vals, (size_t)n * sizeof(float));
    } else if (dt == MS_F16 || dt == MS_BF16) {
        uint16_t *h = t->data;
        for (int64_t i = 0; i < n; i++) {
            h[i] = dt == MS_F16 ? ms_f32_to_f16(vals[i]) : ms_f32_to_bf16(vals[i]);
            deq[i] = dt == MS_F16 ? ms_f16_to_f32(h[i]) : ms_bf16_to_f32(h[i]);
        }
    } else {
        ck_assert_int_eq(dt, MS_Q8);
        ck_assert_int_eq(cols % MS_Q8_BLOCK, 0);
        uint8_t *p = t->data;
        for (int64_t b = 0; b < n / MS_Q8_BLOCK; b++, p += MS_Q8_BLOCK_BYTES) {
            const float *v = vals + b * MS_Q8_BLOCK;
            float amax = 0;
            for (int i = 0; i < MS_Q8_BLOCK; i++) amax = fmaxf(amax, fabsf(v[i]));
            float scale = amax / 127.0f;
            memcpy(p, &scale, 4);
            for (int i = 0; i < MS_Q8_BLOCK; i++) {
                int8_t q = (int8_t)(scale > 0 ? lrintf(v[i] / scale) : 0);
                p[4 + i] = (uint8_t)q;
                deq[b * MS_Q8_BLOCK + i] = (float)q * scale;
            }
        }
    }
    return t;
}

static const ms_dtype k_wtypes[] = {MS_F32, MS_F16, MS_Q8, MS_BF16};

/* ---- CPU features ------------------------------------------------------ */

START_TEST(test_cpu_features)
{
    const ms_cpu_features *f = ms_cpu();
    const char *d = ms_cpu_description();
    ck_assert_ptr_nonnull(d);
    ck_assert_int_gt(strlen(d), 3);
    ck_assert(strchr(d, '(') && d[strlen(d) - 1] == ')');
    /* Every extension listed in the description is flagged, and vice versa. */
    ck_assert_int_eq(strstr(d, "avx2") != NULL, f->avx2);
    ck_assert_int_eq(strstr(d, "avx512f") != NULL, f->avx512f);
    ck_assert_int_eq(strstr(d, "f16c") != NULL, f->f16c);
    if (f->avx512f) ck_assert(f->avx2 && f->fma);
    printf("kernels: %s\n", d);
}
END_TEST

/* ---- GEMM ---------------------------------------------------------------- */

static double op_at_d(const float *p, int64_t ld, int trans, int64_t r, int64_t c)
{
    return trans ? p[c * ld + r] : p[r * ld + c];
}

START_TEST(test_sgemm_ref_vs_double)
{
    set_mode(_i);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t m = 5, n = 7, k = 9;
            int64_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 3, ldc = n + 1;
            float *a = random_f((ta ? k : m) * lda, -1, 1);
            float *b = random_f((tb ? n : k) * ldb, -1, 1);
            float *c0 = random_f(m * ldc, -1, 1);
            float *c = guarded(m, n, ldc);
            for (int64_t i = 0; i < m; i++) memcpy(c + i * ldc, c0 + i * ldc, n * sizeof *c);
            ms_sgemm_ref(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, -0.5f, c, ldc);
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    double s = 0;
                    for (int64_t p = 0; p < k; p++)
                        s += op_at_d(a, lda, ta, i, p) * op_at_d(b, ldb, tb, p, j);
                    double want = 0.75 * s - 0.5 * c0[i * ldc + j];
                    EXPECT_NEAR(c[i * ldc + j], want, 1e-5);
                }
            check_guards(c, m, n, ldc, "sgemm_ref");
            /* beta = 0 never reads C: NaN there must not leak out. */
            for (int64_t i = 0; i < m; i++) c[i * ldc] = NAN;
            ms_sgemm_ref(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
            for (int64_t i = 0; i < m; i++) EXPECT(isfinite(c[i * ldc]), "NaN read from C");
            free(a), free(b), free(c0), free(c);
        }
}
END_TEST

static void sgemm_case(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                       float beta, int64_t pad)
{
    int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    float *a = random_f((ta ? k : m) * lda, -1, 1);
    float *b = random_f((tb ? n : k) * ldb, -1, 1);
    float *c = guarded(m, n, ldc), *want = guarded(m, n, ldc);
    for (int64_t i = 0; i < m; i++) {
        ms_test_fill_uniform(c + i * ldc, n, -1, 1, &g_rng);
        memcpy(want + i * ldc, c + i * ldc, n * sizeof *c);
        if (beta == 0) c[i * ldc] = NAN; /* must not be read */
    }
    ms_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    ms_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc);
    char what[96];
    snprintf(what, sizeof what, "sgemm ta=%d tb=%d %lldx%lldx%lld", ta, tb, (long long)m,
             (long long)n, (long long)k);
    check_close(c, ldc, want, ldc, m, n, 2e-6 * (double)k + 1e-6, 1e-5, what);
    check_guards(c, m, n, ldc, what);
    free(a), free(b), free(c), free(want);
}

START_TEST(test_sgemm_vs_ref)
{
    set_mode(_i);
    static const int64_t sizes[] = {1, 3, 7, 16, 33, 65, 127};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int s = 0; s < 7; s++) {
                int64_t m = sizes[s], n = sizes[(s + 3) % 7], k = sizes[(s + 5) % 7];
                sgemm_case(ta, tb, m, n, k, 1.0f, 0.0f, s % 3);
                sgemm_case(ta, tb, n, k, m, 0.5f, 1.0f, 1 + s % 2);
            }
    /* Decoder-like: few rows, wide. */
    sgemm_case(0, 1, 7, 256, 256, 1.0f, 0.0f, 0);
    sgemm_case(0, 0, 5, 128, 256, 1.0f, 1.0f, 4);
    /* ... wide enough that their columns are split over the pool */
    sgemm_case(0, 0, 7, 1000, 130, 1.0f, 1.0f, 1);
    sgemm_case(0, 1, 16, 2051, 77, 0.5f, 0.0f, 3);
    /* Several K slices, N blocks and M blocks of the blocked GEMM. */
    sgemm_case(0, 1, 197, 3100, 9, 1.0f, 0.0f, 1);
    sgemm_case(1, 0, 50, 70, 1700, 0.5f, 1.0f, 2);
    sgemm_case(0, 0, 401, 45, 800, 1.0f, 0.0f, 0);
    /* Few rows against an f32 B read in place (no packing), A transposed
     * in place with a packed last sliver, or A by rows; just past the
     * limit, the packed path. The decoder's probabilities^T image tokens. */
    sgemm_case(1, 0, 56, 256, 4096, 1.0f, 0.0f, 0);
    sgemm_case(1, 0, 43, 77, 1000, 0.5f, 1.0f, 3);
    sgemm_case(0, 0, 96, 45, 800, 1.0f, 1.0f, 1);
    sgemm_case(1, 0, 97, 33, 900, 1.0f, 0.0f, 2);
    /* One to three rows by 16-column dots (the decoder's masks), short k. */
    sgemm_case(0, 1, 1, 1000, 32, 1.0f, 0.0f, 0);
    sgemm_case(0, 1, 3, 2051, 32, 0.5f, 1.0f, 1);
    sgemm_case(0, 1, 2, 37, 45, 1.0f, 0.0f, 2);
    /* Narrow C, A read in place: an odd row count, K split in slices. */
    sgemm_case(0, 0, 1037, 56, 130, 1.0f, 0.0f, 1);
    sgemm_case(0, 1, 203, 128, 1555, 0.5f, 1.0f, 2);
    for (int r = 0; r < 20; r++)
        sgemm_case((int)rand_int(0, 1), (int)rand_int(0, 1), rand_int(1, 40), rand_int(1, 300),
                   rand_int(1, 200), 1.0f, (float)rand_int(0, 1), rand_int(0, 5));
}
END_TEST

typedef struct gemm_job {
    float *a, *b, *c;
    int64_t m, n, k;
} gemm_job;

static void *gemm_thread(void *p)
{
    gemm_job *j = p;
    for (int r = 0; r < 4; r++)
        ms_sgemm(0, 1, j->m, j->n, j->k, 1.0f, j->a, j->k, j->b, j->k, 0.0f, j->c, j->n);
    return NULL;
}

START_TEST(test_sgemm_concurrent)
{
    set_mode(_i);
    /* Two threads inside ms_sgemm at once: one gets the blocked GEMM's pool,
     * the other falls back; both answers must be right. Then a pool resize. */
    enum { M = 150, N = 130, K = 300 };
    gemm_job jobs[2];
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        jobs[t] =
            (gemm_job){random_f(M * K, -1, 1), random_f(N * K, -1, 1), alloc_f(M * N), M, N, K};
        ck_assert_int_eq(pthread_create(&th[t], NULL, gemm_thread, &jobs[t]), 0);
    }
    float *want = alloc_f(M * N);
    for (int t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
        ms_sgemm_ref(0, 1, M, N, K, 1.0f, jobs[t].a, K, jobs[t].b, K, 0.0f, want, N);
        check_close(jobs[t].c, N, want, N, M, N, 1e-4, 1e-5, "concurrent sgemm");
    }
    ms_kernels_set_threads(2);
    gemm_thread(&jobs[0]);
    ms_sgemm_ref(0, 1, M, N, K, 1.0f, jobs[0].a, K, jobs[0].b, K, 0.0f, want, N);
    check_close(jobs[0].c, N, want, N, M, N, 1e-4, 1e-5, "sgemm after resize");
    ms_kernels_set_threads(3);
    for (int t = 0; t < 2; t++) free(jobs[t].a), free(jobs[t].b), free(jobs[t].c);
    free(want);
}
END_TEST

/* ---- weights and linear ---------------------------------------------------- */

START_TEST(test_weight_row_and_q8_layout)
{
    set_mode(_i);
    /* q8: block = f32 scale, then 32 int8; value = q * scale. */
    int64_t shape[2] = {2, 64};
    ms_tensor *t = ms_tensor_new(MS_Q8, 2, shape);
    uint8_t *p = t->data;
    for (int b = 0; b < 4; b++) {
        float scale = 0.5f * (float)(b + 1);
        memcpy(p + b * MS_Q8_BLOCK_BYTES, &scale, 4);
        for (int i = 0; i < MS_Q8_BLOCK; i++)
            p[b * MS_Q8_BLOCK_BYTES + 4 + i] = (uint8_t)(int8_t)(i - 16 + b);
    }
    float row[64];
    ms_weight_row_f32(row, t, 1); /* blocks 2 and 3 */
    for (int i = 0; i < 64; i++) {
        int b = 2 + i / 32;
        ck_assert_float_eq(row[i], (float)(i % 32 - 16 + b) * 0.5f * (float)(b + 1));
    }
    ms_tensor_free(t);
    /* f16 and a 4-D weight: rows are everything but the first dim. */
    int64_t s4[4] = {3, 2, 2, 3};
    float vals[36], deq[36];
    ms_test_fill_uniform(vals, 36, -2, 2, &g_rng);
    ms_tensor *h = make_weight(MS_F16, 4, s4, vals, deq);
    float r12[12];
    ms_weight_row_f32(r12, h, 2);
    for (int i = 0; i < 12; i++) {
        ck_assert_float_eq(r12[i], deq[24 + i]);
        ck_assert_float_eq_tol(r12[i], vals[24 + i], 2e-3);
    }
    ms_tensor_free(h);
}
END_TEST

/* x/2 (1 + erf(x / sqrt 2)), written with erfc so the negative tail keeps
 * its relative accuracy in double too. */
static double gelu_d(double x)
{
    return 0.5 * x * erfc(-x / sqrt(2.0));
}

static double epi_d(double v, ms_epilogue e)
{
    if (e == MS_EPI_GELU) return gelu_d(v);
    if (e == MS_EPI_RELU) return v > 0 ? v : 0;
    return v;
}

START_TEST(test_linear_ref_vs_double)
{
    set_mode(_i);
    for (int t = 0; t < 4; t++)
        for (int e = 0; e < 3; e++)
            for (int acc = 0; acc < 2; acc++) {
                int64_t m = 3, n = 5, k = 64, ldx = k + 3, ldy = n + 2;
                int64_t shape[2] = {n, k};
                float *wv = random_f(n * k, -1, 1), *deq = alloc_f(n * k);
                ms_tensor *w = make_weight(k_wtypes[t], 2, shape, wv, deq);
                float *x = random_f(m * ldx, -1, 1), *bias = random_f(n, -1, 1);
                float *y = guarded(m, n, ldy), *y0 = random_f(m * ldy, -1, 1);
                for (int64_t i = 0; i < m; i++) memcpy(y + i * ldy, y0 + i * ldy, n * sizeof *y);
                ms_linear_ref(y, ldy, x, ldx, m, w, bias, (ms_epilogue)e, acc);
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double s = bias[j] + (acc ? y0[i * ldy + j] : 0);
                        for (int64_t p = 0; p < k; p++)
                            s += (double)x[i * ldx + p] * deq[j * k + p];
                        EXPECT_NEAR(y[i * ldy + j], epi_d(s, (ms_epilogue)e), 1e-5);
                    }
                check_guards(y, m, n, ldy, "linear_ref");
                ms_tensor_free(w);
                free(wv), free(deq), free(x), free(bias), free(y), free(y0);
            }
}
END_TEST

static void linear_case(ms_dtype dt, int64_t m, int64_t n, int64_t k, int64_t pad,
                        ms_epilogue epi, int acc, int with_bias)
{
    int64_t ldx = k + pad, ldy = n + pad;
    int64_t shape[2] = {n, k};
    float *wv = random_f(n * k, -1, 1), *deq = alloc_f(n * k);
    ms_tensor *w = make_weight(dt, 2, shape, wv, deq);
    float *x = random_f(m * ldx, -1, 1), *bias = with_bias ? random_f(n, -1, 1) : NULL;
    float *y = guarded(m, n, ldy), *want = guarded(m, n, ldy);
    for (int64_t i = 0; i < m; i++) {
        ms_test_fill_uniform(y + i * ldy, n, -1, 1, &g_rng);
        memcpy(want + i * ldy, y + i * ldy, n * sizeof *y);
    }
    size_t sb = ms_linear_scratch_bytes(w, m);
    void *scratch = sb ? malloc(sb) : NULL;
    ms_linear(y, ldy, x, ldx, m, w, bias, epi, acc, scratch);
    ms_linear_ref(want, ldy, x, ldx, m, w, bias, epi, acc);
    char what[96];
    snprintf(what, sizeof what, "linear %s %lldx%lldx%lld epi=%d acc=%d", ms_dtype_name(dt),
             (long long)m, (long long)n, (long long)k, (int)epi, acc);
    check_close(y, ldy, want, ldy, m, n, 2e-6 * (double)k + 1e-6, 1e-5, what);
    check_guards(y, m, n, ldy, what);
    ms_tensor_free(w);
    free(scratch), free(wv), free(deq), free(x), free(bias), free(y), free(want);
}

START_TEST(test_linear_vs_ref)
{
    set_mode(_i);
    static const int64_t ms[] = {1, 3, 7, 16, 33, 65};
    static const int64_t ns[] = {1, 3, 7, 33, 127, 300};
    static const int64_t ks[] = {32, 64, 96, 160, 256, 288};
    for (int t = 0; t < 4; t++)
        for (int s = 0; s < 6; s++)
            for (int e = 0; e < 3; e++)
                linear_case(k_wtypes[t], ms[s], ns[(s + e) % 6], ks[(s + 2 * e) % 6], (s + e) % 3,
                            (ms_epilogue)e, (s + e) % 2, s != 2);
    /* f32 weights also take row lengths that are no multiple of the q8 block. */
    linear_case(MS_F32, 5, 9, 7, 1, MS_EPI_GELU, 0, 1);
    linear_case(MS_F16, 4, 9, 3, 2, MS_EPI_RELU, 1, 1);
    linear_case(MS_F16, 70, 600, 45, 0, MS_EPI_NONE, 0, 1);
    /* K slices (q8 slices must start on a block), M blocks, N blocks. */
    linear_case(MS_Q8, 30, 40, 1600, 1, MS_EPI_GELU, 1, 1);
    linear_case(MS_F16, 200, 20, 800, 0, MS_EPI_RELU, 0, 1);
    linear_case(MS_F32, 20, 3200, 16, 2, MS_EPI_GELU, 0, 1);
    linear_case(MS_BF16, 200, 9, 900, 1, MS_EPI_NONE, 1, 0);
    /* Few rows with enough weights that the columns are split over the
     * pool, widths no multiple of the split. */
    linear_case(MS_Q8, 7, 1030, 96, 0, MS_EPI_RELU, 1, 1);
    linear_case(MS_F16, 16, 517, 256, 1, MS_EPI_GELU, 0, 1);
    linear_case(MS_F32, 3, 2049, 64, 2, MS_EPI_NONE, 1, 1);
}
END_TEST

/* ---- normalisation and activations ------------------------------------- */

static void layernorm_d(double *out, const float *x, int64_t stride, int64_t dim,
                        const float *g, const float *b, double eps)
{
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; i++) mean += x[i * stride];
    mean /= (double)dim;
    for (int64_t i = 0; i < dim; i++) var += (x[i * stride] - mean) * (x[i * stride] - mean);
    var /= (double)dim;
    for (int64_t i = 0; i < dim; i++)
        out[i] = (x[i * stride] - mean) / sqrt(var + eps) * g[i] + b[i];
}

START_TEST(test_layernorm_ref_vs_double)
{
    set_mode(_i);
    int64_t rows = 4, dim = 37, ldx = 40, ldy = 41;
    float *x = random_f(rows * ldx, 3, 5); /* mean far from 0 */
    float *g = random_f(dim, 0.5f, 1.5f), *b = random_f(dim, -1, 1);
    float *y = guarded(rows, dim, ldy);
    double want[37];
    ms_layernorm_ref(y, ldy, x, ldx, rows, dim, g, b, 1e-6f);
    for (int64_t r = 0; r < rows; r++) {
        layernorm_d(want, x + r * ldx, 1, dim, g, b, 1e-6);
        for (int64_t i = 0; i < dim; i++) EXPECT_NEAR(y[r * ldy + i], want[i], 2e-5);
    }
    check_guards(y, rows, dim, ldy, "layernorm_ref");
    /* LayerNorm2d: channel-first, normalised per pixel over channels. */
    int64_t c = 19, hw = 13;
    float *xc = random_f(c * hw, -2, 4), *gc = random_f(c, 0.5f, 1.5f), *bc = random_f(c, -1, 1);
    float *yc = guarded(1, c * hw, c * hw);
    double wc[19];
    ms_layernorm_channels_ref(yc, xc, c, hw, gc, bc, 1e-6f);
    for (int64_t p = 0; p < hw; p++) {
        layernorm_d(wc, xc + p, hw, c, gc, bc, 1e-6);
        for (int64_t i = 0; i < c; i++) EXPECT_NEAR(yc[i * hw + p], wc[i], 2e-5);
    }
    check_guards(yc, 1, c * hw, c * hw, "layernorm_channels_ref");
    free(x), free(g), free(b), free(y), free(xc), free(gc), free(bc), free(yc);
}
END_TEST

START_TEST(test_layernorm_vs_ref)
{
    set_mode(_i);
    static const int64_t dims[] = {1, 3, 7, 16, 33, 65, 127, 256, 768};
    for (int s = 0; s < 9; s++) {
        int64_t dim = dims[s], rows = rand_int(1, 9), ldx = dim + s % 3, ldy = dim + (s + 1) % 3;
        float *x = random_f(rows * ldx, -3, 5);
        float *g = random_f(dim, 0.5f, 1.5f), *b = random_f(dim, -1, 1);
        float *y = guarded(rows, dim, ldy), *want = guarded(rows, dim, ldy);
        ms_layernorm(y, ldy, x, ldx, rows, dim, g, b, 1e-6f);
        ms_layernorm_ref(want, ldy, x, ldx, rows, dim, g, b, 1e-6f);
        check_close(y, ldy, want, ldy, rows, dim, 1e-5, 1e-5, "layernorm");
        check_guards(y, rows, dim, ldy, "layernorm");
        free(x), free(g), free(b), free(y), free(want);
    }
    static const int64_t cs[] = {1, 3, 16, 33, 256};
    static const int64_t hws[] = {1, 7, 64, 127, 4096};
    for (int s = 0; s < 5; s++)
        for (int t = 0; t < 5; t++) {
            int64_t c = cs[s], hw = hws[(s + t) % 5];
            float *x = random_f(c * hw, -2, 4);
            float *g = random_f(c, 0.5f, 1.5f), *b = random_f(c, -1, 1);
            float *y = guarded(1, c * hw, c * hw), *want = guarded(1, c * hw, c * hw);
            ms_layernorm_channels(y, x, c, hw, g, b, 1e-6f);
            ms_layernorm_channels_ref(want, x, c, hw, g, b, 1e-6f);
            check_close(y, 0, want, 0, 1, c * hw, 1e-5, 1e-5, "layernorm_channels");
            check_guards(y, 1, c * hw, c * hw, "layernorm_channels");
            ms_layernorm_channels(x, x, c, hw, g, b, 1e-6f); /* in place */
            check_close(x, 0, want, 0, 1, c * hw, 1e-5, 1e-5, "layernorm_channels in place");
            free(x), free(g), free(b), free(y), free(want);
        }
}
END_TEST

START_TEST(test_layernorm_in_place)
{
    set_mode(_i);
    int64_t rows = 5, dim = 771, ld = 780;
    float *x = random_f(rows * ld, -3, 5), *want = guarded(rows, dim, ld);
    float *g = random_f(dim, 0.5f, 1.5f), *b = random_f(dim, -1, 1);
    ms_layernorm_ref(want, ld, x, ld, rows, dim, g, b, 1e-6f);
    ms_layernorm(x, ld, x, ld, rows, dim, g, b, 1e-6f);
    check_close(x, ld, want, ld, rows, dim, 1e-5, 1e-5, "layernorm in place");
    free(x), free(want), free(g), free(b);
}
END_TEST

/* LayerNorm with the fused output stage: the reference against LayerNorm,
 * activation and add in double, for every epilogue, with and without y2. */
START_TEST(test_layernorm_ex_ref_vs_double)
{
    set_mode(_i);
    int64_t rows = 4, dim = 37, ldx = 40, ldy = 41, lda = 39, ld2 = 43;
    float *x = random_f(rows * ldx, 3, 5), *add = random_f(rows * lda, -2, 2);
    float *g = random_f(dim, 0.5f, 1.5f), *b = random_f(dim, -1, 1);
    double want[37];
    for (int e = 0; e < 3; e++)
        for (int with_y2 = 0; with_y2 < 2; with_y2++) {
            float *y = guarded(rows, dim, ldy), *y2 = guarded(rows, dim, ld2);
            ms_ln_out o = {(ms_epilogue)e, add, lda, with_y2 ? y2 : NULL, ld2};
            ms_layernorm_ex_ref(y, ldy, x, ldx, rows, dim, g, b, 1e-6f, &o);
            for (int64_t r = 0; r < rows; r++) {
                layernorm_d(want, x + r * ldx, 1, dim, g, b, 1e-6);
                for (int64_t i = 0; i < dim; i++) {
                    double w = epi_d(want[i], (ms_epilogue)e);
                    EXPECT_NEAR(y[r * ldy + i], w, 2e-5);
                    if (with_y2) EXPECT_NEAR(y2[r * ld2 + i], w + add[r * lda + i], 2e-5);
                }
            }
            check_guards(y, rows, dim, ldy, "layernorm_ex_ref");
            check_guards(y2, rows, dim, ld2, "layernorm_ex_ref y2");
            free(y), free(y2);
        }
    free(x), free(add), free(g), free(b);
}
END_TEST

/* A guarded buffer (see guarded) whose rows hold uniform values in [lo, hi). */
static float *guarded_random(int64_t rows, int64_t cols, int64_t ld, float lo, float hi)
{
    float *p = guarded(rows, cols, ld);
    for (int64_t r = 0; r < rows; r++) ms_test_fill_uniform(p + r * ld, cols, lo, hi, &g_rng);
    return p;
}

/* How ms_layernorm_ex's outputs share memory in a case. */
enum { LN_APART, LN_Y_OVER_X, LN_Y2_OVER_ADD };

/* ms_layernorm_ex against its reference; strides past dim, guards around y
 * and y2. With LN_Y2_OVER_ADD both read add from y2's buffer (a copy each). */
static void layernorm_ex_case(int64_t rows, int64_t dim, ms_epilogue epi, int with_y2, int alias)
{
    int over = alias == LN_Y2_OVER_ADD;
    int64_t ldx = dim + 3, ldy = alias == LN_Y_OVER_X ? ldx : dim + 5;
    int64_t ld2 = dim + 7, lda = over ? ld2 : dim + 2;
    float *x = guarded_random(rows, dim, ldx, -3, 5), *g = random_f(dim, 0.5f, 1.5f);
    float *b = random_f(dim, -1, 1), *add = guarded_random(rows, dim, lda, -2, 2);
    float *y = alias == LN_Y_OVER_X ? x : guarded(rows, dim, ldy), *want = guarded(rows, dim, ldy);
    float *y2 = guarded(rows, dim, ld2), *want2 = guarded(rows, dim, ld2);
    if (over) {
        size_t bytes = (size_t)((rows - 1) * ld2 + dim + GUARD) * sizeof *y2;
        memcpy(y2, add, bytes);
        memcpy(want2, add, bytes);
    }
    ms_ln_out o = {epi, over ? y2 : add, lda, with_y2 ? y2 : NULL, ld2};
    ms_ln_out oref = {epi, over ? want2 : add, lda, with_y2 ? want2 : NULL, ld2};
    ms_layernorm_ex_ref(want, ldy, x, ldx, rows, dim, g, b, 1e-6f, &oref);
    ms_layernorm_ex(y, ldy, x, ldx, rows, dim, g, b, 1e-6f, &o);
    char what[96];
    snprintf(what, sizeof what, "layernorm_ex %lldx%lld epi=%d y2=%d alias=%d", (long long)rows,
             (long long)dim, (int)epi, with_y2, alias);
    check_close(y, ldy, want, ldy, rows, dim, 1e-5, 1e-5, what);
    check_guards(y, rows, dim, ldy, what);
    check_close(y2, ld2, want2, ld2, rows, dim, 1e-5, 1e-5, what);
    check_guards(y2, rows, dim, ld2, what);
    if (y != x) free(y);
    free(x), free(g), free(b), free(add), free(want), free(y2), free(want2);
}

START_TEST(test_layernorm_ex_vs_ref)
{
    set_mode(_i);
    static const int64_t rows[] = {1, 3, 37};
    static const int64_t dims[] = {1, 7, 31, 64, 100, 256};
    for (int r = 0; r < 3; r++)
        for (int d = 0; d < 6; d++)
            for (int e = 0; e < 3; e++)
                for (int with_y2 = 0; with_y2 < 2; with_y2++)
                    for (int alias = LN_APART; alias <= (with_y2 ? LN_Y2_OVER_ADD : LN_Y_OVER_X);
                         alias++)
                        layernorm_ex_case(rows[r], dims[d], (ms_epilogue)e, with_y2, alias);
}
END_TEST

START_TEST(test_gelu)
{
    set_mode(_i);
    /* Reference vs GELU in double (gelu_d) over the range that matters and
     * the tails, to a few float ulps relative. */
    int64_t n = 20001;
    float *x = alloc_f(n), *y = alloc_f(n), *r = alloc_f(n);
    for (int64_t i = 0; i < n; i++) x[i] = -10.0f + 20.0f * (float)i / (float)(n - 1);
    memcpy(r, x, n * sizeof *x);
    ms_gelu_ref(r, n);
    for (int64_t i = 0; i < n; i++)
        EXPECT_NEAR(r[i], gelu_d(x[i]), 5e-7 * fabs(gelu_d(x[i])) + 1e-37);
    /* The fast version vs the reference: 1e-6 relative (plus a tiny absolute
     * floor for the deep negative tail, where GELU underflows to ~0). */
    static const int64_t lens[] = {1, 3, 7, 15, 16, 17, 33, 65, 127, 20001};
    for (int s = 0; s < 10; s++) {
        int64_t len = lens[s];
        float *g = guarded(1, len, len);
        memcpy(g, x + (n - len) / 2, len * sizeof *g);
        memcpy(y, g, len * sizeof *g);
        ms_gelu(g, len);
        ms_gelu_ref(y, len);
        check_close(g, 0, y, 0, 1, len, 1e-9, 1e-6, "gelu");
        check_guards(g, 1, len, len, "gelu");
        free(g);
    }
    float ext[6] = {0.0f, -0.0f, 1e-20f, -40.0f, 40.0f, 3e38f};
    ms_gelu(ext, 6);
    ck_assert_float_eq(ext[0], 0.0f);
    ck_assert_float_eq(ext[1], 0.0f);
    ck_assert_float_eq_tol(ext[2], 0.5e-20f, 1e-26f);
    ck_assert_float_eq(ext[3], 0.0f);
    ck_assert_float_eq(ext[4], 40.0f);
    ck_assert_float_eq(ext[5], 3e38f);
    float rl[5] = {-1.0f, 0.0f, 2.5f, -0.0f, 1e-30f};
    ms_relu(rl, 5);
    ck_assert_float_eq(rl[0], 0.0f);
    ck_assert_float_eq(rl[2], 2.5f);
    ck_assert_float_eq(rl[4], 1e-30f);
    float ya[3] = {1, 2, 3}, xa[3] = {0.5f, -2, 4};
    ms_add(ya, ya, xa, 3);
    ck_assert_float_eq(ya[0], 1.5f);
    ck_assert_float_eq(ya[1], 0.0f);
    ck_assert_float_eq(ya[2], 7.0f);
    float sa[3];
    ms_add(sa, xa, ya, 3);
    ck_assert_float_eq(sa[0], 2.0f);
    ck_assert_float_eq(sa[1], -2.0f);
    ck_assert_float_eq(sa[2], 11.0f);
    free(x), free(y), free(r);
}
END_TEST

/* One softmax case along rows (each row of n) or columns (each column of
 * rows): the reference against double, the dispatched kernel against the
 * reference, guards intact. */
static void softmax_case(int64_t rows, int64_t n, int64_t ld, int by_cols)
{
    const char *what = by_cols ? "softmax cols" : "softmax";
    float *x = random_f(rows * ld, -20, 20), *orig = alloc_f(rows * ld);
    float *y = guarded(rows, n, ld);
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * ld, x + r * ld, n * sizeof *x);
    memcpy(orig, x, rows * ld * sizeof *x);
    (by_cols ? ms_softmax_cols_ref : ms_softmax_rows_ref)(x, rows, n, ld);
    (by_cols ? ms_softmax_cols : ms_softmax_rows)(y, rows, n, ld);
    /* group g: len values, step apart, from g * gstep */
    int64_t groups = by_cols ? n : rows, len = by_cols ? rows : n;
    int64_t step = by_cols ? ld : 1, gstep = by_cols ? 1 : ld;
    for (int64_t g = 0; g < groups; g++) {
        const float *o = orig + g * gstep;
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < len; i++) mx = fmax(mx, o[i * step]);
        for (int64_t i = 0; i < len; i++) sum += exp(o[i * step] - mx);
        for (int64_t i = 0; i < len; i++) {
            double want = exp(o[i * step] - mx) / sum;
            EXPECT_NEAR(x[g * gstep + i * step], want, 1e-5 * want + 1e-9);
        }
    }
    check_close(y, ld, x, ld, rows, n, 1e-9, 1e-5, what);
    check_guards(y, rows, n, ld, what);
    free(x), free(orig), free(y);
}

START_TEST(test_softmax)
{
    set_mode(_i);
    static const int64_t ns[] = {1, 3, 7, 16, 33, 65, 127, 196, 4096};
    for (int s = 0; s < 9; s++) softmax_case(rand_int(1, 6), ns[s], ns[s] + s % 4, 0);
}
END_TEST

START_TEST(test_softmax_cols)
{
    set_mode(_i);
    static const int64_t ns[] = {1, 3, 8, 17, 56, 57, 130};
    static const int64_t rs[] = {1, 7, 2, 300, 4096, 5, 33};
    for (int s = 0; s < 7; s++) softmax_case(rs[s], ns[s], ns[s] + s % 4, 1);
}
END_TEST

/* ---- attention ------------------------------------------------------------ */

typedef struct attn_buf {
    ms_attn a;
    float *q, *k, *v, *bh, *bw, *out;
} attn_buf;

static attn_buf attn_make(int64_t nq, int64_t nk, int64_t d, int64_t kh, int with_bias,
                          int64_t pad)
{
    attn_buf b;
    memset(&b, 0, sizeof b);
    ms_attn *a = &b.a;
    a->nq = nq, a->nk = nk, a->d = d;
    a->ldq = d + pad, a->ldk = d + 2 * pad, a->ldv = d + 3 * pad, a->ldo = d + pad;
    a->scale = 1.0f / sqrtf((float)d);
    b.q = random_f(nq * a->ldq, -2, 2);
    b.k = random_f(nk * a->ldk, -2, 2);
    b.v = random_f(nk * a->ldv, -1, 1);
    b.out = guarded(nq, d, a->ldo);
    a->q = b.q, a->k = b.k, a->v = b.v, a->out = b.out;
    if (with_bias) {
        a->kh = kh, a->kw = nk / kh;
        b.bh = random_f(nq * a->kh, -3, 3);
        b.bw = random_f(nq * a->kw, -3, 3);
        a->bias_h = b.bh, a->bias_w = b.bw;
    }
    return b;
}

static void attn_free(attn_buf *b)
{
    free(b->q), free(b->k), free(b->v), free(b->bh), free(b->bw), free(b->out);
}

START_TEST(test_attention_ref_vs_double)
{
    set_mode(_i);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        int64_t nq = 6, nk = 12, d = 5, kh = 3, kw = 4;
        attn_buf b = attn_make(nq, nk, d, kh, with_bias, 1);
        ms_attn *a = &b.a;
        float *scratch = alloc_f((int64_t)ms_attention_scratch_floats(a));
        ms_attention_ref(a, 0, nq, scratch);
        /* The explicit nq x nk probability matrix, in double. */
        double p[6][12];
        for (int64_t i = 0; i < nq; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < nk; j++) {
                double s = 0;
                for (int64_t t = 0; t < d; t++)
                    s += (double)b.q[i * a->ldq + t] * b.k[j * a->ldk + t];
                s *= a->scale;
                if (with_bias) s += (double)b.bh[i * kh + j / kw] + b.bw[i * kw + j % kw];
                p[i][j] = s;
                mx = fmax(mx, s);
            }
            for (int64_t j = 0; j < nk; j++) sum += p[i][j] = exp(p[i][j] - mx);
            for (int64_t j = 0; j < nk; j++) p[i][j] /= sum;
            for (int64_t t = 0; t < d; t++) {
                double o = 0;
                for (int64_t j = 0; j < nk; j++) o += p[i][j] * b.v[j * a->ldv + t];
                EXPECT_NEAR(b.out[i * a->ldo + t], o, 1e-5);
            }
        }
        check_guards(b.out, nq, d, a->ldo, "attention_ref");
        free(scratch);
        attn_free(&b);
    }
}
END_TEST

typedef void attn_fn(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch);

/* fn (ms_attention or one of its variants) against ms_attention_ref on rows
 * [q0, q1) of nq, with strides from pad, in a scratch of exactly
 * ms_attention_scratch_floats(). */
static void attention_case_fn(attn_fn *fn, const char *name, int64_t nq, int64_t nk, int64_t d,
                              int64_t kh, int with_bias, int64_t pad, int64_t q0, int64_t q1)
{
    attn_buf b = attn_make(nq, nk, d, kh, with_bias, pad);
    ms_attn *a = &b.a;
    float *want = guarded(nq, d, a->ldo);
    float *scratch = alloc_f((int64_t)ms_attention_scratch_floats(a));
    fn(a, q0, q1, scratch);
    a->out = want;
    ms_attention_ref(a, q0, q1, scratch);
    char what[128];
    snprintf(what, sizeof what, "%s nq=%lld nk=%lld d=%lld bias=%d pad=%lld rows %lld..%lld",
             name, (long long)nq, (long long)nk, (long long)d, with_bias, (long long)pad,
             (long long)q0, (long long)q1);
    check_close(b.out + q0 * a->ldo, a->ldo, want + q0 * a->ldo, a->ldo, q1 - q0, d, 2e-6, 1e-5,
                what);
    /* Rows outside [q0, q1) and everything around the output stay untouched. */
    for (int64_t i = 0; i < nq; i++)
        for (int64_t t = 0; t < d && (i < q0 || i >= q1); t++)
            EXPECT(b.out[i * a->ldo + t] == k_sentinel, "%s: row %lld written", what,
                          (long long)i);
    check_guards(b.out, nq, d, a->ldo, what);
    free(want), free(scratch);
    attn_free(&b);
}

static void attention_case(int64_t nq, int64_t nk, int64_t d, int64_t kh, int with_bias,
                           int64_t pad, int64_t q0, int64_t q1)
{
    attention_case_fn(ms_attention, "attention", nq, nk, d, kh, with_bias, pad, q0, q1);
}

START_TEST(test_attention_vs_ref)
{
    set_mode(_i);
    /* Encoder window (14 x 14 keys, rel-pos bias), also split in query ranges. */
    attention_case(196, 196, 64, 14, 1, 0, 0, 196);
    attention_case(196, 196, 64, 14, 1, 3, 17, 101);
    /* Tiny encoder heads (d = 32) and a global-like grid. */
    attention_case(100, 100, 32, 10, 1, 1, 0, 100);
    attention_case(40, 1024, 64, 32, 1, 0, 5, 40);
    /* Decoder: tokens to image, image to tokens, tokens to tokens. */
    attention_case(7, 4096, 16, 1, 0, 0, 0, 7);
    attention_case(4096, 7, 16, 1, 0, 2, 0, 4096);
    attention_case(7, 7, 32, 1, 0, 0, 0, 7);
    attention_case(12, 256, 128, 1, 0, 1, 0, 12);
    /* Odd shapes. */
    static const int64_t odd[] = {1, 3, 7, 33, 65, 127};
    for (int s = 0; s < 6; s++)
        for (int t = 0; t < 6; t++) {
            int64_t nq = odd[s], nk = odd[t], d = odd[(s + t) % 6] % 80 + 1;
            attention_case(nq, nk, d, 1, t % 2, (s + t) % 3, nq / 3, nq);
            attention_case(nq, nk * 3, d, 3, 1, 1, 0, nq);
        }
    attention_case(5, 3, 1, 3, 1, 0, 0, 5);
}
END_TEST

START_TEST(test_attention_extreme_logits)
{
    set_mode(_i);
    /* Large logits and biases: the online softmax must rescale, not overflow. */
    attn_buf b = attn_make(9, 300, 24, 10, 1, 0);
    ms_attn *a = &b.a;
    a->scale = 40.0f;
    for (int64_t i = 0; i < 9 * 10; i++) b.bh[i] *= 100.0f;
    float *want = guarded(9, 24, a->ldo);
    float *scratch = alloc_f((int64_t)ms_attention_scratch_floats(a));
    ms_attention(a, 0, 9, scratch);
    a->out = want;
    ms_attention_ref(a, 0, 9, scratch);
    for (int64_t i = 0; i < 9 * 24; i++)
        EXPECT(isfinite(b.out[i]), "out[%lld] = %g", (long long)i, b.out[i]);
    check_close(b.out, a->ldo, want, a->ldo, 9, 24, 1e-5, 1e-4, "attention extreme");
    free(want), free(scratch);
    attn_free(&b);
}
END_TEST

/* The few-query variant this mode runs for head dim d, or NULL (reference
 * mode, or d not a multiple of the variant's lanes). */
static attn_fn *few_variant(int64_t d)
{
    if (ms_use_avx512()) return d % 16 == 0 ? ms_attention_few_avx512 : NULL;
    if (ms_use_avx2()) return d % 8 == 0 ? ms_attention_few_avx2 : NULL;
    return NULL;
}

/* A few queries without bias: the few-query variant itself and ms_attention,
 * which should pick it (or fall back, for d = 12 and, with AVX-512, d = 8),
 * each against the reference. */
static void few_case(int64_t rows, int64_t nk, int64_t d, int64_t pad, int64_t q0)
{
    attn_fn *few = few_variant(d);
    if (few) attention_case_fn(few, "attention_few", q0 + rows, nk, d, 1, 0, pad, q0, q0 + rows);
    attention_case(q0 + rows, nk, d, 1, 0, pad, q0, q0 + rows);
}

START_TEST(test_attention_few_vs_ref)
{
    set_mode(_i);
    /* The decoder's token-to-image attention: 7 tokens, 4096 keys, d 16. */
    few_case(7, 4096, 16, 112, 0);
    static const int64_t ds[] = {16, 32, 8, 12};
    static const int64_t short_nk[] = {1, 5, 17, 257};
    for (int di = 0; di < 4; di++) {
        for (int64_t rows = 1; rows <= MS_ATTN_FEW_Q; rows++)
            for (int ki = 0; ki < 4; ki++)
                few_case(rows, short_nk[ki], ds[di], (rows + ki) % 3, rows % 4 == 1 ? 3 : 0);
        static const int64_t long_rows[] = {1, 7, 9, 16};
        static const int64_t long_nk[] = {256, 4096, 4099};
        for (int r = 0; r < 4; r++)
            for (int ki = 0; ki < 3; ki++)
                few_case(long_rows[r], long_nk[ki], ds[di], 1 + ki, r == 2 ? 5 : 0);
    }
}
END_TEST

START_TEST(test_attention_few_extreme_logits)
{
    set_mode(_i);
    /* Logits in the hundreds, their maximum moving from key block to key
     * block: the running max must rescale, not overflow. */
    attn_buf b = attn_make(6, 700, 16, 1, 0, 2);
    ms_attn *a = &b.a;
    a->scale = 40.0f;
    for (int64_t j = 0; j < 700; j++) b.k[j * a->ldk] *= 1.0f + (float)j / 100.0f;
    float *want = guarded(6, 16, a->ldo);
    float *scratch = alloc_f((int64_t)ms_attention_scratch_floats(a));
    attn_fn *fn = few_variant(16) ? few_variant(16) : ms_attention;
    fn(a, 1, 6, scratch);
    a->out = want;
    ms_attention_ref(a, 1, 6, scratch);
    for (int64_t i = 1; i < 6; i++)
        for (int64_t t = 0; t < 16; t++)
            EXPECT(isfinite(b.out[i * a->ldo + t]), "out[%lld][%lld] = %g", (long long)i,
                   (long long)t, b.out[i * a->ldo + t]);
    check_close(b.out + a->ldo, a->ldo, want + a->ldo, a->ldo, 5, 16, 1e-5, 1e-4,
                "attention_few extreme");
    check_guards(b.out, 6, 16, a->ldo, "attention_few extreme");
    free(want), free(scratch);
    attn_free(&b);
}
END_TEST

/* ---- relative-position terms ------------------------------------------------ */

/* get_rel_pos for equal query and key sizes, in double: R[i][j] (d values)
 * = rel[(q_i - k_j) + (side - 1)] with q_i = i, k_j = j. */
static double *rel_pos_table(const float *rel, int64_t side, int64_t d)
{
    double *r = malloc((size_t)(side * side * d) * sizeof *r);
    ck_assert_ptr_nonnull(r);
    for (int64_t i = 0; i < side; i++)
        for (int64_t j = 0; j < side; j++)
            for (int64_t c = 0; c < d; c++)
                r[(i * side + j) * d + c] = rel[((i - j) + (side - 1)) * d + c];
    return r;
}

/* add_decomposed_rel_pos's einsums, bhwc,hkc->bhwk and bhwc,wkc->bhwk, over
 * windows b of side x side queries (h, w), against ms_rel_pos_bias. The
 * tolerance scales with the sum of |products|, which bounds a float sum's
 * rounding however much the terms cancel. */
static void rel_pos_case(int64_t windows, int64_t side, int64_t d, int64_t ldq)
{
    int64_t tokens = windows * side * side, len = 2 * side - 1;
    float *q = random_f((tokens - 1) * ldq + d, -2, 2);
    float *rel_h = random_f(len * d, -1, 1), *rel_w = random_f(len * d, -1, 1);
    float *bias_h = guarded(tokens, side, side), *bias_w = guarded(tokens, side, side);
    ms_rel_pos_bias(bias_h, bias_w, q, ldq, tokens, d, rel_h, rel_w, side);
    double *rh = rel_pos_table(rel_h, side, d), *rw = rel_pos_table(rel_w, side, d);
    char what[96];
    snprintf(what, sizeof what, "rel_pos windows=%lld side=%lld d=%lld ldq=%lld",
             (long long)windows, (long long)side, (long long)d, (long long)ldq);
    for (int64_t b = 0; b < windows; b++)
        for (int64_t h = 0; h < side; h++)
            for (int64_t w = 0; w < side; w++)
                for (int64_t k = 0; k < side; k++) {
                    int64_t t = (b * side + h) * side + w;
                    const float *qt = q + t * ldq;
                    double eh = 0, ew = 0, mh = 0, mw = 0;
                    for (int64_t c = 0; c < d; c++) {
                        double ph = qt[c] * rh[(h * side + k) * d + c];
                        double pw = qt[c] * rw[(w * side + k) * d + c];
                        eh += ph, ew += pw, mh += fabs(ph), mw += fabs(pw);
                    }
                    EXPECT(fabs(bias_h[t * side + k] - eh) <= 1e-5 * mh,
                           "%s: bias_h[%lld][%lld] = %.9g, want %.9g", what, (long long)t,
                           (long long)k, bias_h[t * side + k], eh);
                    EXPECT(fabs(bias_w[t * side + k] - ew) <= 1e-5 * mw,
                           "%s: bias_w[%lld][%lld] = %.9g, want %.9g", what, (long long)t,
                           (long long)k, bias_w[t * side + k], ew);
                }
    check_guards(bias_h, tokens, side, side, what);
    check_guards(bias_w, tokens, side, side, what);
    free(q), free(rel_h), free(rel_w), free(bias_h), free(bias_w), free(rh), free(rw);
}

/* The op has one version, so this runs once rather than in every mode. */
START_TEST(test_rel_pos_bias_vs_double)
{
    /* windows, side, d, ldq: odd sizes with strided and contiguous q rows,
     * SAM's 14 x 14 window with a head of fused qkv rows, a 1 x 1 window. */
    rel_pos_case(2, 3, 5, 16);
    rel_pos_case(3, 5, 7, 7);
    rel_pos_case(1, 14, 64, 192);
    rel_pos_case(2, 9, 33, 100);
    rel_pos_case(3, 1, 7, 9);
}
END_TEST

/* ---- convolutions ----------------------------------------------------------- */

START_TEST(test_conv2d_ref_vs_double)
{
    set_mode(_i);
    int64_t cin = 3, h = 7, w = 6, cout = 4, kh = 3, kw = 2;
    for (int stride = 1; stride <= 2; stride++)
        for (int pad = 0; pad <= 1; pad++) {
            int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
            int64_t shape[4] = {cout, cin, kh, kw};
            float *wv = random_f(cout * cin * kh * kw, -1, 1), *deq = alloc_f(cout * cin * kh * kw);
            ms_tensor *wt = make_weight(MS_F32, 4, shape, wv, deq);
            float *x = random_f(cin * h * w, -1, 1), *bias = random_f(cout, -1, 1);
            float *y = guarded(1, cout * ho * wo, cout * ho * wo);
            ms_conv2d_ref(y, x, cin, h, w, wt, bias, stride, pad);
            for (int64_t co = 0; co < cout; co++)
                for (int64_t oy = 0; oy < ho; oy++)
                    for (int64_t ox = 0; ox < wo; ox++) {
                        double s = bias[co];
                        for (int64_t ci = 0; ci < cin; ci++)
                            for (int64_t ky = 0; ky < kh; ky++)
                                for (int64_t kx = 0; kx < kw; kx++) {
                                    int64_t iy = oy * stride + ky - pad,
                                            ix = ox * stride + kx - pad;
                                    if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                        s += (double)x[(ci * h + iy) * w + ix] *
                                             wv[((co * cin + ci) * kh + ky) * kw + kx];
                                }
                        EXPECT_NEAR(y[(co * ho + oy) * wo + ox], s, 1e-5);
                    }
            check_guards(y, 1, cout * ho * wo, cout * ho * wo, "conv2d_ref");
            ms_tensor_free(wt);
            free(wv), free(deq), free(x), free(bias), free(y);
        }
}
END_TEST

static void conv_case(ms_dtype dt, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                      int stride, int pad, int with_bias)
{
    int64_t ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
    int64_t shape[4] = {cout, cin, k, k}, nw = cout * cin * k * k, ny = cout * ho * wo;
    float *wv = random_f(nw, -1, 1), *deq = alloc_f(nw);
    ms_tensor *wt = make_weight(dt, 4, shape, wv, deq);
    float *x = random_f(cin * h * w, -1, 1), *bias = with_bias ? random_f(cout, -1, 1) : NULL;
    float *y = guarded(1, ny, ny), *want = guarded(1, ny, ny);
    float *scratch = alloc_f((int64_t)ms_conv2d_scratch_floats(cin, h, w, wt, stride, pad));
    ms_conv2d(y, x, cin, h, w, wt, bias, stride, pad, scratch);
    ms_conv2d_ref(want, x, cin, h, w, wt, bias, stride, pad);
    char what[96];
    snprintf(what, sizeof what, "conv2d %s cin=%lld %lldx%lld cout=%lld k=%lld s=%d p=%d",
             ms_dtype_name(dt), (long long)cin, (long long)h, (long long)w, (long long)cout,
             (long long)k, stride, pad);
    check_close(y, 0, want, 0, 1, ny, 2e-6 * (double)(cin * k * k) + 1e-6, 1e-5, what);
    check_guards(y, 1, ny, ny, what);
    ms_tensor_free(wt);
    free(wv), free(deq), free(x), free(bias), free(y), free(want), free(scratch);
}

START_TEST(test_conv2d_vs_ref)
{
    set_mode(_i);
    conv_case(MS_F32, 3, 64, 48, 16, 16, 16, 0, 1); /* patch embedding */
    conv_case(MS_F32, 33, 9, 7, 5, 1, 1, 0, 1);     /* neck 1x1 */
    conv_case(MS_F32, 16, 13, 11, 7, 3, 1, 1, 0);   /* neck 3x3 */
    conv_case(MS_F16, 16, 13, 11, 7, 3, 1, 1, 1);
    conv_case(MS_F32, 1, 17, 17, 4, 2, 2, 0, 1);    /* mask downscaling */
    conv_case(MS_F16, 8, 5, 5, 3, 1, 1, 0, 1);
    conv_case(MS_F32, 3, 7, 9, 2, 3, 2, 1, 1);
    conv_case(MS_F32, 2, 1, 1, 3, 1, 1, 0, 1);
    conv_case(MS_F32, 2, 3, 3, 1, 3, 1, 1, 1);
    conv_case(MS_F16, 5, 6, 7, 4, 5, 3, 2, 0);
}
END_TEST

START_TEST(test_conv_transpose_ref_vs_definition)
{
    set_mode(_i);
    int64_t cin = 3, h = 2, w = 3, cout = 2;
    int64_t shape[4] = {cin, cout, 2, 2};
    float *wv = random_f(cin * cout * 4, -1, 1), *deq = alloc_f(cin * cout * 4);
    ms_tensor *wt = make_weight(MS_F32, 4, shape, wv, deq);
    float *x = random_f(cin * h * w, -1, 1), *bias = random_f(cout, -1, 1);
    int64_t ny = cout * 4 * h * w;
    float *y = guarded(1, ny, ny);
    ms_conv_transpose2x2_ref(y, x, cin, h, w, wt, bias);
    /* The definition of a transposed conv: every input pixel scatters its
     * kernel-weighted value onto the output at stride 2. */
    double want[2 * 4 * 6];
    for (int64_t i = 0; i < ny; i++) want[i] = bias[i / (4 * h * w)];
    for (int64_t ci = 0; ci < cin; ci++)
        for (int64_t iy = 0; iy < h; iy++)
            for (int64_t ix = 0; ix < w; ix++)
                for (int64_t co = 0; co < cout; co++)
                    for (int64_t ky = 0; ky < 2; ky++)
                        for (int64_t kx = 0; kx < 2; kx++)
                            want[(co * 2 * h + 2 * iy + ky) * 2 * w + 2 * ix + kx] +=
                                (double)x[(ci * h + iy) * w + ix] *
                                wv[((ci * cout + co) * 2 + ky) * 2 + kx];
    for (int64_t i = 0; i < ny; i++) EXPECT_NEAR(y[i], want[i], 1e-5);
    check_guards(y, 1, ny, ny, "conv_transpose_ref");
    ms_tensor_free(wt);
    free(wv), free(deq), free(x), free(bias), free(y);
}
END_TEST

static void convt_case(ms_dtype dt, int64_t cin, int64_t h, int64_t w, int64_t cout, int with_bias)
{
    int64_t shape[4] = {cin, cout, 2, 2}, nw = cin * cout * 4, ny = cout * 4 * h * w;
    float *wv = random_f(nw, -1, 1), *deq = alloc_f(nw);
    ms_tensor *wt = make_weight(dt, 4, shape, wv, deq);
    float *x = random_f(cin * h * w, -1, 1), *bias = with_bias ? random_f(cout, -1, 1) : NULL;
    float *y = guarded(1, ny, ny), *want = guarded(1, ny, ny), *scratch = alloc_f(ny);
    ms_conv_transpose2x2(y, x, cin, h, w, wt, bias, scratch);
    ms_conv_transpose2x2_ref(want, x, cin, h, w, wt, bias);
    char what[80];
    snprintf(what, sizeof what, "conv_transpose %s cin=%lld %lldx%lld cout=%lld",
             ms_dtype_name(dt), (long long)cin, (long long)h, (long long)w, (long long)cout);
    check_close(y, 0, want, 0, 1, ny, 2e-6 * (double)cin + 1e-6, 1e-5, what);
    check_guards(y, 1, ny, ny, what);
    ms_tensor_free(wt);
    free(wv), free(deq), free(x), free(bias), free(y), free(want), free(scratch);
}

START_TEST(test_conv_transpose_vs_ref)
{
    set_mode(_i);
    convt_case(MS_F32, 64, 16, 16, 16, 1); /* decoder shapes, scaled down */
    convt_case(MS_F32, 16, 32, 32, 8, 1);
    convt_case(MS_F16, 64, 16, 16, 16, 1);
    convt_case(MS_F16, 40, 3, 5, 4, 1); /* cin > h*w */
    convt_case(MS_F32, 3, 1, 1, 1, 0);
    convt_case(MS_F32, 7, 3, 5, 3, 0);
}
END_TEST

int main(void)
{
    ms_kernels_set_threads(3); /* an odd split of the blocked GEMM's work */
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cpu_features);
    tcase_add_loop_test(tc, test_sgemm_ref_vs_double, 0, 3);
    tcase_add_loop_test(tc, test_sgemm_vs_ref, 0, 3);
    tcase_add_loop_test(tc, test_sgemm_concurrent, 0, 3);
    tcase_add_loop_test(tc, test_weight_row_and_q8_layout, 0, 3);
    tcase_add_loop_test(tc, test_linear_ref_vs_double, 0, 3);
    tcase_add_loop_test(tc, test_linear_vs_ref, 0, 3);
    tcase_add_loop_test(tc, test_layernorm_ref_vs_double, 0, 3);
    tcase_add_loop_test(tc, test_layernorm_vs_ref, 0, 3);
    tcase_add_loop_test(tc, test_layernorm_in_place, 0, 3);
    tcase_add_loop_test(tc, test_layernorm_ex_ref_vs_double, 0, 3);
    tcase_add_loop_test(tc, test_layernorm_ex_vs_ref, 0, 3);
    tcase_add_loop_test(tc, test_gelu, 0, 3);
    tcase_add_loop_test(tc, test_softmax, 0, 3);
    tcase_add_loop_test(tc, test_softmax_cols, 0, 3);
    tcase_add_loop_test(tc, test_attention_ref_vs_double, 0, 3);
    tcase_add_loop_test(tc, test_attention_vs_ref, 0, 3);
    tcase_add_loop_test(tc, test_attention_extreme_logits, 0, 3);
    tcase_add_loop_test(tc, test_attention_few_vs_ref, 0, 3);
    tcase_add_loop_test(tc, test_attention_few_extreme_logits, 0, 3);
    tcase_add_test(tc, test_rel_pos_bias_vs_double);
    tcase_add_loop_test(tc, test_conv2d_ref_vs_double, 0, 3);
    tcase_add_loop_test(tc, test_conv2d_vs_ref, 0, 3);
    tcase_add_loop_test(tc, test_conv_transpose_ref_vs_definition, 0, 3);
    tcase_add_loop_test(tc, test_conv_transpose_vs_ref, 0, 3);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
