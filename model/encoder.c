/* The image encoder: a ViT with windowed and global attention blocks, then
 * the convolutional neck.
 * ref: segment_anything/modeling/image_encoder.py (ImageEncoderViT) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/sam_internal.h"

/* ---- weights -------------------------------------------------------------- */

static int is_global(const ms_sam_hparams *h, int64_t block)
{
    if (h->window == 0) return 1;
    for (int64_t i = 0; i < h->n_global; i++)
        if (h->global_blocks[i] == block) return 1;
    return 0;
}

static ms_status bind_block(ms_sam *m, int64_t i)
{
    const ms_sam_hparams *h = &m->hp;
    sam_enc_block *b = &m->blocks[i];
    int64_t e = h->embed_dim, hd = e / h->heads;
    b->window = is_global(h, i) ? 0 : h->window;
    /* Tables of another length would need get_rel_pos's interpolation, which
     * no SAM checkpoint uses: the shape check refuses them. */
    int64_t side = b->window ? b->window : h->grid;
    char p[96], name[160];
    snprintf(p, sizeof p, "image_encoder.blocks.%lld", (long long)i);
#define NAME(s) (snprintf(name, sizeof name, "%s.%s", p, s), name)
    MS_TRY(ms_sam_bind_norm(m, &b->norm1, NAME("norm1"), e));
    MS_TRY(ms_sam_bind_linear(m, &b->qkv, NAME("attn.qkv"), 3 * e, e));
    MS_TRY(ms_sam_bind_linear(m, &b->proj, NAME("attn.proj"), e, e));
    MS_TRY(ms_sam_bind_f32(m, &b->rel_h, NAME("attn.rel_pos_h"), SAM_SHAPE(2 * side - 1, hd)));
    MS_TRY(ms_sam_bind_f32(m, &b->rel_w, NAME("attn.rel_pos_w"), SAM_SHAPE(2 * side - 1, hd)));
    MS_TRY(ms_sam_bind_norm(m, &b->norm2, NAME("norm2"), e));
    MS_TRY(ms_sam_bind_linear(m, &b->lin1, NAME("mlp.lin1"), h->mlp_dim, e));
    MS_TRY(ms_sam_bind_linear(m, &b->lin2, NAME("mlp.lin2"), e, h->mlp_dim));
#undef NAME
    return MS_OK;
}

ms_status ms_sam_bind_encoder(ms_sam *m)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t e = h->embed_dim, g = h->grid, c = h->out_chans;
    MS_TRY(ms_sam_bind_weight(m, &m->patch_w, "image_encoder.patch_embed.proj.weight",
                              SAM_SHAPE(e, h->in_chans, h->patch, h->patch)));
    MS_TRY(ms_sam_bind_f32(m, &m->patch_b, "image_encoder.patch_embed.proj.bias", SAM_SHAPE(e)));
    MS_TRY(ms_sam_bind_f32(m, &m->pos_embed, "image_encoder.pos_embed", SAM_SHAPE(1, g, g, e)));
    for (int64_t i = 0; i < h->depth; i++) MS_TRY(bind_block(m, i));
    MS_TRY(ms_sam_bind_weight(m, &m->neck_conv1, "image_encoder.neck.0.weight",
                              SAM_SHAPE(c, e, 1, 1)));
    MS_TRY(ms_sam_bind_norm(m, &m->neck_norm1, "image_encoder.neck.1", c));
    MS_TRY(ms_sam_bind_weight(m, &m->neck_conv2, "image_encoder.neck.2.weight",
                              SAM_SHAPE(c, c, 3, 3)));
    return ms_sam_bind_norm(m, &m->neck_norm2, "image_encoder.neck.3", c);
}

/* ---- attention geometry ----------------------------------------------------- */

/* Token of padded-grid position (r, c) in window order: windows row-major,
 * tokens row-major inside each window. ref: window_partition */
static int64_t window_index(const win_geom *w, int64_t r, int64_t c)
{
    int64_t win = (r / w->side) * w->per_row + c / w->side;
    return (win * w->side + r % w->side) * w->side + c % w->side;
}

/* Grid tokens of padded row r from column c0 on that lie inside the grid
 * and inside the window starting at c0. */
static int64_t real_run(const win_geom *w, int64_t grid, int64_t r, int64_t c0)
{
    if (r >= grid || c0 >= grid) return 0;
    return grid - c0 < w->side ? grid - c0 : w->side;
}

/* Between grid order (grid * grid, e) and window order (geo->tokens, e). */
typedef struct partition_job {
    const win_geom *geo;
    const sam_norm *norm;
    const float *src;
    float *dst;
    int64_t grid, e;
    float eps;
} partition_job;

/* norm1, then window_partition: LayerNorm writes each run of a grid row
 * straight into its window, and the padding is zero (F.pad after norm1). */
static void partition_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    const partition_job *j = ctx;
    const win_geom *w = j->geo;
    for (int64_t r = begin; r < end; r++)
        for (int64_t c0 = 0; c0 < w->padded; c0 += w->side) {
            float *dst = j->dst + window_index(w, r, c0) * j->e;
            int64_t n = real_run(w, j->grid, r, c0);
            if (n)
                ms_layernorm(dst, j->e, j->src + (r * j->grid + c0) * j->e, j->e, n, j->e,
                             j->norm->g, j->norm->b, j->eps);
            memset(dst + n * j->e, 0, (size_t)((w->side - n) * j->e) * sizeof(float));
        }
}

/* ref: window_unpartition (padding tokens dropped) */
static void unpartition_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    const partition_job *j = ctx;
    const win_geom *w = j->geo;
    for (int64_t r = begin; r < end; r++)
        for (int64_t c0 = 0; c0 < j->grid; c0 += w->side)
            memcpy(j->dst + (r * j->grid + c0) * j->e, j->src + window_index(w, r, c0) * j->e,
                   (size_t)(real_run(w, j->grid, r, c0) * j->e) * sizeof(float));
}

/* ---- attention ------------------------------------------------------------- */

typedef struct attn_job {
    const sam_enc_block *b;
    const win_geom *geo;
    const float *qkv;      /* (geo->tokens, 3e): [q | k | v], each [heads][head_dim] */
    float *out;            /* (geo->tokens, e) */
    const float *ph, *pw;  /* per head of the phase: (geo->tokens, 2 side - 1) q.R products */
    int64_t grid, e, hd;
    int64_t h0, nh;        /* the heads of this phase */
    int64_t chunks, chunk_rows; /* query rows of a window are cut in chunks */
    float scale;
    float *scratch;        /* per worker: the two bias tables, the kernel's scratch */
    int64_t slot_floats;
} attn_job;

static int64_t slot_floats(int64_t nq, int64_t side, size_t attn_floats)
{
    int64_t n = 2 * nq * side + (int64_t)attn_floats;
    return (n + 15) & ~(int64_t)15; /* keep every slot 64-byte aligned */
}

/* q . R for every token of a phase's heads and all 2s - 1 relative offsets,
 * with the unscaled q: one GEMM per head and table, on the calling thread
 * where the kernels thread them. ref: add_decomposed_rel_pos (the einsums) */
static void rel_pos_products(const attn_job *j, float *ph, float *pw)
{
    int64_t len = 2 * j->geo->side - 1, tokens = j->geo->tokens;
    for (int64_t i = 0; i < j->nh; i++) {
        const float *q = j->qkv + (j->h0 + i) * j->hd;
        ms_sgemm(0, 1, tokens, len, j->hd, 1.0f, q, 3 * j->e, j->b->rel_h, j->hd, 0.0f,
                 ph + i * tokens * len, len);
        ms_sgemm(0, 1, tokens, len, j->hd, 1.0f, q, 3 * j->e, j->b->rel_w, j->hd, 0.0f,
                 pw + i * tokens * len, len);
    }
}

/* Queries [q0, q0 + nq) of head h0 + i in one window, against all its keys;
 * rel_h[q, kh] = q . Rh[qh - kh + s - 1] picked from the products.
 * ref: image_encoder.py Attention.forward with add_decomposed_rel_pos */
static void window_head(const attn_job *j, int64_t win, int64_t i, int64_t q0, int64_t nq,
                        float *slot)
{
    int64_t s = j->geo->side, n = s * s, len = 2 * s - 1, ld = 3 * j->e, h = j->h0 + i;
    const float *base = j->qkv + win * n * ld;
    int64_t row0 = i * j->geo->tokens + win * n + q0;
    const float *ph = j->ph + row0 * len, *pw = j->pw + row0 * len;
    float *bh = slot, *bw = bh + nq * s, *scratch = bw + nq * s;
    for (int64_t r = 0; r < nq; r++) {
        int64_t qh = (q0 + r) / s, qw = (q0 + r) % s;
        for (int64_t k = 0; k < s; k++) {
            bh[r * s + k] = ph[r * len + qh - k + s - 1];
            bw[r * s + k] = pw[r * len + qw - k + s - 1];
        }
    }
    ms_attn a = {
        .q = base + q0 * ld + h * j->hd, .k = base + j->e + h * j->hd,
        .v = base + 2 * j->e + h * j->hd, .ldq = ld, .ldk = ld, .ldv = ld,
        .out = j->out + (win * n + q0) * j->e + h * j->hd, .ldo = j->e,
        .nq = nq, .nk = n, .d = j->hd, .scale = j->scale,
        .bias_h = bh, .bias_w = bw, .kh = s, .kw = s,
    };
    ms_attention(&a, 0, nq, scratch);
}

/* Task t = (window, head of the phase, chunk of query rows). Query rows of a
 * window that lie in the padding are skipped: window_unpartition drops them. */
static void attn_tasks(void *ctx, int64_t begin, int64_t end, int worker)
{
    const attn_job *j = ctx;
    int64_t s = j->geo->side;
    for (int64_t t = begin; t < end; t++) {
        int64_t chunk = t % j->chunks, i = (t / j->chunks) % j->nh;
        int64_t win = t / (j->chunks * j->nh);
        int64_t rows = j->grid - (win / j->geo->per_row) * s;
        if (rows > s) rows = s;
        int64_t r0 = chunk * j->chunk_rows;
        int64_t r1 = r0 + j->chunk_rows < rows ? r0 + j->chunk_rows : rows;
        if (r0 < r1)
            window_head(j, win, i, r0 * s, (r1 - r0) * s, j->scratch + worker * j->slot_floats);
    }
}

/* Heads run in phases whose q.R products take no more memory than the
 * block's input: all heads at once for windows, a few for global blocks. */
static ms_status attention(ms_sam *m, const sam_enc_block *b, const win_geom *geo,
                           const float *qkv, float *out)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t s = geo->side, len = 2 * s - 1, hd = h->embed_dim / h->heads;
    int64_t per_phase = h->embed_dim / (2 * len);
    per_phase = per_phase < 1 ? 1 : per_phase > h->heads ? h->heads : per_phase;
    /* Windows are small: one task each. A global block is one window, cut
     * in bands of 8 grid rows: enough tasks (heads x bands) for every
     * worker, and each kernel call amortises its copy of K and V. */
    int64_t chunk_rows = b->window ? s : 8;
    attn_job j = {
        .b = b, .geo = geo, .qkv = qkv, .out = out,
        .grid = h->grid, .e = h->embed_dim, .hd = hd,
        .chunks = (s + chunk_rows - 1) / chunk_rows, .chunk_rows = chunk_rows,
        .scale = (float)(1.0 / sqrt((double)hd)),
    };
    /* The kernel's scratch depends on the shape and on whether a bias comes
     * along; the tables stand in for the per-task bias rows. */
    int64_t nq = chunk_rows * s;
    ms_attn shape = {.nq = nq, .nk = s * s, .d = hd, .bias_h = b->rel_h, .bias_w = b->rel_w,
                     .kh = s, .kw = s};
    j.slot_floats = slot_floats(nq, s, ms_attention_scratch_floats(&shape));
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    j.scratch = ms_nn_floats(m, j.slot_floats * m->n_threads);
    float *ph = ms_nn_floats(m, per_phase * geo->tokens * len);
    float *pw = ms_nn_floats(m, per_phase * geo->tokens * len);
    if (!j.scratch || !ph || !pw) return MS_ERR_NOMEM;
    j.ph = ph;
    j.pw = pw;
    int64_t windows = geo->per_row * geo->per_row;
    for (j.h0 = 0; j.h0 < h->heads; j.h0 += per_phase) {
        j.nh = h->heads - j.h0 < per_phase ? h->heads - j.h0 : per_phase;
        rel_pos_products(&j, ph, pw);
        ms_pool_for_dynamic(m->pool, windows * j.nh * j.chunks, attn_tasks, &j);
    }
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}

/* ---- blocks ------------------------------------------------------------------ */

/* Three buffers carry a block; each stage writes where the data it
 * overwrites is no longer needed. */
typedef struct enc_ws {
    float *x;   /* (grid * grid, e): the residual stream */
    float *xn;  /* (tokens, e): norm1's output (window order when windowed), then
                   the attention output (same order), then norm2's output */
    float *big; /* (tokens, 3e) qkv, then the attention output in grid order,
                   then the MLP hidden (grid * grid, mlp_dim) */
} enc_ws;

/* ref: image_encoder.py Block.forward */
static ms_status block_forward(ms_sam *m, const sam_enc_block *b, enc_ws *ws)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t e = h->embed_dim, t = h->grid * h->grid;
    float eps = (float)h->enc_ln_eps;
    win_geom geo = ms_sam_block_geometry(h, b);
    /* x = x + proj(attn(norm1(x))) */
    if (b->window) {
        partition_job pj = {&geo, &b->norm1, ws->x, ws->xn, h->grid, e, eps};
        ms_pool_for(m->pool, geo.padded, 1, partition_rows, &pj);
    } else {
        ms_nn_layernorm(m, ws->xn, e, ws->x, e, t, e, &b->norm1, eps);
    }
    MS_TRY(ms_nn_linear(m, ws->big, 3 * e, ws->xn, e, geo.tokens, &b->qkv, MS_EPI_NONE, 0));
    MS_TRY(attention(m, b, &geo, ws->big, ws->xn));
    const float *attn_out = ws->xn;
    if (b->window) {
        partition_job uj = {&geo, NULL, ws->xn, ws->big, h->grid, e, 0};
        ms_pool_for(m->pool, h->grid, 1, unpartition_rows, &uj);
        attn_out = ws->big;
    }
    MS_TRY(ms_nn_linear(m, ws->x, e, attn_out, e, t, &b->proj, MS_EPI_NONE, 1));
    /* x = x + lin2(gelu(lin1(norm2(x)))) */
    ms_nn_layernorm(m, ws->xn, e, ws->x, e, t, e, &b->norm2, eps);
    MS_TRY(ms_nn_linear(m, ws->big, h->mlp_dim, ws->xn, e, t, &b->lin1, MS_EPI_GELU, 0));
    return ms_nn_linear(m, ws->x, e, ws->big, h->mlp_dim, t, &b->lin2, MS_EPI_NONE, 1);
}

static ms_status alloc_ws(ms_sam *m, enc_ws *ws)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t e = h->embed_dim, t = h->grid * h->grid, tokens = t;
    for (int64_t i = 0; i < h->depth; i++) {
        win_geom g = ms_sam_block_geometry(h, &m->blocks[i]);
        if (g.tokens > tokens) tokens = g.tokens;
    }
    int64_t big = 3 * tokens * e > h->mlp_dim * t ? 3 * tokens * e : h->mlp_dim * t;
    ws->xn = ms_nn_floats(m, tokens * e);
    ws->big = ms_nn_floats(m, big);
    return ws->xn && ws->big ? MS_OK : MS_ERR_NOMEM;
}

/* ---- patch embedding and neck -------------------------------------------------- */

/* ref: image_encoder.py PatchEmbed.forward, then + pos_embed */
static ms_status patch_embed(ms_sam *m, const float *image, float *x)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t e = h->embed_dim, t = h->grid * h->grid, s = h->img_size;
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    float *y = ms_nn_floats(m, e * t);
    float *scratch = ms_nn_floats(
        m, (int64_t)ms_conv2d_scratch_floats(h->in_chans, s, s, m->patch_w, (int)h->patch, 0));
    if (!y || !scratch) return MS_ERR_NOMEM;
    ms_conv2d(y, image, h->in_chans, s, s, m->patch_w, m->patch_b, (int)h->patch, 0, scratch);
    ms_nn_transpose(m, x, y, e, t);
    ms_add(x, x, m->pos_embed, t * e);
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}

/* The neck's 3x3 conv (padding 1) on token-major pixels x (g * g, c): x
 * is copied inside a zero border, pad (g + 2 rows of g + 2 pixels), and
 * output pixel (i, j) = sum over taps (ky, kx) of pad(i + ky, j + kx)
 * W_tap^T. Taken as rows of width g + 2, each tap is one GEMM over
 * consecutive pixels of pad, with no im2col copy of 9 c x g x g values: y
 * has g * (g + 2) rows, (i, j) at i * (g + 2) + j, and the 2 rows past
 * each image row's end are spill-over for the caller to drop.
 * ref: image_encoder.py ImageEncoderViT.neck[2], Conv2d(c, c, 3, padding=1) */
static ms_status neck_conv3x3(ms_sam *m, const float *x, float *y)
{
    int64_t c = m->hp.out_chans, g = m->hp.grid, pw = g + 2;
    /* the last taps' rows run 2 pixels past the bottom border: zeros too */
    int64_t pad_px = pw * pw + 2;
    float *pad = ms_nn_floats(m, pad_px * c), *taps = ms_nn_floats(m, 9 * c * c);
    float *row = ms_nn_floats(m, 9 * c);
    if (!pad || !taps || !row) return MS_ERR_NOMEM;
    memset(pad, 0, (size_t)(pad_px * c) * sizeof *pad);
    for (int64_t i = 0; i < g; i++)
        memcpy(pad + ((i + 1) * pw + 1) * c, x + i * g * c, (size_t)(g * c) * sizeof *pad);
    /* weight (co, ci, ky, kx) -> taps[ky * 3 + kx] (co, ci) */
    for (int64_t co = 0; co < c; co++) {
        ms_weight_row_f32(row, m->neck_conv2, co);
        for (int64_t ci = 0; ci < c; ci++)
            for (int64_t k = 0; k < 9; k++) taps[(k * c + co) * c + ci] = row[ci * 9 + k];
    }
    for (int64_t k = 0; k < 9; k++)
        ms_sgemm(0, 1, g * pw, c, c, 1.0f, pad + ((k / 3) * pw + k % 3) * c, c, taps + k * c * c,
                 c, k ? 1.0f : 0.0f, y, c);
    return MS_OK;
}

/* ref: image_encoder.py ImageEncoderViT.neck: conv 1x1, LayerNorm2d,
 * conv 3x3, LayerNorm2d. Run on the token-major blocks' output, where the
 * 1x1 conv is a linear layer and LayerNorm2d a row LayerNorm; only the
 * embedding is turned channel-first, at the end. */
static ms_status neck(ms_sam *m, const float *x, float *emb)
{
    const ms_sam_hparams *h = &m->hp;
    int64_t e = h->embed_dim, g = h->grid, t = g * g, c = h->out_chans, pw = g + 2;
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    float *a = ms_nn_floats(m, t * c), *y = ms_nn_floats(m, g * pw * c);
    if (!a || !y) return MS_ERR_NOMEM;
    sam_linear conv1 = {m->neck_conv1, NULL};
    MS_TRY(ms_nn_linear(m, a, c, x, e, t, &conv1, MS_EPI_NONE, 0));
    ms_nn_layernorm(m, a, c, a, c, t, c, &m->neck_norm1, MS_SAM_LN2D_EPS);
    MS_TRY(neck_conv3x3(m, a, y));
    /* the spill-over rows are normalised too (finite, then dropped) */
    ms_nn_layernorm(m, y, c, y, c, g * pw, c, &m->neck_norm2, MS_SAM_LN2D_EPS);
    for (int64_t i = 0; i < g; i++)
        memcpy(a + i * g * c, y + i * pw * c, (size_t)(g * c) * sizeof *a);
    ms_nn_transpose(m, emb, a, t, c);
    ms_arena_reset(m->arena, mark);
    return MS_OK;
}

/* ---- forward --------------------------------------------------------------------- */

static void hook(ms_sam *m, int block, const float *x)
{
    if (m->hook) m->hook(m->hook_ctx, block, x);
}

/* ref: image_encoder.py ImageEncoderViT.forward */
static ms_status encode(ms_sam *m, const float *image, float *emb)
{
    const ms_sam_hparams *h = &m->hp;
    enc_ws ws;
    ws.x = ms_nn_floats(m, h->grid * h->grid * h->embed_dim);
    if (!ws.x) return MS_ERR_NOMEM;
    MS_TRY(patch_embed(m, image, ws.x));
    hook(m, -1, ws.x);
    /* The block buffers go back to the arena before the neck needs its own. */
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    MS_TRY(alloc_ws(m, &ws));
    for (int64_t i = 0; i < h->depth; i++) {
        MS_TRY(block_forward(m, &m->blocks[i], &ws));
        hook(m, (int)i, ws.x);
    }
    ms_arena_reset(m->arena, mark);
    return neck(m, ws.x, emb);
}

ms_status ms_sam_encode(ms_sam *m, const float *image, float *emb)
{
    ms_arena_mark mark = ms_arena_get_mark(m->arena);
    ms_status st = encode(m, image, emb);
    ms_arena_reset(m->arena, mark);
    return st;
}
