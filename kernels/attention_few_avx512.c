/* AVX-512 attention for a few queries (at most MS_ATTN_FEW_Q, no bias), as
 * the mask decoder's tokens attend to the image: 7 queries against 4096
 * keys. The blocked kernel would leave most of its 32 query lanes idle and
 * copy K and V first; here the keys sit across the lanes and K and V are
 * read in place. Per block of MS_ATTN_FEW_BK keys:
 *   1. per tile of 16 keys, K^T by an in-register 16 x 16 transpose, then
 *      S[i][tile] = sum_t q_i[t] K^T[t] with q_i[t] broadcast (scale and
 *      log2 e folded into q), the queries' score vectors stored tile-major;
 *   2. per query, the online softmax step in 2^x: running max and sum, the
 *      probabilities in place, the factor that rescales the output so far;
 *   3. O_i = alpha_i O_i + sum_j p_ij v_j with v_j one vector per 16
 *      features and each query's p_ij broadcast into its accumulator.
 * Register tiles hold at most 16 queries; accumulators are split into
 * independent banks (over features, over keys) when there are few. */
#include "kernels/internal.h"

#include <math.h>
#include <string.h>

#include "kernels/simd_avx512.h"

#define VEC __m512
#define VW 16
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_MAX _mm512_max_ps
#define V_FMADD _mm512_fmadd_ps
#define V_LOAD _mm512_load_ps
#define V_LOADU _mm512_loadu_ps
#define V_STORE _mm512_store_ps
#define V_STOREU _mm512_storeu_ps
#define V_SET1 _mm512_set1_ps
#define V_SETZERO _mm512_setzero_ps
#define V_EXP2 ms_exp2_512
#define V_HMAX _mm512_reduce_max_ps
#define V_HSUM ms_hsum512
#define QG 16
#define CHAINS 20
#define QUERY_COUNTS(X)                                                                            \
    X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
#define FEW_FN ms_attention_few_avx512

/* dst[t][j] = src[j][t] for 16 columns t, rows j < rows (zero beyond): the
 * 4 x 4 transposes inside each 128-bit lane (unpack, shuffle), then the
 * lanes exchanged in two rounds of shuffle_f32x4. */
static inline __attribute__((always_inline)) void transpose_rows(float *dst, const float *src,
                                                                 int64_t ld, int64_t rows)
{
    __m512 r[16], t[16], u[16];
    _Pragma("GCC unroll 16")
    for (int j = 0; j < 16; j++) r[j] = j < rows ? _mm512_loadu_ps(src + j * ld) : V_SETZERO();
    _Pragma("GCC unroll 16")
    for (int p = 0; p < 8; p++) {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    _Pragma("GCC unroll 16")
    for (int q = 0; q < 16; q += 4) { /* u[q + c]: column 4 lane + c of rows q .. q + 3 */
        u[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        u[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xee);
        u[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        u[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xee);
    }
    _Pragma("GCC unroll 16")
    for (int c = 0; c < 4; c++) {
        __m512 lo0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        __m512 hi0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xee);
        __m512 lo1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        __m512 hi1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xee);
        _mm512_store_ps(dst + c * 16, _mm512_shuffle_f32x4(lo0, lo1, 0x88));
        _mm512_store_ps(dst + (4 + c) * 16, _mm512_shuffle_f32x4(lo0, lo1, 0xdd));
        _mm512_store_ps(dst + (8 + c) * 16, _mm512_shuffle_f32x4(hi0, hi1, 0x88));
        _mm512_store_ps(dst + (12 + c) * 16, _mm512_shuffle_f32x4(hi0, hi1, 0xdd));
    }
}

#include "kernels/attention_few_simd.h"
