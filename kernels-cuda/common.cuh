/* Shared by the CUDA files: the backend's state, the error macros, launch
 * sizes, warp and block reductions, and the op entry points that
 * backend_cuda.cu puts in the table. Errors never abort: they land in
 * be->error and the op returns non-zero, as everywhere else in medsam. */
#ifndef MS_KERNELS_CUDA_COMMON_CUH
#define MS_KERNELS_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "core/backend.h"

typedef struct cuda_ctx {
    cudaStream_t stream;
    cublasHandle_t blas;
    void *workspace; /* scratch of the ops (im2col columns, expanded weights) */
    size_t workspace_bytes;
    int max_smem;    /* bytes of shared memory a block may opt in to */
} cuda_ctx;

static inline cuda_ctx *ms_cuda_ctx(ms_backend *be) { return (cuda_ctx *)be->ctx; }

/* Writes the message into be->error and returns st. */
ms_status ms_cuda_fail(ms_backend *be, ms_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* In a function returning ms_status with `be` in scope: on failure, records
 * what failed and where, and returns MS_ERR_INTERNAL. */
#define CUDA_CHECK(call)                                                                   \
    do {                                                                                   \
        cudaError_t ms_e_ = (call);                                                        \
        if (ms_e_ != cudaSuccess)                                                          \
            return ms_cuda_fail(be, MS_ERR_INTERNAL, "CUDA error: %s (%s at %s:%d)",       \
                                cudaGetErrorString(ms_e_), #call, __FILE__, __LINE__);     \
    } while (0)

#define CUBLAS_CHECK(call)                                                                 \
    do {                                                                                   \
        cublasStatus_t ms_s_ = (call);                                                     \
        if (ms_s_ != CUBLAS_STATUS_SUCCESS)                                                \
            return ms_cuda_fail(be, MS_ERR_INTERNAL, "cuBLAS error: %s (%s at %s:%d)",     \
                                cublasGetStatusString(ms_s_), #call, __FILE__, __LINE__);  \
    } while (0)

/* After a launch: a bad configuration shows up here at once; a fault while
 * the kernel runs shows up at the next synchronising call. */
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

/* The ops' workspace, at least `bytes` long; NULL with be->error set. */
void *ms_cuda_workspace(ms_backend *be, size_t bytes);

/* Floats rounded up so that what follows in a workspace stays 256-byte
 * aligned, as cudaMalloc's own blocks are. */
static inline int64_t ms_cuda_align_floats(int64_t n) { return (n + 63) & ~(int64_t)63; }

/* Blocks of `threads` for a grid-stride loop over n items: one item per
 * thread up to 65536 blocks, which fill any GPU; beyond, threads loop. */
static inline unsigned ms_cuda_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65536 ? 65536 : b);
}

#define MS_GRID_STRIDE(i, n)                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);             \
         i += (int64_t)gridDim.x * blockDim.x)

/* PyTorch's exact GELU, written with erfc so that the negative tail keeps
 * its relative accuracy (as kernels/act.c). */
static __device__ __forceinline__ float ms_gelu_dev(float x)
{
    return 0.5f * x * erfcf(-x * 0.70710678118654752f);
}

static __device__ __forceinline__ float ms_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float ms_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum / max over the block (blockDim.x a multiple of 32), returned to every
 * thread; red: 32 floats of shared memory, reusable right after. */
static __device__ __forceinline__ float ms_block_sum(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = ms_warp_sum(v);
    __syncthreads(); /* an earlier call's readers are done with red */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return ms_warp_sum(lane < warps ? red[lane] : 0.0f);
}

static __device__ __forceinline__ float ms_block_max(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = ms_warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return ms_warp_max(lane < warps ? red[lane] : -INFINITY);
}

/* Columns of a weight tensor (all dims but the first). */
static inline int64_t ms_cuda_weight_cols(const ms_tensor *w)
{
    int64_t n = 1;
    for (int i = 0; i < MS_MAX_DIMS; i++) n *= w->ne[i];
    return w->ne[0] ? n / w->ne[0] : 0;
}

/* A weight's rows as f32: its own data (f32, row stride st[0]) or, for f16
 * and q8, an expansion into dst (ne[0] * cols floats, row stride cols). */
ms_status ms_cuda_weight_f32(ms_backend *be, const ms_tensor *w, float *dst, const float **rows,
                             int64_t *ld);
/* Floats of dst ms_cuda_weight_f32 needs (0 for f32), aligned. */
int64_t ms_cuda_weight_scratch_floats(const ms_tensor *w);

/* ---- the ops (same contracts as the ms_backend fields) ---- */
ms_status ms_cuda_sgemm(ms_backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                        float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                        float beta, float *c, int64_t ldc);
ms_status ms_cuda_linear(ms_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                         int64_t m, const ms_tensor *w, const float *bias, ms_epilogue epi,
                         int accumulate);
ms_status ms_cuda_layernorm(ms_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                            int64_t rows, int64_t dim, const float *g, const float *b, float eps);
ms_status ms_cuda_layernorm_channels(ms_backend *be, float *y, const float *x, int64_t c,
                                     int64_t hw, const float *g, const float *b, float eps);
ms_status ms_cuda_gelu(ms_backend *be, float *x, int64_t n);
ms_status ms_cuda_relu(ms_backend *be, float *x, int64_t n);
ms_status ms_cuda_softmax_rows(ms_backend *be, float *x, int64_t rows, int64_t n, int64_t ld);
ms_status ms_cuda_add(ms_backend *be, float *y, const float *a, const float *b, int64_t n);
ms_status ms_cuda_transpose(ms_backend *be, float *dst, const float *src, int64_t rows,
                            int64_t cols);
ms_status ms_cuda_attention(ms_backend *be, const ms_attn *a, const ms_attn_heads *heads);
/* The same on cuBLAS, for many scores (attention.cu chooses). */
ms_status ms_cuda_attention_gemm(ms_backend *be, const ms_attn *a, const ms_attn_heads *heads);
ms_status ms_cuda_rel_pos(ms_backend *be, float *bias_h, float *bias_w, const float *q,
                          int64_t ldq, int64_t tokens, int64_t d, const float *rel_h,
                          const float *rel_w, int64_t side);
ms_status ms_cuda_window_partition(ms_backend *be, float *dst, const float *src, int64_t grid,
                                   int64_t e, int64_t side);
ms_status ms_cuda_window_unpartition(ms_backend *be, float *dst, const float *src, int64_t grid,
                                     int64_t e, int64_t side);
ms_status ms_cuda_conv2d(ms_backend *be, float *y, const float *x, int64_t cin, int64_t h,
                         int64_t w, const ms_tensor *wt, const float *bias, int stride, int pad);
ms_status ms_cuda_conv_transpose2x2(ms_backend *be, float *y, const float *x, int64_t cin,
                                    int64_t h, int64_t w, const ms_tensor *wt, const float *bias);
/* y[c, p] += bias[c] for a (channels, pixels) map; shared by the convolutions. */
ms_status ms_cuda_add_channel_bias(ms_backend *be, float *y, const float *bias, int64_t channels,
                                   int64_t pixels);

#endif
