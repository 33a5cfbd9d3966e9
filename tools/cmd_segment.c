/* `medsam segment` on a 2-D image and `medsam encode`: load, encode once,
 * decode the prompts, write the mask and whatever else was asked for. The
 * 3-D and challenge-format paths live in seg_volume.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/image.h"
#include "io/npy.h"
#include "medsam.h"
#include "tools/cli.h"
#include "tools/seg_args.h"
#include "tools/seg_image.h"
#include "tools/seg_volume.h"

/* The inputs of one 2-D run; freed together. */
typedef struct seg_state {
    ms_model *m;
    ms_tensor *u8;   /* the image as 8 bits (1, h, w, c): for the overlay */
    ms_tensor *mask_in;
    float *mask_in_f32;
} seg_state;

static void state_free(seg_state *s)
{
    ms_model_free(s->m);
    ms_tensor_free(s->u8);
    ms_tensor_free(s->mask_in);
    free(s->mask_in_f32);
}

ms_status ms_seg_load_model(const ms_seg_args *a, ms_model **out)
{
    ms_model_options opt = {a->threads, 0};
    MS_TRY(ms_model_load(a->weights, &opt, out));
    if (a->preprocess) MS_TRY(ms_model_set_preprocess(*out, a->preprocess));
    MS_TRY(ms_model_set_backend(*out, a->backend ? a->backend : "auto", a->tf32));
    if (a->verbose) {
        const char *device, *name = ms_model_backend(*out, &device);
        fprintf(stderr, "backend: %s (%s)\n", name, device);
    }
    return MS_OK;
}

/* --raw: a (S, S, 3) uint8 array fed as image / 255, channel-first. */
static ms_status load_raw(seg_state *s, const ms_seg_args *a, float **chw)
{
    int64_t n = ms_model_input_size(s->m);
    MS_TRY(ms_npy_read(a->image, &s->u8));
    ms_tensor *t = s->u8;
    if (t->dtype != MS_U8 || t->ndim != 3 || t->ne[0] != n || t->ne[1] != n || t->ne[2] != 3)
        return ms_fail(MS_ERR_FORMAT, "%s: --raw needs a (%lld, %lld, 3) uint8 array", a->image,
                       (long long)n, (long long)n);
    int64_t shape[4] = {1, n, n, 3};
    void *data = t->data;
    ms_tensor_init(t, MS_U8, 4, shape); /* same bytes, seen as a 1-slice volume */
    t->data = data;
    t->owns_data = 1;
    *chw = malloc(sizeof(float) * 3 * (size_t)(n * n));
    if (!*chw) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", a->image);
    const uint8_t *px = t->data;
    for (int64_t i = 0; i < n * n; i++)
        for (int c = 0; c < 3; c++) (*chw)[c * n * n + i] = (float)px[3 * i + c] / 255.0f;
    return MS_OK;
}

static ms_status load_image(seg_state *s, const ms_seg_args *a)
{
    ms_image_opts io = {a->series, a->volume, NULL, NULL, NULL};
    ms_volume *v;
    MS_TRY(ms_image_load(a->image, &io, &v));
    ms_status st = MS_OK;
    if (ms_volume_nz(v) != 1)
        st = ms_fail(MS_ERR_ARG, "%s: a volume of %lld slices: give --box3d x0,y0,z0,x1,y1,z1",
                     a->image, (long long)ms_volume_nz(v));
    if (st == MS_OK) st = ms_seg_volume_u8(v, a, &s->u8);
    ms_volume_free(v);
    return st;
}

/* --embedding: a saved (1, C, g, g) or (C, g, g) float32 array. */
static ms_status load_embedding(seg_state *s, const ms_seg_args *a)
{
    int64_t e[3];
    ms_model_embedding_shape(s->m, e);
    ms_tensor *t;
    MS_TRY(ms_npy_read(a->embedding, &t));
    int off = t->ndim == 4 && t->ne[0] == 1;
    ms_status st = MS_OK;
    if (t->dtype != MS_F32 || t->ndim != 3 + off || t->ne[off] != e[0] || t->ne[off + 1] != e[1] ||
        t->ne[off + 2] != e[2])
        st = ms_fail(MS_ERR_FORMAT, "%s: expected a float32 (1, %lld, %lld, %lld) embedding",
                     a->embedding, (long long)e[0], (long long)e[1], (long long)e[2]);
    if (st == MS_OK)
        st = ms_set_embedding(s->m, t->data, s->u8->ne[1], s->u8->ne[2], a->raw);
    ms_tensor_free(t);
    return st;
}

static ms_status load_mask_input(seg_state *s, const ms_seg_args *a)
{
    int64_t n = ms_model_mask_size(s->m);
    MS_TRY(ms_npy_read(a->mask_input, &s->mask_in));
    const ms_tensor *t = s->mask_in;
    int64_t ne = ms_tensor_nelem(t);
    if (ne != n * n || t->ne[t->ndim - 1] != n || t->dtype == MS_BOOL || t->dtype == MS_Q8)
        return ms_fail(MS_ERR_FORMAT, "%s: expected (%lld, %lld) mask logits", a->mask_input,
                       (long long)n, (long long)n);
    s->mask_in_f32 = malloc(sizeof(float) * (size_t)ne);
    if (!s->mask_in_f32) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", a->mask_input);
    ms_convert_to_f32(s->mask_in_f32, t->data, t->dtype, ne);
    return MS_OK;
}

static ms_status write_f32(const char *path, const float *x, int ndim, const int64_t *shape)
{
    ms_tensor t;
    ms_tensor_init(&t, MS_F32, ndim, shape);
    t.data = (void *)x;
    return ms_npy_write(path, &t);
}

/* Label map: prompt b paints label b + 1 with its best mask, in order. */
static uint8_t *paint_labels(const ms_result *r)
{
    int64_t hw = r->height * r->width;
    uint8_t *lab = calloc((size_t)hw, 1);
    if (!lab) return NULL;
    for (int64_t b = 0; b < r->batch; b++) {
        int64_t best = 0;
        for (int64_t k = 1; k < r->n_masks; k++)
            if (r->iou[b * r->n_masks + k] > r->iou[b * r->n_masks + best]) best = k;
        const uint8_t *m = r->masks + (b * r->n_masks + best) * hw;
        uint8_t label = (uint8_t)(b + 1 > 255 ? 255 : b + 1);
        for (int64_t i = 0; i < hw; i++)
            if (m[i]) lab[i] = label;
    }
    return lab;
}

/* Every requested file, or none: a failure removes what this run wrote. */
static ms_status write_outputs(const seg_state *s, const ms_seg_args *a, const ms_result *r)
{
    uint8_t *lab = paint_labels(r);
    if (!lab) return ms_fail(MS_ERR_NOMEM, "out of memory");
    const char *written[4];
    int n = 0;
    ms_status st = ms_seg_write_mask2d(a->output, lab, r->height, r->width, r->batch == 1);
    if (st == MS_OK) written[n++] = a->output;
    if (st == MS_OK && a->overlay) {
        st = ms_seg_write_overlay(a->overlay, s->u8, lab, a->boxes, a->n_boxes, a->points,
                                  a->n_points);
        if (st == MS_OK) written[n++] = a->overlay;
    }
    free(lab);
    int64_t bc[2] = {r->batch, r->n_masks};
    int64_t logit_shape[4] = {r->batch, r->n_masks, r->low_res, r->low_res};
    if (st == MS_OK && a->save_logits) {
        st = write_f32(a->save_logits, r->low_res_logits, 4, logit_shape);
        if (st == MS_OK) written[n++] = a->save_logits;
    }
    if (st == MS_OK && a->save_iou) st = write_f32(a->save_iou, r->iou, 2, bc);
    while (st != MS_OK && n > 0) unlink(written[--n]);
    return st;
}

static ms_status save_embedding(const ms_model *m, const char *path)
{
    int64_t e[3];
    ms_model_embedding_shape(m, e);
    float *emb = malloc(sizeof(float) * (size_t)(e[0] * e[1] * e[2]));
    if (!emb) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    ms_status st = ms_get_embedding(m, emb);
    int64_t shape[4] = {1, e[0], e[1], e[2]};
    if (st == MS_OK) st = write_f32(path, emb, 4, shape);
    free(emb);
    return st;
}

static void print_timings(const ms_model *m, int decoded)
{
    ms_timings t;
    ms_model_timings(m, &t);
    fprintf(stderr, "preprocess %.1f ms, encoder %.1f ms", t.preprocess_ms, t.encode_ms);
    if (decoded)
        fprintf(stderr, ", prompt+decoder %.1f ms, postprocess %.1f ms", t.decode_ms,
                t.postprocess_ms);
    fprintf(stderr, ", peak activations %.1f MB\n", t.peak_activation_bytes / 1e6);
}

/* Loads the image and leaves its embedding in the model. */
static ms_status encode_input(seg_state *s, const ms_seg_args *a)
{
    MS_TRY(ms_seg_load_model(a, &s->m));
    float *chw = NULL;
    ms_status st = a->raw ? load_raw(s, a, &chw) : load_image(s, a);
    if (st == MS_OK && a->embedding)
        st = load_embedding(s, a);
    else if (st == MS_OK && a->raw)
        st = ms_encode_prepared(s->m, chw);
    else if (st == MS_OK) {
        ms_image img = ms_seg_slice_image(s->u8, 0);
        st = ms_encode_image(s->m, &img);
    }
    free(chw);
    return st;
}

static ms_status segment_2d(seg_state *s, const ms_seg_args *a)
{
    if (!a->n_boxes && !a->n_points)
        return ms_fail(MS_ERR_ARG, "give at least one --box or --point");
    MS_TRY(encode_input(s, a));
    if (a->mask_input) MS_TRY(load_mask_input(s, a));
    ms_prompts p = {a->boxes, a->n_boxes, a->points, a->n_points, s->mask_in_f32, a->multimask};
    ms_result r;
    MS_TRY(ms_decode(s->m, &p, &r));
    ms_status st = write_outputs(s, a, &r);
    if (st == MS_OK && a->save_embedding) st = save_embedding(s->m, a->save_embedding);
    if (st == MS_OK && a->verbose) print_timings(s->m, 1);
    ms_result_free(&r);
    return st;
}

int cmd_segment(int argc, char **argv)
{
    ms_seg_args a;
    int r = ms_seg_parse("segment", argc, argv, &a);
    if (r) return r == 2 ? 0 : 1;
    ms_status st;
    if (a.npz || a.n_boxes3d) {
        st = ms_seg_volume(&a);
    } else {
        seg_state s = {0};
        st = segment_2d(&s, &a);
        state_free(&s);
    }
    return st == MS_OK ? 0 : ms_cli_error("segment", "%s", ms_last_error());
}

int cmd_encode(int argc, char **argv)
{
    ms_seg_args a;
    int r = ms_seg_parse("encode", argc, argv, &a);
    if (r) return r == 2 ? 0 : 1;
    seg_state s = {0};
    ms_status st = encode_input(&s, &a);
    if (st == MS_OK) st = save_embedding(s.m, a.output);
    if (st == MS_OK && a.verbose) print_timings(s.m, 0);
    state_free(&s);
    return st == MS_OK ? 0 : ms_cli_error("encode", "%s", ms_last_error());
}
