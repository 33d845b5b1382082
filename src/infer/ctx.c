// ctx.c: the batched inference context: many sequences over one paged KV cache, one forward per
// batch of rows (contracts in frugal.h, fg_ctx_*; design in docs/architecture.md).
//
// A batch is a list of rows (token, sequence, position). Every product runs once over all rows
// (the layers of model/layers.c: weights are read once per step for the whole batch); only
// attention looks at each row's own sequence, through its block table.
//
// The cache is an arena of blocks of FG_KV_BLOCK positions, layer-major: layer l's part of block
// b holds the keys of its positions, then their values, element (l, u) at
//   (l * nblocks + b) * blk_elems + (u % BLK) * kw          (keys; values after BLK*kw)
// so a layer's parts of consecutive blocks are adjacent: a sequence whose blocks were taken in a
// row (the free list hands out ascending ids) has each layer's context in one stretch, which the
// hardware prefetchers stream (a block holding all layers cut it into 20 KB pieces at bench-moe).
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

#define BLK FG_KV_BLOCK
#define EXPERT_PAR_ROWS 16 // a MoE layer runs its experts side by side from this many rows

_Static_assert(FG_KV_BLOCK % FG_ATTN_ROW_BLOCK == 0, "the attention's row blocks must not straddle two cache blocks");

typedef struct {
    int live;
    int len;        // positions cached
    int nblk;       // blocks in the table
    int *blk;       // (max_blk) block ids
    int mlen[FG_MTP_MAX]; // positions MTP depth k+1's cache layer holds (<= len; a context with mtp)
} kv_seq;

struct fg_ctx {
    const fg_wstore *ws;
    fg_exec ex;                 // the backend the layers run on, with the store's packed weights
    int kind;                   // FG_KV_FULL | FG_KV_LATENT
    int mla_prefill;            // FG_MLA_*
    int kv_type;                // cache elements: FG_F32, FG_BF16 or FG_Q8_0 (fg_kv_bytes)
    int max_T;                  // positions one sequence may hold
    int ncl;                    // cache layers: L, plus one per MTP depth when the context runs them
    float *cat;                 // (n, 2C) an MTP depth's [enorm(emb) | hnorm(h)]
    int max_rows;               // rows per decode
    int kw, vw;                 // values per cached position and layer: keys, values
    size_t blk_elems;           // elements of one layer's part of a block
    int nblocks, nfree;         // blocks in the arena, free ones
    void *kv;                   // the arena
    int *ref;                   // (nblocks) sequences holding each block
    int *freel;                 // (nblocks) free block ids (a stack)
    int max_seqs, max_blk;
    kv_seq *seqs;               // (max_seqs)
    int *seq_mem;               // block tables (max_seqs * max_blk)
    int nthreads;
    int att_prec;               // FG_F32 / FG_BF16: prefill attention's products (bf16 when the weights are not fp32)
    fg_attn_limits alim;        // what the backend's attention is asked for at most
    void *ascr;                 // its scratch (alim), carved with the rest
    const int **tabs;           // (n) each row's block table (set with rseq), for the attention
    void *mem;                  // scratch arena, carved below
    int *rseq, *rpos;           // (n) each row's sequence and position
    int *cnt;                   // (max_seqs) rows per sequence in the current batch (validation)
    int *runs;                  // (3n) runs of consecutive rows of one sequence: row, count, first pos
    int *want;                  // (n) rows whose logits are wanted
    float *x, *xn, *x2, *xn2;   // (n, C) residual stream, normed input, after attention, normed
    float *qa, *qan;            // (n, Rq) MLA q compression
    float *q;                   // (n, H*(Dn+Dr)) MLA or (n, H*Dh) GQA, roped
    float *kva, *ckv, *kvb;     // MLA (n, Rkv+Dr) [c_kv | k_pe], (n, Rkv) normed latent, (n, H*(Dn+Dv))
    float *kn, *vn;             // full cache: (n, kw) new keys and (n, vw) values before they enter the cache
    float *y;                   // (n, H*Dv) or (n, H*Dh) attention output before wo
    float *h1, *h3, *act;       // (n, max(F, Fs)) dense FFN or shared expert
    fg_moe_bufs moe;            // (n rows) MoE routing and expert buffers
};

// ---- the cache -------------------------------------------------------------------------------

static inline size_t kv_at(const fg_ctx *s, int l, int blk) { // element index of layer l's part of a block
    return (size_t)l * s->nblocks * s->blk_elems + (size_t)blk * s->blk_elems;
}
static inline size_t kv_key(const fg_ctx *s, const kv_seq *q, int l, int u) { // element index of key row u
    return kv_at(s, l, q->blk[u / BLK]) + (size_t)(u % BLK) * s->kw;
}
static inline size_t kv_val(const fg_ctx *s, const kv_seq *q, int l, int u) { // element index of value row u
    return kv_at(s, l, q->blk[u / BLK]) + (size_t)BLK * s->kw + (size_t)(u % BLK) * s->vw;
}
static void kv_put(fg_ctx *s, size_t at, const float *src, int n) {
    fg_quantize_row((uint8_t *)s->kv + fg_kv_bytes(s->kv_type, at), src, n, s->kv_type);
}

static int blk_take(fg_ctx *s) { int b = s->freel[--s->nfree]; s->ref[b] = 1; return b; }
static void blk_drop(fg_ctx *s, int b) { if (--s->ref[b] == 0) s->freel[s->nfree++] = b; }

// Copy on write: q's block i becomes its own copy (every cache layer) when a fork shares it.
// Returns 1 when it copied (or, dry, would copy: nothing changed).
static int blk_own(fg_ctx *s, kv_seq *q, int i, int dry) {
    int old = q->blk[i];
    if (s->ref[old] <= 1) return 0;
    if (dry) return 1;
    int b = blk_take(s);
    for (int l = 0; l < s->ncl; l++)
        memcpy((char *)s->kv + fg_kv_bytes(s->kv_type, kv_at(s, l, b)), (char *)s->kv + fg_kv_bytes(s->kv_type, kv_at(s, l, old)),
               fg_kv_bytes(s->kv_type, s->blk_elems));
    blk_drop(s, old);
    q->blk[i] = b;
    return 1;
}

// Blocks sequence q needs to append n positions: new ones past its table, plus a copy of its last
// block when it shares it and the append writes into it.
static int blocks_needed(const fg_ctx *s, const kv_seq *q, int n) {
    int need = (q->len + n + BLK - 1) / BLK - q->nblk;
    if (q->len % BLK && s->ref[q->blk[q->len / BLK]] > 1) need++;
    return need;
}

// Makes q's blocks for positions [len, len + n) its own (reserved by the caller's count).
static void blocks_reserve(fg_ctx *s, kv_seq *q, int n) {
    if (q->len % BLK) blk_own(s, q, q->len / BLK, 0);
    while (q->nblk * BLK < q->len + n) q->blk[q->nblk++] = blk_take(s);
}

int fg_ctx_seq_new(fg_ctx *s) {
    for (int i = 0; i < s->max_seqs; i++)
        if (!s->seqs[i].live) {
            s->seqs[i].live = 1;
            s->seqs[i].len = s->seqs[i].nblk = 0;
            memset(s->seqs[i].mlen, 0, sizeof s->seqs[i].mlen);
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
    memcpy(d->mlen, src->mlen, sizeof d->mlen);
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
    for (int k = 0; k < FG_MTP_MAX; k++) q->mlen[k] = FG_MIN(q->mlen[k], len);
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
    return (size_t)s->ncl * fg_kv_bytes(s->kv_type, (size_t)s->kw + s->vw);
}

// ---- create / free ---------------------------------------------------------------------------

// Two-pass carve of the scratch arena (base NULL: count bytes only).
static size_t carve(fg_ctx *s, char *base) {
    const fg_config *c = &s->ws->cfg;
    size_t n = (size_t)s->max_rows, off = 0;
    int C = c->hidden_size, H = c->num_attention_heads;
    int Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dh = c->head_dim;
    int E = c->n_routed_experts, K = c->num_experts_per_tok, Fe = c->moe_intermediate_size;
    int Rq = c->q_lora_rank, Rkv = c->kv_lora_rank, F = 0, moe = 0;
    for (int l = 0; l < s->ncl; l++) {
        int is_moe = fg_config_is_moe_layer(c, l);
        moe |= is_moe;
        F = FG_MAX(F, is_moe ? c->n_shared_experts * Fe : c->intermediate_size);
    }
#define TAKE(ptr, count, type) do { size_t bytes_ = ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63; \
        (ptr) = base ? (type *)(base + off) : (ptr); off += bytes_; } while (0)
    TAKE(s->rseq, n, int); TAKE(s->rpos, n, int); TAKE(s->cnt, s->max_seqs, int);
    TAKE(s->runs, 3 * n, int); TAKE(s->want, n, int); TAKE(s->tabs, n, const int *);
    TAKE(s->seq_mem, (size_t)s->max_seqs * s->max_blk, int);
    TAKE(s->x, n * C, float); TAKE(s->xn, n * C, float); TAKE(s->x2, n * C, float); TAKE(s->xn2, n * C, float);
    if (s->ncl > c->num_hidden_layers) TAKE(s->cat, 2 * n * C, float);
    if (c->attn_type == FG_ATTN_MLA) {
        if (Rq > 0) { TAKE(s->qa, n * Rq, float); TAKE(s->qan, n * Rq, float); }
        TAKE(s->q, n * H * (Dn + Dr), float);
        TAKE(s->kva, n * (Rkv + Dr), float); TAKE(s->ckv, n * Rkv, float);
        TAKE(s->y, n * H * Dv, float);
        if (s->kind != FG_KV_LATENT) {
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
    TAKE(s->ascr, s->ex.be->attn_scratch(&s->alim), char);
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
    if (p->kv_type != FG_F32 && p->kv_type != FG_BF16 && p->kv_type != FG_Q8_0) {
        fg_set_error("decoding session: the KV cache holds f32, bf16 or q8_0 values (got type %d)", p->kv_type);
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
    s->kv_type = p->kv_type;
    // A context whose weights are bf16 or Q8_0 multiplies them on the bf16 GEMM (activations rounded
    // to bf16, fp32 accumulation); its prefill attention does the same (q, k, v and the softmax
    // probabilities rounded to bf16 as they are packed), as flash attention does in bf16 on GPUs.
    s->att_prec = fg_wstore_weights(ws) == FG_F32 ? FG_F32 : FG_BF16;
    s->max_T = max_T;
    s->ncl = c->num_hidden_layers + (p->mtp ? c->num_nextn_predict_layers : 0);
    s->max_rows = p->max_batch;
    s->max_seqs = p->max_seqs;
    s->max_blk = (max_T + BLK - 1) / BLK;
    s->nthreads = FG_MAX(fg_max_threads(), fg_pool_threads()); // scratch rows for either kind of worker
    int H = c->num_attention_heads, mla = c->attn_type == FG_ATTN_MLA;
    if (kind == FG_KV_LATENT) {
        s->kw = c->kv_lora_rank + c->qk_rope_head_dim;
        s->vw = 0;
    } else if (c->attn_type == FG_ATTN_MLA) {
        s->kw = H * (c->qk_nope_head_dim + c->qk_rope_head_dim);
        s->vw = H * c->v_head_dim;
    } else {
        s->kw = s->vw = c->num_key_value_heads * c->head_dim;
    }
    s->blk_elems = (size_t)BLK * (s->kw + s->vw);
    s->nblocks = (p->n_ctx + BLK - 1) / BLK;
    // A Q8_0 cache stores rows of whole 32-value blocks, and the full cache's per-head slices too.
    int head_k = kind == FG_KV_LATENT ? s->kw : mla ? c->qk_nope_head_dim + c->qk_rope_head_dim : c->head_dim;
    int head_v = kind == FG_KV_LATENT ? 0 : mla ? c->v_head_dim : c->head_dim;
    if (s->kv_type == FG_Q8_0 && (head_k % 32 || head_v % 32)) {
        fg_set_error("decoding session: a q8_0 KV cache needs cached rows of whole 32-value blocks, this model's are %d and %d "
                     "values (hint: --kv-type bf16)", head_k, head_v);
        free(s);
        return NULL;
    }
    s->ex = (fg_exec){&fg_backend_cpu, NULL, FG_F32, EXPERT_PAR_ROWS}; // the packs are made below
    s->alim = (fg_attn_limits){s->max_rows, s->max_T, s->nthreads, kind == FG_KV_LATENT, H,
                               mla ? c->qk_nope_head_dim : 0, mla ? c->qk_rope_head_dim : 0, mla ? c->v_head_dim : 0,
                               mla ? c->kv_lora_rank : 0, mla ? c->qk_nope_head_dim + c->qk_rope_head_dim : c->head_dim,
                               mla ? c->v_head_dim : c->head_dim, !mla || ws->v.layers[0].wkv_b.type == FG_F32};
    size_t bytes = carve(s, NULL);
    // The cache, the scratch and what the store holds in memory must fit together: refused here
    // rather than paged out later (weights in a file mapping are not counted: the kernel can drop
    // and re-read those pages).
    size_t arena = (size_t)s->ncl * s->nblocks * fg_kv_bytes(s->kv_type, s->blk_elems);
    double kv_bytes = (double)arena, mem = fg_phys_mem_bytes();
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
    s->ex.bctx = ws->packs;
    s->kv = kv_alloc(arena);
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

// Layer l of the cache as the backend's attention reads it, and a call for the batch's n rows.
static fg_kv_pages kv_pages(const fg_ctx *s, int l) {
    size_t off = kv_at(s, l, 0);
    return (fg_kv_pages){s->kv, s->kv_type, BLK, s->kw, s->vw, s->blk_elems, off, off + (size_t)BLK * s->kw};
}
static fg_attn_call attn_call(fg_ctx *s, int l, int n) {
    const fg_config *c = &s->ws->cfg;
    fg_attn_call a = {n, s->rpos, s->tabs, c->num_attention_heads, c->num_attention_heads, 0, 0, 0, 0, 0,
                      s->ws->softmax_scale, {0}, s->mla_prefill, s->att_prec, &s->alim, s->ascr};
    if (c->attn_type == FG_ATTN_MLA) {
        a.Dn = c->qk_nope_head_dim; a.Dr = c->qk_rope_head_dim; a.Dv = c->v_head_dim; a.Rkv = c->kv_lora_rank;
        a.Dk = a.Dn + a.Dr;
        a.wkv_b = s->ws->v.layers[l].wkv_b;
    } else {
        a.Hkv = c->num_key_value_heads; a.Dk = a.Dv = c->head_dim;
    }
    return a;
}

static void attention(fg_ctx *s, int l, int n) {
    fg_kv_pages kv = kv_pages(s, l);
    fg_attn_call a = attn_call(s, l, n);
    if (s->kind == FG_KV_LATENT) s->ex.be->latent_attention(s->y, s->q, &kv, &a);
    else s->ex.be->full_attention(s->y, s->q, &kv, &a);
}

// ---- the forward over a batch ----------------------------------------------------------------

// MLA on s->xn (n, C): appends layer l's cache rows (the latent form, or full per-head keys and
// values), then s->x2 = x + wo(attention).
static void mla_layer(fg_ctx *s, int l, int n) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    const fg_wlayer *w = &ws->v.layers[l];
    int C = c->hidden_size, H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim;
    int Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    fg_mla_proj o = {s->qa, s->qan, NULL, s->q, s->kva, NULL, s->ckv, NULL};
    fg_mla_project(&s->ex, &o, s->xn, w, c, ws->rope, s->rpos, n);
    if (s->kind == FG_KV_LATENT) {
        for (int i = 0; i < n; i++) // the cache row is [c_kv | roped k_pe]
            kv_put(s, kv_key(s, &s->seqs[s->rseq[i]], l, s->rpos[i]), s->kva + (size_t)i * s->kw, s->kw);
        attention(s, l, n);
    } else {
        fg_exec_matmul(&s->ex, s->kvb, s->ckv, w->wkv_b, NULL, n, Rkv, H * (Dn + Dv));
#pragma omp parallel for schedule(static) if ((long)n * H * (Dn + Dr + Dv) > 65536)
        for (int i = 0; i < n; i++) {
            const kv_seq *q = &s->seqs[s->rseq[i]];
            float *k = s->kn + (size_t)i * s->kw, *v = s->vn + (size_t)i * s->vw;
            fg_mla_expand_row(k, v, s->kvb + (size_t)i * H * (Dn + Dv), s->kva + (size_t)i * (Rkv + Dr) + Rkv, H, Dn, Dr, Dv);
            kv_put(s, kv_key(s, q, l, s->rpos[i]), k, s->kw);
            kv_put(s, kv_val(s, q, l, s->rpos[i]), v, s->vw);
        }
        attention(s, l, n);
    }
    fg_exec_matmul(&s->ex, s->x2, s->y, w->wo, NULL, n, H * Dv, C);
    add_into(s->x2, s->x, (size_t)n * C);
}

// GQA on s->xn: keys and values of the rows are projected, roped and appended.
static void gqa_layer(fg_ctx *s, int l, int n) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    const fg_wlayer *w = &ws->v.layers[l];
    int C = c->hidden_size, H = c->num_attention_heads, Dh = c->head_dim;
    fg_gqa_project(&s->ex, s->q, s->kn, s->vn, s->xn, w, c, ws->rope, s->rpos, n);
    for (int i = 0; i < n; i++) {
        const kv_seq *q = &s->seqs[s->rseq[i]];
        kv_put(s, kv_key(s, q, l, s->rpos[i]), s->kn + (size_t)i * s->kw, s->kw);
        kv_put(s, kv_val(s, q, l, s->rpos[i]), s->vn + (size_t)i * s->vw, s->vw);
    }
    attention(s, l, n);
    fg_exec_matmul(&s->ex, s->x2, s->y, w->wo, NULL, n, H * Dh, C);
    add_into(s->x2, s->x, (size_t)n * C);
}

// Block l over the n rows in s->x (in place: attention and FFN, pre-normed, residuals added);
// appends the rows' keys and values to layer l of the cache.
static void block_rows(fg_ctx *s, int l, int n) {
    const fg_config *c = &s->ws->cfg;
    const fg_wlayer *w = &s->ws->v.layers[l];
    const fg_backend *be = s->ex.be;
    int C = c->hidden_size;
    be->rmsnorm(s->xn, NULL, s->x, w->attn_norm, n, C, c->rms_norm_eps);
    if (c->attn_type == FG_ATTN_MLA) mla_layer(s, l, n);
    else gqa_layer(s, l, n);
    be->rmsnorm(s->xn2, NULL, s->x2, w->ffn_norm, n, C, c->rms_norm_eps);
    // the FFN writes the next layer's input over x (no longer needed), then adds the residual
    if (fg_config_is_moe_layer(c, l)) fg_moe_forward(&s->ex, s->x, &s->moe, NULL, s->xn2, w, c, n);
    else fg_swiglu_ffn(&s->ex, s->x, s->h1, s->h3, s->act, s->xn2, w->w1, w->w2, w->w3, n, C, c->intermediate_size);
    add_into(s->x, s->x2, (size_t)n * C);
}

// The head over the n rows of s->x: norm (the main model's or an MTP depth's), hidden (n, C) gets
// every normed row when given, logits (nwant, V) those of the rows in s->want.
static void head_rows(fg_ctx *s, const float *norm, int n, int nwant, float *logits, float *hidden) {
    const fg_config *c = &s->ws->cfg;
    int C = c->hidden_size;
    if (hidden) {
        s->ex.be->rmsnorm(hidden, NULL, s->x, norm, n, C, c->rms_norm_eps);
        for (int k = 0; k < nwant; k++) memcpy(s->xn + (size_t)k * C, hidden + (size_t)s->want[k] * C, sizeof(float) * C);
    } else if (nwant) {
        for (int k = 0; k < nwant; k++) memcpy(s->x2 + (size_t)k * C, s->x + (size_t)s->want[k] * C, sizeof(float) * C);
        s->ex.be->rmsnorm(s->xn, NULL, s->x2, norm, nwant, C, c->rms_norm_eps);
    }
    if (nwant) fg_exec_matmul(&s->ex, logits, s->xn, s->ws->v.lm_head, NULL, nwant, C, c->vocab_size);
}

// s->x = the embedding rows of tokens (dequantised one row per token).
static void embed_rows(fg_ctx *s, const int32_t *tokens, int n) {
    const fg_wstore *ws = s->ws;
    int C = ws->cfg.hidden_size;
    size_t erow = fg_qrow_bytes(ws->v.embed.type, C);
    for (int i = 0; i < n; i++)
        fg_dequantize_row(s->x + (size_t)i * C, (const uint8_t *)ws->v.embed.p + (size_t)tokens[i] * erow, C, ws->v.embed.type);
}

// Runs n rows (checked, blocks reserved, s->rseq/rpos set) through every layer; logits (nwant, V)
// of the rows in s->want, and every row's normed final state when hidden is given.
static void forward_rows(fg_ctx *s, const int32_t *tokens, int n, int nwant, float *logits, float *hidden) {
    embed_rows(s, tokens, n);
    for (int l = 0; l < s->ws->cfg.num_hidden_layers; l++) block_rows(s, l, n);
    head_rows(s, s->ws->v.final_norm, n, nwant, logits, hidden);
}

int fg_ctx_decode(fg_ctx *s, const fg_batch *b, float *logits) { return fg_ctx_decode_h(s, b, logits, NULL); }

int fg_ctx_decode_h(fg_ctx *s, const fg_batch *b, float *logits, float *hidden) {
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
        s->tabs[i] = q->blk; // the table's storage is fixed; copy on write changes its entries only
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
    forward_rows(s, b->token, n, nwant, logits, hidden);
    for (int q = 0; q < s->max_seqs; q++) s->seqs[q].len += s->cnt[q];
    return 0;
}

// ---- multi-token prediction ------------------------------------------------------------------

// Blocks holding positions [from, to) of q made its own before an MTP depth rewrites them (copy on
// write of blocks a fork shares). Returns the copies it would make (dry: nothing changed).
static int blocks_own(fg_ctx *s, kv_seq *q, int from, int to, int dry) {
    int copies = 0;
    for (int i = from / BLK; i < q->nblk && i * BLK < to; i++) copies += blk_own(s, q, i, dry);
    return copies;
}

int fg_ctx_mtp_len(const fg_ctx *s, int seq, int depth) {
    const kv_seq *q = seq_at(s, seq, "mtp length");
    if (!q) return -1;
    if (depth < 1 || depth > s->ncl - s->ws->cfg.num_hidden_layers)
        return fg_set_error("context: MTP depth %d: this context runs depths 1..%d", depth, s->ncl - s->ws->cfg.num_hidden_layers);
    return q->mlen[depth - 1];
}

int fg_ctx_mtp(fg_ctx *s, int depth, const fg_batch *b, const float *h_in, float *h_out, float *logits) {
    if (!s || !b || !b->token || !b->seq || !b->pos || !h_in || b->n < 1)
        return fg_set_error("context MTP: need a context and a batch of n >= 1 rows with tokens, sequence ids, positions and states");
    const fg_config *c = &s->ws->cfg;
    int L = c->num_hidden_layers, D = s->ncl - L, n = b->n, V = c->vocab_size, C = c->hidden_size, nwant = 0;
    if (depth < 1 || depth > D)
        return fg_set_error("context MTP: depth %d: this context runs depths 1..%d (hint: a model with "
                            "num_nextn_predict_layers, and a context created with mtp = 1)", depth, D);
    if (n > s->max_rows) return fg_set_error("context MTP: %d rows exceed the context's max_batch of %d", n, s->max_rows);
    memset(s->cnt, 0, sizeof(int) * (size_t)s->max_seqs);
    for (int i = 0; i < n; i++) {
        if (b->token[i] < 0 || b->token[i] >= V)
            return fg_set_error("token id %d at index %d is outside the vocabulary [0, %d)", b->token[i], i, V);
        kv_seq *q = seq_at(s, b->seq[i], "MTP");
        if (!q) return -1;
        if (s->cnt[b->seq[i]] && (b->seq[i - 1] != b->seq[i] || b->pos[i] != b->pos[i - 1] + 1)) // consecutive rows
            return fg_set_error("context MTP: the rows of sequence %d must be consecutive positions in order", b->seq[i]);
        if (b->pos[i] < 0 || (!s->cnt[b->seq[i]] && b->pos[i] > q->mlen[depth - 1]) || b->pos[i] >= q->len)
            return fg_set_error("context MTP: row %d of sequence %d at position %d: depth %d continues its %d positions and "
                                "needs the main model's state there (%d positions)", i, b->seq[i], b->pos[i], depth,
                                q->mlen[depth - 1], q->len);
        s->cnt[b->seq[i]]++;
        s->rseq[i] = b->seq[i];
        s->rpos[i] = b->pos[i];
        s->tabs[i] = q->blk;
        if (b->logits && b->logits[i]) s->want[nwant++] = i;
    }
    if (nwant && !logits) return fg_set_error("context MTP: rows ask for logits but no output buffer was given");
    int need = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || b->seq[i] != b->seq[i - 1]) need += blocks_own(s, &s->seqs[b->seq[i]], b->pos[i], b->pos[i] + s->cnt[b->seq[i]], 1);
    if (need > s->nfree)
        return fg_set_error("context MTP: the KV cache is full: %d blocks to copy, %d free", need, s->nfree);
    for (int i = 0; i < n; i++)
        if (i == 0 || b->seq[i] != b->seq[i - 1]) blocks_own(s, &s->seqs[b->seq[i]], b->pos[i], b->pos[i] + s->cnt[b->seq[i]], 0);
    // x = eh_proj [enorm(emb(token)) | hnorm(h)], then the depth's block and head
    const fg_wlayer *w = &s->ws->v.layers[L + depth - 1];
    embed_rows(s, b->token, n);
    s->ex.be->rmsnorm(s->xn, NULL, s->x, w->enorm, n, C, c->rms_norm_eps);
    s->ex.be->rmsnorm(s->xn2, NULL, h_in, w->hnorm, n, C, c->rms_norm_eps);
    for (int i = 0; i < n; i++) {
        memcpy(s->cat + (size_t)i * 2 * C, s->xn + (size_t)i * C, sizeof(float) * C);
        memcpy(s->cat + (size_t)i * 2 * C + C, s->xn2 + (size_t)i * C, sizeof(float) * C);
    }
    fg_exec_matmul(&s->ex, s->x, s->cat, w->eh_proj, NULL, n, 2 * C, C);
    block_rows(s, L + depth - 1, n);
    head_rows(s, w->head_norm, n, nwant, logits, h_out);
    for (int i = 0; i < n; i++) s->seqs[b->seq[i]].mlen[depth - 1] = b->pos[i] + 1;
    return 0;
}
