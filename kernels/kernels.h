/* CPU kernels: the math the network is made of. Each op has a plain reference
 * version (`*_ref`, scalar C, obviously correct) and the dispatching entry
 * point (no suffix) that picks the fastest variant this CPU supports at run
 * time. Tests compare the two on random and odd shapes.
 *
 * Conventions: float32 activations, row-major, explicit leading dimensions.
 * Weights arrive as ms_tensor so that f32, f16 and q8 storage all work.
 * Kernels never allocate on their own: any scratch comes from the caller. */
#ifndef MS_KERNELS_H
#define MS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "core/threads.h"

/* ---- CPU features ------------------------------------------------------ */
typedef struct ms_cpu_features {
    int avx2, fma, f16c, avx512f, avx512bw, avx512_bf16;
} ms_cpu_features;
const ms_cpu_features *ms_cpu(void);
/* "AMD EPYC 9B14 (avx2 fma f16c avx512f ...)" for benchmark reports. */
const char *ms_cpu_description(void);
/* Forces the reference path everywhere (tests, debugging): the scalar
 * *_ref ops, and OpenBLAS for GEMMs, linear layers and convolutions. */
void ms_kernels_force_reference(int on);
/* Threads used inside large GEMMs (our AVX-512 GEMM's pool, OpenBLAS, and
 * the bias / activation pass after an OpenBLAS product); n <= 0: all online
 * CPUs, the default. Call it while no kernel runs. The model splits other
 * work over its own ms_pool. */
void ms_kernels_set_threads(int n);

/* ---- GEMM -------------------------------------------------------------- */
/* C[m,n] = alpha * sum_k op(A)[m,k] op(B)[k,n] + beta * C[m,n], f32, row-major;
 * beta == 0 never reads C. With AVX-512 our blocked GEMM runs it (threaded)
 * or, for m <= 16, a few-row kernel on the calling thread; otherwise, or when
 * another thread is inside our GEMM, OpenBLAS cblas_sgemm. */
void ms_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc);
void ms_sgemm_ref(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                  float *c, int64_t ldc);

/* Linear layer, PyTorch layout: y[m, n] = x[m, :] . w[n, :] + bias[n]
 * (+ y[m, n] before when accumulate). w is (N, K) of dtype f32, f16 or q8;
 * bias may be NULL. x has row stride ldx, y row stride ldy.
 * scratch: NULL for f32 weights, else at least ms_linear_scratch_bytes(). */
typedef enum ms_epilogue { MS_EPI_NONE = 0, MS_EPI_GELU, MS_EPI_RELU } ms_epilogue;
size_t ms_linear_scratch_bytes(const ms_tensor *w, int64_t m);
void ms_linear(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t m,
               const ms_tensor *w, const float *bias, ms_epilogue epi, int accumulate,
               void *scratch);
void ms_linear_ref(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t m,
                   const ms_tensor *w, const float *bias, ms_epilogue epi, int accumulate);

/* Dequantise row `row` of a weight tensor (f32/f16/bf16/q8, rows = all dims
 * but the first flattened) into dst. */
void ms_weight_row_f32(float *dst, const ms_tensor *w, int64_t row);

/* ---- normalisation and activations -------------------------------------- */
/* Row LayerNorm over the last dim: y = (x - mean) / sqrt(var + eps) * g + b.
 * rows of `dim` floats with strides ldx / ldy; y may alias x. */
void ms_layernorm(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                  int64_t dim, const float *g, const float *b, float eps);
void ms_layernorm_ref(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                      int64_t dim, const float *g, const float *b, float eps);
/* What a LayerNorm does with its result in its own write pass, instead of
 * another pass over the matrix: y = epi(LayerNorm(x) * g + b), then, when
 * y2 is set, y2 = y + add (rows of `dim` with strides ld_add / ld_y2; add
 * is required with y2; y2 may alias add). The add gains most from this;
 * GELU's arithmetic outweighs the pass it saves. */
typedef struct ms_ln_out {
    ms_epilogue epi;
    const float *add;
    int64_t ld_add;
    float *y2;
    int64_t ld_y2;
} ms_ln_out;
/* ms_layernorm followed by *o; o == NULL: plain LayerNorm. y may alias x. */
void ms_layernorm_ex(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                     int64_t dim, const float *g, const float *b, float eps, const ms_ln_out *o);
void ms_layernorm_ex_ref(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                         int64_t dim, const float *g, const float *b, float eps,
                         const ms_ln_out *o);
/* LayerNorm2d: x is (C, HW) channel-first; normalises each pixel over C. */
void ms_layernorm_channels(float *y, const float *x, int64_t c, int64_t hw,
                           const float *g, const float *b, float eps);
void ms_layernorm_channels_ref(float *y, const float *x, int64_t c, int64_t hw,
                               const float *g, const float *b, float eps);
/* Exact (erf) GELU and ReLU in place. */
void ms_gelu(float *x, int64_t n);
void ms_gelu_ref(float *x, int64_t n);
void ms_relu(float *x, int64_t n);
/* Row softmax in place, rows of n with stride ld. */
void ms_softmax_rows(float *x, int64_t rows, int64_t n, int64_t ld);
void ms_softmax_rows_ref(float *x, int64_t rows, int64_t n, int64_t ld);
/* Column softmax in place: each of the n columns over its rows (stride ld). */
void ms_softmax_cols(float *x, int64_t rows, int64_t n, int64_t ld);
void ms_softmax_cols_ref(float *x, int64_t rows, int64_t n, int64_t ld);
/* y[i] = a[i] + b[i]; y may be a or b */
void ms_add(float *y, const float *a, const float *b, int64_t n);

/* ---- attention ---------------------------------------------------------- */
/* One head: out[i, :] = sum_j p_ij v[j, :], p_i = softmax_j(scale * q_i . k_j
 * + bias_h[i, j / kw] + bias_w[i, j % kw]). The bias terms are SAM's
 * decomposed relative positions (keys laid out as a kh x kw grid, kh*kw = nk);
 * bias_h == NULL means no bias. Rows [q_begin, q_end) only, so callers can
 * split the queries of a head across threads. A call copies K and V to
 * contiguous rows first, so with many keys give a call a few hundred queries
 * (64 queries x 4096 keys lose 10-20 % of their time to that copy); except a
 * call with at most 16 queries, no bias and d a multiple of the SIMD width
 * (the decoder's tokens against the image), which reads K and V in place
 * with the keys across the lanes. Never forms the nq x nk matrix (online
 * softmax over key tiles).
 * scratch: ms_attention_scratch_floats(), enough for any query range. */
typedef struct ms_attn {
    const float *q, *k, *v; /* nq x d, nk x d, nk x d */
    int64_t ldq, ldk, ldv;
    float *out;             /* nq x d */
    int64_t ldo;
    int64_t nq, nk, d;
    float scale;
    const float *bias_h, *bias_w; /* nq x kh (ld kh), nq x kw (ld kw) */
    int64_t kh, kw;
} ms_attn;
size_t ms_attention_scratch_floats(const ms_attn *a);
void ms_attention(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch);
void ms_attention_ref(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch);

/* SAM's decomposed relative-position terms (add_decomposed_rel_pos) for
 * `tokens` query rows laid out window after window, each window side x side
 * tokens row-major (a global block is one window of the whole grid): for
 * token t at (y, x) inside its window and k in [0, side),
 *   bias_h[t * side + k] = q_t . rel_h[y - k + side - 1]
 *   bias_w[t * side + k] = q_t . rel_w[x - k + side - 1]
 * q_t = q + t * ldq (d floats, unscaled), rel_h and rel_w (2 side - 1, d)
 * contiguous. The outputs are ms_attn's bias_h / bias_w (ld side). tokens
 * is a multiple of side * side. One plain version (no *_ref twin): it does
 * 1/side of the attention's arithmetic, so SIMD variants would gain little. */
void ms_rel_pos_bias(float *bias_h, float *bias_w, const float *q, int64_t ldq, int64_t tokens,
                     int64_t d, const float *rel_h, const float *rel_w, int64_t side);

/* ---- convolutions (NCHW, batch handled by the caller) -------------------- */
/* y (Cout, Ho, Wo) = conv(x (Cin, H, W), w (Cout, Cin, kh, kw)) + bias,
 * stride s, zero padding p. scratch: ms_conv2d_scratch_floats() (im2col). */
size_t ms_conv2d_scratch_floats(int64_t cin, int64_t h, int64_t w, const ms_tensor *wt,
                                int stride, int pad);
void ms_conv2d(float *y, const float *x, int64_t cin, int64_t h, int64_t w,
               const ms_tensor *wt, const float *bias, int stride, int pad, float *scratch);
void ms_conv2d_ref(float *y, const float *x, int64_t cin, int64_t h, int64_t w,
                   const ms_tensor *wt, const float *bias, int stride, int pad);
/* ConvTranspose2d with kernel 2, stride 2 (SAM's upscaling): weight
 * (Cin, Cout, 2, 2), y (Cout, 2H, 2W). scratch: 4*Cout*H*W floats. */
void ms_conv_transpose2x2(float *y, const float *x, int64_t cin, int64_t h, int64_t w,
                          const ms_tensor *wt, const float *bias, float *scratch);
void ms_conv_transpose2x2_ref(float *y, const float *x, int64_t cin, int64_t h, int64_t w,
                              const ms_tensor *wt, const float *bias);

#endif
