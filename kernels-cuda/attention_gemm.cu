/* Attention as ms_attention for large score matrices (SAM's global
 * attention: 4096 x 4096 scores per head), on cuBLAS. Per block of queries:
 *   1. scores = scale q k^T for every head in one strided-batched GEMM;
 *   2. one pass per score row adds the decomposed relative-position terms
 *      and turns the row into its softmax;
 *   3. out = p v for every head in a second strided-batched GEMM.
 * The scores of a block live in the ops' workspace, at most SCORE_BYTES, so
 * the whole nq x nk matrix never exists at once. This is attention.cu's
 * version 2: where the scores are many, two GEMMs that cuBLAS runs near the
 * GPU's fp32 peak beat the tiled kernel's shared-memory dot products; the
 * tiled kernel stays for windows and for few queries or keys. */
#include "kernels-cuda/common.cuh"

#define THREADS 256
#define SCORE_BYTES ((size_t)128 << 20)

typedef struct row_bias {
    const float *h, *w; /* NULL: no bias */
    int64_t h_step, w_step, kh, kw;
} row_bias;

/* One block per (query row, head) of the block of nqb queries starting at
 * q0: s = s + bias_h + bias_w, then the row's softmax, in place. Each thread
 * reads back only the entries it wrote. */
static __global__ void bias_softmax_kernel(float *scores, int64_t nk, int64_t nqb, int64_t q0,
                                           row_bias b)
{
    __shared__ float red[32];
    int64_t i = blockIdx.x, h = blockIdx.y;
    float *row = scores + (h * nqb + i) * nk;
    const float *bh = b.h ? b.h + h * b.h_step + (q0 + i) * b.kh : NULL;
    const float *bw = b.h ? b.w + h * b.w_step + (q0 + i) * b.kw : NULL;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
        float v = row[j];
        if (bh) {
            v = v + bh[j / b.kw] + bw[j % b.kw];
            row[j] = v;
        }
        mx = fmaxf(mx, v);
    }
    mx = ms_block_max(mx, red);
    float sum = 0;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
        float e = expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    float inv = 1.0f / ms_block_sum(sum, red);
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) row[j] *= inv;
}

static int fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

/* Queries q0 .. q0 + nqb - 1 of every head; s: heads x nqb x nk floats. */
static ms_status attend_block(ms_backend *be, const ms_attn *a, const ms_attn_heads *hd,
                              int64_t q0, int64_t nqb, float *s)
{
    cuda_ctx *c = ms_cuda_ctx(be);
    const float zero = 0.0f, one = 1.0f;
    long long s_step = (long long)(nqb * a->nk);
    /* Column-major, scores^T (nk x nqb) = k q^T: k read transposed. */
    CUBLAS_CHECK(cublasSgemmStridedBatched(
        c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)a->nk, (int)nqb, (int)a->d, &a->scale, a->k,
        (int)a->ldk, (long long)hd->k_step, a->q + q0 * a->ldq, (int)a->ldq,
        (long long)hd->q_step, &zero, s, (int)a->nk, s_step, (int)hd->n));
    row_bias b = {a->bias_h, a->bias_w, hd->bias_h_step, hd->bias_w_step, a->kh, a->kw};
    dim3 grid((unsigned)nqb, (unsigned)hd->n);
    bias_softmax_kernel<<<grid, THREADS, 0, c->stream>>>(s, a->nk, nqb, q0, b);
    LAUNCH_CHECK();
    /* Column-major, out^T (d x nqb) = v^T p^T. */
    CUBLAS_CHECK(cublasSgemmStridedBatched(
        c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)a->d, (int)nqb, (int)a->nk, &one, a->v,
        (int)a->ldv, (long long)hd->v_step, s, (int)a->nk, s_step, &zero, a->out + q0 * a->ldo,
        (int)a->ldo, (long long)hd->out_step, (int)hd->n));
    return MS_OK;
}

ms_status ms_cuda_attention_gemm(ms_backend *be, const ms_attn *a, const ms_attn_heads *heads)
{
    if (!fits_int(a->nk) || !fits_int(a->d) || !fits_int(a->ldq) || !fits_int(a->ldk) ||
        !fits_int(a->ldv) || !fits_int(a->ldo) || heads->n > 65535)
        return ms_cuda_fail(be, MS_ERR_UNSUPPORTED, "attention: %lld keys of %lld dims, %lld "
                            "heads: beyond cuBLAS's int sizes", (long long)a->nk,
                            (long long)a->d, (long long)heads->n);
    size_t row_bytes = (size_t)(heads->n * a->nk) * sizeof(float);
    int64_t per = (int64_t)(SCORE_BYTES / row_bytes);
    per = per < 1 ? 1 : per > a->nq ? a->nq : per > INT32_MAX ? INT32_MAX : per;
    float *s = (float *)ms_cuda_workspace(be, (size_t)per * row_bytes);
    if (!s) return MS_ERR_NOMEM;
    for (int64_t q0 = 0; q0 < a->nq; q0 += per)
        MS_TRY(attend_block(be, a, heads, q0, a->nq - q0 < per ? a->nq - q0 : per, s));
    return MS_OK;
}
