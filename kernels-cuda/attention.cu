/* Attention as ms_attention: out_i = sum_j p_ij v_j, p_i = softmax_j(scale
 * q_i . k_j + bias_h[i, j / kw] + bias_w[i, j % kw]), with SAM's decomposed
 * relative-position terms added to each score inside the kernel.
 *
 * One CUDA block per (head, block of QB queries); keys go by in tiles of KT
 * through shared memory with an online softmax (running max and sum per
 * query, earlier partial outputs rescaled when the max grows), so the nq x nk
 * matrix never exists. Everything accumulates in fp32. This is version 1,
 * for windows and for few queries or keys; many scores go to version 2
 * (attention_gemm.cu: batched cuBLAS GEMMs around a softmax pass). */
#include "kernels-cuda/common.cuh"

#define THREADS 128
#define WARPS (THREADS / 32)
#define GEMM_MIN_SCORES ((int64_t)1 << 20) /* per head: version 2 from here */

typedef struct attn_args {
    ms_attn a;
    ms_attn_heads heads;
    int qb, kt; /* queries per block, keys per tile */
    int ldks;   /* row stride of the K tile: odd, so a warp reading a column of it
                 * (one key per lane) hits 32 distinct banks */
} attn_args;

/* Shared memory: Q block, K and V tiles, scores, running outputs, and the
 * running max, sum and rescale factor of each query. */
static size_t smem_floats(int64_t d, int qb, int kt, int ldks)
{
    return (size_t)(qb * d + kt * ldks + kt * d + qb * kt + qb * d + 3 * qb);
}

/* scores[i, j] for the tile at k0: -inf outside the block's queries and
 * the tile's keys, so that they weigh nothing. */
static __device__ void tile_scores(const attn_args *p, const float *q_s, const float *k_s,
                                   float *s_s, int64_t q0, int nqb, int64_t k0, int nkt,
                                   const float *bias_h, const float *bias_w)
{
    int d = (int)p->a.d;
    for (int idx = threadIdx.x; idx < p->qb * p->kt; idx += blockDim.x) {
        int i = idx / p->kt, j = idx % p->kt;
        float s = -INFINITY;
        if (i < nqb && j < nkt) {
            float dot = 0;
            for (int t = 0; t < d; t++) dot += q_s[i * d + t] * k_s[j * p->ldks + t];
            s = dot * p->a.scale;
            if (bias_h) {
                int64_t qi = q0 + i, kj = k0 + j;
                s += bias_h[qi * p->a.kh + kj / p->a.kw] + bias_w[qi * p->a.kw + kj % p->a.kw];
            }
        }
        s_s[idx] = s;
    }
}

/* One warp per query row: turns the row's scores into exp(s - new max) and
 * updates the running max and sum; scale_s[i] is what the earlier partial
 * output must be multiplied by. */
static __device__ void online_softmax(const attn_args *p, float *s_s, float *max_s, float *sum_s,
                                      float *scale_s, int nqb)
{
    int lane = threadIdx.x & 31;
    for (int i = threadIdx.x >> 5; i < nqb; i += WARPS) {
        float *row = s_s + i * p->kt;
        float m = -INFINITY;
        for (int j = lane; j < p->kt; j += 32) m = fmaxf(m, row[j]);
        float m_new = fmaxf(max_s[i], ms_warp_max(m));
        float sum = 0;
        for (int j = lane; j < p->kt; j += 32) {
            row[j] = expf(row[j] - m_new);
            sum += row[j];
        }
        sum = ms_warp_sum(sum);
        if (lane == 0) {
            float scale = expf(max_s[i] - m_new); /* 0 on the first tile (max -inf) */
            sum_s[i] = sum_s[i] * scale + sum;
            scale_s[i] = scale;
            max_s[i] = m_new;
        }
    }
}

static __global__ void attention_kernel(attn_args p)
{
    extern __shared__ float smem[];
    const ms_attn *a = &p.a;
    int d = (int)a->d;
    int64_t h = blockIdx.y, q0 = (int64_t)blockIdx.x * p.qb;
    int nqb = (int)(a->nq - q0 < p.qb ? a->nq - q0 : p.qb);
    const float *q = a->q + h * p.heads.q_step, *k = a->k + h * p.heads.k_step;
    const float *v = a->v + h * p.heads.v_step;
    const float *bias_h = a->bias_h ? a->bias_h + h * p.heads.bias_h_step : NULL;
    const float *bias_w = a->bias_h ? a->bias_w + h * p.heads.bias_w_step : NULL;
    float *q_s = smem, *k_s = q_s + p.qb * d, *v_s = k_s + p.kt * p.ldks;
    float *s_s = v_s + p.kt * d, *o_s = s_s + p.qb * p.kt;
    float *max_s = o_s + p.qb * d, *sum_s = max_s + p.qb, *scale_s = sum_s + p.qb;

    for (int idx = threadIdx.x; idx < p.qb * d; idx += blockDim.x) {
        int i = idx / d;
        q_s[idx] = i < nqb ? q[(q0 + i) * a->ldq + idx % d] : 0.0f;
        o_s[idx] = 0;
    }
    for (int i = threadIdx.x; i < p.qb; i += blockDim.x) {
        max_s[i] = -INFINITY;
        sum_s[i] = 0;
    }
    for (int64_t k0 = 0; k0 < a->nk; k0 += p.kt) {
        int nkt = (int)(a->nk - k0 < p.kt ? a->nk - k0 : p.kt);
        __syncthreads(); /* the previous tile is no longer read */
        for (int idx = threadIdx.x; idx < nkt * d; idx += blockDim.x) {
            int j = idx / d, t = idx % d;
            k_s[j * p.ldks + t] = k[(k0 + j) * a->ldk + t];
            v_s[idx] = v[(k0 + j) * a->ldv + t];
        }
        __syncthreads();
        tile_scores(&p, q_s, k_s, s_s, q0, nqb, k0, nkt, bias_h, bias_w);
        __syncthreads();
        online_softmax(&p, s_s, max_s, sum_s, scale_s, nqb);
        __syncthreads();
        for (int idx = threadIdx.x; idx < nqb * d; idx += blockDim.x) {
            int i = idx / d, t = idx % d;
            const float *prob = s_s + i * p.kt;
            float acc = o_s[idx] * scale_s[i];
            for (int j = 0; j < nkt; j++) acc += prob[j] * v_s[j * d + t];
            o_s[idx] = acc;
        }
    }
    __syncthreads();
    float *out = a->out + h * p.heads.out_step;
    for (int idx = threadIdx.x; idx < nqb * d; idx += blockDim.x) {
        int i = idx / d;
        out[(q0 + i) * a->ldo + idx % d] = o_s[idx] / sum_s[i];
    }
}

/* The largest blocking whose shared memory the device grants: 32 queries
 * and 32 keys for the head sizes of SAM (64, 80), less for wider heads. */
static int choose_blocking(attn_args *p, int64_t d, int max_smem)
{
    for (p->qb = 32, p->kt = 32; p->kt >= 4; p->qb /= 2, p->kt /= 2) {
        p->ldks = (int)(d | 1);
        if (smem_floats(d, p->qb, p->kt, p->ldks) * sizeof(float) <= (size_t)max_smem) return 1;
    }
    return 0;
}

ms_status ms_cuda_attention(ms_backend *be, const ms_attn *a, const ms_attn_heads *heads)
{
    if (a->nq <= 0 || heads->n <= 0) return MS_OK;
    if (a->nk <= 0 || a->d <= 0)
        return ms_cuda_fail(be, MS_ERR_ARG, "attention: %lld keys of %lld dims", (long long)a->nk,
                            (long long)a->d);
    if (a->nq * a->nk >= GEMM_MIN_SCORES) return ms_cuda_attention_gemm(be, a, heads);
    cuda_ctx *c = ms_cuda_ctx(be);
    attn_args p = {*a, *heads, 0, 0, 0};
    if (a->d > 4096 || !choose_blocking(&p, a->d, c->max_smem))
        return ms_cuda_fail(be, MS_ERR_UNSUPPORTED, "attention: head size %lld too large for "
                            "the device's shared memory", (long long)a->d);
    int64_t qblocks = (a->nq + p.qb - 1) / p.qb;
    if (qblocks > INT32_MAX || heads->n > 65535)
        return ms_cuda_fail(be, MS_ERR_UNSUPPORTED, "attention: %lld queries x %lld heads",
                            (long long)a->nq, (long long)heads->n);
    size_t smem = smem_floats(a->d, p.qb, p.kt, p.ldks) * sizeof(float);
    /* Beyond 48 KiB a kernel must opt in to its dynamic shared memory. */
    CUDA_CHECK(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    dim3 grid((unsigned)qblocks, (unsigned)heads->n);
    attention_kernel<<<grid, THREADS, smem, c->stream>>>(p);
    LAUNCH_CHECK();
    return MS_OK;
}
