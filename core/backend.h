/* Compute backends behind a small table of function pointers (as in ggml).
 * The CPU backend wraps kernels/ on host memory; the CUDA backend lives in
 * libmedsam_cuda.so, built by nvcc and loaded with dlopen on first use, so
 * neither libmedsam nor the medsam binary links the CUDA runtime.
 *
 * Every op has the contract of its kernels.h namesake, with every pointer
 * (activations, biases, a weight tensor's data) in the backend's memory: get
 * it from alloc, fill it with upload, read it back with download. Scratch is
 * the backend's own (a workspace kept between calls), so ops take none. Ops
 * run in order, possibly asynchronously: download and synchronize wait for
 * them. A backend serves one thread at a time. An op or call that fails
 * returns non-zero with one line in be->error; asynchronous device faults
 * surface at the next download or synchronize. */
#ifndef MS_CORE_BACKEND_H
#define MS_CORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever ms_backend, ms_attn, ms_tensor or an op's contract changes:
 * libmedsam_cuda.so refuses a version other than its own. */
#define MS_BACKEND_ABI 3

/* Heads side by side in one attention call: head i reads q + i * q_step and
 * so on (SAM's fused qkv rows hold the heads at column offsets i * d, and
 * the bias tables of successive heads follow each other). */
typedef struct ms_attn_heads {
    int64_t n;
    int64_t q_step, k_step, v_step, out_step, bias_h_step, bias_w_step;
} ms_attn_heads;

typedef struct ms_backend ms_backend;
struct ms_backend {
    const char *name;      /* "cpu", "cuda" */
    char device[128];      /* what it runs on: CPU model / GPU name */
    uint64_t memory_bytes; /* device memory; 0 for host memory */
    char error[256];       /* the last failure, one line */
    void *ctx;             /* the backend's own state */

    void *(*alloc)(ms_backend *be, size_t bytes); /* NULL on failure */
    void (*free)(ms_backend *be, void *p);
    ms_status (*upload)(ms_backend *be, void *dst, const void *src, size_t bytes);
    ms_status (*download)(ms_backend *be, void *dst, const void *src, size_t bytes);
    ms_status (*synchronize)(ms_backend *be);
    /* TF32 tensor-core GEMMs (about 10 mantissa bits); off by default, and
     * nothing changes where the hardware has no such mode (the CPU). */
    ms_status (*set_tf32)(ms_backend *be, int on);
    /* Frees the state; the table is unusable afterwards. */
    void (*release)(ms_backend *be);

    ms_status (*sgemm)(ms_backend *be, int trans_a, int trans_b, int64_t m, int64_t n,
                       int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                       int64_t ldb, float beta, float *c, int64_t ldc);
    /* w: f32, f16 or q8 weight whose data is in the backend's memory. */
    ms_status (*linear)(ms_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                        int64_t m, const ms_tensor *w, const float *bias, ms_epilogue epi,
                        int accumulate);
    ms_status (*layernorm)(ms_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                           int64_t rows, int64_t dim, const float *g, const float *b, float eps);
    ms_status (*layernorm_channels)(ms_backend *be, float *y, const float *x, int64_t c,
                                    int64_t hw, const float *g, const float *b, float eps);
    ms_status (*gelu)(ms_backend *be, float *x, int64_t n);
    ms_status (*relu)(ms_backend *be, float *x, int64_t n);
    ms_status (*softmax_rows)(ms_backend *be, float *x, int64_t rows, int64_t n, int64_t ld);
    /* y = a + b, n floats; y may be a or b. */
    ms_status (*add)(ms_backend *be, float *y, const float *a, const float *b, int64_t n);
    /* dst (cols, rows) = src (rows, cols) transposed, both contiguous. */
    ms_status (*transpose)(ms_backend *be, float *dst, const float *src, int64_t rows,
                           int64_t cols);
    /* ms_attention over all queries of each head (a describes head 0). */
    ms_status (*attention)(ms_backend *be, const ms_attn *a, const ms_attn_heads *heads);
    /* ms_rel_pos_bias for one head. */
    ms_status (*rel_pos)(ms_backend *be, float *bias_h, float *bias_w, const float *q,
                         int64_t ldq, int64_t tokens, int64_t d, const float *rel_h,
                         const float *rel_w, int64_t side);
    /* SAM's window_partition: src (grid, grid, e) into dst, the grid padded
     * with zeros to a multiple of `side` and cut into side x side windows
     * (row-major), each window's tokens row-major: (windows * side^2, e). */
    ms_status (*window_partition)(ms_backend *be, float *dst, const float *src, int64_t grid,
                                  int64_t e, int64_t side);
    /* The inverse, dropping the padding: src (windows * side^2, e) into
     * dst (grid, grid, e). */
    ms_status (*window_unpartition)(ms_backend *be, float *dst, const float *src, int64_t grid,
                                    int64_t e, int64_t side);
    ms_status (*conv2d)(ms_backend *be, float *y, const float *x, int64_t cin, int64_t h,
                        int64_t w, const ms_tensor *wt, const float *bias, int stride, int pad);
    ms_status (*conv_transpose2x2)(ms_backend *be, float *y, const float *x, int64_t cin,
                                   int64_t h, int64_t w, const ms_tensor *wt, const float *bias);
};

/* The entry point libmedsam_cuda.so exports (its only symbol): fills *out
 * for device 0 and returns 0, or returns non-zero with the reason in why. */
typedef int (*ms_cuda_backend_init_fn)(int abi_version, ms_backend *out, char *why,
                                       size_t why_len);

/* ---- the registry (core/backend.c) ---- */

typedef enum ms_backend_id { MS_BACKEND_CPU = 0, MS_BACKEND_CUDA, MS_BACKEND_COUNT } ms_backend_id;

const char *ms_backend_id_name(ms_backend_id id);
/* The backend, set up on first use; NULL when unusable, with the reason in
 * *why (why may be NULL). Thread-safe. */
ms_backend *ms_backend_get(ms_backend_id id, const char **why);
/* 1 for "auto", "cpu" and "cuda". */
int ms_backend_choice_valid(const char *choice);
/* "cpu", "cuda", or "auto" / NULL: CUDA when usable, else the CPU. A named
 * backend that is unusable fails, saying why. */
ms_status ms_backend_select(const char *choice, ms_backend **out);
/* Frees every backend set up so far (device memory, handles). */
void ms_backend_release_all(void);

/* Looks for the NVIDIA driver, then finds libmedsam_cuda.so (beside the
 * executable, then $MEDSAM_CUDA_LIB, then the loader's path) and initialises
 * it, without the registry's cache: 0, or non-zero with the reason in why
 * ("no NVIDIA driver (...)", "library libmedsam_cuda.so not found (built
 * without nvcc?)", "no CUDA device", "CUDA error: ..."). Without a driver
 * the library is not loaded at all. */
int ms_backend_cuda_load(ms_backend *out, char *why, size_t why_len);
/* The same without looking for the driver first: the library's own init
 * then reports a missing one as a "CUDA error: ...". */
int ms_backend_cuda_open(ms_backend *out, char *why, size_t why_len);

/* ---- the CPU backend (core/backend_cpu.c) ---- */
/* MS_OK, or MS_ERR_NOMEM with the reason in out->error. */
ms_status ms_backend_cpu_init(ms_backend *out);

#ifdef __cplusplus
}
#endif

#endif
