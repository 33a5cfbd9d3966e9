#include "util_model.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert/convert.h"
#include "io/npy.h"

/* ---- cases.jsonl ------------------------------------------------------------ */

/* The text after `"key":` in line, or NULL. */
static const char *after_key(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

/* The numbers of the nested array at p, flattened into out; *top gets the
 * number of its top-level elements. Returns the count, -1 when malformed. */
static int read_array(const char *p, double *out, int max, int *top)
{
    int depth = 0, n = 0;
    *top = 0;
    if (!p || *p != '[') return -1;
    while (*p) {
        if (*p == '[') {
            if (++depth == 2) (*top)++;
            p++;
        } else if (*p == ']') {
            if (--depth == 0) return n;
            p++;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char *end;
            if (n == max) return -1;
            out[n++] = strtod(p, &end);
            if (depth == 1) (*top)++;
            p = end;
        } else {
            p++;
        }
    }
    return -1;
}

static int read_string(const char *p, char *out, size_t cap)
{
    if (!p || *p != '"') return -1;
    const char *end = strchr(p + 1, '"');
    if (!end || (size_t)(end - p - 1) >= cap) return -1;
    memcpy(out, p + 1, (size_t)(end - p - 1));
    out[end - p - 1] = 0;
    return 0;
}

static int parse_case(const char *line, ms_case *c)
{
    enum { MAXV = MS_CASE_MAX_BATCH * MS_CASE_MAX_POINTS * 2 };
    double v[MAXV];
    int top, n;
    memset(c, 0, sizeof *c);
    if (read_string(after_key(line, "case"), c->name, sizeof c->name)) return -1;
    const char *p = after_key(line, "multimask");
    if (!p) return -1;
    c->multimask = atoi(p);
    if ((p = after_key(line, "boxes"))) {
        n = read_array(p, v, MAXV, &top);
        if (n < 0 || top > MS_CASE_MAX_BATCH || n != 4 * top) return -1;
        c->has_box = 1;
        c->batch = top;
        for (int i = 0; i < n; i++) c->boxes[i / 4][i % 4] = (float)v[i];
    }
    if ((p = after_key(line, "points"))) {
        n = read_array(p, v, MAXV, &top);
        if (n <= 0 || top > MS_CASE_MAX_BATCH || (c->batch && top != c->batch)) return -1;
        c->batch = top;
        c->n_points = n / (2 * top);
        if (n != 2 * top * c->n_points || c->n_points > MS_CASE_MAX_POINTS) return -1;
        for (int i = 0; i < n; i++)
            c->points[i / (2 * c->n_points)][(i / 2) % c->n_points][i % 2] = (float)v[i];
        n = read_array(after_key(line, "labels"), v, MAXV, &top);
        if (n != c->batch * c->n_points) return -1;
        for (int i = 0; i < n; i++) c->labels[i / c->n_points][i % c->n_points] = (int32_t)v[i];
    }
    if ((p = after_key(line, "mask_input")) && read_string(p, c->mask_input, sizeof c->mask_input))
        return -1;
    return c->batch > 0 ? 0 : -1;
}

int ms_test_read_cases(const char *path, ms_case *cases, int max, const char **err)
{
    static char msg[256];
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(msg, sizeof msg, "%s: cannot open", path);
        *err = msg;
        return -1;
    }
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '\n' || line[0] == 0) continue;
        if (n == max || parse_case(line, &cases[n])) {
            snprintf(msg, sizeof msg, "%s: line %d: not a case this reader understands", path,
                     n + 1);
            *err = msg;
            fclose(f);
            return -1;
        }
        n++;
    }
    fclose(f);
    return n;
}

/* ---- fixtures ---------------------------------------------------------------- */

static const char *fixture_in(const char *dir, const char *name)
{
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", dir, name);
    return ms_test_fixture(rel);
}

float *ms_test_read_f32(const char *dir, const char *name, int64_t n)
{
    const char *path = fixture_in(dir, name);
    ms_tensor *t = NULL;
    if (!path || ms_npy_read(path, &t) != MS_OK) return NULL;
    float *out = NULL;
    if (t->dtype == MS_F32 && ms_tensor_nelem(t) == n && (out = malloc((size_t)n * sizeof *out)))
        memcpy(out, t->data, (size_t)n * sizeof *out);
    ms_tensor_free(t);
    return out;
}

float *ms_test_read_image(const char *dir, int64_t size)
{
    const char *path = fixture_in(dir, "image_1024_u8.npy");
    ms_tensor *t = NULL;
    if (!path || ms_npy_read(path, &t) != MS_OK) return NULL;
    float *out = NULL;
    int64_t hw = size * size;
    if (t->dtype == MS_U8 && t->ndim == 3 && t->ne[0] == size && t->ne[1] == size &&
        t->ne[2] == 3 && (out = malloc((size_t)(3 * hw) * sizeof *out))) {
        const uint8_t *px = t->data;
        for (int64_t i = 0; i < hw; i++)
            for (int c = 0; c < 3; c++) out[c * hw + i] = (float)px[i * 3 + c] / 255.0f;
    }
    ms_tensor_free(t);
    return out;
}

/* ---- one case ------------------------------------------------------------------ */

typedef struct case_out {
    float *logits, *iou, *sparse, *dense, *mask;
} case_out;

static void free_out(case_out *o)
{
    free(o->logits);
    free(o->iou);
    free(o->sparse);
    free(o->dense);
    free(o->mask);
}

/* Compares out with the reference case_<name>_<what>.npy; an absent optional
 * reference is skipped (returns 0), an absent required one fails. */
static int compare(const char *dir, const ms_case *c, const char *what, const float *out,
                   int64_t n, int required, ms_diff *d, ms_case_result *r)
{
    char name[128];
    snprintf(name, sizeof name, "case_%s_%s.npy", c->name, what);
    if (!required && !fixture_in(dir, name)) return 0;
    float *ref = ms_test_read_f32(dir, name, n);
    if (!ref) {
        snprintf(r->msg, sizeof r->msg, "%s/%s: missing or not %lld float32 values", dir, name,
                 (long long)n);
        r->ok = 0;
        return 0;
    }
    *d = ms_test_diff(out, ref, n);
    free(ref);
    return 1;
}

void ms_test_run_case(ms_sam *m, ms_backend *be, const float *emb, const char *dir,
                      const ms_case *c, ms_case_result *r)
{
    const ms_sam_hparams *h = ms_sam_params(m);
    int64_t b = c->batch, nc = c->multimask ? h->n_multimask : 1, d = h->prompt_dim;
    int64_t hw = h->grid * h->grid, px = 16 * hw;
    case_out o = {0};
    memset(r, 0, sizeof *r);
    r->ok = 1;
    if (c->mask_input[0] && !(o.mask = ms_test_read_f32(dir, c->mask_input, b * px))) {
        snprintf(r->msg, sizeof r->msg, "%s/%s: missing or malformed", dir, c->mask_input);
        r->ok = 0;
        return;
    }
    ms_prompt p[MS_CASE_MAX_BATCH];
    for (int64_t i = 0; i < b; i++)
        p[i] = (ms_prompt){.has_box = c->has_box, .n_points = c->n_points,
                           .points = &c->points[i][0][0], .labels = c->labels[i],
                           .mask_input = o.mask ? o.mask + i * px : NULL};
    for (int64_t i = 0; i < b; i++) memcpy(p[i].box, c->boxes[i], sizeof p[i].box);
    int64_t ns = ms_sam_sparse_tokens(&p[0]);
    o.logits = malloc((size_t)(b * nc * px) * sizeof(float));
    o.iou = malloc((size_t)(b * nc) * sizeof(float));
    o.sparse = malloc((size_t)(b * ns * d + 1) * sizeof(float));
    o.dense = malloc((size_t)(b * d * hw) * sizeof(float));
    r->st = be ? ms_sam_decode_on(m, be, emb, p, b, c->multimask, o.logits, o.iou, o.sparse,
                                  o.dense)
               : ms_sam_decode(m, emb, p, b, c->multimask, o.logits, o.iou, o.sparse, o.dense);
    if (r->st != MS_OK) {
        snprintf(r->msg, sizeof r->msg, "decode: %s", ms_last_error());
        r->ok = 0;
        free_out(&o);
        return;
    }
    r->has_sparse = compare(dir, c, "sparse", o.sparse, b * ns * d, 0, &r->sparse, r);
    r->has_dense =
        c->mask_input[0] && compare(dir, c, "dense", o.dense, b * d * hw, 0, &r->dense, r);
    int have = compare(dir, c, "low_res_logits", o.logits, b * nc * px, 1, &r->logits, r);
    have &= compare(dir, c, "iou", o.iou, b * nc, 1, &r->iou, r);
    r->logits_out = o.logits;
    r->n_logits = b * nc * px;
    o.logits = NULL;
    free_out(&o);
    if (!have) return;
    r->mask_agree = (double)r->logits.n_sign_agree / (double)(b * nc * px);
    int ok = r->logits.max_abs <= 0.15 && r->logits.mean_abs <= 2e-3 && r->iou.max_abs <= 2e-3 &&
             r->mask_agree >= 0.999;
    ok &= !r->has_sparse || r->sparse.max_abs <= 2e-3;
    ok &= !r->has_dense || r->dense.max_abs <= 2e-3;
    if (!ok && r->ok)
        snprintf(r->msg, sizeof r->msg,
                 "%s/%s: logits max %.3g (<= 0.15) mean %.3g (<= 2e-3), iou %.3g (<= 2e-3), "
                 "masks %.3f %% (>= 99.9), sparse %.3g, dense %.3g (<= 2e-3)",
                 dir, c->name, r->logits.max_abs, r->logits.mean_abs, r->iou.max_abs,
                 100 * r->mask_agree, r->sparse.max_abs, r->dense.max_abs);
    r->ok &= ok;
}

/* ---- prepared models --------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void prepare_fail(ms_test_model *tm, const char *what, const char *detail)
{
    snprintf(tm->err, sizeof tm->err, "%.100s: %.400s", what, detail);
}

static void encode(ms_test_model *tm, const char *dir, int threads, ms_backend *be,
                   ms_sam_block_hook hook, void *ctx)
{
    ms_sam *m;
    if (ms_sam_create(tm->w, threads, &m) != MS_OK) {
        prepare_fail(tm, "ms_sam_create", ms_last_error());
        return;
    }
    const ms_sam_hparams *h = ms_sam_params(m);
    ms_sam_set_block_hook(m, hook, ctx);
    tm->depth = h->depth;
    tm->grid = h->grid;
    tm->embed_dim = h->embed_dim;
    tm->out_chans = h->out_chans;
    tm->prompt_dim = h->prompt_dim;
    float *img = ms_test_read_image(dir, h->img_size);
    tm->emb = malloc((size_t)(h->out_chans * h->grid * h->grid) * sizeof(float));
    double t0 = now_ms();
    if (!img || !tm->emb)
        prepare_fail(tm, dir, "image_1024_u8.npy: unreadable");
    else if ((be ? ms_sam_encode_on(m, be, img, tm->emb) : ms_sam_encode(m, img, tm->emb)) !=
             MS_OK)
        prepare_fail(tm, "encode", ms_last_error());
    tm->encode_ms = now_ms() - t0;
    tm->peak_bytes = ms_sam_peak_bytes(m);
    free(img);
    ms_sam_free(m);
}

ms_status ms_test_convert_fixture(const char *dir, const char *pth, ms_convert_dtype dtype,
                                  const char *name, char *msw, size_t n)
{
    char rel[512];
    snprintf(rel, sizeof rel, "%s/config.txt", dir);
    const char *cfg = ms_test_fixture(rel);
    if (!cfg) return ms_fail(MS_ERR_IO, "%s: missing", rel);
    snprintf(msw, n, "%s", ms_test_scratch(name));
    ms_convert_opts o = {.dtype = dtype, .config_path = cfg};
    return ms_convert(pth, msw, &o, NULL);
}

void ms_test_model_prepare(ms_test_model *tm, const char *dir, const char *pth, ms_convert_dtype dtype,
                           const char *name, int threads, ms_sam_block_hook hook, void *ctx)
{
    ms_test_model_prepare_on(tm, dir, pth, dtype, name, threads, NULL, hook, ctx);
}

void ms_test_model_prepare_on(ms_test_model *tm, const char *dir, const char *pth,
                              ms_convert_dtype dtype, const char *name, int threads,
                              ms_backend *be, ms_sam_block_hook hook, void *ctx)
{
    memset(tm, 0, sizeof *tm);
    if (ms_test_convert_fixture(dir, pth, dtype, name, tm->msw, sizeof tm->msw) != MS_OK) {
        prepare_fail(tm, "convert", ms_last_error());
        return;
    }
    if (ms_weights_open(tm->msw, 1, &tm->w) != MS_OK) {
        prepare_fail(tm, "open", ms_last_error());
        return;
    }
    tm->be = be;
    encode(tm, dir, threads, be, hook, ctx);
}

void ms_test_model_release(ms_test_model *tm)
{
    ms_weights_free(tm->w);
    free(tm->emb);
    if (tm->msw[0]) remove(tm->msw);
    memset(tm, 0, sizeof *tm);
}

/* ---- assertions ------------------------------------------------------------------ */

void ms_test_assert_close(const char *dir, const char *name, const float *x, int64_t n,
                          double tol)
{
    float *ref = ms_test_read_f32(dir, name, n);
    ck_assert_msg(ref != NULL, "%s/%s: missing or not %lld float32 values", dir, name,
                  (long long)n);
    ms_diff d = ms_test_diff(x, ref, n);
    free(ref);
    printf("%-16s %-32s max abs %.3g  mean abs %.3g\n", dir + 4, name, d.max_abs, d.mean_abs);
    fflush(stdout);
    ck_assert_msg(d.max_abs <= tol, "%s/%s: max abs %g at %lld (tolerance %g)", dir, name,
                  d.max_abs, (long long)d.argmax, tol);
}

void ms_test_print_case(const char *dir, const ms_case *c, const ms_case_result *r)
{
    printf("%-16s %-14s logits max %.3g mean %.3g  iou %.3g  masks %.4f %%", dir + 4, c->name,
           r->logits.max_abs, r->logits.mean_abs, r->iou.max_abs, 100 * r->mask_agree);
    if (r->has_sparse) printf("  sparse %.3g", r->sparse.max_abs);
    if (r->has_dense) printf("  dense %.3g", r->dense.max_abs);
    printf("\n");
    fflush(stdout);
}

ms_sam *ms_test_sam(const ms_test_model *tm, int threads)
{
    ms_sam *m = NULL;
    ck_assert_msg(ms_sam_create(tm->w, threads, &m) == MS_OK, "%s", ms_last_error());
    return m;
}

void ms_test_check_embeddings(const ms_test_model *tm, const char *dir)
{
    int64_t n = tm->out_chans * tm->grid * tm->grid;
    ms_test_assert_close(dir, "image_embeddings.npy", tm->emb, n, 2e-3);
}

void ms_test_check_dense_pe(const ms_test_model *tm, const char *dir, int threads)
{
    ms_sam *m = ms_test_sam(tm, threads);
    int64_t n = tm->prompt_dim * tm->grid * tm->grid;
    float *pe = malloc((size_t)n * sizeof *pe);
    ms_status st = ms_sam_dense_pe(m, pe);
    ms_sam_free(m);
    ck_assert_int_eq(st, MS_OK);
    ms_test_assert_close(dir, "dense_pe.npy", pe, n, 2e-3);
    free(pe);
}

void ms_test_check_case(const ms_test_model *tm, const char *dir, const ms_case *c, int threads)
{
    ms_sam *m = ms_test_sam(tm, threads);
    ms_case_result r;
    ms_test_run_case(m, tm->be, tm->emb, dir, c, &r);
    ms_sam_free(m); /* before the assertion: without fork, a failure must not leak it */
    free(r.logits_out);
    ms_test_print_case(dir, c, &r);
    ck_assert_msg(r.ok, "%s", r.msg);
}

/* Dice of the masks (x > 0) of two logit arrays; 1 when both are empty. */
static double mask_dice(const float *x, const float *y, int64_t n)
{
    int64_t both = 0, nx = 0, ny = 0;
    for (int64_t i = 0; i < n; i++) {
        nx += x[i] > 0;
        ny += y[i] > 0;
        both += x[i] > 0 && y[i] > 0;
    }
    return nx + ny ? 2.0 * (double)both / (double)(nx + ny) : 1.0;
}

void ms_test_case_dice(const ms_test_model *a, const char *dir_a, const ms_test_model *b,
                       const char *dir_b, const ms_case *c, int threads, double *ours,
                       double *ref)
{
    ms_case_result ra, rb;
    ms_sam *ma = ms_test_sam(a, threads), *mb = ms_test_sam(b, threads);
    ms_test_run_case(ma, a->be, a->emb, dir_a, c, &ra);
    ms_test_run_case(mb, b->be, b->emb, dir_b, c, &rb);
    ms_sam_free(ma);
    ms_sam_free(mb);
    char name[128];
    snprintf(name, sizeof name, "case_%s_low_res_logits.npy", c->name);
    int64_t n = ra.n_logits;
    float *xa = ms_test_read_f32(dir_a, name, n), *xb = ms_test_read_f32(dir_b, name, n);
    int ok = ra.st == MS_OK && rb.st == MS_OK && ra.logits_out && rb.logits_out && xa && xb &&
             rb.n_logits == n;
    *ours = ok ? mask_dice(ra.logits_out, rb.logits_out, n) : NAN;
    *ref = ok ? mask_dice(xa, xb, n) : NAN;
    free(ra.logits_out);
    free(rb.logits_out);
    free(xa);
    free(xb);
    ck_assert_msg(ok, "%s: decode or references failed: %s %s", c->name, ra.msg, rb.msg);
}
