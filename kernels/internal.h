/* Shared by the kernel files only: which variant may run, and the SIMD
 * variants' entry points. Every call of a *_avx2 / *_avx512 function must sit
 * behind ms_use_avx2() / ms_use_avx512(), which check the CPU at run time. */
#ifndef MS_KERNELS_INTERNAL_H
#define MS_KERNELS_INTERNAL_H

#include "kernels/kernels.h"

/* AVX2 + FMA + F16C present and the reference path not forced. */
int ms_use_avx2(void);
/* AVX-512 F/BW/VL/DQ + FMA + F16C present (OS saves ZMM state), not forced. */
int ms_use_avx512(void);
/* The reference path is forced (ms_kernels_force_reference). */
int ms_reference_forced(void);
/* Caps the instruction sets used (tests exercise the AVX2 variants on
 * AVX-512 machines this way): MS_ISA_AVX512 (default) or MS_ISA_AVX2. */
enum { MS_ISA_AVX2 = 1, MS_ISA_AVX512 = 2 };
void ms_kernels_cap_isa(int max_level);

/* Element (row, col) of a weight tensor, decoded on the spot (reference
 * paths: slow but needs no scratch). */
float ms_weight_at(const ms_tensor *w, int64_t row, int64_t col);

/* A GEMM as the blocked kernels see it: C = alpha op(A) op(B) + beta C, then
 * + bias[j] and the activation. op(B) is either b (trans_b) or, when w is
 * set, the weight tensor used as w^T (op(B)[k][n] = w[n][k], any dtype). */
typedef struct ms_gemm_args {
    int trans_a, trans_b;
    int64_t m, n, k; /* k >= 1 */
    float alpha, beta;
    const float *a;
    int64_t lda;
    const float *b;
    int64_t ldb;
    const ms_tensor *w;
    float *c;
    int64_t ldc;
    const float *bias;
    ms_epilogue epi;
} ms_gemm_args;

/* Attention blocking shared by the variants and the scratch size: queries
 * per block (lanes) and keys per softmax tile. */
enum { MS_ATTN_QB = 32, MS_ATTN_BK = 144, MS_ATTN_KT = 12 };
/* Calls with at most this many queries and no bias take the few-query
 * variants (keys across the lanes), when d is a multiple of their lanes;
 * their softmax tiles hold MS_ATTN_FEW_BK keys. */
enum { MS_ATTN_FEW_Q = 16, MS_ATTN_FEW_BK = 256 };

/* ---- SIMD variants (same contracts as the public ops) ---- */
/* One blocked GEMM over the pool's workers, packing into `workspace` (at
 * least ms_gemm_avx512_workspace_floats(pool size) floats). */
size_t ms_gemm_avx512_workspace_floats(int workers);
void ms_gemm_avx512(const ms_gemm_args *g, ms_pool *pool, float *workspace);
/* The same for a few rows (m <= MS_GEMM_SMALL_M, trans_a == 0): output
 * columns [jb, je) on the calling thread, reading B in place. */
enum { MS_GEMM_SMALL_M = 16 };
void ms_gemm_small_avx512(const ms_gemm_args *g, int64_t jb, int64_t je);
void ms_attention_avx512(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch);
void ms_attention_avx2(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch);
void ms_attention_few_avx512(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch);
void ms_attention_few_avx2(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch);
void ms_weight_row_avx2(float *dst, const ms_tensor *w, int64_t row);
void ms_gelu_avx2(float *x, int64_t n);
void ms_gelu_avx512(float *x, int64_t n);
void ms_layernorm_ex_avx2(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                          int64_t dim, const float *g, const float *b, float eps,
                          const ms_ln_out *o);
void ms_layernorm_ex_avx512(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t rows,
                            int64_t dim, const float *g, const float *b, float eps,
                            const ms_ln_out *o);
void ms_layernorm_channels_avx2(float *y, const float *x, int64_t c, int64_t hw,
                                const float *g, const float *b, float eps);
void ms_layernorm_channels_avx512(float *y, const float *x, int64_t c, int64_t hw,
                                  const float *g, const float *b, float eps);
void ms_softmax_rows_avx2(float *x, int64_t rows, int64_t n, int64_t ld);
void ms_softmax_rows_avx512(float *x, int64_t rows, int64_t n, int64_t ld);
void ms_softmax_cols_avx2(float *x, int64_t rows, int64_t n, int64_t ld);
void ms_softmax_cols_avx512(float *x, int64_t rows, int64_t n, int64_t ld);

#endif
