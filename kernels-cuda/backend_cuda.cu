/* libmedsam_cuda.so's entry point: checks for a device (core looked for the
 * driver before loading this library), sets up a stream and a cuBLAS handle
 * on device 0, and fills the backend table.
 * Only ms_cuda_backend_init is exported (everything else is built with
 * hidden visibility). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels-cuda/common.cuh"

ms_status ms_cuda_fail(ms_backend *be, ms_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->error, sizeof be->error, fmt, ap);
    va_end(ap);
    return st;
}

void *ms_cuda_workspace(ms_backend *be, size_t bytes)
{
    cuda_ctx *c = ms_cuda_ctx(be);
    if (bytes <= c->workspace_bytes) return c->workspace;
    /* Ops still queued may be using the old block. */
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess) e = cudaFree(c->workspace);
    c->workspace = NULL;
    c->workspace_bytes = 0;
    if (e == cudaSuccess) e = cudaMalloc(&c->workspace, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* handled here, not the next launch's error */
        c->workspace = NULL;
        ms_cuda_fail(be, e == cudaErrorMemoryAllocation ? MS_ERR_NOMEM : MS_ERR_INTERNAL,
                     "CUDA error: %s (workspace of %zu bytes)", cudaGetErrorString(e), bytes);
        return NULL;
    }
    c->workspace_bytes = bytes;
    return c->workspace;
}

/* ---- memory ---- */

static void *cuda_alloc(ms_backend *be, size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaSuccess) return p;
    /* A failed cudaMalloc also sets the runtime's last error, which the next
     * launch check would report as its own: the caller handles this one. */
    (void)cudaGetLastError();
    ms_cuda_fail(be, MS_ERR_NOMEM, "CUDA error: %s (cudaMalloc of %zu bytes)",
                 cudaGetErrorString(e), bytes);
    return NULL;
}

static void cuda_free(ms_backend *be, void *p) { cudaFree(p); }

/* Both copies wait for the stream, so the host buffer is free (upload) or
 * filled (download) on return. */
static ms_status cuda_upload(ms_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_ctx *c = ms_cuda_ctx(be);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return MS_OK;
}

static ms_status cuda_download(ms_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_ctx *c = ms_cuda_ctx(be);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return MS_OK;
}

static ms_status cuda_synchronize(ms_backend *be)
{
    CUDA_CHECK(cudaStreamSynchronize(ms_cuda_ctx(be)->stream));
    return MS_OK;
}

static ms_status cuda_set_tf32(ms_backend *be, int on)
{
    CUBLAS_CHECK(cublasSetMathMode(ms_cuda_ctx(be)->blas,
                                   on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    return MS_OK;
}

static void cuda_release(ms_backend *be)
{
    cuda_ctx *c = ms_cuda_ctx(be);
    if (!c) return;
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaFree(c->workspace);
    free(c);
    be->ctx = NULL;
}

/* ---- set-up ---- */

static int device_present(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        snprintf(why, why_len, "no CUDA device");
        return 0;
    }
    if (e != cudaSuccess) {
        snprintf(why, why_len, "CUDA error: %s", cudaGetErrorString(e));
        return 0;
    }
    return 1;
}

static ms_status open_device(ms_backend *be)
{
    cudaDeviceProp prop;
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    snprintf(be->device, sizeof be->device, "%.*s", (int)sizeof be->device - 1, prop.name);
    be->memory_bytes = prop.totalGlobalMem;
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return ms_cuda_fail(be, MS_ERR_NOMEM, "out of memory");
    be->ctx = c;
    CUDA_CHECK(cudaDeviceGetAttribute(&c->max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&c->blas));
    CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    CUBLAS_CHECK(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    return MS_OK;
}

static void set_table(ms_backend *be)
{
    be->name = "cuda";
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->synchronize = cuda_synchronize;
    be->set_tf32 = cuda_set_tf32;
    be->release = cuda_release;
    be->sgemm = ms_cuda_sgemm;
    be->linear = ms_cuda_linear;
    be->layernorm = ms_cuda_layernorm;
    be->layernorm_channels = ms_cuda_layernorm_channels;
    be->gelu = ms_cuda_gelu;
    be->relu = ms_cuda_relu;
    be->softmax_rows = ms_cuda_softmax_rows;
    be->add = ms_cuda_add;
    be->transpose = ms_cuda_transpose;
    be->attention = ms_cuda_attention;
    be->rel_pos = ms_cuda_rel_pos;
    be->window_partition = ms_cuda_window_partition;
    be->window_unpartition = ms_cuda_window_unpartition;
    be->conv2d = ms_cuda_conv2d;
    be->conv_transpose2x2 = ms_cuda_conv_transpose2x2;
}

extern "C" __attribute__((visibility("default"))) int
ms_cuda_backend_init(int abi_version, ms_backend *out, char *why, size_t why_len)
{
    if (abi_version != MS_BACKEND_ABI) {
        snprintf(why, why_len, "libmedsam_cuda.so was built for backend ABI %d, medsam uses %d "
                 "(rebuild it)", MS_BACKEND_ABI, abi_version);
        return 1;
    }
    memset(out, 0, sizeof *out);
    if (!device_present(why, why_len)) return 1;
    if (open_device(out) != MS_OK) {
        snprintf(why, why_len, "%s", out->error);
        cuda_release(out);
        return 1;
    }
    set_table(out);
    return 0;
}
