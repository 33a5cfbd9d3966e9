/* SAM model: hyperparameters from the weight file's metadata, weight binding
 * with shape checks, and the model's lifetime (pool, arena).
 * ref: segment_anything/build_sam.py (_build_sam) and modeling/sam.py */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/sam_internal.h"

/* Activations are bumped out of chunks of this size (larger requests get a
 * chunk of their own). One chunk holds a whole ViT-H encoder pass, so no
 * chunk tail is ever skipped and the peak is the true high-water mark; pages
 * never touched cost no memory. */
#define ARENA_CHUNK_BYTES ((size_t)256 << 20)

/* ---- hyperparameters ---------------------------------------------------- */

static ms_status meta_i64(const ms_weights *w, const char *key, int64_t lo, int64_t hi,
                          int64_t *out)
{
    MS_TRY(ms_weights_meta_i64(w, key, out));
    if (*out < lo || *out > hi)
        return ms_fail(MS_ERR_FORMAT, "%s: metadata %s = %lld: outside [%lld, %lld]",
                       ms_weights_path(w), key, (long long)*out, (long long)lo,
                       (long long)hi);
    return MS_OK;
}

static ms_status meta_eps(const ms_weights *w, const char *key, double *out)
{
    MS_TRY(ms_weights_meta_f64(w, key, out));
    if (!(*out > 0 && *out < 1))
        return ms_fail(MS_ERR_FORMAT, "%s: metadata %s = %g: not a LayerNorm epsilon",
                       ms_weights_path(w), key, *out);
    return MS_OK;
}

static ms_status require(const ms_weights *w, int ok, const char *what)
{
    if (ok) return MS_OK;
    return ms_fail(MS_ERR_FORMAT, "%s: metadata: %s", ms_weights_path(w), what);
}

static ms_status read_encoder_hparams(const ms_weights *w, ms_sam_hparams *h)
{
    MS_TRY(meta_i64(w, "enc.img_size", 1, 16384, &h->img_size));
    MS_TRY(meta_i64(w, "enc.patch", 1, 1024, &h->patch));
    MS_TRY(meta_i64(w, "enc.in_chans", 1, 16, &h->in_chans));
    MS_TRY(meta_i64(w, "enc.embed_dim", 1, 16384, &h->embed_dim));
    MS_TRY(meta_i64(w, "enc.depth", 1, MS_SAM_MAX_BLOCKS, &h->depth));
    MS_TRY(meta_i64(w, "enc.heads", 1, 1024, &h->heads));
    MS_TRY(meta_i64(w, "enc.mlp_dim", 1, 65536, &h->mlp_dim));
    MS_TRY(meta_i64(w, "enc.window", 0, 1024, &h->window));
    MS_TRY(meta_i64(w, "enc.out_chans", 1, 16384, &h->out_chans));
    MS_TRY(meta_eps(w, "enc.ln_eps", &h->enc_ln_eps));
    const int64_t *glob;
    MS_TRY(ms_weights_meta_i64_array(w, "enc.global_blocks", &glob, &h->n_global));
    MS_TRY(require(w, h->n_global <= h->depth, "enc.global_blocks: more entries than blocks"));
    for (int64_t i = 0; i < h->n_global; i++) {
        MS_TRY(require(w, glob[i] >= 0 && glob[i] < h->depth,
                       "enc.global_blocks: index outside [0, enc.depth)"));
        h->global_blocks[i] = glob[i];
    }
    MS_TRY(require(w, h->img_size % h->patch == 0, "enc.img_size is not a multiple of enc.patch"));
    MS_TRY(require(w, h->embed_dim % h->heads == 0,
                   "enc.embed_dim is not a multiple of enc.heads"));
    h->grid = h->img_size / h->patch;
    return MS_OK;
}

static ms_status read_decoder_hparams(const ms_weights *w, ms_sam_hparams *h)
{
    MS_TRY(meta_i64(w, "prompt.embed_dim", 2, 16384, &h->prompt_dim));
    MS_TRY(meta_i64(w, "prompt.mask_in_chans", 4, 4096, &h->mask_in_chans));
    MS_TRY(meta_i64(w, "dec.depth", 1, MS_SAM_MAX_DEC_LAYERS, &h->dec_depth));
    MS_TRY(meta_i64(w, "dec.heads", 1, 1024, &h->dec_heads));
    MS_TRY(meta_i64(w, "dec.mlp_dim", 1, 65536, &h->dec_mlp));
    MS_TRY(meta_i64(w, "dec.num_multimask", 1, MS_SAM_MAX_MASK_TOKENS - 1, &h->n_multimask));
    MS_TRY(meta_i64(w, "dec.iou_hidden", 1, 65536, &h->iou_hidden));
    MS_TRY(meta_i64(w, "dec.iou_depth", 1, MS_SAM_MAX_IOU_LAYERS, &h->iou_depth));
    MS_TRY(meta_i64(w, "dec.attn_downsample", 1, 1024, &h->attn_downsample));
    MS_TRY(meta_eps(w, "dec.ln_eps", &h->dec_ln_eps));
    int64_t d = h->prompt_dim;
    /* The decoder consumes the neck's output as its token width. */
    MS_TRY(require(w, d == h->out_chans, "prompt.embed_dim differs from enc.out_chans"));
    MS_TRY(require(w, d % 8 == 0, "prompt.embed_dim is not a multiple of 8"));
    MS_TRY(require(w, h->mask_in_chans % 4 == 0, "prompt.mask_in_chans is not a multiple of 4"));
    MS_TRY(require(w, d % h->dec_heads == 0, "prompt.embed_dim is not a multiple of dec.heads"));
    MS_TRY(require(w, d % h->attn_downsample == 0 && (d / h->attn_downsample) % h->dec_heads == 0,
                   "prompt.embed_dim / dec.attn_downsample is not a multiple of dec.heads"));
    return MS_OK;
}

/* ---- weight binding ------------------------------------------------------ */

static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (len < n) snprintf(buf + len, n - len, ndim == 1 ? ",)" : ")");
    return buf;
}

static ms_status lookup(ms_sam *m, const ms_tensor **out, const char *name, int ndim,
                        const int64_t *shape)
{
    const ms_tensor *t = ms_weights_get(m->w, name);
    if (!t) return ms_fail(MS_ERR_FORMAT, "%s: tensor %s: missing", ms_weights_path(m->w), name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->ne[i] == shape[i];
    if (!same) {
        char want[96], got[96];
        return ms_fail(MS_ERR_FORMAT, "%s: tensor %s: shape %s, expected %s",
                       ms_weights_path(m->w), name, ms_tensor_shape_str(t, got, sizeof got),
                       shape_str(want, sizeof want, ndim, shape));
    }
    if (t->dtype != MS_Q8 && !ms_tensor_is_contiguous(t))
        return ms_fail(MS_ERR_FORMAT, "%s: tensor %s: not contiguous", ms_weights_path(m->w), name);
    *out = t;
    return MS_OK;
}

ms_status ms_sam_bind_weight(ms_sam *m, const ms_tensor **out, const char *name, int ndim,
                             const int64_t *shape)
{
    MS_TRY(lookup(m, out, name, ndim, shape));
    ms_dtype t = (*out)->dtype;
    if (t != MS_F32 && t != MS_F16 && t != MS_Q8)
        return ms_fail(MS_ERR_UNSUPPORTED,
                       "%s: tensor %s: dtype %s (weights must be f32, f16 or q8)",
                       ms_weights_path(m->w), name, ms_dtype_name(t));
    return MS_OK;
}

static float *own_floats(ms_sam *m, int64_t n)
{
    float **list = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *list);
    if (!list) return NULL;
    m->owned = list;
    float *buf = malloc((size_t)n * sizeof *buf);
    if (buf) m->owned[m->n_owned++] = buf;
    return buf;
}

ms_status ms_sam_bind_f32(ms_sam *m, const float **out, const char *name, int ndim,
                          const int64_t *shape)
{
    const ms_tensor *t;
    MS_TRY(lookup(m, &t, name, ndim, shape));
    if (t->dtype == MS_F32) {
        *out = t->data;
        return MS_OK;
    }
    if (t->dtype == MS_Q8 && t->ndim < 2)
        return ms_fail(MS_ERR_FORMAT, "%s: tensor %s: q8 needs at least 2 dims",
                       ms_weights_path(m->w), name);
    int64_t n = ms_tensor_nelem(t);
    float *buf = own_floats(m, n);
    if (!buf) return ms_fail(MS_ERR_NOMEM, "tensor %s: cannot allocate its f32 copy", name);
    if (t->dtype == MS_Q8) {
        int64_t cols = n / t->ne[0];
        for (int64_t r = 0; r < t->ne[0]; r++) ms_weight_row_f32(buf + r * cols, t, r);
    } else {
        ms_convert_to_f32(buf, t->data, t->dtype, n);
    }
    *out = buf;
    return MS_OK;
}

static const char *join(char *buf, size_t n, const char *prefix, const char *suffix)
{
    snprintf(buf, n, "%s.%s", prefix, suffix);
    return buf;
}

ms_status ms_sam_bind_linear(ms_sam *m, sam_linear *l, const char *prefix, int64_t out,
                             int64_t in)
{
    char name[192];
    MS_TRY(ms_sam_bind_weight(m, &l->w, join(name, sizeof name, prefix, "weight"),
                              SAM_SHAPE(out, in)));
    return ms_sam_bind_f32(m, &l->b, join(name, sizeof name, prefix, "bias"), SAM_SHAPE(out));
}

ms_status ms_sam_bind_norm(ms_sam *m, sam_norm *n, const char *prefix, int64_t dim)
{
    char name[192];
    MS_TRY(ms_sam_bind_f32(m, &n->g, join(name, sizeof name, prefix, "weight"), SAM_SHAPE(dim)));
    return ms_sam_bind_f32(m, &n->b, join(name, sizeof name, prefix, "bias"), SAM_SHAPE(dim));
}

/* ---- lifetime ------------------------------------------------------------ */

static ms_status init(ms_sam *m, const ms_weights *w, int n_threads)
{
    m->w = w;
    MS_TRY(read_encoder_hparams(w, &m->hp));
    MS_TRY(read_decoder_hparams(w, &m->hp));
    MS_TRY(ms_sam_bind_encoder(m));
    MS_TRY(ms_sam_bind_prompt_encoder(m));
    MS_TRY(ms_sam_bind_decoder(m));
    m->pool = ms_pool_create(n_threads);
    if (!m->pool) return MS_ERR_NOMEM;
    m->n_threads = ms_pool_size(m->pool);
    /* Large GEMMs thread inside OpenBLAS; everything else on m->pool. */
    ms_kernels_set_threads(m->n_threads);
    m->arena = ms_arena_create(ARENA_CHUNK_BYTES);
    if (!m->arena) return MS_ERR_NOMEM;
    return ms_sam_init_dense_pe(m);
}

ms_status ms_sam_create(const ms_weights *w, int n_threads, ms_sam **out)
{
    *out = NULL;
    ms_sam *m = calloc(1, sizeof *m);
    if (!m) return ms_fail(MS_ERR_NOMEM, "sam: cannot allocate the model");
    ms_status st = init(m, w, n_threads);
    if (st != MS_OK) {
        ms_sam_free(m);
        return st;
    }
    *out = m;
    return MS_OK;
}

void ms_sam_free(ms_sam *m)
{
    if (!m) return;
    ms_sam_device_free(m);
    ms_pool_free(m->pool);
    ms_arena_free(m->arena);
    for (int64_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->dense_pe);
    free(m);
}

const ms_sam_hparams *ms_sam_params(const ms_sam *m) { return &m->hp; }

void ms_sam_set_block_hook(ms_sam *m, ms_sam_block_hook hook, void *ctx)
{
    m->hook = hook;
    m->hook_ctx = ctx;
}

uint64_t ms_sam_peak_bytes(const ms_sam *m) { return ms_arena_peak(m->arena); }
