/* SAM's decomposed relative-position terms, the two einsums of
 * add_decomposed_rel_pos with the table rows picked by each query's offset
 * to the key rows and columns of its window.
 * ref: segment_anything/modeling/image_encoder.py add_decomposed_rel_pos
 *
 * One plain loop and no SIMD variants: a query costs 2 side d multiply-adds
 * here against about 2 side^2 d in the attention it feeds, so this is never
 * where the time goes. */
#include "kernels/kernels.h"

static float dot(const float *a, const float *b, int64_t d)
{
    float s = 0;
    for (int64_t i = 0; i < d; i++) s += a[i] * b[i];
    return s;
}

void ms_rel_pos_bias(float *bias_h, float *bias_w, const float *q, int64_t ldq, int64_t tokens,
                     int64_t d, const float *rel_h, const float *rel_w, int64_t side)
{
    for (int64_t t = 0; t < tokens; t++) {
        const float *qt = q + t * ldq;
        int64_t y = t % (side * side) / side, x = t % side;
        for (int64_t k = 0; k < side; k++) {
            bias_h[t * side + k] = dot(qt, rel_h + (y - k + side - 1) * d, d);
            bias_w[t * side + k] = dot(qt, rel_w + (x - k + side - 1) * d, d);
        }
    }
}
