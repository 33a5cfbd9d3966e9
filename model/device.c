/* The weight loader and the activation layout the encoder and the decoder
 * on a backend share, and the release of both halves' state. */
#include "model/device.h"

#define DEV_ALIGN 256 /* bytes: every tensor starts on a GPU-friendly boundary */

static size_t dev_round(size_t bytes)
{
    return (bytes + DEV_ALIGN - 1) & ~(size_t)(DEV_ALIGN - 1);
}

static void *place(dev_loader *l, const void *src, size_t bytes)
{
    size_t at = l->used;
    l->used += dev_round(bytes);
    if (!l->base || l->st != MS_OK) return NULL;
    if (l->be->upload(l->be, l->base + at, src, bytes) != MS_OK)
        l->st = ms_fail(MS_ERR_IO, "sam: backend %s: uploading the weights: %s", l->be->name,
                        l->be->error);
    return l->base + at;
}

const float *dev_place_f32(dev_loader *l, const float *src, int64_t n)
{
    return place(l, src, (size_t)n * sizeof(float));
}

void dev_place_tensor(dev_loader *l, ms_tensor *dst, const ms_tensor *src)
{
    *dst = *src;
    dst->owns_data = 0;
    if (!ms_tensor_is_contiguous(src)) {
        if (l->st == MS_OK) l->st = ms_fail(MS_ERR_FORMAT, "sam: a weight is not contiguous");
        return;
    }
    dst->data = place(l, src->data, ms_dtype_bytes(src->dtype, (uint64_t)ms_tensor_nelem(src)));
}

void dev_place_linear(dev_loader *l, dev_linear *dst, const sam_linear *src)
{
    dev_place_tensor(l, &dst->w, src->w);
    dst->b = dev_place_f32(l, src->b, src->w->ne[0]);
}

void dev_place_norm(dev_loader *l, sam_norm *dst, const sam_norm *src, int64_t dim)
{
    dst->g = dev_place_f32(l, src->g, dim);
    dst->b = dev_place_f32(l, src->b, dim);
}

size_t dev_carve(char *base, const dev_part *parts, size_t count)
{
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        *parts[i].p = base ? (float *)(base + used) : NULL;
        used += dev_round((size_t)parts[i].n * sizeof(float));
    }
    return used;
}

void ms_sam_device_free(ms_sam *m)
{
    ms_sam_encoder_device_free(m);
    ms_sam_decoder_device_free(m);
}
