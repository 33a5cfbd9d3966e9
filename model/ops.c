/* Threaded building blocks shared by the encoder and the decoder: each splits
 * its rows over the model's pool and calls the kernels on the slices. */

#include "model/sam_internal.h"

/* Query rows per attention task: enough work per task to amortise the
 * hand-off, enough tasks to balance the workers. */
#define MHA_QUERY_BLOCK 256
#define TRANSPOSE_TILE 32

float *ms_nn_floats(ms_sam *m, int64_t n)
{
    return ms_arena_alloc(m->arena, (size_t)n * sizeof(float));
}

ms_status ms_nn_linear(ms_sam *m, float *y, int64_t ldy, const float *x, int64_t ldx,
                       int64_t rows, const sam_linear *l, ms_epilogue epi, int accumulate)
{
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    size_t bytes = ms_linear_scratch_bytes(l->w, rows);
    void *scratch = bytes ? ms_arena_alloc(m->arena, bytes) : NULL;
    if (bytes && !scratch) return MS_ERR_NOMEM;
    ms_linear(y, ldy, x, ldx, rows, l->w, l->b, epi, accumulate, scratch);
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}

typedef struct ln_job {
    float *y;
    const float *x;
    int64_t ldy, ldx, dim;
    const sam_norm *n;
    float eps;
    const ms_ln_out *o;
} ln_job;

static void ln_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    const ln_job *j = ctx;
    /* The second output and its addend start at the slice's first row too. */
    ms_ln_out slice;
    const ms_ln_out *o = j->o;
    if (o && o->y2) {
        slice = *o;
        slice.y2 += begin * o->ld_y2;
        slice.add += begin * o->ld_add;
        o = &slice;
    }
    ms_layernorm_ex(j->y + begin * j->ldy, j->ldy, j->x + begin * j->ldx, j->ldx, end - begin,
                    j->dim, j->n->g, j->n->b, j->eps, o);
}

void ms_nn_layernorm_ex(ms_sam *m, float *y, int64_t ldy, const float *x, int64_t ldx,
                        int64_t rows, int64_t dim, const sam_norm *n, float eps,
                        const ms_ln_out *o)
{
    ln_job j = {y, x, ldy, ldx, dim, n, eps, o};
    ms_pool_for(m->pool, rows, 16, ln_rows, &j);
}

void ms_nn_layernorm(ms_sam *m, float *y, int64_t ldy, const float *x, int64_t ldx,
                     int64_t rows, int64_t dim, const sam_norm *n, float eps)
{
    ms_nn_layernorm_ex(m, y, ldy, x, ldx, rows, dim, n, eps, NULL);
}

typedef struct gelu_job {
    float *x;
} gelu_job;

static void gelu_range(void *ctx, int64_t begin, int64_t end, int worker)
{
    gelu_job *j = ctx;
    ms_gelu(j->x + begin, end - begin);
}

void ms_nn_gelu(ms_sam *m, float *x, int64_t n)
{
    gelu_job j = {x};
    ms_pool_for(m->pool, n, 4096, gelu_range, &j);
}

typedef struct add_job {
    float *y;
    const float *a, *b;
} add_job;

static void add_range(void *ctx, int64_t begin, int64_t end, int worker)
{
    const add_job *j = ctx;
    ms_add(j->y + begin, j->a + begin, j->b + begin, end - begin);
}

void ms_nn_add(ms_sam *m, float *y, const float *a, const float *b, int64_t n)
{
    add_job j = {y, a, b};
    ms_pool_for(m->pool, n, 16384, add_range, &j);
}

typedef struct softmax_job {
    float *x;
    int64_t rows, n;
} softmax_job;

static void softmax_blocks(void *ctx, int64_t begin, int64_t end, int worker)
{
    softmax_job *j = ctx;
    for (int64_t b = begin; b < end; b++)
        ms_softmax_cols(j->x + b * j->rows * j->n, j->rows, j->n, j->n);
}

void ms_nn_softmax_cols(ms_sam *m, float *x, int64_t blocks, int64_t rows, int64_t n)
{
    softmax_job j = {x, rows, n};
    ms_pool_for(m->pool, blocks, 4096 / (rows * n) + 1, softmax_blocks, &j);
}

typedef struct transpose_job {
    float *dst;
    const float *src;
    int64_t rows, cols;
} transpose_job;

/* Tiles of TRANSPOSE_TILE source rows: every store of a tile row lands in
 * lines the previous rows already brought in. */
static void transpose_tiles(void *ctx, int64_t begin, int64_t end, int worker)
{
    const transpose_job *j = ctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t r0 = t * TRANSPOSE_TILE;
        int64_t r1 = r0 + TRANSPOSE_TILE < j->rows ? r0 + TRANSPOSE_TILE : j->rows;
        for (int64_t c0 = 0; c0 < j->cols; c0 += TRANSPOSE_TILE) {
            int64_t c1 = c0 + TRANSPOSE_TILE < j->cols ? c0 + TRANSPOSE_TILE : j->cols;
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r0; r < r1; r++) j->dst[c * j->rows + r] = j->src[r * j->cols + c];
        }
    }
}

void ms_nn_transpose(ms_sam *m, float *dst, const float *src, int64_t rows, int64_t cols)
{
    transpose_job j = {dst, src, rows, cols};
    ms_pool_for(m->pool, (rows + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE, 1, transpose_tiles, &j);
}

typedef struct mha_job {
    ms_attn a; /* head 0, all queries */
    int64_t heads, qblocks;
    float *scratch;
    size_t scratch_floats;
} mha_job;

static void mha_tasks(void *ctx, int64_t begin, int64_t end, int worker)
{
    const mha_job *j = ctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t h = t / j->qblocks, q0 = (t % j->qblocks) * MHA_QUERY_BLOCK;
        int64_t q1 = q0 + MHA_QUERY_BLOCK < j->a.nq ? q0 + MHA_QUERY_BLOCK : j->a.nq;
        ms_attn a = j->a;
        a.q += h * a.d;
        a.k += h * a.d;
        a.v += h * a.d;
        a.out += h * a.d;
        ms_attention(&a, q0, q1, j->scratch + (size_t)worker * j->scratch_floats);
    }
}

ms_status ms_nn_mha(ms_sam *m, const float *q, const float *k, const float *v, float *out,
                    int64_t nq, int64_t nk, int64_t heads, int64_t d, float scale)
{
    int64_t ld = heads * d;
    mha_job j = {.a = {q, k, v, ld, ld, ld, out, ld, nq, nk, d, scale, NULL, NULL, 0, 0},
                 .heads = heads,
                 .qblocks = (nq + MHA_QUERY_BLOCK - 1) / MHA_QUERY_BLOCK};
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    j.scratch_floats = ms_attention_scratch_floats(&j.a);
    j.scratch = ms_nn_floats(m, (int64_t)j.scratch_floats * m->n_threads);
    if (!j.scratch) return MS_ERR_NOMEM;
    ms_pool_for_dynamic(m->pool, heads * j.qblocks, mha_tasks, &j);
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}
