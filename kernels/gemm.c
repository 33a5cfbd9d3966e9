/* GEMM and linear layers. With AVX-512 our own blocked GEMM runs them
 * (gemm_avx512.c: it reads f16 / q8 weights directly and fuses the epilogue);
 * elsewhere OpenBLAS does, with f16 / q8 weights expanded to f32 a tile of
 * rows at a time into the caller's scratch. */
#include "kernels/internal.h"

#include <cblas.h>
#include <sched.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Weight rows expanded per sgemm call for f16 / q8 weights: large enough to
 * keep the BLAS call efficient, small enough to stay in L2 next to x. */
#define LINEAR_TILE_N 256

static float op_at(const float *p, int64_t ld, int trans, int64_t r, int64_t c)
{
    return trans ? p[c * ld + r] : p[r * ld + c];
}

void ms_sgemm_ref(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                  float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0;
            for (int64_t p = 0; p < k; p++)
                s += op_at(a, lda, trans_a, i, p) * op_at(b, ldb, trans_b, p, j);
            /* beta == 0 must not read C (BLAS semantics: it may be garbage). */
            c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]);
        }
}

/* ---- threads and the blocked GEMM ---------------------------------------- */

/* The few-rows path splits its columns in blocks of this many (a multiple
 * of both small kernels' widths), threaded from this many weights on. */
#define SMALL_COL_BLOCK 64
#define SMALL_THREADED_WEIGHTS (1 << 16)

/* The blocked GEMM's workers and packing workspace, made on first use and
 * kept (like OpenBLAS's own threads and buffers). The busy flag is their
 * lock: one GEMM runs there at a time, and a caller that finds it taken
 * (another thread of the model inside a GEMM) takes OpenBLAS instead. */
static ms_pool *g_pool;
static float *g_workspace;
static int g_threads;
static atomic_flag g_gemm_busy = ATOMIC_FLAG_INIT;

static int default_threads(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

/* After fork() the child has this memory but none of the pool's threads:
 * forget the pool there (it cannot be freed without them, so its few bytes
 * are left) and build a new one on first use. */
static void forget_pool_in_child(void)
{
    g_pool = NULL;
    g_workspace = NULL;
    atomic_flag_clear(&g_gemm_busy);
}

static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, forget_pool_in_child); }

static void drop_pool(void)
{
    ms_pool_free(g_pool);
    free(g_workspace);
    g_pool = NULL;
    g_workspace = NULL;
}

void ms_kernels_set_threads(int n)
{
    n = n > 0 ? n : default_threads();
    openblas_set_num_threads(n);
    while (atomic_flag_test_and_set(&g_gemm_busy)) sched_yield();
    if (g_pool && ms_pool_size(g_pool) != n) drop_pool();
    g_threads = n;
    atomic_flag_clear(&g_gemm_busy);
}

/* The pool (and, with_workspace, the blocked GEMM's workspace), held by
 * this thread until release_pool(); NULL when another thread holds it or it
 * cannot be made. */
static ms_pool *acquire_pool(int with_workspace)
{
    pthread_once(&g_atfork_once, register_atfork);
    if (atomic_flag_test_and_set(&g_gemm_busy)) return NULL;
    if (!g_pool) g_pool = ms_pool_create(g_threads ? g_threads : default_threads());
    if (g_pool && with_workspace && !g_workspace)
        g_workspace = malloc(ms_gemm_avx512_workspace_floats(ms_pool_size(g_pool)) * sizeof(float));
    ms_pool *pool = g_pool && (!with_workspace || g_workspace) ? g_pool : NULL;
    if (!pool) atomic_flag_clear(&g_gemm_busy);
    return pool;
}

static void release_pool(void)
{
    atomic_flag_clear(&g_gemm_busy);
}

/* Columns [64 begin, 64 end) of a few-rows product. */
static void small_cols(void *ctx, int64_t begin, int64_t end, int worker)
{
    const ms_gemm_args *g = ctx;
    ms_gemm_small_avx512(g, begin * SMALL_COL_BLOCK,
                         end * SMALL_COL_BLOCK < g->n ? end * SMALL_COL_BLOCK : g->n);
}

/* A few rows: the columns, and with them the weight rows that are most of
 * the bytes read, split over the pool when there are enough. */
static void run_small(const ms_gemm_args *g)
{
    int64_t blocks = (g->n + SMALL_COL_BLOCK - 1) / SMALL_COL_BLOCK;
    ms_pool *pool = (double)g->n * (double)g->k >= SMALL_THREADED_WEIGHTS && blocks > 1
                        ? acquire_pool(0)
                        : NULL;
    if (!pool) {
        ms_gemm_small_avx512(g, 0, g->n);
        return;
    }
    ms_pool_for(pool, blocks, 1, small_cols, (void *)g);
    release_pool();
}

/* Runs g on our own AVX-512 GEMM: few rows on the small path, else the
 * blocked GEMM if it is free. 0 when it did not run (busy, out of memory). */
static int run_avx512(const ms_gemm_args *g)
{
    if (g->m <= MS_GEMM_SMALL_M && !g->trans_a) {
        run_small(g);
        return 1;
    }
    ms_pool *pool = acquire_pool(1);
    if (!pool) return 0;
    ms_gemm_avx512(g, pool, g_workspace);
    release_pool();
    return 1;
}

/* With AVX-512 our GEMM takes every product with k >= 1 (k == 0 only
 * scales C: OpenBLAS). */
static int want_avx512(int64_t k)
{
    return ms_use_avx512() && k >= 1;
}

void ms_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (want_avx512(k)) {
        ms_gemm_args g = {.trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k,
                          .alpha = alpha, .beta = beta, .a = a, .lda = lda, .b = b, .ldb = ldb,
                          .c = c, .ldc = ldc};
        if (run_avx512(&g)) return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha,
                a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

/* ---- weights ---------------------------------------------------------- */

static int64_t weight_cols(const ms_tensor *w)
{
    return w->ne[0] ? ms_tensor_nelem(w) / w->ne[0] : 0;
}

/* Rows are contiguous; row r starts at element r * st[0] (bytes for q8). */
static const uint8_t *weight_row_ptr(const ms_tensor *w, int64_t row)
{
    const uint8_t *base = w->data;
    if (w->dtype == MS_Q8)
        return base + row * (weight_cols(w) / MS_Q8_BLOCK) * MS_Q8_BLOCK_BYTES;
    return base + row * w->st[0] * (int64_t)ms_dtype_size(w->dtype);
}

void ms_weight_row_f32(float *dst, const ms_tensor *w, int64_t row)
{
    if (ms_use_avx2()) {
        ms_weight_row_avx2(dst, w, row);
        return;
    }
    int64_t k = weight_cols(w);
    const uint8_t *src = weight_row_ptr(w, row);
    if (w->dtype != MS_Q8) {
        ms_convert_to_f32(dst, src, w->dtype, k);
        return;
    }
    for (int64_t blk = 0; blk < k / MS_Q8_BLOCK; blk++) {
        const uint8_t *p = src + blk * MS_Q8_BLOCK_BYTES;
        float scale;
        memcpy(&scale, p, 4);
        const int8_t *q = (const int8_t *)(p + 4);
        for (int i = 0; i < MS_Q8_BLOCK; i++) dst[blk * MS_Q8_BLOCK + i] = (float)q[i] * scale;
    }
}

float ms_weight_at(const ms_tensor *w, int64_t row, int64_t col)
{
    const uint8_t *src = weight_row_ptr(w, row);
    switch (w->dtype) {
    case MS_F32: return ((const float *)src)[col];
    case MS_F16: return ms_f16_to_f32(((const uint16_t *)src)[col]);
    case MS_BF16: return ms_bf16_to_f32(((const uint16_t *)src)[col]);
    case MS_Q8: {
        const uint8_t *blk = src + (col / MS_Q8_BLOCK) * MS_Q8_BLOCK_BYTES;
        float scale;
        memcpy(&scale, blk, 4);
        return (float)((const int8_t *)(blk + 4))[col % MS_Q8_BLOCK] * scale;
    }
    default: return 0;
    }
}

/* ---- linear ----------------------------------------------------------- */

static float epilogue_ref(float v, ms_epilogue epi)
{
    if (epi == MS_EPI_RELU) return v > 0 ? v : 0;
    if (epi == MS_EPI_GELU) {
        ms_gelu_ref(&v, 1);
        return v;
    }
    return v;
}

void ms_linear_ref(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t m,
                   const ms_tensor *w, const float *bias, ms_epilogue epi, int accumulate)
{
    int64_t n = w->ne[0], k = weight_cols(w);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = bias ? bias[j] : 0;
            for (int64_t p = 0; p < k; p++) s += x[i * ldx + p] * ms_weight_at(w, j, p);
            float *out = &y[i * ldy + j];
            *out = epilogue_ref(accumulate ? *out + s : s, epi);
        }
}

size_t ms_linear_scratch_bytes(const ms_tensor *w, int64_t m)
{
    if (w->dtype == MS_F32) return 0;
    int64_t rows = w->ne[0] < LINEAR_TILE_N ? w->ne[0] : LINEAR_TILE_N;
    return (size_t)(rows * weight_cols(w)) * sizeof(float);
}

typedef struct epilogue_ctx {
    float *y;
    int64_t ldy, n;
    const float *bias;
    ms_epilogue epi;
} epilogue_ctx;

/* Rows [begin, end) of y (+)= bias, then the activation. */
static void epilogue_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    const epilogue_ctx *e = ctx;
    for (int64_t i = begin; i < end; i++) {
        float *row = e->y + i * e->ldy;
        if (e->bias)
            for (int64_t j = 0; j < e->n; j++) row[j] += e->bias[j];
        if (e->epi == MS_EPI_GELU) ms_gelu(row, e->n);
        if (e->epi == MS_EPI_RELU) ms_relu(row, e->n);
    }
}

/* The epilogue after an OpenBLAS product, spread over the pool when it is
 * large (a GELU over 4096 x 3072 is milliseconds per thread). */
static void bias_epilogue(float *y, int64_t ldy, int64_t m, int64_t n, const float *bias,
                          ms_epilogue epi)
{
    if (!bias && epi == MS_EPI_NONE) return;
    epilogue_ctx e = {y, ldy, n, bias, epi};
    ms_pool *pool = (double)m * (double)n >= (1 << 16) ? acquire_pool(0) : NULL;
    ms_pool_for(pool, m, 16, epilogue_rows, &e);
    if (pool) release_pool();
}

void ms_linear(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t m,
               const ms_tensor *w, const float *bias, ms_epilogue epi, int accumulate,
               void *scratch)
{
    int64_t n = w->ne[0], k = weight_cols(w);
    float beta = accumulate ? 1.0f : 0.0f;
    if (m <= 0 || n <= 0) return;
    if (want_avx512(k)) {
        ms_gemm_args g = {.m = m, .n = n, .k = k, .alpha = 1.0f, .beta = beta, .a = x, .lda = ldx,
                          .w = w, .c = y, .ldc = ldy, .bias = bias, .epi = epi};
        if (run_avx512(&g)) return;
    }
    if (w->dtype == MS_F32) {
        ms_sgemm(0, 1, m, n, k, 1.0f, x, ldx, w->data, w->st[0], beta, y, ldy);
    } else {
        float *tile = scratch;
        for (int64_t j0 = 0; j0 < n; j0 += LINEAR_TILE_N) {
            int64_t nb = n - j0 < LINEAR_TILE_N ? n - j0 : LINEAR_TILE_N;
            for (int64_t j = 0; j < nb; j++) ms_weight_row_f32(tile + j * k, w, j0 + j);
            ms_sgemm(0, 1, m, nb, k, 1.0f, x, ldx, tile, k, beta, y + j0, ldy);
        }
    }
    bias_epilogue(y, ldy, m, n, bias, epi);
}
