/* Scaled dot-product attention for one head, with SAM's decomposed
 * relative-position bias. */
#include "kernels/internal.h"

#include <math.h>

/* The reference needs one row of logits; the blocked SIMD variants a query
 * block's transposed queries, scores, outputs and bias rows, contiguous
 * copies of K (plus KT - 1 zero rows) and V; the few-query variants the
 * transposed queries, a transposed tile of 16 keys, their output
 * accumulators and the scores of one block of MS_ATTN_FEW_BK keys. Plus
 * slack to align them to 64 bytes. The largest of the three, as a call's
 * path depends on its query range. */
size_t ms_attention_scratch_floats(const ms_attn *a)
{
    int64_t bias = a->bias_h ? a->kh + a->kw : 0;
    int64_t blocked = 16 + MS_ATTN_QB * (2 * a->d + MS_ATTN_BK + bias) +
                      (2 * a->nk + MS_ATTN_KT - 1) * a->d;
    int64_t few =
        a->bias_h ? 0 : 16 + (2 * MS_ATTN_FEW_Q + 16) * a->d + MS_ATTN_FEW_Q * MS_ATTN_FEW_BK;
    int64_t n = blocked > few ? blocked : few;
    return (size_t)(n > a->nk ? n : a->nk);
}

/* The reference takes one query at a time: its nk logits in scratch, then a
 * plain max / exp / sum softmax and the weighted sum of v. */
void ms_attention_ref(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch)
{
    float *s = scratch;
    for (int64_t i = q_begin; i < q_end; i++) {
        const float *q = a->q + i * a->ldq;
        float mx = -INFINITY;
        for (int64_t j = 0; j < a->nk; j++) {
            const float *k = a->k + j * a->ldk;
            float dot = 0;
            for (int64_t t = 0; t < a->d; t++) dot += q[t] * k[t];
            s[j] = dot * a->scale;
            if (a->bias_h)
                s[j] += a->bias_h[i * a->kh + j / a->kw] + a->bias_w[i * a->kw + j % a->kw];
            mx = s[j] > mx ? s[j] : mx;
        }
        float sum = 0;
        for (int64_t j = 0; j < a->nk; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float *o = a->out + i * a->ldo;
        for (int64_t t = 0; t < a->d; t++) o[t] = 0;
        for (int64_t j = 0; j < a->nk; j++) {
            const float *v = a->v + j * a->ldv;
            float p = s[j] / sum;
            for (int64_t t = 0; t < a->d; t++) o[t] += p * v[t];
        }
    }
}

/* A few queries without bias (the decoder's tokens against the image) would
 * leave most lanes of the blocked variants idle and pay for their copy of K
 * and V: they take the few-query variants, whose lanes hold keys. */
void ms_attention(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch)
{
    int few = !a->bias_h && q_end - q_begin <= MS_ATTN_FEW_Q;
    if (ms_use_avx512() && few && a->d % 16 == 0)
        ms_attention_few_avx512(a, q_begin, q_end, scratch);
    else if (ms_use_avx512())
        ms_attention_avx512(a, q_begin, q_end, scratch);
    else if (ms_use_avx2() && few && a->d % 8 == 0)
        ms_attention_few_avx2(a, q_begin, q_end, scratch);
    else if (ms_use_avx2())
        ms_attention_avx2(a, q_begin, q_end, scratch);
    else
        ms_attention_ref(a, q_begin, q_end, scratch);
}
