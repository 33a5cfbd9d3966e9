/* AVX-512 LayerNorm (rows, with the fused activation and add, and channels)
 * and row softmax. Same two-pass statistics as the reference, 16 lanes at a
 * time, masked tails. */
#include "kernels/internal.h"
#include "kernels/simd_avx512.h"

#include <math.h>

/* The row's mean and 1 / sqrt(var + eps), broadcast: two passes over x. */
static inline __attribute__((always_inline)) void
ln_stats(const float *x, int64_t dim, float eps, __m512 *mean, __m512 *inv)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < dim; i += 16)
        s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(ms_mask16(dim - i), x + i));
    *mean = _mm512_set1_ps(ms_hsum512(_mm512_add_ps(s0, s1)) / (float)dim);
    __m512 v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
    for (i = 0; i + 32 <= dim; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), *mean);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), *mean);
        v0 = _mm512_fmadd_ps(d0, d0, v0);
        v1 = _mm512_fmadd_ps(d1, d1, v1);
    }
    for (; i < dim; i += 16) {
        __mmask16 m = ms_mask16(dim - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), *mean);
        v0 = _mm512_fmadd_ps(d, d, v0);
    }
    float var = ms_hsum512(_mm512_add_ps(v0, v1)) / (float)dim;
    *inv = _mm512_set1_ps(1.0f / sqrtf(var + eps));
}

/* One vector of the output: normalise, scale and shift, activate. */
static inline __attribute__((always_inline)) __m512 ln_vec(__m512 x, __m512 g, __m512 b,
                                                           __m512 mean, __m512 inv,
                                                           ms_epilogue epi)
{
    __m512 r = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(x, mean), inv), g, b);
    if (epi == MS_EPI_GELU) return ms_gelu512(r);
    if (epi == MS_EPI_RELU) return _mm512_max_ps(r, _mm512_setzero_ps());
    return r;
}

/* The row's single write pass: each value goes to y (and, plus add, to y2)
 * straight from registers. Whole vectors unmasked and only the tail masked:
 * masking every vector cost about 10 % at dim 256. */
static inline __attribute__((always_inline)) void
ln_write(float *y, float *y2, const float *add, const float *x, int64_t dim, const float *g,
         const float *b, __m512 mean, __m512 inv, ms_epilogue epi, int with_y2)
{
    int64_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m512 r = ln_vec(_mm512_loadu_ps(x + i), _mm512_loadu_ps(g + i), _mm512_loadu_ps(b + i),
                          mean, inv, epi);
        _mm512_storeu_ps(y + i, r);
        if (with_y2) _mm512_storeu_ps(y2 + i, _mm512_add_ps(r, _mm512_loadu_ps(add + i)));
    }
    if (i == dim) return;
    __mmask16 m = ms_mask16(dim - i);
    __m512 r = ln_vec(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, g + i),
                      _mm512_maskz_loadu_ps(m, b + i), mean, inv, epi);
    _mm512_mask_storeu_ps(y + i, m, r);
    if (with_y2)
        _mm512_mask_storeu_ps(y2 + i, m, _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, add + i)));
}

/* Rows go in blocks, statistics first: GELU is a long chain of dependent
 * operations per vector, and the core overlaps several rows' worth of them
 * only when no row's statistics (a serial chain too) sit in between: one
 * row at a time, LayerNorm + GELU at dim 64 took about 25 % longer. */
enum { LN_BLOCK = 8 };

/* Inlined below with epi and with_y2 constant, so that each combination
 * gets its own loop without per-vector branches: the plain LayerNorm pays
 * nothing for the options. */
static inline __attribute__((always_inline)) void
ln_rows(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows, int64_t dim,
        const float *g, const float *b, float eps, const ms_ln_out *o, ms_epilogue epi,
        int with_y2)
{
    for (int64_t r0 = 0; r0 < rows; r0 += LN_BLOCK) {
        int64_t n = rows - r0 < LN_BLOCK ? rows - r0 : LN_BLOCK;
        __m512 mean[LN_BLOCK], inv[LN_BLOCK];
        for (int64_t k = 0; k < n; k++) ln_stats(x + (r0 + k) * ldx, dim, eps, &mean[k], &inv[k]);
        for (int64_t k = 0; k < n; k++) {
            int64_t r = r0 + k;
            float *y2 = with_y2 ? o->y2 + r * o->ld_y2 : NULL;
            const float *add = with_y2 ? o->add + r * o->ld_add : NULL;
            ln_write(y + r * ldy, y2, add, x + r * ldx, dim, g, b, mean[k], inv[k], epi, with_y2);
        }
    }
}

void ms_layernorm_ex_avx512(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                            int64_t dim, const float *g, const float *b, float eps,
                            const ms_ln_out *o)
{
    ms_epilogue epi = o ? o->epi : MS_EPI_NONE;
    int with_y2 = o && o->y2;
    if (epi == MS_EPI_GELU)
        ln_rows(y, ldy, x, ldx, rows, dim, g, b, eps, o, MS_EPI_GELU, with_y2);
    else if (epi == MS_EPI_RELU)
        ln_rows(y, ldy, x, ldx, rows, dim, g, b, eps, o, MS_EPI_RELU, with_y2);
    else if (with_y2)
        ln_rows(y, ldy, x, ldx, rows, dim, g, b, eps, o, MS_EPI_NONE, 1);
    else
        ln_rows(y, ldy, x, ldx, rows, dim, g, b, eps, o, MS_EPI_NONE, 0);
}

/* 16 pixels at a time: their statistics run down the channel rows. */
void ms_layernorm_channels_avx512(float *y, const float *x, int64_t c, int64_t hw,
                                  const float *g, const float *b, float eps)
{
    __m512 inv_c = _mm512_set1_ps(1.0f / (float)c);
    for (int64_t p = 0; p < hw; p += 16) {
        __mmask16 m = ms_mask16(hw - p);
        __m512 s = _mm512_setzero_ps();
        for (int64_t i = 0; i < c; i++)
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, x + i * hw + p));
        __m512 mean = _mm512_mul_ps(s, inv_c), v = _mm512_setzero_ps();
        for (int64_t i = 0; i < c; i++) {
            __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i * hw + p), mean);
            v = _mm512_fmadd_ps(d, d, v);
        }
        __m512 var = _mm512_fmadd_ps(v, inv_c, _mm512_set1_ps(eps));
        __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(var));
        for (int64_t i = 0; i < c; i++) {
            __m512 xn =
                _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i * hw + p), mean), inv);
            __m512 r = _mm512_fmadd_ps(xn, _mm512_set1_ps(g[i]), _mm512_set1_ps(b[i]));
            _mm512_mask_storeu_ps(y + i * hw + p, m, r);
        }
    }
}

void ms_softmax_rows_avx512(float *x, int64_t rows, int64_t n, int64_t ld)
{
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t i = 0; i < n; i += 16)
            mx = _mm512_max_ps(
                mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), ms_mask16(n - i), xr + i));
        __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), sum = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = ms_mask16(n - i);
            __m512 e = _mm512_maskz_mov_ps(
                m, ms_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + i), vmax)));
            _mm512_mask_storeu_ps(xr + i, m, e);
            sum = _mm512_add_ps(sum, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / ms_hsum512(sum));
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = ms_mask16(n - i);
            _mm512_mask_storeu_ps(xr + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), inv));
        }
    }
}

/* A few rows, held in registers between the passes (no store to reload). */
enum { FEW_ROWS = 8 };

static void softmax_cols_few(float *x, int64_t rows, __mmask16 m, int64_t ld)
{
    __m512 v[FEW_ROWS], mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int64_t r = 0; r < rows; r++) {
        v[r] = _mm512_maskz_loadu_ps(m, x + r * ld);
        mx = _mm512_max_ps(mx, v[r]);
    }
    for (int64_t r = 0; r < rows; r++) {
        v[r] = ms_exp512(_mm512_sub_ps(v[r], mx));
        sum = _mm512_add_ps(sum, v[r]);
    }
    __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
    for (int64_t r = 0; r < rows; r++) _mm512_mask_storeu_ps(x + r * ld, m, _mm512_mul_ps(v[r], inv));
}

/* Down the columns, 16 at a time: every step is lane-wise. */
void ms_softmax_cols_avx512(float *x, int64_t rows, int64_t n, int64_t ld)
{
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = ms_mask16(n - j);
        float *xj = x + j;
        if (rows <= FEW_ROWS) {
            softmax_cols_few(xj, rows, m, ld);
            continue;
        }
        __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
        for (int64_t r = 0; r < rows; r++)
            mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, m, xj + r * ld));
        for (int64_t r = 0; r < rows; r++) {
            __m512 e = ms_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xj + r * ld), mx));
            _mm512_mask_storeu_ps(xj + r * ld, m, e);
            sum = _mm512_add_ps(sum, e);
        }
        __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
        for (int64_t r = 0; r < rows; r++)
            _mm512_mask_storeu_ps(xj + r * ld, m,
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xj + r * ld), inv));
    }
}
