/* AVX-512 LayerNorm (rows and channels) and row softmax. Same two-pass
 * statistics as the reference, 16 lanes at a time, masked tails. */
#include "kernels/internal.h"
#include "kernels/simd_avx512.h"

#include <math.h>

static void ln_row(float *y, const float *x, int64_t dim, const float *g, const float *b,
                   float eps)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < dim; i += 16)
        s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(ms_mask16(dim - i), x + i));
    __m512 mean = _mm512_set1_ps(ms_hsum512(_mm512_add_ps(s0, s1)) / (float)dim);
    __m512 v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
    for (i = 0; i + 32 <= dim; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), mean);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), mean);
        v0 = _mm512_fmadd_ps(d0, d0, v0);
        v1 = _mm512_fmadd_ps(d1, d1, v1);
    }
    for (; i < dim; i += 16) {
        __mmask16 m = ms_mask16(dim - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), mean);
        v0 = _mm512_fmadd_ps(d, d, v0);
    }
    float var = ms_hsum512(_mm512_add_ps(v0, v1)) / (float)dim;
    __m512 inv = _mm512_set1_ps(1.0f / sqrtf(var + eps));
    for (i = 0; i < dim; i += 16) {
        __mmask16 m = ms_mask16(dim - i);
        __m512 xn = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mean), inv);
        __m512 r =
            _mm512_fmadd_ps(xn, _mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

void ms_layernorm_avx512(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                         int64_t dim, const float *g, const float *b, float eps)
{
    for (int64_t r = 0; r < rows; r++) ln_row(y + r * ldy, x + r * ldx, dim, g, b, eps);
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
