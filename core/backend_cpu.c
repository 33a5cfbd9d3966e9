/* The CPU backend: kernels/ on host memory. Memory calls are malloc and
 * memcpy, and ops run synchronously; the kernels' scratch comes from one
 * workspace grown on demand. Window partition and transpose have no kernel
 * of their own (the model fuses them into its threaded loops), so they are
 * written here. */
#include "core/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpu_ctx {
    void *scratch;
    size_t scratch_bytes;
} cpu_ctx;

/* The workspace, at least `bytes` long and never NULL (ops that need none
 * still get a valid pointer); NULL with be->error set when out of memory. */
static void *scratch(ms_backend *be, size_t bytes)
{
    cpu_ctx *c = be->ctx;
    if (c->scratch && bytes <= c->scratch_bytes) return c->scratch;
    free(c->scratch);
    c->scratch_bytes = 0;
    c->scratch = aligned_alloc(64, ((bytes ? bytes : 1) + 63) & ~(size_t)63);
    if (!c->scratch) {
        snprintf(be->error, sizeof be->error, "cpu: out of memory (%zu bytes of scratch)", bytes);
        return NULL;
    }
    c->scratch_bytes = bytes;
    return c->scratch;
}

/* ---- memory ---- */

static void *cpu_alloc(ms_backend *be, size_t bytes)
{
    void *p = aligned_alloc(64, ((bytes ? bytes : 1) + 63) & ~(size_t)63);
    if (!p) snprintf(be->error, sizeof be->error, "cpu: out of memory (%zu bytes)", bytes);
    return p;
}

static void cpu_free(ms_backend *be, void *p) { free(p); }

static ms_status cpu_copy(ms_backend *be, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
    return MS_OK;
}

static ms_status cpu_synchronize(ms_backend *be) { return MS_OK; }

static ms_status cpu_set_tf32(ms_backend *be, int on) { return MS_OK; }

static void cpu_release(ms_backend *be)
{
    cpu_ctx *c = be->ctx;
    if (c) free(c->scratch);
    free(c);
    be->ctx = NULL;
}

/* ---- GEMM, linear, convolutions ---- */

static ms_status cpu_sgemm(ms_backend *be, int trans_a, int trans_b, int64_t m, int64_t n,
                           int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                           int64_t ldb, float beta, float *c, int64_t ldc)
{
    ms_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return MS_OK;
}

static ms_status cpu_linear(ms_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                            int64_t m, const ms_tensor *w, const float *bias, ms_epilogue epi,
                            int accumulate)
{
    size_t bytes = ms_linear_scratch_bytes(w, m);
    void *s = bytes ? scratch(be, bytes) : NULL;
    if (bytes && !s) return MS_ERR_NOMEM;
    ms_linear(y, ldy, x, ldx, m, w, bias, epi, accumulate, s);
    return MS_OK;
}

static ms_status cpu_conv2d(ms_backend *be, float *y, const float *x, int64_t cin, int64_t h,
                            int64_t w, const ms_tensor *wt, const float *bias, int stride, int pad)
{
    size_t floats = ms_conv2d_scratch_floats(cin, h, w, wt, stride, pad);
    float *s = scratch(be, floats * sizeof(float));
    if (!s) return MS_ERR_NOMEM;
    ms_conv2d(y, x, cin, h, w, wt, bias, stride, pad, s);
    return MS_OK;
}

static ms_status cpu_conv_transpose2x2(ms_backend *be, float *y, const float *x, int64_t cin,
                                       int64_t h, int64_t w, const ms_tensor *wt,
                                       const float *bias)
{
    float *s = scratch(be, (size_t)(4 * wt->ne[1] * h * w) * sizeof(float));
    if (!s) return MS_ERR_NOMEM;
    ms_conv_transpose2x2(y, x, cin, h, w, wt, bias, s);
    return MS_OK;
}

/* ---- normalisation, activations, attention ---- */

static ms_status cpu_layernorm(ms_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                               int64_t rows, int64_t dim, const float *g, const float *b, float eps)
{
    ms_layernorm(y, ldy, x, ldx, rows, dim, g, b, eps);
    return MS_OK;
}

static ms_status cpu_layernorm_channels(ms_backend *be, float *y, const float *x, int64_t c,
                                        int64_t hw, const float *g, const float *b, float eps)
{
    ms_layernorm_channels(y, x, c, hw, g, b, eps);
    return MS_OK;
}

static ms_status cpu_gelu(ms_backend *be, float *x, int64_t n)
{
    ms_gelu(x, n);
    return MS_OK;
}

static ms_status cpu_relu(ms_backend *be, float *x, int64_t n)
{
    ms_relu(x, n);
    return MS_OK;
}

static ms_status cpu_softmax_rows(ms_backend *be, float *x, int64_t rows, int64_t n, int64_t ld)
{
    ms_softmax_rows(x, rows, n, ld);
    return MS_OK;
}

static ms_status cpu_add(ms_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    ms_add(y, a, b, n);
    return MS_OK;
}

static ms_status cpu_attention(ms_backend *be, const ms_attn *a, const ms_attn_heads *heads)
{
    float *s = scratch(be, ms_attention_scratch_floats(a) * sizeof(float));
    if (!s) return MS_ERR_NOMEM;
    for (int64_t i = 0; i < heads->n; i++) {
        ms_attn h = *a;
        h.q += i * heads->q_step;
        h.k += i * heads->k_step;
        h.v += i * heads->v_step;
        h.out += i * heads->out_step;
        if (h.bias_h) {
            h.bias_h += i * heads->bias_h_step;
            h.bias_w += i * heads->bias_w_step;
        }
        ms_attention(&h, 0, h.nq, s);
    }
    return MS_OK;
}

static ms_status cpu_rel_pos(ms_backend *be, float *bias_h, float *bias_w, const float *q,
                             int64_t ldq, int64_t tokens, int64_t d, const float *rel_h,
                             const float *rel_w, int64_t side)
{
    ms_rel_pos_bias(bias_h, bias_w, q, ldq, tokens, d, rel_h, rel_w, side);
    return MS_OK;
}

/* ---- layout ---- */

static ms_status cpu_transpose(ms_backend *be, float *dst, const float *src, int64_t rows,
                               int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
    return MS_OK;
}

/* Row of the grid (or of its padding) that window token t sits on, and its
 * column: windows row-major, tokens row-major inside each window. */
static void window_pos(int64_t t, int64_t side, int64_t per_row, int64_t *r, int64_t *c)
{
    int64_t win = t / (side * side), in = t % (side * side);
    *r = (win / per_row) * side + in / side;
    *c = (win % per_row) * side + in % side;
}

static ms_status cpu_window_partition(ms_backend *be, float *dst, const float *src, int64_t grid,
                                      int64_t e, int64_t side)
{
    int64_t per_row = (grid + side - 1) / side, tokens = per_row * per_row * side * side;
    for (int64_t t = 0; t < tokens; t++) {
        int64_t r, c;
        window_pos(t, side, per_row, &r, &c);
        if (r < grid && c < grid)
            memcpy(dst + t * e, src + (r * grid + c) * e, (size_t)e * sizeof(float));
        else
            memset(dst + t * e, 0, (size_t)e * sizeof(float));
    }
    return MS_OK;
}

static ms_status cpu_window_unpartition(ms_backend *be, float *dst, const float *src,
                                        int64_t grid, int64_t e, int64_t side)
{
    int64_t per_row = (grid + side - 1) / side, tokens = per_row * per_row * side * side;
    for (int64_t t = 0; t < tokens; t++) {
        int64_t r, c;
        window_pos(t, side, per_row, &r, &c);
        if (r < grid && c < grid)
            memcpy(dst + (r * grid + c) * e, src + t * e, (size_t)e * sizeof(float));
    }
    return MS_OK;
}

/* ---- the table ---- */

static void set_ops(ms_backend *be)
{
    be->sgemm = cpu_sgemm;
    be->linear = cpu_linear;
    be->layernorm = cpu_layernorm;
    be->layernorm_channels = cpu_layernorm_channels;
    be->gelu = cpu_gelu;
    be->relu = cpu_relu;
    be->softmax_rows = cpu_softmax_rows;
    be->add = cpu_add;
    be->transpose = cpu_transpose;
    be->attention = cpu_attention;
    be->rel_pos = cpu_rel_pos;
    be->window_partition = cpu_window_partition;
    be->window_unpartition = cpu_window_unpartition;
    be->conv2d = cpu_conv2d;
    be->conv_transpose2x2 = cpu_conv_transpose2x2;
}

ms_status ms_backend_cpu_init(ms_backend *out)
{
    memset(out, 0, sizeof *out);
    out->name = "cpu";
    out->ctx = calloc(1, sizeof(cpu_ctx));
    if (!out->ctx) {
        snprintf(out->error, sizeof out->error, "cpu: out of memory");
        return MS_ERR_NOMEM;
    }
    snprintf(out->device, sizeof out->device, "%s", ms_cpu_description());
    out->alloc = cpu_alloc;
    out->free = cpu_free;
    out->upload = cpu_copy;
    out->download = cpu_copy;
    out->synchronize = cpu_synchronize;
    out->set_tf32 = cpu_set_tf32;
    out->release = cpu_release;
    set_ops(out);
    return MS_OK;
}
