/* AVX-512 GEMM in the Goto / BLIS layout: C is cut into MC x NC blocks,
 * K into KC slices; per slice, op(B) is packed into NR-column panels and
 * each MC-row block of op(A) into MR-row slivers; a 12 x 32 register tile
 * (24 zmm accumulators) does the FMAs. KC = 768 (all of K for most ViT
 * layers) measured best on Zen 5: fewer passes over C, whose tiles miss
 * cache when re-read; a B panel (96 KB) and the A block (590 KB) then both
 * sit in L2, which feeds the 14 loads per 24 FMAs fast enough.
 *
 * B can also come straight from a weight tensor (f32 / f16 / bf16 / q8 rows,
 * the linear layer's w, used as w^T): the packing step expands it, so reduced
 * precision weights cost nothing beyond a convert per element per M block.
 * The last K slice applies the linear epilogue (bias, GELU / ReLU) to the
 * tile while it is still in registers. */
#include "kernels/internal.h"

#include <string.h>

#include "kernels/simd_avx512.h"

enum { MR = 12, NR = 32, KC = 768, MC = MR * 16, NC = 3072 };

/* ---- packing -------------------------------------------------------------- */

/* 16 values of row r of A from column k (masked; zero past the rows). */
static inline __m512 a_row16(const ms_gemm_args *g, int64_t r, int64_t mr, int64_t i0, int64_t k,
                             __mmask16 m)
{
    return r < mr ? _mm512_maskz_loadu_ps(m, g->a + (i0 + r) * g->lda + k) : _mm512_setzero_ps();
}

/* Rows 4q..4q+3 of a sliver, 16 k at a time: transposed in registers so
 * that each k's 4 values land as one quad at dst[k * MR + 4q]. */
static inline void pack_a_quad(float *dst, const ms_gemm_args *g, int q, int64_t i0, int64_t mr,
                               int64_t k, __mmask16 m)
{
    __m512 r0 = a_row16(g, 4 * q, mr, i0, k, m), r1 = a_row16(g, 4 * q + 1, mr, i0, k, m);
    __m512 r2 = a_row16(g, 4 * q + 2, mr, i0, k, m), r3 = a_row16(g, 4 * q + 3, mr, i0, k, m);
    __m512 t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
    __m512 t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
    /* lane l of u[j] holds the quad of column k + 4l + j */
    __m512 u[4] = {_mm512_shuffle_ps(t0, t2, 0x44), _mm512_shuffle_ps(t0, t2, 0xee),
                   _mm512_shuffle_ps(t1, t3, 0x44), _mm512_shuffle_ps(t1, t3, 0xee)};
    float *d = dst + 4 * q;
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        _mm_storeu_ps(d + (0 + j) * MR, _mm512_extractf32x4_ps(u[j], 0));
        _mm_storeu_ps(d + (4 + j) * MR, _mm512_extractf32x4_ps(u[j], 1));
        _mm_storeu_ps(d + (8 + j) * MR, _mm512_extractf32x4_ps(u[j], 2));
        _mm_storeu_ps(d + (12 + j) * MR, _mm512_extractf32x4_ps(u[j], 3));
    }
}

/* Sliver of MR rows of op(A), rows [i0, i0 + mr), k in [k0, k0 + kc):
 * dst[k * MR + i]; rows past mr are zero so the kernel needs no edge case.
 * Columns are written up to kc rounded up to 16 (the sliver has room: KC
 * is a multiple of 16). Reading 12 rows side by side, 16 columns at a
 * time, keeps 12 streams going; A comes from memory here, once. */
static void pack_a(float *dst, const ms_gemm_args *g, int64_t i0, int64_t mr, int64_t k0,
                   int64_t kc)
{
    if (g->trans_a) {
        for (int64_t k = 0; k < kc; k++) {
            const float *src = g->a + (k0 + k) * g->lda + i0;
            int64_t i = 0;
            for (; i < mr; i++) dst[k * MR + i] = src[i];
            for (; i < MR; i++) dst[k * MR + i] = 0;
        }
        return;
    }
    for (int64_t k = 0; k < kc; k += 16) {
        __mmask16 m = ms_mask16(kc - k);
        for (int q = 0; q < MR / 4; q++) pack_a_quad(dst + k * MR, g, q, i0, mr, k0 + k, m);
    }
}

/* kc values of weight row `row` from column k0, as f32. q8 slices start on
 * a block boundary (k0 is a multiple of KC, itself a multiple of the block). */
static void weight_seg(float *dst, const ms_tensor *w, int64_t cols, int64_t row, int64_t k0,
                       int64_t kc)
{
    const uint8_t *base = w->data;
    if (w->dtype == MS_F32) {
        memcpy(dst, (const float *)base + row * w->st[0] + k0, (size_t)kc * sizeof *dst);
    } else if (w->dtype == MS_F16 || w->dtype == MS_BF16) {
        const uint16_t *src = (const uint16_t *)base + row * w->st[0] + k0;
        for (int64_t k = 0; k < kc; k += 16) {
            __mmask16 m = ms_mask16(kc - k);
            __m256i h = _mm256_maskz_loadu_epi16(m, src + k);
            __m512 f = w->dtype == MS_F16
                           ? _mm512_cvtph_ps(h)
                           : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            _mm512_mask_storeu_ps(dst + k, m, f);
        }
    } else {
        const uint8_t *src =
            base + (row * (cols / MS_Q8_BLOCK) + k0 / MS_Q8_BLOCK) * MS_Q8_BLOCK_BYTES;
        for (int64_t k = 0; k < kc; k += MS_Q8_BLOCK, src += MS_Q8_BLOCK_BYTES) {
            float scale;
            memcpy(&scale, src, 4);
            __m512 s = _mm512_set1_ps(scale);
            __m128i q0 = _mm_loadu_si128((const __m128i *)(src + 4));
            __m128i q1 = _mm_loadu_si128((const __m128i *)(src + 20));
            _mm512_storeu_ps(dst + k,
                             _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), s));
            _mm512_storeu_ps(dst + k + 16,
                             _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), s));
        }
    }
}

/* Panel of NR columns of op(B), columns [j0, j0 + nr): dst[k * NR + j];
 * columns past nr are zero. `row` is KC floats of scratch. */
static void pack_b(float *dst, const ms_gemm_args *g, int64_t j0, int64_t nr, int64_t k0,
                   int64_t kc, float *row)
{
    if (!g->w && !g->trans_b) {
        for (int64_t k = 0; k < kc; k++) {
            const float *src = g->b + (k0 + k) * g->ldb + j0;
            _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(ms_mask16(nr), src));
            _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(ms_mask16(nr - 16), src + 16));
        }
        return;
    }
    for (int64_t j = 0; j < NR; j++) {
        const float *src = row;
        if (j >= nr)
            memset(row, 0, (size_t)kc * sizeof *row);
        else if (g->w)
            weight_seg(row, g->w, g->k, j0 + j, k0, kc);
        else
            src = g->b + (j0 + j) * g->ldb + k0;
        for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = src[k];
    }
}

/* ---- the 12 x 32 register tile --------------------------------------------- */

typedef struct tile_out {
    float alpha, beta;     /* C = alpha * acc + beta * C (beta == 0: C not read) */
    const float *bias;     /* last K slice only: + bias[j], then the activation */
    ms_epilogue epi;
} tile_out;

static inline __m512 finish(__m512 acc, const float *c, __mmask16 m, const tile_out *o,
                            const float *bias)
{
    __m512 v = _mm512_mul_ps(acc, _mm512_set1_ps(o->alpha));
    if (o->beta != 0)
        v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c), _mm512_set1_ps(o->beta), v);
    if (o->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias));
    if (o->epi == MS_EPI_GELU) v = ms_gelu512(v);
    if (o->epi == MS_EPI_RELU) v = _mm512_max_ps(v, _mm512_setzero_ps());
    return v;
}

/* The tile's FMAs and epilogue. A comes as k-major quads (a[k * as + i]:
 * packed, as = MR, rows past mr zero; or op(A) = A^T read in place, as =
 * lda, all MR rows existing) or, when `rows`, straight from row-major
 * memory: row i of the tile at rp[i] (rows past mr repeat the last row;
 * their results are dropped). B comes packed (bs = NR, aligned, zero past
 * nr) or, when `bdirect`, as op(B) rows read in place (bs = ldb, masked to
 * nr). */
static inline __attribute__((always_inline)) void tile(int64_t kc, const float *ap, int64_t as,
                                                      const float *const *rp, int rows,
                                                      const float *bp, int64_t bs, int bdirect,
                                                      float *c, int64_t ldc, int64_t mr,
                                                      int64_t nr, const tile_out *o, int64_t j0)
{
    __mmask16 m0 = ms_mask16(nr), m1 = ms_mask16(nr - 16);
    __m512 acc[MR][2];
    /* C's tile is read or written at the end and usually misses cache:
     * start fetching it now, behind the FMAs. */
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        if (i < mr) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * ldc + nr - 1), _MM_HINT_T0);
        }
    }
    for (int64_t k = 0; k < kc; k++, ap += as, bp += bs) {
        __m512 b0 = bdirect ? _mm512_maskz_loadu_ps(m0, bp) : _mm512_load_ps(bp);
        __m512 b1 = bdirect ? _mm512_maskz_loadu_ps(m1, bp + 16) : _mm512_load_ps(bp + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(rows ? rp[i][k] : ap[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    const float *bias0 = o->bias ? o->bias + j0 : NULL, *bias1 = o->bias ? o->bias + j0 + 16 : NULL;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        float *ci = c + i * ldc;
        _mm512_mask_storeu_ps(ci, m0, finish(acc[i][0], ci, m0, o, bias0));
        if (m1) _mm512_mask_storeu_ps(ci + 16, m1, finish(acc[i][1], ci + 16, m1, o, bias1));
    }
}

static void kernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                   int64_t mr, int64_t nr, const tile_out *o, int64_t j0)
{
    tile(kc, ap, MR, NULL, 0, bp, NR, 0, c, ldc, mr, nr, o, j0);
}

/* The tile reading A's rows in place (a: the tile's first row, at column
 * k0): for a narrow C, where each A value serves only a few panels and
 * packing it would cost as much as the FMAs. */
static void kernel_rows(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                        int64_t ldc, int64_t mr, int64_t nr, const tile_out *o, int64_t j0)
{
    const float *rp[MR];
    for (int i = 0; i < MR; i++) rp[i] = a + (i < mr ? i : mr - 1) * lda;
    tile(kc, NULL, 0, rp, 1, bp, NR, 0, c, ldc, mr, nr, o, j0);
}

/* B read in place (bs = ldb), A packed or transposed in place (as). */
static void kernel_bdirect(int64_t kc, const float *ap, int64_t as, const float *bp, int64_t bs,
                           float *c, int64_t ldc, int64_t mr, int64_t nr, const tile_out *o,
                           int64_t j0)
{
    tile(kc, ap, as, NULL, 0, bp, bs, 1, c, ldc, mr, nr, o, j0);
}

/* B read in place, A's rows read in place. */
static void kernel_rows_bdirect(int64_t kc, const float *a, int64_t lda, const float *bp,
                                int64_t bs, float *c, int64_t ldc, int64_t mr, int64_t nr,
                                const tile_out *o, int64_t j0)
{
    const float *rp[MR];
    for (int i = 0; i < MR; i++) rp[i] = a + (i < mr ? i : mr - 1) * lda;
    tile(kc, NULL, 0, rp, 1, bp, bs, 1, c, ldc, mr, nr, o, j0);
}

/* ---- blocking and threads -------------------------------------------------- */

/* The workspace: the packed B block, then per worker an A block and a row
 * buffer, each 64-byte aligned (all sizes are multiples of 16 floats). */
size_t ms_gemm_avx512_workspace_floats(int workers)
{
    return 16 + (size_t)KC * NC + (size_t)workers * (MC * KC + KC);
}

typedef struct round_ctx {
    const ms_gemm_args *g;
    float *pack_b, *pack_a, *rowbuf;
    int64_t k0, kc, j0, nc; /* this K slice and N block */
    int64_t n_mblocks, n_nchunks, nchunk;
    int direct; /* A read in place (kernel_rows), not packed */
    tile_out out;
} round_ctx;

static void pack_b_range(void *ctx, int64_t begin, int64_t end, int worker)
{
    const round_ctx *r = ctx;
    for (int64_t p = begin; p < end; p++) {
        int64_t j = p * NR, nr = r->nc - j < NR ? r->nc - j : NR;
        pack_b(r->pack_b + p * KC * NR, r->g, r->j0 + j, nr, r->k0, r->kc,
               r->rowbuf + (size_t)worker * KC);
    }
}

/* Work item = (MC-row block, chunk of NR panels): pack the A block (unless
 * r->direct), then run every (panel, sliver) pair, panels outer so each B
 * panel is reused by all the block's slivers while it is cached. */
static void compute_range(void *ctx, int64_t begin, int64_t end, int worker)
{
    const round_ctx *r = ctx;
    const ms_gemm_args *g = r->g;
    float *pa = r->pack_a + (size_t)worker * MC * KC;
    for (int64_t item = begin; item < end; item++) {
        int64_t ib = item / r->n_nchunks, jc = item % r->n_nchunks;
        int64_t i0 = ib * MC, mc = g->m - i0 < MC ? g->m - i0 : MC;
        for (int64_t s = 0; s < mc && !r->direct; s += MR)
            pack_a(pa + s * KC, g, i0 + s, mc - s < MR ? mc - s : MR, r->k0, r->kc);
        int64_t jb = jc * r->nchunk, je = jb + r->nchunk < r->nc ? jb + r->nchunk : r->nc;
        for (int64_t j = jb; j < je; j += NR) {
            const float *pb = r->pack_b + (j / NR) * KC * NR;
            int64_t nr = je - j < NR ? je - j : NR;
            for (int64_t s = 0; s < mc; s += MR) {
                float *c = g->c + (i0 + s) * g->ldc + r->j0 + j;
                int64_t mr = mc - s < MR ? mc - s : MR;
                if (r->direct)
                    kernel_rows(r->kc, g->a + (i0 + s) * g->lda + r->k0, g->lda, pb, c, g->ldc,
                                mr, nr, &r->out, r->j0 + j);
                else
                    kernel(r->kc, pa + s * KC, pb, c, g->ldc, mr, nr, &r->out, r->j0 + j);
            }
        }
    }
}

/* Few rows of C and B an f32 matrix in memory (not transposed): packing B
 * would copy all of it to serve a few slivers each, so B is read in place,
 * and with it A (transposed in place, or by rows). A work item owns a chunk
 * of panels through every K slice, so one dispatch does the whole product.
 * ref: the packed path below, which this matches tile for tile. */
#define UNPACKED_MAX_M (8 * MR)

typedef struct unpacked_ctx {
    const ms_gemm_args *g;
    float *pack_a;  /* per worker: the last sliver of a transposed A */
    int64_t nchunk; /* columns per work item */
} unpacked_ctx;

/* Slivers [0, m) of columns [j, j + nr) for the K slice [k0, k0 + kc). */
static void unpacked_slice(const unpacked_ctx *u, float *pa, int64_t j, int64_t nr, int64_t k0,
                           int64_t kc, const tile_out *o)
{
    const ms_gemm_args *g = u->g;
    const float *bp = g->b + k0 * g->ldb + j;
    for (int64_t i0 = 0; i0 < g->m; i0 += MR) {
        int64_t mr = g->m - i0 < MR ? g->m - i0 : MR;
        float *c = g->c + i0 * g->ldc + j;
        if (!g->trans_a) {
            kernel_rows_bdirect(kc, g->a + i0 * g->lda + k0, g->lda, bp, g->ldb, c, g->ldc, mr,
                                nr, o, j);
        } else if (mr == MR) {
            kernel_bdirect(kc, g->a + k0 * g->lda + i0, g->lda, bp, g->ldb, c, g->ldc, mr, nr, o,
                           j);
        } else { /* reading MR values in place would run past A's rows */
            pack_a(pa, g, i0, mr, k0, kc);
            kernel_bdirect(kc, pa, MR, bp, g->ldb, c, g->ldc, mr, nr, o, j);
        }
    }
}

static void unpacked_range(void *ctx, int64_t begin, int64_t end, int worker)
{
    const unpacked_ctx *u = ctx;
    const ms_gemm_args *g = u->g;
    float *pa = u->pack_a + (size_t)worker * MC * KC;
    for (int64_t item = begin; item < end; item++) {
        int64_t jb = item * u->nchunk, je = jb + u->nchunk < g->n ? jb + u->nchunk : g->n;
        for (int64_t k0 = 0; k0 < g->k; k0 += KC) {
            int last = k0 + KC >= g->k;
            tile_out o = {g->alpha, k0 == 0 ? g->beta : 1.0f, last ? g->bias : NULL,
                          last ? g->epi : MS_EPI_NONE};
            for (int64_t j = jb; j < je; j += NR)
                unpacked_slice(u, pa, j, je - j < NR ? je - j : NR, k0,
                               g->k - k0 < KC ? g->k - k0 : KC, &o);
        }
    }
}

static void gemm_unpacked(const ms_gemm_args *g, ms_pool *pool, float *ws)
{
    int64_t panels = (g->n + NR - 1) / NR, want = 4 * ms_pool_size(pool);
    unpacked_ctx u = {.g = g, .pack_a = ws + KC * NC, .nchunk = (panels + want - 1) / want * NR};
    ms_pool_for_dynamic(pool, (g->n + u.nchunk - 1) / u.nchunk, unpacked_range, &u);
}

/* Up to this many panels of C, A is read in place: each value is used by
 * that many tiles only, fewer than repay packing it. */
#define DIRECT_PANELS 4

/* Below this many multiply-adds, waking the workers costs more than it saves. */
#define MIN_THREADED_MACS (1 << 21)

void ms_gemm_avx512(const ms_gemm_args *g, ms_pool *pool, float *workspace)
{
    if ((double)g->m * (double)g->n * (double)g->k < MIN_THREADED_MACS) pool = NULL;
    int threads = ms_pool_size(pool);
    float *ws = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    if (!g->w && !g->trans_b && g->m <= UNPACKED_MAX_M) {
        gemm_unpacked(g, pool, ws);
        return;
    }
    for (int64_t j0 = 0; j0 < g->n; j0 += NC) {
        int64_t nc = g->n - j0 < NC ? g->n - j0 : NC;
        for (int64_t k0 = 0; k0 < g->k; k0 += KC) {
            round_ctx r = {.g = g, .pack_b = ws, .pack_a = ws + KC * NC,
                           .rowbuf = ws + KC * NC + (size_t)threads * MC * KC,
                           .k0 = k0, .kc = g->k - k0 < KC ? g->k - k0 : KC, .j0 = j0, .nc = nc};
            int last = k0 + KC >= g->k;
            r.out = (tile_out){g->alpha, k0 == 0 ? g->beta : 1.0f, last ? g->bias : NULL,
                               last ? g->epi : MS_EPI_NONE};
            int64_t panels = (nc + NR - 1) / NR;
            r.n_mblocks = (g->m + MC - 1) / MC;
            /* About 4 work items per thread (balance under dynamic scheduling),
             * each still at least 4 panels wide. */
            int64_t want = (4 * threads + r.n_mblocks - 1) / r.n_mblocks;
            int64_t per = (panels + want - 1) / want;
            r.nchunk = (per < 4 ? 4 : per) * NR;
            r.n_nchunks = (nc + r.nchunk - 1) / r.nchunk;
            r.direct = !g->trans_a && panels <= DIRECT_PANELS;
            ms_pool_for(pool, panels, 1, pack_b_range, &r);
            ms_pool_for_dynamic(pool, r.n_mblocks * r.n_nchunks, compute_range, &r);
        }
    }
}

/* ---- few rows: no packing --------------------------------------------------- */

/* 16 values of op(B) column j (= row j of b or w) from k: f32 straight, f16
 * / bf16 converted, q8 scaled by its block's scale. */
static inline __m512 b_row_chunk(const ms_gemm_args *g, int64_t j, int64_t k, __mmask16 m)
{
    const ms_tensor *w = g->w;
    if (!w) return _mm512_maskz_loadu_ps(m, g->b + j * g->ldb + k);
    const uint8_t *base = w->data;
    switch (w->dtype) {
    case MS_F16:
        return _mm512_cvtph_ps(
            _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + j * w->st[0] + k));
    case MS_BF16: {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + j * w->st[0] + k);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case MS_Q8: {
        const uint8_t *blk =
            base + (j * (g->k / MS_Q8_BLOCK) + k / MS_Q8_BLOCK) * MS_Q8_BLOCK_BYTES;
        float scale;
        memcpy(&scale, blk, 4);
        __m128i q = _mm_maskz_loadu_epi8(m, blk + 4 + k % MS_Q8_BLOCK);
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(scale));
    }
    default:
        return _mm512_maskz_loadu_ps(m, (const float *)base + j * w->st[0] + k);
    }
}

/* The sums of 16 vectors, lane 4 i + j = sum of v[4 i + j]: pairs of
 * vectors halve the partial sums three times (within 128-bit lanes twice,
 * then across them), 45 operations instead of 16 full reductions. */
static inline __m512 sum16(const __m512 v[16])
{
    __m512 h[8], q[4];
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++) /* per lane: v2p[0]+[2], v2p+1[0]+[2], v2p[1]+[3], v2p+1[1]+[3] */
        h[p] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * p], v[2 * p + 1]),
                             _mm512_unpackhi_ps(v[2 * p], v[2 * p + 1]));
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) /* per lane: the partial sums of v4p .. v4p+3 */
        q[p] = _mm512_add_ps(_mm512_shuffle_ps(h[2 * p], h[2 * p + 1], 0x44),
                             _mm512_shuffle_ps(h[2 * p], h[2 * p + 1], 0xee));
    __m512 u0 = _mm512_add_ps(_mm512_shuffle_f32x4(q[0], q[1], 0x44),
                              _mm512_shuffle_f32x4(q[0], q[1], 0xee));
    __m512 u1 = _mm512_add_ps(_mm512_shuffle_f32x4(q[2], q[3], 0x44),
                              _mm512_shuffle_f32x4(q[2], q[3], 0xee));
    return _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, 0x88), _mm512_shuffle_f32x4(u0, u1, 0xdd));
}

/* The epilogue of a 4 x 4 block whose dot products are the lanes of d
 * (lane 4 i + j: row i0 + i, column j0 + j): alpha, beta * C, bias and the
 * activation on all 16 at once, then the mi x nj that exist stored. */
static void finish_block(__m512 d, const ms_gemm_args *g, int64_t i0, int64_t mi, int64_t j0,
                         int64_t nj)
{
    __mmask8 mj = (__mmask8)((1u << nj) - 1);
    __m512 v = _mm512_mul_ps(d, _mm512_set1_ps(g->alpha));
    float *c0 = g->c + i0 * g->ldc + j0;
    int64_t l = g->ldc;
    if (g->beta != 0) {
        __m512 cv = _mm512_castps128_ps512(_mm_maskz_loadu_ps(mj, c0));
        if (mi > 1) cv = _mm512_insertf32x4(cv, _mm_maskz_loadu_ps(mj, c0 + 1 * l), 1);
        if (mi > 2) cv = _mm512_insertf32x4(cv, _mm_maskz_loadu_ps(mj, c0 + 2 * l), 2);
        if (mi > 3) cv = _mm512_insertf32x4(cv, _mm_maskz_loadu_ps(mj, c0 + 3 * l), 3);
        v = _mm512_fmadd_ps(cv, _mm512_set1_ps(g->beta), v);
    }
    if (g->bias)
        v = _mm512_add_ps(v, _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(mj, g->bias + j0)));
    if (g->epi == MS_EPI_GELU) v = ms_gelu512(v);
    if (g->epi == MS_EPI_RELU) v = _mm512_max_ps(v, _mm512_setzero_ps());
    _mm_mask_storeu_ps(c0, mj, _mm512_castps512_ps128(v));
    if (mi > 1) _mm_mask_storeu_ps(c0 + 1 * l, mj, _mm512_extractf32x4_ps(v, 1));
    if (mi > 2) _mm_mask_storeu_ps(c0 + 2 * l, mj, _mm512_extractf32x4_ps(v, 2));
    if (mi > 3) _mm_mask_storeu_ps(c0 + 3 * l, mj, _mm512_extractf32x4_ps(v, 3));
}

/* op(B) columns are rows in memory: dot products along k, 4 rows of A by
 * 4 columns at a time, reduced at the end. Columns outer, so each weight
 * row is fetched from memory once and reused from L1 by every row of A. */
static void small_dots(const ms_gemm_args *g, int64_t jb, int64_t je)
{
    for (int64_t j0 = jb; j0 < je; j0 += 4) {
        int64_t nj = je - j0 < 4 ? je - j0 : 4;
        for (int64_t i0 = 0; i0 < g->m; i0 += 4) {
            int64_t mi = g->m - i0 < 4 ? g->m - i0 : 4;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
            for (int64_t k = 0; k < g->k; k += 16) {
                __mmask16 m = ms_mask16(g->k - k);
                __m512 bv[4], av[4];
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) bv[j] = b_row_chunk(g, j0 + (j < nj ? j : 0), k, m);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++)
                    av[i] = _mm512_maskz_loadu_ps(m, g->a + (i0 + (i < mi ? i : 0)) * g->lda + k);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++)
                        acc[4 * i + j] = _mm512_fmadd_ps(av[i], bv[j], acc[4 * i + j]);
            }
            finish_block(sum16(acc), g, i0, mi, j0, nj);
        }
    }
}

/* Fewer rows than a 4 x 4 block, op(B) columns rows in memory: one row of
 * A against 16 columns, whose 16 dot products sum16 leaves in one vector.
 * With a short k (the decoder's masks: k = 32) the reduction is most of
 * the work, and a 4 x 4 block would spend it on 4 useful dots, not 16. */
static void small_dots_row(const ms_gemm_args *g, int64_t jb, int64_t je)
{
    tile_out o = {g->alpha, g->beta, g->bias, g->epi};
    for (int64_t i = 0; i < g->m; i++) {
        const float *ai = g->a + i * g->lda;
        for (int64_t j0 = jb; j0 < je; j0 += 16) {
            int64_t nj = je - j0 < 16 ? je - j0 : 16;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
            for (int64_t k = 0; k < g->k; k += 16) {
                __mmask16 m = ms_mask16(g->k - k);
                __m512 av = _mm512_maskz_loadu_ps(m, ai + k);
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++)
                    acc[j] = _mm512_fmadd_ps(av, b_row_chunk(g, j0 + (j < nj ? j : 0), k, m),
                                             acc[j]);
            }
            __mmask16 mj = ms_mask16(nj);
            float *c = g->c + i * g->ldc + j0;
            _mm512_mask_storeu_ps(c, mj, finish(sum16(acc), c, mj, &o, g->bias ? g->bias + j0 : NULL));
        }
    }
}

/* op(B) rows are rows in memory: broadcast a[i][k] against 64 columns. */
static void small_rows(const ms_gemm_args *g, int64_t jb, int64_t je)
{
    tile_out o = {g->alpha, g->beta, g->bias, g->epi};
    for (int64_t i0 = 0; i0 < g->m; i0 += 4) {
        int64_t mi = g->m - i0 < 4 ? g->m - i0 : 4;
        for (int64_t j0 = jb; j0 < je; j0 += 64) {
            __mmask16 mj[4];
            for (int v = 0; v < 4; v++) mj[v] = ms_mask16(je - j0 - 16 * v);
            __m512 acc[4][4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
            for (int64_t k = 0; k < g->k; k++) {
                const float *brow = g->b + k * g->ldb + j0;
                __m512 bv[4];
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) bv[v] = _mm512_maskz_loadu_ps(mj[v], brow + 16 * v);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    __m512 a = _mm512_set1_ps(g->a[(i0 + (i < mi ? i : 0)) * g->lda + k]);
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
                }
            }
            for (int64_t i = 0; i < mi; i++)
                for (int v = 0; v < 4 && mj[v]; v++) {
                    float *c = g->c + (i0 + i) * g->ldc + j0 + 16 * v;
                    const float *bias = g->bias ? g->bias + j0 + 16 * v : NULL;
                    _mm512_mask_storeu_ps(c, mj[v], finish(acc[i][v], c, mj[v], &o, bias));
                }
        }
    }
}

void ms_gemm_small_avx512(const ms_gemm_args *g, int64_t jb, int64_t je)
{
    if ((g->w || g->trans_b) && g->m < 4)
        small_dots_row(g, jb, je);
    else if (g->w || g->trans_b)
        small_dots(g, jb, je);
    else
        small_rows(g, jb, je);
}
