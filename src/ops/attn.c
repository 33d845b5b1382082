// attn.c: the fast backend's attention over a paged KV cache (fg_backend_cpu.latent_attention,
// .full_attention; contracts and the cache layout in backend.h). The reference, in backend.c, is
// the same math as plain loops; tests/test_backend.c holds these to it.
//
// Latent (MLA absorbed) attention has three kernels, picked per call:
//   - one token over a long context (decode at batch 1): the positions are split into spans run
//     in parallel, each row of the cache read once for all heads (flash-decoding), latent_decode;
//   - several decode rows (a batched step): one row with all its heads per task, rows in parallel;
//   - a run of one sequence's consecutive rows (a prefill chunk): on the packed GEMM, in the
//     absorbed form or the expanded one (keys and values rebuilt per head), whichever costs fewer
//     multiply-adds (mla_uses_expanded).
#include "ops/backend.h"

#include <math.h>
#include <string.h>

#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/pool.h"
#include "ops/quant.h"
#include "util.h"

#define ATT_ROWS 64        // latent prefill on the GEMM: query rows per (head, row block) task
#define EXPAND_MAX_BYTES ((size_t)256 << 20) // scratch for the expanded prefill form: at most 256 MiB
#define LAT_BLOCK FG_ATTN_ROW_BLOCK // latent decode: positions scored together (a divisor of the cache block)
#define LAT_SPANS 16       // latent decode: at most this many position spans run in parallel
#define LATENT_GEMM_MIN 16 // rows of one sequence from which its latent attention runs on the GEMM

// ---- scratch ---------------------------------------------------------------------------------

typedef struct {
    float *qlat;       // (n, H, kw) [q_lat | q_pe] per row and head
    float *olat;       // (threads, Rkv) weighted sum of cached latents
    float *lpart;      // (max(LAT_SPANS, threads), H, Rkv + 2) per-span softmax partials (o, max, sum)
    float *lsc;        // (threads, LAT_BLOCK + 4, nl) one block's scores in lane space (ops.h), then max, sum, rescale, block max
    float *lqt;        // (threads, fg_lane_q_floats(H, kw)) the row's [q_lat | q_pe] of all heads in lane space
    float *pq, *ps, *po; // GEMM prefill per thread: (ATT_ROWS, kw), (ATT_ROWS, max_T), (ATT_ROWS, Rkv); NULL: none
    float *kvf;        // GEMM prefill: (max_T, kw) one sequence's rows, fp32, contiguous
    float *kvx;        // expanded form: (threads, max_T, Dn+Dr+Dv) one head's [k_nope | k_pe | v]; NULL: none
    float *wkvb;       // non-fp32 wkv_b: (threads, Dn+Dv, Rkv) one head dequantised
    const void **wkvb_src; // (threads) which head each thread's wkvb holds (its source rows), NULL: none
    float *probs;      // (threads, max_T) one attention row per thread
    float *blkf;       // bf16 / Q8_0 cache: (threads, LAT_BLOCK, kw) one block of rows widened to fp32
} scratch;

static size_t carve_scratch(scratch *s, char *base, const fg_attn_limits *L) {
    size_t n = (size_t)L->max_rows, nt = (size_t)L->threads, T = (size_t)L->max_T, off = 0;
    size_t kw = (size_t)L->Rkv + L->Dr, Rkv = (size_t)L->Rkv;
    memset(s, 0, sizeof *s);
#define TAKE(ptr, count, type) do { size_t bytes_ = ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63; \
        (ptr) = base ? (type *)(base + off) : NULL; off += bytes_; } while (0)
    TAKE(s->probs, nt * T, float);
    if (L->latent) {
        TAKE(s->qlat, n * L->H * kw, float); TAKE(s->olat, nt * Rkv, float);
        TAKE(s->lpart, (size_t)FG_MAX(LAT_SPANS, L->threads) * L->H * (Rkv + 2), float);
        int nl, r;
        fg_lanes(L->H, &nl, &r);
        TAKE(s->lsc, nt * (LAT_BLOCK + 4) * nl, float); TAKE(s->lqt, nt * fg_lane_q_floats(L->H, (int)kw), float);
        TAKE(s->blkf, nt * LAT_BLOCK * kw, float);
        if (n >= LATENT_GEMM_MIN) {
            TAKE(s->pq, nt * ATT_ROWS * kw, float); TAKE(s->ps, nt * ATT_ROWS * T, float);
            TAKE(s->po, nt * ATT_ROWS * Rkv, float); TAKE(s->kvf, T * kw, float);
            size_t ew = (size_t)L->Dn + L->Dr + L->Dv;
            if (nt * T * ew * sizeof(float) <= EXPAND_MAX_BYTES) TAKE(s->kvx, nt * T * ew, float);
        }
        if (!L->wkv_b_f32) { TAKE(s->wkvb, nt * (size_t)(L->Dn + L->Dv) * Rkv, float); TAKE(s->wkvb_src, nt, const void *); }
    }
#undef TAKE
    return off;
}

size_t fg_cpu_attn_scratch(const fg_attn_limits *lim) {
    scratch s;
    return carve_scratch(&s, NULL, lim) + 64;
}

// One call's state, shared by its workers.
typedef struct {
    float *y;
    const float *q;
    const fg_kv_pages *kv;
    const fg_attn_call *a;
    scratch S;
} job;

static job job_start(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a) {
    job j = {y, q, kv, a, {0}};
    char *base = (char *)(((uintptr_t)a->scratch + 63) & ~(uintptr_t)63);
    carve_scratch(&j.S, base, a->lim);
    if (j.S.wkvb_src) memset(j.S.wkvb_src, 0, sizeof(void *) * (size_t)a->lim->threads); // converted heads: none yet
    return j;
}

// ---- the cache -------------------------------------------------------------------------------

static inline size_t kv_key(const fg_kv_pages *kv, const int *tab, int u) {
    return (size_t)tab[u / kv->block] * kv->blk_elems + kv->key_off + (size_t)(u % kv->block) * kv->kw;
}
static inline size_t kv_val(const fg_kv_pages *kv, const int *tab, int u) {
    return (size_t)tab[u / kv->block] * kv->blk_elems + kv->val_off + (size_t)(u % kv->block) * kv->vw;
}
static inline const uint8_t *kv_at(const fg_kv_pages *kv, size_t at) { return (const uint8_t *)kv->arena + fg_kv_bytes(kv->type, at); }
static void kv_get(const fg_kv_pages *kv, float *dst, size_t at, int n) {
    if (kv->type == FG_F32) memcpy(dst, (const float *)kv->arena + at, sizeof(float) * n);
    else fg_dequantize_row(dst, kv_at(kv, at), n, kv->type);
}
// Q8_0 rows are widened 256 values at a time: reads start on a block (rows and a full cache's
// heads are whole blocks) and a read of part of a row (the latent without k_pe) widens up to the
// end of its last block, still inside the row.
static inline float kv_dot(const fg_kv_pages *kv, const float *a, size_t at, int n) {
    if (kv->type == FG_F32) return fg_vdot(a, (const float *)kv->arena + at, n);
    if (kv->type == FG_BF16) return fg_bf16_dot(a, (const uint16_t *)kv->arena + at, n);
    float tmp[256], s = 0;
    for (int i = 0; i < n; i += 256) {
        int k = FG_MIN(256, n - i);
        kv_get(kv, tmp, at + (size_t)i, (k + 31) & ~31);
        s += fg_vdot(a + i, tmp, k);
    }
    return s;
}
static inline void kv_axpy(const fg_kv_pages *kv, float *y, float a, size_t at, int n) {
    if (kv->type == FG_F32) { fg_vaxpy(y, a, (const float *)kv->arena + at, n); return; }
    if (kv->type == FG_BF16) { fg_bf16_axpy(y, a, (const uint16_t *)kv->arena + at, n); return; }
    float tmp[256];
    for (int i = 0; i < n; i += 256) {
        int k = FG_MIN(256, n - i);
        kv_get(kv, tmp, at + (size_t)i, (k + 31) & ~31);
        fg_vaxpy(y + i, a, tmp, k);
    }
}

// Rows (query, head) of an attention: one token's heads on the decode helpers (pool.h), more on
// OpenMP threads. fn(ctx, row, tid) with tid < threads.
static void attention_rows(const job *j, int rows, long work, void (*fn)(void *, int, int), void *ctx) {
    if (work <= 65536) {
        for (int r = 0; r < rows; r++) fn(ctx, r, 0);
    } else if (rows <= j->a->H) {
        fg_pool_for(rows, fn, ctx);
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(j->a->lim->threads, fg_max_threads()))
        for (int r = 0; r < rows; r++) fn(ctx, r, fg_thread_id());
    }
}

// ---- full cache --------------------------------------------------------------------------------

// The arithmetic of attention_row (ops.c): dot products of the cached keys, fg_softmax_scaled,
// then the weighted sum of values.
static void full_row(void *ctx, int r, int tid) {
    const job *j = ctx;
    const fg_attn_call *a = j->a;
    int H = a->H, i = r / H, h = r % H, kh = h / (H / a->Hkv), t = a->pos[i], Dk = a->Dk, Dv = a->Dv;
    const int *tab = a->tab[i];
    float *o = j->y + ((size_t)i * H + h) * Dv, *p = j->S.probs + (size_t)tid * a->lim->max_T;
    const float *qr = j->q + (size_t)i * H * Dk + (size_t)h * Dk;
    for (int u = 0; u <= t; u++) p[u] = kv_dot(j->kv, qr, kv_key(j->kv, tab, u) + (size_t)kh * Dk, Dk);
    fg_softmax_scaled(p, t + 1, a->scale);
    for (int d = 0; d < Dv; d++) o[d] = 0;
    for (int u = 0; u <= t; u++) kv_axpy(j->kv, o, p[u], kv_val(j->kv, tab, u) + (size_t)kh * Dv, Dv);
}

void fg_cpu_full_attention(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a) {
    job j = job_start(y, q, kv, a);
    long work = 0;
    for (int i = 0; i < a->n; i++) work += (long)a->H * (a->pos[i] + 1) * (a->Dk + a->Dv);
    attention_rows(&j, a->n * a->H, work, full_row, &j);
}

// ---- latent cache: one row at a time -------------------------------------------------------------

// wkv_b's (Dn+Dv, Rkv) rows of head h in fp32: in place, or dequantised into the thread's scratch
// (kept while the thread stays on the same head).
static const float *wkv_b_head(const job *j, int h, int tid) {
    const fg_attn_call *a = j->a;
    int Dn = a->Dn, Dv = a->Dv, Rkv = a->Rkv;
    if (a->wkv_b.type == FG_F32) return (const float *)a->wkv_b.p + (size_t)h * (Dn + Dv) * Rkv;
    size_t rb = fg_qrow_bytes(a->wkv_b.type, Rkv);
    const uint8_t *src = (const uint8_t *)a->wkv_b.p + (size_t)h * (Dn + Dv) * rb;
    float *tmp = j->S.wkvb + (size_t)tid * (Dn + Dv) * Rkv;
    if (j->S.wkvb_src[tid] == src) return tmp;
    j->S.wkvb_src[tid] = src;
    for (int d = 0; d < Dn + Dv; d++) fg_dequantize_row(tmp + (size_t)d * Rkv, src + (size_t)d * rb, Rkv, a->wkv_b.type);
    return tmp;
}

// [q_lat_h | q_pe_h] of rows i0 .. i0+m-1, q_lat_h = W_UK_h^T q_nope_h: W_UK_h read once for the
// m rows (fg_vaxpy_block).
static void make_qlat_rows(const job *j, int i0, int m, int h, int tid) {
    const fg_attn_call *a = j->a;
    int H = a->H, Dn = a->Dn, Dr = a->Dr, Rkv = a->Rkv, kw = Rkv + Dr, Dq = Dn + Dr;
    const float *wh = wkv_b_head(j, h, tid), *q = j->q + ((size_t)i0 * H + h) * Dq;
    float *ql = j->S.qlat + ((size_t)i0 * H + h) * kw;
    for (int i = 0; i < m; i++) {
        memset(ql + (size_t)i * H * kw, 0, sizeof(float) * Rkv);
        memcpy(ql + (size_t)i * H * kw + Rkv, q + (size_t)i * H * Dq + Dn, sizeof(float) * Dr);
    }
    fg_vaxpy_block(ql, (long)H * kw, m, q, (long)H * Dq, 1, wh, Rkv, Dn, Rkv);
}

static void make_qlat(const job *j, int i, int h, int tid) { make_qlat_rows(j, i, 1, h, tid); }

// One (row, head) of the absorbed form, row by row over the cache. rows: the batch rows to run.
typedef struct { const job *j; const int *rows; } row_job;

static void latent_row(void *ctx, int r, int tid) {
    const row_job *rj = ctx;
    const job *j = rj->j;
    const fg_attn_call *a = j->a;
    int H = a->H, Dn = a->Dn, Dv = a->Dv, Rkv = a->Rkv, kw = Rkv + a->Dr;
    int i = rj->rows[r / H], h = r % H, t = a->pos[i];
    const int *tab = a->tab[i];
    make_qlat(j, i, h, tid);
    const float *ql = j->S.qlat + ((size_t)i * H + h) * kw, *wh = wkv_b_head(j, h, tid);
    float *ol = j->S.olat + (size_t)tid * Rkv, *p = j->S.probs + (size_t)tid * a->lim->max_T;
    for (int u = 0; u <= t; u++) p[u] = kv_dot(j->kv, ql, kv_key(j->kv, tab, u), kw);
    fg_softmax_scaled(p, t + 1, a->scale);
    for (int k = 0; k < Rkv; k++) ol[k] = 0;
    for (int u = 0; u <= t; u++) kv_axpy(j->kv, ol, p[u], kv_key(j->kv, tab, u), Rkv);
    float *o = j->y + ((size_t)i * H + h) * Dv;
    for (int d = 0; d < Dv; d++) o[d] = fg_vdot(wh + (size_t)(Dn + d) * Rkv, ol, Rkv); // y_h = W_UV_h o_lat
}

// ---- latent cache: one token over a long context (the multi-query form made to pay) ------------
// Every head attends over the same cached rows, so instead of one pass over the cache per head,
// the positions are split into spans (run in parallel), each span is walked in blocks of
// LAT_BLOCK rows (contiguous: a block never straddles two cache blocks), and each row is read
// once for all heads: scores of all heads for the block, then o_lat_h += p_h(u) c_kv(u) for all
// heads while the row is in L1. Softmax runs online per span (running max and sum, rescaled per
// block) and the spans' partials are merged per head (flash-decoding). Same math as latent_row;
// only the summation order differs.
// span sp's partials at lpart slot slot0 + sp; qt: the row's [q_lat | q_pe] in lane space (ops.h)
typedef struct { const job *j; int i, t, nspans, span, slot0; const float *qt; const void *then; } dec_job;

// Row i's [q_lat | q_pe] of all heads laid out in lane space in the thread's area; returns it.
static const float *lane_qlat(const job *j, int i, int tid) {
    const fg_attn_call *a = j->a;
    int kw = a->Rkv + a->Dr;
    float *qt = j->S.lqt + (size_t)tid * fg_lane_q_floats(a->H, kw);
    fg_lane_q(qt, j->S.qlat + (size_t)i * a->H * kw, kw, a->H, kw);
    return qt;
}

static void dec_qlat(void *ctx, int h, int tid) { const dec_job *d = ctx; make_qlat(d->j, d->i, h, tid); }

static void dec_span(void *ctx, int sp, int tid) { // partial (o_h, m_h, l_h) of span sp for every head
    const dec_job *d = ctx;
    const job *j = d->j;
    const fg_attn_call *a = j->a;
    const fg_kv_pages *kv = j->kv;
    int H = a->H, Rkv = a->Rkv, kw = Rkv + a->Dr, nl, r;
    fg_lanes(H, &nl, &r);
    int u0 = sp * d->span, u1 = FG_MIN(d->t + 1, u0 + d->span);
    const int *tab = a->tab[d->i];
    const float *qt = d->qt;
    float *sc = j->S.lsc + (size_t)tid * (LAT_BLOCK + 4) * nl;
    float *m = sc + (size_t)LAT_BLOCK * nl, *l = m + nl, *rescale = l + nl, *smax = rescale + nl;
    float *part = j->S.lpart + (size_t)(d->slot0 + sp) * H * (Rkv + 2); // head h: o (Rkv), then m, l
    for (int k = 0; k < nl; k++) { m[k] = -INFINITY; l[k] = 0; }
    for (int h = 0; h < H; h++) memset(part + (size_t)h * (Rkv + 2), 0, sizeof(float) * Rkv);
    for (int b0 = u0; b0 < u1; b0 += LAT_BLOCK) {
        int nb = FG_MIN(LAT_BLOCK, u1 - b0);
        size_t base = kv_key(kv, tab, b0); // rows b0 .. b0+nb-1 are contiguous
        const float *blk = (const float *)kv->arena + base;
        if (kv->type != FG_F32) { // widened once per block, for all heads
            float *f = j->S.blkf + (size_t)tid * LAT_BLOCK * kw;
            kv_get(kv, f, base, nb * kw);
            blk = f;
        }
        // Scores of every head for the block's rows, fetching the next block into L1 meanwhile
        // (elsewhere in the arena: the hardware prefetchers do not see it coming).
        const void *next = NULL;
        int next_lines = 0;
        if (b0 + LAT_BLOCK < u1) {
            next = kv_at(kv, kv_key(kv, tab, b0 + LAT_BLOCK));
            next_lines = (int)((fg_kv_bytes(kv->type, (size_t)FG_MIN(LAT_BLOCK, u1 - b0 - LAT_BLOCK) * kw) + 63) / 64);
        } else if (d->then) { // the span's last block: the first block of the thread's next span
            next = d->then;
            next_lines = (int)((fg_kv_bytes(kv->type, (size_t)LAT_BLOCK * kw) + 63) / 64);
        }
        fg_lane_scores(sc, smax, qt, H, blk, kw, nb, kw, next, next_lines);
        fg_lane_softmax(sc, nl, nb, a->scale, a->scale > 0 ? smax : NULL, m, l, rescale); // online: the running sums rescaled to the new max
        for (int h = 0; h < H; h++)
            if (rescale[h * r] != 1.0f) fg_vscale(part + (size_t)h * (Rkv + 2), Rkv, rescale[h * r]);
        fg_vaxpy_block(part, Rkv + 2, H, sc, r, nl, blk, kw, nb, Rkv); // o_lat_h += p_h(u) c_kv(u)
    }
    for (int h = 0; h < H; h++) {
        part[(size_t)h * (Rkv + 2) + Rkv] = m[h * r];
        part[(size_t)h * (Rkv + 2) + Rkv + 1] = l[h * r];
    }
}

static void dec_out(void *ctx, int h, int tid) { // merge the spans of head h, then y_h = W_UV_h o_lat_h
    const dec_job *d = ctx;
    const job *j = d->j;
    const fg_attn_call *a = j->a;
    int H = a->H, Dn = a->Dn, Dv = a->Dv, Rkv = a->Rkv;
    float *ol = j->S.olat + (size_t)tid * Rkv, M = -INFINITY, L = 0;
    for (int sp = d->slot0; sp < d->slot0 + d->nspans; sp++) {
        float m = j->S.lpart[((size_t)sp * H + h) * (Rkv + 2) + Rkv];
        M = m > M ? m : M;
    }
    for (int k = 0; k < Rkv; k++) ol[k] = 0;
    for (int sp = d->slot0; sp < d->slot0 + d->nspans; sp++) {
        const float *ph = j->S.lpart + ((size_t)sp * H + h) * (Rkv + 2);
        float w = expf(ph[Rkv] - M);
        L += w * ph[Rkv + 1];
        fg_vaxpy(ol, w, ph, Rkv);
    }
    float inv = 1.0f / L;
    const float *wh = wkv_b_head(j, h, tid);
    float *o = j->y + ((size_t)d->i * H + h) * Dv;
    for (int e = 0; e < Dv; e++) o[e] = fg_vdot(wh + (size_t)(Dn + e) * Rkv, ol, Rkv) * inv;
}

static void latent_decode(const job *j, int i) {
    int H = j->a->H, T = j->a->pos[i] + 1;
    int nspans = FG_MIN(LAT_SPANS, (T + LAT_BLOCK - 1) / LAT_BLOCK);
    int span = ((T + nspans - 1) / nspans + LAT_BLOCK - 1) / LAT_BLOCK * LAT_BLOCK;
    nspans = (T + span - 1) / span;
    dec_job d = {j, i, T - 1, nspans, span, 0, NULL, NULL};
    fg_pool_for(H, dec_qlat, &d);
    d.qt = lane_qlat(j, i, 0); // once for all spans
    fg_pool_for(nspans, dec_span, &d);
    fg_pool_for(H, dec_out, &d);
}

// Rows of different sequences (a batched decode step), in three passes:
//   1. q_lat of every (row, head): per head, W_UK_h read once for all rows (fg_vaxpy_block);
//   2. per row, on one thread: its whole context as one span (dec_span: every cached row read once
//      for all heads), then o_lat_h / l_h written over the row's q_lat (no longer needed);
//   3. y_h = W_UV_h o_lat_h: per head, W_UV_h read once for all rows (fg_vdot_block).
// Passes 1 and 3 work on runs of consecutive rows (the batch's rows are usually one run).
typedef struct { const job *j; const int *rows; int nrows, nthr; } rows_job;

// The length of the run of consecutive batch rows starting at rows[r].
static int run_len(const rows_job *rj, int r) {
    int m = 1;
    while (r + m < rj->nrows && rj->rows[r + m] == rj->rows[r] + m) m++;
    return m;
}

static void rows_qlat(const rows_job *rj, int h, int tid) {
    for (int r = 0, m; r < rj->nrows; r += m) {
        m = run_len(rj, r);
        make_qlat_rows(rj->j, rj->rows[r], m, h, tid);
    }
}

static void rows_span(const rows_job *rj, int r, int tid) {
    const job *j = rj->j;
    int H = j->a->H, Rkv = j->a->Rkv, kw = Rkv + j->a->Dr, i = rj->rows[r], t = j->a->pos[i];
    // the row this thread likely takes next (rows go out in order, one per free thread): its first
    // cached block is fetched during this row's last one (a wrong guess costs a few wasted fetches)
    int nx = r + rj->nthr < rj->nrows ? rj->rows[r + rj->nthr] : -1;
    const void *then = nx >= 0 && j->a->pos[nx] + 1 >= LAT_BLOCK ? kv_at(j->kv, kv_key(j->kv, j->a->tab[nx], 0)) : NULL;
    dec_job d = {j, i, t, 1, (t + 1 + LAT_BLOCK - 1) / LAT_BLOCK * LAT_BLOCK, tid, lane_qlat(j, i, tid), then};
    dec_span(&d, 0, tid);
    for (int h = 0; h < H; h++) {
        const float *ph = j->S.lpart + ((size_t)tid * H + h) * (Rkv + 2);
        float inv = 1.0f / ph[Rkv + 1], *ol = j->S.qlat + ((size_t)i * H + h) * kw;
        for (int k = 0; k < Rkv; k++) ol[k] = ph[k] * inv;
    }
}

static void rows_out(const rows_job *rj, int h, int tid) {
    const fg_attn_call *a = rj->j->a;
    int H = a->H, Dn = a->Dn, Dv = a->Dv, Rkv = a->Rkv, kw = Rkv + a->Dr;
    const float *wv = wkv_b_head(rj->j, h, tid) + (size_t)Dn * Rkv;
    for (int r = 0, m; r < rj->nrows; r += m) {
        int i0 = rj->rows[r];
        m = run_len(rj, r);
        fg_vdot_block(rj->j->y + ((size_t)i0 * H + h) * Dv, (long)H * Dv, rj->j->S.qlat + ((size_t)i0 * H + h) * kw,
                      (long)H * kw, m, wv, Rkv, Dv, Rkv);
    }
}

static void latent_rows(const job *j, const int *rows, int nrows, int par) {
    int H = j->a->H, nthr = FG_MIN(j->a->lim->threads, fg_max_threads());
    rows_job rj = {j, rows, nrows, par ? nthr : 1};
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (par)
    for (int h = 0; h < H; h++) rows_qlat(&rj, h, fg_thread_id());
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (par)
    for (int r = 0; r < nrows; r++) rows_span(&rj, r, fg_thread_id());
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (par)
    for (int h = 0; h < H; h++) rows_out(&rj, h, fg_thread_id());
}

// ---- latent cache: a run of one sequence's rows on the GEMM (prefill) ----------------------------

// Rows i < m of scores S (row stride t): row i sees positions [0, see0 + i); softmax over those
// (scaled), zero after them.
static void causal_softmax(float *S, int m, int t, int see0, float scale) {
    for (int i = 0; i < m; i++) {
        float *p = S + (size_t)i * t;
        fg_softmax_scaled(p, see0 + i, scale);
        for (int u = see0 + i; u < t; u++) p[u] = 0;
    }
}

// A run: n consecutive rows from r0 of one sequence at positions p0 .. p0+n-1, whose cache rows
// [0, p0+n) were gathered into S.kvf (fp32, contiguous). prec: the products' precision (a->prec).
typedef struct { int r0, n, p0, prec; } att_run;

// The absorbed form as tasks of one head and ATT_ROWS query rows, each on one thread with
// single-threaded products: [q_lat | q_pe] = [q_nope W_UK_h | q_pe], S = [q_lat | q_pe]
// cache[0, t)^T (one product: a cache row is [c_kv | k_pe]), a causal softmax per row, o_lat =
// P c_kv, y_h = o_lat W_UV_h^T. A row block only reads the t = p0 + (its last row) + 1 positions
// it can see, so the causal half of the run's square is never computed. The same sums as
// latent_row in another order.
static void latent_task(const job *j, att_run r, int h, int rb, int tid) {
    const fg_attn_call *a = j->a;
    int H = a->H, Dn = a->Dn, Dr = a->Dr, Dv = a->Dv, Dq = Dn + Dr, Rkv = a->Rkv, kw = Rkv + Dr, T = a->lim->max_T;
    int i0 = rb * ATT_ROWS, m = FG_MIN(ATT_ROWS, r.n - i0), t = r.p0 + i0 + m;
    float *pq = j->S.pq + (size_t)tid * ATT_ROWS * kw, *ps = j->S.ps + (size_t)tid * ATT_ROWS * T;
    float *po = j->S.po + (size_t)tid * ATT_ROWS * Rkv;
    const float *wh = wkv_b_head(j, h, tid), *qh = j->q + ((size_t)(r.r0 + i0) * H + h) * Dq, *cache = j->S.kvf;
    fg_gemm(0, 0, m, Rkv, Dn, qh, (long)H * Dq, wh, Rkv, pq, kw, 0, NULL, r.prec);
    for (int i = 0; i < m; i++) memcpy(pq + (size_t)i * kw + Rkv, qh + (size_t)i * H * Dq + Dn, sizeof(float) * Dr);
    fg_gemm(0, 1, m, t, kw, pq, kw, cache, kw, ps, t, 0, NULL, r.prec);
    causal_softmax(ps, m, t, r.p0 + i0 + 1, a->scale);
    fg_gemm(0, 0, m, Rkv, t, ps, t, cache, kw, po, Rkv, 0, NULL, r.prec);
    fg_gemm(0, 1, m, Dv, Rkv, po, Rkv, wh + (size_t)Dn * Rkv, Rkv, j->y + (size_t)(r.r0 + i0) * H * Dv + (size_t)h * Dv,
            (long)H * Dv, 0, NULL, r.prec);
}

// The expanded form of the same prefill (DeepSeek's own choice for prefill): per head, the keys
// and values of every visible position are rebuilt from the latent cache, [k_nope | v] (t, Dn+Dv)
// = c_kv wkv_b_h^T, then ordinary attention with q = [q_nope | q_pe] and k = [k_nope | k_pe]
// (k_pe straight from the cache). A score costs Dn+Dr multiply-adds and a value row Dv instead
// of the absorbed form's Rkv+Dr and Rkv, for the price of the expansion (t1 rows per head): it
// wins when the run is long compared with the context before it (mla_uses_expanded). One task
// per head; row blocks of ATT_ROWS skip the causal upper half as latent_task does.
static void expanded_head(const job *j, att_run r, int h, int tid) {
    const fg_attn_call *a = j->a;
    int H = a->H, Dn = a->Dn, Dr = a->Dr, Dv = a->Dv, Dq = Dn + Dr, Rkv = a->Rkv, kw = Rkv + Dr, T = a->lim->max_T;
    int t1 = r.p0 + r.n, ew = Dq + Dv;
    // kvx rows: [k_nope | k_pe | v] (Dn + Dr + Dv), so q . k is one product over Dq = Dn + Dr
    float *kvx = j->S.kvx + (size_t)tid * T * ew, *ps = j->S.ps + (size_t)tid * ATT_ROWS * T;
    const float *cache = j->S.kvf;
    size_t rb = fg_qrow_bytes(a->wkv_b.type, Rkv);
    const uint8_t *wk = (const uint8_t *)a->wkv_b.p + (size_t)h * (Dn + Dv) * rb, *wv = wk + (size_t)Dn * rb;
    if (a->wkv_b.type == FG_F32) {
        fg_gemm(0, 1, t1, Dn, Rkv, cache, kw, (const float *)wk, Rkv, kvx, ew, 0, NULL, r.prec);
        fg_gemm(0, 1, t1, Dv, Rkv, cache, kw, (const float *)wv, Rkv, kvx + Dq, ew, 0, NULL, r.prec);
    } else {
        fg_gemm_qb(t1, Dn, Rkv, cache, kw, wk, (long)rb, a->wkv_b.type, kvx, ew, NULL, FG_BF16);
        fg_gemm_qb(t1, Dv, Rkv, cache, kw, wv, (long)rb, a->wkv_b.type, kvx + Dq, ew, NULL, FG_BF16);
    }
    for (int u = 0; u < t1; u++) memcpy(kvx + (size_t)u * ew + Dn, cache + (size_t)u * kw + Rkv, sizeof(float) * Dr);
    for (int i0 = 0; i0 < r.n; i0 += ATT_ROWS) {
        int m = FG_MIN(ATT_ROWS, r.n - i0), t = r.p0 + i0 + m;
        const float *qh = j->q + ((size_t)(r.r0 + i0) * H + h) * Dq;
        fg_gemm(0, 1, m, t, Dq, qh, (long)H * Dq, kvx, ew, ps, t, 0, NULL, r.prec);
        causal_softmax(ps, m, t, r.p0 + i0 + 1, a->scale);
        fg_gemm(0, 0, m, Dv, t, ps, t, kvx + Dq, ew, j->y + (size_t)(r.r0 + i0) * H * Dv + (size_t)h * Dv, (long)H * Dv,
                0, NULL, r.prec);
    }
}

// Multiply-adds per head of the two prefill forms for n rows after p0 cached positions.
static int mla_uses_expanded(const job *j, int n, int p0) {
    const fg_attn_call *a = j->a;
    double Dn = a->Dn, Dr = a->Dr, Dv = a->Dv, Rkv = a->Rkv;
    double pairs = (double)n * p0 + (double)n * (n + 1) / 2; // (query, visible position) pairs
    double expanded = (p0 + n) * Rkv * (Dn + Dv) + pairs * (Dn + Dr + Dv);
    double absorbed = n * Rkv * (Dn + Dv) + pairs * (2 * Rkv + Dr);
    if (!j->S.kvx || a->form == FG_MLA_ABSORBED) return 0;
    return a->form == FG_MLA_EXPANDED || expanded < absorbed;
}

static void latent_run_gemm(const job *j, att_run r) {
    const fg_attn_call *a = j->a;
    int H = a->H, nb = (r.n + ATT_ROWS - 1) / ATT_ROWS, kw = a->Rkv + a->Dr, t1 = r.p0 + r.n, B = j->kv->block;
    int nthr = FG_MIN(a->lim->threads, fg_max_threads());
    const int *tab = a->tab[r.r0];
    // The sequence's rows, contiguous and fp32, once for all tasks.
#pragma omp parallel for schedule(static) if ((long)t1 * kw > 65536)
    for (int b = 0; b < (t1 + B - 1) / B; b++) {
        int u0 = b * B, nu = FG_MIN(B, t1 - u0);
        kv_get(j->kv, j->S.kvf + (size_t)u0 * kw, kv_key(j->kv, tab, u0), nu * kw);
    }
    (void)nthr; // read by the pragmas only
    if (mla_uses_expanded(j, r.n, r.p0)) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr)
        for (int h = 0; h < H; h++) expanded_head(j, r, h, fg_thread_id());
        return;
    }
    // Head by head (a converted wkv_b head stays put), each head's costliest (last) row blocks first.
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr)
    for (int task = 0; task < nb * H; task++) latent_task(j, r, task / nb, nb - 1 - task % nb, fg_thread_id());
}

// Splits the rows into runs (consecutive rows of one sequence at consecutive positions); runs of
// at least LATENT_GEMM_MIN rows go to the GEMM, the other rows are attended one by one.
void fg_cpu_latent_attention(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a) {
    job j = job_start(y, q, kv, a);
    int n = a->n, H = a->H, Dn = a->Dn, Dr = a->Dr, Dv = a->Dv, Rkv = a->Rkv;
    if (n == 1 && a->pos[0] + 1 >= 2 * LAT_BLOCK) { latent_decode(&j, 0); return; }
    int nsolo = 0, solo[n]; // rows attended one by one
    int prec = a->prec;
    long work = 0;
    for (int i = 0; i < n;) {
        int k = i + 1;
        while (k < n && a->tab[k] == a->tab[i] && a->pos[k] == a->pos[k - 1] + 1) k++;
        if (j.S.pq && k - i >= LATENT_GEMM_MIN) {
            latent_run_gemm(&j, (att_run){i, k - i, a->pos[i], prec});
        } else {
            for (int r = i; r < k; r++) {
                solo[nsolo++] = r;
                work += (long)H * ((a->pos[r] + 1) * (long)(Rkv + Dr) + (long)(Dn + Dv) * Rkv);
            }
        }
        i = k;
    }
    if (!nsolo) return;
    if (nsolo > 1) { latent_rows(&j, solo, nsolo, work > 65536); return; } // rows of different sequences
    row_job rj = {&j, solo};
    attention_rows(&j, nsolo * H, work, latent_row, &rj);
}
