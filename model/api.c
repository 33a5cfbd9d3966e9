/* The public API (include/medsam.h) over the network (model/sam.h) and
 * MedSAM's / SAM's pre- and post-processing. Holds one image embedding at a
 * time, so an image is encoded once and decoded for any number of prompts.
 * ref: segment_anything/predictor.py (SamPredictor), MedSAM_Inference.py */
#include "medsam.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "model/postprocess.h"
#include "model/preprocess.h"
#include "model/sam.h"
#include "weights/msw.h"

struct ms_model {
    ms_weights *w;
    ms_sam *sam;
    const ms_sam_hparams *hp;
    int sam_preprocess; /* 0: MedSAM's, 1: SAM's */
    ms_backend *be;     /* the encoder's and decoder's backend; NULL: the CPU path of model/ */
    float *input;       /* (3, S, S) network input */
    float *emb;         /* (out_chans, grid, grid) */
    int has_emb;
    /* The frame prompts are given in and masks are returned in: the image
     * (img_h, img_w); for SAM, the resized image occupies (in_h, in_w) of
     * the padded input. raw: prompts are already in the network frame. */
    int64_t img_h, img_w, in_h, in_w;
    int raw;
    ms_timings t;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int ms_model_load(const char *path, const ms_model_options *opt, ms_model **out)
{
    ms_model_options def = {0, 0};
    if (!opt) opt = &def;
    ms_model *m = calloc(1, sizeof *m);
    if (!m) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    ms_status st = ms_weights_open(path, opt->verify_crc, &m->w);
    if (st == MS_OK) st = ms_sam_create(m->w, opt->n_threads, &m->sam);
    if (st != MS_OK) {
        ms_model_free(m);
        return st;
    }
    m->hp = ms_sam_params(m->sam);
    const char *pre = "medsam";
    if (ms_weights_meta_str(m->w, "preprocess", &pre) != MS_OK) pre = "medsam";
    ms_clear_error();
    st = ms_model_set_preprocess(m, pre);
    int64_t s = m->hp->img_size, g = m->hp->grid;
    m->input = malloc(sizeof(float) * 3 * (size_t)(s * s));
    m->emb = malloc(sizeof(float) * (size_t)(m->hp->out_chans * g * g));
    if (st == MS_OK && (!m->input || !m->emb))
        st = ms_fail(MS_ERR_NOMEM, "%s: cannot allocate the image buffers", path);
    if (st != MS_OK) {
        ms_model_free(m);
        return st;
    }
    *out = m;
    return MS_OK;
}

void ms_model_free(ms_model *m)
{
    if (!m) return;
    ms_sam_free(m->sam);
    ms_weights_free(m->w);
    free(m->input);
    free(m->emb);
    free(m);
}

int64_t ms_model_input_size(const ms_model *m) { return m->hp->img_size; }
int64_t ms_model_mask_size(const ms_model *m) { return 4 * m->hp->grid; }

void ms_model_embedding_shape(const ms_model *m, int64_t shape[3])
{
    shape[0] = m->hp->out_chans;
    shape[1] = shape[2] = m->hp->grid;
}

const char *ms_model_preprocess(const ms_model *m) { return m->sam_preprocess ? "sam" : "medsam"; }

int ms_model_set_preprocess(ms_model *m, const char *name)
{
    if (!strcmp(name, "medsam"))
        m->sam_preprocess = 0;
    else if (!strcmp(name, "sam"))
        m->sam_preprocess = 1;
    else
        return ms_fail(MS_ERR_ARG, "preprocess '%s': expected medsam or sam", name);
    return MS_OK;
}

int ms_model_set_backend(ms_model *m, const char *choice, int tf32)
{
    ms_backend *be;
    MS_TRY(ms_backend_select(choice, &be));
    /* the CPU backend's table is for testing ops: the CPU path of model/
     * is the fast one */
    m->be = strcmp(be->name, "cpu") ? be : NULL;
    if (m->be && m->be->set_tf32(m->be, tf32) != MS_OK)
        return ms_fail(MS_ERR_UNSUPPORTED, "backend %s: %s", m->be->name, m->be->error);
    return MS_OK;
}

const char *ms_model_backend(const ms_model *m, const char **device)
{
    if (device) *device = m->be ? m->be->device : ms_cpu_description();
    return m->be ? m->be->name : "cpu";
}

static int run_encoder(ms_model *m)
{
    double t0 = now_ms();
    ms_status st = m->be ? ms_sam_encode_on(m->sam, m->be, m->input, m->emb)
                         : ms_sam_encode(m->sam, m->input, m->emb);
    m->t.encode_ms = now_ms() - t0;
    m->t.peak_activation_bytes = ms_sam_peak_bytes(m->sam);
    m->has_emb = st == MS_OK;
    return st;
}

static void set_frame(ms_model *m, int64_t h, int64_t w, int raw)
{
    int64_t s = m->hp->img_size;
    m->img_h = raw ? s : h;
    m->img_w = raw ? s : w;
    m->raw = raw;
    m->in_h = m->in_w = s;
    if (!raw && m->sam_preprocess) ms_sam_resized_size(h, w, s, &m->in_h, &m->in_w);
}

/* Image pixels to the network frame, in each convention's own arithmetic. */
static void scale_coords(const ms_model *m, const double *in, int n_pairs, float *out)
{
    int64_t s = m->hp->img_size;
    for (int i = 0; i < n_pairs; i++) {
        if (m->raw) {
            out[2 * i] = (float)in[2 * i];
            out[2 * i + 1] = (float)in[2 * i + 1];
        } else if (m->sam_preprocess) {
            ms_sam_point_scale(in + 2 * i, m->img_w, m->img_h, s, out + 2 * i);
        } else {
            ms_medsam_point_scale(in + 2 * i, m->img_w, m->img_h, s, out + 2 * i);
        }
    }
}

static ms_dtype pixel_dtype(ms_pixel_type t)
{
    return t == MS_PIXEL_U16 ? MS_U16 : t == MS_PIXEL_F32 ? MS_F32 : MS_U8;
}

int ms_encode_image(ms_model *m, const ms_image *img)
{
    if (img->height <= 0 || img->width <= 0 || img->channels < 1 || img->channels > 4)
        return ms_fail(MS_ERR_ARG, "image: bad size %lldx%lldx%lld", (long long)img->height,
                       (long long)img->width, (long long)img->channels);
    ms_tensor t;
    int64_t shape[3] = {img->height, img->width, img->channels};
    ms_tensor_init(&t, pixel_dtype(img->type), img->channels == 1 ? 2 : 3, shape);
    t.data = (void *)img->data;
    double t0 = now_ms();
    ms_status st = m->sam_preprocess ? ms_sam_preprocess(&t, m->hp->img_size, m->input)
                                     : ms_medsam_preprocess(&t, m->hp->img_size, m->input);
    m->t.preprocess_ms = now_ms() - t0;
    if (st != MS_OK) return st;
    set_frame(m, img->height, img->width, 0);
    return run_encoder(m);
}

int ms_encode_prepared(ms_model *m, const float *chw)
{
    memcpy(m->input, chw, sizeof(float) * 3 * (size_t)(m->hp->img_size * m->hp->img_size));
    m->t.preprocess_ms = 0;
    set_frame(m, 0, 0, 1);
    return run_encoder(m);
}

int ms_set_embedding(ms_model *m, const float *emb, int64_t height, int64_t width, int raw)
{
    if (!raw && (height <= 0 || width <= 0))
        return ms_fail(MS_ERR_ARG, "embedding: bad image size %lldx%lld", (long long)height,
                       (long long)width);
    int64_t g = m->hp->grid;
    memcpy(m->emb, emb, sizeof(float) * (size_t)(m->hp->out_chans * g * g));
    set_frame(m, height, width, raw);
    m->has_emb = 1;
    m->t.encode_ms = 0;
    return MS_OK;
}

int ms_get_embedding(const ms_model *m, float *out)
{
    if (!m->has_emb) return ms_fail(MS_ERR_ARG, "no image has been encoded");
    int64_t g = m->hp->grid;
    memcpy(out, m->emb, sizeof(float) * (size_t)(m->hp->out_chans * g * g));
    return MS_OK;
}

/* Prompts in the network frame, one per box (or one for points alone). */
static ms_status build_prompts(const ms_model *m, const ms_prompts *p, ms_prompt *out,
                               float *pts, int32_t *labels)
{
    for (int64_t i = 0; i < p->n_points; i++) {
        double xy[2] = {p->points[i].x, p->points[i].y};
        scale_coords(m, xy, 1, pts + 2 * i);
        labels[i] = p->points[i].label ? 1 : 0;
    }
    int64_t batch = p->n_boxes ? p->n_boxes : 1;
    for (int64_t b = 0; b < batch; b++) {
        ms_prompt *q = &out[b];
        memset(q, 0, sizeof *q);
        if (p->n_boxes) {
            const ms_box *bx = &p->boxes[b];
            if (!(bx->x1 >= bx->x0 && bx->y1 >= bx->y0))
                return ms_fail(MS_ERR_ARG, "box %lld: x1 < x0 or y1 < y0", (long long)b);
            double corners[4] = {bx->x0, bx->y0, bx->x1, bx->y1};
            q->has_box = 1;
            scale_coords(m, corners, 2, q->box);
        }
        q->n_points = p->n_points;
        q->points = pts;
        q->labels = labels;
        q->mask_input = p->mask_input;
    }
    return MS_OK;
}

static ms_status alloc_result(ms_result *r, int64_t batch, int64_t n_masks, int64_t low,
                              int64_t h, int64_t w)
{
    memset(r, 0, sizeof *r);
    r->batch = batch;
    r->n_masks = n_masks;
    r->low_res = low;
    r->height = h;
    r->width = w;
    size_t bm = (size_t)(batch * n_masks);
    r->low_res_logits = malloc(sizeof(float) * bm * (size_t)(low * low));
    r->iou = malloc(sizeof(float) * bm);
    r->masks = malloc(bm * (size_t)(h * w));
    if (!r->low_res_logits || !r->iou || !r->masks) {
        ms_result_free(r);
        return ms_fail(MS_ERR_NOMEM, "decode: cannot allocate masks of %lldx%lld", (long long)h,
                       (long long)w);
    }
    return MS_OK;
}

static ms_status postprocess(ms_model *m, ms_result *r)
{
    int64_t low = r->low_res, hw = r->height * r->width;
    float *scratch = NULL;
    if (m->sam_preprocess && !m->raw) {
        int64_t s = m->hp->img_size;
        scratch = malloc(sizeof(float) * (size_t)(s * s + hw));
        if (!scratch) return ms_fail(MS_ERR_NOMEM, "decode: cannot allocate post-processing");
    }
    for (int64_t i = 0; i < r->batch * r->n_masks; i++) {
        const float *lg = r->low_res_logits + i * low * low;
        uint8_t *mask = r->masks + i * hw;
        if (scratch) {
            float *full = scratch + m->hp->img_size * m->hp->img_size;
            ms_sam_postprocess(lg, low, low, m->hp->img_size, m->in_h, m->in_w, r->height,
                               r->width, full, scratch);
            for (int64_t j = 0; j < hw; j++) mask[j] = full[j] > 0.0f;
        } else {
            ms_medsam_postprocess(lg, low, low, r->height, r->width, NULL, mask);
        }
    }
    free(scratch);
    return MS_OK;
}

int ms_decode(ms_model *m, const ms_prompts *p, ms_result *out)
{
    memset(out, 0, sizeof *out);
    if (!m->has_emb) return ms_fail(MS_ERR_ARG, "decode: no image has been encoded");
    if (p->n_boxes < 0 || p->n_points < 0 || (!p->n_boxes && !p->n_points))
        return ms_fail(MS_ERR_ARG, "decode: a prompt needs a box or a point");
    int64_t batch = p->n_boxes ? p->n_boxes : 1;
    int64_t n_masks = p->multimask ? m->hp->n_multimask : 1;
    ms_prompt *prompts = calloc((size_t)batch, sizeof *prompts);
    float *pts = malloc(sizeof(float) * 2 * (size_t)(p->n_points + 1));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)(p->n_points + 1));
    ms_status st = prompts && pts && labels ? MS_OK
                                            : ms_fail(MS_ERR_NOMEM, "decode: out of memory");
    if (st == MS_OK) st = build_prompts(m, p, prompts, pts, labels);
    if (st == MS_OK)
        st = alloc_result(out, batch, n_masks, ms_model_mask_size(m), m->img_h, m->img_w);
    if (st == MS_OK) {
        double t0 = now_ms();
        st = m->be ? ms_sam_decode_on(m->sam, m->be, m->emb, prompts, batch, p->multimask,
                                      out->low_res_logits, out->iou, NULL, NULL)
                   : ms_sam_decode(m->sam, m->emb, prompts, batch, p->multimask,
                                   out->low_res_logits, out->iou, NULL, NULL);
        double t1 = now_ms();
        m->t.decode_ms = t1 - t0;
        if (st == MS_OK) st = postprocess(m, out);
        m->t.postprocess_ms = now_ms() - t1;
    }
    free(prompts);
    free(pts);
    free(labels);
    if (st != MS_OK) ms_result_free(out);
    return st;
}

void ms_result_free(ms_result *r)
{
    free(r->low_res_logits);
    free(r->iou);
    free(r->masks);
    memset(r, 0, sizeof *r);
}

void ms_model_timings(const ms_model *m, ms_timings *out) { *out = m->t; }
