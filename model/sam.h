/* The SAM / MedSAM network: image encoder, prompt encoder, mask decoder.
 * Every size comes from the weight file's metadata (weights/FORMAT.md lists
 * the keys), so ViT-B/L/H and custom sizes run through the same code.
 * ref: segment_anything/modeling/sam.py (Sam) */
#ifndef MS_MODEL_SAM_H
#define MS_MODEL_SAM_H

#include <stdint.h>

#include "core/error.h"
#include "weights/msw.h"

#define MS_SAM_MAX_BLOCKS 64

typedef struct ms_sam_hparams {
    /* image encoder (ViT) */
    int64_t img_size, patch, in_chans, embed_dim, depth, heads, mlp_dim, window;
    int64_t n_global, global_blocks[MS_SAM_MAX_BLOCKS];
    int64_t out_chans; /* neck channels = prompt dim */
    int64_t grid;      /* img_size / patch */
    double enc_ln_eps;
    /* prompt encoder */
    int64_t prompt_dim, mask_in_chans;
    /* mask decoder */
    int64_t dec_depth, dec_heads, dec_mlp, n_multimask, iou_hidden, iou_depth,
        attn_downsample;
    double dec_ln_eps;
} ms_sam_hparams;

typedef struct ms_sam ms_sam;

/* The weights must outlive the model (tensors are views into the mapping).
 * n_threads <= 0: all CPUs. */
ms_status ms_sam_create(const ms_weights *w, int n_threads, ms_sam **out);
void ms_sam_free(ms_sam *m);
const ms_sam_hparams *ms_sam_params(const ms_sam *m);

/* image: (3, S, S) float32, S = img_size, already preprocessed.
 * emb: (out_chans, grid, grid). */
ms_status ms_sam_encode(ms_sam *m, const float *image, float *emb);

/* The same on a compute backend (core/backend.h), op by op through its
 * table: image and emb stay in host memory. The first call with a backend
 * uploads the weights and plans the activations there; they stay until the
 * model is freed or another backend is used. */
typedef struct ms_backend ms_backend;
ms_status ms_sam_encode_on(ms_sam *m, ms_backend *be, const float *image, float *emb);
/* Bytes the encoder holds on its backend: the weights and the activations
 * (the backend's own workspace not included); 0 before ms_sam_encode_on. */
uint64_t ms_sam_device_bytes(const ms_sam *m);

/* Called after the patch embedding (+ position) with block = -1, then after
 * each encoder block, with x as (grid, grid, embed_dim). For parity tests. */
typedef void (*ms_sam_block_hook)(void *ctx, int block, const float *x);
void ms_sam_set_block_hook(ms_sam *m, ms_sam_block_hook hook, void *ctx);

/* One prompt, coordinates in the S x S input frame (before SAM's +0.5). */
typedef struct ms_prompt {
    int has_box;
    float box[4];           /* x0, y0, x1, y1 */
    int64_t n_points;
    const float *points;    /* n_points x 2 (x, y) */
    const int32_t *labels;  /* 1 foreground, 0 background */
    const float *mask_input; /* (4*grid, 4*grid) logits, or NULL */
} ms_prompt;

/* Decodes a batch of B prompts against one embedding. As in SAM's batched
 * call, all prompts of a batch share their structure (box or not, number of
 * points, mask input or not). C = n_multimask when multimask, else 1.
 * logits: B x C x (4*grid) x (4*grid); iou: B x C. sparse (B x N x D) and
 * dense (B x D x grid x grid) may be NULL; they receive the prompt
 * encoder's outputs. */
ms_status ms_sam_decode(ms_sam *m, const float *emb, const ms_prompt *prompts, int64_t batch,
                        int multimask, float *logits, float *iou, float *sparse, float *dense);
/* The same with the mask decoder on a compute backend, op by op through
 * its table, prompt after prompt (the prompt encoder runs on the host);
 * emb and the outputs stay in host memory. Its weights go to the backend
 * at the first call and stay as the encoder's do. */
ms_status ms_sam_decode_on(ms_sam *m, ms_backend *be, const float *emb, const ms_prompt *prompts,
                           int64_t batch, int multimask, float *logits, float *iou, float *sparse,
                           float *dense);
/* Number of sparse tokens for a prompt of this structure. */
int64_t ms_sam_sparse_tokens(const ms_prompt *p);
/* prompt_encoder.get_dense_pe(): (prompt_dim, grid, grid). */
ms_status ms_sam_dense_pe(ms_sam *m, float *out);
/* Peak bytes of activation memory used so far. */
uint64_t ms_sam_peak_bytes(const ms_sam *m);

#endif
