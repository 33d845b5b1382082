// ctx.c: the batched inference context: many sequences over one paged KV cache, one forward per
// batch of rows (contracts in frugal.h, fg_ctx_*; design in docs/architecture.md).
//
// A batch is a list of rows (token, sequence, position). Every product runs once over all rows
// (the layers of model/layers.c: weights are read once per step for the whole batch); only
// attention looks at each row's own sequence, through its block table.
//
// The cache is an arena of blocks of FG_KV_BLOCK positions. A block holds, for every layer, the
// keys of its positions, then their values: element (l, u) of a block at
//   block * blk_elems + l * BLK * (kw + vw) + (u % BLK) * kw          (keys; values after BLK*kw)
// Kinds: FG_KV_LATENT (MLA's absorbed form: kw = Rkv + Dr, [c_kv | roped k_pe], vw = 0) and
// FG_KV_FULL (per-head keys and values; GQA's only kind). Elements are fp32 or bf16. A sequence
// owns a table of block ids; forks share blocks (reference counts) and a block is copied before a
// sequence writes into one it shares (copy on write), so G samples of a prompt cost one prefill.
//
// Invariants: rows [0, len) of every live sequence hold the keys/values of its tokens; a failed
// decode changes nothing (everything is checked and the blocks reserved before any row runs); a
// decode never allocates (scratch, cache and block tables are carved at create).
#include "infer/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "infer/wstore.h"
#include "model/layers.h"
#include "ops/backend.h"
#include "ops/gemm.h"
#include "ops/pool.h"
#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
static int omp_threads(void) { return omp_get_max_threads(); }
#else
#define THREAD_ID() 0
static int omp_threads(void) { return 1; }
#endif

#define BLK FG_KV_BLOCK
#define LATENT_GEMM_MIN 16 // rows of one sequence from which its latent attention runs on the GEMM
#define ATT_ROWS 64        // latent prefill on the GEMM: query rows per (head, row block) task
#define EXPAND_MAX_BYTES ((size_t)256 << 20) // scratch for the expanded prefill form: at most 256 MiB
#define LAT_BLOCK 32    // latent decode: positions scored together (a divisor of FG_KV_BLOCK)
#define LAT_SPANS 16    // latent decode: at most this many position spans run in parallel
#define EXPERT_PAR_ROWS 16 // a MoE layer runs its experts side by side from this many rows

_Static_assert(FG_KV_BLOCK % LAT_BLOCK == 0, "a latent decode block must not straddle two cache blocks");

typedef struct {
    int live;
    int len;        // positions cached
    int nblk;       // blocks in the table
    int *blk;       // (max_blk) block ids
} kv_seq;

struct fg_ctx {
    const fg_wstore *ws;
    fg_exec ex;                 // the backend the layers run on, with the store's packed weights
    int kind;                   // FG_KV_FULL | FG_KV_LATENT
    int mla_prefill;            // FG_MLA_*
    int att_prec;               // FG_GEMM_* of prefill attention's products: bf16 when the weights are not fp32
    int kv_bf16;                // cache elements are bf16 (else fp32)
    int max_T;                  // positions one sequence may hold
    int max_rows;               // rows per decode
    int kw, vw;                 // values per cached position and layer: keys, values
    size_t blk_elems;           // elements per block (all layers)
    int nblocks, nfree;         // blocks in the arena, free ones
    void *kv;                   // the arena
    int *ref;                   // (nblocks) sequences holding each block
    int *freel;                 // (nblocks) free block ids (a stack)
    int max_seqs, max_blk;
    kv_seq *seqs;               // (max_seqs)
    int *seq_mem;               // block tables (max_seqs * max_blk)
    int nthreads, max_heads;
    void *mem;                  // scratch arena, carved below
    int *rseq, *rpos;           // (n) each row's sequence and position
    int *cnt;                   // (max_seqs) rows per sequence in the current batch (validation)
    int *runs;                  // (3n) runs of consecutive rows of one sequence: row, count, first pos
    int *solo;                  // (n) rows attended one by one
    int *want;                  // (n) rows whose logits are wanted
    float *x, *xn, *x2, *xn2;   // (n, C) residual stream, normed input, after attention, normed
    float *qa, *qan;            // (n, Rq) MLA q compression
    float *q;                   // (n, H*(Dn+Dr)) MLA or (n, H*Dh) GQA, roped
    float *kva, *ckv, *kvb;     // MLA (n, Rkv+Dr) [c_kv | k_pe], (n, Rkv) normed latent, (n, H*(Dn+Dv))
    float *kn, *vn;             // full cache: (n, kw) new keys and (n, vw) values before they enter the cache
    float *wkvb;                // latent with a non-fp32 wkv_b: (nthreads, Dn+Dv, Rkv) one head dequantised
    int *wkvb_key;              // (nthreads) which layer and head each thread's wkvb holds: l*H+h+1, 0 = none
    float *y;                   // (n, H*Dv) or (n, H*Dh) attention output before wo
    float *qlat;                // latent: (n, H, Rkv+Dr) [q_lat | q_pe]: queries folded through wkv_b's key half,
                                //   then the roped part (one dot product with a cache row [c_kv | k_pe])
    float *olat;                // latent: (nthreads, Rkv) weighted sum of cached latents
    float *pq, *ps, *po;        // latent prefill on the GEMM, per thread: (ATT_ROWS, Rkv+Dr) [q_lat | q_pe],
                                //   (ATT_ROWS, max_T) scores, (ATT_ROWS, Rkv) o_lat; NULL: row by row only
    float *kvf;                 // latent prefill: (max_T, Rkv+Dr) one sequence's rows of one layer, fp32, contiguous
    float *kvx;                 // latent prefill, expanded form: (nthreads, max_T, Dn+Dr+Dv) one head's [k_nope | k_pe | v]
    float *lpart;               // latent decode: (LAT_SPANS, H, Rkv + 2) per-span softmax partials (o, max, sum)
    float *lsc;                 // latent decode: (nthreads, H, LAT_BLOCK) scores of one block
    float *h1, *h3, *act;       // (n, max(F, Fs)) dense FFN or shared expert
    fg_moe_bufs moe;            // (n rows) MoE routing and expert buffers
    float *probs;               // (nthreads, max_T) one attention row per thread
};

// ---- the cache -------------------------------------------------------------------------------

static inline size_t kv_key(const fg_ctx *s, const kv_seq *q, int l, int u) { // element index of key row u
    return (size_t)q->blk[u / BLK] * s->blk_elems + (size_t)l * BLK * (s->kw + s->vw) + (size_t)(u % BLK) * s->kw;
}
static inline size_t kv_val(const fg_ctx *s, const kv_seq *q, int l, int u) { // element index of value row u
    return (size_t)q->blk[u / BLK] * s->blk_elems + (size_t)l * BLK * (s->kw + s->vw) + (size_t)BLK * s->kw +
           (size_t)(u % BLK) * s->vw;
}
static void kv_put(fg_ctx *s, size_t at, const float *src, int n) {
    if (!s->kv_bf16) { memcpy((float *)s->kv + at, src, sizeof(float) * n); return; }
    uint16_t *d = (uint16_t *)s->kv + at;
    for (int i = 0; i < n; i++) d[i] = fg_f32_to_bf16(src[i]);
}
static void kv_get(const fg_ctx *s, float *dst, size_t at, int n) {
    if (!s->kv_bf16) memcpy(dst, (const float *)s->kv + at, sizeof(float) * n);
    else fg_dequantize_row(dst, (const uint8_t *)((const uint16_t *)s->kv + at), n, FG_BF16);
}
static inline float kv_dot(const fg_ctx *s, const float *a, size_t at, int n) {
    return s->kv_bf16 ? fg_bf16_dot(a, (const uint16_t *)s->kv + at, n) : fg_vdot(a, (const float *)s->kv + at, n);
}
static inline void kv_axpy(const fg_ctx *s, float *y, float a, size_t at, int n) {
    if (s->kv_bf16) fg_bf16_axpy(y, a, (const uint16_t *)s->kv + at, n);
    else fg_vaxpy(y, a, (const float *)s->kv + at, n);
}

static int blk_take(fg_ctx *s) { int b = s->freel[--s->nfree]; s->ref[b] = 1; return b; }
static void blk_drop(fg_ctx *s, int b) { if (--s->ref[b] == 0) s->freel[s->nfree++] = b; }

// Blocks sequence q needs to append n positions: new ones past its table, plus a copy of its last
// block when it shares it and the append writes into it.
static int blocks_needed(const fg_ctx *s, const kv_seq *q, int n) {
    int need = (q->len + n + BLK - 1) / BLK - q->nblk;
    if (q->len % BLK && s->ref[q->blk[q->len / BLK]] > 1) need++;
    return need;
}

// Makes q's blocks for positions [len, len + n) its own (reserved by the caller's count).
static void blocks_reserve(fg_ctx *s, kv_seq *q, int n) {
    if (q->len % BLK) {
        int i = q->len / BLK, old = q->blk[i];
        if (s->ref[old] > 1) { // copy on write
            int b = blk_take(s);
            size_t esz = s->kv_bf16 ? 2 : 4;
            memcpy((char *)s->kv + (size_t)b * s->blk_elems * esz, (char *)s->kv + (size_t)old * s->blk_elems * esz,
                   s->blk_elems * esz);
            blk_drop(s, old);
            q->blk[i] = b;
        }
    }
    while (q->nblk * BLK < q->len + n) q->blk[q->nblk++] = blk_take(s);
}

int fg_ctx_seq_new(fg_ctx *s) {
    for (int i = 0; i < s->max_seqs; i++)
        if (!s->seqs[i].live) {
            s->seqs[i].live = 1;
            s->seqs[i].len = s->seqs[i].nblk = 0;
            return i;
        }
    return fg_set_error("context: all %d sequences are in use (hint: fg_ctx_seq_remove one, or create the context "
                        "with a larger max_seqs)", s->max_seqs);
}

static kv_seq *seq_at(const fg_ctx *s, int seq, const char *what) {
    if (seq < 0 || seq >= s->max_seqs || !s->seqs[seq].live) {
        fg_set_error("context: %s: no sequence %d (live ids come from fg_ctx_seq_new / fg_ctx_seq_fork)", what, seq);
        return NULL;
    }
    return &s->seqs[seq];
}

int fg_ctx_seq_fork(fg_ctx *s, int seq) {
    kv_seq *src = seq_at(s, seq, "fork");
    if (!src) return -1;
    int id = fg_ctx_seq_new(s);
    if (id < 0) return -1;
    kv_seq *d = &s->seqs[id];
    src = &s->seqs[seq];
    d->len = src->len;
    d->nblk = src->nblk;
    for (int i = 0; i < src->nblk; i++) { d->blk[i] = src->blk[i]; s->ref[src->blk[i]]++; }
    return id;
}

int fg_ctx_seq_truncate(fg_ctx *s, int seq, int len) {
    kv_seq *q = seq_at(s, seq, "truncate");
    if (!q) return -1;
    if (len < 0 || len > q->len)
        return fg_set_error("context: truncate sequence %d to %d positions: it holds %d (a length in [0, %d])", seq, len,
                            q->len, q->len);
    int keep = (len + BLK - 1) / BLK;
    while (q->nblk > keep) blk_drop(s, q->blk[--q->nblk]);
    q->len = len;
    return 0;
}

int fg_ctx_seq_remove(fg_ctx *s, int seq) {
    if (fg_ctx_seq_truncate(s, seq, 0)) return -1;
    s->seqs[seq].live = 0;
    return 0;
}

int fg_ctx_seq_len(const fg_ctx *s, int seq) {
    const kv_seq *q = seq_at(s, seq, "length");
    return q ? q->len : -1;
}

int fg_ctx_free_positions(const fg_ctx *s) { return s->nfree * BLK; }

int fg_ctx_set_mla_prefill(fg_ctx *s, int form) {
    int old = s->mla_prefill;
    if (form >= FG_MLA_AUTO && form <= FG_MLA_EXPANDED) s->mla_prefill = form;
    return old;
}

int fg_ctx_cache_kind(const fg_ctx *s) { return s->kind; }
const fg_wstore *fg_ctx_store(const fg_ctx *s) { return s->ws; }
int fg_ctx_max_len(const fg_ctx *s) { return s->max_T; }
size_t fg_ctx_position_bytes(const fg_ctx *s) {
    return (size_t)s->ws->cfg.num_hidden_layers * (s->kw + s->vw) * (s->kv_bf16 ? 2 : 4);
}

// ---- create / free ---------------------------------------------------------------------------

// Two-pass carve of the scratch arena (base NULL: count bytes only).
static size_t carve(fg_ctx *s, char *base) {
    const fg_config *c = &s->ws->cfg;
    size_t n = (size_t)s->max_rows, off = 0, nt = (size_t)s->nthreads;
    int C = c->hidden_size, H = c->num_attention_heads;
    int Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dh = c->head_dim;
    int E = c->n_routed_experts, K = c->num_experts_per_tok, Fe = c->moe_intermediate_size;
    int Rq = c->q_lora_rank, Rkv = c->kv_lora_rank, F = 0, moe = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        int is_moe = fg_config_is_moe_layer(c, l);
        moe |= is_moe;
        F = FG_MAX(F, is_moe ? c->n_shared_experts * Fe : c->intermediate_size);
    }
#define TAKE(ptr, count, type) do { size_t bytes_ = ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63; \
        (ptr) = base ? (type *)(base + off) : (ptr); off += bytes_; } while (0)
    TAKE(s->rseq, n, int); TAKE(s->rpos, n, int); TAKE(s->cnt, s->max_seqs, int);
    TAKE(s->runs, 3 * n, int); TAKE(s->solo, n, int); TAKE(s->want, n, int);
    TAKE(s->seq_mem, (size_t)s->max_seqs * s->max_blk, int);
    TAKE(s->x, n * C, float); TAKE(s->xn, n * C, float); TAKE(s->x2, n * C, float); TAKE(s->xn2, n * C, float);
    if (c->attn_type == FG_ATTN_MLA) {
        if (Rq > 0) { TAKE(s->qa, n * Rq, float); TAKE(s->qan, n * Rq, float); }
        TAKE(s->q, n * H * (Dn + Dr), float);
        TAKE(s->kva, n * (Rkv + Dr), float); TAKE(s->ckv, n * Rkv, float);
        TAKE(s->y, n * H * Dv, float);
        if (s->kind == FG_KV_LATENT) {
            TAKE(s->qlat, n * H * s->kw, float); TAKE(s->olat, nt * Rkv, float);
            TAKE(s->lpart, (size_t)FG_MAX(LAT_SPANS, s->nthreads) * H * (Rkv + 2), float); TAKE(s->lsc, nt * H * LAT_BLOCK, float);
            if (n >= LATENT_GEMM_MIN) {
                TAKE(s->pq, nt * ATT_ROWS * (Rkv + Dr), float); TAKE(s->ps, nt * ATT_ROWS * s->max_T, float);
                TAKE(s->po, nt * ATT_ROWS * Rkv, float); TAKE(s->kvf, (size_t)s->max_T * (Rkv + Dr), float);
                if (nt * s->max_T * (Dn + Dr + Dv) * sizeof(float) <= EXPAND_MAX_BYTES) TAKE(s->kvx, nt * s->max_T * (Dn + Dr + Dv), float);
            }
            if (s->ws->v.layers[0].wkv_b.type != FG_F32) {
                TAKE(s->wkvb, nt * (Dn + Dv) * Rkv, float); TAKE(s->wkvb_key, nt, int);
            }
        } else {
            TAKE(s->kvb, n * H * (Dn + Dv), float);
            TAKE(s->kn, n * s->kw, float); TAKE(s->vn, n * s->vw, float);
        }
    } else {
        TAKE(s->q, n * H * Dh, float);
        TAKE(s->y, n * H * Dh, float);
        TAKE(s->kn, n * s->kw, float); TAKE(s->vn, n * s->vw, float);
    }
    if (F > 0) { TAKE(s->h1, n * F, float); TAKE(s->h3, n * F, float); TAKE(s->act, n * F, float); }
    if (moe) {
        fg_moe_bufs *b = &s->moe;
        TAKE(b->scores, n * E, float); TAKE(b->wts, n * K, float); TAKE(b->idx, n * K, int);
        TAKE(b->slot_tok, n * K, int); TAKE(b->slot_of, n * K, int);
        TAKE(b->expert_off, E + 1, int); TAKE(b->fill, E, int);
        TAKE(b->xe, n * K * C, float); TAKE(b->eh1, n * K * Fe, float); TAKE(b->eh3, n * K * Fe, float);
        TAKE(b->ea, n * K * Fe, float); TAKE(b->ey, n * K * C, float);
        b->h1 = s->h1; b->h3 = s->h3; b->act = s->act;
    }
    TAKE(s->probs, nt * s->max_T, float);
#undef TAKE
    return off;
}

// The arena in 2 MiB-aligned memory that the kernel may back with huge pages: a decode step reads
// every live sequence's blocks, scattered over the arena, and with 4 KiB pages a block of 32
// positions spans several pages (a TLB miss each).
static void *kv_alloc(size_t bytes) {
    size_t huge = (size_t)2 << 20, len = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, len ? len : huge);
    if (!p) { fg_set_error("out of memory allocating the KV cache (%.1f MiB)", bytes / 1048576.0); return NULL; }
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);
#endif
    memset(p, 0, len);
    return p;
}

fg_ctx *fg_ctx_create(const fg_wstore *ws, const fg_ctx_params *p) {
    if (!ws || !p) { fg_set_error("context: no weights or no parameters"); return NULL; }
    const fg_config *c = &ws->cfg;
    int kind = p->kind;
    if (kind == FG_KV_AUTO) kind = c->attn_type == FG_ATTN_MLA ? FG_KV_LATENT : FG_KV_FULL;
    if (kind != FG_KV_FULL && !(kind == FG_KV_LATENT && c->attn_type == FG_ATTN_MLA)) {
        fg_set_error("decoding session: cache kind %d is not available for this model (the latent cache needs MLA)", kind);
        return NULL;
    }
    if (p->kv_type != FG_F32 && p->kv_type != FG_BF16) {
        fg_set_error("decoding session: the KV cache holds f32 or bf16 values (got type %d)", p->kv_type);
        return NULL;
    }
    int max_T = p->max_len > 0 ? p->max_len : FG_MIN(p->n_ctx, c->max_position_embeddings);
    if (max_T < 1 || max_T > c->max_position_embeddings) {
        fg_set_error("decoding session: max_T must be in [1, max_position_embeddings=%d] (got %d)",
                     c->max_position_embeddings, max_T);
        return NULL;
    }
    if (p->n_ctx < 1 || p->max_seqs < 1 || p->max_seqs > 65536 || p->max_batch < 1 || p->max_batch > 65536)
    {
        fg_set_error("context: n_ctx, max_seqs and max_batch must be >= 1 (max_seqs and max_batch <= 65536); "
                     "got %d, %d, %d", p->n_ctx, p->max_seqs, p->max_batch);
        return NULL;
    }
    fg_ctx *s = calloc(1, sizeof *s);
    if (!s) { fg_set_error("out of memory for a decoding session"); return NULL; }
    s->ws = ws;
    s->kind = kind;
    s->kv_bf16 = p->kv_type == FG_BF16;
    // A context whose weights are bf16 or Q8_0 multiplies them on the bf16 GEMM (activations rounded
    // to bf16, fp32 accumulation); its prefill attention does the same (q, k, v and the softmax
    // probabilities rounded to bf16 as they are packed), as flash attention does in bf16 on GPUs.
    s->att_prec = fg_wstore_weights(ws) == FG_F32 ? FG_F32 : FG_BF16;
    s->max_T = max_T;
    s->max_rows = p->max_batch;
    s->max_seqs = p->max_seqs;
    s->max_blk = (max_T + BLK - 1) / BLK;
    s->nthreads = FG_MAX(omp_threads(), fg_pool_threads()); // scratch rows for either kind of worker
    s->max_heads = c->num_attention_heads;
    int H = c->num_attention_heads;
    if (kind == FG_KV_LATENT) {
        s->kw = c->kv_lora_rank + c->qk_rope_head_dim;
        s->vw = 0;
    } else if (c->attn_type == FG_ATTN_MLA) {
        s->kw = H * (c->qk_nope_head_dim + c->qk_rope_head_dim);
        s->vw = H * c->v_head_dim;
    } else {
        s->kw = s->vw = c->num_key_value_heads * c->head_dim;
    }
    s->blk_elems = (size_t)c->num_hidden_layers * BLK * (s->kw + s->vw);
    s->nblocks = (p->n_ctx + BLK - 1) / BLK;
    size_t bytes = carve(s, NULL);
    // The cache, the scratch and what the store holds in memory must fit together: refused here
    // rather than paged out later (weights in a file mapping are not counted: the kernel can drop
    // and re-read those pages).
    double kv_bytes = (double)s->nblocks * s->blk_elems * (s->kv_bf16 ? 2 : 4), mem = fg_phys_mem_bytes();
    double need = kv_bytes + (double)bytes + (double)ws->owned_bytes;
    if (mem > 0 && need > 0.9 * mem) {
        fg_set_error("decoding session: the KV cache (%.1f GiB for %d positions), scratch (%.1f GiB) and the weights held in "
                     "memory (%.1f GiB) need %.1f GiB but this machine has %.1f GiB (hint: a shorter context, --kv-type bf16, "
                     "or bf16 weights)", kv_bytes / 1073741824.0, p->n_ctx, bytes / 1073741824.0,
                     ws->owned_bytes / 1073741824.0, need / 1073741824.0, mem / 1073741824.0);
        free(s);
        return NULL;
    }
    // Packed weights belong to the store (every context shares them), made by its first context:
    // up to a quarter of this machine's memory, less what would leave this context above 90% of it.
    // A model whose packed copy would not fit whole gets none (products pack as they go): it is one
    // too big to hold twice, likely a mapped file whose pages should rather stay in the page cache.
    if (!ws->packs) {
        int64_t total, active;
        fg_config_param_counts(c, &total, &active);
        double packed = (double)total * (fg_wstore_weights(ws) == FG_F32 ? 4 : 2);
        double budget = mem > 0 ? FG_MIN(0.25 * mem, 0.9 * mem - need) : 0;
        ((fg_wstore *)ws)->packs = fg_packs_create(packed <= budget ? (size_t)budget : 0);
        if (!ws->packs) { free(s); fg_set_error("out of memory"); return NULL; }
    }
    s->ex = (fg_exec){&fg_backend_cpu, ws->packs, FG_F32, EXPERT_PAR_ROWS};
    s->kv = kv_alloc((size_t)s->nblocks * s->blk_elems * (s->kv_bf16 ? 2 : 4));
    s->ref = calloc((size_t)s->nblocks, sizeof(int));
    s->freel = malloc(sizeof(int) * (size_t)s->nblocks);
    s->seqs = calloc((size_t)s->max_seqs, sizeof(kv_seq));
    s->mem = aligned_alloc(64, bytes);
    if (!s->mem && s->kv) fg_set_error("out of memory: decoding scratch needs %.1f MiB", bytes / 1048576.0);
    if (!s->kv || !s->mem || !s->ref || !s->freel || !s->seqs) {
        if (s->kv && s->mem) fg_set_error("out of memory");
        fg_ctx_free(s);
        return NULL;
    }
    carve(s, s->mem);
    for (int b = 0; b < s->nblocks; b++) s->freel[b] = s->nblocks - 1 - b; // block 0 taken first
    s->nfree = s->nblocks;
    for (int i = 0; i < s->max_seqs; i++) s->seqs[i].blk = s->seq_mem + (size_t)i * s->max_blk;
    if (s->wkvb_key) memset(s->wkvb_key, 0, sizeof(int) * (size_t)s->nthreads);
    return s;
}

void fg_ctx_free(fg_ctx *s) {
    if (!s) return;
    free(s->kv); free(s->ref); free(s->freel); free(s->seqs);
    free(s->mem);
    free(s);
}

// ---- attention over the cache ----------------------------------------------------------------

static void add_into(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// Rows (query, head) of an attention: one token's heads on the decode helpers (pool.h), more on
// OpenMP threads. fn(ctx, row, tid) with tid < s->nthreads.
static void attention_rows(fg_ctx *s, int rows, long work, void (*fn)(void *, int, int), void *ctx) {
    if (work <= 65536) {
        for (int r = 0; r < rows; r++) fn(ctx, r, 0);
    } else if (rows <= s->max_heads) {
        fg_pool_for(rows, fn, ctx);
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(s->nthreads, omp_threads()))
        for (int r = 0; r < rows; r++) fn(ctx, r, THREAD_ID());
    }
}

// Full cache: y (row i, head h) = softmax attention of q over positions [0, pos_i] of row i's
// sequence, head h reading kv head h / (H / Hkv). The arithmetic of attention_row (ops.c): dot
// products of the cached keys, fg_softmax_scaled, then the weighted sum of values.
typedef struct { fg_ctx *s; int l, n, H, Hkv, Dk, Dv, sq; float scale; } full_job;

static void full_row(void *ctx, int r, int tid) {
    const full_job *j = ctx;
    fg_ctx *s = j->s;
    int H = j->H, i = r / H, h = r % H, kh = h / (H / j->Hkv), t = s->rpos[i], Dk = j->Dk, Dv = j->Dv;
    const kv_seq *q = &s->seqs[s->rseq[i]];
    float *o = s->y + ((size_t)i * H + h) * Dv, *p = s->probs + (size_t)tid * s->max_T;
    const float *qr = s->q + (size_t)i * j->sq + (size_t)h * Dk;
    for (int u = 0; u <= t; u++) p[u] = kv_dot(s, qr, kv_key(s, q, j->l, u) + (size_t)kh * Dk, Dk);
    fg_softmax_scaled(p, t + 1, j->scale);
    for (int d = 0; d < Dv; d++) o[d] = 0;
    for (int u = 0; u <= t; u++) kv_axpy(s, o, p[u], kv_val(s, q, j->l, u) + (size_t)kh * Dv, Dv);
}

static void full_attention(fg_ctx *s, int l, int n, int H, int Hkv, int Dk, int Dv, float scale) {
    full_job j = {s, l, n, H, Hkv, Dk, Dv, H * Dk, scale};
    long work = 0;
    for (int i = 0; i < n; i++) work += (long)H * (s->rpos[i] + 1) * (Dk + Dv);
    attention_rows(s, n * H, work, full_row, &j);
}

// Absorbed MLA attention over the latent cache. The cache row of position u is [c_kv(u) (Rkv) |
// k_pe(u) (Dr)], shared by every head (multi-query form). For query head h: q_lat = W_UK_h^T
// q_nope (Rkv), score(u) = (q_lat . c_kv(u) + q_pe . k_pe(u)) * scale, o_lat = sum_u p(u) c_kv(u),
// y_h = W_UV_h o_lat. W_UK_h / W_UV_h are the Dn key rows and Dv value rows of head h in wkv_b
// (H*(Dn+Dv), Rkv), read in fp32 (a wkv_b stored in another type is dequantised one head at a
// time into per-thread scratch).
static const float *wkv_b_head(fg_ctx *s, int l, int h, int tid) { // (Dn+Dv, Rkv) fp32 rows of head h
    const fg_config *c = &s->ws->cfg;
    int Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    fg_wref wkv_b = s->ws->v.layers[l].wkv_b;
    if (wkv_b.type == FG_F32) return (const float *)wkv_b.p + (size_t)h * (Dn + Dv) * Rkv;
    float *tmp = s->wkvb + (size_t)tid * (Dn + Dv) * Rkv;
    int key = l * c->num_attention_heads + h + 1;
    if (s->wkvb_key[tid] == key) return tmp; // this thread converted the same head last time
    s->wkvb_key[tid] = key;
    size_t rb = fg_qrow_bytes(wkv_b.type, Rkv);
    const uint8_t *src = (const uint8_t *)wkv_b.p + (size_t)h * (Dn + Dv) * rb;
    for (int d = 0; d < Dn + Dv; d++) fg_dequantize_row(tmp + (size_t)d * Rkv, src + (size_t)d * rb, Rkv, wkv_b.type);
    return tmp;
}

// One (row, head) of the absorbed form, row by row over the cache. rows: the batch rows to run.
typedef struct { fg_ctx *s; int l; const int *rows; } latent_job;

static void latent_row(void *ctx, int r, int tid) {
    const latent_job *jb = ctx;
    fg_ctx *s = jb->s;
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int Dq = Dn + Dr, Rkv = c->kv_lora_rank;
    int i = jb->rows[r / H], h = r % H, t = s->rpos[i];
    const kv_seq *sq = &s->seqs[s->rseq[i]];
    const float *q = s->q + ((size_t)i * H + h) * Dq, *wh = wkv_b_head(s, jb->l, h, tid);
    float *ql = s->qlat + ((size_t)i * H + h) * s->kw, *ol = s->olat + (size_t)tid * Rkv;
    float *p = s->probs + (size_t)tid * s->max_T;
    for (int k = 0; k < Rkv; k++) ql[k] = 0;
    for (int d = 0; d < Dn; d++) fg_vaxpy(ql, q[d], wh + (size_t)d * Rkv, Rkv); // q_lat += q_nope[d] W_UK_h[d, :]
    memcpy(ql + Rkv, q + Dn, sizeof(float) * Dr);
    for (int u = 0; u <= t; u++) p[u] = kv_dot(s, ql, kv_key(s, sq, jb->l, u), s->kw);
    fg_softmax_scaled(p, t + 1, s->ws->softmax_scale);
    for (int k = 0; k < Rkv; k++) ol[k] = 0;
    for (int u = 0; u <= t; u++) kv_axpy(s, ol, p[u], kv_key(s, sq, jb->l, u), Rkv);
    float *o = s->y + ((size_t)i * H + h) * Dv;
    for (int d = 0; d < Dv; d++) o[d] = fg_vdot(wh + (size_t)(Dn + d) * Rkv, ol, Rkv); // y_h = W_UV_h o_lat
}

// ---- latent decode of one token over a long cache (the multi-query form made to pay) ----------
// Every head attends over the same cached rows, so instead of one pass over the cache per head,
// the positions are split into spans (run in parallel), each span is walked in blocks of
// LAT_BLOCK rows (contiguous: a block never straddles two cache blocks), and each row is read
// once for all heads: scores of all heads for the block, then o_lat_h += p_h(u) c_kv(u) for all
// heads while the row is in L1. Softmax runs online per span (running max and sum, rescaled per
// block) and the spans' partials are merged per head (flash-decoding). Same math as latent_row;
// only the summation order differs.
typedef struct { fg_ctx *s; int l, i, t, nspans, span, slot0; } latdec_job; // span sp's partials at lpart slot slot0 + sp

static void latdec_qlat(void *ctx, int h, int tid) { // [q_lat_h | q_pe_h], q_lat_h = W_UK_h^T q_nope_h
    const latdec_job *j = ctx;
    fg_ctx *s = j->s;
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Rkv = c->kv_lora_rank;
    const float *wh = wkv_b_head(s, j->l, h, tid), *q = s->q + ((size_t)j->i * H + h) * (Dn + Dr);
    float *ql = s->qlat + ((size_t)j->i * H + h) * s->kw;
    for (int k = 0; k < Rkv; k++) ql[k] = 0;
    for (int d = 0; d < Dn; d++) fg_vaxpy(ql, q[d], wh + (size_t)d * Rkv, Rkv);
    memcpy(ql + Rkv, q + Dn, sizeof(float) * Dr);
}

static void latdec_span(void *ctx, int sp, int tid) { // partial (o_h, m_h, l_h) of span sp for every head
    const latdec_job *j = ctx;
    fg_ctx *s = j->s;
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Rkv = c->kv_lora_rank, kw = s->kw;
    int u0 = sp * j->span, u1 = FG_MIN(j->t + 1, u0 + j->span);
    const kv_seq *sq = &s->seqs[s->rseq[j->i]];
    const float *qlat = s->qlat + (size_t)j->i * H * kw;
    float scale = s->ws->softmax_scale, *sc = s->lsc + (size_t)tid * H * LAT_BLOCK;
    float *part = s->lpart + (size_t)(j->slot0 + sp) * H * (Rkv + 2); // head h: o (Rkv), then m, l
    for (int h = 0; h < H; h++) {
        float *ph = part + (size_t)h * (Rkv + 2);
        for (int k = 0; k < Rkv; k++) ph[k] = 0;
        ph[Rkv] = -INFINITY;
        ph[Rkv + 1] = 0;
    }
    for (int b0 = u0; b0 < u1; b0 += LAT_BLOCK) {
        int nb = FG_MIN(LAT_BLOCK, u1 - b0);
        size_t base = kv_key(s, sq, j->l, b0); // rows b0 .. b0+nb-1 are contiguous
        const float *blk = (const float *)s->kv + base;
        for (int h = 0; h < H; h++) { // scores of head h for the block's rows (read from L1 after the first head)
            if (!s->kv_bf16) fg_vdot_rows(sc + h * LAT_BLOCK, qlat + (size_t)h * kw, blk, nb, kw, kw);
            else for (int k = 0; k < nb; k++) sc[h * LAT_BLOCK + k] = kv_dot(s, qlat + (size_t)h * kw, base + (size_t)k * kw, kw);
        }
        for (int h = 0; h < H; h++) { // online softmax: rescale the running sums to the new max
            float *ph = part + (size_t)h * (Rkv + 2), *sh = sc + h * LAT_BLOCK, mx = ph[Rkv];
            for (int k = 0; k < nb; k++) sh[k] *= scale;
            for (int k = 0; k < nb; k++) mx = sh[k] > mx ? sh[k] : mx;
            float r = expf(ph[Rkv] - mx); // exp(-inf) = 0 on the first block
            if (r != 1.0f) { for (int k = 0; k < Rkv; k++) ph[k] *= r; }
            float sum = fg_exp_sum(sh, nb, mx);
            ph[Rkv] = mx;
            ph[Rkv + 1] = ph[Rkv + 1] * r + sum;
        }
        for (int h = 0; h < H; h++) { // o_lat_h += p_h(u) c_kv(u) over the block, o_lat_h in registers
            float *ph = part + (size_t)h * (Rkv + 2);
            if (!s->kv_bf16) fg_vaxpy_rows(ph, sc + h * LAT_BLOCK, blk, nb, kw, Rkv);
            else for (int k = 0; k < nb; k++) kv_axpy(s, ph, sc[h * LAT_BLOCK + k], base + (size_t)k * kw, Rkv);
        }
    }
}

static void latdec_out(void *ctx, int h, int tid) { // merge the spans of head h, then y_h = W_UV_h o_lat_h
    const latdec_job *j = ctx;
    fg_ctx *s = j->s;
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    float *ol = s->olat + (size_t)tid * Rkv, M = -INFINITY, L = 0;
    for (int sp = j->slot0; sp < j->slot0 + j->nspans; sp++) {
        float m = s->lpart[((size_t)sp * H + h) * (Rkv + 2) + Rkv];
        M = m > M ? m : M;
    }
    for (int k = 0; k < Rkv; k++) ol[k] = 0;
    for (int sp = j->slot0; sp < j->slot0 + j->nspans; sp++) {
        const float *ph = s->lpart + ((size_t)sp * H + h) * (Rkv + 2);
        float w = expf(ph[Rkv] - M);
        L += w * ph[Rkv + 1];
        fg_vaxpy(ol, w, ph, Rkv);
    }
    float inv = 1.0f / L;
    const float *wh = wkv_b_head(s, j->l, h, tid);
    float *o = s->y + ((size_t)j->i * H + h) * Dv;
    for (int d = 0; d < Dv; d++) o[d] = fg_vdot(wh + (size_t)(Dn + d) * Rkv, ol, Rkv) * inv;
}

static void latent_decode(fg_ctx *s, int l, int i) {
    int H = s->ws->cfg.num_attention_heads, T = s->rpos[i] + 1;
    int nspans = FG_MIN(LAT_SPANS, (T + LAT_BLOCK - 1) / LAT_BLOCK);
    int span = ((T + nspans - 1) / nspans + LAT_BLOCK - 1) / LAT_BLOCK * LAT_BLOCK;
    nspans = (T + span - 1) / span;
    latdec_job j = {s, l, i, s->rpos[i], nspans, span, 0};
    fg_pool_for(H, latdec_qlat, &j);
    fg_pool_for(nspans, latdec_span, &j);
    fg_pool_for(H, latdec_out, &j);
}

// The same for one row of a batch on one thread: its whole context as one span (partials in the
// thread's own lpart slot), every head scored per cached row. Rows run side by side.
typedef struct { fg_ctx *s; int l; const int *rows; } latrow_job;

static void latent_row_all_heads(void *ctx, int r, int tid) {
    const latrow_job *jr = ctx;
    fg_ctx *s = jr->s;
    int H = s->ws->cfg.num_attention_heads, i = jr->rows[r], t = s->rpos[i];
    latdec_job j = {s, jr->l, i, t, 1, (t + 1 + LAT_BLOCK - 1) / LAT_BLOCK * LAT_BLOCK, tid};
    for (int h = 0; h < H; h++) latdec_qlat(&j, h, tid);
    latdec_span(&j, 0, tid);
    for (int h = 0; h < H; h++) latdec_out(&j, h, tid);
}

// Rows i < m of scores S (row stride t): row i sees positions [0, see0 + i); softmax over those
// (scaled), zero after them.
static void causal_softmax(float *S, int m, int t, int see0, float scale) {
    for (int i = 0; i < m; i++) {
        float *p = S + (size_t)i * t;
        fg_softmax_scaled(p, see0 + i, scale);
        for (int u = see0 + i; u < t; u++) p[u] = 0;
    }
}

// A run: n consecutive batch rows from r0 of one sequence at positions p0 .. p0+n-1, whose
// cache rows [0, p0+n) of the layer were gathered into s->kvf (fp32, contiguous).
typedef struct { int r0, n, p0; } att_run;

// Prefill of the absorbed attention on the packed GEMM, as tasks of one head and ATT_ROWS query
// rows, each on one thread with single-threaded products: [q_lat | q_pe] = [q_nope W_UK_h | q_pe],
// S = [q_lat | q_pe] cache[0, t)^T (one product: a cache row is [c_kv | k_pe]), a causal softmax
// per row, o_lat = P c_kv, y_h = o_lat W_UV_h^T. A row block only reads the t = p0 + (its last
// row) + 1 positions it can see, so the causal half of the run's square is never computed. The
// same sums as latent_row in another order.
static void latent_task(fg_ctx *s, int l, att_run r, const float *cache, int h, int rb, int tid) {
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int Dq = Dn + Dr, Rkv = c->kv_lora_rank, kw = s->kw;
    int i0 = rb * ATT_ROWS, m = FG_MIN(ATT_ROWS, r.n - i0), t = r.p0 + i0 + m;
    float *pq = s->pq + (size_t)tid * ATT_ROWS * kw, *ps = s->ps + (size_t)tid * ATT_ROWS * s->max_T;
    float *po = s->po + (size_t)tid * ATT_ROWS * Rkv;
    const float *wh = wkv_b_head(s, l, h, tid), *qh = s->q + ((size_t)(r.r0 + i0) * H + h) * Dq;
    fg_gemm(0, 0, m, Rkv, Dn, qh, (long)H * Dq, wh, Rkv, pq, kw, 0, NULL, s->att_prec);
    for (int i = 0; i < m; i++) memcpy(pq + (size_t)i * kw + Rkv, qh + (size_t)i * H * Dq + Dn, sizeof(float) * Dr);
    fg_gemm(0, 1, m, t, kw, pq, kw, cache, kw, ps, t, 0, NULL, s->att_prec);
    causal_softmax(ps, m, t, r.p0 + i0 + 1, s->ws->softmax_scale);
    fg_gemm(0, 0, m, Rkv, t, ps, t, cache, kw, po, Rkv, 0, NULL, s->att_prec);
    fg_gemm(0, 1, m, Dv, Rkv, po, Rkv, wh + (size_t)Dn * Rkv, Rkv, s->y + (size_t)(r.r0 + i0) * H * Dv + (size_t)h * Dv,
            (long)H * Dv, 0, NULL, s->att_prec);
}

// The expanded form of the same prefill (DeepSeek's own choice for prefill): per head, the keys
// and values of every visible position are rebuilt from the latent cache, [k_nope | v] (t, Dn+Dv)
// = c_kv wkv_b_h^T, then ordinary attention with q = [q_nope | q_pe] and k = [k_nope | k_pe]
// (k_pe straight from the cache). A score costs Dn+Dr multiply-adds and a value row Dv instead
// of the absorbed form's Rkv+Dr and Rkv, for the price of the expansion (t1 rows per head): it
// wins when the run is long compared with the context before it (mla_uses_expanded). One task
// per head; row blocks of ATT_ROWS skip the causal upper half as latent_task does.
static void expanded_head(fg_ctx *s, int l, att_run r, const float *cache, int h, int tid) {
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int Dq = Dn + Dr, Rkv = c->kv_lora_rank, kw = s->kw, t1 = r.p0 + r.n, ew = Dq + Dv;
    // kvx rows: [k_nope | k_pe | v] (Dn + Dr + Dv), so q . k is one product over Dq = Dn + Dr
    float *kvx = s->kvx + (size_t)tid * s->max_T * ew, *ps = s->ps + (size_t)tid * ATT_ROWS * s->max_T;
    fg_wref wkv_b = s->ws->v.layers[l].wkv_b;
    size_t rb = fg_qrow_bytes(wkv_b.type, Rkv);
    const uint8_t *wk = (const uint8_t *)wkv_b.p + (size_t)h * (Dn + Dv) * rb, *wv = wk + (size_t)Dn * rb;
    if (wkv_b.type == FG_F32) {
        fg_gemm(0, 1, t1, Dn, Rkv, cache, kw, (const float *)wk, Rkv, kvx, ew, 0, NULL, s->att_prec);
        fg_gemm(0, 1, t1, Dv, Rkv, cache, kw, (const float *)wv, Rkv, kvx + Dq, ew, 0, NULL, s->att_prec);
    } else {
        fg_gemm_qb(t1, Dn, Rkv, cache, kw, wk, (long)rb, wkv_b.type, kvx, ew, NULL, FG_BF16);
        fg_gemm_qb(t1, Dv, Rkv, cache, kw, wv, (long)rb, wkv_b.type, kvx + Dq, ew, NULL, FG_BF16);
    }
    for (int u = 0; u < t1; u++) memcpy(kvx + (size_t)u * ew + Dn, cache + (size_t)u * kw + Rkv, sizeof(float) * Dr);
    for (int i0 = 0; i0 < r.n; i0 += ATT_ROWS) {
        int m = FG_MIN(ATT_ROWS, r.n - i0), t = r.p0 + i0 + m;
        const float *qh = s->q + ((size_t)(r.r0 + i0) * H + h) * Dq;
        fg_gemm(0, 1, m, t, Dq, qh, (long)H * Dq, kvx, ew, ps, t, 0, NULL, s->att_prec);
        causal_softmax(ps, m, t, r.p0 + i0 + 1, s->ws->softmax_scale);
        fg_gemm(0, 0, m, Dv, t, ps, t, kvx + Dq, ew, s->y + (size_t)(r.r0 + i0) * H * Dv + (size_t)h * Dv, (long)H * Dv,
                0, NULL, s->att_prec);
    }
}

// Multiply-adds per head of the two prefill forms for n rows after p0 cached positions.
static int mla_uses_expanded(const fg_ctx *s, int n, int p0) {
    const fg_config *c = &s->ws->cfg;
    double Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    double pairs = (double)n * p0 + (double)n * (n + 1) / 2; // (query, visible position) pairs
    double expanded = (p0 + n) * Rkv * (Dn + Dv) + pairs * (Dn + Dr + Dv);
    double absorbed = n * Rkv * (Dn + Dv) + pairs * (2 * Rkv + Dr);
    if (!s->kvx || s->mla_prefill == FG_MLA_ABSORBED) return 0;
    return s->mla_prefill == FG_MLA_EXPANDED || expanded < absorbed;
}

static void latent_run_gemm(fg_ctx *s, int l, att_run r) {
    int H = s->ws->cfg.num_attention_heads, nb = (r.n + ATT_ROWS - 1) / ATT_ROWS, kw = s->kw, t1 = r.p0 + r.n;
    const kv_seq *q = &s->seqs[s->rseq[r.r0]];
    // The sequence's rows of this layer, contiguous and fp32, once for all tasks.
#pragma omp parallel for schedule(static) if ((long)t1 * kw > 65536)
    for (int b = 0; b < (t1 + BLK - 1) / BLK; b++) {
        int u0 = b * BLK, nu = FG_MIN(BLK, t1 - u0);
        kv_get(s, s->kvf + (size_t)u0 * kw, kv_key(s, q, l, u0), nu * kw);
    }
    const float *cache = s->kvf;
    if (mla_uses_expanded(s, r.n, r.p0)) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(s->nthreads, omp_threads()))
        for (int h = 0; h < H; h++) expanded_head(s, l, r, cache, h, THREAD_ID());
        return;
    }
    // Head by head (a converted wkv_b head stays put), each head's costliest (last) row blocks first.
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(s->nthreads, omp_threads()))
    for (int task = 0; task < nb * H; task++) latent_task(s, l, r, cache, task / nb, nb - 1 - task % nb, THREAD_ID());
}

// Splits the batch into runs (consecutive rows of one sequence at consecutive positions); runs
// of at least LATENT_GEMM_MIN rows go to the GEMM, the other rows are attended one by one.
static void latent_attention(fg_ctx *s, int l, int n) {
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    if (n == 1 && s->rpos[0] + 1 >= 2 * LAT_BLOCK) { latent_decode(s, l, 0); return; }
    int nsolo = 0;
    long work = 0;
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && s->rseq[j] == s->rseq[i] && s->rpos[j] == s->rpos[j - 1] + 1) j++;
        if (s->pq && j - i >= LATENT_GEMM_MIN) {
            latent_run_gemm(s, l, (att_run){i, j - i, s->rpos[i]});
        } else {
            for (int k = i; k < j; k++) {
                s->solo[nsolo++] = k;
                work += (long)H * ((s->rpos[k] + 1) * (long)(Rkv + Dr) + (long)(Dn + Dv) * Rkv);
            }
        }
        i = j;
    }
    if (!nsolo) return;
    if (nsolo > 1) { // rows of different sequences (a decode step): one row, all heads, per task
        latrow_job jr = {s, l, s->solo};
        if (work <= 65536) {
            for (int r = 0; r < nsolo; r++) latent_row_all_heads(&jr, r, 0);
        } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(s->nthreads, omp_threads()))
            for (int r = 0; r < nsolo; r++) latent_row_all_heads(&jr, r, THREAD_ID());
        }
        return;
    }
    latent_job j = {s, l, s->solo};
    attention_rows(s, nsolo * H, work, latent_row, &j);
}

// ---- the forward over a batch ----------------------------------------------------------------

// MLA on s->xn (n, C): appends layer l's cache rows (the latent form, or full per-head keys and
// values), then s->x2 = x + wo(attention).
static void mla_layer(fg_ctx *s, int l, int n) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    const fg_wlayer *w = &ws->v.layers[l];
    int C = c->hidden_size, H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim;
    int Dv = c->v_head_dim, Dq = Dn + Dr, Rkv = c->kv_lora_rank;
    fg_mla_proj o = {s->qa, s->qan, NULL, s->q, s->kva, NULL, s->ckv, NULL};
    fg_mla_project(&s->ex, &o, s->xn, w, c, ws->rope, s->rpos, n);
    if (s->kind == FG_KV_LATENT) {
        for (int i = 0; i < n; i++) // the cache row is [c_kv | roped k_pe]
            kv_put(s, kv_key(s, &s->seqs[s->rseq[i]], l, s->rpos[i]), s->kva + (size_t)i * s->kw, s->kw);
        latent_attention(s, l, n);
    } else {
        fg_exec_matmul(&s->ex, s->kvb, s->ckv, w->wkv_b, NULL, n, Rkv, H * (Dn + Dv));
#pragma omp parallel for schedule(static) if ((long)n * H * (Dq + Dv) > 65536)
        for (int i = 0; i < n; i++) {
            const kv_seq *q = &s->seqs[s->rseq[i]];
            float *k = s->kn + (size_t)i * s->kw, *v = s->vn + (size_t)i * s->vw;
            fg_mla_expand_row(k, v, s->kvb + (size_t)i * H * (Dn + Dv), s->kva + (size_t)i * (Rkv + Dr) + Rkv, H, Dn, Dr, Dv);
            kv_put(s, kv_key(s, q, l, s->rpos[i]), k, s->kw);
            kv_put(s, kv_val(s, q, l, s->rpos[i]), v, s->vw);
        }
        full_attention(s, l, n, H, H, Dq, Dv, ws->softmax_scale);
    }
    fg_exec_matmul(&s->ex, s->x2, s->y, w->wo, NULL, n, H * Dv, C);
    add_into(s->x2, s->x, (size_t)n * C);
}

// GQA on s->xn: keys and values of the rows are projected, roped and appended.
static void gqa_layer(fg_ctx *s, int l, int n) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    const fg_wlayer *w = &ws->v.layers[l];
    int C = c->hidden_size, H = c->num_attention_heads, Hkv = c->num_key_value_heads, Dh = c->head_dim;
    fg_gqa_project(&s->ex, s->q, s->kn, s->vn, s->xn, w, c, ws->rope, s->rpos, n);
    for (int i = 0; i < n; i++) {
        const kv_seq *q = &s->seqs[s->rseq[i]];
        kv_put(s, kv_key(s, q, l, s->rpos[i]), s->kn + (size_t)i * s->kw, s->kw);
        kv_put(s, kv_val(s, q, l, s->rpos[i]), s->vn + (size_t)i * s->vw, s->vw);
    }
    full_attention(s, l, n, H, Hkv, Dh, Dh, ws->softmax_scale);
    fg_exec_matmul(&s->ex, s->x2, s->y, w->wo, NULL, n, H * Dh, C);
    add_into(s->x2, s->x, (size_t)n * C);
}

// Runs n rows (checked, blocks reserved, s->rseq/rpos set) through every layer; logits (nwant, V)
// of the rows in s->want.
static void forward_rows(fg_ctx *s, const int32_t *tokens, int n, int nwant, float *logits) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    const fg_backend *be = s->ex.be;
    int C = c->hidden_size;
    float eps = c->rms_norm_eps;
    size_t erow = fg_qrow_bytes(ws->v.embed.type, C);
    for (int i = 0; i < n; i++) // the embedding lookup dequantises one row per token
        fg_dequantize_row(s->x + (size_t)i * C, (const uint8_t *)ws->v.embed.p + (size_t)tokens[i] * erow, C, ws->v.embed.type);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const fg_wlayer *w = &ws->v.layers[l];
        be->rmsnorm(s->xn, NULL, s->x, w->attn_norm, n, C, eps);
        if (c->attn_type == FG_ATTN_MLA) mla_layer(s, l, n);
        else gqa_layer(s, l, n);
        be->rmsnorm(s->xn2, NULL, s->x2, w->ffn_norm, n, C, eps);
        // the FFN writes the next layer's input over x (no longer needed), then adds the residual
        if (fg_config_is_moe_layer(c, l)) fg_moe_forward(&s->ex, s->x, &s->moe, NULL, s->xn2, w, c, n);
        else fg_swiglu_ffn(&s->ex, s->x, s->h1, s->h3, s->act, s->xn2, w->w1, w->w2, w->w3, n, C, c->intermediate_size);
        add_into(s->x, s->x2, (size_t)n * C);
    }
    if (!nwant) return;
    for (int k = 0; k < nwant; k++) memcpy(s->x2 + (size_t)k * C, s->x + (size_t)s->want[k] * C, sizeof(float) * C);
    be->rmsnorm(s->xn, NULL, s->x2, ws->v.final_norm, nwant, C, eps);
    fg_exec_matmul(&s->ex, logits, s->xn, ws->v.lm_head, NULL, nwant, C, c->vocab_size);
}

int fg_ctx_decode(fg_ctx *s, const fg_batch *b, float *logits) {
    if (!s || !b || !b->token || !b->seq || b->n < 1)
        return fg_set_error("context decode: need a context and a batch of n >= 1 rows with tokens and sequence ids");
    int n = b->n, V = s->ws->cfg.vocab_size, nwant = 0;
    if (n > s->max_rows)
        return fg_set_error("context decode: %d rows exceed the context's max_batch of %d (split the batch)", n, s->max_rows);
    memset(s->cnt, 0, sizeof(int) * (size_t)s->max_seqs);
    for (int i = 0; i < n; i++) {
        if (b->token[i] < 0 || b->token[i] >= V)
            return fg_set_error("token id %d at index %d is outside the vocabulary [0, %d)", b->token[i], i, V);
        const kv_seq *q = seq_at(s, b->seq[i], "decode");
        if (!q) return -1;
        int want = q->len + s->cnt[b->seq[i]]++;
        if (b->pos && b->pos[i] != want)
            return fg_set_error("context decode: row %d of sequence %d is at position %d but the next position is %d "
                                "(rows append in order; fg_ctx_seq_truncate to rewrite)", i, b->seq[i], b->pos[i], want);
        if (want >= s->max_T)
            return fg_set_error("feeding sequence %d past %d positions overflows its KV cache (hint: truncate or remove "
                                "it, or create the context with a larger max_len)", b->seq[i], s->max_T);
        s->rseq[i] = b->seq[i];
        s->rpos[i] = want;
        if (b->logits && b->logits[i]) s->want[nwant++] = i;
    }
    if (nwant && !logits) return fg_set_error("context decode: rows ask for logits but no output buffer was given");
    int need = 0;
    for (int q = 0; q < s->max_seqs; q++)
        if (s->cnt[q]) need += blocks_needed(s, &s->seqs[q], s->cnt[q]);
    if (need > s->nfree)
        return fg_set_error("context decode: the KV cache is full: %d more blocks of %d positions needed, %d free "
                            "(remove or truncate sequences, or create the context with a larger n_ctx)", need, BLK, s->nfree);
    for (int q = 0; q < s->max_seqs; q++)
        if (s->cnt[q]) blocks_reserve(s, &s->seqs[q], s->cnt[q]);
    forward_rows(s, b->token, n, nwant, logits);
    for (int q = 0; q < s->max_seqs; q++) s->seqs[q].len += s->cnt[q];
    return 0;
}
