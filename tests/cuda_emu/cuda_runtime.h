/* The part of the CUDA runtime that kernels-cuda/ uses, for the host
 * emulation in this directory (runtime.cpp): kernels-cuda/ sources compile as
 * C++ against it, their launches rewritten by launches.pl. */
#ifndef MS_CUDA_EMU_RUNTIME_H
#define MS_CUDA_EMU_RUNTIME_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef int cudaError_t;
enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100
};
typedef struct emu_stream *cudaStream_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
#define cudaStreamNonBlocking 1u
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
};

const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k,
                            cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
cudaError_t emu_func_set_attribute(const void *f, cudaFuncAttribute a, int v);
template <class F> cudaError_t cudaFuncSetAttribute(F *f, cudaFuncAttribute a, int v)
{
    return emu_func_set_attribute((const void *)f, a, v);
}

/* ---- device side: one block runs at a time, so a statically sized
 * __shared__ array can be a static local ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
extern dim3 blockIdx, blockDim, gridDim;
extern dim3 *emu_thread_idx;
#define threadIdx (*emu_thread_idx)
void __syncthreads(void);
float emu_shfl_xor(unsigned mask, float v, int lane_mask);
#define __shfl_xor_sync(mask, v, lane_mask) emu_shfl_xor((mask), (v), (lane_mask))
static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* The block's dynamic shared memory (extern __shared__ float smem[]). */
void *emu_dynamic_smem(void);

/* kernel<<<grid, block, smem, stream>>>(args) becomes
 * emu_launch(kernel, "kernel", emu_config(grid, block, smem, stream),
 *            [=] { kernel(args); }); */
struct emu_config_t {
    dim3 grid, block;
    size_t smem;
};
static inline emu_config_t emu_config(dim3 grid, dim3 block, size_t smem = 0, cudaStream_t s = 0)
{
    (void)s; /* one stream, run in order */
    return emu_config_t{grid, block, smem};
}
void emu_launch(const void *kernel, const char *name, emu_config_t c,
                const std::function<void()> &thread);

#endif
