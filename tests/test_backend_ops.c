/* Backend ops, after ggml's test-backend-ops: every op of the backend table
 * on random and odd shapes. The CPU backend must give bit for bit what the
 * kernels give when called directly; the CUDA backend, when usable, must
 * match the CPU backend within a tolerance scaled to the output. Every
 * output sits between guard floats that no op may touch (nor the gaps of
 * strided outputs, which both sides compare). Without a usable CUDA backend
 * its half is skipped, saying so. Then the probe's reasons for refusing a
 * library, and `medsam backends`. */
#include <check.h>
#include <dlfcn.h>
#include <link.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "kernels/kernels.h"
#include "util.h"

#define GUARD 64       /* canary floats on each side of an output */
#define CANARY 0x7fc0beefu /* a NaN with a payload: checked bit for bit */
#define MAX_IN 6

static ms_backend *g_cpu, *g_cuda;
static const char *g_cuda_why;
static char g_cuda_lib[4200]; /* the libmedsam_cuda.so this build made */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

/* ---- one op call, run three ways ---- */

typedef struct op_case op_case;
/* The op on be: in[i] are the backend's copies of the inputs, out the output. */
typedef ms_status (*run_fn)(ms_backend *be, const op_case *c, void *const *in, float *out);
/* The kernel itself on the host inputs. */
typedef void (*direct_fn)(const op_case *c, float *out);

struct op_case {
    char name[160];
    int n_in;
    void *in[MAX_IN];
    size_t in_bytes[MAX_IN];
    float *out_init; /* the output's contents before the op */
    int64_t n_out;
    double tol;      /* cuda vs cpu: |diff| <= tol * max(1, max |cpu|) */
    int tf32;        /* run with TF32 GEMMs allowed */
    const void *p;   /* the op's parameters */
    run_fn run;
    direct_fn direct;
};

static void *add_input(op_case *c, size_t bytes)
{
    ck_assert_int_lt(c->n_in, MAX_IN);
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    c->in[c->n_in] = p;
    c->in_bytes[c->n_in++] = bytes;
    return p;
}

static float *add_floats(op_case *c, int64_t n, float lo, float hi)
{
    float *x = add_input(c, (size_t)n * sizeof(float));
    ms_test_fill_uniform(x, n, lo, hi, &g_rng);
    return x;
}

static void set_output(op_case *c, int64_t n, float lo, float hi)
{
    c->n_out = n;
    c->out_init = malloc((size_t)(n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(c->out_init);
    ms_test_fill_uniform(c->out_init, n, lo, hi, &g_rng);
}

/* q8: a block of MS_Q8_BLOCK values as its scale (max |x| / 127) and the
 * rounded quotients. */
static void quantize_block(uint8_t *blk, const float *f)
{
    float mx = 0;
    for (int i = 0; i < MS_Q8_BLOCK; i++) mx = fmaxf(mx, fabsf(f[i]));
    float scale = mx > 0 ? mx / 127 : 1;
    memcpy(blk, &scale, 4);
    for (int i = 0; i < MS_Q8_BLOCK; i++) blk[4 + i] = (uint8_t)(int8_t)lrintf(f[i] / scale);
}

/* A weight of dtype dt and the given shape, uniform in [-1, 1): its bytes
 * become the next input and w->data points at them. q8 rows need a multiple
 * of MS_Q8_BLOCK columns. */
static void add_weight(op_case *c, ms_tensor *w, ms_dtype dt, int ndim, const int64_t *shape)
{
    ms_tensor_init(w, dt, ndim, shape);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *f = malloc((size_t)n * sizeof(float));
    ck_assert_ptr_nonnull(f);
    ms_test_fill_uniform(f, n, -1, 1, &g_rng);
    uint8_t *dst = add_input(c, (size_t)ms_dtype_bytes(dt, (uint64_t)n));
    if (dt == MS_F32) memcpy(dst, f, (size_t)n * sizeof(float));
    for (int64_t i = 0; dt == MS_F16 && i < n; i++) ((uint16_t *)dst)[i] = ms_f32_to_f16(f[i]);
    for (int64_t b = 0; dt == MS_Q8 && b < n; b += MS_Q8_BLOCK)
        quantize_block(dst + b / MS_Q8_BLOCK * MS_Q8_BLOCK_BYTES, f + b);
    w->data = dst;
    free(f);
}

static void case_free(op_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->in[i]);
    free(c->out_init);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float canary(void)
{
    uint32_t u = CANARY;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void check_guards(const op_case *c, const ms_backend *be, const float *host)
{
    for (int i = 0; i < GUARD; i++) {
        ck_assert_msg(bits(host[i]) == CANARY, "%s on %s: wrote before the output (guard %d)",
                      c->name, be->name, GUARD - i);
        ck_assert_msg(bits(host[GUARD + c->n_out + i]) == CANARY,
                      "%s on %s: wrote past the output (guard %d)", c->name, be->name, i);
    }
}

static void *upload_new(ms_backend *be, const void *src, size_t bytes)
{
    void *d = be->alloc(be, bytes);
    ck_assert_msg(d != NULL, "%s: %s", be->name, be->error);
    ck_assert_msg(be->upload(be, d, src, bytes) == MS_OK, "%s: %s", be->name, be->error);
    return d;
}

/* The op through be's table; returns the output (malloc'd, n_out floats). */
static float *run_on(ms_backend *be, const op_case *c)
{
    void *dev[MAX_IN];
    for (int i = 0; i < c->n_in; i++) dev[i] = upload_new(be, c->in[i], c->in_bytes[i]);
    int64_t total = c->n_out + 2 * GUARD;
    float *host = malloc((size_t)total * sizeof(float));
    ck_assert_ptr_nonnull(host);
    for (int64_t i = 0; i < total; i++) host[i] = canary();
    if (c->n_out) memcpy(host + GUARD, c->out_init, (size_t)c->n_out * sizeof(float));
    float *out = upload_new(be, host, (size_t)total * sizeof(float));
    ck_assert_int_eq(be->set_tf32(be, c->tf32), MS_OK);
    ms_status st = c->run(be, c, dev, out + GUARD);
    ck_assert_int_eq(be->set_tf32(be, 0), MS_OK);
    ck_assert_msg(st == MS_OK, "%s on %s: %s", c->name, be->name, be->error);
    st = be->download(be, host, out, (size_t)total * sizeof(float));
    ck_assert_msg(st == MS_OK, "%s on %s: %s", c->name, be->name, be->error);
    check_guards(c, be, host);
    be->free(be, out);
    for (int i = 0; i < c->n_in; i++) be->free(be, dev[i]);
    memmove(host, host + GUARD, (size_t)c->n_out * sizeof(float));
    return host;
}

/* Equal bits (untouched gaps, even NaN) or within the tolerance. */
static void compare(const op_case *c, const float *cpu, const float *gpu)
{
    double scale = 1;
    for (int64_t i = 0; i < c->n_out; i++)
        if (isfinite(cpu[i])) scale = fmax(scale, fabs(cpu[i]));
    for (int64_t i = 0; i < c->n_out; i++) {
        if (bits(cpu[i]) == bits(gpu[i])) continue;
        double e = fabs((double)cpu[i] - (double)gpu[i]);
        ck_assert_msg(e <= c->tol * scale, "%s: cuda %.9g vs cpu %.9g at %lld (tolerance %g)",
                      c->name, gpu[i], cpu[i], (long long)i, c->tol * scale);
    }
}

/* Runs the case directly, on the CPU backend and on CUDA when usable, and
 * frees it. Returns the CPU output for op-specific checks (caller frees). */
static float *check_case(op_case *c)
{
    float *want = malloc((size_t)(c->n_out ? c->n_out : 1) * sizeof(float));
    ck_assert_ptr_nonnull(want);
    if (c->n_out) memcpy(want, c->out_init, (size_t)c->n_out * sizeof(float));
    c->direct(c, want);
    float *cpu = run_on(g_cpu, c);
    ck_assert_msg(!memcmp(want, cpu, (size_t)c->n_out * sizeof(float)),
                  "%s: the cpu backend differs from the kernel", c->name);
    if (g_cuda) {
        float *gpu = run_on(g_cuda, c);
        compare(c, cpu, gpu);
        free(gpu);
    }
    free(want);
    case_free(c);
    return cpu;
}

/* ---- GEMM and linear ---- */

typedef struct gemm_p {
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
} gemm_p;

static ms_status gemm_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const gemm_p *p = c->p;
    return be->sgemm(be, p->ta, p->tb, p->m, p->n, p->k, p->alpha, in[0], p->lda, in[1], p->ldb,
                     p->beta, out, p->ldc);
}

static void gemm_direct(const op_case *c, float *out)
{
    const gemm_p *p = c->p;
    ms_sgemm(p->ta, p->tb, p->m, p->n, p->k, p->alpha, c->in[0], p->lda, c->in[1], p->ldb, p->beta,
             out, p->ldc);
}

static void gemm_case(const int64_t s[3], int ta, int tb, float beta, int tf32)
{
    gemm_p p = {ta, tb, s[0], s[1], s[2], 0, 0, s[1] + 1, 0.75f, beta};
    p.lda = (ta ? p.m : p.k) + 3;
    p.ldb = (tb ? p.k : p.n) + 2;
    op_case c = {.p = &p, .run = gemm_run, .direct = gemm_direct, .tf32 = tf32,
                 .tol = tf32 ? 2e-2 : 2e-5};
    snprintf(c.name, sizeof c.name, "sgemm%s %lldx%lldx%lld ta=%d tb=%d beta=%g",
             tf32 ? " (tf32)" : "", (long long)p.m, (long long)p.n, (long long)p.k, ta, tb, beta);
    add_floats(&c, (ta ? p.k : p.m) * p.lda, -1, 1);
    add_floats(&c, (tb ? p.n : p.k) * p.ldb, -1, 1);
    set_output(&c, p.m * p.ldc, -1, 1);
    /* beta == 0 must not read C: a NaN there must not come out. */
    for (int64_t i = 0; beta == 0 && i < p.m; i++)
        for (int64_t j = 0; j < p.n; j++) c.out_init[i * p.ldc + j] = NAN;
    float *cpu = check_case(&c);
    for (int64_t i = 0; i < p.m; i++)
        for (int64_t j = 0; j < p.n; j++) ck_assert(isfinite(cpu[i * p.ldc + j]));
    free(cpu);
}

START_TEST(test_sgemm)
{
    static const int64_t shapes[][3] = {
        {1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {128, 96, 200}, {3, 300, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int b = 0; b < 2; b++) gemm_case(shapes[s], t & 1, t >> 1, b ? 0.5f : 0.0f, 0);
    static const int64_t big[3] = {64, 48, 256};
    gemm_case(big, 0, 1, 0.0f, 1);
}
END_TEST

typedef struct linear_p {
    ms_tensor w; /* data: the host copy (input 0) */
    int64_t m, ldx, ldy;
    int bias, acc;
    ms_epilogue epi;
} linear_p;

static ms_status linear_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const linear_p *p = c->p;
    ms_tensor w = p->w;
    w.data = in[0];
    return be->linear(be, out, p->ldy, in[1], p->ldx, p->m, &w, p->bias ? in[2] : NULL, p->epi,
                      p->acc);
}

static void linear_direct(const op_case *c, float *out)
{
    const linear_p *p = c->p;
    size_t bytes = ms_linear_scratch_bytes(&p->w, p->m);
    void *scratch = bytes ? malloc(bytes) : NULL;
    ms_linear(out, p->ldy, c->in[1], p->ldx, p->m, &p->w, p->bias ? c->in[2] : NULL, p->epi, p->acc,
              scratch);
    free(scratch);
}

static void linear_case(ms_dtype dt, const int64_t s[3], int variant, int tf32)
{
    static const char *epi_names[] = {"none", "gelu", "relu"};
    linear_p p = {.m = s[0], .ldx = s[2] + 5, .ldy = s[1] + 2, .bias = variant & 1,
                  .acc = (variant >> 1) & 1, .epi = (ms_epilogue)(variant % 3)};
    op_case c = {.p = &p, .run = linear_run, .direct = linear_direct, .tf32 = tf32,
                 .tol = tf32 ? 2e-2 : 2e-5};
    snprintf(c.name, sizeof c.name, "linear%s %s m=%lld n=%lld k=%lld bias=%d acc=%d epi=%s",
             tf32 ? " (tf32)" : "", ms_dtype_name(dt), (long long)s[0], (long long)s[1],
             (long long)s[2], p.bias, p.acc, epi_names[p.epi]);
    int64_t shape[2] = {s[1], s[2]};
    add_weight(&c, &p.w, dt, 2, shape);
    add_floats(&c, p.m * p.ldx, -1, 1);
    if (p.bias) add_floats(&c, s[1], -1, 1);
    set_output(&c, p.m * p.ldy, -1, 1);
    free(check_case(&c));
}

START_TEST(test_linear)
{
    static const int64_t shapes[][3] = {{1, 1, 32}, {5, 3, 64}, {17, 96, 96}, {64, 33, 160}};
    static const int64_t odd_k[][3] = {{3, 7, 5}, {2, 1, 1}};
    static const ms_dtype dts[] = {MS_F32, MS_F16, MS_Q8};
    int variant = 0;
    for (size_t d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int v = 0; v < 3; v++) linear_case(dts[d], shapes[s], variant++, 0);
    for (size_t s = 0; s < 2; s++)
        for (int v = 0; v < 6; v++) linear_case(s ? MS_F16 : MS_F32, odd_k[s], v, 0);
    linear_case(MS_F32, shapes[3], 1, 1);
}
END_TEST

/* ---- normalisation, activations, element-wise ---- */

typedef struct norm_p {
    int64_t rows, dim, ldx, ldy; /* layernorm_channels: rows = c, dim = hw */
    float eps;
    int inplace;                 /* y is x (ldx == ldy) */
} norm_p;

/* Inputs: g, b, then x unless in place. */
static ms_status layernorm_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const norm_p *p = c->p;
    const float *x = p->inplace ? out : in[2];
    return be->layernorm(be, out, p->ldy, x, p->ldx, p->rows, p->dim, in[0], in[1], p->eps);
}

static void layernorm_direct(const op_case *c, float *out)
{
    const norm_p *p = c->p;
    const float *x = p->inplace ? out : c->in[2];
    ms_layernorm(out, p->ldy, x, p->ldx, p->rows, p->dim, c->in[0], c->in[1], p->eps);
}

START_TEST(test_layernorm)
{
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {5, 256}, {2, 769}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int v = 0; v < 3; v++) {
            int64_t rows = shapes[s][0], dim = shapes[s][1];
            norm_p p = {rows, dim, dim + 3, dim + 1, v ? 1e-6f : 1e-5f, v == 2};
            if (p.inplace) p.ldx = p.ldy;
            /* v == 1: |mean| >> std, where one-pass variance would fail */
            float lo = v == 1 ? 100 : -3, hi = v == 1 ? 101 : 5;
            op_case c = {.p = &p, .run = layernorm_run, .direct = layernorm_direct, .tol = 1e-4};
            snprintf(c.name, sizeof c.name, "layernorm %lldx%lld %s", (long long)rows,
                     (long long)dim, v == 2 ? "in place" : v ? "large mean" : "strided");
            add_floats(&c, dim, 0.5f, 1.5f);
            add_floats(&c, dim, -1, 1);
            if (!p.inplace) add_floats(&c, rows * p.ldx, lo, hi);
            set_output(&c, rows * p.ldy, lo, hi);
            free(check_case(&c));
        }
}
END_TEST

static ms_status ln_channels_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const norm_p *p = c->p;
    return be->layernorm_channels(be, out, in[2], p->rows, p->dim, in[0], in[1], p->eps);
}

static void ln_channels_direct(const op_case *c, float *out)
{
    const norm_p *p = c->p;
    ms_layernorm_channels(out, c->in[2], p->rows, p->dim, c->in[0], c->in[1], p->eps);
}

START_TEST(test_layernorm_channels)
{
    static const int64_t shapes[][2] = {{1, 1}, {3, 5}, {32, 64}, {256, 257}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        norm_p p = {shapes[s][0], shapes[s][1], 0, 0, 1e-6f, 0};
        op_case c = {.p = &p, .run = ln_channels_run, .direct = ln_channels_direct, .tol = 1e-4};
        snprintf(c.name, sizeof c.name, "layernorm_channels c=%lld hw=%lld", (long long)p.rows,
                 (long long)p.dim);
        add_floats(&c, p.rows, 0.5f, 1.5f);
        add_floats(&c, p.rows, -1, 1);
        add_floats(&c, p.rows * p.dim, -2, 4);
        set_output(&c, p.rows * p.dim, -1, 1);
        free(check_case(&c));
    }
}
END_TEST

/* Element-wise ops on n floats, in place but for op 3. */
typedef struct unary_p {
    int op; /* 0 gelu, 1 relu, 2 y = y + x (x is input 0), 3 y = a + b (inputs 0, 1) */
} unary_p;

static ms_status unary_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const unary_p *p = c->p;
    if (p->op == 0) return be->gelu(be, out, c->n_out);
    if (p->op == 1) return be->relu(be, out, c->n_out);
    if (p->op == 2) return be->add(be, out, out, in[0], c->n_out);
    return be->add(be, out, in[0], in[1], c->n_out);
}

static void unary_direct(const op_case *c, float *out)
{
    const unary_p *p = c->p;
    if (p->op == 0) ms_gelu(out, c->n_out);
    if (p->op == 1) ms_relu(out, c->n_out);
    if (p->op == 2) ms_add(out, out, c->in[0], c->n_out);
    if (p->op == 3) ms_add(out, c->in[0], c->in[1], c->n_out);
}

START_TEST(test_elementwise)
{
    static const int64_t sizes[] = {1, 7, 1000, 100003};
    static const char *names[] = {"gelu", "relu", "add in place", "add"};
    for (int op = 0; op < 4; op++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            unary_p p = {op};
            op_case c = {.p = &p, .run = unary_run, .direct = unary_direct, .tol = 1e-6};
            snprintf(c.name, sizeof c.name, "%s n=%lld", names[op], (long long)sizes[s]);
            for (int i = 2; i <= op; i++) add_floats(&c, sizes[s], -1, 1);
            set_output(&c, sizes[s], -8, 8);
            free(check_case(&c));
        }
}
END_TEST

typedef struct softmax_p {
    int64_t rows, n, ld;
} softmax_p;

static ms_status softmax_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const softmax_p *p = c->p;
    return be->softmax_rows(be, out, p->rows, p->n, p->ld);
}

static void softmax_direct(const op_case *c, float *out)
{
    const softmax_p *p = c->p;
    ms_softmax_rows(out, p->rows, p->n, p->ld);
}

START_TEST(test_softmax_rows)
{
    static const softmax_p shapes[] = {{1, 1, 1}, {5, 7, 9}, {33, 200, 200}, {3, 4097, 4100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        op_case c = {.p = &shapes[s], .run = softmax_run, .direct = softmax_direct, .tol = 1e-5};
        snprintf(c.name, sizeof c.name, "softmax_rows %lldx%lld ld=%lld", (long long)shapes[s].rows,
                 (long long)shapes[s].n, (long long)shapes[s].ld);
        set_output(&c, shapes[s].rows * shapes[s].ld, -30, 30);
        free(check_case(&c));
    }
}
END_TEST

/* ---- attention ---- */

typedef struct attn_p {
    ms_attn a; /* pointers: offsets into the inputs, set per run */
    ms_attn_heads h;
} attn_p;

/* Inputs: q, k, v, then bias_h, bias_w when there is a bias. */
static ms_attn attn_bind(const attn_p *p, void *const *in, float *out)
{
    ms_attn a = p->a;
    a.q = in[0];
    a.k = in[1];
    a.v = in[2];
    a.out = out;
    a.bias_h = p->a.kh ? in[3] : NULL;
    a.bias_w = p->a.kh ? in[4] : NULL;
    return a;
}

static ms_status attn_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const attn_p *p = c->p;
    ms_attn a = attn_bind(p, in, out);
    return be->attention(be, &a, &p->h);
}

/* The kernel head by head, as a caller of kernels.h would. */
static void attn_direct(const op_case *c, float *out)
{
    const attn_p *p = c->p;
    ms_attn a = attn_bind(p, c->in, out);
    float *scratch = malloc(ms_attention_scratch_floats(&a) * sizeof(float));
    ck_assert_ptr_nonnull(scratch);
    for (int64_t i = 0; i < p->h.n; i++) {
        ms_attn h = a;
        h.q += i * p->h.q_step;
        h.k += i * p->h.k_step;
        h.v += i * p->h.v_step;
        h.out += i * p->h.out_step;
        if (h.bias_h) {
            h.bias_h += i * p->h.bias_h_step;
            h.bias_w += i * p->h.bias_w_step;
        }
        ms_attention(&h, 0, h.nq, scratch);
    }
    free(scratch);
}

/* heads, nq, kh, kw (nk = kh * kw), d, bias */
static void attn_case(const int64_t s[6])
{
    int64_t heads = s[0], nq = s[1], nk = s[2] * s[3], d = s[4], hd = heads * d;
    attn_p p = {.a = {.ldq = hd + 5, .ldk = hd + 3, .ldv = hd + 1, .ldo = hd + 2, .nq = nq,
                      .nk = nk, .d = d, .scale = (float)(1 / sqrt((double)d)),
                      .kh = s[5] ? s[2] : 0, .kw = s[5] ? s[3] : 0},
                .h = {heads, d, d, d, d, nq * s[2], nq * s[3]}};
    op_case c = {.p = &p, .run = attn_run, .direct = attn_direct, .tol = 1e-5};
    snprintf(c.name, sizeof c.name, "attention heads=%lld nq=%lld nk=%lldx%lld d=%lld bias=%lld",
             (long long)heads, (long long)nq, (long long)s[2], (long long)s[3], (long long)d,
             (long long)s[5]);
    add_floats(&c, nq * p.a.ldq, -1, 1);
    add_floats(&c, nk * p.a.ldk, -1, 1);
    add_floats(&c, nk * p.a.ldv, -1, 1);
    if (s[5]) {
        add_floats(&c, heads * nq * s[2], -2, 2);
        add_floats(&c, heads * nq * s[3], -2, 2);
    }
    set_output(&c, nq * p.a.ldo, -1, 1);
    free(check_case(&c));
}

START_TEST(test_attention)
{
    static const int64_t cases[][6] = {
        {1, 1, 1, 1, 1, 1},     {2, 7, 3, 3, 16, 1},   {3, 37, 5, 10, 64, 1},
        {1, 64, 14, 14, 64, 1}, {2, 33, 7, 10, 80, 0}, {1, 5, 1, 300, 128, 0},
        {8, 7, 64, 64, 16, 0},  {1, 100, 10, 10, 33, 1}, {2, 70, 14, 14, 80, 1},
        {8, 300, 1, 7, 16, 0},  {2, 300, 64, 64, 32, 1}, {3, 1030, 33, 31, 16, 1},
        {1, 1025, 1, 1024, 64, 0}, {8, 1100, 64, 64, 16, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) attn_case(cases[i]);
}
END_TEST

/* ---- relative-position terms ---- */

#define RELPOS_GAP 8 /* canaries between bias_h and bias_w in the one output */

typedef struct relpos_p {
    int64_t tokens, d, ldq, side;
} relpos_p;

/* Inputs: q, rel_h, rel_w. The output is bias_h, the gap, then bias_w. */
static ms_status relpos_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const relpos_p *p = c->p;
    float *bias_w = out + p->tokens * p->side + RELPOS_GAP;
    return be->rel_pos(be, out, bias_w, in[0], p->ldq, p->tokens, p->d, in[1], in[2], p->side);
}

static void relpos_direct(const op_case *c, float *out)
{
    const relpos_p *p = c->p;
    float *bias_w = out + p->tokens * p->side + RELPOS_GAP;
    ms_rel_pos_bias(out, bias_w, c->in[0], p->ldq, p->tokens, p->d, c->in[1], c->in[2], p->side);
}

static void relpos_case(int64_t windows, int64_t side, int64_t d, int64_t ldq)
{
    relpos_p p = {windows * side * side, d, ldq, side};
    int64_t n = p.tokens * side;
    op_case c = {.p = &p, .run = relpos_run, .direct = relpos_direct, .tol = 1e-5};
    snprintf(c.name, sizeof c.name, "rel_pos windows=%lld side=%lld d=%lld ldq=%lld",
             (long long)windows, (long long)side, (long long)d, (long long)ldq);
    /* q's last row ends after d floats: reading past it shows under ASan. */
    add_floats(&c, (p.tokens - 1) * ldq + d, -1, 1);
    add_floats(&c, (2 * side - 1) * d, -1, 1);
    add_floats(&c, (2 * side - 1) * d, -1, 1);
    set_output(&c, 2 * n + RELPOS_GAP, -1, 1);
    /* NaN where the op must write (a value left unwritten stays NaN), the
     * canary in the gap (a value written there differs from it). */
    for (int64_t i = 0; i < c.n_out; i++)
        c.out_init[i] = i < n || i >= n + RELPOS_GAP ? NAN : canary();
    float *cpu = check_case(&c);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(isfinite(cpu[i]) && isfinite(cpu[n + RELPOS_GAP + i]),
                      "rel_pos: element %lld not written", (long long)i);
    for (int64_t i = 0; i < RELPOS_GAP; i++)
        ck_assert_msg(bits(cpu[n + i]) == CANARY, "rel_pos: wrote past bias_h (gap %lld)",
                      (long long)i);
    free(cpu);
}

START_TEST(test_rel_pos)
{
    /* windows, side, d, ldq: strided q rows (a head inside fused qkv rows),
     * SAM's 14 x 14 window and 64 x 64 global block, a 1 x 1 window. */
    static const int64_t cases[][4] = {
        {2, 3, 5, 16}, {1, 14, 64, 192}, {3, 1, 7, 9}, {4, 7, 33, 33}, {1, 64, 64, 192},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        relpos_case(cases[i][0], cases[i][1], cases[i][2], cases[i][3]);
}
END_TEST

/* ---- layout ---- */

typedef struct layout_p {
    int op;                 /* 0 transpose, 1 window_partition, 2 window_unpartition */
    int64_t a, b, c;        /* rows, cols / grid, e, side */
} layout_p;

static ms_status layout_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const layout_p *p = c->p;
    if (p->op == 0) return be->transpose(be, out, in[0], p->a, p->b);
    if (p->op == 1) return be->window_partition(be, out, in[0], p->a, p->b, p->c);
    return be->window_unpartition(be, out, in[0], p->a, p->b, p->c);
}

/* Written as PyTorch does it: pad to P x P, view (P/s, s, P/s, s, e),
 * permute (0, 2, 1, 3, 4): window (wy, wx), then (iy, ix) inside it. */
static void windows_direct(const layout_p *p, const float *src, float *dst)
{
    int64_t grid = p->a, e = p->b, s = p->c, nw = (grid + s - 1) / s;
    for (int64_t wy = 0; wy < nw; wy++)
        for (int64_t wx = 0; wx < nw; wx++)
            for (int64_t iy = 0; iy < s; iy++)
                for (int64_t ix = 0; ix < s; ix++) {
                    int64_t t = ((wy * nw + wx) * s + iy) * s + ix;
                    int64_t r = wy * s + iy, col = wx * s + ix, g = r * grid + col;
                    int inside = r < grid && col < grid;
                    for (int64_t ch = 0; ch < e; ch++) {
                        if (p->op == 1) dst[t * e + ch] = inside ? src[g * e + ch] : 0;
                        if (p->op == 2 && inside) dst[g * e + ch] = src[t * e + ch];
                    }
                }
}

static void layout_direct(const op_case *c, float *out)
{
    const layout_p *p = c->p;
    const float *src = c->in[0];
    if (p->op == 0) {
        for (int64_t r = 0; r < p->a; r++)
            for (int64_t col = 0; col < p->b; col++) out[col * p->a + r] = src[r * p->b + col];
    } else {
        windows_direct(p, src, out);
    }
}

START_TEST(test_layout)
{
    static const int64_t transposes[][2] = {{1, 1}, {1, 37}, {33, 65}, {64, 100}, {300, 7}};
    static const int64_t windows[][3] = {
        {1, 1, 1}, {5, 2, 3}, {14, 3, 7}, {14, 4, 14}, {16, 3, 14}, {9, 5, 4},
    };
    for (size_t i = 0; i < sizeof transposes / sizeof transposes[0]; i++) {
        layout_p p = {0, transposes[i][0], transposes[i][1], 0};
        op_case c = {.p = &p, .run = layout_run, .direct = layout_direct};
        snprintf(c.name, sizeof c.name, "transpose %lldx%lld", (long long)p.a, (long long)p.b);
        add_floats(&c, p.a * p.b, -1, 1);
        set_output(&c, p.a * p.b, -1, 1);
        free(check_case(&c));
    }
    for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++)
        for (int op = 1; op <= 2; op++) {
            layout_p p = {op, windows[i][0], windows[i][1], windows[i][2]};
            int64_t nw = (p.a + p.c - 1) / p.c, tokens = nw * nw * p.c * p.c;
            op_case c = {.p = &p, .run = layout_run, .direct = layout_direct};
            snprintf(c.name, sizeof c.name, "window_%s grid=%lld e=%lld side=%lld",
                     op == 1 ? "partition" : "unpartition", (long long)p.a, (long long)p.b,
                     (long long)p.c);
            add_floats(&c, (op == 1 ? p.a * p.a : tokens) * p.b, -1, 1);
            set_output(&c, (op == 1 ? tokens : p.a * p.a) * p.b, -1, 1);
            free(check_case(&c));
        }
}
END_TEST

/* ---- convolutions ---- */

typedef struct conv_p {
    ms_tensor w; /* data: the host copy (input 0) */
    int64_t cin, h, wd;
    int stride, pad, bias, transpose;
} conv_p;

/* Inputs: weight, x, then the bias. */
static ms_status conv_run(ms_backend *be, const op_case *c, void *const *in, float *out)
{
    const conv_p *p = c->p;
    ms_tensor w = p->w;
    w.data = in[0];
    const float *bias = p->bias ? in[2] : NULL;
    if (p->transpose) return be->conv_transpose2x2(be, out, in[1], p->cin, p->h, p->wd, &w, bias);
    return be->conv2d(be, out, in[1], p->cin, p->h, p->wd, &w, bias, p->stride, p->pad);
}

static void conv_direct(const op_case *c, float *out)
{
    const conv_p *p = c->p;
    const float *bias = p->bias ? c->in[2] : NULL;
    size_t floats = p->transpose
                        ? (size_t)(4 * p->w.ne[1] * p->h * p->wd)
                        : ms_conv2d_scratch_floats(p->cin, p->h, p->wd, &p->w, p->stride, p->pad);
    float *scratch = malloc((floats ? floats : 1) * sizeof(float));
    ck_assert_ptr_nonnull(scratch);
    if (p->transpose)
        ms_conv_transpose2x2(out, c->in[1], p->cin, p->h, p->wd, &p->w, bias, scratch);
    else
        ms_conv2d(out, c->in[1], p->cin, p->h, p->wd, &p->w, bias, p->stride, p->pad, scratch);
    free(scratch);
}

/* cin, cout, h, w, kh (= kw), stride, pad, bias; dtype apart */
static void conv_case(const int64_t s[8], ms_dtype dt, int transpose)
{
    conv_p p = {.cin = s[0], .h = s[2], .wd = s[3], .stride = (int)s[5], .pad = (int)s[6],
                .bias = (int)s[7], .transpose = transpose};
    int64_t k = transpose ? 2 : s[4];
    int64_t shape[4] = {transpose ? s[0] : s[1], transpose ? s[1] : s[0], k, k};
    int64_t ho = transpose ? 2 * p.h : (p.h + 2 * p.pad - k) / p.stride + 1;
    int64_t wo = transpose ? 2 * p.wd : (p.wd + 2 * p.pad - k) / p.stride + 1;
    op_case c = {.p = &p, .run = conv_run, .direct = conv_direct, .tol = 2e-5};
    snprintf(c.name, sizeof c.name, "%s %s cin=%lld cout=%lld %lldx%lld k=%lld s=%d p=%d bias=%d",
             transpose ? "conv_transpose2x2" : "conv2d", ms_dtype_name(dt), (long long)s[0],
             (long long)s[1], (long long)p.h, (long long)p.wd, (long long)k, p.stride, p.pad,
             p.bias);
    add_weight(&c, &p.w, dt, 4, shape);
    add_floats(&c, p.cin * p.h * p.wd, -1, 1);
    if (p.bias) add_floats(&c, s[1], -1, 1);
    set_output(&c, s[1] * ho * wo, -1, 1);
    free(check_case(&c));
}

START_TEST(test_conv)
{
    static const struct {
        int64_t s[8];
        ms_dtype dt;
    } convs[] = {
        {{3, 8, 32, 32, 16, 16, 0, 1}, MS_F32}, {{3, 8, 32, 32, 16, 16, 0, 1}, MS_F16},
        {{5, 4, 7, 9, 3, 1, 1, 1}, MS_F32},     {{6, 3, 5, 5, 1, 1, 0, 1}, MS_F32},
        {{32, 5, 6, 7, 1, 1, 0, 0}, MS_Q8},     {{2, 5, 9, 8, 2, 2, 0, 1}, MS_F32},
        {{3, 4, 6, 7, 3, 2, 1, 1}, MS_F16},     {{8, 4, 5, 6, 2, 1, 0, 1}, MS_Q8},
    };
    static const struct {
        int64_t s[8];
        ms_dtype dt;
    } transposed[] = {
        {{4, 3, 5, 6, 2, 2, 0, 1}, MS_F32},  {{16, 8, 8, 8, 2, 2, 0, 1}, MS_F32},
        {{16, 8, 4, 4, 2, 2, 0, 0}, MS_F16}, {{40, 3, 3, 3, 2, 2, 0, 1}, MS_F16},
        {{8, 8, 3, 5, 2, 2, 0, 1}, MS_Q8},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++)
        conv_case(convs[i].s, convs[i].dt, 0);
    for (size_t i = 0; i < sizeof transposed / sizeof transposed[0]; i++)
        conv_case(transposed[i].s, transposed[i].dt, 1);
}
END_TEST

/* A fresh CPU backend has no workspace yet: an op that needs none (a 1x1
 * convolution with f32 weights) must still run. */
START_TEST(test_cpu_backend_fresh)
{
    ms_backend be;
    ck_assert_int_eq(ms_backend_cpu_init(&be), MS_OK);
    float w[2] = {2, 3}, x[3] = {1, 2, 3}, y[6];
    ms_tensor wt;
    int64_t shape[4] = {2, 1, 1, 1};
    ms_tensor_init(&wt, MS_F32, 4, shape);
    wt.data = w;
    ck_assert_msg(be.conv2d(&be, y, x, 1, 1, 3, &wt, NULL, 1, 0) == MS_OK, "%s", be.error);
    ck_assert_float_eq(y[2], 6);
    ck_assert_float_eq(y[5], 9);
    be.release(&be);
}
END_TEST

/* ---- the probe ---- */

/* ms_backend_cuda_open (no driver check first) with MEDSAM_CUDA_LIB =
 * value; the reason in why. The variable is put back afterwards. */
static int load_with(const char *value, char *why, size_t n)
{
    ms_backend be;
    setenv("MEDSAM_CUDA_LIB", value, 1);
    int rc = ms_backend_cuda_open(&be, why, n);
    setenv("MEDSAM_CUDA_LIB", g_cuda_lib, 1);
    if (rc == 0) be.release(&be);
    return rc;
}

START_TEST(test_probe_reasons)
{
    char why[256];
    const char *missing = ms_test_scratch("no_such_libmedsam_cuda.so");
    ck_assert_int_ne(load_with(missing, why, sizeof why), 0);
    ck_assert_msg(strstr(why, "library libmedsam_cuda.so not found (built without nvcc?)") &&
                  strstr(why, missing), "%s", why);

    const char *text = ms_test_scratch("not_a_library.so");
    FILE *f = fopen(text, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    ck_assert_int_ne(load_with(text, why, sizeof why), 0);
    ck_assert_msg(strstr(why, "cannot load") && strstr(why, text), "%s", why);
    unlink(text);

    /* A real library, but not ours (zlib is linked into this test). */
    ck_assert_int_ne(load_with("libz.so.1", why, sizeof why), 0);
    ck_assert_msg(strstr(why, "no ms_cuda_backend_init") != NULL, "%s", why);
}
END_TEST

static int is_cuda_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    const char *name = info->dlpi_name;
    return strstr(name, "libmedsam_cuda") || strstr(name, "libcublas") ||
           strstr(name, "libcudart");
}

/* Without a driver the backend says so and loads neither libmedsam_cuda.so
 * nor the CUDA libraries behind it (150 MB of resident memory). Runs before
 * test_probe_built_library, which loads them on purpose. */
START_TEST(test_no_driver_loads_nothing)
{
    void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (driver) {
        dlclose(driver);
        printf("SKIP no-driver probe: this machine has an NVIDIA driver\n");
        return;
    }
    /* The registry probed CUDA when the suite started: nothing loaded then */
    ck_assert_int_eq(dl_iterate_phdr(is_cuda_object, NULL), 0);
    ms_backend be;
    char why[256];
    ck_assert_int_ne(ms_backend_cuda_load(&be, why, sizeof why), 0);
    ck_assert_msg(!strncmp(why, "no NVIDIA driver (libcuda.so.1: ", 32), "%s", why);
    ck_assert_int_eq(dl_iterate_phdr(is_cuda_object, NULL), 0);
}
END_TEST

/* The library this build made: it loads here, then either works or says
 * which of driver, device or runtime is missing; a wrong ABI is refused. */
START_TEST(test_probe_built_library)
{
    if (access(g_cuda_lib, F_OK) != 0) {
        printf("SKIP probe of libmedsam_cuda.so: not built (%s)\n", g_cuda_lib);
        return;
    }
    char why[256];
    if (load_with(g_cuda_lib, why, sizeof why) != 0)
        ck_assert_msg(!strcmp(why, "no CUDA device") || !strncmp(why, "CUDA error: ", 12) ||
                          !strncmp(why, "cannot load ", 12), "%s", why);
    void *h = dlopen(g_cuda_lib, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(h != NULL, "%s", dlerror());
    ms_cuda_backend_init_fn init;
    *(void **)&init = dlsym(h, "ms_cuda_backend_init");
    ck_assert_ptr_nonnull(init);
    ms_backend be;
    ck_assert_int_ne(init(MS_BACKEND_ABI + 1, &be, why, sizeof why), 0);
    ck_assert_msg(strstr(why, "ABI") != NULL, "%s", why);
    dlclose(h);
}
END_TEST

START_TEST(test_registry)
{
    ms_backend *be;
    ck_assert(ms_backend_choice_valid("auto") && ms_backend_choice_valid("cpu") &&
              ms_backend_choice_valid("cuda"));
    ck_assert(!ms_backend_choice_valid("gpu") && !ms_backend_choice_valid(NULL));
    ck_assert_int_eq(ms_backend_select("gpu", &be), MS_ERR_ARG);
    ck_assert_int_eq(ms_backend_select("cpu", &be), MS_OK);
    ck_assert_ptr_eq(be, g_cpu);
    ck_assert_int_eq(ms_backend_select(NULL, &be), MS_OK);
    ck_assert_ptr_eq(be, g_cuda ? g_cuda : g_cpu);
    if (g_cuda) {
        ck_assert_int_eq(ms_backend_select("cuda", &be), MS_OK);
        ck_assert_str_eq(be->name, "cuda");
    } else {
        ck_assert_int_eq(ms_backend_select("cuda", &be), MS_ERR_UNSUPPORTED);
        ck_assert(strstr(ms_last_error(), g_cuda_why) != NULL);
    }
}
END_TEST

/* ---- the CLI ---- */

/* Runs `$MEDSAM_CLI args`, stdout then stderr into out; the exit status. */
static int run_cli(const char *args, char *out, size_t n)
{
    char err[2048];
    int st = ms_test_run_cli(args, out, n, err, sizeof err);
    strncat(out, err, n - 1 - strlen(out));
    return st;
}

START_TEST(test_cli_backends)
{
    if (!ms_test_cli("medsam backends")) return;
    char out[4096];
    ck_assert_int_eq(run_cli("backends", out, sizeof out), 0);
    ck_assert_msg(!strncmp(out, "cpu   usable: ", 14), "%s", out);
    const char *cuda = strstr(out, "\ncuda  ");
    ck_assert_msg(cuda != NULL, "%s", out);
    const char *want = g_cuda ? "usable (image encoder and mask decoder; the prompt encoder "
                                "runs on the CPU): "
                              : "unusable: ";
    ck_assert_msg(!strncmp(cuda + 7, want, strlen(want)), "%s", out);

    const char *seg = "segment -w none.msw -i none.png -o none.png --backend";
    char args[256];
    snprintf(args, sizeof args, "%s gpu", seg);
    ck_assert_int_eq(run_cli(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "--backend 'gpu': expected auto, cpu or cuda") != NULL, "%s", out);
    if (g_cuda) return;
    snprintf(args, sizeof args, "%s cuda", seg);
    ck_assert_int_eq(run_cli(args, out, sizeof out), 1);
    const char *nl = strchr(out, '\n');
    ck_assert_msg(strstr(out, "backend cuda unusable: ") && nl && !nl[1], "%s", out); /* one line */
}
END_TEST

int main(void)
{
    snprintf(g_cuda_lib, sizeof g_cuda_lib, "%s", ms_test_cuda_library());
    g_cpu = ms_backend_get(MS_BACKEND_CPU, NULL);
    g_cuda = ms_backend_get(MS_BACKEND_CUDA, &g_cuda_why);
    if (!g_cpu) return 1;
    if (!g_cuda) printf("SKIP backend ops: CUDA unusable: %s\n", g_cuda_why);
    Suite *s = suite_create("backend_ops");
    TCase *ops = tcase_create("ops"), *probe = tcase_create("probe");
    tcase_add_test(ops, test_sgemm);
    tcase_add_test(ops, test_linear);
    tcase_add_test(ops, test_layernorm);
    tcase_add_test(ops, test_layernorm_channels);
    tcase_add_test(ops, test_elementwise);
    tcase_add_test(ops, test_softmax_rows);
    tcase_add_test(ops, test_attention);
    tcase_add_test(ops, test_rel_pos);
    tcase_add_test(ops, test_layout);
    tcase_add_test(ops, test_conv);
    tcase_add_test(ops, test_cpu_backend_fresh);
    tcase_add_test(probe, test_no_driver_loads_nothing);
    tcase_add_test(probe, test_probe_reasons);
    tcase_add_test(probe, test_probe_built_library);
    tcase_add_test(probe, test_registry);
    tcase_add_test(probe, test_cli_backends);
    suite_add_tcase(s, ops);
    suite_add_tcase(s, probe);
    SRunner *r = srunner_create(s);
    /* A CUDA context does not survive fork(): every test runs in this process. */
    srunner_set_fork_status(r, CK_NOFORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    ms_backend_release_all();
    return failed ? 1 : 0;
}
