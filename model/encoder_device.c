/* The image encoder on a compute backend (core/backend.h): encoder.c's
 * network op by op through the backend table, for a device (CUDA) that
 * cannot run the CPU path's fused, threaded loops. The weights go to the
 * backend once, in one block; the activations live in a second block whose
 * plan comes from the hyperparameters alone, made at the first image and
 * reused for every later one.
 * ref: segment_anything/modeling/image_encoder.py (ImageEncoderViT) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/device.h"

typedef struct dev_block {
    sam_norm norm1, norm2;
    dev_linear qkv, proj, lin1, lin2;
    const float *rel_h, *rel_w;
} dev_block;

/* The encoder's activations on the backend. */
typedef struct dev_acts {
    float *image;          /* (3, S, S) */
    float *x;              /* (t, e): the residual stream, t = grid^2 */
    float *xn;             /* (t, e): norm output, then the attention output in grid order */
    float *win;            /* (tokens, e): norm1's output in window order */
    float *qkv;            /* (tokens, 3e) */
    float *attn;           /* (tokens, e): the attention output in window order */
    float *bias_h, *bias_w; /* (heads, tokens, side): q . R per head */
    float *hidden;         /* (t, mlp_dim); the patch embedding and the neck's input first */
    float *neck_a, *neck_b; /* (c, t) */
} dev_acts;

struct sam_device {
    ms_backend *be;
    void *weights, *acts; /* the two blocks */
    ms_tensor patch_w, neck_conv1, neck_conv2;
    const float *patch_b, *pos_embed;
    sam_norm neck_norm1, neck_norm2;
    dev_block blocks[MS_SAM_MAX_BLOCKS];
    dev_acts a;
    size_t weight_bytes, act_bytes;
    float *host_x; /* (t, e) for the block hook, made at its first call */
};

/* ---- the weight block ------------------------------------------------------ */

static void place_weights(const ms_sam *m, struct sam_device *d, dev_loader *l)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t e = h->embed_dim, hd = e / h->heads, c = h->out_chans;
    dev_place_tensor(l, &d->patch_w, m->patch_w);
    d->patch_b = dev_place_f32(l, m->patch_b, e);
    d->pos_embed = dev_place_f32(l, m->pos_embed, h->grid * h->grid * e);
    for (int64_t i = 0; i < h->depth; i++) {
        const sam_enc_block *b = &m->blocks[i];
        dev_block *db = &d->blocks[i];
        int64_t side = ms_sam_block_geometry(h, b).side;
        dev_place_norm(l, &db->norm1, &b->norm1, e);
        dev_place_norm(l, &db->norm2, &b->norm2, e);
        dev_place_linear(l, &db->qkv, &b->qkv);
        dev_place_linear(l, &db->proj, &b->proj);
        dev_place_linear(l, &db->lin1, &b->lin1);
        dev_place_linear(l, &db->lin2, &b->lin2);
        db->rel_h = dev_place_f32(l, b->rel_h, (2 * side - 1) * hd);
        db->rel_w = dev_place_f32(l, b->rel_w, (2 * side - 1) * hd);
    }
    dev_place_tensor(l, &d->neck_conv1, m->neck_conv1);
    dev_place_tensor(l, &d->neck_conv2, m->neck_conv2);
    dev_place_norm(l, &d->neck_norm1, &m->neck_norm1, c);
    dev_place_norm(l, &d->neck_norm2, &m->neck_norm2, c);
}

/* ---- the activation plan ----------------------------------------------------- */

/* Carves the activations out of base (NULL: only sizes them); returns the
 * bytes used. */
static size_t plan_acts(const ms_sam *m, char *base, dev_acts *a)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t e = h->embed_dim, t = h->grid * h->grid, c = h->out_chans;
    int64_t tokens = t, bias = 0, s = h->img_size;
    for (int64_t i = 0; i < h->depth; i++) {
        win_geom g = ms_sam_block_geometry(h, &m->blocks[i]);
        if (g.tokens > tokens) tokens = g.tokens;
        if (h->heads * g.tokens * g.side > bias) bias = h->heads * g.tokens * g.side;
    }
    int64_t hidden = h->mlp_dim * t;
    if (e * t > hidden) hidden = e * t;
    dev_part parts[] = {
        {&a->image, 3 * s * s}, {&a->x, t * e},          {&a->xn, t * e},
        {&a->win, tokens * e},  {&a->qkv, 3 * tokens * e}, {&a->attn, tokens * e},
        {&a->bias_h, bias},     {&a->bias_w, bias},      {&a->hidden, hidden},
        {&a->neck_a, c * t},    {&a->neck_b, c * t},
    };
    return dev_carve(base, parts, sizeof parts / sizeof parts[0]);
}

/* ---- set-up and release ---------------------------------------------------------- */

void ms_sam_encoder_device_free(ms_sam *m)
{
    struct sam_device *d = m->dev;
    if (!d) return;
    if (d->weights) d->be->free(d->be, d->weights);
    if (d->acts) d->be->free(d->be, d->acts);
    free(d->host_x);
    free(d);
    m->dev = NULL;
}

static ms_status device_setup(ms_sam *m, ms_backend *be)
{
    if (m->dev && m->dev->be == be) return MS_OK;
    ms_sam_encoder_device_free(m);
    struct sam_device *d = calloc(1, sizeof *d);
    if (!d) return ms_fail(MS_ERR_NOMEM, "sam: cannot allocate the device state");
    m->dev = d;
    d->be = be;
    dev_loader l = {.be = be};
    place_weights(m, d, &l);
    size_t act_bytes = plan_acts(m, NULL, &d->a);
    if (l.st != MS_OK) {
        ms_sam_encoder_device_free(m);
        return l.st;
    }
    d->weights = be->alloc(be, l.used);
    d->acts = be->alloc(be, act_bytes);
    if (!d->weights || !d->acts) {
        ms_status st = ms_fail(MS_ERR_NOMEM, "sam: backend %s: cannot allocate %zu MB of "
                               "weights and %zu MB of activations: %s", be->name, l.used >> 20,
                               act_bytes >> 20, be->error);
        ms_sam_encoder_device_free(m);
        return st;
    }
    d->weight_bytes = l.used;
    d->act_bytes = act_bytes;
    l = (dev_loader){.be = be, .base = d->weights};
    place_weights(m, d, &l);
    plan_acts(m, d->acts, &d->a);
    if (l.st != MS_OK) ms_sam_encoder_device_free(m);
    return l.st;
}

/* ---- forward ------------------------------------------------------------------------ */

/* ref: image_encoder.py PatchEmbed.forward, then + pos_embed */
static ms_status patch_embed(const ms_sam *m, struct sam_device *d)
{
    const ms_sam_hparams *h = &m->hp;
    ms_backend *be = d->be;
    int64_t e = h->embed_dim, t = h->grid * h->grid, s = h->img_size;
    BE_TRY(d->be, be->conv2d(be, d->a.hidden, d->a.image, h->in_chans, s, s, &d->patch_w,
                         d->patch_b, (int)h->patch, 0));
    BE_TRY(d->be, be->transpose(be, d->a.x, d->a.hidden, e, t));
    BE_TRY(d->be, be->add(be, d->a.x, d->a.x, d->pos_embed, t * e));
    return MS_OK;
}

/* Attention over the windows of a block (a global block is one window):
 * qkv (tokens, 3e) rows [q | k | v], each [heads][hd]; out (tokens, e).
 * Each call of the op takes a batch of (window, head) pairs at fixed
 * strides: all windows of one head, or all heads of one window, whichever
 * needs fewer calls (a device fills better with fewer, larger launches).
 * The padding's query rows are computed too and dropped by the caller.
 * ref: image_encoder.py Attention.forward with add_decomposed_rel_pos */
static ms_status attention(const ms_sam *m, struct sam_device *d, const dev_block *b,
                           int64_t side, int64_t tokens)
{
    const ms_sam_hparams *h = &m->hp;
    ms_backend *be = d->be;
    int64_t e = h->embed_dim, hd = e / h->heads, n = side * side, ld = 3 * e;
    for (int64_t i = 0; i < h->heads; i++)
        BE_TRY(d->be, be->rel_pos(be, d->a.bias_h + i * tokens * side, d->a.bias_w + i * tokens * side,
                              d->a.qkv + i * hd, ld, tokens, hd, b->rel_h, b->rel_w, side));
    int64_t windows = tokens / n, bias_head = tokens * side;
    int by_head = windows > h->heads;
    ms_attn_heads batch =
        by_head ? (ms_attn_heads){.n = windows, .q_step = n * ld, .k_step = n * ld,
                                  .v_step = n * ld, .out_step = n * e, .bias_h_step = n * side,
                                  .bias_w_step = n * side}
                : (ms_attn_heads){.n = h->heads, .q_step = hd, .k_step = hd, .v_step = hd,
                                  .out_step = hd, .bias_h_step = bias_head,
                                  .bias_w_step = bias_head};
    for (int64_t i = 0; i < (by_head ? h->heads : windows); i++) {
        int64_t w = by_head ? 0 : i, head = by_head ? i : 0;
        const float *q = d->a.qkv + w * n * ld + head * hd;
        int64_t bias = head * bias_head + w * n * side;
        ms_attn a = {
            .q = q, .k = q + e, .v = q + 2 * e, .ldq = ld, .ldk = ld, .ldv = ld,
            .out = d->a.attn + w * n * e + head * hd, .ldo = e, .nq = n, .nk = n, .d = hd,
            .scale = (float)(1.0 / sqrt((double)hd)),
            .bias_h = d->a.bias_h + bias, .bias_w = d->a.bias_w + bias, .kh = side, .kw = side,
        };
        BE_TRY(d->be, be->attention(be, &a, &batch));
    }
    return MS_OK;
}

/* ref: image_encoder.py Block.forward */
static ms_status block_forward(const ms_sam *m, struct sam_device *d, const sam_enc_block *hb,
                               const dev_block *b)
{
    const ms_sam_hparams *h = &m->hp;
    ms_backend *be = d->be;
    int64_t e = h->embed_dim, t = h->grid * h->grid;
    win_geom geo = ms_sam_block_geometry(h, hb);
    float eps = (float)h->enc_ln_eps;
    /* x = x + proj(attn(norm1(x))), windowed: partition after norm1 (the
     * padding is zero, as F.pad after norm1), unpartition before proj */
    float *in = d->a.xn;
    BE_TRY(d->be, be->layernorm(be, d->a.xn, e, d->a.x, e, t, e, b->norm1.g, b->norm1.b, eps));
    if (hb->window) {
        BE_TRY(d->be, be->window_partition(be, d->a.win, d->a.xn, h->grid, e, geo.side));
        in = d->a.win;
    }
    BE_TRY(d->be, be->linear(be, d->a.qkv, 3 * e, in, e, geo.tokens, &b->qkv.w, b->qkv.b,
                         MS_EPI_NONE, 0));
    MS_TRY(attention(m, d, b, geo.side, geo.tokens));
    const float *out = d->a.attn;
    if (hb->window) {
        BE_TRY(d->be, be->window_unpartition(be, d->a.xn, d->a.attn, h->grid, e, geo.side));
        out = d->a.xn;
    }
    BE_TRY(d->be, be->linear(be, d->a.x, e, out, e, t, &b->proj.w, b->proj.b, MS_EPI_NONE, 1));
    /* x = x + lin2(gelu(lin1(norm2(x)))) */
    BE_TRY(d->be, be->layernorm(be, d->a.xn, e, d->a.x, e, t, e, b->norm2.g, b->norm2.b, eps));
    BE_TRY(d->be, be->linear(be, d->a.hidden, h->mlp_dim, d->a.xn, e, t, &b->lin1.w, b->lin1.b,
                         MS_EPI_GELU, 0));
    BE_TRY(d->be, be->linear(be, d->a.x, e, d->a.hidden, h->mlp_dim, t, &b->lin2.w, b->lin2.b,
                         MS_EPI_NONE, 1));
    return MS_OK;
}

/* ref: image_encoder.py ImageEncoderViT.neck: conv 1x1, LayerNorm2d,
 * conv 3x3 (padding 1), LayerNorm2d, channel-first. */
static ms_status neck(const ms_sam *m, struct sam_device *d)
{
    const ms_sam_hparams *h = &m->hp;
    ms_backend *be = d->be;
    int64_t e = h->embed_dim, g = h->grid, t = g * g, c = h->out_chans;
    float *xt = d->a.hidden, *na = d->a.neck_a, *nb = d->a.neck_b;
    BE_TRY(d->be, be->transpose(be, xt, d->a.x, t, e));
    BE_TRY(d->be, be->conv2d(be, na, xt, e, g, g, &d->neck_conv1, NULL, 1, 0));
    BE_TRY(d->be, be->layernorm_channels(be, nb, na, c, t, d->neck_norm1.g, d->neck_norm1.b,
                                     MS_SAM_LN2D_EPS));
    BE_TRY(d->be, be->conv2d(be, na, nb, c, g, g, &d->neck_conv2, NULL, 1, 1));
    BE_TRY(d->be, be->layernorm_channels(be, nb, na, c, t, d->neck_norm2.g, d->neck_norm2.b,
                                     MS_SAM_LN2D_EPS));
    return MS_OK;
}

/* The block hook sees x on the host. */
static ms_status hook(ms_sam *m, struct sam_device *d, int block)
{
    if (!m->hook) return MS_OK;
    size_t bytes = (size_t)(m->hp.grid * m->hp.grid * m->hp.embed_dim) * sizeof(float);
    if (!d->host_x && !(d->host_x = malloc(bytes)))
        return ms_fail(MS_ERR_NOMEM, "sam: cannot allocate the block hook's buffer");
    BE_TRY(d->be, d->be->download(d->be, d->host_x, d->a.x, bytes));
    m->hook(m->hook_ctx, block, d->host_x);
    return MS_OK;
}

/* ref: image_encoder.py ImageEncoderViT.forward */
ms_status ms_sam_encode_on(ms_sam *m, ms_backend *be, const float *image, float *emb)
{
    const ms_sam_hparams *h = &m->hp;
    MS_TRY(device_setup(m, be));
    struct sam_device *d = m->dev;
    int64_t s = h->img_size, t = h->grid * h->grid;
    BE_TRY(d->be, be->upload(be, d->a.image, image, (size_t)(3 * s * s) * sizeof(float)));
    MS_TRY(patch_embed(m, d));
    MS_TRY(hook(m, d, -1));
    for (int64_t i = 0; i < h->depth; i++) {
        MS_TRY(block_forward(m, d, &m->blocks[i], &d->blocks[i]));
        MS_TRY(hook(m, d, (int)i));
    }
    MS_TRY(neck(m, d));
    BE_TRY(d->be, be->download(be, emb, d->a.neck_b, (size_t)(h->out_chans * t) * sizeof(float)));
    return MS_OK;
}

uint64_t ms_sam_device_bytes(const ms_sam *m)
{
    return m->dev ? m->dev->weight_bytes + m->dev->act_bytes : 0;
}
