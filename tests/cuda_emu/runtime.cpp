/* A host emulation of the CUDA runtime and cuBLAS, so that `make test` runs
 * the CUDA backend's own kernels (kernels-cuda/, compiled as C++ after
 * launches.pl) and the model's device paths on machines without a GPU.
 *
 * The blocks of a launch run one after another; the threads of a block run
 * as fibers on one OS thread, switched only at __syncthreads and the warp
 * shuffles, which are therefore real barriers: a kernel that reads shared
 * memory before the barrier that orders it, or lets part of a block or warp
 * skip one, computes wrong values or stops here with a message. Launch
 * configurations are checked against the hardware's limits, fresh device
 * and shared memory hold NaN (as garbage would), and cuBLAS is OpenBLAS
 * behind a check of every dimension and leading dimension. What it cannot
 * show: timing, the memory model between concurrently running threads, and
 * the GPU's own rounding (fused multiply-adds, fast math).
 *
 * MEDSAM_CUDA_EMU_ORDER=reverse|random runs the threads between two barriers
 * in that order instead of by index. x86-64 only: fibers switch stacks with a
 * few instructions of assembly (swapcontext makes a system call per switch,
 * ten times slower here). */
#include <algorithm>
#include <cblas.h>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

enum {
    MAX_THREADS = 1024,      /* per block */
    MAX_GRID_YZ = 65535,
    STATIC_SMEM = 48 * 1024, /* dynamic shared memory without opting in */
    OPTIN_SMEM = 227 * 1024, /* an H100's limit with cudaFuncSetAttribute */
    STACK_BYTES = 32 * 1024, /* per fiber; the kernels' frames are small */
    WARP = 32
};

dim3 blockIdx, blockDim, gridDim;
dim3 *emu_thread_idx;

static cudaError_t last_error = cudaSuccess;
static const char *kernel_name = "";
static std::vector<unsigned char> dynamic_smem;
static std::map<const void *, int> smem_optin;

[[noreturn]] static void die(const char *what)
{
    fprintf(stderr, "cuda emulation: kernel %s, block (%u,%u,%u): %s\n", kernel_name, blockIdx.x,
            blockIdx.y, blockIdx.z, what);
    abort();
}

/* ---- runtime API ---- */

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unknown error";
    }
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return last_error = cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes); /* NaN as float */
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind, cudaStream_t)
{
    if (n) memcpy(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    static char stream;
    *s = (cudaStream_t)&stream;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int) { return cudaSuccess; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int)
{
    snprintf(p->name, sizeof p->name, "host emulation");
    p->totalGlobalMem = (size_t)80 << 30;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr, int)
{
    *v = OPTIN_SMEM;
    return cudaSuccess;
}

cudaError_t emu_func_set_attribute(const void *kernel, cudaFuncAttribute, int v)
{
    if (v < 0 || v > OPTIN_SMEM) return last_error = cudaErrorInvalidValue;
    smem_optin[kernel] = v;
    return cudaSuccess;
}

void *emu_dynamic_smem(void) { return dynamic_smem.data(); }

/* ---- fibers ---- */

/* Saves the callee-saved registers on the current stack, stores the stack
 * pointer in *save, switches to the stack `to` and restores its registers. */
extern "C" void emu_switch(void **save, void *to);
asm(".text\n"
    ".globl emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n");

enum { RUNNING, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

struct fiber {
    void *sp;
    int state;
    dim3 tid;
};

static std::vector<fiber> fibers;
static std::vector<unsigned char> stacks;
static void *scheduler_sp;
static int current, n_warp_barrier, n_done;
static const std::function<void()> *thread_body;
static bool fibers_on, barrier_seen;
/* Two banks of shuffle slots, alternating: a lane writes the next shuffle's
 * bank only after its whole warp passed this one and so read this bank. */
static float shuffle_slot[2][MAX_THREADS];
static int shuffle_bank[MAX_THREADS];

static void park(int state)
{
    barrier_seen = true;
    if (!fibers_on)
        die("a barrier in a kernel whose first launch had none (threads run without fibers)");
    fibers[current].state = state;
    emu_switch(&fibers[current].sp, scheduler_sp);
}

void __syncthreads(void) { park(AT_BLOCK_BARRIER); }

float emu_shfl_xor(unsigned mask, float v, int lane_mask)
{
    int n = (int)(blockDim.x * blockDim.y * blockDim.z), me = current;
    if (mask != 0xffffffffu) die("a shuffle with a partial mask");
    if ((me | (WARP - 1)) >= n) die("a full-mask shuffle in a partial warp");
    int bank = shuffle_bank[me];
    shuffle_bank[me] ^= 1;
    shuffle_slot[bank][me] = v;
    n_warp_barrier++;
    park(AT_WARP_BARRIER);
    return shuffle_slot[bank][(me & ~(WARP - 1)) | ((me & (WARP - 1)) ^ lane_mask)];
}

static void fiber_main(void)
{
    (*thread_body)();
    fibers[current].state = DONE;
    n_done++;
    emu_switch(&fibers[current].sp, scheduler_sp);
}

static dim3 thread_index(int i)
{
    return dim3(i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y));
}

/* A fresh stack whose first switch enters fiber_main as if called: the
 * return address slot (0) leaves rsp 16-byte aligned minus 8, as the ABI
 * has at a function's entry. Stack tops are staggered so that the fibers'
 * hot frames do not all fall in the same cache sets. */
static void *fresh_stack(int i)
{
    uintptr_t top = (uintptr_t)(stacks.data() + (size_t)(i + 1) * STACK_BYTES);
    top = (top - (uintptr_t)(i % 64) * 64) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;
    *--sp = (void *)fiber_main;
    for (int r = 0; r < 6; r++) *--sp = nullptr;
    return sp;
}

static std::vector<int> thread_order(int n)
{
    std::vector<int> order(n);
    for (int i = 0; i < n; i++) order[i] = i;
    static const char *o = getenv("MEDSAM_CUDA_EMU_ORDER");
    static std::mt19937 rng(12345);
    if (o && !strcmp(o, "reverse")) std::reverse(order.begin(), order.end());
    if (o && !strcmp(o, "random")) std::shuffle(order.begin(), order.end(), rng);
    return order;
}

/* After every thread ran to a barrier or its end: release the warps that
 * all reached a shuffle, else the block at __syncthreads. */
static void release(int n)
{
    if (n_warp_barrier) {
        for (int w = 0; w < n; w += WARP)
            for (int i = w; i < w + WARP && i < n; i++)
                if ((fibers[i].state == AT_WARP_BARRIER) != (fibers[w].state == AT_WARP_BARRIER))
                    die("a warp shuffle reached by part of a warp");
        for (int i = 0; i < n; i++)
            if (fibers[i].state == AT_WARP_BARRIER) fibers[i].state = RUNNING;
        n_warp_barrier = 0;
        return;
    }
    if (n_done) die("__syncthreads after part of the block exited");
    for (int i = 0; i < n; i++) fibers[i].state = RUNNING;
}

static void run_block_fibers(int n)
{
    if ((int)fibers.size() < n) fibers.resize(n);
    if (stacks.size() < (size_t)n * STACK_BYTES) stacks.resize((size_t)n * STACK_BYTES);
    for (int i = 0; i < n; i++) {
        fibers[i] = fiber{fresh_stack(i), RUNNING, thread_index(i)};
        shuffle_bank[i] = 0;
    }
    n_warp_barrier = n_done = 0;
    std::vector<int> order = thread_order(n);
    while (n_done < n) {
        for (int i : order) {
            if (fibers[i].state != RUNNING) continue;
            current = i;
            emu_thread_idx = &fibers[i].tid;
            emu_switch(&scheduler_sp, fibers[i].sp);
        }
        if (n_done < n) release(n);
    }
}

/* Kernels without barriers run their threads as plain calls, far faster;
 * a kernel's first launch (all of it on fibers) tells which it is. */
static std::map<const void *, bool> has_barriers;

static void run_block(const void *kernel, int n)
{
    auto known = has_barriers.find(kernel);
    fibers_on = known == has_barriers.end() || known->second;
    if (fibers_on) {
        run_block_fibers(n);
        return;
    }
    static dim3 tid;
    emu_thread_idx = &tid;
    for (int i = 0; i < n; i++) {
        tid = thread_index(i);
        current = i;
        (*thread_body)();
    }
}

static bool bad_config(const emu_config_t &c)
{
    unsigned long long threads = (unsigned long long)c.block.x * c.block.y * c.block.z;
    return !c.grid.x || !c.grid.y || !c.grid.z || c.grid.y > MAX_GRID_YZ ||
           c.grid.z > MAX_GRID_YZ || c.grid.x > 0x7fffffffu || !threads ||
           threads > MAX_THREADS || c.block.z > 64;
}

void emu_launch(const void *kernel, const char *name, emu_config_t c,
                const std::function<void()> &thread)
{
    kernel_name = name;
    if (bad_config(c)) {
        fprintf(stderr, "cuda emulation: launch of %s: grid (%u,%u,%u), block (%u,%u,%u)\n", name,
                c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z);
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    auto optin = smem_optin.find(kernel);
    if (c.smem > STATIC_SMEM && (optin == smem_optin.end() || c.smem > (size_t)optin->second)) {
        fprintf(stderr, "cuda emulation: %s asks %zu bytes of dynamic shared memory, above "
                "what it opted in to\n", name, c.smem);
        last_error = cudaErrorInvalidValue;
        return;
    }
    gridDim = c.grid;
    blockDim = c.block;
    thread_body = &thread;
    int n = (int)(c.block.x * c.block.y * c.block.z);
    barrier_seen = false;
    for (unsigned z = 0; z < c.grid.z; z++)
        for (unsigned y = 0; y < c.grid.y; y++)
            for (unsigned x = 0; x < c.grid.x; x++) {
                blockIdx = dim3(x, y, z);
                dynamic_smem.assign(c.smem ? c.smem : 1, 0xff); /* NaN as float */
                run_block(kernel, n);
            }
    has_barriers.emplace(kernel, barrier_seen);
}

/* ---- cuBLAS ---- */

struct emu_blas {
    cublasMath_t math;
};

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    default: return "CUBLAS_STATUS_NOT_INITIALIZED";
    }
}

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new emu_blas{CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}

/* TF32 keeps 10 mantissa bits of each input, rounded to nearest. */
static float tf32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void gemm_tf32(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                      float *c, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float x = ta == CUBLAS_OP_N ? a[i + (int64_t)p * lda] : a[p + (int64_t)i * lda];
                float y = tb == CUBLAS_OP_N ? b[p + (int64_t)j * ldb] : b[j + (int64_t)p * ldb];
                s += (double)tf32(x) * tf32(y);
            }
            float *out = &c[i + (int64_t)j * ldc];
            *out = beta == 0.0f ? (float)(alpha * s) : (float)(alpha * s + beta * (double)*out);
        }
}

/* Column-major, as cuBLAS: op(A) m x k, op(B) k x n, C m x n. */
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc)
{
    int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, rows_a) || ldb < std::max(1, rows_b) ||
        ldc < std::max(1, m)) {
        fprintf(stderr, "cuda emulation: cublasSgemm m %d n %d k %d lda %d ldb %d ldc %d\n", m,
                n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (h->math == CUBLAS_TF32_TENSOR_OP_MATH) {
        gemm_tf32(ta, tb, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
        return CUBLAS_STATUS_SUCCESS;
    }
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, a, lda, b, ldb,
                *beta, c, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *a, int lda,
                                         long long stride_a, const float *b, int ldb,
                                         long long stride_b, const float *beta, float *c,
                                         int ldc, long long stride_c, int batch)
{
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = cublasSgemm(h, ta, tb, m, n, k, alpha, a + i * stride_a, lda,
                                       b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}
