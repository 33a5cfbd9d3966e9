/* Kernel benchmark on ViT-B shapes: best-of-N wall time per op, GFLOP/s.
 *   bench_kernels [-t threads] [-n reps] [-o op] [--json] [--avx2] [--ref]
 * -o runs only the ops whose name contains `op` (sgemm, linear, attn, ...);
 * --avx2 caps the kernels at AVX2, --ref forces the reference path.
 * GEMM-based ops use the kernels' own threads (-t); attention runs as the
 * model runs it: (head x query range) items spread over a pool of -t
 * threads; the element-wise ops are single-threaded kernels. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/internal.h"
#include "kernels/kernels.h"

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the whole process: on a shared machine, cpu_ms / threads
 * close to ms says the op was not starved, and GFLOP per CPU-second is the
 * per-core rate whatever the machine's load. */
static double cpu_s(void)
{
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static float *buf(int64_t n, uint64_t seed)
{
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((seed >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
    return p;
}

typedef struct bench {
    const char *op;
    char shape[64];
    double ms, cpu_ms, gflop;
} bench;

static bench g_results[32];
static int g_n_results, g_reps = 5;
static const char *g_only;

static int want(const char *op)
{
    return !g_only || strstr(op, g_only);
}

typedef void (*bench_fn)(void *ctx);

static void run(const char *op, const char *shape, double gflop, bench_fn fn, void *ctx)
{
    fn(ctx); /* warm-up: page faults, thread start, packing buffers */
    double best = INFINITY, best_cpu = 0;
    for (int r = 0; r < g_reps; r++) {
        double t = now_s(), c = cpu_s();
        fn(ctx);
        t = now_s() - t;
        if (t < best) best = t, best_cpu = cpu_s() - c;
    }
    bench *b = &g_results[g_n_results++];
    b->op = op;
    snprintf(b->shape, sizeof b->shape, "%s", shape);
    b->ms = best * 1e3;
    b->cpu_ms = best_cpu * 1e3;
    b->gflop = gflop;
}

/* ---- the ops ----------------------------------------------------------------- */

typedef struct gemm_ctx {
    int64_t m, n, k;
    int tb;
    float *a, *b, *c;
} gemm_ctx;

static void do_openblas(void *p)
{
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, (blasint)g->m,
                (blasint)g->n, (blasint)g->k, 1.0f, g->a, (blasint)g->k, g->b,
                (blasint)(g->tb ? g->k : g->n), 0.0f, g->c, (blasint)g->n);
}

static void do_gemm(void *p)
{
    gemm_ctx *g = p;
    ms_sgemm(0, g->tb, g->m, g->n, g->k, 1.0f, g->a, g->k, g->b, g->tb ? g->k : g->n, 0.0f, g->c,
             g->n);
}

/* ms_sgemm, or with openblas set cblas_sgemm itself (its figure for this
 * machine, for comparison). */
static void bench_gemm(int64_t m, int64_t n, int64_t k, int tb, int openblas)
{
    gemm_ctx g = {m, n, k, tb, buf(m * k, 1), buf(k * n, 2), buf(m * n, 3)};
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lldx%lld %s", (long long)m, (long long)n, (long long)k,
             tb ? "NT" : "NN");
    run(openblas ? "openblas" : "sgemm", shape, 2e-9 * (double)m * (double)n * (double)k,
        openblas ? do_openblas : do_gemm, &g);
    free(g.a), free(g.b), free(g.c);
}

typedef struct linear_ctx {
    int64_t m;
    ms_tensor *w;
    float *x, *y, *bias;
    void *scratch;
    ms_epilogue epi;
} linear_ctx;

static void do_linear(void *p)
{
    linear_ctx *l = p;
    ms_linear(l->y, l->w->ne[0], l->x, l->w->ne[1], l->m, l->w, l->bias, l->epi, 0, l->scratch);
}

static void bench_linear(ms_dtype dt, int64_t m, int64_t k, int64_t n, ms_epilogue epi)
{
    int64_t shape[2] = {n, k};
    ms_tensor *w = ms_tensor_new(dt, 2, shape);
    float *wf = buf(n * k, 4);
    if (dt == MS_F32) memcpy(w->data, wf, (size_t)(n * k) * 4);
    if (dt == MS_F16)
        for (int64_t i = 0; i < n * k; i++) ((uint16_t *)w->data)[i] = ms_f32_to_f16(wf[i]);
    if (dt == MS_Q8) /* scale 1/127, values spread over the int8 range */
        for (int64_t b = 0; b < n * k / MS_Q8_BLOCK; b++) {
            uint8_t *blk = (uint8_t *)w->data + b * MS_Q8_BLOCK_BYTES;
            float s = 1.0f / 127;
            memcpy(blk, &s, 4);
            for (int i = 0; i < MS_Q8_BLOCK; i++)
                blk[4 + i] = (uint8_t)(int8_t)lrintf(wf[b * MS_Q8_BLOCK + i] * 127);
        }
    size_t sb = ms_linear_scratch_bytes(w, m);
    linear_ctx l = {m, w, buf(m * k, 5), buf(m * n, 6), buf(n, 7), sb ? malloc(sb) : NULL, epi};
    char s[64];
    snprintf(s, sizeof s, "%lldx%lld->%lld %s%s", (long long)m, (long long)k, (long long)n,
             ms_dtype_name(dt), epi == MS_EPI_GELU ? " +gelu" : "");
    run("linear", s, 2e-9 * (double)m * (double)n * (double)k, do_linear, &l);
    ms_tensor_free(w);
    free(wf), free(l.x), free(l.y), free(l.bias), free(l.scratch);
}

typedef struct attn_ctx {
    ms_attn a[12]; /* one per head */
    int heads, windows;
    int64_t chunk;
    float *scratch;
    size_t scratch_floats;
    ms_pool *pool;
} attn_ctx;

static void attn_items(void *p, int64_t begin, int64_t end, int worker)
{
    attn_ctx *c = p;
    int64_t per_head = (c->a[0].nq + c->chunk - 1) / c->chunk;
    for (int64_t it = begin; it < end; it++) {
        const ms_attn *a = &c->a[it / per_head];
        int64_t q0 = (it % per_head) * c->chunk, q1 = q0 + c->chunk < a->nq ? q0 + c->chunk : a->nq;
        ms_attention(a, q0, q1, c->scratch + (size_t)worker * c->scratch_floats);
    }
}

static void do_attention(void *p)
{
    attn_ctx *c = p;
    int64_t per_head = (c->a[0].nq + c->chunk - 1) / c->chunk;
    for (int w = 0; w < c->windows; w++)
        ms_pool_for_dynamic(c->pool, c->heads * per_head, attn_items, c);
}

/* `windows` independent windows of `heads` heads each, as one block's worth:
 * nq queries against nk keys. grid > 0: the encoder's rel-pos attention
 * (bias terms given), q, k and v interleaved per token as in SAM's qkv;
 * grid == 0: the decoder's, no bias, q, k and v in matrices of their own. */
static void bench_attention(const char *op, int64_t nq, int64_t nk, int64_t d, int64_t grid,
                            int heads, int windows, ms_pool *pool, int64_t chunk)
{
    attn_ctx c = {.heads = heads, .chunk = chunk, .pool = pool};
    int64_t ld = (grid ? 3 : 1) * heads * d;
    float *q = buf(nq * ld, 8), *out = buf(nq * heads * d, 9);
    float *k = grid ? q + heads * d : buf(nk * ld, 13);
    float *v = grid ? k + heads * d : buf(nk * ld, 14);
    float *bh = buf(heads * nq * grid, 10), *bw = buf(heads * nq * grid, 11);
    for (int h = 0; h < heads; h++)
        c.a[h] = (ms_attn){.q = q + h * d,
                           .k = k + h * d,
                           .v = v + h * d,
                           .ldq = ld,
                           .ldk = ld,
                           .ldv = ld,
                           .out = out + h * d,
                           .ldo = heads * d,
                           .nq = nq,
                           .nk = nk,
                           .d = d,
                           .scale = 1.0f / sqrtf((float)d),
                           .bias_h = grid ? bh + h * nq * grid : NULL,
                           .bias_w = grid ? bw + h * nq * grid : NULL,
                           .kh = grid,
                           .kw = grid};
    c.scratch_floats = ms_attention_scratch_floats(&c.a[0]);
    c.scratch = buf((int64_t)c.scratch_floats * ms_pool_size(pool), 12);
    char s[64];
    if (grid)
        snprintf(s, sizeof s, "%d x %dh x %lld tok, d%lld, relpos", windows, heads, (long long)nq,
                 (long long)d);
    else
        snprintf(s, sizeof s, "%dh x %lldq x %lld tok, d%lld", heads, (long long)nq,
                 (long long)nk, (long long)d);
    c.windows = windows;
    run(op, s, 4e-9 * (double)windows * heads * (double)nq * (double)nk * (double)d,
        do_attention, &c);
    free(q), free(out), free(bh), free(bw), free(c.scratch);
    if (!grid) free(k), free(v);
}

typedef struct elt_ctx {
    float *x, *y, *g, *b;
    int64_t rows, dim;
} elt_ctx;

static void do_layernorm(void *p)
{
    elt_ctx *e = p;
    ms_layernorm(e->y, e->dim, e->x, e->dim, e->rows, e->dim, e->g, e->b, 1e-6f);
}

static void do_gelu(void *p) /* in place, again and again: values stay finite */
{
    elt_ctx *e = p;
    ms_gelu(e->y, e->rows * e->dim);
}

static void do_layernorm2d(void *p)
{
    elt_ctx *e = p;
    ms_layernorm_channels(e->y, e->x, e->dim, e->rows, e->g, e->b, 1e-6f);
}

static void bench_elementwise(void)
{
    elt_ctx e = {
        buf(4096 * 3072, 13), buf(4096 * 3072, 14), buf(3072, 15), buf(3072, 16), 4096, 768};
    run("layernorm", "4096x768", 0, do_layernorm, &e);
    e.dim = 256;
    run("layernorm2d", "256 ch x 4096 px", 0, do_layernorm2d, &e);
    e.dim = 3072;
    run("gelu", "4096x3072", 0, do_gelu, &e);
    free(e.x), free(e.y), free(e.g), free(e.b);
}

typedef struct conv_ctx {
    float *x, *y, *scratch, *bias;
    ms_tensor *w;
    int64_t cin, h, wd;
    int stride, pad, transpose;
} conv_ctx;

static void do_conv(void *p)
{
    conv_ctx *c = p;
    if (c->transpose)
        ms_conv_transpose2x2(c->y, c->x, c->cin, c->h, c->wd, c->w, c->bias, c->scratch);
    else
        ms_conv2d(c->y, c->x, c->cin, c->h, c->wd, c->w, c->bias, c->stride, c->pad, c->scratch);
}

static void bench_conv(const char *op, const char *shape, int64_t cin, int64_t cout, int64_t h,
                       int64_t k, int stride, int pad, int transpose)
{
    int64_t ws[4] = {transpose ? cin : cout, transpose ? cout : cin, k, k};
    ms_tensor *w = ms_tensor_new(MS_F32, 4, ws);
    float *wf = buf(cin * cout * k * k, 17);
    memcpy(w->data, wf, (size_t)(cin * cout * k * k) * 4);
    int64_t ho = transpose ? 2 * h : (h + 2 * pad - k) / stride + 1;
    size_t sf = transpose ? (size_t)(4 * cout * h * h)
                          : ms_conv2d_scratch_floats(cin, h, h, w, stride, pad);
    conv_ctx c = {buf(cin * h * h, 18),
                  buf(cout * ho * ho, 19),
                  buf((int64_t)sf, 20),
                  buf(cout, 21),
                  w,
                  cin,
                  h,
                  h,
                  stride,
                  pad,
                  transpose};
    double flop = transpose ? 2.0 * cin * cout * 4 * h * h : 2.0 * cout * ho * ho * cin * k * k;
    run(op, shape, flop * 1e-9, do_conv, &c);
    ms_tensor_free(w);
    free(wf), free(c.x), free(c.y), free(c.scratch), free(c.bias);
}

int main(int argc, char **argv)
{
    int threads = 2, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc)
            g_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-o") && i + 1 < argc)
            g_only = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--avx2"))
            ms_kernels_cap_isa(MS_ISA_AVX2);
        else if (!strcmp(argv[i], "--ref"))
            ms_kernels_force_reference(1);
        else {
            fprintf(stderr, "usage: %s [-t threads] [-n reps] [-o op] [--json] [--avx2] [--ref]\n",
                    argv[0]);
            return 2;
        }
    }
    ms_kernels_set_threads(threads);
    ms_pool *pool = ms_pool_create(threads);
    if (!pool) return 1;

    if (want("sgemm")) bench_gemm(4096, 2304, 768, 1, 0);
    if (want("sgemm")) bench_gemm(4096, 4096, 4096, 0, 0);
    if (want("openblas")) bench_gemm(4096, 4096, 4096, 0, 1);
    if (want("linear")) bench_linear(MS_F32, 4096, 768, 3072, MS_EPI_GELU);
    if (want("linear")) bench_linear(MS_F16, 4096, 768, 3072, MS_EPI_GELU);
    if (want("linear")) bench_linear(MS_Q8, 4096, 768, 3072, MS_EPI_GELU);
    if (want("linear")) bench_linear(MS_F32, 7, 256, 2048, MS_EPI_RELU);
    if (want("attn window")) bench_attention("attn window", 196, 196, 64, 14, 12, 25, pool, 196);
    if (want("attn global")) bench_attention("attn global", 4096, 4096, 64, 64, 12, 1, pool, 512);
    if (want("attn few")) bench_attention("attn few", 7, 4096, 16, 0, 8, 1, pool, 7);
    if (want("layernorm gelu")) bench_elementwise();
    if (want("conv3x3")) bench_conv("conv3x3", "256->256 @64x64", 256, 256, 64, 3, 1, 1, 0);
    if (want("patch embed"))
        bench_conv("patch embed", "3->768 16x16/16 @1024", 3, 768, 1024, 16, 16, 0, 0);
    if (want("convT 2x2")) bench_conv("convT 2x2", "256->64 @64x64", 256, 64, 64, 2, 2, 0, 1);
    ms_pool_free(pool);

    if (json) {
        printf("{\"cpu\": \"%s\", \"threads\": %d, \"results\": [\n", ms_cpu_description(),
               threads);
        for (int i = 0; i < g_n_results; i++) {
            bench *b = &g_results[i];
            printf("  {\"op\": \"%s\", \"shape\": \"%s\", \"ms\": %.4f, \"cpu_ms\": %.4f, "
                   "\"gflops\": %.2f, \"gflops_per_cpu_s\": %.2f}%s\n",
                   b->op, b->shape, b->ms, b->cpu_ms, b->gflop / b->ms * 1e3,
                   b->gflop / b->cpu_ms * 1e3, i + 1 < g_n_results ? "," : "");
        }
        printf("]}\n");
        return 0;
    }
    printf("cpu: %s\nthreads: %d, best of %d\n\n", ms_cpu_description(), threads, g_reps);
    printf("%-12s %-34s %9s %9s %9s %11s\n", "op", "shape", "ms", "cpu ms", "GFLOP/s",
           "GFLOP/cpu-s");
    for (int i = 0; i < g_n_results; i++) {
        bench *b = &g_results[i];
        printf("%-12s %-34s %9.3f %9.3f ", b->op, b->shape, b->ms, b->cpu_ms);
        if (b->gflop > 0)
            printf("%9.1f %11.1f\n", b->gflop / b->ms * 1e3, b->gflop / b->cpu_ms * 1e3);
        else
            printf("%9s %11s\n", "-", "-");
    }
    return 0;
}
