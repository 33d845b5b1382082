// generate.c: the single-sequence decoding session (fg_infer: one sequence of a batched context,
// ctx.c), sampling and the generation loop (contracts in frugal.h).
#include "infer/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/wstore.h"
#include "util.h"

#define INFER_CHUNK 1024 // rows per batched pass of a long feed (bounds the scratch)

struct fg_infer {
    fg_ctx *ctx;                // one sequence (id 0) of a context with room for max_T positions
    fg_wstore *own_ws;          // the store built by fg_infer_create_ex (freed with the session)
    int max_T, seq;
    float *logits;              // (V) of the last token fed
    float *sample_scratch;      // (2V) for fg_generate's fg_sample calls
    int32_t *seqs;              // (chunk) the batch's sequence ids (all seq)
    uint8_t *want;              // (chunk) logits of the last row only
    int chunk;
    // multi-token prediction (a model with D MTP depths): the context caches them too
    int mtp;                    // D (0: none)
    int32_t *toks;              // (max_T) the tokens at the cached positions
    float *H;                   // (D, max_T, C) h^k at each position (k = 0: the main model's normed state)
    int mvalid[FG_MTP_MAX];     // depth k+1's cache rows [0, mvalid) were computed from accepted tokens
    float *spec;                // ((3 * FG_MTP_MAX + 2), V) speculative decoding's logits and distributions
    fg_spec_stats stats;
};

fg_infer *fg_infer_create(const fg_model *m, int max_T) {
    if (!m) { fg_set_error("fg_infer_create: no model"); return NULL; }
    return fg_infer_create_ex(m, max_T, FG_KV_AUTO, FG_F32);
}

fg_infer *fg_infer_create_kind(const fg_model *m, int max_T, int kind) {
    return fg_infer_create_ex(m, max_T, kind, FG_F32);
}

fg_infer *fg_infer_create_ex(const fg_model *m, int max_T, int kind, int weights) {
    if (!m) { fg_set_error("fg_infer_create: no model"); return NULL; }
    fg_wstore *ws = fg_wstore_from_model(m, weights);
    if (!ws) { fg_wrap_error("decoding session"); return NULL; }
    fg_infer *s = fg_infer_create_store(ws, max_T, kind, FG_F32);
    if (!s) { fg_wstore_free(ws); return NULL; }
    s->own_ws = ws;
    return s;
}

fg_infer *fg_infer_create_store(const fg_wstore *ws, int max_T, int kind, int kv_type) {
    if (!ws) { fg_set_error("decoding session: no weights"); return NULL; }
    const fg_config *c = &ws->cfg;
    if (max_T < 1 || max_T > c->max_position_embeddings) {
        fg_set_error("decoding session: max_T must be in [1, max_position_embeddings=%d] (got %d)",
                     c->max_position_embeddings, max_T);
        return NULL;
    }
    fg_ctx_params p = {.n_ctx = max_T, .max_len = max_T, .max_seqs = 1, .max_batch = FG_MIN(max_T, INFER_CHUNK),
                       .kind = kind, .kv_type = kv_type, .mtp = c->num_nextn_predict_layers > 0};
    fg_infer *s = calloc(1, sizeof *s);
    if (!s) { fg_set_error("out of memory for a decoding session"); return NULL; }
    s->max_T = max_T;
    s->chunk = p.max_batch;
    s->ctx = fg_ctx_create(ws, &p);
    int V = c->vocab_size;
    if (!s->ctx) { free(s); return NULL; }
    s->logits = malloc(sizeof(float) * (size_t)V);
    s->sample_scratch = malloc(sizeof(float) * 2 * (size_t)V);
    s->seqs = calloc((size_t)s->chunk, sizeof(int32_t));
    s->want = calloc((size_t)s->chunk, 1);
    s->seq = fg_ctx_seq_new(s->ctx);
    int D = s->mtp = c->num_nextn_predict_layers, oom = 0;
    if (D) {
        s->toks = malloc(sizeof(int32_t) * (size_t)max_T);
        s->H = malloc(sizeof(float) * (size_t)D * max_T * c->hidden_size);
        s->spec = malloc(sizeof(float) * (3 * FG_MTP_MAX + 2) * (size_t)V);
        oom = !s->toks || !s->H || !s->spec;
    }
    if (!s->logits || !s->sample_scratch || !s->seqs || !s->want || s->seq < 0 || oom) {
        fg_infer_free(s);
        fg_set_error("out of memory for a decoding session");
        return NULL;
    }
    return s;
}

void fg_infer_free(fg_infer *s) {
    if (!s) return;
    fg_ctx_free(s->ctx);
    fg_wstore_free(s->own_ws);
    free(s->logits); free(s->sample_scratch); free(s->seqs); free(s->want);
    free(s->toks); free(s->H); free(s->spec);
    free(s);
}

void fg_infer_reset(fg_infer *s) { fg_ctx_seq_truncate(s->ctx, s->seq, 0); memset(s->mvalid, 0, sizeof s->mvalid); }
void fg_infer_spec_stats(const fg_infer *s, fg_spec_stats *st) { *st = s->stats; }
int fg_infer_mtp_depths(const fg_infer *s) { return s->mtp; }
int fg_infer_pos(const fg_infer *s) { return fg_ctx_seq_len(s->ctx, s->seq); }
int fg_infer_cache_kind(const fg_infer *s) { return fg_ctx_cache_kind(s->ctx); }
int fg_infer_set_mla_prefill(fg_infer *s, int form) { return fg_ctx_set_mla_prefill(s->ctx, form); }
fg_ctx *fg_infer_ctx(fg_infer *s) { return s->ctx; }
// L * max_T * values per position * bytes per value (the blocks round the arena up to whole blocks).
size_t fg_infer_cache_bytes(const fg_infer *s) { return (size_t)s->max_T * fg_ctx_position_bytes(s->ctx); }

static double store_weight_bytes(const fg_wstore *ws, int per_token);
size_t fg_infer_weight_bytes(const fg_infer *s) { return (size_t)store_weight_bytes(fg_ctx_store(s->ctx), 0); }
double fg_infer_decode_weight_bytes(const fg_infer *s) { return store_weight_bytes(fg_ctx_store(s->ctx), 1); }

// Bytes of the matrices a session multiplies with, as stored; per_token: a decode step's share,
// where a routed expert counts K/E (the router picks K of E per token) and the embedding table one
// row (a lookup).
static double store_weight_bytes(const fg_wstore *ws, int per_token) {
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

const float *fg_infer_feed(fg_infer *s, const int32_t *tokens, int n) {
    if (!s || !tokens || n < 1) {
        fg_set_error("fg_infer_feed: need a session and n >= 1 tokens (got n=%d)", n);
        return NULL;
    }
    const fg_wstore *ws = fg_ctx_store(s->ctx);
    int V = ws->cfg.vocab_size, pos = fg_infer_pos(s);
    if (n > s->max_T - pos) {
        fg_set_error("feeding %d token(s) at position %d overflows the KV cache of %d positions "
                     "(hint: fg_infer_reset, or create the session with a larger max_T)", n, pos, s->max_T);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) {
            fg_set_error("token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i, V);
            return NULL;
        }
    for (int done = 0; done < n;) {
        int k = FG_MIN(s->chunk, n - done);
        for (int i = 0; i < k; i++) { s->seqs[i] = s->seq; s->want[i] = done + k == n && i == k - 1; }
        fg_batch b = {.n = k, .token = tokens + done, .seq = s->seqs, .logits = s->want};
        int at = pos + done; // MTP: the tokens and states of every position are kept for the drafts
        float *h = s->mtp ? s->H + (size_t)at * ws->cfg.hidden_size : NULL;
        if (s->mtp) memcpy(s->toks + at, tokens + done, sizeof(int32_t) * (size_t)k);
        if (fg_ctx_decode_h(s->ctx, &b, s->logits, h)) return NULL; // checked above: cannot fail
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

// The candidates top_k / top_p / min_p keep, from p (V) = exp((logit - max) / T) summing to sum:
// their ids in h[0 .. keep) best first (h holds V floats), their mass in *kept; returns keep.
static int keep_set(const float *p, double sum, int V, const fg_sample_opts *o, float *h, double *kept_mass) {
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
    *kept_mass = kept;
    return keep;
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
    double kept;
    int keep = keep_set(p, sum, V, o, h, &kept);
    double r = u * kept, cum = 0;
    for (int j = 0; j < keep; j++) { cum += p[(int)h[j]]; if (r < cum) return (int32_t)h[j]; }
    return (int32_t)h[0];
}


static int is_stop(const fg_sample_opts *o, int32_t t) {
    for (int j = 0; j < o->n_stop; j++)
        if (o->stop_ids[j] == t) return 1;
    return 0;
}

// ---- self-speculative decoding (multi-token prediction) --------------------------------------

// dist (V) = the distribution fg_sample draws from for these logits and options (temperature,
// then top_k / top_p / min_p), normalised; scratch: 2V floats.
static void dist_of(float *dist, const float *logits, int V, const fg_sample_opts *o, float *scratch) {
    float mx = logits[argmax(logits, V)], inv_t = 1.0f / o->temperature;
    double sum = 0, kept = 0;
    for (int i = 0; i < V; i++) { dist[i] = expf((logits[i] - mx) * inv_t); sum += dist[i]; }
    if (o->top_k == 0 && o->top_p >= 1) { // as fg_sample: ids below min_p of the best (1) dropped
        for (int i = 0; i < V; i++) {
            if (dist[i] < o->min_p) dist[i] = 0;
            kept += dist[i];
        }
    } else {
        float *h = scratch, *only = scratch + V;
        int keep = keep_set(dist, sum, V, o, h, &kept);
        memset(only, 0, sizeof(float) * (size_t)V);
        for (int j = 0; j < keep; j++) only[(int)h[j]] = dist[(int)h[j]];
        memcpy(dist, only, sizeof(float) * (size_t)V);
    }
    for (int i = 0; i < V; i++) dist[i] = (float)(dist[i] / kept);
}

// A draw from the (unnormalised, non-negative) weights w (V); the last positive id on rounding.
static int32_t draw(const float *w, int V, fg_rng *rng) {
    double total = 0;
    for (int i = 0; i < V; i++) total += w[i];
    double r = fg_rng_uniform(rng) * total, cum = 0;
    int32_t last = 0;
    for (int i = 0; i < V; i++) {
        if (w[i] <= 0) continue;
        cum += w[i];
        last = i;
        if (r < cum) return i;
    }
    return last;
}

// Runs MTP depth k over positions [from, to) (tokens at +k: the cached ones, then the pending
// token t and the drafts so far), in chunks of the context's rows; the last row's logits to lg.
static int mtp_rows(fg_infer *s, int k, int from, int to, int32_t t, const int32_t *draft, float *lg) {
    const fg_config *c = &fg_ctx_store(s->ctx)->cfg;
    int C = c->hidden_size, len = to; // positions < len are cached; len holds t, len + j draft j
    int32_t tok[INFER_CHUNK];
    int pos[INFER_CHUNK];
    for (int at = from; at < to;) {
        int n = FG_MIN(FG_MIN(s->chunk, INFER_CHUNK), to - at);
        for (int i = 0; i < n; i++) {
            int j = at + i + k; // the token this row embeds
            tok[i] = j < len ? s->toks[j] : j == len ? t : draft[j - len - 1];
            pos[i] = at + i;
            s->seqs[i] = s->seq;
            s->want[i] = at + n == to && i == n - 1;
        }
        fg_batch b = {.n = n, .token = tok, .seq = s->seqs, .pos = pos, .logits = s->want};
        float *hout = k < s->mtp ? s->H + ((size_t)k * s->max_T + at) * C : NULL;
        if (fg_ctx_mtp(s->ctx, k, &b, s->H + ((size_t)(k - 1) * s->max_T + at) * C, hout, lg)) return -1;
        at += n;
    }
    return 0;
}

// fg_generate with drafts (o->speculative > 0, a model with MTP, no repetition penalty):
// each round the MTP depths draft tokens len+1 .. len+S after the pending token t (depth k from
// depth k-1's state, chained), the main model verifies [t, d_1 .. d_S] in one batched forward, and
// the longest accepted prefix is kept (the cache truncated after it). Greedy: d_j is accepted when
// it is the main model's argmax, so the output equals plain greedy decoding. Sampling: d_j ~ q_j
// (the depth's distribution after the same temperature / top_k / top_p / min_p as the main
// model's p_j), accepted with probability min(1, p_j(d) / q_j(d)); at the first
// rejection the token is drawn from max(0, p_j - q_j) renormalised, after S acceptances from
// p_{S+1}: the standard speculative sampling, whose output distribution is exactly p's.
static int generate_spec(fg_infer *s, const int32_t *prompt, int n_prompt, const fg_sample_opts *o, int32_t *out,
                         int limit, int (*on_token)(int32_t id, void *ctx), void *ctx, fg_rng *rng) {
    const fg_config *c = &fg_ctx_store(s->ctx)->cfg;
    int V = c->vocab_size, C = c->hidden_size, greedy = o->temperature == 0 || o->top_k == 1;
    int S = FG_MIN(FG_MIN(o->speculative, s->mtp), FG_MTP_MAX);
    float *dl = s->spec, *vl = s->spec + (size_t)FG_MTP_MAX * V, *q = vl + (size_t)(FG_MTP_MAX + 1) * V;
    float *p = q + (size_t)FG_MTP_MAX * V; // dl: draft logits (S, V); vl: verify logits (S+1, V); q: draft probs (S, V)
    int base = fg_infer_pos(s);
    const float *logits = fg_infer_feed(s, prompt, n_prompt);
    if (!logits) return -1;
    int n = 0, stop = 0;
    // emits token id; 1 when generation ends with it
#define EMIT(id) (out[n++] = (id), stop = (on_token ? on_token((id), ctx) != 0 : 0), \
                  stop |= is_stop(o, (id)), stop || n == limit)
    int32_t t = greedy ? argmax(logits, V) : fg_sample(logits, V, o, rng, s->sample_scratch);
    if (t < 0) return -1;
    int done = EMIT(t);
    while (!done) {
        int len = fg_infer_pos(s);
        if (len >= s->max_T) break;
        // drafts the cache can still verify, and no more than the tokens still to emit after t need
        int Se = FG_MIN(FG_MIN(S, s->max_T - 1 - len), limit - n - 1);
        int32_t d[FG_MTP_MAX], vt[FG_MTP_MAX + 1];
        uint8_t want[FG_MTP_MAX + 1];
        int32_t seqs[FG_MTP_MAX + 1];
        for (int k = 1; k <= Se; k++) { // draft k: depth k at position len-1, chained
            int from = FG_MIN(fg_ctx_mtp_len(s->ctx, s->seq, k), s->mvalid[k - 1]);
            if (mtp_rows(s, k, from, len, t, d, dl + (size_t)(k - 1) * V)) return -1;
            if (greedy) d[k - 1] = argmax(dl + (size_t)(k - 1) * V, V);
            else {
                dist_of(q + (size_t)(k - 1) * V, dl + (size_t)(k - 1) * V, V, o, s->sample_scratch);
                d[k - 1] = draw(q + (size_t)(k - 1) * V, V, rng);
            }
        }
        // verify [t, d_1 .. d_Se] at positions len .. len+Se in one forward
        vt[0] = t;
        for (int j = 0; j <= Se; j++) { if (j) vt[j] = d[j - 1]; want[j] = 1; seqs[j] = s->seq; }
        memcpy(s->toks + len, vt, sizeof(int32_t) * (size_t)(Se + 1));
        fg_batch b = {.n = Se + 1, .token = vt, .seq = seqs, .logits = want};
        if (fg_ctx_decode_h(s->ctx, &b, vl, s->H + (size_t)len * C)) return -1;
        int a = 0;
        int32_t next = -1;
        for (; a < Se; a++) {
            const float *row = vl + (size_t)a * V;
            s->stats.proposed[a]++;
            if (greedy) {
                if (argmax(row, V) != d[a]) { next = argmax(row, V); break; }
            } else {
                float *pj = p, *qj = q + (size_t)a * V;
                dist_of(pj, row, V, o, s->sample_scratch);
                if (fg_rng_uniform(rng) * qj[d[a]] >= pj[d[a]]) { // rejected: the residual max(0, p - q)
                    for (int i = 0; i < V; i++) pj[i] = fmaxf(pj[i] - qj[i], 0.0f);
                    next = draw(pj, V, rng);
                    break;
                }
            }
            s->stats.accepted[a]++;
        }
        if (next < 0) { // every draft accepted: the next token from the last row
            const float *row = vl + (size_t)Se * V;
            next = greedy ? argmax(row, V) : fg_sample(row, V, o, rng, s->sample_scratch);
            if (next < 0) return -1;
        }
        s->stats.rounds++;
        s->stats.tokens += a + 1;
        // keep t and the accepted drafts; depth k's rows stay valid up to position len + a - k
        if (fg_ctx_seq_truncate(s->ctx, s->seq, len + a + 1)) return -1;
        // depth k's row at position i embedded token i + k: valid while that token was accepted
        for (int k = 1; k <= Se; k++) s->mvalid[k - 1] = FG_MAX(0, FG_MIN(len, len + a - k + 1));
        for (int j = 0; j < a && !done; j++) done = EMIT(d[j]);
        if (!done) done = EMIT(next);
        t = next;
    }
#undef EMIT
    // as the plain loop: the cache holds the prompt and out[0 .. n-2]
    int keep = base + n_prompt + n - 1;
    if (fg_infer_pos(s) > keep && fg_ctx_seq_truncate(s->ctx, s->seq, keep)) return -1;
    for (int k = 1; k <= s->mtp; k++) s->mvalid[k - 1] = FG_MIN(s->mvalid[k - 1], FG_MAX(0, keep - k));
    return n;
}

// ---- generation ------------------------------------------------------------------------------

int fg_generate(fg_infer *s, const int32_t *prompt, int n_prompt, const fg_sample_opts *o, int32_t *out,
                int cap, int (*on_token)(int32_t id, void *ctx), void *ctx) {
    if (!s) return fg_set_error("generate: no session");
    int V = fg_ctx_store(s->ctx)->cfg.vocab_size;
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
    if (o->speculative > 0 && s->mtp && !penalize && limit > 0)
        return generate_spec(s, prompt, n_prompt, o, out, limit, on_token, ctx, &rng);
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
        stop |= is_stop(o, t);
        if (stop || n == limit || fg_infer_pos(s) == s->max_T) break;
        logits = fg_infer_feed(s, &t, 1);
        if (!logits) rc = -1;
    }
    free(pen); free(seen);
    return rc ? -1 : n;
}
