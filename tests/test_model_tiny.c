/* model/: the tiny SAM of the fixtures (sam/tiny_s1: dim 96, depth 4, global
 * blocks 1 and 3) against the official code's float64 outputs: the patch
 * embedding and every encoder block, the image embedding, the dense PE and
 * the seven prompt cases; the same with q8 weights (q8/). The same again
 * with the encoder run op by op through a compute backend's table
 * (ms_sam_encode_on): on the CPU backend always, on CUDA when usable (else
 * skipped, saying why). Also: a wrong or missing tensor is refused naming
 * it, and malformed batches are refused.
 *
 * The checkpoint is converted and encoded once in main(). The tests run
 * without fork: a forked child would have none of the worker threads of the
 * kernels' and the models' pools. Each test builds its own model. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "medsam.h"
#include "model/sam.h"
#include "util.h"
#include "util_model.h"
#include "weights/msw.h"

#define DIR "sam/tiny_s1"
#define DIR_Q8 "sam/tiny_s1/q8"
#define THREADS 2

/* The encoder's outputs after the patch embedding + pos ([0]) and after
 * each block i ([i + 1]), kept by the block hook. */
typedef struct captured {
    const ms_test_model *tm;
    float *blocks[MS_SAM_MAX_BLOCKS + 1];
} captured;

/* The encoder through a backend's table: f32, q8 and f16 weights. */
typedef struct on_backend {
    const char *name;
    ms_backend *be; /* NULL: unusable, why says why */
    const char *why;
    ms_test_model f32, q8, f16;
    captured cap;
} on_backend;

static struct {
    const char *skip; /* fixtures absent: every test passes saying so */
    char err[512];    /* cases.jsonl unreadable */
    ms_test_model f32, f16, q8;
    captured cap;
    on_backend be[MS_BACKEND_COUNT];
    ms_case cases[MS_CASE_MAX];
    int n_cases;
} g;

static void capture(void *ctx, int block, const float *x)
{
    captured *c = ctx;
    size_t bytes = (size_t)(c->tm->grid * c->tm->grid * c->tm->embed_dim) * sizeof(float);
    c->blocks[block + 1] = malloc(bytes);
    if (c->blocks[block + 1]) memcpy(c->blocks[block + 1], x, bytes);
}

static void setup_backend(on_backend *b, ms_backend_id id, const char *pth)
{
    char name[64];
    b->name = ms_backend_id_name(id);
    b->be = ms_backend_get(id, &b->why);
    if (!b->be) return;
    b->cap.tm = &b->f32;
    snprintf(name, sizeof name, "tiny_f32_%s.msw", b->name);
    ms_test_model_prepare_on(&b->f32, DIR, pth, MS_CONVERT_F32, name, THREADS, b->be, capture,
                             &b->cap);
    snprintf(name, sizeof name, "tiny_q8_%s.msw", b->name);
    ms_test_model_prepare_on(&b->q8, DIR, pth, MS_CONVERT_Q8, name, THREADS, b->be, NULL, NULL);
    snprintf(name, sizeof name, "tiny_f16_%s.msw", b->name);
    ms_test_model_prepare_on(&b->f16, DIR, pth, MS_CONVERT_F16, name, THREADS, b->be, NULL, NULL);
}

static void setup(void)
{
    const char *found = ms_test_fixture(DIR "/model.pth");
    if (!found) {
        g.skip = DIR;
        return;
    }
    char pth[1024]; /* found is a buffer that later lookups reuse */
    snprintf(pth, sizeof pth, "%s", found);
    g.cap.tm = &g.f32;
    ms_test_model_prepare(&g.f32, DIR, pth, MS_CONVERT_F32, "tiny_f32.msw", THREADS, capture, &g.cap);
    ms_test_model_prepare(&g.q8, DIR, pth, MS_CONVERT_Q8, "tiny_q8.msw", THREADS, NULL, NULL);
    /* The fixture weights are exact in half precision: the f16 file must
     * meet the same references at the same tolerances. */
    ms_test_model_prepare(&g.f16, DIR, pth, MS_CONVERT_F16, "tiny_f16.msw", THREADS, NULL, NULL);
    ms_test_cuda_library();
    for (int id = 0; id < MS_BACKEND_COUNT; id++) setup_backend(&g.be[id], (ms_backend_id)id, pth);
    const char *err;
    g.n_cases = ms_test_read_cases(ms_test_fixture(DIR "/cases.jsonl"), g.cases, MS_CASE_MAX, &err);
    if (g.n_cases < 0) snprintf(g.err, sizeof g.err, "%s", err);
}

/* 1: run the test; 0: skipped (said so). */
static int ready(const ms_test_model *tm)
{
    if (g.skip) {
        ms_test_skip(g.skip);
        return 0;
    }
    ck_assert_msg(tm->err[0] == 0, "setup: %s", tm->err);
    ck_assert_msg(g.err[0] == 0, "setup: %s", g.err);
    return 1;
}

static void check_block(const captured *c, int i)
{
    if (!ready(c->tm)) return;
    int block = i - 1;
    char name[64];
    if (block < 0) snprintf(name, sizeof name, "enc_patch_embed_pos.npy");
    else snprintf(name, sizeof name, "enc_block%02d.npy", block);
    ck_assert_ptr_nonnull(c->blocks[i]);
    int64_t n = c->tm->grid * c->tm->grid * c->tm->embed_dim;
    ms_test_assert_close(DIR, name, c->blocks[i], n, 2e-3);
}

START_TEST(test_encoder_blocks) { check_block(&g.cap, _i); }
END_TEST

/* 1: backend id's half runs; 0: it is unusable here (said so). */
static int backend_ready(int id)
{
    if (g.skip) {
        ms_test_skip(g.skip);
        return 0;
    }
    if (g.be[id].be) return 1;
    printf("SKIP encoder on backend %s: unusable: %s\n", g.be[id].name, g.be[id].why);
    return 0;
}

/* _i = backend id * (depth + 1) + the block's slot */
START_TEST(test_backend_blocks)
{
    int per = (int)g.f32.depth + 1, id = _i / per;
    if (backend_ready(id)) check_block(&g.be[id].cap, _i % per);
}
END_TEST

START_TEST(test_backend_embeddings)
{
    on_backend *b = &g.be[_i / 3];
    if (!backend_ready(_i / 3)) return;
    const ms_test_model *tm[3] = {&b->f32, &b->q8, &b->f16};
    const char *dir[3] = {DIR, DIR_Q8, DIR};
    if (!ready(tm[_i % 3])) return;
    printf("backend %s: ", b->name);
    ms_test_check_embeddings(tm[_i % 3], dir[_i % 3]);
}
END_TEST

static void check_embeddings(const ms_test_model *tm, const char *dir)
{
    if (ready(tm)) ms_test_check_embeddings(tm, dir);
}

START_TEST(test_image_embeddings) { check_embeddings(&g.f32, DIR); }
END_TEST

START_TEST(test_image_embeddings_q8) { check_embeddings(&g.q8, DIR_Q8); }
END_TEST

START_TEST(test_image_embeddings_f16) { check_embeddings(&g.f16, DIR); }
END_TEST

START_TEST(test_dense_pe)
{
    if (ready(&g.f32)) ms_test_check_dense_pe(&g.f32, DIR, THREADS);
}
END_TEST

static void run_case(const ms_test_model *tm, const char *dir, int i)
{
    if (!ready(tm)) return;
    ck_assert_msg(g.n_cases == 7, "cases.jsonl: %d cases, expected 7", g.n_cases);
    ms_test_check_case(tm, dir, &g.cases[i], THREADS);
}

/* The public API's backend choice: the CPU by default and for "cpu"; auto
 * and cuda take CUDA exactly when it is usable, else auto falls back to the
 * CPU and cuda fails saying why; the encoding lands on the references. */
START_TEST(test_api_backend)
{
    if (!ready(&g.f32)) return;
    ms_model *m;
    ms_model_options opt = {THREADS, 0};
    ck_assert_msg(ms_model_load(g.f32.msw, &opt, &m) == 0, "%s", ms_last_error());
    const char *device;
    ck_assert_str_eq(ms_model_backend(m, &device), "cpu");
    ck_assert_int_ne(ms_model_set_backend(m, "gpu", 0), 0);
    ck_assert_msg(strstr(ms_last_error(), "expected auto, cpu or cuda"), "%s", ms_last_error());
    ck_assert_int_eq(ms_model_set_backend(m, "cpu", 0), 0);
    ck_assert_str_eq(ms_model_backend(m, NULL), "cpu");
    on_backend *cuda = &g.be[MS_BACKEND_CUDA];
    int cuda_rc = ms_model_set_backend(m, "cuda", 0);
    if (cuda->be) {
        ck_assert_int_eq(cuda_rc, 0);
        ck_assert_str_eq(ms_model_backend(m, &device), "cuda");
        ck_assert_str_eq(device, cuda->be->device);
    } else {
        ck_assert_int_ne(cuda_rc, 0);
        ck_assert_msg(strstr(ms_last_error(), cuda->why), "%s", ms_last_error());
    }
    ck_assert_int_eq(ms_model_set_backend(m, "auto", 0), 0);
    ck_assert_str_eq(ms_model_backend(m, NULL), cuda->be ? "cuda" : "cpu");
    float *img = ms_test_read_image(DIR, ms_model_input_size(m));
    int64_t shape[3];
    ms_model_embedding_shape(m, shape);
    float *emb = malloc((size_t)(shape[0] * shape[1] * shape[2]) * sizeof(float));
    ck_assert(img && emb);
    ck_assert_msg(ms_encode_prepared(m, img) == 0, "%s", ms_last_error());
    ck_assert_int_eq(ms_get_embedding(m, emb), 0);
    printf("api, backend %s: ", ms_model_backend(m, NULL));
    ms_test_assert_close(DIR, "image_embeddings.npy", emb, shape[0] * shape[1] * shape[2], 2e-3);
    free(img);
    free(emb);
    ms_model_free(m);
}
END_TEST

/* _i = backend id * 2 * n_cases + (q8 ? n_cases : 0) + the case */
START_TEST(test_backend_cases)
{
    int n = g.n_cases > 0 ? g.n_cases : 1, id = _i / (2 * n), q8 = (_i / n) % 2;
    const ms_test_model *tm = q8 ? &g.be[id].q8 : &g.be[id].f32;
    if (!backend_ready(id) || !ready(tm)) return;
    printf("backend %s: ", g.be[id].name);
    run_case(tm, q8 ? DIR_Q8 : DIR, _i % n);
}
END_TEST

START_TEST(test_cases) { run_case(&g.f32, DIR, _i); }
END_TEST

START_TEST(test_cases_q8) { run_case(&g.q8, DIR_Q8, _i); }
END_TEST

START_TEST(test_cases_f16) { run_case(&g.f16, DIR, _i); }
END_TEST

START_TEST(test_peak_bytes)
{
    if (!ready(&g.f32)) return;
    ms_sam *m = ms_test_sam(&g.f32, THREADS);
    const ms_sam_hparams *h = ms_sam_params(m);
    /* The residual stream and the qkv projection are live together. */
    uint64_t lower = (uint64_t)(4 * h->grid * h->grid * h->embed_dim) * sizeof(float);
    ck_assert_uint_ge(g.f32.peak_bytes, lower);
    ck_assert_uint_eq(ms_sam_peak_bytes(m), 0);
    ms_sam_free(m);
}
END_TEST

/* A batch is decoded in groups of prompts in lockstep: each prompt of a
 * batch longer than a group, multimask, with a box and a point, gives what
 * it gives alone, sparse embedding included. Stacked tokens change the
 * GEMMs' summation order, which this decoder amplifies about a thousandfold
 * (fixtures README), hence 1e-3 on the logits. */
#define BATCH 6
START_TEST(test_batch_is_per_prompt)
{
    if (!ready(&g.f32)) return;
    ms_sam *m = ms_test_sam(&g.f32, THREADS);
    const ms_sam_hparams *h = ms_sam_params(m);
    int64_t px = 3 * 16 * h->grid * h->grid, sp = 3 * h->prompt_dim;
    ms_prompt p[BATCH];
    float pts[BATCH][2];
    int32_t label = 1;
    for (int b = 0; b < BATCH; b++) {
        float x0 = 60.0f + 110.0f * b, y0 = 900.0f - 95.0f * b;
        p[b] = (ms_prompt){.has_box = 1, .box = {x0, y0 - 200, x0 + 150, y0},
                           .n_points = 1, .points = pts[b], .labels = &label};
        pts[b][0] = x0 + 75;
        pts[b][1] = y0 - 100;
    }
    float *all = malloc((size_t)(BATCH * px) * sizeof(float)), *one = malloc((size_t)px * sizeof(float));
    float *sparse_all = malloc((size_t)(BATCH * sp) * sizeof(float));
    float sparse_one[3 * 256], iou_all[3 * BATCH], iou_one[3];
    ck_assert_int_le(sp, 3 * 256);
    ck_assert_int_eq(ms_sam_decode(m, g.f32.emb, p, BATCH, 1, all, iou_all, sparse_all, NULL),
                     MS_OK);
    for (int b = 0; b < BATCH; b++) {
        ck_assert_int_eq(ms_sam_decode(m, g.f32.emb, &p[b], 1, 1, one, iou_one, sparse_one, NULL),
                         MS_OK);
        ms_diff d = ms_test_diff(all + b * px, one, px);
        ck_assert_double_le(d.max_abs, 1e-3);
        for (int t = 0; t < 3; t++) ck_assert_float_eq_tol(iou_all[3 * b + t], iou_one[t], 1e-4);
        d = ms_test_diff(sparse_all + b * sp, sparse_one, sp);
        ck_assert_double_le(d.max_abs, 1e-6);
        d = ms_test_diff(all + ((b + 1) % BATCH) * px, one, px);
        ck_assert_double_gt(d.max_abs, 1e-2); /* and another prompt differs */
    }
    free(all);
    free(one);
    free(sparse_all);
    ms_sam_free(m);
}
END_TEST

START_TEST(test_bad_prompts_refused)
{
    if (!ready(&g.f32)) return;
    ms_sam *m = ms_test_sam(&g.f32, THREADS);
    const ms_sam_hparams *h = ms_sam_params(m);
    int64_t px = 16 * h->grid * h->grid;
    float *logits = malloc((size_t)(2 * px) * sizeof(float)), iou[2];
    float pts[2] = {10, 20};
    int32_t bad_label = 2;
    ms_prompt mixed[2] = {{.has_box = 1, .box = {1, 2, 300, 400}},
                          {.n_points = 1, .points = pts, .labels = (const int32_t[]){1}}};
    ck_assert_int_eq(ms_sam_decode(m, g.f32.emb, mixed, 2, 0, logits, iou, NULL, NULL), MS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ms_last_error(), "prompt 1"));
    ms_prompt label = {.n_points = 1, .points = pts, .labels = &bad_label};
    ms_status st = ms_sam_decode(m, g.f32.emb, &label, 1, 0, logits, iou, NULL, NULL);
    ck_assert_int_eq(st, MS_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ms_last_error(), "label 2"));
    st = ms_sam_decode(m, g.f32.emb, &label, 0, 0, logits, iou, NULL, NULL);
    ck_assert_int_eq(st, MS_ERR_ARG);
    free(logits);
    ms_sam_free(m);
}
END_TEST

/* Copies the converted weights into path with one tensor changed: dropped
 * (rows < 0) or cut to `rows` rows. */
static void write_altered(const char *path, const char *victim, int64_t rows)
{
    ms_msw_writer *wr = ms_msw_writer_create();
    ck_assert_ptr_nonnull(wr);
    for (int64_t i = 0; i < ms_weights_meta_count(g.f32.w); i++) {
        const char *key = ms_weights_meta_key(g.f32.w, i);
        int64_t v, n;
        double f;
        const char *s;
        const int64_t *arr;
        switch (ms_weights_meta_type(g.f32.w, i)) {
        case MS_META_I64:
            ck_assert_int_eq(ms_weights_meta_i64(g.f32.w, key, &v), MS_OK);
            ck_assert_int_eq(ms_msw_writer_meta_i64(wr, key, v), MS_OK);
            break;
        case MS_META_F64:
            ck_assert_int_eq(ms_weights_meta_f64(g.f32.w, key, &f), MS_OK);
            ck_assert_int_eq(ms_msw_writer_meta_f64(wr, key, f), MS_OK);
            break;
        case MS_META_STR:
            ck_assert_int_eq(ms_weights_meta_str(g.f32.w, key, &s), MS_OK);
            ck_assert_int_eq(ms_msw_writer_meta_str(wr, key, s), MS_OK);
            break;
        case MS_META_I64_ARRAY:
            ck_assert_int_eq(ms_weights_meta_i64_array(g.f32.w, key, &arr, &n), MS_OK);
            ck_assert_int_eq(ms_msw_writer_meta_i64_array(wr, key, arr, n), MS_OK);
            break;
        }
    }
    for (int64_t i = 0; i < ms_weights_count(g.f32.w); i++) {
        const ms_tensor *t = ms_weights_tensor(g.f32.w, i);
        const char *name = ms_weights_name(g.f32.w, i);
        int64_t shape[MS_MAX_DIMS];
        memcpy(shape, t->ne, sizeof shape);
        if (!strcmp(name, victim)) {
            if (rows < 0) continue;
            shape[0] = rows;
        }
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= shape[d];
        ck_assert_int_eq(ms_msw_writer_add(wr, name, t->dtype, t->ndim, shape, t->data,
                                           ms_dtype_bytes(t->dtype, (uint64_t)n)),
                         MS_OK);
    }
    ck_assert_int_eq(ms_msw_writer_save(wr, path, NULL, NULL), MS_OK);
    ms_msw_writer_free(wr);
}

static void assert_refused(const char *victim, int64_t rows, const char *what)
{
    const char *path = ms_test_scratch("tiny_altered.msw");
    write_altered(path, victim, rows);
    ms_weights *w;
    ck_assert_int_eq(ms_weights_open(path, 1, &w), MS_OK);
    ms_sam *m = NULL;
    ck_assert_int_eq(ms_sam_create(w, THREADS, &m), MS_ERR_FORMAT);
    ck_assert_ptr_null(m);
    const char *e = ms_last_error();
    ck_assert_msg(strstr(e, victim) && strstr(e, what), "message: %s", e);
    ms_weights_free(w);
    remove(path);
}

START_TEST(test_bad_tensors_named)
{
    if (!ready(&g.f32)) return;
    /* A rel-pos table of another length would need interpolation. */
    assert_refused("image_encoder.blocks.0.attn.rel_pos_h", 26, "expected (27, 32)");
    assert_refused("image_encoder.blocks.1.attn.rel_pos_w", 100, "expected (127, 32)");
    assert_refused("mask_decoder.iou_token.weight", -1, "missing");
    assert_refused("mask_decoder.output_hypernetworks_mlps.3.layers.2.weight", 4, "shape");
}
END_TEST

int main(void)
{
    setup(); /* a failed setup fails every test with its message */
    Suite *s = suite_create("model_tiny");
    TCase *tc = tcase_create("model_tiny");
    tcase_set_timeout(tc, 120);
    int cases = g.n_cases > 0 ? g.n_cases : 1;
    tcase_add_loop_test(tc, test_encoder_blocks, 0, (int)g.f32.depth + 1);
    tcase_add_test(tc, test_image_embeddings);
    tcase_add_test(tc, test_image_embeddings_q8);
    tcase_add_test(tc, test_image_embeddings_f16);
    tcase_add_test(tc, test_dense_pe);
    tcase_add_loop_test(tc, test_cases, 0, cases);
    tcase_add_loop_test(tc, test_cases_q8, 0, cases);
    tcase_add_loop_test(tc, test_cases_f16, 0, cases);
    tcase_add_loop_test(tc, test_backend_blocks, 0, MS_BACKEND_COUNT * ((int)g.f32.depth + 1));
    tcase_add_loop_test(tc, test_backend_embeddings, 0, MS_BACKEND_COUNT * 3);
    tcase_add_loop_test(tc, test_backend_cases, 0, MS_BACKEND_COUNT * 2 * cases);
    tcase_add_test(tc, test_api_backend);
    tcase_add_test(tc, test_peak_bytes);
    tcase_add_test(tc, test_batch_is_per_prompt);
    tcase_add_test(tc, test_bad_prompts_refused);
    tcase_add_test(tc, test_bad_tensors_named);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_set_fork_status(r, CK_NOFORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    ms_test_model_release(&g.f32);
    ms_test_model_release(&g.q8);
    ms_test_model_release(&g.f16);
    for (int i = 0; i <= MS_SAM_MAX_BLOCKS; i++) free(g.cap.blocks[i]);
    for (int id = 0; id < MS_BACKEND_COUNT; id++) {
        on_backend *b = &g.be[id];
        ms_test_model_release(&b->f32);
        ms_test_model_release(&b->q8);
        ms_test_model_release(&b->f16);
        for (int i = 0; i <= MS_SAM_MAX_BLOCKS; i++) free(b->cap.blocks[i]);
    }
    ms_backend_release_all();
    return failed ? 1 : 0;
}
