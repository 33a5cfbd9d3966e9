/* AVX2 LayerNorm (rows, with the fused activation and add, and channels)
 * and row softmax: ms_*_avx512 with 8 lanes, tails through maskload /
 * maskstore. */
#include "kernels/internal.h"
#include "kernels/simd_avx2.h"

#include <math.h>

/* The row's mean and 1 / sqrt(var + eps), broadcast: two passes over x. */
static inline __attribute__((always_inline)) void
ln_stats(const float *x, int64_t dim, float eps, __m256 *mean, __m256 *inv)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i < dim; i += 8) s0 = _mm256_add_ps(s0, _mm256_maskload_ps(x + i, ms_mask8(dim - i)));
    *mean = _mm256_set1_ps(ms_hsum256(_mm256_add_ps(s0, s1)) / (float)dim);
    __m256 v0 = _mm256_setzero_ps(), v1 = _mm256_setzero_ps();
    for (i = 0; i + 16 <= dim; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), *mean);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), *mean);
        v0 = _mm256_fmadd_ps(d0, d0, v0);
        v1 = _mm256_fmadd_ps(d1, d1, v1);
    }
    for (; i < dim; i += 8) {
        __m256i m = ms_mask8(dim - i);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), *mean),
                                 _mm256_castsi256_ps(m));
        v0 = _mm256_fmadd_ps(d, d, v0);
    }
    float var = ms_hsum256(_mm256_add_ps(v0, v1)) / (float)dim;
    *inv = _mm256_set1_ps(1.0f / sqrtf(var + eps));
}

/* One vector of the output: normalise, scale and shift, activate. */
static inline __attribute__((always_inline)) __m256 ln_vec(__m256 x, __m256 g, __m256 b,
                                                           __m256 mean, __m256 inv,
                                                           ms_epilogue epi)
{
    __m256 r = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(x, mean), inv), g, b);
    if (epi == MS_EPI_GELU) return ms_gelu256(r);
    if (epi == MS_EPI_RELU) return _mm256_max_ps(r, _mm256_setzero_ps());
    return r;
}

/* The single write pass, as in the AVX-512 version: whole vectors
 * unmasked, the tail through maskload / maskstore. */
static inline __attribute__((always_inline)) void
ln_write(float *y, float *y2, const float *add, const float *x, int64_t dim, const float *g,
         const float *b, __m256 mean, __m256 inv, ms_epilogue epi, int with_y2)
{
    int64_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        __m256 r = ln_vec(_mm256_loadu_ps(x + i), _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i),
                          mean, inv, epi);
        _mm256_storeu_ps(y + i, r);
        if (with_y2) _mm256_storeu_ps(y2 + i, _mm256_add_ps(r, _mm256_loadu_ps(add + i)));
    }
    if (i == dim) return;
    __m256i m = ms_mask8(dim - i);
    __m256 r = ln_vec(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(g + i, m),
                      _mm256_maskload_ps(b + i, m), mean, inv, epi);
    _mm256_maskstore_ps(y + i, m, r);
    if (with_y2) _mm256_maskstore_ps(y2 + i, m, _mm256_add_ps(r, _mm256_maskload_ps(add + i, m)));
}

/* Rows in blocks, statistics first, as in the AVX-512 version. */
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
        __m256 mean[LN_BLOCK], inv[LN_BLOCK];
        for (int64_t k = 0; k < n; k++) ln_stats(x + (r0 + k) * ldx, dim, eps, &mean[k], &inv[k]);
        for (int64_t k = 0; k < n; k++) {
            int64_t r = r0 + k;
            float *y2 = with_y2 ? o->y2 + r * o->ld_y2 : NULL;
            const float *add = with_y2 ? o->add + r * o->ld_add : NULL;
            ln_write(y + r * ldy, y2, add, x + r * ldx, dim, g, b, mean[k], inv[k], epi, with_y2);
        }
    }
}

void ms_layernorm_ex_avx2(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
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

void ms_layernorm_channels_avx2(float *y, const float *x, int64_t c, int64_t hw,
                                const float *g, const float *b, float eps)
{
    __m256 inv_c = _mm256_set1_ps(1.0f / (float)c);
    for (int64_t p = 0; p < hw; p += 8) {
        __m256i m = ms_mask8(hw - p);
        __m256 s = _mm256_setzero_ps();
        for (int64_t i = 0; i < c; i++) s = _mm256_add_ps(s, _mm256_maskload_ps(x + i * hw + p, m));
        __m256 mean = _mm256_mul_ps(s, inv_c), v = _mm256_setzero_ps();
        for (int64_t i = 0; i < c; i++) {
            __m256 d = _mm256_sub_ps(_mm256_maskload_ps(x + i * hw + p, m), mean);
            v = _mm256_fmadd_ps(d, d, v);
        }
        __m256 var = _mm256_fmadd_ps(v, inv_c, _mm256_set1_ps(eps));
        __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_sqrt_ps(var));
        for (int64_t i = 0; i < c; i++) {
            __m256 xn =
                _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i * hw + p, m), mean), inv);
            __m256 r = _mm256_fmadd_ps(xn, _mm256_set1_ps(g[i]), _mm256_set1_ps(b[i]));
            _mm256_maskstore_ps(y + i * hw + p, m, r);
        }
    }
}

void ms_softmax_rows_avx2(float *x, int64_t rows, int64_t n, int64_t ld)
{
    __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        __m256 mx = ninf;
        for (int64_t i = 0; i < n; i += 8) {
            __m256i m = ms_mask8(n - i);
            mx = _mm256_max_ps(
                mx, _mm256_blendv_ps(ninf, _mm256_maskload_ps(xr + i, m), _mm256_castsi256_ps(m)));
        }
        __m256 vmax = _mm256_set1_ps(ms_hmax256(mx)), sum = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i += 8) {
            __m256i m = ms_mask8(n - i);
            __m256 e = ms_exp256(_mm256_sub_ps(_mm256_maskload_ps(xr + i, m), vmax));
            e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
            _mm256_maskstore_ps(xr + i, m, e);
            sum = _mm256_add_ps(sum, e);
        }
        __m256 inv = _mm256_set1_ps(1.0f / ms_hsum256(sum));
        for (int64_t i = 0; i < n; i += 8) {
            __m256i m = ms_mask8(n - i);
            _mm256_maskstore_ps(xr + i, m, _mm256_mul_ps(_mm256_maskload_ps(xr + i, m), inv));
        }
    }
}

/* A few rows, held in registers between the passes (no store to reload). */
enum { FEW_ROWS = 8 };

static void softmax_cols_few(float *x, int64_t rows, __m256i m, int64_t ld)
{
    __m256 v[FEW_ROWS], mx = _mm256_set1_ps(-INFINITY), sum = _mm256_setzero_ps();
    for (int64_t r = 0; r < rows; r++) {
        v[r] = _mm256_maskload_ps(x + r * ld, m);
        mx = _mm256_max_ps(mx, v[r]);
    }
    for (int64_t r = 0; r < rows; r++) {
        v[r] = ms_exp256(_mm256_sub_ps(v[r], mx));
        sum = _mm256_add_ps(sum, v[r]);
    }
    __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
    for (int64_t r = 0; r < rows; r++) _mm256_maskstore_ps(x + r * ld, m, _mm256_mul_ps(v[r], inv));
}

/* Down the columns, 8 at a time: every step is lane-wise. */
void ms_softmax_cols_avx2(float *x, int64_t rows, int64_t n, int64_t ld)
{
    for (int64_t j = 0; j < n; j += 8) {
        __m256i m = ms_mask8(n - j);
        float *xj = x + j;
        if (rows <= FEW_ROWS) {
            softmax_cols_few(xj, rows, m, ld);
            continue;
        }
        __m256 mx = _mm256_set1_ps(-INFINITY), sum = _mm256_setzero_ps();
        for (int64_t r = 0; r < rows; r++)
            mx = _mm256_max_ps(mx, _mm256_blendv_ps(mx, _mm256_maskload_ps(xj + r * ld, m),
                                                    _mm256_castsi256_ps(m)));
        for (int64_t r = 0; r < rows; r++) {
            __m256 e = ms_exp256(_mm256_sub_ps(_mm256_maskload_ps(xj + r * ld, m), mx));
            _mm256_maskstore_ps(xj + r * ld, m, e);
            sum = _mm256_add_ps(sum, e);
        }
        __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
        for (int64_t r = 0; r < rows; r++)
            _mm256_maskstore_ps(xj + r * ld, m, _mm256_mul_ps(_mm256_maskload_ps(xj + r * ld, m), inv));
    }
}
