/* Element-wise ops: GELU, ReLU, y = a + b, and the per-channel bias of the
 * convolutions. One grid-stride loop each. */
#include "kernels-cuda/common.cuh"

#define THREADS 256

static __global__ void gelu_kernel(float *x, int64_t n)
{
    MS_GRID_STRIDE(i, n) x[i] = ms_gelu_dev(x[i]);
}

/* x > 0 ? x : 0 as in kernels/act.c, so NaN becomes 0 there too. */
static __global__ void relu_kernel(float *x, int64_t n)
{
    MS_GRID_STRIDE(i, n) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static __global__ void add_kernel(float *y, const float *a, const float *b, int64_t n)
{
    MS_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

static __global__ void channel_bias_kernel(float *y, const float *bias, int64_t channels,
                                           int64_t pixels)
{
    MS_GRID_STRIDE(i, channels * pixels) y[i] += bias[i / pixels];
}

ms_status ms_cuda_gelu(ms_backend *be, float *x, int64_t n)
{
    if (n <= 0) return MS_OK;
    gelu_kernel<<<ms_cuda_blocks(n, THREADS), THREADS, 0, ms_cuda_ctx(be)->stream>>>(x, n);
    LAUNCH_CHECK();
    return MS_OK;
}

ms_status ms_cuda_relu(ms_backend *be, float *x, int64_t n)
{
    if (n <= 0) return MS_OK;
    relu_kernel<<<ms_cuda_blocks(n, THREADS), THREADS, 0, ms_cuda_ctx(be)->stream>>>(x, n);
    LAUNCH_CHECK();
    return MS_OK;
}

ms_status ms_cuda_add(ms_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    if (n <= 0) return MS_OK;
    add_kernel<<<ms_cuda_blocks(n, THREADS), THREADS, 0, ms_cuda_ctx(be)->stream>>>(y, a, b, n);
    LAUNCH_CHECK();
    return MS_OK;
}

ms_status ms_cuda_add_channel_bias(ms_backend *be, float *y, const float *bias, int64_t channels,
                                   int64_t pixels)
{
    int64_t n = channels * pixels;
    if (n <= 0) return MS_OK;
    channel_bias_kernel<<<ms_cuda_blocks(n, THREADS), THREADS, 0, ms_cuda_ctx(be)->stream>>>(
        y, bias, channels, pixels);
    LAUNCH_CHECK();
    return MS_OK;
}
