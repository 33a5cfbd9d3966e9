/* Private to model/: the bound weights of a SAM model and the helpers its
 * stages share (weight binding in sam.c, threaded ops in ops.c). */
#ifndef MS_MODEL_SAM_INTERNAL_H
#define MS_MODEL_SAM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "model/sam.h"

#define MS_SAM_MAX_DEC_LAYERS 16
#define MS_SAM_MAX_MASK_TOKENS 16
#define MS_SAM_MAX_IOU_LAYERS 16
/* Point embeddings: negative point, positive point, box top-left, bottom-right. */
#define MS_SAM_POINT_EMBEDS 4

/* LayerNorm2d's epsilon is fixed in the official code (common.py), it is not
 * a hyperparameter of the checkpoint. */
#define MS_SAM_LN2D_EPS 1e-6f

typedef struct sam_linear {
    const ms_tensor *w; /* (out, in): f32, f16 or q8, handed to ms_linear as is */
    const float *b;     /* (out) */
} sam_linear;

typedef struct sam_norm {
    const float *g, *b;
} sam_norm;

/* ref: image_encoder.py Block */
typedef struct sam_enc_block {
    sam_norm norm1, norm2;
    sam_linear qkv, proj, lin1, lin2;
    const float *rel_h, *rel_w; /* (2 * side - 1, head_dim) */
    int64_t window;             /* window side; 0: global attention */
} sam_enc_block;

/* ref: transformer.py Attention (q/k/v project to `inner` = dim / downsample) */
typedef struct sam_attention {
    sam_linear q, k, v, out;
    int64_t inner;
} sam_attention;

/* ref: transformer.py TwoWayAttentionBlock */
typedef struct sam_dec_layer {
    sam_attention self_attn, token_to_image, image_to_token;
    sam_norm norm1, norm2, norm3, norm4;
    sam_linear lin1, lin2;
} sam_dec_layer;

struct ms_sam {
    ms_sam_hparams hp;
    const ms_weights *w;
    ms_pool *pool;
    int n_threads;
    ms_arena *arena;
    ms_sam_block_hook hook;
    void *hook_ctx;
    float **owned; /* f32 copies of small tensors stored in another dtype */
    int64_t n_owned;
    struct sam_device *dev; /* the encoder on a backend (encoder_device.c), or NULL */
    struct sam_dec_device *dec_dev; /* the decoder on a backend (decoder_device.c), or NULL */

    /* image encoder */
    const ms_tensor *patch_w;
    const float *patch_b, *pos_embed; /* pos_embed: (grid * grid, embed_dim) */
    sam_enc_block blocks[MS_SAM_MAX_BLOCKS];
    const ms_tensor *neck_conv1, *neck_conv2;
    sam_norm neck_norm1, neck_norm2;

    /* prompt encoder */
    const float *pe_gauss; /* (2, prompt_dim / 2) */
    const float *point_embed[MS_SAM_POINT_EMBEDS];
    const float *not_a_point, *no_mask;
    const ms_tensor *mask_conv[3];
    const float *mask_conv_b[3];
    sam_norm mask_norm[2];
    float *dense_pe; /* get_dense_pe() token-major: (grid * grid, prompt_dim) */

    /* mask decoder */
    const float *iou_token, *mask_tokens;
    sam_dec_layer layers[MS_SAM_MAX_DEC_LAYERS];
    sam_attention final_attn;
    sam_norm final_norm;
    const ms_tensor *up_conv[2];
    const float *up_conv_b[2];
    sam_norm up_norm;
    sam_linear hyper[MS_SAM_MAX_MASK_TOKENS][3];
    sam_linear iou_head[MS_SAM_MAX_IOU_LAYERS];
};

/* ---- weight binding (sam.c): look a tensor up, check its shape exactly,
 * fail naming the tensor. Shapes are given with SAM_SHAPE(d0, d1, ...). */
#define SAM_SHAPE(...)                                                          \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),          \
        (const int64_t[]){__VA_ARGS__}

/* A weight handed to the kernels as stored (f32, f16 or q8). */
ms_status ms_sam_bind_weight(ms_sam *m, const ms_tensor **out, const char *name, int ndim,
                             const int64_t *shape);
/* A small tensor used as plain float32: a view when stored as f32, else
 * converted once into a buffer the model owns. */
ms_status ms_sam_bind_f32(ms_sam *m, const float **out, const char *name, int ndim,
                          const int64_t *shape);
/* prefix.weight (out, in) and prefix.bias (out). */
ms_status ms_sam_bind_linear(ms_sam *m, sam_linear *l, const char *prefix, int64_t out,
                             int64_t in);
/* prefix.weight and prefix.bias, both (dim). */
ms_status ms_sam_bind_norm(ms_sam *m, sam_norm *n, const char *prefix, int64_t dim);

ms_status ms_sam_bind_encoder(ms_sam *m);

/* How an encoder block tiles the grid: global attention is one window of
 * the whole grid; windowed attention pads the grid to a multiple of the
 * window. ref: image_encoder.py window_partition */
typedef struct win_geom {
    int64_t side;    /* window side (the grid for global attention) */
    int64_t per_row; /* windows per padded row */
    int64_t padded;  /* padded grid side */
    int64_t tokens;  /* tokens in all windows, padding included */
} win_geom;

static inline win_geom ms_sam_block_geometry(const ms_sam_hparams *h, const sam_enc_block *b)
{
    win_geom w;
    w.side = b->window ? b->window : h->grid;
    w.per_row = (h->grid + w.side - 1) / w.side;
    w.padded = w.per_row * w.side;
    w.tokens = w.padded * w.padded;
    return w;
}

/* Frees m->dev and m->dec_dev (the weights and activations on their backend). */
void ms_sam_device_free(ms_sam *m);
ms_status ms_sam_bind_prompt_encoder(ms_sam *m);
ms_status ms_sam_bind_decoder(ms_sam *m);
/* ms_sam_decode's checks of a batch of prompts (decoder.c). */
ms_status ms_sam_check_prompts(const ms_prompt *prompts, int64_t batch);

/* ---- prompt encoder (prompt_encoder.c) ---- */
/* Fills m->dense_pe. */
ms_status ms_sam_init_dense_pe(ms_sam *m);
/* sparse: (ms_sam_sparse_tokens(p), prompt_dim). */
void ms_sam_embed_sparse(const ms_sam *m, const ms_prompt *p, float *sparse);
/* dense: (prompt_dim, grid * grid), channel-first. */
ms_status ms_sam_embed_dense(ms_sam *m, const ms_prompt *p, float *dense);

/* ---- threaded ops (ops.c). Scratch comes from m->arena and is released
 * before returning. */
/* n floats from the arena, NULL on failure (message set). */
float *ms_nn_floats(ms_sam *m, int64_t n);
/* y (+)= x W^T + b over `rows` rows, then the epilogue (ReLU or GELU). */
ms_status ms_nn_linear(ms_sam *m, float *y, int64_t ldy, const float *x, int64_t ldx,
                       int64_t rows, const sam_linear *l, ms_epilogue epi, int accumulate);
/* Row LayerNorm, rows split over the pool; y may alias x. */
void ms_nn_layernorm(ms_sam *m, float *y, int64_t ldy, const float *x, int64_t ldx,
                     int64_t rows, int64_t dim, const sam_norm *n, float eps);
/* The same followed by o's activation and second output (ms_layernorm_ex);
 * o == NULL: ms_nn_layernorm. */
void ms_nn_layernorm_ex(ms_sam *m, float *y, int64_t ldy, const float *x, int64_t ldx,
                        int64_t rows, int64_t dim, const sam_norm *n, float eps,
                        const ms_ln_out *o);
void ms_nn_gelu(ms_sam *m, float *x, int64_t n);
/* y = a + b, n floats; y may alias a or b. */
void ms_nn_add(ms_sam *m, float *y, const float *a, const float *b, int64_t n);
/* x: blocks of (rows, n), contiguous; each column of each block softmaxed
 * over its rows. */
void ms_nn_softmax_cols(ms_sam *m, float *x, int64_t blocks, int64_t rows, int64_t n);
/* dst (cols, rows) = src (rows, cols)^T. */
void ms_nn_transpose(ms_sam *m, float *dst, const float *src, int64_t rows, int64_t cols);
/* Multi-head softmax(scale q k^T) v without position bias: q (nq, heads*d),
 * k and v (nk, heads*d), out (nq, heads*d), all contiguous. Heads x query
 * blocks are split over the pool. */
ms_status ms_nn_mha(ms_sam *m, const float *q, const float *k, const float *v, float *out,
                    int64_t nq, int64_t nk, int64_t heads, int64_t d, float scale);

#endif
