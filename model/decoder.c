/* The mask decoder: a two-way transformer between the prompt tokens and the
 * image embedding, then upscaling, hypernetwork masks and the IoU head.
 * ref: segment_anything/modeling/mask_decoder.py (MaskDecoder) and
 *      segment_anything/modeling/transformer.py (TwoWayTransformer) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/sam_internal.h"

/* ---- weights ---------------------------------------------------------------- */

static ms_status bind_attention(ms_sam *m, sam_attention *a, const char *prefix,
                                int64_t downsample)
{
    int64_t d = m->hp.prompt_dim;
    char name[192];
    a->inner = d / downsample;
    snprintf(name, sizeof name, "%s.q_proj", prefix);
    MS_TRY(ms_sam_bind_linear(m, &a->q, name, a->inner, d));
    snprintf(name, sizeof name, "%s.k_proj", prefix);
    MS_TRY(ms_sam_bind_linear(m, &a->k, name, a->inner, d));
    snprintf(name, sizeof name, "%s.v_proj", prefix);
    MS_TRY(ms_sam_bind_linear(m, &a->v, name, a->inner, d));
    snprintf(name, sizeof name, "%s.out_proj", prefix);
    return ms_sam_bind_linear(m, &a->out, name, d, a->inner);
}

static ms_status bind_layer(ms_sam *m, int64_t i)
{
    const ms_sam_hparams *h = &m->hp;
    sam_dec_layer *l = &m->layers[i];
    char p[96], name[160];
    snprintf(p, sizeof p, "mask_decoder.transformer.layers.%lld", (long long)i);
#define NAME(s) (snprintf(name, sizeof name, "%s.%s", p, s), name)
    MS_TRY(bind_attention(m, &l->self_attn, NAME("self_attn"), 1));
    MS_TRY(bind_attention(m, &l->token_to_image, NAME("cross_attn_token_to_image"),
                          h->attn_downsample));
    MS_TRY(bind_attention(m, &l->image_to_token, NAME("cross_attn_image_to_token"),
                          h->attn_downsample));
    MS_TRY(ms_sam_bind_norm(m, &l->norm1, NAME("norm1"), h->prompt_dim));
    MS_TRY(ms_sam_bind_norm(m, &l->norm2, NAME("norm2"), h->prompt_dim));
    MS_TRY(ms_sam_bind_norm(m, &l->norm3, NAME("norm3"), h->prompt_dim));
    MS_TRY(ms_sam_bind_norm(m, &l->norm4, NAME("norm4"), h->prompt_dim));
    MS_TRY(ms_sam_bind_linear(m, &l->lin1, NAME("mlp.lin1"), h->dec_mlp, h->prompt_dim));
    MS_TRY(ms_sam_bind_linear(m, &l->lin2, NAME("mlp.lin2"), h->prompt_dim, h->dec_mlp));
#undef NAME
    return MS_OK;
}

/* ref: mask_decoder.py MaskDecoder.__init__ (output_upscaling is a Sequential:
 * 0 ConvTranspose2d, 1 LayerNorm2d, 2 GELU, 3 ConvTranspose2d, 4 GELU) */
static ms_status bind_heads(ms_sam *m)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t d = h->prompt_dim, nm = h->n_multimask + 1;
    const char *up = "mask_decoder.output_upscaling";
    char name[160];
    snprintf(name, sizeof name, "%s.0.weight", up);
    MS_TRY(ms_sam_bind_weight(m, &m->up_conv[0], name, SAM_SHAPE(d, d / 4, 2, 2)));
    snprintf(name, sizeof name, "%s.0.bias", up);
    MS_TRY(ms_sam_bind_f32(m, &m->up_conv_b[0], name, SAM_SHAPE(d / 4)));
    snprintf(name, sizeof name, "%s.1", up);
    MS_TRY(ms_sam_bind_norm(m, &m->up_norm, name, d / 4));
    snprintf(name, sizeof name, "%s.3.weight", up);
    MS_TRY(ms_sam_bind_weight(m, &m->up_conv[1], name, SAM_SHAPE(d / 4, d / 8, 2, 2)));
    snprintf(name, sizeof name, "%s.3.bias", up);
    MS_TRY(ms_sam_bind_f32(m, &m->up_conv_b[1], name, SAM_SHAPE(d / 8)));
    for (int64_t t = 0; t < nm; t++)
        for (int64_t i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "mask_decoder.output_hypernetworks_mlps.%lld.layers.%lld",
                     (long long)t, (long long)i);
            MS_TRY(ms_sam_bind_linear(m, &m->hyper[t][i], name, i == 2 ? d / 8 : d, d));
        }
    for (int64_t i = 0; i < h->iou_depth; i++) {
        snprintf(name, sizeof name, "mask_decoder.iou_prediction_head.layers.%lld", (long long)i);
        MS_TRY(ms_sam_bind_linear(m, &m->iou_head[i], name,
                                  i == h->iou_depth - 1 ? nm : h->iou_hidden,
                                  i == 0 ? d : h->iou_hidden));
    }
    return MS_OK;
}

ms_status ms_sam_bind_decoder(ms_sam *m)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t d = h->prompt_dim;
    MS_TRY(ms_sam_bind_f32(m, &m->iou_token, "mask_decoder.iou_token.weight", SAM_SHAPE(1, d)));
    MS_TRY(ms_sam_bind_f32(m, &m->mask_tokens, "mask_decoder.mask_tokens.weight",
                           SAM_SHAPE(h->n_multimask + 1, d)));
    for (int64_t i = 0; i < h->dec_depth; i++) MS_TRY(bind_layer(m, i));
    MS_TRY(bind_attention(m, &m->final_attn, "mask_decoder.transformer.final_attn_token_to_image",
                          h->attn_downsample));
    MS_TRY(ms_sam_bind_norm(m, &m->final_norm, "mask_decoder.transformer.norm_final_attn", d));
    return bind_heads(m);
}

/* ---- two-way transformer ------------------------------------------------------ */

/* The image side of the decoder before any prompt reaches it: the same for
 * every prompt of a batch without mask input, so computed once there. */
typedef struct dec_image {
    float *src; /* (hw, d): image embedding + dense prompt embedding */
    float *kin; /* src + dense PE */
    float *kp, *vp; /* layer 0's token-to-image key and value projections */
} dec_image;

/* A group of prompts decoded in lockstep: their tokens are stacked, so each
 * token-side weight is read once per group, while each prompt keeps its own
 * image tokens. */
typedef struct dec_ws {
    const dec_image *img;
    int64_t nt, nb;           /* tokens per prompt (iou, mask tokens, sparse); prompts */
    int64_t rows;             /* nb * nt */
    float *queries, *qpe;     /* (rows, d); qpe: the tokens as they entered */
    float *qin;               /* (rows, d): queries + qpe */
    float *keys, *kin;        /* (nb, hw, d); kin: keys + dense PE */
    float *qp, *kp, *vp, *ao; /* (rows, inner), inner <= d */
    float *hidden;            /* (rows, dec_mlp) */
} dec_ws;

static float head_scale(const ms_sam *m, const sam_attention *a)
{
    return (float)(1.0 / sqrt((double)(a->inner / m->hp.dec_heads)));
}

/* The tokens' self-attention, each prompt's among its own: out (+)=
 * out_proj(softmax(q_proj(q) k_proj(k)^T / sqrt(c)) v_proj(v)) per head,
 * the projections over the whole group. out may alias q or v: both are
 * projected before out is written. ref: transformer.py Attention.forward */
static ms_status self_attention(ms_sam *m, dec_ws *ws, const sam_attention *a, const float *q,
                                const float *k, const float *v, float *out, int accumulate)
{
    int64_t d = m->hp.prompt_dim, in = a->inner, heads = m->hp.dec_heads, nt = ws->nt;
    MS_TRY(ms_nn_linear(m, ws->qp, in, q, d, ws->rows, &a->q, MS_EPI_NONE, 0));
    MS_TRY(ms_nn_linear(m, ws->kp, in, k, d, ws->rows, &a->k, MS_EPI_NONE, 0));
    MS_TRY(ms_nn_linear(m, ws->vp, in, v, d, ws->rows, &a->v, MS_EPI_NONE, 0));
    for (int64_t b = 0; b < ws->nb; b++) {
        int64_t o = b * nt * in;
        MS_TRY(ms_nn_mha(m, ws->qp + o, ws->kp + o, ws->vp + o, ws->ao + o, nt, nt, heads,
                         in / heads, head_scale(m, a)));
    }
    return ms_nn_linear(m, out, d, ws->ao, in, ws->rows, &a->out, MS_EPI_NONE, accumulate);
}

/* A weight as plain f32 rows (the first dim by the others flattened): the
 * stored data when it is f32, else dequantised into the arena. NULL on
 * failure. */
static const float *weight_f32(ms_sam *m, const ms_tensor *w)
{
    if (w->dtype == MS_F32 && ms_tensor_is_contiguous(w)) return w->data;
    int64_t cols = ms_tensor_nelem(w) / w->ne[0];
    float *f = ms_nn_floats(m, w->ne[0] * cols);
    if (f)
        for (int64_t r = 0; r < w->ne[0]; r++) ms_weight_row_f32(f + r * cols, w, r);
    return f;
}

/* fold rows i*heads + h = scale * x[i, head h] W_h, W_h the head's rows of
 * w (inner, d): a few projected tokens pulled back to the input space. */
static void fold_heads(ms_sam *m, float *fold, const float *x, int64_t n, const float *w,
                       float scale)
{
    int64_t d = m->hp.prompt_dim, heads = m->hp.dec_heads, in = d / m->hp.attn_downsample;
    int64_t c = in / heads;
    for (int64_t h = 0; h < heads; h++)
        ms_sgemm(0, 0, n, d, c, scale, x + h * c, in, w + h * c * d, d, 0.0f, fold + h * d,
                 heads * d);
}

/* The image side of a token-to-image attention: kin = keys + dense PE, and
 * its key and value projections kp = k_proj(kin), vp = v_proj(keys). */
static ms_status image_keys(ms_sam *m, const sam_attention *a, const float *keys, float *kin,
                            float *kp, float *vp)
{
    int64_t d = m->hp.prompt_dim, hw = m->hp.grid * m->hp.grid;
    ms_nn_add(m, kin, keys, m->dense_pe, hw * d);
    MS_TRY(ms_nn_linear(m, kp, a->inner, kin, d, hw, &a->k, MS_EPI_NONE, 0));
    return ms_nn_linear(m, vp, a->inner, keys, d, hw, &a->v, MS_EPI_NONE, 0);
}

/* A few projected queries qp (nq, inner) attend to one prompt's image
 * tokens, keys (hw, d) and kin = keys + dense PE, with the key and value
 * projections folded into the queries: per head, scores = kin (scale q_h
 * W_k,h)^T + a constant per query (q_h . b_k,h, which the softmax drops),
 * and, the probabilities p_h summing to 1 over the image, out_h = (p_h^T
 * keys) W_v,h^T + b_v,h. The image rows go through two products of width
 * heads * nq instead of being projected to inner. The scores are image-major
 * (hw, nq * heads), columns j * heads + h, so the first product reads kin in
 * place; each column is a softmax. ao (nq, inner) = the heads' outputs.
 * ref: transformer.py Attention.forward */
static ms_status attend_image(ms_sam *m, const sam_attention *a, const float *qp, int64_t nq,
                              const float *keys, const float *kin, float *ao)
{
    int64_t d = m->hp.prompt_dim, in = a->inner, heads = m->hp.dec_heads, c = in / heads;
    int64_t hw = m->hp.grid * m->hp.grid, r = heads * nq;
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    const float *wk = weight_f32(m, a->k.w), *wv = weight_f32(m, a->v.w);
    float *fq = ms_nn_floats(m, r * d), *p = ms_nn_floats(m, hw * r), *y = ms_nn_floats(m, r * d);
    if (!wk || !wv || !fq || !p || !y) return MS_ERR_NOMEM;
    fold_heads(m, fq, qp, nq, wk, head_scale(m, a));
    ms_sgemm(0, 1, hw, r, d, 1.0f, kin, d, fq, d, 0.0f, p, r);
    ms_softmax_cols(p, hw, r, r);
    ms_sgemm(1, 0, r, d, hw, 1.0f, p, r, keys, d, 0.0f, y, d);
    for (int64_t h = 0; h < heads; h++)
        ms_sgemm(0, 1, nq, c, d, 1.0f, y + h * d, heads * d, wv + h * c * d, d, 0.0f, ao + h * c,
                 in);
    for (int64_t j = 0; j < nq; j++) ms_add(ao + j * in, ao + j * in, a->v.b, in);
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}

/* The tokens attend to the image: queries += the attention of (queries +
 * qpe) to the group's shared image side in the first layer, whose key and
 * value projections prepare_image made, and later to each prompt's image
 * tokens (attend_image; kin came with the keys from norm4).
 * ref: transformer.py Attention.forward */
static ms_status tokens_to_image(ms_sam *m, dec_ws *ws, const sam_attention *a, int first)
{
    int64_t d = m->hp.prompt_dim, in = a->inner, heads = m->hp.dec_heads, nt = ws->nt;
    int64_t hw = m->hp.grid * m->hp.grid;
    ms_add(ws->qin, ws->queries, ws->qpe, ws->rows * d);
    MS_TRY(ms_nn_linear(m, ws->qp, in, ws->qin, d, ws->rows, &a->q, MS_EPI_NONE, 0));
    for (int64_t b = 0; b < ws->nb; b++) {
        float *qp = ws->qp + b * nt * in, *ao = ws->ao + b * nt * in;
        float *keys = ws->keys + b * hw * d, *kin = ws->kin + b * hw * d;
        if (first)
            MS_TRY(ms_nn_mha(m, qp, ws->img->kp, ws->img->vp, ao, nt, hw, heads, in / heads,
                             head_scale(m, a)));
        else
            MS_TRY(attend_image(m, a, qp, nt, keys, kin, ao));
    }
    return ms_nn_linear(m, ws->queries, d, ws->ao, in, ws->rows, &a->out, MS_EPI_NONE, 1);
}

/* The image of one prompt attends to its tokens, whose key and value
 * projections kp and vp (nk, inner) the caller made, with the query and
 * output projections folded into those few keys and values. Per head, scores
 * = x (W_q^T k_h^T) + b_q k_h^T and out = sum_h p_h (v_h W_o,h^T) + b_o, so
 * the image rows go through two products of width heads * nk instead of the
 * projections to and from inner. Their columns are token-major (j * heads +
 * h): each head's softmax over the nk tokens is then a column softmax.
 * out += the attention. ref: transformer.py Attention.forward */
static ms_status image_to_tokens(ms_sam *m, const sam_attention *a, const float *q, int64_t nq,
                                 const float *kp, const float *vp, int64_t nk, float *out)
{
    int64_t d = m->hp.prompt_dim, in = a->inner, heads = m->hp.dec_heads, c = in / heads;
    int64_t cols = heads * nk;
    float scale = head_scale(m, a);
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    const float *wq = weight_f32(m, a->q.w), *wo = weight_f32(m, a->out.w);
    float *fq = ms_nn_floats(m, cols * d), *fb = ms_nn_floats(m, cols);
    float *fo = ms_nn_floats(m, d * cols), *p = ms_nn_floats(m, nq * cols);
    float *fh = ms_nn_floats(m, d * nk);
    if (!wq || !wo || !fq || !fb || !fo || !p || !fh) return MS_ERR_NOMEM;
    fold_heads(m, fq, kp, nk, wq, scale);
    for (int64_t h = 0; h < heads; h++) {
        for (int64_t j = 0; j < nk; j++) {
            const float *kj = kp + j * in + h * c;
            float s = 0.0f;
            for (int64_t t = 0; t < c; t++) s += a->q.b[h * c + t] * kj[t];
            fb[j * heads + h] = scale * s;
        }
        ms_sgemm(0, 1, d, nk, c, 1.0f, wo + h * c, in, vp + h * c, in, 0.0f, fh, nk);
        for (int64_t r = 0; r < d; r++)
            for (int64_t j = 0; j < nk; j++) fo[r * cols + j * heads + h] = fh[r * nk + j];
    }
    ms_tensor tq, to;
    ms_tensor_init(&tq, MS_F32, 2, (const int64_t[]){cols, d});
    ms_tensor_init(&to, MS_F32, 2, (const int64_t[]){d, cols});
    tq.data = fq;
    to.data = fo;
    ms_linear(p, cols, q, d, nq, &tq, fb, MS_EPI_NONE, 0, NULL);
    ms_nn_softmax_cols(m, p, nq, nk, heads);
    ms_linear(out, d, p, cols, nq, &to, a->out.b, MS_EPI_NONE, 1, NULL);
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}

/* The image of each prompt attends to its tokens (queries + qpe keyed,
 * queries valued); keys_b += the attention. The image side's queries are
 * kin: the first layer's shared one, else the prompt's. */
static ms_status images_to_tokens(ms_sam *m, dec_ws *ws, const sam_attention *a, int first)
{
    int64_t d = m->hp.prompt_dim, in = a->inner, nt = ws->nt, hw = m->hp.grid * m->hp.grid;
    ms_add(ws->qin, ws->queries, ws->qpe, ws->rows * d);
    MS_TRY(ms_nn_linear(m, ws->kp, in, ws->qin, d, ws->rows, &a->k, MS_EPI_NONE, 0));
    MS_TRY(ms_nn_linear(m, ws->vp, in, ws->queries, d, ws->rows, &a->v, MS_EPI_NONE, 0));
    for (int64_t b = 0; b < ws->nb; b++)
        MS_TRY(image_to_tokens(m, a, first ? ws->img->kin : ws->kin + b * hw * d, hw,
                               ws->kp + b * nt * in, ws->vp + b * nt * in, nt,
                               ws->keys + b * hw * d));
    return MS_OK;
}

/* ref: transformer.py TwoWayAttentionBlock.forward */
static ms_status layer_forward(ms_sam *m, dec_ws *ws, const sam_dec_layer *l, int first)
{
    int64_t d = m->hp.prompt_dim, rows = ws->rows, hw = m->hp.grid * m->hp.grid;
    float eps = (float)m->hp.dec_ln_eps;
    /* Self-attention of the tokens. The first layer adds no position and
     * keeps no residual (skip_first_layer_pe). */
    if (first) {
        MS_TRY(self_attention(m, ws, &l->self_attn, ws->queries, ws->queries, ws->queries,
                              ws->queries, 0));
    } else {
        ms_add(ws->qin, ws->queries, ws->qpe, rows * d);
        MS_TRY(self_attention(m, ws, &l->self_attn, ws->qin, ws->qin, ws->queries,
                              ws->queries, 1));
    }
    ms_nn_layernorm(m, ws->queries, d, ws->queries, d, rows, d, &l->norm1, eps);
    MS_TRY(tokens_to_image(m, ws, &l->token_to_image, first));
    ms_nn_layernorm(m, ws->queries, d, ws->queries, d, rows, d, &l->norm2, eps);
    /* MLP (ReLU) on the tokens. */
    MS_TRY(ms_nn_linear(m, ws->hidden, m->hp.dec_mlp, ws->queries, d, rows, &l->lin1,
                        MS_EPI_RELU, 0));
    MS_TRY(ms_nn_linear(m, ws->queries, d, ws->hidden, m->hp.dec_mlp, rows, &l->lin2,
                        MS_EPI_NONE, 1));
    ms_nn_layernorm(m, ws->queries, d, ws->queries, d, rows, d, &l->norm3, eps);
    MS_TRY(images_to_tokens(m, ws, &l->image_to_token, first));
    /* and kin = keys + dense PE for the next attentions, in the same pass */
    for (int64_t b = 0; b < ws->nb; b++) {
        float *keys = ws->keys + b * hw * d;
        ms_ln_out o = {.add = m->dense_pe, .ld_add = d, .y2 = ws->kin + b * hw * d, .ld_y2 = d};
        ms_nn_layernorm_ex(m, keys, d, keys, d, hw, d, &l->norm4, eps, &o);
    }
    return MS_OK;
}

/* ref: transformer.py TwoWayTransformer.forward */
static ms_status two_way_transformer(ms_sam *m, dec_ws *ws)
{
    int64_t d = m->hp.prompt_dim;
    for (int64_t i = 0; i < m->hp.dec_depth; i++)
        MS_TRY(layer_forward(m, ws, &m->layers[i], i == 0));
    MS_TRY(tokens_to_image(m, ws, &m->final_attn, 0));
    ms_nn_layernorm(m, ws->queries, d, ws->queries, d, ws->rows, d, &m->final_norm,
                    (float)m->hp.dec_ln_eps);
    return MS_OK;
}

/* ---- mask prediction ------------------------------------------------------------- */

/* Linear layers, ReLU between, on `rows` rows of x (stride ldx) into out
 * (stride ldo); tmp holds two (rows, width) blocks, width the widest hidden
 * layer. ref: mask_decoder.py MLP.forward */
static ms_status mlp(ms_sam *m, const sam_linear *layers, int64_t n_layers, const float *x,
                     int64_t ldx, int64_t rows, float *out, int64_t ldo, float *tmp,
                     int64_t width)
{
    const float *in = x;
    int64_t ldin = ldx;
    for (int64_t i = 0; i < n_layers; i++) {
        const sam_linear *l = &layers[i];
        int last = i == n_layers - 1;
        float *y = last ? out : tmp + (i % 2) * rows * width;
        int64_t ldy = last ? ldo : width;
        MS_TRY(ms_nn_linear(m, y, ldy, in, ldin, rows, l, last ? MS_EPI_NONE : MS_EPI_RELU, 0));
        in = y;
        ldin = ldy;
    }
    return MS_OK;
}

/* A 2x2 stride-2 ConvTranspose2d as a linear layer over input pixels:
 * weight (cin, cout, 2, 2) -> (4 cout, cin), rows tap-major (tap k = 2a + b
 * for output pixel (2i + a, 2j + b)), the bias repeated per tap. A pixel's
 * output row then holds its four output pixels' channels, each contiguous. */
static ms_status conv_t_as_linear(ms_sam *m, const ms_tensor *wt, const float *bias,
                                  ms_tensor *t, sam_linear *l)
{
    int64_t cin = wt->ne[0], cout = wt->ne[1];
    const float *w = weight_f32(m, wt);
    float *lw = ms_nn_floats(m, 4 * cout * cin), *lb = ms_nn_floats(m, 4 * cout);
    if (!w || !lw || !lb) return MS_ERR_NOMEM;
    for (int64_t k = 0; k < 4; k++)
        for (int64_t co = 0; co < cout; co++) {
            lb[k * cout + co] = bias[co];
            for (int64_t ci = 0; ci < cin; ci++)
                lw[(k * cout + co) * cin + ci] = w[(ci * cout + co) * 4 + k];
        }
    ms_tensor_init(t, MS_F32, 2, (const int64_t[]){4 * cout, cin});
    t->data = lw;
    l->w = t;
    l->b = lb;
    return MS_OK;
}

/* logits[t] (4g, 4g) from tm (count, 16 g g), whose column ((i g + j) 4 +
 * k1) 4 + k2 is output pixel (4i + 2a1 + a2, 4j + 2b1 + b2), k = 2a + b. */
static void scatter_masks(float *logits, const float *tm, int64_t g, int64_t count)
{
    int64_t side = 4 * g;
    for (int64_t p = 0; p < g * g; p++)
        for (int64_t k = 0; k < 16; k++) {
            int64_t k1 = k / 4, k2 = k % 4;
            int64_t y = 4 * (p / g) + 2 * (k1 / 2) + k2 / 2;
            int64_t x = 4 * (p % g) + 2 * (k1 % 2) + k2 % 2;
            for (int64_t t = 0; t < count; t++)
                logits[t * side * side + y * side + x] = tm[(t * g * g + p) * 16 + k];
        }
}

/* output_upscaling on the token-major keys (g * g, d), each ConvTranspose2d
 * a linear layer whose rows stay pixel-by-tap (conv_t_as_linear): the
 * LayerNorm2d is then a row LayerNorm and no transpose or scatter of the
 * embedding is needed; only the masks = hyper (count, d/8) @ upscaled are
 * scattered. ref: mask_decoder.py output_upscaling, predict_masks */
static ms_status upscale_masks(ms_sam *m, const sam_linear *l1, const sam_linear *l2,
                               const float *keys, const float *hyper, int64_t count, float *logits)
{
    int64_t d = m->hp.prompt_dim, g = m->hp.grid, hw = g * g, c1 = d / 4, c2 = d / 8;
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    float *up1 = ms_nn_floats(m, 4 * hw * c1), *up2 = ms_nn_floats(m, 16 * hw * c2);
    float *tm = ms_nn_floats(m, 16 * hw * count);
    if (!up1 || !up2 || !tm) return MS_ERR_NOMEM;
    /* ConvTranspose2d, LayerNorm2d, GELU, ConvTranspose2d, GELU */
    MS_TRY(ms_nn_linear(m, up1, 4 * c1, keys, d, hw, l1, MS_EPI_NONE, 0));
    ms_nn_layernorm_ex(m, up1, c1, up1, c1, 4 * hw, c1, &m->up_norm, MS_SAM_LN2D_EPS,
                       &(ms_ln_out){.epi = MS_EPI_GELU});
    MS_TRY(ms_nn_linear(m, up2, 4 * c2, up1, c1, 4 * hw, l2, MS_EPI_GELU, 0));
    ms_sgemm(0, 1, count, 16 * hw, c2, 1.0f, hyper, c2, up2, c2, 0.0f, tm, 16 * hw);
    scatter_masks(logits, tm, g, count);
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}

/* Per prompt: upscaled embedding, one hypernetwork MLP per output mask
 * token, masks as their product, and the IoU head on the iou token.
 * Multimask output keeps tokens 1..n_multimask, single output token 0.
 * ref: mask_decoder.py MaskDecoder.predict_masks and forward's mask_slice */
static ms_status predict_masks(ms_sam *m, dec_ws *ws, int multimask, float *logits, float *iou)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t d = h->prompt_dim, nm = h->n_multimask + 1, nb = ws->nb, ld = ws->nt * d;
    int64_t first = multimask ? 1 : 0, count = multimask ? h->n_multimask : 1, c8 = d / 8;
    int64_t hw = h->grid * h->grid, width = d > h->iou_hidden ? d : h->iou_hidden;
    float *hyper = ms_nn_floats(m, nb * count * c8);
    float *tmp = ms_nn_floats(m, 2 * nb * width), *scores = ms_nn_floats(m, nb * nm);
    ms_tensor t1, t2;
    sam_linear l1, l2;
    if (!hyper || !tmp || !scores) return MS_ERR_NOMEM;
    MS_TRY(conv_t_as_linear(m, m->up_conv[0], m->up_conv_b[0], &t1, &l1));
    MS_TRY(conv_t_as_linear(m, m->up_conv[1], m->up_conv_b[1], &t2, &l2));
    for (int64_t i = 0; i < count; i++)
        MS_TRY(mlp(m, m->hyper[first + i], 3, ws->queries + (1 + first + i) * d, ld, nb,
                   hyper + i * c8, count * c8, tmp, width));
    for (int64_t b = 0; b < nb; b++)
        MS_TRY(upscale_masks(m, &l1, &l2, ws->keys + b * hw * d, hyper + b * count * c8, count,
                             logits + b * count * 16 * hw));
    MS_TRY(mlp(m, m->iou_head, h->iou_depth, ws->queries, ld, nb, scores, nm, tmp, width));
    for (int64_t b = 0; b < nb; b++)
        memcpy(iou + b * count, scores + b * nm + first, (size_t)count * sizeof(float));
    return MS_OK;
}

/* ---- decode ---------------------------------------------------------------------- */

/* Prompts decoded in lockstep: each adds two copies of the image tokens
 * (keys, kin: 8 MB for ViT-B) to a decode's memory. */
#define LOCKSTEP 4

static ms_status alloc_ws(ms_sam *m, dec_ws *ws, int64_t nt, int64_t nb)
{
    int64_t d = m->hp.prompt_dim, hw = m->hp.grid * m->hp.grid, rows = nb * nt;
    int64_t tok = rows * d; /* the self-attention's inner is d */
    *ws = (dec_ws){.nt = nt, .nb = nb, .rows = rows};
    ws->queries = ms_nn_floats(m, rows * d);
    ws->qpe = ms_nn_floats(m, rows * d);
    ws->qin = ms_nn_floats(m, rows * d);
    ws->keys = ms_nn_floats(m, nb * hw * d);
    ws->kin = ms_nn_floats(m, nb * hw * d);
    ws->qp = ms_nn_floats(m, tok);
    ws->ao = ms_nn_floats(m, tok);
    ws->kp = ms_nn_floats(m, tok);
    ws->vp = ms_nn_floats(m, tok);
    ws->hidden = ms_nn_floats(m, rows * m->hp.dec_mlp);
    int ok = ws->queries && ws->qpe && ws->qin && ws->keys && ws->kin && ws->qp && ws->kp &&
             ws->vp && ws->ao && ws->hidden;
    return ok ? MS_OK : MS_ERR_NOMEM;
}

/* ref: sam.py Sam.forward: prompt_encoder's dense output, then
 * mask_decoder's src = image_embeddings + dense_prompt_embeddings, flattened
 * token-major, and the first layer's keys. */
static ms_status prepare_image(ms_sam *m, const float *emb, const ms_prompt *p, dec_image *img)
{
    int64_t d = m->hp.prompt_dim, hw = m->hp.grid * m->hp.grid;
    const sam_attention *a = &m->layers[0].token_to_image;
    img->src = ms_nn_floats(m, hw * d);
    img->kin = ms_nn_floats(m, hw * d);
    img->kp = ms_nn_floats(m, hw * a->inner);
    img->vp = ms_nn_floats(m, hw * a->inner);
    if (!img->src || !img->kin || !img->kp || !img->vp) return MS_ERR_NOMEM;
    /* kin serves as the channel-first staging buffer */
    MS_TRY(ms_sam_embed_dense(m, p, img->kin));
    ms_nn_add(m, img->kin, img->kin, emb, d * hw);
    ms_nn_transpose(m, img->src, img->kin, d, hw);
    return image_keys(m, a, img->src, img->kin, img->kp, img->vp);
}

/* nb prompts against the prepared image side; outputs are prompt-major.
 * ref: sam.py Sam.forward (nb batch entries): prompt_encoder, then
 * mask_decoder */
static ms_status decode_group(ms_sam *m, const dec_image *img, const ms_prompt *p, int64_t nb,
                              int multimask, float *logits, float *iou, float *sparse,
                              float *dense)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t d = h->prompt_dim, hw = h->grid * h->grid, nm = h->n_multimask + 1;
    int64_t ns = ms_sam_sparse_tokens(p), nt = 1 + nm + ns;
    dec_ws ws;
    MS_TRY(alloc_ws(m, &ws, nt, nb));
    ws.img = img;
    for (int64_t b = 0; b < nb; b++) {
        /* tokens = [iou_token, mask_tokens, sparse prompt] */
        float *q = ws.queries + b * nt * d, *tokens_sparse = q + (1 + nm) * d;
        memcpy(q, m->iou_token, (size_t)d * sizeof(float));
        memcpy(q + d, m->mask_tokens, (size_t)(nm * d) * sizeof(float));
        ms_sam_embed_sparse(m, &p[b], tokens_sparse);
        if (sparse) memcpy(sparse + b * ns * d, tokens_sparse, (size_t)(ns * d) * sizeof(float));
        if (dense) MS_TRY(ms_sam_embed_dense(m, &p[b], dense + b * d * hw));
        memcpy(ws.keys + b * hw * d, img->src, (size_t)(hw * d) * sizeof(float));
    }
    memcpy(ws.qpe, ws.queries, (size_t)(ws.rows * d) * sizeof(float));
    MS_TRY(two_way_transformer(m, &ws));
    return predict_masks(m, &ws, multimask, logits, iou);
}

static int all_finite(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

static ms_status check_prompt(const ms_prompt *p, const ms_prompt *p0, int64_t b)
{
    if (p->has_box != p0->has_box || p->n_points != p0->n_points ||
        !p->mask_input != !p0->mask_input)
        return ms_fail(MS_ERR_ARG, "sam decode: prompt %lld: box, number of points and mask "
                       "input must be the same for every prompt of a batch", (long long)b);
    if (p->n_points < 0 || (p->n_points > 0 && (!p->points || !p->labels)))
        return ms_fail(MS_ERR_ARG, "sam decode: prompt %lld: bad points", (long long)b);
    if (!all_finite(p->points, 2 * p->n_points) || (p->has_box && !all_finite(p->box, 4)))
        return ms_fail(MS_ERR_ARG, "sam decode: prompt %lld: coordinate not finite", (long long)b);
    for (int64_t i = 0; i < p->n_points; i++)
        if (p->labels[i] != 0 && p->labels[i] != 1)
            return ms_fail(MS_ERR_ARG, "sam decode: prompt %lld: point %lld: label %d (must be "
                           "1 foreground or 0 background)", (long long)b, (long long)i,
                           (int)p->labels[i]);
    return MS_OK;
}

ms_status ms_sam_check_prompts(const ms_prompt *prompts, int64_t batch)
{
    if (batch < 1)
        return ms_fail(MS_ERR_ARG, "sam decode: batch of %lld prompts", (long long)batch);
    for (int64_t b = 0; b < batch; b++) MS_TRY(check_prompt(&prompts[b], &prompts[0], b));
    return MS_OK;
}

ms_status ms_sam_decode(ms_sam *m, const float *emb, const ms_prompt *prompts, int64_t batch,
                        int multimask, float *logits, float *iou, float *sparse, float *dense)
{
    const ms_sam_hparams *h = &m->hp;
    MS_TRY(ms_sam_check_prompts(prompts, batch));
    int64_t c = multimask ? h->n_multimask : 1, d = h->prompt_dim, hw = h->grid * h->grid;
    int64_t ns = ms_sam_sparse_tokens(&prompts[0]);
    /* Without mask input the dense embedding is no_mask_embed for every
     * prompt, and so is the image side. */
    int shared = !prompts[0].mask_input;
    int64_t group = shared ? LOCKSTEP : 1;
    ms_arena_mark outer = ms_arena_get_mark(m->arena);
    dec_image img;
    ms_status st = shared ? prepare_image(m, emb, &prompts[0], &img) : MS_OK;
    for (int64_t b = 0; b < batch && st == MS_OK; b += group) {
        int64_t nb = batch - b < group ? batch - b : group;
        ms_arena_mark mark = ms_arena_get_mark(m->arena);
        if (!shared) st = prepare_image(m, emb, &prompts[b], &img);
        if (st == MS_OK)
            st = decode_group(m, &img, &prompts[b], nb, multimask, logits + b * c * 16 * hw,
                              iou + b * c, sparse ? sparse + b * ns * d : NULL,
                              dense ? dense + b * d * hw : NULL);
        ms_arena_reset(m->arena, mark);
    }
    ms_arena_reset(m->arena, outer);
    return st;
}
