/* Private to model/: what the encoder and the decoder on a compute backend
 * (encoder_device.c, decoder_device.c) share. Each uploads its weights once
 * into one block of backend memory, placed by a loader run twice (first to
 * size the block, then to fill it), and reports a failing op with the
 * backend's own message. */
#ifndef MS_MODEL_DEVICE_H
#define MS_MODEL_DEVICE_H

#include <stddef.h>

#include "core/backend.h"
#include "model/sam_internal.h"

typedef struct dev_linear {
    ms_tensor w; /* the host tensor's shape and dtype, data on the backend */
    const float *b;
} dev_linear;

/* Places tensors one after another in a weight block. With base NULL it
 * only counts the bytes (used); with a block it uploads. */
typedef struct dev_loader {
    ms_backend *be;
    char *base;
    size_t used;
    ms_status st;
} dev_loader;

/* An activation buffer of a plan: where its pointer goes, and its floats. */
typedef struct dev_part {
    float **p;
    int64_t n;
} dev_part;

/* Lays the parts out one after another from base, each aligned (base NULL:
 * the pointers become NULL); returns the bytes they take. */
size_t dev_carve(char *base, const dev_part *parts, size_t count);

const float *dev_place_f32(dev_loader *l, const float *src, int64_t n);
void dev_place_tensor(dev_loader *l, ms_tensor *dst, const ms_tensor *src);
void dev_place_linear(dev_loader *l, dev_linear *dst, const sam_linear *src);
void dev_place_norm(dev_loader *l, sam_norm *dst, const sam_norm *src, int64_t dim);

/* An op's failure, with the backend's own line. */
#define BE_TRY(be, call)                                                                 \
    do {                                                                                 \
        if ((call) != MS_OK)                                                             \
            return ms_fail(MS_ERR_INTERNAL, "sam: backend %s: %s (%s:%d)", (be)->name,   \
                           (be)->error, __FILE__, __LINE__);                             \
    } while (0)

/* The halves' own release (each frees what it placed), and the model's. */
void ms_sam_encoder_device_free(ms_sam *m);
void ms_sam_decoder_device_free(ms_sam *m);

#endif
