/* The few-query attention kernel's body, written once over a small vector
 * layer and compiled per ISA: attention_few_avx512.c and
 * attention_few_avx2.c define VEC, VW (its lanes), the V_* operations,
 * V_EXP2, V_HMAX, V_HSUM, transpose_rows(), QG (most queries per register
 * tile), CHAINS (most accumulators per register tile), QUERY_COUNTS (X(1)
 * ... X(QG)) and FEW_FN, then include this file. See attention_few_avx512.c
 * for the algorithm. */
enum { MAX_Q = MS_ATTN_FEW_Q, BK = MS_ATTN_FEW_BK };

typedef struct few {
    const ms_attn *a;
    int64_t q0, nq;  /* queries [q0, q0 + nq), nq <= MAX_Q */
    int64_t j0, kn;  /* the key block [j0, j0 + kn), kn <= BK */
    const float *qt; /* d x MAX_Q: the queries times scale * log2 e, transposed */
    float *kt;       /* d x VW: one key tile, transposed */
    float *s;        /* BK / VW tiles x nq x VW: the block's scores, then probabilities */
    float *ot;       /* nq x d: output accumulator */
    float m[MAX_Q], l[MAX_Q], alpha[MAX_Q]; /* running max and sum; ot's rescale */
} few;

#define LOG2E 1.44269504f
#define UNROLL_Q _Pragma("GCC unroll 24")

/* Independent accumulator banks per query in a register tile of qn
 * queries: an FMA waits 4 cycles for its accumulator and 2 issue per cycle,
 * so a tile wants 8 or more chains in flight. As many as CHAINS registers
 * allow, up to 8; a power of two, so it divides d and VW. */
static inline int banks(int qn)
{
    int nb = 8;
    while (nb > 1 && nb * qn > CHAINS) nb /= 2;
    return nb;
}

/* Scores of queries [i0, i0 + qn) against the key tile in f->kt, stored in
 * tile `tile` of f->s; bank b sums the features t = b mod nb. qn is a
 * constant at every call (see score_group), so the accumulators live in
 * registers. */
static inline __attribute__((always_inline)) void score_tile(const few *f, int64_t tile,
                                                             int64_t i0, int qn)
{
    const int nb = banks(qn);
    const float *q = f->qt + i0;
    VEC acc[CHAINS];
    UNROLL_Q
    for (int i = 0; i < nb * qn; i++) acc[i] = V_SETZERO();
    for (int64_t t = 0; t < f->a->d; t += nb) {
        UNROLL_Q
        for (int b = 0; b < nb; b++) {
            VEC kv = V_LOAD(f->kt + (t + b) * VW);
            UNROLL_Q
            for (int i = 0; i < qn; i++)
                acc[b * qn + i] = V_FMADD(V_SET1(q[(t + b) * MAX_Q + i]), kv, acc[b * qn + i]);
        }
    }
    float *s = f->s + (tile * f->nq + i0) * VW;
    UNROLL_Q
    for (int i = 0; i < qn; i++) {
        UNROLL_Q
        for (int b = 1; b < nb; b++) acc[i] = V_ADD(acc[i], acc[b * qn + i]);
        V_STORE(s + i * VW, acc[i]);
    }
}

#define SCORE_CASE(n)                                                                              \
    case n:                                                                                        \
        score_tile(f, tile, i0, n);                                                                \
        break;

static void score_group(const few *f, int64_t tile, int64_t i0, int64_t qn)
{
    switch (qn) {
        QUERY_COUNTS(SCORE_CASE)
    }
}

/* Queries per register tile: nq in groups of near-equal size, none above
 * QG. */
static int64_t group_size(int64_t nq)
{
    int64_t groups = (nq + QG - 1) / QG;
    return (nq + groups - 1) / groups;
}

/* Tiles of VW keys in the block, the last one possibly partial. */
static int64_t block_tiles(const few *f)
{
    return (f->kn + VW - 1) / VW;
}

/* Per tile of the block, K^T into f->kt (zero columns past the last key),
 * then the scores of every query group against it. */
static void scores(const few *f)
{
    const ms_attn *a = f->a;
    int64_t g = group_size(f->nq);
    for (int64_t tile = 0; tile < block_tiles(f); tile++) {
        int64_t kr = f->kn - tile * VW < VW ? f->kn - tile * VW : VW;
        const float *k = a->k + (f->j0 + tile * VW) * a->ldk;
        for (int64_t c = 0; c < a->d; c += VW) /* a constant VW drops the row checks */
            if (kr == VW)
                transpose_rows(f->kt + c * VW, k + c, a->ldk, VW);
            else
                transpose_rows(f->kt + c * VW, k + c, a->ldk, kr);
        for (int64_t i0 = 0; i0 < f->nq; i0 += g)
            score_group(f, tile, i0, f->nq - i0 < g ? f->nq - i0 : g);
    }
}

/* Online softmax step per query: the block's max joins the running max m,
 * alpha = 2^(m_old - m) rescales what ot holds so far (0 at the first
 * block, m_old = -inf), p = 2^(s - m) in place, l = alpha l + sum p. The
 * lanes past the last key get -1e30: below any real logit, so they do not
 * count in the max, and finite (the exp2 polynomial wants finite input), so
 * their p is 0. */
static void softmax_block(few *f)
{
    int64_t tiles = block_tiles(f), stride = f->nq * VW, tail = f->kn - (tiles - 1) * VW;
    for (int64_t i = 0; i < f->nq; i++) {
        float *row = f->s + i * VW;
        for (int64_t lane = tail; lane < VW; lane++) row[(tiles - 1) * stride + lane] = -1e30f;
        VEC mx = V_SET1(-INFINITY);
        for (int64_t tile = 0; tile < tiles; tile++) mx = V_MAX(mx, V_LOAD(row + tile * stride));
        float m = fmaxf(f->m[i], V_HMAX(mx));
        VEC mv = V_SET1(m), sum = V_SETZERO();
        for (int64_t tile = 0; tile < tiles; tile++) {
            VEC p = V_EXP2(V_SUB(V_LOAD(row + tile * stride), mv));
            V_STORE(row + tile * stride, p);
            sum = V_ADD(sum, p);
        }
        f->alpha[i] = exp2f(f->m[i] - m);
        f->l[i] = f->alpha[i] * f->l[i] + V_HSUM(sum);
        f->m[i] = m;
    }
}

/* ot[i][c0 .. c0 + VW) = alpha_i ot[i][c0 ..] + sum_j p_ij v_j[c0 ..] over
 * the block, for queries [i0, i0 + qn), V read in place; bank b takes the
 * keys j = b mod nb of full tiles. The probabilities of key j sit VW floats
 * apart, one per query, so a single pointer walks them all. qn constant as
 * above. */
static inline __attribute__((always_inline)) void pv_tile(const few *f, int64_t i0, int qn,
                                                          int64_t c0)
{
    const ms_attn *a = f->a;
    const int nb = banks(qn);
    float *ot = f->ot + i0 * a->d + c0;
    VEC acc[CHAINS];
    UNROLL_Q
    for (int i = 0; i < nb * qn; i++)
        acc[i] = i < qn ? V_MUL(V_LOAD(ot + i * a->d), V_SET1(f->alpha[i0 + i])) : V_SETZERO();
    const float *v = a->v + f->j0 * a->ldv + c0;
    for (int64_t tile = 0; tile < block_tiles(f); tile++) {
        const float *p = f->s + (tile * f->nq + i0) * VW;
        int64_t kn = f->kn - tile * VW < VW ? f->kn - tile * VW : VW, l = 0;
        for (; kn == VW && l < VW; l += nb, v += nb * a->ldv) {
            UNROLL_Q
            for (int b = 0; b < nb; b++) {
                VEC vv = V_LOADU(v + b * a->ldv);
                UNROLL_Q
                for (int i = 0; i < qn; i++)
                    acc[b * qn + i] = V_FMADD(V_SET1(p[i * VW + l + b]), vv, acc[b * qn + i]);
            }
        }
        for (; l < kn; l++, v += a->ldv) {
            VEC vv = V_LOADU(v);
            UNROLL_Q
            for (int i = 0; i < qn; i++) acc[i] = V_FMADD(V_SET1(p[i * VW + l]), vv, acc[i]);
        }
    }
    UNROLL_Q
    for (int i = 0; i < qn; i++) {
        UNROLL_Q
        for (int b = 1; b < nb; b++) acc[i] = V_ADD(acc[i], acc[b * qn + i]);
        V_STORE(ot + i * a->d, acc[i]);
    }
}

#define PV_CASE(n)                                                                                 \
    case n:                                                                                        \
        pv_tile(f, i0, n, c0);                                                                     \
        break;

static void pv_group(const few *f, int64_t i0, int64_t qn, int64_t c0)
{
    switch (qn) {
        QUERY_COUNTS(PV_CASE)
    }
}

static void pv_block(const few *f)
{
    int64_t g = group_size(f->nq);
    for (int64_t c0 = 0; c0 < f->a->d; c0 += VW)
        for (int64_t i0 = 0; i0 < f->nq; i0 += g)
            pv_group(f, i0, f->nq - i0 < g ? f->nq - i0 : g, c0);
}

/* Scratch (64-byte aligned pieces): Q^T, K^T of one tile, the output
 * accumulator, then the block's scores. Q^T keeps the queries of a register
 * tile side by side, so one pointer reaches all their broadcasts. */
void FEW_FN(const ms_attn *a, int64_t q_begin, int64_t q_end, float *scratch)
{
    if (q_end <= q_begin) return;
    int64_t d = a->d;
    few f = {.a = a, .q0 = q_begin, .nq = q_end - q_begin};
    float *qt = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    f.qt = qt;
    f.kt = qt + d * MAX_Q;
    f.ot = f.kt + d * VW;
    f.s = f.ot + d * MAX_Q;
    float mul = a->scale * LOG2E;
    for (int64_t i = 0; i < f.nq; i++) {
        for (int64_t t = 0; t < d; t++) qt[t * MAX_Q + i] = mul * a->q[(q_begin + i) * a->ldq + t];
        f.m[i] = -INFINITY;
    }
    memset(f.ot, 0, (size_t)(f.nq * d) * sizeof(float));
    for (f.j0 = 0; f.j0 < a->nk; f.j0 += BK) {
        f.kn = a->nk - f.j0 < BK ? a->nk - f.j0 : BK;
        scores(&f);
        softmax_block(&f);
        pv_block(&f);
    }
    for (int64_t i = 0; i < f.nq; i++) {
        VEC inv = V_SET1(1.0f / f.l[i]);
        for (int64_t t = 0; t < d; t += VW)
            V_STOREU(a->out + (q_begin + i) * a->ldo + t, V_MUL(V_LOAD(f.ot + i * d + t), inv));
    }
}
