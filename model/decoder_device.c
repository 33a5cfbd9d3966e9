/* The mask decoder on a compute backend (core/backend.h): SAM's two-way
 * transformer and mask head op by op through the backend table, as the
 * PyTorch modules compute them, prompt after prompt. The prompt encoder
 * stays on the host (a few tokens, and the dense embedding: a broadcast, or
 * the small mask convolutions when a mask is given); its outputs are
 * uploaded. The weights go to the backend once, in one block; the
 * activations live in a second block planned for the prompt's token count
 * and re-planned only when a prompt brings more tokens.
 * ref: segment_anything/modeling/mask_decoder.py (MaskDecoder),
 *      transformer.py (TwoWayTransformer) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/device.h"

/* ref: transformer.py Attention */
typedef struct dev_attention {
    dev_linear q, k, v, out;
    int64_t inner;
} dev_attention;

/* ref: transformer.py TwoWayAttentionBlock */
typedef struct dev_dec_layer {
    dev_attention self_attn, token_to_image, image_to_token;
    sam_norm norm1, norm2, norm3, norm4;
    dev_linear lin1, lin2;
} dev_dec_layer;

/* The decoder's activations on the backend, for one prompt of nt tokens. */
typedef struct dec_acts {
    float *emb;                 /* (d, hw): the image embedding */
    float *dense;               /* (d, hw): the prompt's dense embedding */
    float *src;                 /* (d, hw): emb + dense */
    float *keys, *kin;          /* (hw, d): the image tokens; keys + dense PE */
    float *qp, *kp, *vp, *ao;   /* (max(hw, nt), d): an attention's projections and output */
    float *queries, *qpe, *qin; /* (nt, d): the tokens, as they entered, queries + qpe */
    float *hidden;              /* (nt, dec_mlp) */
    float *mlp_a, *mlp_b;       /* (width): the mask head MLPs' hidden rows */
    float *hyper;               /* (n_multimask + 1, d / 8) */
    float *scores;              /* (n_multimask + 1): the IoU head */
    float *xt;                  /* (d, hw): keys channel-first */
    float *up1, *up1n;          /* (d / 4, 4 hw) */
    float *up2;                 /* (d / 8, 16 hw) */
    float *masks;               /* (n_multimask, 16 hw) */
} dec_acts;

struct sam_dec_device {
    ms_backend *be;
    void *weights, *acts; /* the two blocks */
    const float *dense_pe; /* (hw, d) */
    dev_dec_layer layers[MS_SAM_MAX_DEC_LAYERS];
    dev_attention final_attn;
    sam_norm final_norm;
    ms_tensor up_conv[2];
    const float *up_conv_b[2];
    sam_norm up_norm;
    dev_linear hyper[MS_SAM_MAX_MASK_TOKENS][3];
    dev_linear iou_head[MS_SAM_MAX_IOU_LAYERS];
    dec_acts a;
    int64_t nt_cap; /* tokens per prompt the activations hold */
};

/* ---- the weight block ------------------------------------------------------ */

static void place_attention(dev_loader *l, dev_attention *dst, const sam_attention *src)
{
    dev_place_linear(l, &dst->q, &src->q);
    dev_place_linear(l, &dst->k, &src->k);
    dev_place_linear(l, &dst->v, &src->v);
    dev_place_linear(l, &dst->out, &src->out);
    dst->inner = src->inner;
}

static void place_weights(const ms_sam *m, struct sam_dec_device *d, dev_loader *l)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t dim = h->prompt_dim;
    d->dense_pe = dev_place_f32(l, m->dense_pe, h->grid * h->grid * dim);
    for (int64_t i = 0; i < h->dec_depth; i++) {
        const sam_dec_layer *s = &m->layers[i];
        dev_dec_layer *t = &d->layers[i];
        place_attention(l, &t->self_attn, &s->self_attn);
        place_attention(l, &t->token_to_image, &s->token_to_image);
        place_attention(l, &t->image_to_token, &s->image_to_token);
        dev_place_norm(l, &t->norm1, &s->norm1, dim);
        dev_place_norm(l, &t->norm2, &s->norm2, dim);
        dev_place_norm(l, &t->norm3, &s->norm3, dim);
        dev_place_norm(l, &t->norm4, &s->norm4, dim);
        dev_place_linear(l, &t->lin1, &s->lin1);
        dev_place_linear(l, &t->lin2, &s->lin2);
    }
    place_attention(l, &d->final_attn, &m->final_attn);
    dev_place_norm(l, &d->final_norm, &m->final_norm, dim);
    for (int i = 0; i < 2; i++) {
        dev_place_tensor(l, &d->up_conv[i], m->up_conv[i]);
        d->up_conv_b[i] = dev_place_f32(l, m->up_conv_b[i], m->up_conv[i]->ne[1]);
    }
    dev_place_norm(l, &d->up_norm, &m->up_norm, dim / 4);
    for (int64_t i = 0; i <= h->n_multimask; i++)
        for (int j = 0; j < 3; j++) dev_place_linear(l, &d->hyper[i][j], &m->hyper[i][j]);
    for (int64_t i = 0; i < h->iou_depth; i++) dev_place_linear(l, &d->iou_head[i], &m->iou_head[i]);
}

/* ---- the activation plan ----------------------------------------------------- */

/* Carves the activations for prompts of up to nt tokens out of base (NULL:
 * only sizes them); returns the bytes used. */
static size_t plan_acts(const ms_sam *m, int64_t nt, char *base, dec_acts *a)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t d = h->prompt_dim, hw = h->grid * h->grid, nm = h->n_multimask + 1;
    int64_t rows = hw > nt ? hw : nt, width = d > h->iou_hidden ? d : h->iou_hidden;
    dev_part parts[] = {
        {&a->emb, d * hw},      {&a->dense, d * hw},         {&a->src, d * hw},
        {&a->keys, hw * d},     {&a->kin, hw * d},           {&a->qp, rows * d},
        {&a->kp, rows * d},     {&a->vp, rows * d},          {&a->ao, rows * d},
        {&a->queries, nt * d},  {&a->qpe, nt * d},           {&a->qin, nt * d},
        {&a->hidden, nt * h->dec_mlp}, {&a->mlp_a, width},   {&a->mlp_b, width},
        {&a->hyper, nm * d / 8}, {&a->scores, nm},           {&a->xt, d * hw},
        {&a->up1, d / 4 * 4 * hw}, {&a->up1n, d / 4 * 4 * hw}, {&a->up2, d / 8 * 16 * hw},
        {&a->masks, nm * 16 * hw},
    };
    return dev_carve(base, parts, sizeof parts / sizeof parts[0]);
}

/* ---- set-up and release ---------------------------------------------------------- */

void ms_sam_decoder_device_free(ms_sam *m)
{
    struct sam_dec_device *d = m->dec_dev;
    if (!d) return;
    if (d->weights) d->be->free(d->be, d->weights);
    if (d->acts) d->be->free(d->be, d->acts);
    free(d);
    m->dec_dev = NULL;
}

static ms_status upload_weights(ms_sam *m, ms_backend *be)
{
    if (m->dec_dev && m->dec_dev->be == be) return MS_OK;
    ms_sam_decoder_device_free(m);
    struct sam_dec_device *d = calloc(1, sizeof *d);
    if (!d) return ms_fail(MS_ERR_NOMEM, "sam: cannot allocate the decoder's device state");
    m->dec_dev = d;
    d->be = be;
    dev_loader l = {.be = be};
    place_weights(m, d, &l);
    if (l.st == MS_OK && !(d->weights = be->alloc(be, l.used)))
        l.st = ms_fail(MS_ERR_NOMEM, "sam: backend %s: cannot allocate %zu MB of decoder "
                       "weights: %s", be->name, l.used >> 20, be->error);
    if (l.st == MS_OK) {
        l = (dev_loader){.be = be, .base = d->weights};
        place_weights(m, d, &l);
    }
    if (l.st != MS_OK) ms_sam_decoder_device_free(m);
    return l.st;
}

/* Activations for prompts of nt tokens: kept while they are large enough. */
static ms_status plan_for(ms_sam *m, int64_t nt)
{
    struct sam_dec_device *d = m->dec_dev;
    if (d->acts && nt <= d->nt_cap) return MS_OK;
    if (d->acts) d->be->free(d->be, d->acts);
    size_t bytes = plan_acts(m, nt, NULL, &d->a);
    d->nt_cap = 0;
    if (!(d->acts = d->be->alloc(d->be, bytes)))
        return ms_fail(MS_ERR_NOMEM, "sam: backend %s: cannot allocate %zu MB of decoder "
                       "activations: %s", d->be->name, bytes >> 20, d->be->error);
    plan_acts(m, nt, d->acts, &d->a);
    d->nt_cap = nt;
    return MS_OK;
}

/* ---- forward ------------------------------------------------------------------------ */

/* out (+)= out_proj(attention(q_proj(q), k_proj(k), v_proj(v))), nq
 * queries against nk keys, the heads side by side in inner. out may be q
 * or v: both are projected before out is written.
 * ref: transformer.py Attention.forward */
static ms_status attend(const ms_sam *m, struct sam_dec_device *d, const dev_attention *at,
                        const float *q, int64_t nq, const float *k, const float *v, int64_t nk,
                        float *out, int accumulate)
{
    ms_backend *be = d->be;
    int64_t dim = m->hp.prompt_dim, in = at->inner, heads = m->hp.dec_heads, c = in / heads;
    BE_TRY(be, be->linear(be, d->a.qp, in, q, dim, nq, &at->q.w, at->q.b, MS_EPI_NONE, 0));
    BE_TRY(be, be->linear(be, d->a.kp, in, k, dim, nk, &at->k.w, at->k.b, MS_EPI_NONE, 0));
    BE_TRY(be, be->linear(be, d->a.vp, in, v, dim, nk, &at->v.w, at->v.b, MS_EPI_NONE, 0));
    ms_attn a = {.q = d->a.qp, .k = d->a.kp, .v = d->a.vp, .ldq = in, .ldk = in, .ldv = in,
                 .out = d->a.ao, .ldo = in, .nq = nq, .nk = nk, .d = c,
                 .scale = (float)(1.0 / sqrt((double)c))};
    ms_attn_heads h = {.n = heads, .q_step = c, .k_step = c, .v_step = c, .out_step = c};
    BE_TRY(be, be->attention(be, &a, &h));
    BE_TRY(be, be->linear(be, out, dim, d->a.ao, in, nq, &at->out.w, at->out.b, MS_EPI_NONE,
                          accumulate));
    return MS_OK;
}

static ms_status norm(const ms_sam *m, struct sam_dec_device *d, float *x, int64_t rows,
                      const sam_norm *n)
{
    int64_t dim = m->hp.prompt_dim;
    BE_TRY(d->be, d->be->layernorm(d->be, x, dim, x, dim, rows, dim, n->g, n->b,
                                   (float)m->hp.dec_ln_eps));
    return MS_OK;
}

/* ref: transformer.py TwoWayAttentionBlock.forward */
static ms_status layer_forward(const ms_sam *m, struct sam_dec_device *d, const dev_dec_layer *l,
                               int64_t nt, int first)
{
    ms_backend *be = d->be;
    dec_acts *a = &d->a;
    int64_t dim = m->hp.prompt_dim, hw = m->hp.grid * m->hp.grid;
    /* Self-attention of the tokens; the first layer adds no position and
     * keeps no residual (skip_first_layer_pe). */
    if (first) {
        MS_TRY(attend(m, d, &l->self_attn, a->queries, nt, a->queries, a->queries, nt,
                      a->queries, 0));
    } else {
        BE_TRY(be, be->add(be, a->qin, a->queries, a->qpe, nt * dim));
        MS_TRY(attend(m, d, &l->self_attn, a->qin, nt, a->qin, a->queries, nt, a->queries, 1));
    }
    MS_TRY(norm(m, d, a->queries, nt, &l->norm1));
    /* The tokens attend to the image. */
    BE_TRY(be, be->add(be, a->qin, a->queries, a->qpe, nt * dim));
    BE_TRY(be, be->add(be, a->kin, a->keys, d->dense_pe, hw * dim));
    MS_TRY(attend(m, d, &l->token_to_image, a->qin, nt, a->kin, a->keys, hw, a->queries, 1));
    MS_TRY(norm(m, d, a->queries, nt, &l->norm2));
    /* MLP (ReLU) on the tokens. */
    BE_TRY(be, be->linear(be, a->hidden, m->hp.dec_mlp, a->queries, dim, nt, &l->lin1.w,
                          l->lin1.b, MS_EPI_RELU, 0));
    BE_TRY(be, be->linear(be, a->queries, dim, a->hidden, m->hp.dec_mlp, nt, &l->lin2.w,
                          l->lin2.b, MS_EPI_NONE, 1));
    MS_TRY(norm(m, d, a->queries, nt, &l->norm3));
    /* The image attends to the tokens (kin still holds keys + PE). */
    BE_TRY(be, be->add(be, a->qin, a->queries, a->qpe, nt * dim));
    MS_TRY(attend(m, d, &l->image_to_token, a->kin, hw, a->qin, a->queries, nt, a->keys, 1));
    return norm(m, d, a->keys, hw, &l->norm4);
}

/* ref: transformer.py TwoWayTransformer.forward */
static ms_status two_way_transformer(const ms_sam *m, struct sam_dec_device *d, int64_t nt)
{
    ms_backend *be = d->be;
    dec_acts *a = &d->a;
    int64_t dim = m->hp.prompt_dim, hw = m->hp.grid * m->hp.grid;
    BE_TRY(be, be->transpose(be, a->keys, a->src, dim, hw));
    for (int64_t i = 0; i < m->hp.dec_depth; i++)
        MS_TRY(layer_forward(m, d, &d->layers[i], nt, i == 0));
    BE_TRY(be, be->add(be, a->qin, a->queries, a->qpe, nt * dim));
    BE_TRY(be, be->add(be, a->kin, a->keys, d->dense_pe, hw * dim));
    MS_TRY(attend(m, d, &d->final_attn, a->qin, nt, a->kin, a->keys, hw, a->queries, 1));
    return norm(m, d, a->queries, nt, &d->final_norm);
}

/* Linear layers, ReLU between, on one row x into out.
 * ref: mask_decoder.py MLP.forward */
static ms_status mlp(struct sam_dec_device *d, const dev_linear *layers, int64_t n,
                     const float *x, float *out)
{
    ms_backend *be = d->be;
    const float *in = x;
    for (int64_t i = 0; i < n; i++) {
        const dev_linear *l = &layers[i];
        int last = i == n - 1;
        float *y = last ? out : i % 2 ? d->a.mlp_b : d->a.mlp_a;
        BE_TRY(be, be->linear(be, y, l->w.ne[0], in, l->w.ne[1], 1, &l->w, l->b,
                              last ? MS_EPI_NONE : MS_EPI_RELU, 0));
        in = y;
    }
    return MS_OK;
}

/* The masks of tokens first .. first + count - 1 into masks (count, 4g,
 * 4g) and the IoU head's scores of all mask tokens.
 * ref: mask_decoder.py MaskDecoder.predict_masks */
static ms_status predict_masks(const ms_sam *m, struct sam_dec_device *d, int64_t first,
                               int64_t count)
{
    ms_backend *be = d->be;
    dec_acts *a = &d->a;
    int64_t dim = m->hp.prompt_dim, g = m->hp.grid, hw = g * g, c1 = dim / 4, c2 = dim / 8;
    for (int64_t i = 0; i < count; i++)
        MS_TRY(mlp(d, d->hyper[first + i], 3, a->queries + (1 + first + i) * dim,
                   a->hyper + i * c2));
    /* output_upscaling: ConvTranspose2d, LayerNorm2d, GELU, ConvTranspose2d,
     * GELU, on the image tokens channel-first */
    BE_TRY(be, be->transpose(be, a->xt, a->keys, hw, dim));
    BE_TRY(be, be->conv_transpose2x2(be, a->up1, a->xt, dim, g, g, &d->up_conv[0],
                                     d->up_conv_b[0]));
    BE_TRY(be, be->layernorm_channels(be, a->up1n, a->up1, c1, 4 * hw, d->up_norm.g,
                                      d->up_norm.b, MS_SAM_LN2D_EPS));
    BE_TRY(be, be->gelu(be, a->up1n, c1 * 4 * hw));
    BE_TRY(be, be->conv_transpose2x2(be, a->up2, a->up1n, c1, 2 * g, 2 * g, &d->up_conv[1],
                                     d->up_conv_b[1]));
    BE_TRY(be, be->gelu(be, a->up2, c2 * 16 * hw));
    BE_TRY(be, be->sgemm(be, 0, 0, count, 16 * hw, c2, 1.0f, a->hyper, c2, a->up2, 16 * hw,
                         0.0f, a->masks, 16 * hw));
    return mlp(d, d->iou_head, m->hp.iou_depth, a->queries, a->scores);
}

/* The image side of a prompt: src = emb + its dense embedding, which the
 * host computes into host_dense and uploads. */
static ms_status prompt_image(ms_sam *m, struct sam_dec_device *d, const ms_prompt *p,
                              float *host_dense)
{
    ms_backend *be = d->be;
    int64_t n = m->hp.prompt_dim * m->hp.grid * m->hp.grid;
    MS_TRY(ms_sam_embed_dense(m, p, host_dense));
    BE_TRY(be, be->upload(be, d->a.dense, host_dense, (size_t)n * sizeof(float)));
    BE_TRY(be, be->add(be, d->a.src, d->a.emb, d->a.dense, n));
    return MS_OK;
}

/* One prompt of nt tokens (host tokens: [iou_token, mask_tokens, sparse])
 * against the image side in d->a.src; its outputs into logits and iou. */
static ms_status decode_one(ms_sam *m, struct sam_dec_device *d, const float *tokens, int64_t nt,
                            int multimask, float *logits, float *iou, float *scores)
{
    ms_backend *be = d->be;
    const ms_sam_hparams *h = &m->hp;
    int64_t first = multimask ? 1 : 0, count = multimask ? h->n_multimask : 1;
    size_t tok_bytes = (size_t)(nt * h->prompt_dim) * sizeof(float);
    BE_TRY(be, be->upload(be, d->a.queries, tokens, tok_bytes));
    BE_TRY(be, be->upload(be, d->a.qpe, tokens, tok_bytes));
    MS_TRY(two_way_transformer(m, d, nt));
    MS_TRY(predict_masks(m, d, first, count));
    BE_TRY(be, be->download(be, logits, d->a.masks,
                            (size_t)(count * 16 * h->grid * h->grid) * sizeof(float)));
    BE_TRY(be, be->download(be, scores, d->a.scores, (size_t)(h->n_multimask + 1) * sizeof(float)));
    memcpy(iou, scores + first, (size_t)count * sizeof(float));
    return MS_OK;
}

/* ref: sam.py Sam.forward: prompt_encoder, then mask_decoder, per prompt */
static ms_status decode_batch(ms_sam *m, const float *emb, const ms_prompt *p, int64_t batch,
                              int multimask, float *logits, float *iou, float *sparse,
                              float *dense)
{
    const ms_sam_hparams *h = &m->hp;
    struct sam_dec_device *d = m->dec_dev;
    int64_t dim = h->prompt_dim, hw = h->grid * h->grid, nm = h->n_multimask + 1;
    int64_t ns = ms_sam_sparse_tokens(&p[0]), nt = 1 + nm + ns;
    int64_t count = multimask ? h->n_multimask : 1;
    MS_TRY(plan_for(m, nt));
    float *tokens = ms_nn_floats(m, nt * dim), *host_dense = ms_nn_floats(m, dim * hw);
    float *scores = ms_nn_floats(m, nm);
    if (!tokens || !host_dense || !scores) return MS_ERR_NOMEM;
    BE_TRY(d->be, d->be->upload(d->be, d->a.emb, emb, (size_t)(dim * hw) * sizeof(float)));
    memcpy(tokens, m->iou_token, (size_t)dim * sizeof(float));
    memcpy(tokens + dim, m->mask_tokens, (size_t)(nm * dim) * sizeof(float));
    for (int64_t b = 0; b < batch; b++) {
        float *tokens_sparse = tokens + (1 + nm) * dim;
        ms_sam_embed_sparse(m, &p[b], tokens_sparse);
        if (sparse) memcpy(sparse + b * ns * dim, tokens_sparse, (size_t)(ns * dim) * sizeof(float));
        /* without a mask input every prompt's dense embedding is no_mask_embed */
        if (b == 0 || p[b].mask_input) MS_TRY(prompt_image(m, d, &p[b], host_dense));
        if (dense) memcpy(dense + b * dim * hw, host_dense, (size_t)(dim * hw) * sizeof(float));
        MS_TRY(decode_one(m, d, tokens, nt, multimask, logits + b * count * 16 * hw,
                          iou + b * count, scores));
    }
    return MS_OK;
}

ms_status ms_sam_decode_on(ms_sam *m, ms_backend *be, const float *emb, const ms_prompt *prompts,
                           int64_t batch, int multimask, float *logits, float *iou, float *sparse,
                           float *dense)
{
    MS_TRY(ms_sam_check_prompts(prompts, batch));
    MS_TRY(upload_weights(m, be));
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    ms_status st = decode_batch(m, emb, prompts, batch, multimask, logits, iou, sparse, dense);
    ms_arena_reset(m->arena, mark);
    return st;
}
