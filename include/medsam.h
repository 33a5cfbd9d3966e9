/* medsam: MedSAM / SAM inference in C. The one public header.
 *
 *   ms_model *m;
 *   if (ms_model_load("medsam_vit_b.msw", NULL, &m)) { puts(ms_last_error()); return 1; }
 *   ms_image img = {.height = h, .width = w, .channels = 1, .type = MS_PIXEL_U8, .data = pixels};
 *   ms_encode_image(m, &img);                       // the slow part, once per image
 *   ms_box box = {x0, y0, x1, y1};                  // in the image's own pixels
 *   ms_prompts p = {.boxes = &box, .n_boxes = 1};
 *   ms_result r;
 *   ms_decode(m, &p, &r);                           // fast, once per prompt
 *   ... r.masks is (1, 1, h, w) of 0/1 ...
 *   ms_result_free(&r);
 *   ms_model_free(m);
 *
 * Every function returning int gives 0 on success and a non-zero status on
 * failure; ms_last_error() then holds one line saying what went wrong. */
#ifndef MEDSAM_H
#define MEDSAM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEDSAM_VERSION "0.1.0"

typedef struct ms_model ms_model;

typedef struct ms_model_options {
    int n_threads;  /* <= 0: all CPUs */
    int verify_crc; /* check every tensor's CRC32 while loading */
} ms_model_options;

/* Loads a .msw weight file (see `medsam convert`). opt may be NULL. */
int ms_model_load(const char *path, const ms_model_options *opt, ms_model **out);
void ms_model_free(ms_model *m);
/* Side of the square network input (1024 for SAM / MedSAM). */
int64_t ms_model_input_size(const ms_model *m);
/* Image embedding shape (channels, grid, grid). */
void ms_model_embedding_shape(const ms_model *m, int64_t shape[3]);
/* Side of the low-resolution mask logits (256). */
int64_t ms_model_mask_size(const ms_model *m);
/* "medsam" or "sam": how images are prepared (from the weight file; can be
 * overridden with ms_model_set_preprocess). */
const char *ms_model_preprocess(const ms_model *m);
int ms_model_set_preprocess(ms_model *m, const char *name);
/* Where the image encoder runs: "cpu", "cuda", or "auto" (CUDA when a device
 * is usable, else the CPU; the default is the CPU). The prompt encoder and
 * mask decoder run on the CPU either way. tf32 != 0 allows TF32 tensor-core
 * GEMMs on CUDA (about 10 mantissa bits: off for parity). Returns 0, or
 * non-zero when "cuda" is unusable (ms_last_error says why). */
int ms_model_set_backend(ms_model *m, const char *choice, int tf32);
/* "cpu" or "cuda": where the next encoding runs; *device (may be NULL) gets
 * the CPU model or GPU name. */
const char *ms_model_backend(const ms_model *m, const char **device);

typedef enum ms_pixel_type { MS_PIXEL_U8 = 0, MS_PIXEL_U16 = 1, MS_PIXEL_F32 = 2 } ms_pixel_type;

/* An interleaved image: height x width x channels (1 grey, 2 grey+alpha,
 * 3 RGB, 4 RGBA; alpha is ignored). Non-8-bit images are min-max scaled to
 * 0..255 before MedSAM's preprocessing (MedSAM's own script wraps them). */
typedef struct ms_image {
    int64_t height, width, channels;
    ms_pixel_type type;
    const void *data;
} ms_image;

/* Preprocesses (MedSAM: stretch to 1024x1024 with skimage's cubic resize,
 * min-max to [0,1]; SAM: longest side 1024, mean/std, pad) and runs the image
 * encoder. Prompts then use the image's own pixel coordinates. */
int ms_encode_image(ms_model *m, const ms_image *img);
/* Runs the encoder on an already prepared (3, S, S) float32 input. Prompts
 * are then in that S x S frame and masks come back at S x S. */
int ms_encode_prepared(ms_model *m, const float *chw);
/* Uses a saved embedding (channels x grid x grid, see ms_get_embedding)
 * instead of running the encoder, for an image of the given size. raw != 0:
 * prompts in the S x S network frame as for ms_encode_prepared. */
int ms_set_embedding(ms_model *m, const float *emb, int64_t height, int64_t width, int raw);
int ms_get_embedding(const ms_model *m, float *out);

typedef struct ms_box {
    double x0, y0, x1, y1;
} ms_box;

typedef struct ms_point {
    double x, y;
    int label; /* 1 foreground, 0 background */
} ms_point;

/* Either n_boxes boxes (a batch: one mask set per box, each box may also
 * carry the same points) or, with no box, the points alone as one prompt.
 * mask_input: optional (mask_size x mask_size) logits from an earlier decode,
 * applied to every prompt of the batch. */
typedef struct ms_prompts {
    const ms_box *boxes;
    int64_t n_boxes;
    const ms_point *points;
    int64_t n_points;
    const float *mask_input;
    int multimask; /* 0: one mask per prompt; 1: the model's 3 candidates */
} ms_prompts;

typedef struct ms_result {
    int64_t batch, n_masks;    /* prompts, masks per prompt */
    int64_t low_res;           /* side of the logits (256) */
    int64_t height, width;     /* of the masks: the image's size */
    float *low_res_logits;     /* batch x n_masks x low_res x low_res */
    float *iou;                /* batch x n_masks predicted IoU */
    uint8_t *masks;            /* batch x n_masks x height x width, 0/1 */
} ms_result;

int ms_decode(ms_model *m, const ms_prompts *p, ms_result *out);
void ms_result_free(ms_result *r);

/* Stage timings of the last encode/decode in milliseconds, and the peak
 * activation memory in bytes. */
typedef struct ms_timings {
    double preprocess_ms, encode_ms, decode_ms, postprocess_ms;
    uint64_t peak_activation_bytes;
} ms_timings;
void ms_model_timings(const ms_model *m, ms_timings *out);

const char *ms_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
