/* bench_model: whole-model timings of the engine, plus the machine's large
 * sgemm throughput measured in the same process so that "encoder time as a
 * fraction of sgemm speed" is taken in one run (bench/README.md).
 *
 *   build/bench/bench_model [-t THREADS] [-r REPEAT] [--json] WEIGHTS.msw
 *
 * Times (best of REPEAT): ms_weights_open, ms_sam_create, sgemm 4096x2304x768
 * and 4096^3 (ms_sgemm and OpenBLAS), the image encoder with per-stage times from the block hook,
 * the prompt encoder + mask decoder for one box and for a batch of 3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#include "bench/boxes.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "model/sam.h"
#include "weights/msw.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef ms_status (*bench_fn)(void *ctx);

/* Best time in ms over `repeat` samples after one warm-up call. Fast calls
 * are looped so each sample lasts >= 50 ms (the same rule as torch_ref.py). */
static ms_status best_of(bench_fn fn, void *ctx, int repeat, double *ms)
{
    double t = now_s();
    MS_TRY(fn(ctx));
    double once = now_s() - t;
    int inner = once >= 0.05 ? 1 : (int)(0.05 / (once > 1e-9 ? once : 1e-9));
    double best = INFINITY;
    for (int r = 0; r < repeat; r++) {
        t = now_s();
        for (int i = 0; i < inner; i++) MS_TRY(fn(ctx));
        double s = (now_s() - t) / inner;
        if (s < best) best = s;
    }
    *ms = best * 1e3;
    return MS_OK;
}

/* ---- sgemm reference ----------------------------------------------------- */
/* The shapes and layouts of bench_kernels: 4096x2304x768 with B transposed
 * as a linear layer's weight is, 4096^3 plain; each through the engine's
 * ms_sgemm and through OpenBLAS directly, so the reference is the best GEMM
 * this machine has, not only ours. */
typedef struct {
    int64_t m, n, k;
    int tb, openblas;
    const char *name;
} gemm_shape;

#define N_GEMM 4
static const gemm_shape k_gemm[N_GEMM] = {
    {4096, 2304, 768, 1, 0, "sgemm 4096x2304x768 NT"},
    {4096, 4096, 4096, 0, 0, "sgemm 4096x4096x4096 NN"},
    {4096, 2304, 768, 1, 1, "openblas 4096x2304x768 NT"},
    {4096, 4096, 4096, 0, 1, "openblas 4096x4096x4096 NN"}};

typedef struct {
    const gemm_shape *s;
    float *a, *b, *c;
} gemm_ctx;

static ms_status run_gemm(void *p)
{
    gemm_ctx *g = p;
    const gemm_shape *s = g->s;
    int64_t ldb = s->tb ? s->k : s->n;
    if (s->openblas)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, (blasint)s->m,
                    (blasint)s->n, (blasint)s->k, 1.0f, g->a, (blasint)s->k, g->b, (blasint)ldb, 0.0f,
                    g->c, (blasint)s->n);
    else
        ms_sgemm(0, s->tb, s->m, s->n, s->k, 1.0f, g->a, s->k, g->b, ldb, 0.0f, g->c, s->n);
    return MS_OK;
}

static ms_status bench_sgemm(const gemm_shape *s, int repeat, double *ms)
{
    int64_t m = s->m, n = s->n, k = s->k;
    gemm_ctx g = {s, malloc(sizeof(float) * m * k), malloc(sizeof(float) * k * n),
                  malloc(sizeof(float) * m * n)};
    ms_status st = MS_OK;
    if (!g.a || !g.b || !g.c) st = ms_fail(MS_ERR_NOMEM, "sgemm: out of memory");
    if (st == MS_OK) {
        for (int64_t i = 0; i < m * k; i++) g.a[i] = (float)((i * 7 % 13) - 6) / 8;
        for (int64_t i = 0; i < k * n; i++) g.b[i] = (float)((i * 5 % 11) - 5) / 8;
        st = best_of(run_gemm, &g, repeat, ms);
    }
    free(g.a);
    free(g.b);
    free(g.c);
    return st;
}

/* ---- model --------------------------------------------------------------- */
/* Stage clock fed by the block hook: block -1 ends the patch embedding,
 * block i ends encoder block i; the neck is what follows the last block. */
typedef struct {
    const ms_sam_hparams *hp;
    double last, patch, window, global;
} stage_clock;

static void on_block(void *p, int block, const float *x)
{
    stage_clock *c = p;
    double t = now_s(), dt = t - c->last;
    c->last = t;
    if (block < 0) {
        c->patch += dt;
        return;
    }
    for (int64_t i = 0; i < c->hp->n_global; i++)
        if (c->hp->global_blocks[i] == block) {
            c->global += dt;
            return;
        }
    c->window += dt;
}

typedef struct {
    ms_sam *sam;
    const float *emb;
    const ms_prompt *prompts;
    int64_t batch;
    float *logits, *iou;
} decode_ctx;

static ms_status run_decode(void *p)
{
    decode_ctx *d = p;
    return ms_sam_decode(d->sam, d->emb, d->prompts, d->batch, 0, d->logits, d->iou, NULL, NULL);
}

/* One box and three boxes, best of 10 * repeat single calls each, the two
 * alternating: their ratio is a target, and on a shared machine a burst of
 * load that hits a block of one size's samples but not the other's would
 * skew it. A call lasts 10-50 ms, long enough to time alone. */
static ms_status bench_decoder(ms_sam *sam, const float *emb, const ms_prompt *prompts,
                               float *logits, float *iou, int repeat, double ms[2])
{
    decode_ctx d[2] = {{sam, emb, prompts, 1, logits, iou}, {sam, emb, prompts, 3, logits, iou}};
    ms[0] = ms[1] = INFINITY;
    for (int r = 0; r <= 10 * repeat; r++)
        for (int b = 0; b < 2; b++) {
            double t = now_s();
            MS_TRY(run_decode(&d[b]));
            t = (now_s() - t) * 1e3;
            if (r > 0 && t < ms[b]) ms[b] = t; /* sample 0 warms up */
        }
    return MS_OK;
}

typedef struct {
    const char *path;
    ms_weights *w;
} open_ctx;

static ms_status run_open(void *p)
{
    open_ctx *o = p;
    ms_weights_free(o->w);
    o->w = NULL;
    return ms_weights_open(o->path, 0, &o->w);
}

typedef struct {
    const ms_weights *w;
    int threads;
    ms_sam *sam;
} create_ctx;

static ms_status run_create(void *p)
{
    create_ctx *c = p;
    ms_sam_free(c->sam);
    c->sam = NULL;
    return ms_sam_create(c->w, c->threads, &c->sam);
}

typedef struct {
    double open, create, gemm[N_GEMM], patch, window, global, neck, encoder, dec[2];
    uint64_t peak_act;
} results;

static ms_status bench(const char *path, int threads, int repeat, results *r, ms_sam_hparams *hp_out)
{
    open_ctx o = {path, NULL};
    create_ctx c = {NULL, threads, NULL};
    float *image = NULL, *emb = NULL, *logits = NULL, *iou = NULL;
    ms_status st = best_of(run_open, &o, repeat, &r->open);
    c.w = o.w;
    if (st == MS_OK) st = best_of(run_create, &c, repeat, &r->create);
    if (st != MS_OK) goto done;
    const ms_sam_hparams *hp = ms_sam_params(c.sam);
    *hp_out = *hp;
    int64_t s = hp->img_size, g = hp->grid, lr = 4 * g;
    image = malloc(sizeof(float) * 3 * s * s);
    emb = malloc(sizeof(float) * hp->out_chans * g * g);
    logits = malloc(sizeof(float) * 3 * lr * lr);
    iou = malloc(sizeof(float) * 3);
    if (!image || !emb || !logits || !iou) {
        st = ms_fail(MS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < 3 * s * s; i++) image[i] = (float)(((i * 2654435761u) >> 24) & 255) / 255;

    /* Each stage keeps its best over the runs, like torch_ref.py. */
    r->encoder = r->patch = r->window = r->global = r->neck = INFINITY;
    stage_clock clk = {hp, 0, 0, 0, 0};
    ms_sam_set_block_hook(c.sam, on_block, &clk);
    for (int i = 0; i < repeat && st == MS_OK; i++) {
        clk.patch = clk.window = clk.global = 0;
        double t0 = clk.last = now_s();
        st = ms_sam_encode(c.sam, image, emb);
        double t1 = now_s();
        r->encoder = fmin(r->encoder, (t1 - t0) * 1e3);
        r->patch = fmin(r->patch, clk.patch * 1e3);
        r->window = fmin(r->window, clk.window * 1e3);
        r->global = fmin(r->global, clk.global * 1e3);
        r->neck = fmin(r->neck, (t1 - clk.last) * 1e3);
    }
    ms_sam_set_block_hook(c.sam, NULL, NULL);

    ms_prompt prompts[3];
    bench_box_prompts(prompts);
    st = bench_decoder(c.sam, emb, prompts, logits, iou, repeat, r->dec);
    if (st == MS_OK) r->peak_act = ms_sam_peak_bytes(c.sam);
done:
    free(image);
    free(emb);
    free(logits);
    free(iou);
    ms_sam_free(c.sam);
    ms_weights_free(o.w);
    return st;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_model [-t THREADS] [-r REPEAT] [--json] WEIGHTS.msw\n"
               "  -t N    threads for the model and OpenBLAS (default 2)\n"
               "  -r N    best of N (default 2)\n"
               "  --json  print JSON instead of a table\n");
}

int main(int argc, char **argv)
{
    int threads = 2, repeat = 2, json = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!path || threads < 1 || repeat < 1) {
        usage(stderr);
        return 2;
    }
    ms_kernels_set_threads(threads);

    results r;
    ms_sam_hparams hp = {0};
    ms_status st = MS_OK;
    for (int i = 0; i < N_GEMM && st == MS_OK; i++)
        st = bench_sgemm(&k_gemm[i], repeat, &r.gemm[i]);
    if (st == MS_OK) st = bench(path, threads, repeat, &r, &hp);
    if (st != MS_OK) {
        fprintf(stderr, "bench_model: %s\n", ms_last_error());
        return 1;
    }
    double gflops[N_GEMM], best_gflops = 0;
    for (int i = 0; i < N_GEMM; i++) {
        gflops[i] = 2.0 * k_gemm[i].m * k_gemm[i].n * k_gemm[i].k / (r.gemm[i] * 1e6);
        if (gflops[i] > best_gflops) best_gflops = gflops[i];
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    if (json) {
        printf("{\n \"cpu\": \"%s\",\n \"threads\": %d,\n \"repeat\": %d,\n", ms_cpu_description(),
               threads, repeat);
        printf(" \"embed_dim\": %lld,\n \"depth\": %lld,\n", (long long)hp.embed_dim,
               (long long)hp.depth);
        printf(" \"sgemm\": {");
        for (int i = 0; i < N_GEMM; i++)
            printf("%s\"%s\": {\"ms\": %.3f, \"gflops\": %.1f}", i ? ", " : "", k_gemm[i].name,
                   r.gemm[i], gflops[i]);
        printf("},\n \"sgemm_gflops\": %.1f,\n", best_gflops);
        printf(" \"stages\": {\"open_weights\": %.3f, \"create\": %.3f, \"enc_patch_embed\": %.3f, "
               "\"enc_blocks_window\": %.3f, \"enc_blocks_global\": %.3f, \"enc_neck\": %.3f, "
               "\"encoder\": %.3f, \"decoder_box1\": %.3f, \"decoder_box3\": %.3f},\n",
               r.open, r.create, r.patch, r.window, r.global, r.neck, r.encoder, r.dec[0], r.dec[1]);
        printf(" \"peak_activation_bytes\": %llu,\n \"peak_rss_mb\": %.1f\n}\n",
               (unsigned long long)r.peak_act, ru.ru_maxrss / 1024.0);
        return 0;
    }
    printf("%s, %d threads, best of %d\n", ms_cpu_description(), threads, repeat);
    for (int i = 0; i < N_GEMM; i++)
        printf("  %-27s %10.2f ms  %7.1f GFLOP/s\n", k_gemm[i].name, r.gemm[i], gflops[i]);
    const char *names[] = {"open weights", "create", "patch embed", "window blocks", "global blocks",
                           "neck", "encoder", "decoder, 1 box", "decoder, 3 boxes"};
    double ms[] = {r.open, r.create, r.patch, r.window, r.global, r.neck, r.encoder, r.dec[0], r.dec[1]};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) printf("  %-27s %10.2f ms\n", names[i], ms[i]);
    printf("  %-27s %10.1f MB\n  %-27s %10.1f MB\n", "peak activations",
           r.peak_act / 1048576.0, "peak RSS", ru.ru_maxrss / 1024.0);
    return 0;
}
