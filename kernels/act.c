/* Element-wise activations and adds. */
#include "kernels/internal.h"

#include <math.h>

/* GELU(x) = x Phi(x) = x/2 (1 + erf(x / sqrt 2)), PyTorch's exact form,
 * written with erfc(-x / sqrt 2) = 1 + erf(x / sqrt 2) so the negative tail
 * keeps its relative accuracy, and in double so that rounding x / sqrt 2 does
 * not cost digits there (erfc's relative condition number grows like 2 z^2). */
void ms_gelu_ref(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)(0.5 * x[i] * erfc(-x[i] * M_SQRT1_2));
}

void ms_gelu(float *x, int64_t n)
{
    if (ms_use_avx512())
        ms_gelu_avx512(x, n);
    else if (ms_use_avx2())
        ms_gelu_avx2(x, n);
    else
        ms_gelu_ref(x, n);
}

void ms_relu(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
}

void ms_add(float *y, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
