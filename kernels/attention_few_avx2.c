/* AVX2 few-query attention: attention_few_avx512.c with 8-lane registers
 * (tiles of 8 keys, an 8 x 8 transpose) and register tiles of at most 8
 * queries, so that accumulators, K^T row and broadcast fit the 16 ymm. */
#include "kernels/internal.h"

#include <math.h>
#include <string.h>

#include "kernels/simd_avx2.h"

#define VEC __m256
#define VW 8
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_MAX _mm256_max_ps
#define V_FMADD _mm256_fmadd_ps
#define V_LOAD _mm256_load_ps
#define V_LOADU _mm256_loadu_ps
#define V_STORE _mm256_store_ps
#define V_STOREU _mm256_storeu_ps
#define V_SET1 _mm256_set1_ps
#define V_SETZERO _mm256_setzero_ps
#define V_EXP2 ms_exp2_256
#define V_HMAX ms_hmax256
#define V_HSUM ms_hsum256
#define QG 8
#define CHAINS 10
#define QUERY_COUNTS(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8)
#define FEW_FN ms_attention_few_avx2

/* dst[t][j] = src[j][t] for 8 columns t, rows j < rows (zero beyond): 4 x 4
 * transposes inside each 128-bit half (unpack, shuffle), then the halves
 * exchanged. */
static inline __attribute__((always_inline)) void transpose_rows(float *dst, const float *src,
                                                                 int64_t ld, int64_t rows)
{
    __m256 r[8], t[8], u[8];
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 8; j++) r[j] = j < rows ? _mm256_loadu_ps(src + j * ld) : V_SETZERO();
    _Pragma("GCC unroll 8")
    for (int p = 0; p < 4; p++) {
        t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    _Pragma("GCC unroll 8")
    for (int q = 0; q < 8; q += 4) { /* u[q + c]: column 4 half + c of rows q .. q + 3 */
        u[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
        u[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xee);
        u[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        u[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xee);
    }
    _Pragma("GCC unroll 8")
    for (int c = 0; c < 4; c++) {
        _mm256_store_ps(dst + c * 8, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
        _mm256_store_ps(dst + (4 + c) * 8, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
    }
}

#include "kernels/attention_few_simd.h"
