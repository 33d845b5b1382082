// generate.c: KV-cache decoding, sampling and the generation loop (contracts in generate.h).
//
// The forward here is the training forward (model.c) restricted to new tokens: the same ops in the
// same order (matmul_forward, rmsnorm_forward, rope_apply, swiglu_forward, fg_moe_route), so the
// logits match fg_model_forward's at every position to rounding. What differs: keys and values of
// past positions come from the cache instead of being recomputed, only the last token's logits
// are computed, and MoE runs only the chosen experts. Nothing is saved for backward.
//
// Invariants: cache rows [0, pos) of every layer hold the keys/values of the tokens fed so far;
// a failed feed changes nothing; feed never allocates (all memory is carved at create).
#include "infer/generate.h"
#include "infer/pool.h"
#include "infer/wstore.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/route.h"
#include "ops/gemm.h"
#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
static int omp_threads(void) { return omp_get_max_threads(); }
#else
#define THREAD_ID() 0
static int omp_threads(void) { return 1; }
#endif

// Tokens per batched pass. It bounds the scratch for long prompts, and it sets how many tokens
// share one packing of each weight matrix: a routed expert sees about chunk * K / E of them, so
// small chunks spend their time converting expert weights rather than multiplying them.
#define INFER_CHUNK 1024
#define LATENT_GEMM_MIN 16 // prefill rows from which latent attention runs on the GEMM
#define ATT_ROWS 64        // latent prefill on the GEMM: query rows per (head, row block) task
#define EXPAND_MAX_BYTES ((size_t)256 << 20) // scratch for the expanded prefill form: at most 256 MiB
#define LAT_BLOCK 32    // latent decode: positions scored together (scores of all heads per block)
#define LAT_SPANS 16    // latent decode: at most this many position spans run in parallel


// Cache kinds (FG_KV_* in frugal.h). FG_KV_FULL: per-head keys and values. FG_KV_LATENT (MLA's
// default): only the normalised latent c_kv and the roped k_pe, (Rkv + Dr) floats per position
// and layer; attention runs in the absorbed form (docs/model.md): the key half of wkv_b is folded
// into the query and the value half applied after the weighted sum of latents.

struct fg_infer {
    const fg_wstore *ws;        // every weight is read through it
    fg_wstore *own_ws;          // the store built by fg_infer_create_ex (freed with the session)
    int kind;                   // FG_KV_FULL | FG_KV_LATENT
    int mla_prefill;            // FG_MLA_* (latent cache, batched feeds)
    int att_prec;               // FG_GEMM_* of prefill attention's products: bf16 when the weights are not fp32
    struct wpack *packs;        // bf16 / Q8_0 matrices packed once for the GEMM, by weight pointer (open addressing)
    int npacks, cap_packs;      //   entries used, table size (a power of two)
    size_t pack_bytes, pack_budget; // bytes packed so far; at most this many (0: never pack)
    int kv_bf16;                // cache elements are bf16 (else fp32)
    int max_T, pos;
    int kw, vw;                 // values per cached position and layer: keys, values (latent: Rkv+Dr, 0)
    void *kv;                   // cache arena: layer l = keys (max_T, kw) then values (max_T, vw)
    size_t kv_elems;            // addressed by element index (kv_put, kv_dot, kv_axpy)
    int chunk, nthreads;        // scratch sized for `chunk` tokens and `nthreads` attention rows
    int max_heads;              // attention over at most this many rows (one token) runs on the pool
    void *mem;                  // scratch arena, carved below
    float *x, *xn, *x2, *xn2;   // (n, C) residual stream, normed input, after attention, normed
    float *qa, *qan;            // (n, Rq) MLA q compression
    float *q;                   // (n, H*(Dn+Dr)) MLA or (n, H*Dh) GQA, roped
    float *kva, *ckv, *kvb;     // MLA (n, Rkv+Dr), (n, Rkv) normed latent, (n, H*(Dn+Dv))
    float *kn, *vn;             // GQA (n, Hkv*Dh) new keys and values before they enter the cache
    float *wkvb;                // latent with a non-fp32 wkv_b: (nthreads, Dn+Dv, Rkv) one head dequantised
    int *wkvb_key;              // (nthreads) which layer and head each thread's wkvb holds: l*H+h+1, 0 = none
    float *y;                   // (n, H*Dv) or (n, H*Dh) attention output before wo
    float *qlat;                // latent: (n, H, Rkv) queries folded through wkv_b's key half
    float *olat;                // latent: (nthreads, Rkv) weighted sum of cached latents
    float *pq, *ps, *po;        // latent prefill on the GEMM, per thread: (ATT_ROWS, Rkv+Dr) [q_lat | q_pe],
                                //   (ATT_ROWS, max_T) scores, (ATT_ROWS, Rkv) o_lat; NULL: row by row only
    float *kvf;                 // latent prefill over a bf16 cache: (max_T, Rkv+Dr) one layer's rows in fp32
    float *kvx;                 // latent prefill, expanded form: (nthreads, max_T, Dn+Dr+Dv) one head's [k_nope | k_pe | v]
    float *lpart;               // latent decode: (LAT_SPANS, H, Rkv + 2) per-span softmax partials (o, max, sum)
    float *lsc;                 // latent decode: (nthreads, H, LAT_BLOCK) scores of one block
    float *h1, *h3, *act;       // (n, max(F, Fs)) dense FFN or shared expert
    float *scores, *wts;        // (n, E), (n, K)
    int *idx;                   // (n, K)
    int *slot_tok, *slot_of;    // (n*K) token of each slot (slots grouped by expert), slot of (i, k)
    int *expert_off, *fill;     // (E+1) slot range per expert, (E) cursors
    float *xe, *eh1, *eh3, *ea, *ey; // (n*K, C), (n*K, Fe) x3, (n*K, C)
    float *probs;               // (nthreads, max_T) one attention row per thread
    float *logits;              // (V) of the last token fed
    float *sample_scratch;      // (2V) for fg_generate's fg_sample calls
};

// A matrix as GEMM panels (bf16 for bf16 and Q8_0 weights, fp32 for fp32 ones), packed at its
// first batched product: later products skip the conversion and transposition of its rows (a
// routed expert's rows would otherwise be repacked for every chunk, for the few dozen tokens
// routed to it). Costs 2 (4 for fp32) bytes per weight on top of the stored ones, within
// pack_budget; past it, products pack as they go.
struct wpack { const void *w; fg_gemm_packed *p; };
#define PACK_MIN_ROWS 8 // fg_qmatmul_forward's own threshold for the GEMM

static struct wpack *pack_slot(const fg_infer *s, const void *w) { // its entry or the empty slot for it
    size_t h = ((uintptr_t)w >> 6) & (size_t)(s->cap_packs - 1);
    while (s->packs[h].w && s->packs[h].w != w) h = (h + 1) & (size_t)(s->cap_packs - 1);
    return &s->packs[h];
}

// The packed form of w, packing it now when new. Lookups may run on any thread; packing (an
// insertion) only outside parallel regions: inside one, a new weight returns NULL (moe_chunk packs
// its experts before it runs them in parallel).
static fg_gemm_packed *weight_pack(fg_infer *s, fg_wref w, int IN, int OUT) {
    if (!s->pack_budget) return NULL;
    if (s->cap_packs) {
        struct wpack *e = pack_slot(s, w.p);
        if (e->w) return e->p; // NULL: did not fit
    }
#ifdef _OPENMP
    if (omp_in_parallel()) return NULL;
#endif
    if (2 * (s->npacks + 1) > s->cap_packs) { // keep the table at most half full
        int cap = s->cap_packs ? 2 * s->cap_packs : 1024;
        struct wpack *t = calloc((size_t)cap, sizeof *t);
        if (!t) return NULL;
        for (int i = 0; i < s->cap_packs; i++) {
            if (!s->packs[i].w) continue;
            size_t h = ((uintptr_t)s->packs[i].w >> 6) & (size_t)(cap - 1);
            while (t[h].w) h = (h + 1) & (size_t)(cap - 1);
            t[h] = s->packs[i];
        }
        free(s->packs);
        s->packs = t;
        s->cap_packs = cap;
    }
    int f32 = w.type == FG_WEIGHTS_F32;
    size_t need = (size_t)OUT * IN * (f32 ? 4 : 2);
    fg_gemm_packed *p = s->pack_bytes + need <= s->pack_budget
        ? fg_gemm_pack(OUT, IN, w.p, (long)fg_qrow_bytes(w.type, IN), w.type, f32 ? FG_GEMM_F32 : FG_GEMM_BF16) : NULL;
    *pack_slot(s, w.p) = (struct wpack){w.p, p};
    s->npacks++;
    s->pack_bytes += fg_gemm_packed_bytes(p);
    return p;
}

// Every matrix product of the session goes through here, in the weight's stored type: one token
// is a matrix-vector product (fg_qmatvec, any type), a chunk a matrix-matrix one.
static void wmatmul(fg_infer *s, float *out, const float *inp, fg_wref w, const float *bias, int N, int IN, int OUT) {
    fg_gemm_packed *p;
    int f32 = w.type == FG_WEIGHTS_F32;
    if (N == 1) fg_qmatvec(out, inp, w.p, w.type, bias, IN, OUT);
    else if (N >= PACK_MIN_ROWS && (!f32 || fg_gemm_default_prec == FG_GEMM_F32) && (p = weight_pack(s, w, IN, OUT)))
        fg_gemm_qb_packed(N, inp, IN, p, out, OUT, bias);
    else if (f32) matmul_forward(out, inp, w.p, bias, N, IN, OUT);
    else fg_qmatmul_forward(out, inp, w.p, w.type, bias, N, IN, OUT);
}

// Cache addressing by element index: layer l's keys start at cache_k, its values at cache_v.
static size_t cache_k(const fg_infer *s, int l) { return (size_t)l * s->max_T * (s->kw + s->vw); }
static size_t cache_v(const fg_infer *s, int l) { return cache_k(s, l) + (size_t)s->max_T * s->kw; }
static void kv_put(fg_infer *s, size_t at, const float *src, int n) {
    if (!s->kv_bf16) { memcpy((float *)s->kv + at, src, sizeof(float) * n); return; }
    uint16_t *d = (uint16_t *)s->kv + at;
    for (int i = 0; i < n; i++) d[i] = fg_f32_to_bf16(src[i]);
}
static inline float kv_dot(const fg_infer *s, const float *a, size_t at, int n) {
    return s->kv_bf16 ? fg_bf16_dot(a, (const uint16_t *)s->kv + at, n) : fg_vdot(a, (const float *)s->kv + at, n);
}
static inline void kv_axpy(const fg_infer *s, float *y, float a, size_t at, int n) {
    if (s->kv_bf16) fg_bf16_axpy(y, a, (const uint16_t *)s->kv + at, n);
    else fg_vaxpy(y, a, (const float *)s->kv + at, n);
}

// ---- create / free ---------------------------------------------------------------------------

// Two-pass carve of the scratch arena (base NULL: count bytes only), as model.c's carve.
static size_t carve(fg_infer *s, char *base) {
    const fg_config *c = &s->ws->cfg;
    size_t n = (size_t)s->chunk, off = 0;
    int C = c->hidden_size, H = c->num_attention_heads, V = c->vocab_size;
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
    TAKE(s->x, n * C, float); TAKE(s->xn, n * C, float); TAKE(s->x2, n * C, float); TAKE(s->xn2, n * C, float);
    if (c->attn_type == FG_ATTN_MLA) {
        if (Rq > 0) { TAKE(s->qa, n * Rq, float); TAKE(s->qan, n * Rq, float); }
        TAKE(s->q, n * H * (Dn + Dr), float);
        TAKE(s->kva, n * (Rkv + Dr), float); TAKE(s->ckv, n * Rkv, float);
        TAKE(s->kvb, n * H * (Dn + Dv), float);
        TAKE(s->y, n * H * Dv, float);
        if (s->kind == FG_KV_LATENT) {
            TAKE(s->qlat, n * H * Rkv, float); TAKE(s->olat, (size_t)s->nthreads * Rkv, float);
            TAKE(s->lpart, (size_t)LAT_SPANS * H * (Rkv + 2), float); TAKE(s->lsc, (size_t)s->nthreads * H * LAT_BLOCK, float);
        }
        if (s->kind == FG_KV_LATENT && n >= LATENT_GEMM_MIN) {
            size_t nt = (size_t)s->nthreads;
            TAKE(s->pq, nt * ATT_ROWS * (Rkv + Dr), float); TAKE(s->ps, nt * ATT_ROWS * s->max_T, float);
            TAKE(s->po, nt * ATT_ROWS * Rkv, float);
            if (s->kv_bf16) TAKE(s->kvf, (size_t)s->max_T * (Rkv + Dr), float);
            if (nt * s->max_T * (Dn + Dr + Dv) * sizeof(float) <= EXPAND_MAX_BYTES) TAKE(s->kvx, nt * s->max_T * (Dn + Dr + Dv), float);
        }
        if (s->kind == FG_KV_LATENT && s->ws->layers[0].wkv_b.type != FG_WEIGHTS_F32) {
            TAKE(s->wkvb, (size_t)s->nthreads * (Dn + Dv) * Rkv, float); TAKE(s->wkvb_key, s->nthreads, int);
        }
    } else {
        int Hkv = c->num_key_value_heads;
        TAKE(s->q, n * H * Dh, float);
        TAKE(s->y, n * H * Dh, float);
        TAKE(s->kn, n * Hkv * Dh, float); TAKE(s->vn, n * Hkv * Dh, float);
    }
    if (F > 0) { TAKE(s->h1, n * F, float); TAKE(s->h3, n * F, float); TAKE(s->act, n * F, float); }
    if (moe) {
        TAKE(s->scores, n * E, float); TAKE(s->wts, n * K, float); TAKE(s->idx, n * K, int);
        TAKE(s->slot_tok, n * K, int); TAKE(s->slot_of, n * K, int);
        TAKE(s->expert_off, E + 1, int); TAKE(s->fill, E, int);
        TAKE(s->xe, n * K * C, float); TAKE(s->eh1, n * K * Fe, float); TAKE(s->eh3, n * K * Fe, float);
        TAKE(s->ea, n * K * Fe, float); TAKE(s->ey, n * K * C, float);
    }
    TAKE(s->probs, (size_t)s->nthreads * s->max_T, float);
    TAKE(s->logits, V, float);
    TAKE(s->sample_scratch, 2 * (size_t)V, float);
#undef TAKE
    return off;
}

fg_infer *fg_infer_create(const fg_model *m, int max_T) {
    if (!m) { fg_set_error("fg_infer_create: no model"); return NULL; }
    return fg_infer_create_ex(m, max_T, FG_KV_AUTO, FG_WEIGHTS_F32);
}

fg_infer *fg_infer_create_kind(const fg_model *m, int max_T, int kind) {
    return fg_infer_create_ex(m, max_T, kind, FG_WEIGHTS_F32);
}

fg_infer *fg_infer_create_ex(const fg_model *m, int max_T, int kind, int weights) {
    if (!m) { fg_set_error("fg_infer_create: no model"); return NULL; }
    fg_wstore *ws = fg_wstore_from_model(m, weights);
    if (!ws) { fg_wrap_error("decoding session"); return NULL; }
    fg_infer *s = fg_infer_create_store(ws, max_T, kind, FG_WEIGHTS_F32);
    if (!s) { fg_wstore_free(ws); return NULL; }
    s->own_ws = ws;
    return s;
}

fg_infer *fg_infer_create_store(const fg_wstore *ws, int max_T, int kind, int kv_type) {
    if (!ws) { fg_set_error("decoding session: no weights"); return NULL; }
    const fg_config *c = &ws->cfg;
    if (kind == FG_KV_AUTO) kind = c->attn_type == FG_ATTN_MLA ? FG_KV_LATENT : FG_KV_FULL;
    if (kind != FG_KV_FULL && !(kind == FG_KV_LATENT && c->attn_type == FG_ATTN_MLA)) {
        fg_set_error("decoding session: cache kind %d is not available for this model (the latent cache needs MLA)", kind);
        return NULL;
    }
    if (kv_type != FG_WEIGHTS_F32 && kv_type != FG_WEIGHTS_BF16) {
        fg_set_error("decoding session: the KV cache holds f32 or bf16 values (got type %d)", kv_type);
        return NULL;
    }
    if (max_T < 1 || max_T > c->max_position_embeddings) {
        fg_set_error("decoding session: max_T must be in [1, max_position_embeddings=%d] (got %d)",
                     c->max_position_embeddings, max_T);
        return NULL;
    }
    fg_infer *s = calloc(1, sizeof *s);
    if (!s) { fg_set_error("out of memory for a decoding session"); return NULL; }
    s->ws = ws;
    s->kind = kind;
    s->kv_bf16 = kv_type == FG_WEIGHTS_BF16;
    // A session whose weights are bf16 or Q8_0 multiplies them on the bf16 GEMM (activations rounded
    // to bf16, fp32 accumulation); its prefill attention does the same (q, k, v and the softmax
    // probabilities rounded to bf16 as they are packed), as flash attention does in bf16 on GPUs.
    s->att_prec = fg_wstore_weights(ws) == FG_WEIGHTS_F32 ? FG_GEMM_F32 : FG_GEMM_BF16;
    s->max_T = max_T;
    s->chunk = FG_MIN(max_T, INFER_CHUNK);
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
    s->kv_elems = (size_t)c->num_hidden_layers * max_T * (s->kw + s->vw);
    size_t bytes = carve(s, NULL);
    // The cache, the scratch and what the store holds in memory must fit together: refused here
    // rather than paged out later (weights in a file mapping are not counted: the kernel can drop
    // and re-read those pages).
    double kv_bytes = (double)s->kv_elems * (s->kv_bf16 ? 2 : 4), mem = fg_phys_mem_bytes();
    double need = kv_bytes + (double)bytes + (double)ws->owned_bytes;
    if (mem > 0 && need > 0.9 * mem) {
        fg_set_error("decoding session: the KV cache (%.1f GiB for %d positions), scratch (%.1f GiB) and the weights held in "
                     "memory (%.1f GiB) need %.1f GiB but this machine has %.1f GiB (hint: a shorter context, --kv-type bf16, "
                     "or bf16 weights)", kv_bytes / 1073741824.0, max_T, bytes / 1073741824.0,
                     ws->owned_bytes / 1073741824.0, need / 1073741824.0, mem / 1073741824.0);
        free(s);
        return NULL;
    }
    // Packed weights (weight_pack) may take a quarter of this machine's memory, less what would
    // leave the session above 90% of it. A model whose packed copy would not fit whole gets none
    // (products pack as they go): it is one too big to hold twice, likely a mapped file whose
    // pages should rather stay in the page cache.
    int64_t total, active;
    fg_config_param_counts(c, &total, &active);
    double packed = (double)total * (fg_wstore_weights(ws) == FG_WEIGHTS_F32 ? 4 : 2);
    double budget = mem > 0 ? FG_MIN(0.25 * mem, 0.9 * mem - need) : 0;
    s->pack_budget = packed <= budget ? (size_t)budget : 0;
    s->kv = fg_calloc(s->kv_elems, s->kv_bf16 ? 2 : 4, "KV cache");
    s->mem = aligned_alloc(64, bytes);
    if (!s->mem && s->kv) fg_set_error("out of memory: decoding scratch needs %.1f MiB", bytes / 1048576.0);
    if (!s->kv || !s->mem) { fg_infer_free(s); return NULL; }
    carve(s, s->mem);
    if (s->wkvb_key) memset(s->wkvb_key, 0, sizeof(int) * (size_t)s->nthreads);
    return s;
}

void fg_infer_free(fg_infer *s) {
    if (!s) return;
    for (int i = 0; i < s->cap_packs; i++) fg_gemm_packed_free(s->packs[i].p);
    free(s->packs);
    fg_wstore_free(s->own_ws);
    free(s->kv);
    free(s->mem);
    free(s);
}

void fg_infer_reset(fg_infer *s) { s->pos = 0; }
int fg_infer_pos(const fg_infer *s) { return s->pos; }
int fg_infer_cache_kind(const fg_infer *s) { return s->kind; }

static double infer_weight_bytes(const fg_infer *s, int per_token);
size_t fg_infer_weight_bytes(const fg_infer *s) { return (size_t)infer_weight_bytes(s, 0); }
double fg_infer_decode_weight_bytes(const fg_infer *s) { return infer_weight_bytes(s, 1); }

// Bytes of the matrices the session multiplies with, as stored; per_token: a decode step's share,
// where a routed expert counts K/E (the router picks K of E per token) and the embedding table one
// row (a lookup).
static double infer_weight_bytes(const fg_infer *s, int per_token) {
    const fg_wstore *ws = s->ws;
    double bytes = 0;
    for (int i = 0; i < ws->n; i++) {
        const fg_tensor *t = &ws->t[i];
        if (t->ndim != 2) continue;
        if (!strcmp(t->name, "model.embed_tokens.weight") && !ws->cfg.tie_word_embeddings) {
            if (per_token) bytes += (double)fg_qrow_bytes(ws->type[i], t->shape[1]);
            continue;
        }
        double b = (double)fg_wstore_tensor_bytes(t, ws->type[i]);
        if (per_token && t->expert >= 0) b *= (double)ws->cfg.num_experts_per_tok / ws->cfg.n_routed_experts;
        bytes += b;
    }
    return bytes;
}
size_t fg_infer_cache_bytes(const fg_infer *s) { return s->kv_elems * (s->kv_bf16 ? 2 : 4); }

// ---- forward over a chunk --------------------------------------------------------------------

static void add_into(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// attention_row (ops.c) over a bf16 cache: the same arithmetic, keys and values read as bf16.
static void attention_row_kv(const fg_infer *s, float *o, float *p, const float *q, size_t k, int sk, size_t v, int sv,
                             int n, int Dk, int Dv, float scale) {
    for (int u = 0; u < n; u++) p[u] = kv_dot(s, q, k + (size_t)u * sk, Dk);
    fg_softmax_scaled(p, n, scale);
    for (int i = 0; i < Dv; i++) o[i] = 0;
    for (int u = 0; u < n; u++) kv_axpy(s, o, p[u], v + (size_t)u * sv, Dv);
}

// y (n, H, Dv) = softmax attention of the n queries at positions p0 .. p0+n-1 over cached
// positions [0, p0+i] (causal; the chunk's own rows are already in the cache). q: row stride sq,
// head h at h*Dk. kc: keys (element index), row stride kw, kv head at kh*Dk; vc: values, stride
// vw, head at kh*Dv; head h reads kv head h / (H / Hkv). The arithmetic follows attention_forward
// (ops.c) exactly: an fp32 cache runs its attention_row.
typedef struct {
    fg_infer *s; float *y; const float *q; int sq; size_t kc, vc; int p0, H, Hkv, Dk, Dv; float scale;
} cache_job;

static void cache_row(void *ctx, int r, int tid) {
    const cache_job *j = ctx;
    fg_infer *s = j->s;
    int H = j->H, i = r / H, h = r % H, kh = h / (H / j->Hkv), t = j->p0 + i, Dk = j->Dk, Dv = j->Dv;
    float *o = j->y + ((size_t)i * H + h) * Dv, *p = s->probs + (size_t)tid * s->max_T;
    const float *qr = j->q + (size_t)i * j->sq + (size_t)h * Dk;
    if (s->kv_bf16)
        attention_row_kv(s, o, p, qr, j->kc + (size_t)kh * Dk, s->kw, j->vc + (size_t)kh * Dv, s->vw, t + 1, Dk, Dv, j->scale);
    else
        attention_row(o, p, qr, (const float *)s->kv + j->kc + (size_t)kh * Dk, s->kw, (const float *)s->kv + j->vc + (size_t)kh * Dv,
                      s->vw, t + 1, Dk, Dv, j->scale);
}

// Rows (query, head) of an attention: one token's heads on the decode helpers (pool.h), a
// chunk's on OpenMP threads. fn(ctx, row, tid) with tid < s->nthreads.
static void attention_rows(fg_infer *s, int rows, long work, void (*fn)(void *, int, int), void *ctx) {
    if (work <= 65536) {
        for (int r = 0; r < rows; r++) fn(ctx, r, 0);
    } else if (rows <= s->max_heads) {
        fg_pool_for(rows, fn, ctx);
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(s->nthreads, omp_threads()))
        for (int r = 0; r < rows; r++) fn(ctx, r, THREAD_ID());
    }
}

// y (n, H, Dv) = softmax attention of the n queries at positions p0 .. p0+n-1 over cached
// positions [0, p0+i] (causal; the chunk's own rows are already in the cache). q: row stride sq,
// head h at h*Dk. kc: keys (element index), row stride kw, kv head at kh*Dk; vc: values, stride
// vw, head at kh*Dv; head h reads kv head h / (H / Hkv). The arithmetic follows attention_forward
// (ops.c) exactly: an fp32 cache runs its attention_row.
static void cache_attention(fg_infer *s, float *y, const float *q, int sq, size_t kc, size_t vc,
                            int n, int p0, int H, int Hkv, int Dk, int Dv, float scale) {
    cache_job j = {s, y, q, sq, kc, vc, p0, H, Hkv, Dk, Dv, scale};
    attention_rows(s, n * H, (long)n * H * (p0 + n) * (Dk + Dv), cache_row, &j);
}

// Absorbed MLA attention over the latent cache of layer l for the n queries at p0... The cache
// row of position u is [c_kv(u) (Rkv) | k_pe(u) (Dr)], shared by every head (multi-query form).
// For query head h: q_lat = W_UK_h^T q_nope (Rkv), score(u) = (q_lat . c_kv(u) + q_pe . k_pe(u))
// * scale, o_lat = sum_u p(u) c_kv(u), y_h = W_UV_h o_lat. W_UK_h / W_UV_h are the Dn key rows and
// Dv value rows of head h in wkv_b (H*(Dn+Dv), Rkv), read in fp32 (a wkv_b stored in another type
// is dequantised one head at a time into per-thread scratch).
static const float *wkv_b_head(fg_infer *s, int l, int h, int tid) { // (Dn+Dv, Rkv) fp32 rows of head h
    const fg_config *c = &s->ws->cfg;
    int Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    fg_wref wkv_b = s->ws->layers[l].wkv_b;
    if (wkv_b.type == FG_WEIGHTS_F32) return (const float *)wkv_b.p + (size_t)h * (Dn + Dv) * Rkv;
    float *tmp = s->wkvb + (size_t)tid * (Dn + Dv) * Rkv;
    int key = l * c->num_attention_heads + h + 1;
    if (s->wkvb_key[tid] == key) return tmp; // this thread converted the same head last time
    s->wkvb_key[tid] = key;
    size_t rb = fg_qrow_bytes(wkv_b.type, Rkv);
    const uint8_t *src = (const uint8_t *)wkv_b.p + (size_t)h * (Dn + Dv) * rb;
    for (int d = 0; d < Dn + Dv; d++) fg_dequantize_row(tmp + (size_t)d * Rkv, src + (size_t)d * rb, Rkv, wkv_b.type);
    return tmp;
}

typedef struct { fg_infer *s; int l, p0; } latent_job;

static void latent_row(void *ctx, int r, int tid) {
    const latent_job *jb = ctx;
    fg_infer *s = jb->s;
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    size_t cache = cache_k(s, jb->l);
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int Dq = Dn + Dr, Rkv = c->kv_lora_rank, kw = s->kw;
    float scale = ws->softmax_scale;
    int i = r / H, h = r % H, t = jb->p0 + i;
    const float *q = s->q + ((size_t)i * H + h) * Dq, *wh = wkv_b_head(s, jb->l, h, tid);
    float *ql = s->qlat + ((size_t)i * H + h) * Rkv, *ol = s->olat + (size_t)tid * Rkv;
    float *p = s->probs + (size_t)tid * s->max_T;
    for (int j = 0; j < Rkv; j++) ql[j] = 0;
    for (int d = 0; d < Dn; d++) fg_vaxpy(ql, q[d], wh + (size_t)d * Rkv, Rkv); // q_lat += q_nope[d] W_UK_h[d, :]
    for (int u = 0; u <= t; u++) {
        size_t cu = cache + (size_t)u * kw;
        p[u] = kv_dot(s, ql, cu, Rkv) + kv_dot(s, q + Dn, cu + Rkv, Dr);
    }
    fg_softmax_scaled(p, t + 1, scale);
    for (int j = 0; j < Rkv; j++) ol[j] = 0;
    for (int u = 0; u <= t; u++) kv_axpy(s, ol, p[u], cache + (size_t)u * kw, Rkv);
    float *o = s->y + ((size_t)i * H + h) * Dv;
    for (int d = 0; d < Dv; d++) o[d] = fg_vdot(wh + (size_t)(Dn + d) * Rkv, ol, Rkv); // y_h = W_UV_h o_lat
}


// ---- latent decode of one token over a long cache (the multi-query form made to pay) ----------
// Every head attends over the same cached rows, so instead of one pass over the cache per head,
// the positions are split into spans (run in parallel), each span is walked in blocks of
// LAT_BLOCK rows, and each row is read once for all heads: scores of all heads for the block,
// then o_lat_h += p_h(u) c_kv(u) for all heads while the row is in L1. Softmax runs online per
// span (running max and sum, rescaled per block) and the spans' partials are merged per head
// (flash-decoding). Same math as latent_row; only the summation order differs.
typedef struct { fg_infer *s; int l, t, nspans, span; } latdec_job;


static void latdec_qlat(void *ctx, int h, int tid) { // q_lat_h = W_UK_h^T q_nope_h
    const latdec_job *j = ctx;
    fg_infer *s = j->s;
    const fg_config *c = &s->ws->cfg;
    int Dn = c->qk_nope_head_dim, Dq = Dn + c->qk_rope_head_dim, Rkv = c->kv_lora_rank;
    const float *wh = wkv_b_head(s, j->l, h, tid), *q = s->q + (size_t)h * Dq;
    float *ql = s->qlat + (size_t)h * Rkv;
    for (int k = 0; k < Rkv; k++) ql[k] = 0;
    for (int d = 0; d < Dn; d++) fg_vaxpy(ql, q[d], wh + (size_t)d * Rkv, Rkv);
}

static void latdec_span(void *ctx, int sp, int tid) { // partial (o_h, m_h, l_h) of span sp for every head
    const latdec_job *j = ctx;
    fg_infer *s = j->s;
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Rkv = c->kv_lora_rank;
    int Dq = Dn + Dr, u0 = sp * j->span, u1 = FG_MIN(j->t + 1, u0 + j->span);
    size_t cache = cache_k(s, j->l);
    float scale = s->ws->softmax_scale, *sc = s->lsc + (size_t)tid * H * LAT_BLOCK;
    float *part = s->lpart + (size_t)sp * H * (Rkv + 2); // head h: o (Rkv), then m, l
    for (int h = 0; h < H; h++) {
        float *ph = part + (size_t)h * (Rkv + 2);
        for (int k = 0; k < Rkv; k++) ph[k] = 0;
        ph[Rkv] = -INFINITY;
        ph[Rkv + 1] = 0;
    }
    for (int b0 = u0; b0 < u1; b0 += LAT_BLOCK) {
        int nb = FG_MIN(LAT_BLOCK, u1 - b0);
        for (int k = 0; k < nb; k++) {
            size_t cu = cache + (size_t)(b0 + k) * s->kw;
            for (int h = 0; h < H; h++)
                sc[h * LAT_BLOCK + k] = (kv_dot(s, s->qlat + (size_t)h * Rkv, cu, Rkv) + kv_dot(s, s->q + (size_t)h * Dq + Dn, cu + Rkv, Dr)) * scale;
        }
        for (int h = 0; h < H; h++) { // online softmax: rescale the running sums to the new max
            float *ph = part + (size_t)h * (Rkv + 2), *sh = sc + h * LAT_BLOCK, mx = ph[Rkv];
            for (int k = 0; k < nb; k++) mx = sh[k] > mx ? sh[k] : mx;
            float r = expf(ph[Rkv] - mx), sum = 0; // exp(-inf) = 0 on the first block
            if (r != 1.0f) { for (int k = 0; k < Rkv; k++) ph[k] *= r; }
            for (int k = 0; k < nb; k++) { sh[k] = expf(sh[k] - mx); sum += sh[k]; }
            ph[Rkv] = mx;
            ph[Rkv + 1] = ph[Rkv + 1] * r + sum;
        }
        for (int k = 0; k < nb; k++) {
            size_t cu = cache + (size_t)(b0 + k) * s->kw;
            for (int h = 0; h < H; h++) kv_axpy(s, part + (size_t)h * (Rkv + 2), sc[h * LAT_BLOCK + k], cu, Rkv);
        }
    }
}

static void latdec_out(void *ctx, int h, int tid) { // merge the spans of head h, then y_h = W_UV_h o_lat_h
    const latdec_job *j = ctx;
    fg_infer *s = j->s;
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    float *ol = s->olat + (size_t)tid * Rkv, M = -INFINITY, L = 0;
    for (int sp = 0; sp < j->nspans; sp++) {
        float m = s->lpart[((size_t)sp * H + h) * (Rkv + 2) + Rkv];
        M = m > M ? m : M;
    }
    for (int k = 0; k < Rkv; k++) ol[k] = 0;
    for (int sp = 0; sp < j->nspans; sp++) {
        const float *ph = s->lpart + ((size_t)sp * H + h) * (Rkv + 2);
        float w = expf(ph[Rkv] - M);
        L += w * ph[Rkv + 1];
        fg_vaxpy(ol, w, ph, Rkv);
    }
    float inv = 1.0f / L;
    const float *wh = wkv_b_head(s, j->l, h, tid);
    float *o = s->y + (size_t)h * Dv;
    for (int d = 0; d < Dv; d++) o[d] = fg_vdot(wh + (size_t)(Dn + d) * Rkv, ol, Rkv) * inv;
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

// Prefill of the same attention on the packed GEMM (n >= LATENT_GEMM_MIN), as tasks of one head
// and ATT_ROWS query rows, each on one thread with single-threaded products: [q_lat | q_pe] =
// [q_nope W_UK_h | q_pe], S = [q_lat | q_pe] cache[0, t)^T (one product: a cache row is
// [c_kv | k_pe]), a causal softmax per row, o_lat = P c_kv, y_h = o_lat W_UV_h^T. A row block only
// reads the t = p0 + (its last row) + 1 positions it can see, so the causal half of the chunk's
// square is never computed. The same sums as latent_row in another order. A bf16 cache is first
// widened to fp32, one layer's rows, once for all tasks.
static void latent_task(fg_infer *s, int l, int n, int p0, const float *cache, int h, int rb, int tid) {
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int Dq = Dn + Dr, Rkv = c->kv_lora_rank, kw = s->kw;
    int i0 = rb * ATT_ROWS, m = FG_MIN(ATT_ROWS, n - i0), t = p0 + i0 + m;
    float *pq = s->pq + (size_t)tid * ATT_ROWS * kw, *ps = s->ps + (size_t)tid * ATT_ROWS * s->max_T;
    float *po = s->po + (size_t)tid * ATT_ROWS * Rkv;
    const float *wh = wkv_b_head(s, l, h, tid), *qh = s->q + ((size_t)i0 * H + h) * Dq;
    fg_gemm(0, 0, m, Rkv, Dn, qh, (long)H * Dq, wh, Rkv, pq, kw, 0, NULL, s->att_prec);
    for (int i = 0; i < m; i++) memcpy(pq + (size_t)i * kw + Rkv, qh + (size_t)i * H * Dq + Dn, sizeof(float) * Dr);
    fg_gemm(0, 1, m, t, kw, pq, kw, cache, kw, ps, t, 0, NULL, s->att_prec);
    causal_softmax(ps, m, t, p0 + i0 + 1, s->ws->softmax_scale);
    fg_gemm(0, 0, m, Rkv, t, ps, t, cache, kw, po, Rkv, 0, NULL, s->att_prec);
    fg_gemm(0, 1, m, Dv, Rkv, po, Rkv, wh + (size_t)Dn * Rkv, Rkv, s->y + (size_t)i0 * H * Dv + (size_t)h * Dv,
            (long)H * Dv, 0, NULL, s->att_prec);
}

// The expanded form of the same prefill (DeepSeek's own choice for prefill): per head, the keys
// and values of every visible position are rebuilt from the latent cache, [k_nope | v] (t, Dn+Dv)
// = c_kv wkv_b_h^T, then ordinary attention with q = [q_nope | q_pe] and k = [k_nope | k_pe]
// (k_pe straight from the cache). A score costs Dn+Dr multiply-adds and a value row Dv instead
// of the absorbed form's Rkv+Dr and Rkv, for the price of the expansion (t1 rows per head): it
// wins when the chunk is long compared with the context before it (mla_uses_expanded). One task
// per head; row blocks of ATT_ROWS skip the causal upper half as latent_task does.
static void expanded_head(fg_infer *s, int l, int n, int p0, const float *cache, int h, int tid) {
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int Dq = Dn + Dr, Rkv = c->kv_lora_rank, kw = s->kw, t1 = p0 + n, ew = Dq + Dv;
    // kvx rows: [k_nope | k_pe | v] (Dn + Dr + Dv), so q . k is one product over Dq = Dn + Dr
    float *kvx = s->kvx + (size_t)tid * s->max_T * ew, *ps = s->ps + (size_t)tid * ATT_ROWS * s->max_T;
    fg_wref wkv_b = s->ws->layers[l].wkv_b;
    size_t rb = fg_qrow_bytes(wkv_b.type, Rkv);
    const uint8_t *wk = (const uint8_t *)wkv_b.p + (size_t)h * (Dn + Dv) * rb, *wv = wk + (size_t)Dn * rb;
    if (wkv_b.type == FG_WEIGHTS_F32) {
        fg_gemm(0, 1, t1, Dn, Rkv, cache, kw, (const float *)wk, Rkv, kvx, ew, 0, NULL, s->att_prec);
        fg_gemm(0, 1, t1, Dv, Rkv, cache, kw, (const float *)wv, Rkv, kvx + Dq, ew, 0, NULL, s->att_prec);
    } else {
        fg_gemm_qb(t1, Dn, Rkv, cache, kw, wk, (long)rb, wkv_b.type, kvx, ew, NULL, FG_GEMM_BF16);
        fg_gemm_qb(t1, Dv, Rkv, cache, kw, wv, (long)rb, wkv_b.type, kvx + Dq, ew, NULL, FG_GEMM_BF16);
    }
    for (int u = 0; u < t1; u++) memcpy(kvx + (size_t)u * ew + Dn, cache + (size_t)u * kw + Rkv, sizeof(float) * Dr);
    for (int i0 = 0; i0 < n; i0 += ATT_ROWS) {
        int m = FG_MIN(ATT_ROWS, n - i0), t = p0 + i0 + m;
        const float *qh = s->q + ((size_t)i0 * H + h) * Dq;
        fg_gemm(0, 1, m, t, Dq, qh, (long)H * Dq, kvx, ew, ps, t, 0, NULL, s->att_prec);
        causal_softmax(ps, m, t, p0 + i0 + 1, s->ws->softmax_scale);
        fg_gemm(0, 0, m, Dv, t, ps, t, kvx + Dq, ew, s->y + (size_t)i0 * H * Dv + (size_t)h * Dv, (long)H * Dv, 0, NULL,
                s->att_prec);
    }
}

// Multiply-adds per head of the two prefill forms for n rows after p0 cached positions.
static int mla_uses_expanded(const fg_infer *s, int n, int p0) {
    const fg_config *c = &s->ws->cfg;
    double Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    double pairs = (double)n * p0 + (double)n * (n + 1) / 2; // (query, visible position) pairs
    double expanded = (p0 + n) * Rkv * (Dn + Dv) + pairs * (Dn + Dr + Dv);
    double absorbed = n * Rkv * (Dn + Dv) + pairs * (2 * Rkv + Dr);
    if (!s->kvx || s->mla_prefill == FG_MLA_ABSORBED) return 0;
    return s->mla_prefill == FG_MLA_EXPANDED || expanded < absorbed;
}

int fg_infer_set_mla_prefill(fg_infer *s, int form) {
    int old = s->mla_prefill;
    if (form >= FG_MLA_AUTO && form <= FG_MLA_EXPANDED) s->mla_prefill = form;
    return old;
}

static void latent_attention_gemm(fg_infer *s, int l, int n, int p0) {
    int H = s->ws->cfg.num_attention_heads, nb = (n + ATT_ROWS - 1) / ATT_ROWS, kw = s->kw, t1 = p0 + n;
    const float *cache = (const float *)s->kv + cache_k(s, l);
    if (s->kv_bf16) {
        const uint16_t *src = (const uint16_t *)s->kv + cache_k(s, l);
#pragma omp parallel for schedule(static) if ((long)t1 * kw > 65536)
        for (int u = 0; u < t1; u++) fg_dequantize_row(s->kvf + (size_t)u * kw, (const uint8_t *)(src + (size_t)u * kw), kw, FG_WEIGHTS_BF16);
        cache = s->kvf;
    }
    if (mla_uses_expanded(s, n, p0)) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(s->nthreads, omp_threads()))
        for (int h = 0; h < H; h++) expanded_head(s, l, n, p0, cache, h, THREAD_ID());
        return;
    }
    // Head by head (a converted wkv_b head stays put), each head's costliest (last) row blocks first.
#pragma omp parallel for schedule(dynamic, 1) num_threads(FG_MIN(s->nthreads, omp_threads()))
    for (int task = 0; task < nb * H; task++) latent_task(s, l, n, p0, cache, task / nb, nb - 1 - task % nb, THREAD_ID());
}

static void latent_attention(fg_infer *s, int l, int n, int p0) {
    const fg_config *c = &s->ws->cfg;
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    if (n == 1 && p0 + 1 >= 2 * LAT_BLOCK) { // one token over a long cache: read each row once for all heads
        int T = p0 + 1, nspans = FG_MIN(LAT_SPANS, (T + LAT_BLOCK - 1) / LAT_BLOCK);
        int span = ((T + nspans - 1) / nspans + LAT_BLOCK - 1) / LAT_BLOCK * LAT_BLOCK;
        nspans = (T + span - 1) / span;
        latdec_job j = {s, l, p0, nspans, span};
        fg_pool_for(H, latdec_qlat, &j);
        fg_pool_for(nspans, latdec_span, &j);
        fg_pool_for(H, latdec_out, &j);
        return;
    }
    if (s->pq && n >= LATENT_GEMM_MIN) { latent_attention_gemm(s, l, n, p0); return; }
    latent_job j = {s, l, p0};
    attention_rows(s, n * H, (long)n * H * ((p0 + n) * (long)(Rkv + Dr) + (long)(Dn + Dv) * Rkv), latent_row, &j);
}

// MLA on s->xn (n, C) at positions p0..: appends layer l's cache rows (full per-head keys and
// values, or the latent form), then s->x2 = x + wo(attention).
static void mla_chunk(fg_infer *s, int l, int n, int p0) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    const fg_wlayer *w = &ws->layers[l];
    int C = c->hidden_size, H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim;
    int Dv = c->v_head_dim, Dq = Dn + Dr, Rq = c->q_lora_rank, Rkv = c->kv_lora_rank;
    float eps = c->rms_norm_eps;
    if (Rq > 0) {
        wmatmul(s, s->qa, s->xn, w->wq_a, NULL, n, C, Rq);
        rmsnorm_forward(s->qan, NULL, s->qa, w->q_norm, n, Rq, eps);
        wmatmul(s, s->q, s->qan, w->wq_b, NULL, n, Rq, H * Dq);
    } else {
        wmatmul(s, s->q, s->xn, w->wq, NULL, n, C, H * Dq);
    }
    wmatmul(s, s->kva, s->xn, w->wkv_a, NULL, n, C, Rkv + Dr);
#pragma omp parallel for schedule(static) if ((long)n * Rkv > 65536)
    for (int i = 0; i < n; i++) // c_kv is the first Rkv of each (Rkv+Dr) row
        rmsnorm_forward(s->ckv + (size_t)i * Rkv, NULL, s->kva + (size_t)i * (Rkv + Dr), w->kv_norm, 1, Rkv, eps);
    if (s->kind == FG_KV_LATENT) {
        size_t cache = cache_k(s, l);
#pragma omp parallel for schedule(static) if ((long)n * H * Dq > 65536)
        for (int i = 0; i < n; i++) {
            int pos = p0 + i;
            float *row = s->kva + (size_t)i * (Rkv + Dr); // becomes the cache row [c_kv | roped k_pe]
            memcpy(row, s->ckv + (size_t)i * Rkv, sizeof(float) * Rkv);
            rope_apply(row + Rkv, ws->rope, pos, 0);
            kv_put(s, cache + (size_t)pos * s->kw, row, Rkv + Dr);
            for (int h = 0; h < H; h++) rope_apply(s->q + ((size_t)i * H + h) * Dq + Dn, ws->rope, pos, 0);
        }
        latent_attention(s, l, n, p0);
        wmatmul(s, s->x2, s->y, w->wo, NULL, n, H * Dv, C);
        add_into(s->x2, s->x, (size_t)n * C);
        return;
    }
    wmatmul(s, s->kvb, s->ckv, w->wkv_b, NULL, n, Rkv, H * (Dn + Dv));
    size_t kc = cache_k(s, l), vc = cache_v(s, l);
#pragma omp parallel for schedule(static) if ((long)n * H * (Dq + Dv) > 65536)
    for (int i = 0; i < n; i++) {
        int pos = p0 + i;
        float *kpe = s->kva + (size_t)i * (Rkv + Dr) + Rkv;
        rope_apply(kpe, ws->rope, pos, 0);
        for (int h = 0; h < H; h++) {
            size_t k = kc + (size_t)pos * s->kw + (size_t)h * Dq;
            const float *kvb = s->kvb + ((size_t)i * H + h) * (Dn + Dv);
            kv_put(s, k, kvb, Dn);
            kv_put(s, k + Dn, kpe, Dr); // k_pe is shared by all heads
            kv_put(s, vc + (size_t)pos * s->vw + (size_t)h * Dv, kvb + Dn, Dv);
            rope_apply(s->q + ((size_t)i * H + h) * Dq + Dn, ws->rope, pos, 0);
        }
    }
    cache_attention(s, s->y, s->q, H * Dq, kc, vc, n, p0, H, H, Dq, Dv, ws->softmax_scale);
    wmatmul(s, s->x2, s->y, w->wo, NULL, n, H * Dv, C);
    add_into(s->x2, s->x, (size_t)n * C);
}

// GQA on s->xn: keys and values of positions p0..p0+n-1 are projected, roped and appended.
static void gqa_chunk(fg_infer *s, int l, int n, int p0) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    const fg_wlayer *w = &ws->layers[l];
    int C = c->hidden_size, H = c->num_attention_heads, Hkv = c->num_key_value_heads, Dh = c->head_dim;
    size_t kc = cache_k(s, l), vc = cache_v(s, l);
    wmatmul(s, s->q, s->xn, w->wq, w->bq, n, C, H * Dh);
    wmatmul(s, s->kn, s->xn, w->wk, w->bk, n, C, Hkv * Dh);
    wmatmul(s, s->vn, s->xn, w->wv, w->bv, n, C, Hkv * Dh);
#pragma omp parallel for schedule(static) if ((long)n * H * Dh > 65536)
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < H; h++) rope_apply(s->q + ((size_t)i * H + h) * Dh, ws->rope, p0 + i, 0);
        for (int h = 0; h < Hkv; h++) rope_apply(s->kn + ((size_t)i * Hkv + h) * Dh, ws->rope, p0 + i, 0);
        kv_put(s, kc + (size_t)(p0 + i) * s->kw, s->kn + (size_t)i * Hkv * Dh, Hkv * Dh);
        kv_put(s, vc + (size_t)(p0 + i) * s->vw, s->vn + (size_t)i * Hkv * Dh, Hkv * Dh);
    }
    cache_attention(s, s->y, s->q, H * Dh, kc, vc, n, p0, H, Hkv, Dh, Dh, ws->softmax_scale);
    wmatmul(s, s->x2, s->y, w->wo, NULL, n, H * Dh, C);
    add_into(s->x2, s->x, (size_t)n * C);
}

// out (n, C) = w2(silu(w1 xn) * w3 xn), using s->h1/h3/act as (n, F) scratch.
static void swiglu_ffn(fg_infer *s, float *out, const float *xn, fg_wref w1, fg_wref w2, fg_wref w3, int n, int C, int F) {
    wmatmul(s, s->h1, xn, w1, NULL, n, C, F);
    wmatmul(s, s->h3, xn, w3, NULL, n, C, F);
    swiglu_forward(s->act, s->h1, s->h3, n, F);
    wmatmul(s, out, s->act, w2, NULL, n, F, C);
}

// Routed expert e of layer l over its slots (grouped by moe_chunk): s->ey rows = w2(silu(w1 x) * w3 x).
static void run_expert(fg_infer *s, int l, int e) {
    const fg_config *c = &s->ws->cfg;
    const fg_wlayer *w = &s->ws->layers[l];
    int C = c->hidden_size, Fe = c->moe_intermediate_size, o = s->expert_off[e], ne = s->expert_off[e + 1] - o;
    float *h1 = s->eh1 + (size_t)o * Fe, *h3 = s->eh3 + (size_t)o * Fe, *a = s->ea + (size_t)o * Fe;
    const float *xe = s->xe + (size_t)o * C;
    wmatmul(s, h1, xe, w->ew1[e], NULL, ne, C, Fe);
    wmatmul(s, h3, xe, w->ew3[e], NULL, ne, C, Fe);
    swiglu_forward(a, h1, h3, ne, Fe);
    wmatmul(s, s->ey + (size_t)o * C, a, w->ew2[e], NULL, ne, Fe, C);
}

// out (n, C) = DeepSeekMoE(s->xn2): routes each token as training does, then runs only the
// experts that some token of the chunk picked, each over its tokens as one batch.
static void moe_chunk(fg_infer *s, int l, float *out, int n) {
    const fg_config *c = &s->ws->cfg;
    const fg_wlayer *w = &s->ws->layers[l];
    int C = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    int Fe = c->moe_intermediate_size, Fs = c->n_shared_experts * Fe;
    wmatmul(s, s->scores, s->xn2, w->gate, NULL, n, C, E);
#pragma omp parallel for schedule(static) if (n >= 16)
    for (int i = 0; i < n; i++)
        fg_moe_route(s->idx + (size_t)i * K, s->wts + (size_t)i * K, s->scores + (size_t)i * E, w->gate_bias, c);
    // Group (token, choice) slots by expert, in token order (counting sort).
    memset(s->fill, 0, sizeof(int) * E);
    for (int j = 0; j < n * K; j++) s->fill[s->idx[j]]++;
    s->expert_off[0] = 0;
    for (int e = 0; e < E; e++) s->expert_off[e + 1] = s->expert_off[e] + s->fill[e];
    memcpy(s->fill, s->expert_off, sizeof(int) * E);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++) {
            int slot = s->fill[s->idx[i * K + k]]++;
            s->slot_tok[slot] = i;
            s->slot_of[i * K + k] = slot;
        }
#pragma omp parallel for schedule(static) if ((long)n * K * C > 65536)
    for (int j = 0; j < n * K; j++)
        memcpy(s->xe + (size_t)j * C, s->xn2 + (size_t)s->slot_tok[j] * C, sizeof(float) * C);
    // A prefill runs the experts side by side, one per thread (single-threaded products, the
    // busiest experts first): a routed expert sees only about n*K/E rows, too few to split one
    // product over the threads without paying more in barriers than it gains. One token (decode)
    // runs its K experts one after the other, each product on the decode pool.
    int nact = 0, *order = s->fill; // fill is free again: active experts, busiest first
    for (int e = 0; e < E; e++) {
        int ne = s->expert_off[e + 1] - s->expert_off[e];
        if (!ne) continue; // an expert no token picked is never read
        int at = nact++;
        for (; at > 0 && s->expert_off[order[at - 1] + 1] - s->expert_off[order[at - 1]] < ne; at--) order[at] = order[at - 1];
        order[at] = e;
        if (ne >= PACK_MIN_ROWS) { weight_pack(s, w->ew1[e], C, Fe); weight_pack(s, w->ew3[e], C, Fe); weight_pack(s, w->ew2[e], Fe, C); }
    }
    // (Not an `if` clause: products inside an inactive region would start nested thread teams.)
    if (n >= LATENT_GEMM_MIN && nact > 1) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int j = 0; j < nact; j++) run_expert(s, l, order[j]);
    } else {
        for (int j = 0; j < nact; j++) run_expert(s, l, order[j]);
    }
    if (Fs > 0) swiglu_ffn(s, out, s->xn2, w->sw1, w->sw2, w->sw3, n, C, Fs);
    else memset(out, 0, sizeof(float) * (size_t)n * C);
#pragma omp parallel for schedule(static) if ((long)n * K * C > 65536)
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++) {
            const float *y = s->ey + (size_t)s->slot_of[i * K + k] * C;
            float wt = s->wts[i * K + k], *o = out + (size_t)i * C;
            for (int j = 0; j < C; j++) o[j] += wt * y[j];
        }
}

// Runs n <= s->chunk tokens (ids already checked) at positions pos..pos+n-1 through every layer,
// appending to the cache; with want_logits, writes the last token's logits to s->logits.
static void forward_chunk(fg_infer *s, const int32_t *tokens, int n, int want_logits) {
    const fg_wstore *ws = s->ws;
    const fg_config *c = &ws->cfg;
    int C = c->hidden_size, p0 = s->pos;
    float eps = c->rms_norm_eps;
    size_t erow = fg_qrow_bytes(ws->embed.type, C);
    for (int i = 0; i < n; i++) // the embedding lookup dequantises one row per token
        fg_dequantize_row(s->x + (size_t)i * C, (const uint8_t *)ws->embed.p + (size_t)tokens[i] * erow, C, ws->embed.type);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const fg_wlayer *w = &ws->layers[l];
        rmsnorm_forward(s->xn, NULL, s->x, w->attn_norm, n, C, eps);
        if (c->attn_type == FG_ATTN_MLA) mla_chunk(s, l, n, p0);
        else gqa_chunk(s, l, n, p0);
        rmsnorm_forward(s->xn2, NULL, s->x2, w->ffn_norm, n, C, eps);
        // the FFN writes the next layer's input over x (no longer needed), then adds the residual
        if (fg_config_is_moe_layer(c, l)) moe_chunk(s, l, s->x, n);
        else swiglu_ffn(s, s->x, s->xn2, w->w1, w->w2, w->w3, n, C, c->intermediate_size);
        add_into(s->x, s->x2, (size_t)n * C);
    }
    s->pos = p0 + n;
    if (!want_logits) return;
    rmsnorm_forward(s->xn, NULL, s->x + (size_t)(n - 1) * C, ws->final_norm, 1, C, eps);
    wmatmul(s, s->logits, s->xn, ws->lm_head, NULL, 1, C, c->vocab_size);
}

const float *fg_infer_feed(fg_infer *s, const int32_t *tokens, int n) {
    if (!s || !tokens || n < 1) {
        fg_set_error("fg_infer_feed: need a session and n >= 1 tokens (got n=%d)", n);
        return NULL;
    }
    int V = s->ws->cfg.vocab_size;
    if (n > s->max_T - s->pos) {
        fg_set_error("feeding %d token(s) at position %d overflows the KV cache of %d positions "
                     "(hint: fg_infer_reset, or create the session with a larger max_T)", n, s->pos, s->max_T);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) {
            fg_set_error("token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i, V);
            return NULL;
        }
    for (int done = 0; done < n;) {
        int k = FG_MIN(s->chunk, n - done);
        forward_chunk(s, tokens + done, k, done + k == n);
        done += k;
    }
    return s->logits;
}

// ---- sampling --------------------------------------------------------------------------------

static int check_opts(const fg_sample_opts *o, int V) {
    if (!o) return fg_set_error("sampling: no options");
    if (!(o->temperature >= 0) || isinf(o->temperature))
        return fg_set_error("sampling: temperature must be 0 (greedy) or a finite value > 0 (got %g)", o->temperature);
    if (o->top_k < 0) return fg_set_error("sampling: top_k must be >= 0 (0 = all), got %d", o->top_k);
    if (!(o->top_p >= 0 && o->top_p <= 1))
        return fg_set_error("sampling: top_p must be in [0, 1] (1 = all), got %g", o->top_p);
    if (!(o->min_p >= 0 && o->min_p <= 1))
        return fg_set_error("sampling: min_p must be in [0, 1] (0 = off), got %g", o->min_p);
    if (!(o->repetition_penalty >= 0) || isinf(o->repetition_penalty))
        return fg_set_error("sampling: repetition_penalty must be >= 0 and finite (0 or 1 = off), got %g", o->repetition_penalty);
    if (V < 1 || V > (1 << 24)) return fg_set_error("sampling: vocabulary size must be in [1, 2^24] (got %d)", V);
    return 0;
}

static int32_t argmax(const float *x, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i; // strict: the lowest id wins ties
    return best;
}

// Candidate order: more probable first, the lower id on ties. Ids are stored as floats in the
// caller's scratch (exact: V <= 2^24), so the scratch can stay a plain float array.
static inline int better(const float *p, int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); }

// Heap over h[0..n) with the WORST candidate at the root; restores the property below i.
static void sift_down(float *h, int n, int i, const float *p) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(p, (int)h[w], (int)h[l])) w = l;
        if (r < n && better(p, (int)h[w], (int)h[r])) w = r;
        if (w == i) return;
        float t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

// Keeps the k best of the nc candidate ids in h and sorts them best first. O(nc log k).
static void top_k_sorted(float *h, int nc, int k, const float *p) {
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(h, k, i, p);
    for (int j = k; j < nc; j++)
        if (better(p, (int)h[j], (int)h[0])) { h[0] = h[j]; sift_down(h, k, 0, p); }
    for (int end = k - 1; end > 0; end--) { // the worst goes last
        float t = h[0]; h[0] = h[end]; h[end] = t;
        sift_down(h, end, 0, p);
    }
}

int32_t fg_sample(const float *logits, int V, const fg_sample_opts *o, fg_rng *rng, float *scratch) {
    if (check_opts(o, V)) return -1;
    if (!logits) return fg_set_error("sampling: no logits");
    if (o->temperature == 0 || o->top_k == 1) return argmax(logits, V);
    if (!rng || !scratch) return fg_set_error("sampling: needs an rng and 2*V floats of scratch");
    // p: unnormalised probabilities exp((logit - max) / temperature); every total below is summed
    // in the same order as the draw's running sum, so a draw r = u * total (u < 1) always lands.
    float *p = scratch, *h = scratch + V;
    float mx = logits[argmax(logits, V)], inv_t = 1.0f / o->temperature;
    double sum = 0;
    for (int i = 0; i < V; i++) { p[i] = expf((logits[i] - mx) * inv_t); sum += p[i]; }
    double u = fg_rng_uniform(rng);
    if (o->top_k == 0 && o->top_p >= 1) { // the full distribution, in id order: no sort needed
        float floor_p = o->min_p; // p of the best id is exactly 1 (exp(0))
        double total = sum;
        if (floor_p > 0) { total = 0; for (int i = 0; i < V; i++) if (p[i] >= floor_p) total += p[i]; }
        double r = u * total, cum = 0;
        for (int i = 0; i < V; i++) {
            if (p[i] < floor_p) continue;
            cum += p[i];
            if (r < cum) return i;
        }
        return argmax(logits, V); // unreachable but for rounding
    }
    int nc = 0;
    if (o->top_k == 0 && V > 1) {
        // Nucleus only: ids with p < (1-top_p)/(V-1) of the total can't be in it (together they
        // hold less than 1-top_p), so only the others need sorting. The 0.999 absorbs rounding;
        // a lower cut only keeps more. If none pass, keep all.
        float cut = (float)(0.999 * (1.0 - o->top_p) / (V - 1) * sum);
        for (int i = 0; i < V; i++) if (p[i] >= cut) h[nc++] = (float)i;
    }
    if (nc == 0) { for (int i = 0; i < V; i++) h[i] = (float)i; nc = V; }
    int k = o->top_k > 0 ? FG_MIN(o->top_k, nc) : nc;
    top_k_sorted(h, nc, k, p);
    double mass = 0;
    for (int j = 0; j < k; j++) mass += p[(int)h[j]];
    int keep = k;
    double kept = mass;
    if (o->top_p < 1) { // smallest best-first prefix holding >= top_p of the kept mass
        double cum = 0;
        for (int j = 0; j < k; j++) {
            cum += p[(int)h[j]];
            if (cum >= o->top_p * mass) { keep = j + 1; kept = cum; break; }
        }
    }
    if (o->min_p > 0) { // candidates are sorted best first: cut where p falls below min_p * best
        float floor_p = o->min_p * p[(int)h[0]];
        while (keep > 1 && p[(int)h[keep - 1]] < floor_p) keep--;
        kept = 0;
        for (int j = 0; j < keep; j++) kept += p[(int)h[j]];
    }
    double r = u * kept, cum = 0;
    for (int j = 0; j < keep; j++) { cum += p[(int)h[j]]; if (r < cum) return (int32_t)h[j]; }
    return (int32_t)h[0];
}

// ---- generation ------------------------------------------------------------------------------

int fg_generate(fg_infer *s, const int32_t *prompt, int n_prompt, const fg_sample_opts *o, int32_t *out,
                int cap, int (*on_token)(int32_t id, void *ctx), void *ctx) {
    if (!s) return fg_set_error("generate: no session");
    int V = s->ws->cfg.vocab_size;
    if (check_opts(o, V)) return -1;
    if (!prompt || n_prompt < 1) return fg_set_error("generate: the prompt needs at least one token (got %d)", n_prompt);
    if (o->max_new_tokens < 0) return fg_set_error("generate: max_new_tokens must be >= 0 (got %d)", o->max_new_tokens);
    if (cap < 0) return fg_set_error("generate: cap must be >= 0 (got %d)", cap);
    if (o->n_stop < 0 || (o->n_stop > 0 && !o->stop_ids)) return fg_set_error("generate: bad stop list (n_stop=%d)", o->n_stop);
    int limit = FG_MIN(o->max_new_tokens, cap);
    if (limit > 0 && !out) return fg_set_error("generate: no output buffer");
    fg_rng rng;
    fg_rng_seed(&rng, o->seed);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return fg_set_error("generate: prompt token %d at index %d is outside the vocabulary [0, %d)", prompt[i], i, V);
    // Repetition penalty: a copy of the logits with every id seen so far penalised.
    int penalize = o->repetition_penalty > 0 && o->repetition_penalty != 1;
    float *pen = penalize ? malloc(sizeof(float) * V) : NULL;
    unsigned char *seen = penalize ? calloc(V, 1) : NULL;
    if (penalize && (!pen || !seen)) { free(pen); free(seen); return fg_set_error("out of memory"); }
    for (int i = 0; penalize && i < n_prompt; i++) seen[prompt[i]] = 1;
    const float *logits = fg_infer_feed(s, prompt, n_prompt);
    int n = 0, rc = logits ? 0 : -1;
    while (!rc && n < limit) {
        const float *lg = logits;
        if (penalize) {
            for (int i = 0; i < V; i++)
                pen[i] = !seen[i] ? logits[i] : logits[i] > 0 ? logits[i] / o->repetition_penalty : logits[i] * o->repetition_penalty;
            lg = pen;
        }
        int32_t t = fg_sample(lg, V, o, &rng, s->sample_scratch);
        if (t < 0) { rc = -1; break; }
        out[n++] = t;
        if (penalize) seen[t] = 1;
        int stop = on_token ? on_token(t, ctx) != 0 : 0;
        for (int j = 0; j < o->n_stop; j++) stop |= o->stop_ids[j] == t;
        if (stop || n == limit || s->pos == s->max_T) break;
        logits = fg_infer_feed(s, &t, 1);
        if (!logits) rc = -1;
    }
    free(pen); free(seen);
    return rc ? -1 : n;
}
