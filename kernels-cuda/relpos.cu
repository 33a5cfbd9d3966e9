/* SAM's decomposed relative-position terms as ms_rel_pos_bias: one thread
 * per (token, key row or column) pair, computing both tables' d-long dot
 * products so that the query is read once for the two. The work is 1/side
 * of the attention's it feeds, so a plain loop over d serves.
 * ref: segment_anything/modeling/image_encoder.py add_decomposed_rel_pos */
#include "kernels-cuda/common.cuh"

#define THREADS 256

/* Item i = t * side + k is also where both outputs go. */
static __global__ void rel_pos_kernel(float *bias_h, float *bias_w, const float *q, int64_t ldq,
                                      int64_t d, const float *rel_h, const float *rel_w,
                                      int64_t side, int64_t total)
{
    MS_GRID_STRIDE(i, total) {
        int64_t t = i / side, k = i % side, in = t % (side * side);
        const float *qt = q + t * ldq;
        const float *rh = rel_h + (in / side - k + side - 1) * d;
        const float *rw = rel_w + (in % side - k + side - 1) * d;
        float h = 0.0f, w = 0.0f;
        for (int64_t c = 0; c < d; c++) {
            h += qt[c] * rh[c];
            w += qt[c] * rw[c];
        }
        bias_h[i] = h;
        bias_w[i] = w;
    }
}

ms_status ms_cuda_rel_pos(ms_backend *be, float *bias_h, float *bias_w, const float *q,
                          int64_t ldq, int64_t tokens, int64_t d, const float *rel_h,
                          const float *rel_w, int64_t side)
{
    int64_t total = tokens * side;
    if (total <= 0) return MS_OK;
    rel_pos_kernel<<<ms_cuda_blocks(total, THREADS), THREADS, 0, ms_cuda_ctx(be)->stream>>>(
        bias_h, bias_w, q, ldq, d, rel_h, rel_w, side, total);
    LAUNCH_CHECK();
    return MS_OK;
}
