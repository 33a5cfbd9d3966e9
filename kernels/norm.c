/* LayerNorm over rows (optionally with a fused activation and add) and over
 * channels (SAM's LayerNorm2d), row softmax. Both norms use two passes
 * (mean, then squared deviations), which stays accurate when |mean| >> std,
 * unlike E[x^2] - E[x]^2. */
#include "kernels/internal.h"

#include <math.h>

/* The epilogue and second output of one finished row, in the order the
 * fast variants apply them: y2 sees y after the activation. */
static void ln_out_ref(float *y, int64_t dim, const ms_ln_out *o, int64_t r)
{
    if (o->epi == MS_EPI_GELU) ms_gelu_ref(y, dim);
    if (o->epi == MS_EPI_RELU) ms_relu(y, dim);
    if (!o->y2) return;
    float *y2 = o->y2 + r * o->ld_y2;
    const float *add = o->add + r * o->ld_add;
    for (int64_t i = 0; i < dim; i++) y2[i] = y[i] + add[i];
}

void ms_layernorm_ex_ref(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                         int64_t dim, const float *g, const float *b, float eps,
                         const ms_ln_out *o)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < dim; i++) mean += xr[i];
        mean /= (double)dim;
        for (int64_t i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= (double)dim;
        float inv = (float)(1.0 / sqrt(var + eps));
        float mu = (float)mean;
        for (int64_t i = 0; i < dim; i++) yr[i] = (xr[i] - mu) * inv * g[i] + b[i];
        if (o) ln_out_ref(yr, dim, o, r);
    }
}

void ms_layernorm_ex(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                     int64_t dim, const float *g, const float *b, float eps, const ms_ln_out *o)
{
    if (ms_use_avx512())
        ms_layernorm_ex_avx512(y, ldy, x, ldx, rows, dim, g, b, eps, o);
    else if (ms_use_avx2())
        ms_layernorm_ex_avx2(y, ldy, x, ldx, rows, dim, g, b, eps, o);
    else
        ms_layernorm_ex_ref(y, ldy, x, ldx, rows, dim, g, b, eps, o);
}

void ms_layernorm_ref(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                      int64_t dim, const float *g, const float *b, float eps)
{
    ms_layernorm_ex_ref(y, ldy, x, ldx, rows, dim, g, b, eps, NULL);
}

void ms_layernorm(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                  int64_t dim, const float *g, const float *b, float eps)
{
    ms_layernorm_ex(y, ldy, x, ldx, rows, dim, g, b, eps, NULL);
}

void ms_layernorm_channels_ref(float *y, const float *x, int64_t c, int64_t hw,
                               const float *g, const float *b, float eps)
{
    for (int64_t p = 0; p < hw; p++) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < c; i++) mean += x[i * hw + p];
        mean /= (double)c;
        for (int64_t i = 0; i < c; i++) var += (x[i * hw + p] - mean) * (x[i * hw + p] - mean);
        var /= (double)c;
        float inv = (float)(1.0 / sqrt(var + eps));
        float mu = (float)mean;
        for (int64_t i = 0; i < c; i++) y[i * hw + p] = (x[i * hw + p] - mu) * inv * g[i] + b[i];
    }
}

void ms_layernorm_channels(float *y, const float *x, int64_t c, int64_t hw, const float *g,
                           const float *b, float eps)
{
    if (ms_use_avx512())
        ms_layernorm_channels_avx512(y, x, c, hw, g, b, eps);
    else if (ms_use_avx2())
        ms_layernorm_channels_avx2(y, x, c, hw, g, b, eps);
    else
        ms_layernorm_channels_ref(y, x, c, hw, g, b, eps);
}

void ms_softmax_rows_ref(float *x, int64_t rows, int64_t n, int64_t ld)
{
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) mx = xr[i] > mx ? xr[i] : mx;
        float sum = 0;
        for (int64_t i = 0; i < n; i++) {
            xr[i] = expf(xr[i] - mx);
            sum += xr[i];
        }
        float inv = 1.0f / sum;
        for (int64_t i = 0; i < n; i++) xr[i] *= inv;
    }
}

void ms_softmax_rows(float *x, int64_t rows, int64_t n, int64_t ld)
{
    if (ms_use_avx512())
        ms_softmax_rows_avx512(x, rows, n, ld);
    else if (ms_use_avx2())
        ms_softmax_rows_avx2(x, rows, n, ld);
    else
        ms_softmax_rows_ref(x, rows, n, ld);
}

void ms_softmax_cols_ref(float *x, int64_t rows, int64_t n, int64_t ld)
{
    for (int64_t j = 0; j < n; j++) {
        float mx = -INFINITY;
        for (int64_t r = 0; r < rows; r++) mx = x[r * ld + j] > mx ? x[r * ld + j] : mx;
        float sum = 0;
        for (int64_t r = 0; r < rows; r++) {
            x[r * ld + j] = expf(x[r * ld + j] - mx);
            sum += x[r * ld + j];
        }
        float inv = 1.0f / sum;
        for (int64_t r = 0; r < rows; r++) x[r * ld + j] *= inv;
    }
}

void ms_softmax_cols(float *x, int64_t rows, int64_t n, int64_t ld)
{
    if (ms_use_avx512())
        ms_softmax_cols_avx512(x, rows, n, ld);
    else if (ms_use_avx2())
        ms_softmax_cols_avx2(x, rows, n, ld);
    else
        ms_softmax_cols_ref(x, rows, n, ld);
}
