// engine.c: continuous batching for the server (contract in frugal_serve.h, design in docs/serve.md).
//
// One thread owns the context. Everything else (HTTP threads) talks to it through jobs under one
// mutex: submit queues a job, the engine admits it when its worst-case cache need fits, runs
// steps (decode rows of running choices + prompt chunks) and appends each sampled token's text to
// its choice; waiters copy out what is new. A step's forward runs with the mutex released.
//
// Cache slots: every ctx sequence has a slot holding the tokens it has cached and the chained
// hash of each full block of them. A slot is owned by a running choice or kept (idle) after its
// request ended, until its sequence id or blocks are needed (least recently used first). A new
// prompt is matched against every slot: whole blocks by hash (then checked token by token), the
// tail token by token; the best one is forked and truncated, so only the rest is prefilled.
//
// Invariants: a job is freed when both the engine and the waiter have dropped it (refs); a
// choice's `pending` token is sampled but not fed (it is the next decode row); slot.ntok equals
// fg_ctx_seq_len of its sequence.
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frugal_serve.h"
#include "util.h"

#define BLK FG_KV_BLOCK

typedef struct { char *p; size_t n, cap; } sbuf;

static int sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = FG_MAX(b->cap * 2, b->n + n + 64);
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

typedef struct {
    int live, owner;            // owner: running choice holds it (1) or kept (0)
    int32_t *tok; int ntok, cap;
    uint64_t *bh;               // (cap / BLK) chained hash of each full block
    double used;                // last use (for eviction)
    // self-speculative decoding: h[k] (hcap, C) the state MTP depth k+1 reads at each position
    // (k = 0: the main model's normed final state); depth k+1's cache rows [0, mvalid[k]) were
    // computed from tokens that are still the sequence's
    float *h[FG_MTP_MAX]; int hcap;
    int mvalid[FG_MTP_MAX];
} slot;

typedef struct {
    int seq;                    // ctx sequence, -1 when none (finished)
    int32_t pending;            // sampled, not yet fed; -1 none
    int ntok;                   // tokens sampled
    sbuf content, reasoning;
    size_t sent_c, sent_r;      // bytes already given to the waiter
    int sent_tok;               // tokens already reported to the waiter
    int in_think, finish, finish_sent;
    fg_rng rng;
    fg_jsonm jm;
    int32_t forced[64]; int nforced, forced_at; // JSON mode: closing tokens to emit
    int32_t *counts;            // (V) generated counts, for the penalties (NULL: none)
    double t_last;
    int32_t draft[FG_MTP_MAX]; int nd, len0; // this step's drafts after pending, at positions len0 + 1 ..
} choice;

enum { J_QUEUED, J_PREFILL, J_DECODE, J_DONE };

struct fg_job {
    fg_engine *e;
    struct fg_job *next;        // queue / running list
    int refs, state, cancelled;
    int32_t *prompt; int n_prompt, fed, hit, chunk; // chunk: prompt rows in the current step
    int max_tokens, json, n, start_think, split; // split: <think> text is reasoning (chat), else plain text
    float temperature, top_p, fpen, ppen;
    char *stop[FG_API_MAX_STOP]; size_t stop_len[FG_API_MAX_STOP]; int n_stop;
    choice ch[FG_API_MAX_N];
    double t_submit, ttft;
};

struct fg_engine {
    const fg_wstore *ws;
    const fg_tokenizer *tok;
    fg_engine_opts o;
    fg_ctx *ctx;
    int V, max_len, max_seqs, style;
    int32_t bos, eos, think, end_think;
    char *pieces; uint32_t *piece_off; // (V+1) every token's bytes, special ids' included
    int32_t *nul_ids; int n_nul;       // tokens whose bytes hold a NUL: never sampled (API text has none)
    slot *slots;                       // (max_seqs)
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t work, out;
    fg_job *queue, *run;               // FIFO waiting; running (admission order)
    int nqueue, draining, stop, started;
    double drain_until;
    // step scratch (engine thread only)
    int32_t *b_tok, *b_seq; uint8_t *b_want;
    fg_job **r_job; int *r_ch;          // per wanted row: whose logits
    float *logits, *work_logits, *sscratch;
    int rows, C, S;                     // rows a step may carry; hidden size; drafts per choice (0: off)
    float *hid, *hin, *hout, *mlog;     // (rows, C) main states, MTP states in / out; (parallel, V) draft logits
    int32_t *m_tok, *m_seq, *m_pos; uint8_t *m_want; // an MTP pass's rows
    choice **m_who, **drafting;         // (parallel) whose draft each wanted row gives; the choices drafting
    fg_engine_stats st;                 // counters; free_positions is refreshed after each step
};

// ---- token text --------------------------------------------------------------------------------
static const char *piece(const fg_engine *e, int32_t id, size_t *n) {
    if (id < 0 || id >= e->V) { *n = 0; return ""; }
    *n = e->piece_off[id + 1] - e->piece_off[id];
    return e->pieces + e->piece_off[id];
}

static int build_pieces(fg_engine *e) {
    size_t total = 0;
    char small[FG_BYTETOK_MAX_PIECE + 1];
    for (int i = 0; i < e->V; i++) total += e->tok ? fg_tokenizer_decode(e->tok, i, NULL, 0) : fg_bytetok_decode(i, small);
    e->pieces = malloc(total + 1);
    e->piece_off = malloc(sizeof(uint32_t) * (size_t)(e->V + 1));
    if (!e->pieces || !e->piece_off || total > UINT32_MAX) return fg_set_error("engine: out of memory for the token table");
    size_t at = 0;
    for (int i = 0; i < e->V; i++) {
        e->piece_off[i] = (uint32_t)at;
        if (e->tok) at += fg_tokenizer_decode(e->tok, i, e->pieces + at, total - at);
        else { size_t n = fg_bytetok_decode(i, small); memcpy(e->pieces + at, small, n); at += n; }
    }
    e->piece_off[e->V] = (uint32_t)at;
    for (int pass = 0; pass < 2; pass++) {
        e->n_nul = 0;
        for (int i = 0; i < e->V; i++)
            if (memchr(e->pieces + e->piece_off[i], 0, e->piece_off[i + 1] - e->piece_off[i])) {
                if (pass) e->nul_ids[e->n_nul] = i;
                e->n_nul++;
            }
        if (!pass && !(e->nul_ids = malloc(sizeof(int32_t) * (size_t)(e->n_nul + 1)))) return fg_set_error("engine: out of memory");
    }
    return 0;
}

// Appends the ids of text[0..len) to *ids (length *n, capacity *cap). 0, or -1 out of memory.
static int encode_into(const fg_engine *e, const char *text, size_t len, int parse_special, int32_t **ids, int *n, int *cap) {
    size_t need = e->tok ? fg_tokenizer_encode(e->tok, text, len, parse_special, NULL, 0)
                         : fg_bytetok_encode(text, len, parse_special, NULL, 0);
    if (need == SIZE_MAX || need > (size_t)(INT32_MAX / 2 - *n)) return -1;
    if (*n + (int)need > *cap) {
        int c = FG_MAX(*cap * 2, *n + (int)need + 64);
        int32_t *p = realloc(*ids, sizeof(int32_t) * (size_t)c);
        if (!p) return -1;
        *ids = p; *cap = c;
    }
    *n += (int)(e->tok ? fg_tokenizer_encode(e->tok, text, len, parse_special, *ids + *n, need)
                       : fg_bytetok_encode(text, len, parse_special, *ids + *n, need));
    return 0;
}

// A conversation in the model's layout. The layout's own markers are special tokens; the
// messages' text is text: a user who types "<｜Assistant｜>" or "<|eos|>" gets those characters,
// not the control token. The layout is rendered with a marker in place of each message, then its
// pieces are encoded with special tokens parsed and the messages without. (Every layout bounds a
// message with special tokens, so the ids are those of the whole rendering whenever the messages
// hold no special string.) NULL when memory runs out or the layout refuses a message.
static int32_t *encode_chat(const fg_engine *e, const fg_chat_msg *m, int n, int *n_out) {
    fg_chat_msg *mk = malloc(sizeof *mk * (size_t)(n ? n : 1));
    char (*names)[24] = malloc(sizeof *names * (size_t)(n ? n : 1));
    int32_t *ids = NULL;
    int nid = 0, cap = 0, ok = mk && names;
    for (int i = 0; ok && i < n; i++) {
        snprintf(names[i], sizeof names[i], "\x01" "msg %d" "\x01", i); // no layout contains \x01
        mk[i] = (fg_chat_msg){m[i].role, names[i]};
    }
    size_t need = ok ? fg_chat_render(e->style, mk, n, 1, NULL, 0) : SIZE_MAX;
    char *text = need == SIZE_MAX ? NULL : malloc(need + 1);
    if (text) fg_chat_render(e->style, mk, n, 1, text, need + 1);
    ok = text != NULL;
    for (const char *at = text; ok && at && *at;) {
        const char *mark = strstr(at, "\x01" "msg ");
        size_t seg = mark ? (size_t)(mark - at) : strlen(at);
        if (seg && encode_into(e, at, seg, 1, &ids, &nid, &cap)) ok = 0;
        if (!mark) break;
        int i = atoi(mark + 5);
        if (i < 0 || i >= n) { ok = 0; break; } // cannot happen: the markers are ours
        const char *c = m[i].content;
        if (e->style == FG_CHAT_DEEPSEEK_R1 && !strcmp(m[i].role, "assistant")) // R1 keeps what follows the reasoning
            for (const char *k; (k = strstr(c, "</think>"));) c = k + 8;
        if (ok && *c && encode_into(e, c, strlen(c), 0, &ids, &nid, &cap)) ok = 0;
        at = strchr(mark + 1, '\x01') + 1;
    }
    free(text); free(mk); free(names);
    if (!ok || !nid) { free(ids); return NULL; }
    *n_out = nid;
    return ids;
}

// ---- cache slots and prefix reuse ------------------------------------------------------------------
static uint64_t mix(uint64_t h, const int32_t *t, int n) { // FNV-1a over the ids, then a finaliser
    for (int i = 0; i < n; i++) { h ^= (uint32_t)t[i]; h *= 0x100000001b3ull; }
    h ^= h >> 29; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 32;
    return h;
}

static int slot_push(slot *s, const int32_t *t, int n) {
    if (s->ntok + n > s->cap) {
        int cap = FG_MAX(s->cap * 2, s->ntok + n + BLK);
        cap = (cap + BLK - 1) / BLK * BLK;
        int32_t *nt = realloc(s->tok, sizeof(int32_t) * (size_t)cap);
        if (!nt) return -1;
        s->tok = nt;
        uint64_t *nb = realloc(s->bh, sizeof(uint64_t) * (size_t)(cap / BLK));
        if (!nb) return -1;
        s->bh = nb;
        s->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        s->tok[s->ntok++] = t[i];
        if (s->ntok % BLK == 0) {
            int b = s->ntok / BLK - 1;
            s->bh[b] = mix(b ? s->bh[b - 1] : 0xcbf29ce484222325ull, s->tok + b * BLK, BLK);
        }
    }
    return 0;
}

// Room for the states of positions [0, n) (self-speculative decoding). 0, or -1 out of memory.
static int slot_hold(fg_engine *e, int q, int n) {
    slot *s = &e->slots[q];
    if (!e->S || n <= s->hcap) return 0;
    for (int k = 0; k < e->S; k++) {
        float *h = realloc(s->h[k], sizeof(float) * (size_t)n * (size_t)e->C);
        if (!h) return -1;
        s->h[k] = h;
    }
    s->hcap = n;
    return 0;
}

// A slot taken afresh: live, owned, empty; its buffers kept.
static slot *slot_take(fg_engine *e, int q) {
    slot *s = &e->slots[q];
    s->live = s->owner = 1;
    s->ntok = 0;
    s->used = 0;
    memset(s->mvalid, 0, sizeof s->mvalid);
    return s;
}

static void slot_drop(fg_engine *e, int q) {
    fg_ctx_seq_remove(e->ctx, q);
    e->slots[q].live = 0;
    e->slots[q].ntok = 0;
}

// Evicts the least recently used kept slot; 0, or -1 when none is kept.
static int evict_one(fg_engine *e) {
    int best = -1;
    for (int q = 0; q < e->max_seqs; q++)
        if (e->slots[q].live && !e->slots[q].owner && (best < 0 || e->slots[q].used < e->slots[best].used)) best = q;
    if (best < 0) return -1;
    slot_drop(e, best);
    return 0;
}

// A new sequence id (evicting a kept slot when all are taken), or -1.
static int slot_new(fg_engine *e) {
    for (;;) {
        int q = fg_ctx_seq_new(e->ctx);
        if (q >= 0) { slot_take(e, q); return q; }
        if (evict_one(e)) return -1;
    }
}

static int slot_fork(fg_engine *e, int src, int len) {
    int q;
    for (;;) {
        if ((q = fg_ctx_seq_fork(e->ctx, src)) >= 0) break;
        // free an id without evicting src itself
        int best = -1;
        for (int k = 0; k < e->max_seqs; k++)
            if (k != src && e->slots[k].live && !e->slots[k].owner && (best < 0 || e->slots[k].used < e->slots[best].used)) best = k;
        if (best < 0) return -1;
        slot_drop(e, best);
    }
    fg_ctx_seq_truncate(e->ctx, q, len);
    slot *d = slot_take(e, q), *f = &e->slots[src];
    if (slot_push(d, f->tok, len) || slot_hold(e, q, len)) { slot_drop(e, q); return -1; }
    // depth k's rows stay valid below the first that embedded a token past the fork; the states
    // the depths will read from there are the source's
    for (int k = 1; k <= e->S; k++) {
        int from = d->mvalid[k - 1] = FG_MIN(f->mvalid[k - 1], FG_MAX(0, len - k));
        memcpy(d->h[k - 1] + (size_t)from * e->C, f->h[k - 1] + (size_t)from * e->C, sizeof(float) * (size_t)(len - from) * e->C);
    }
    return q;
}

// The slot sharing the longest prefix of p[0..n) (at most n - 1 tokens: the last prompt token is
// always run, its logits start the answer); *len its length. -1 when none shares a token.
static int prefix_find(fg_engine *e, const int32_t *p, int n, int *len) {
    int nb = (n - 1) / BLK, best = -1, best_len = 0;
    uint64_t h = 0xcbf29ce484222325ull, *rh = nb ? malloc(sizeof(uint64_t) * (size_t)nb) : NULL;
    if (nb && !rh) return -1;
    for (int b = 0; b < nb; b++) rh[b] = h = mix(h, p + b * BLK, BLK);
    for (int q = 0; q < e->max_seqs; q++) {
        const slot *s = &e->slots[q];
        if (!s->live || !s->ntok) continue;
        int b = 0, lim = FG_MIN(nb, s->ntok / BLK);
        while (b < lim && s->bh[b] == rh[b]) b++;
        int m = b * BLK;
        if (memcmp(s->tok, p, sizeof(int32_t) * (size_t)m)) continue; // a hash collision: not this one
        int cap = FG_MIN(s->ntok, n - 1);
        while (m < cap && s->tok[m] == p[m]) m++;
        if (m > best_len) { best_len = m; best = q; }
    }
    free(rh);
    *len = best_len;
    return best;
}

// ---- jobs -----------------------------------------------------------------------------------------
static void job_free(fg_job *j) {
    for (int i = 0; i < FG_API_MAX_N; i++) {
        free(j->ch[i].content.p); free(j->ch[i].reasoning.p); free(j->ch[i].counts);
    }
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->prompt);
    free(j);
}

static void job_unref(fg_job *j) { if (--j->refs == 0) job_free(j); }

// Worst-case blocks a job still needs: every choice may write up to prompt + max_tokens positions.
// With drafts a choice holds up to S positions more during a step, and its MTP depths may copy
// the block before its fork point too.
static int job_need(const fg_engine *e, const fg_job *j) {
    int target = j->n_prompt + j->max_tokens + e->S, need = 0, cow = e->S ? 2 : 1;
    for (int i = 0; i < j->n; i++) {
        int have = j->state == J_QUEUED || j->ch[i].seq < 0 ? 0 : fg_ctx_seq_len(e->ctx, j->ch[i].seq);
        if (j->state != J_QUEUED && j->ch[i].seq < 0) continue; // finished (or not yet forked: counted below)
        need += (target - have + BLK - 1) / BLK + cow;
    }
    if (j->state == J_PREFILL) need += (j->n - 1) * ((j->max_tokens + e->S + BLK - 1) / BLK + 1 + cow); // forks to come
    return need;
}

static void hist_add(double *le, uint64_t *h, double v) {
    int b = 0;
    while (b < FG_ENGINE_HIST - 1 && v > le[b]) b++;
    h[b]++;
}

// Bytes of b[0..n) that may be shown: whole UTF-8 characters, and not a tail that may still
// become a stop string.
static size_t committed(const fg_job *j, const sbuf *b, int content, int final) {
    size_t n = b->n;
    if (final) return n;
    // an incomplete UTF-8 character at the end waits for its continuation bytes
    size_t k = 0;
    while (k < 4 && k < n && ((unsigned char)b->p[n - 1 - k] & 0xc0) == 0x80) k++;
    if (k < n) {
        unsigned c = (unsigned char)b->p[n - 1 - k];
        int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        if (c >= 0x80 && (int)k + 1 < len) n -= k + 1;
    }
    if (!content) return n;
    size_t hold = 0;
    for (int s = 0; s < j->n_stop; s++)
        for (size_t l = FG_MIN(j->stop_len[s] - 1, n); l > hold; l--)
            if (!memcmp(b->p + n - l, j->stop[s], l)) { hold = l; break; }
    return n - hold;
}

// Ends choice i: its sequence is kept for prefix reuse (choice 0) or freed.
static void choice_finish(fg_engine *e, fg_job *j, int i, int why) {
    choice *c = &j->ch[i];
    if (c->finish) return;
    c->finish = why;
    if (c->seq >= 0) {
        if (i == 0 && why != FG_FINISH_CANCELLED) { e->slots[c->seq].owner = 0; e->slots[c->seq].used = fg_now(); }
        else slot_drop(e, c->seq);
        c->seq = -1;
    }
    c->pending = -1;
}

// Appends sampled token id to choice i: text, stop strings, limits.
static void choice_take(fg_engine *e, fg_job *j, int i, int32_t id, double now) {
    choice *c = &j->ch[i];
    c->ntok++;
    e->st.completion_tokens++;
    if (c->ntok == 1 && i == 0) { j->ttft = now - j->t_submit; e->st.ttft_sum += j->ttft; e->st.ttft_n++; hist_add(e->st.le, e->st.ttft, j->ttft); }
    else if (c->ntok > 1) { double d = now - c->t_last; e->st.itl_sum += d; e->st.itl_n++; hist_add(e->st.le, e->st.itl, d); }
    c->t_last = now;
    if (c->counts) c->counts[id]++;
    if (id == e->eos) { choice_finish(e, j, i, FG_FINISH_STOP); return; }
    if (j->split && id == e->think && e->think >= 0) c->in_think = 1;
    else if (j->split && id == e->end_think && e->end_think >= 0) c->in_think = 0;
    else {
        size_t n;
        const char *p = piece(e, id, &n);
        sbuf *b = c->in_think ? &c->reasoning : &c->content;
        size_t from = b->n;
        if (sbuf_add(b, p, n)) { choice_finish(e, j, i, FG_FINISH_CANCELLED); return; }
        if (!c->in_think)
            for (int s = 0; s < j->n_stop; s++) { // a stop string that ends in the new bytes
                size_t lo = from >= j->stop_len[s] ? from - j->stop_len[s] + 1 : 0;
                for (size_t at = lo; at + j->stop_len[s] <= b->n; at++)
                    if (!memcmp(b->p + at, j->stop[s], j->stop_len[s])) {
                        b->n = at; b->p[at] = 0;
                        if (c->sent_c > at) c->sent_c = at;
                        choice_finish(e, j, i, FG_FINISH_STOP);
                        return;
                    }
            }
    }
    if (c->ntok >= j->max_tokens || j->n_prompt + c->ntok >= e->max_len) { choice_finish(e, j, i, FG_FINISH_LENGTH); return; }
    c->pending = id;
}

// JSON mode: may token id follow what the choice has produced?
static int json_ok(const fg_engine *e, const choice *c, int32_t id) {
    if (id == e->eos) return fg_jsonm_done(&c->jm);
    if (id == e->think || id == e->end_think || id == e->bos) return 0;
    size_t n;
    const char *p = piece(e, id, &n);
    if (!n) return 0;
    fg_jsonm t = c->jm;
    return fg_jsonm_feed(&t, p, n);
}

// Picks choice i's next token from the logits of its last fed token.
static int32_t choice_sample(fg_engine *e, fg_job *j, int i, const float *logits) {
    choice *c = &j->ch[i];
    int V = e->V;
    if (j->json) {
        if (c->forced_at < c->nforced) return c->forced[c->forced_at++];
        if (fg_jsonm_done(&c->jm)) return e->eos;
        char close[64];
        size_t need = fg_jsonm_closing(&c->jm, close, sizeof close);
        if (j->max_tokens - c->ntok <= (int)need + 1 && need < sizeof close) { // close it now, a byte per token
            int k = 0;
            for (size_t b = 0; b < need; b++) {
                int32_t t = -1;
                if (e->tok) { int32_t one; if (fg_tokenizer_encode(e->tok, close + b, 1, 0, &one, 1) == 1) t = one; }
                else t = (unsigned char)close[b];
                if (t >= 0) c->forced[k++] = t;
            }
            c->nforced = k; c->forced_at = 0;
            if (k) return c->forced[c->forced_at++];
        }
    }
    float *w = e->work_logits;
    memcpy(w, logits, sizeof(float) * (size_t)V);
    for (int k = 0; k < e->n_nul; k++) w[e->nul_ids[k]] = -INFINITY;
    if (c->counts && (j->fpen != 0 || j->ppen != 0))
        for (int t = 0; t < V; t++)
            if (c->counts[t]) w[t] -= j->fpen * (float)c->counts[t] + j->ppen;
    fg_sample_opts so = {.temperature = j->temperature, .top_p = j->top_p > 0 ? j->top_p : 1e-6f};
    int32_t id = fg_sample(w, V, &so, &c->rng, e->sscratch);
    if (!j->json || json_ok(e, c, id)) return id;
    for (int tries = 0; tries < 4; tries++) { // rejection first: usually the model's pick is fine
        w[id] = -INFINITY;
        id = fg_sample(w, V, &so, &c->rng, e->sscratch);
        if (json_ok(e, c, id)) return id;
    }
    int any = 0; // then mask every token that cannot continue
    for (int t = 0; t < V; t++)
        if (w[t] != -INFINITY && !json_ok(e, c, t)) w[t] = -INFINITY;
        else if (w[t] != -INFINITY) any = 1;
    if (any) return fg_sample(w, V, &so, &c->rng, e->sscratch);
    return e->eos; // nothing fits (cannot happen with a byte-complete vocabulary)
}

static void choice_json_feed(fg_engine *e, choice *c, int32_t id) {
    size_t n;
    const char *p = piece(e, id, &n);
    if (id != e->eos && n) fg_jsonm_feed(&c->jm, p, n);
}

// ---- the step ---------------------------------------------------------------------------------------
static void list_remove(fg_job **head, fg_job *j) {
    for (fg_job **p = head; *p; p = &(*p)->next)
        if (*p == j) { *p = j->next; j->next = NULL; return; }
}

static void job_end(fg_engine *e, fg_job *j) { // engine drops a finished job
    list_remove(&e->run, j);
    j->state = J_DONE;
    job_unref(j);
}

// Admits queued jobs in order while their worst case fits (evicting kept prefixes).
static void admit(fg_engine *e) {
    while (e->queue) {
        fg_job *j = e->queue;
        if (j->cancelled) { e->queue = j->next; e->nqueue--; j->state = J_DONE; e->st.cancelled++; job_unref(j); continue; }
        int running = 0, need = job_need(e, j);
        for (fg_job *r = e->run; r; r = r->next) {
            need += job_need(e, r);
            for (int i = 0; i < r->n; i++) running += !r->ch[i].finish;
        }
        if (running + j->n > e->o.parallel) return;
        // prefix reuse (the match is touched first, so eviction takes others before it), then
        // the sequence of choice 0
        int m = 0, src = prefix_find(e, j->prompt, j->n_prompt, &m);
        if (src >= 0) e->slots[src].used = fg_now();
        while (need > fg_ctx_free_positions(e->ctx) / BLK)
            if (evict_one(e)) return;
        if (src >= 0 && !e->slots[src].live) src = prefix_find(e, j->prompt, j->n_prompt, &m);
        int q = src >= 0 && m > 0 ? slot_fork(e, src, m) : slot_new(e);
        if (q < 0) return;
        if (slot_hold(e, q, j->n_prompt + j->max_tokens + e->S + 1)) { slot_drop(e, q); return; }
        if (src >= 0 && m > 0) e->slots[src].used = fg_now();
        else m = 0;
        e->queue = j->next; e->nqueue--;
        j->next = NULL;
        fg_job **tail = &e->run;
        while (*tail) tail = &(*tail)->next;
        *tail = j;
        j->ch[0].seq = q;
        j->fed = j->hit = m;
        j->state = J_PREFILL;
        e->st.cache_hit_tokens += (uint64_t)m;
    }
}

// ---- self-speculative drafts -------------------------------------------------------------------------
// Runs MTP depth k over the n gathered rows; keeps their states for depth k+1 and each wanted
// row's greedy draft.
static int mtp_pass(fg_engine *e, int k, int n, int nw) {
    fg_batch b = {.n = n, .token = e->m_tok, .seq = e->m_seq, .pos = e->m_pos, .logits = e->m_want};
    int keep = k < e->S;
    if (fg_ctx_mtp(e->ctx, k, &b, e->hin, keep ? e->hout : NULL, e->mlog)) return -1;
    for (int r = 0; keep && r < n; r++)
        memcpy(e->slots[e->m_seq[r]].h[k] + (size_t)e->m_pos[r] * e->C, e->hout + (size_t)r * e->C, sizeof(float) * (size_t)e->C);
    fg_sample_opts greedy = {.temperature = 0, .top_p = 1};
    for (int w = 0; w < nw; w++) e->m_who[w]->draft[k - 1] = fg_sample(e->mlog + (size_t)w * e->V, e->V, &greedy, NULL, NULL);
    return 0;
}

// Drafts of the nc choices cs (choice c drafts c->nd tokens after its pending one at position
// len0): depth k at position len0 - 1 reads depth k-1's state there and the token k - 1 places
// after pending (pending itself for k = 1), chained; every depth first catches up on the
// positions whose rows are stale (after a prefill, a fork or rejected drafts). Greedy drafts:
// the verification samples each row with the choice's own sampler and keeps a draft when it is
// what was sampled, which is speculative sampling with a draft distribution that puts all its
// mass on the draft (acceptance p(d)), so the output is exactly the model's.
static int draft(fg_engine *e, choice **cs, int nc) {
    int C = e->C;
    for (int k = 1; k <= e->S; k++) {
        int n = 0, nw = 0;
        for (int x = 0; x < nc; x++) {
            choice *c = cs[x];
            if (c->nd < k) continue;
            slot *sl = &e->slots[c->seq];
            int len = c->len0, from = FG_MIN(fg_ctx_mtp_len(e->ctx, c->seq, k), sl->mvalid[k - 1]);
            for (int pos = from; pos < len; pos++) {
                if (n == e->rows) { // full: run what is gathered (this choice continues in the next pass)
                    if (mtp_pass(e, k, n, nw)) return -1;
                    n = nw = 0;
                }
                int t = pos + k; // the token this row embeds
                e->m_tok[n] = t < len ? sl->tok[t] : t == len ? c->pending : c->draft[t - len - 1];
                e->m_seq[n] = c->seq;
                e->m_pos[n] = pos;
                if ((e->m_want[n] = pos == len - 1)) e->m_who[nw++] = c;
                memcpy(e->hin + (size_t)n * C, sl->h[k - 1] + (size_t)pos * C, sizeof(float) * (size_t)C);
                n++;
            }
        }
        if (n && mtp_pass(e, k, n, nw)) return -1;
    }
    return 0;
}

// After choice c's rows were verified with a of its drafts kept: the cache (and its slot, when
// it is still held) keeps pending and those drafts; depth k's rows stay valid while the token
// they embedded was kept.
static void settle(fg_engine *e, int q, const choice *c, int a) {
    slot *sl = &e->slots[q];
    if (!sl->live) return;
    int len = c->len0;
    fg_ctx_seq_truncate(e->ctx, q, len + a + 1);
    sl->ntok = len + a + 1;
    for (int k = 1; k <= c->nd; k++) sl->mvalid[k - 1] = FG_MAX(0, FG_MIN(len, len + a - k + 1));
}

// Runs one step; returns the rows it carried.
static int step(fg_engine *e) {
    int rows = 0, nwant = 0, nd = 0;
    double now = fg_now();
    // drafts first: the step verifies them after each choice's pending token
    if (e->S) {
        for (fg_job *j = e->run; j; j = j->next) {
            if (j->state != J_DECODE) continue;
            for (int i = 0; i < j->n; i++) {
                choice *c = &j->ch[i];
                if (c->finish || c->pending < 0) continue;
                c->len0 = e->slots[c->seq].ntok;
                c->nd = FG_MAX(0, FG_MIN(e->S, FG_MIN(e->max_len - 1 - c->len0, j->max_tokens - c->ntok - 1)));
                if (c->nd) e->drafting[nd++] = c;
            }
        }
        if (nd) { // the choices' drafting state is the engine thread's alone: no lock needed
            pthread_mutex_unlock(&e->mu);
            int rc = draft(e, e->drafting, nd);
            pthread_mutex_lock(&e->mu);
            if (rc) { // cannot happen (rows and blocks were reserved): go on without drafts
                fg_log(0, "engine: drafting failed: %s", fg_last_error());
                for (int x = 0; x < nd; x++) e->drafting[x]->nd = 0;
            }
        }
    }
    // decode rows: each running choice's pending token (and its drafts)
    for (fg_job *j = e->run; j; j = j->next) {
        if (j->state != J_DECODE) continue;
        for (int i = 0; i < j->n; i++) {
            choice *c = &j->ch[i];
            if (c->finish || c->pending < 0) continue;
            for (int k = 0; k <= c->nd; k++) {
                e->b_tok[rows] = k ? c->draft[k - 1] : c->pending; e->b_seq[rows] = c->seq; e->b_want[rows] = 1;
                e->r_job[nwant] = j; e->r_ch[nwant] = i; nwant++;
                rows++;
            }
        }
    }
    // then prompt chunks under the row budget
    int budget = FG_MAX(e->o.step_rows - rows, 16);
    for (fg_job *j = e->run; j && budget > 0; j = j->next) {
        if (j->state != J_PREFILL) continue;
        int k = j->chunk = FG_MIN(budget, j->n_prompt - j->fed);
        for (int r = 0; r < k; r++) {
            e->b_tok[rows] = j->prompt[j->fed + r]; e->b_seq[rows] = j->ch[0].seq;
            e->b_want[rows] = j->fed + r == j->n_prompt - 1;
            if (e->b_want[rows]) { e->r_job[nwant] = j; e->r_ch[nwant] = -1; nwant++; }
            rows++;
        }
        budget -= k;
    }
    if (!rows) return 0;
    fg_batch b = {.n = rows, .token = e->b_tok, .seq = e->b_seq, .logits = e->b_want};
    e->st.last_batch = rows;
    pthread_mutex_unlock(&e->mu);
    int rc = fg_ctx_decode_h(e->ctx, &b, e->logits, e->S ? e->hid : NULL);
    pthread_mutex_lock(&e->mu);
    e->st.steps++; e->st.step_rows += (uint64_t)rows;
    e->st.free_positions = fg_ctx_free_positions(e->ctx); // read here: other threads must not touch the context
    now = fg_now();
    if (rc) { // cannot happen for admitted jobs (their worst case was reserved): end them all
        fg_log(0, "engine: step failed: %s", fg_last_error());
        for (fg_job *j = e->run; j; j = j->next)
            for (int i = 0; i < j->n; i++) choice_finish(e, j, i, FG_FINISH_CANCELLED);
    } else {
        // the slots' token lists (and the states the MTP depths read) follow the cache
        for (int r = 0; r < rows; r++) {
            slot *sl = &e->slots[e->b_seq[r]];
            if (e->S && sl->ntok < sl->hcap) // always (held at admission)
                memcpy(sl->h[0] + (size_t)sl->ntok * e->C, e->hid + (size_t)r * e->C, sizeof(float) * (size_t)e->C);
            slot_push(sl, &e->b_tok[r], 1);
        }
        for (fg_job *j = e->run; j; j = j->next)
            if (j->state == J_PREFILL) { j->fed += j->chunk; j->chunk = 0; }
        for (int w = 0; w < nwant; w++) {
            fg_job *j = e->r_job[w];
            const float *lg = e->logits + (size_t)w * e->V;
            if (e->r_ch[w] >= 0) { // a decode row, and its drafts' rows after it
                int i = e->r_ch[w], q = j->ch[i].seq, a = 0;
                choice *c = &j->ch[i];
                for (int k = 0; k <= c->nd && !c->finish; k++) { // sample row k; go on while it is draft k+1
                    int32_t id = choice_sample(e, j, i, e->logits + (size_t)(w + k) * e->V);
                    if (j->json) choice_json_feed(e, c, id);
                    choice_take(e, j, i, id, now);
                    a = k;
                    if (k == c->nd) break;
                    e->st.spec_proposed[k]++;
                    if (id != c->draft[k]) break;
                    e->st.spec_accepted[k]++;
                }
                w += c->nd;
                if (c->nd) settle(e, q, c, a);
                continue;
            }
            // a prompt done: fork it for the other choices, sample every choice's first token
            j->state = J_DECODE;
            for (int i = 1; i < j->n; i++) {
                int q = slot_fork(e, j->ch[0].seq, j->n_prompt);
                if (q >= 0 && slot_hold(e, q, j->n_prompt + j->max_tokens + e->S + 1)) { slot_drop(e, q); q = -1; }
                if (q < 0) { choice_finish(e, j, i, FG_FINISH_CANCELLED); continue; }
                j->ch[i].seq = q;
            }
            for (int i = 0; i < j->n; i++) {
                if (j->ch[i].finish) continue;
                j->ch[i].in_think = j->start_think;
                int32_t id = choice_sample(e, j, i, lg);
                if (j->json) choice_json_feed(e, &j->ch[i], id);
                choice_take(e, j, i, id, now);
            }
        }
    }
    for (fg_job *j = e->run, *nx; j; j = nx) { // finished jobs leave the running list
        nx = j->next;
        int live = 0;
        for (int i = 0; i < j->n; i++) live += !j->ch[i].finish;
        if (!live) job_end(e, j);
    }
    pthread_cond_broadcast(&e->out);
    return rows;
}

static void cancel_marked(fg_engine *e) {
    for (fg_job *j = e->run, *nx; j; j = nx) {
        nx = j->next;
        if (!j->cancelled && !(e->draining && fg_now() > e->drain_until)) continue;
        for (int i = 0; i < j->n; i++) choice_finish(e, j, i, FG_FINISH_CANCELLED);
        e->st.cancelled++;
        job_end(e, j);
    }
    for (fg_job **p = &e->queue; *p;) { // requests given up while waiting
        fg_job *j = *p;
        if (!j->cancelled) { p = &j->next; continue; }
        *p = j->next; e->nqueue--; e->st.cancelled++;
        j->state = J_DONE;
        job_unref(j);
    }
    if (e->draining)
        while (e->queue) { fg_job *j = e->queue; e->queue = j->next; e->nqueue--; for (int i = 0; i < j->n; i++) j->ch[i].finish = FG_FINISH_CANCELLED; j->state = J_DONE; job_unref(j); }
}

static void *engine_main(void *arg) {
    fg_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        cancel_marked(e);
        if (!e->draining) admit(e);
        if (!e->run) {
            pthread_cond_broadcast(&e->out);
            if (e->draining) { e->stop = 1; break; }
            pthread_cond_wait(&e->work, &e->mu);
            continue;
        }
        if (!step(e)) { // nothing runnable (cannot happen while a job runs; do not spin if it does)
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&e->work, &e->mu, &ts);
        }
    }
    pthread_cond_broadcast(&e->out);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

// ---- public API -----------------------------------------------------------------------------------
void fg_engine_opts_default(fg_engine_opts *o) {
    *o = (fg_engine_opts){.parallel = 16, .max_queue = 64, .kv_type = FG_F32, .step_rows = 256, .chat_style = -1};
}

fg_engine *fg_engine_create(const fg_wstore *ws, const fg_tokenizer *tok, const fg_engine_opts *o) {
    if (!ws || !o) { fg_set_error("engine: no weights or options"); return NULL; }
    const fg_config *c = fg_wstore_config(ws);
    if (o->parallel < 1 || o->parallel > 1024 || o->max_queue < 0 || o->step_rows < 1 || o->max_len < 0 || o->n_ctx < 0 ||
        o->max_tokens < 0) {
        fg_set_error("engine: parallel must be in [1, 1024], step_rows >= 1 and max_queue, max_len, n_ctx, max_tokens >= 0");
        return NULL;
    }
    fg_engine *e = calloc(1, sizeof *e);
    if (!e) { fg_set_error("engine: out of memory"); return NULL; }
    e->ws = ws; e->tok = tok; e->o = *o;
    e->V = c->vocab_size;
    e->max_len = o->max_len ? FG_MIN(o->max_len, c->max_position_embeddings) : FG_MIN(c->max_position_embeddings, FG_ENGINE_DEFAULT_CTX);
    e->style = o->chat_style >= 0 ? o->chat_style : tok ? FG_CHAT_DEEPSEEK_V3 : FG_CHAT_FRUGAL;
    if (tok) {
        e->bos = fg_tokenizer_token_id(tok, FG_DS_BOS);
        e->eos = fg_tokenizer_token_id(tok, FG_DS_EOS);
        e->think = fg_tokenizer_token_id(tok, "<think>");
        e->end_think = fg_tokenizer_token_id(tok, "</think>");
        if (e->bos < 0 || e->eos < 0) { fg_set_error("engine: the tokenizer has no DeepSeek BOS/EOS tokens"); free(e); return NULL; }
    } else {
        e->bos = FG_TOK_BOS; e->eos = FG_TOK_EOS; e->think = FG_TOK_THINK; e->end_think = FG_TOK_END_THINK;
    }
    int D = c->num_nextn_predict_layers;
    if (o->speculative < 0 || o->speculative > FG_MIN(D, FG_MTP_MAX)) {
        if (D) fg_set_error("engine: speculative must be in [0, %d], the model's MTP depths (got %d)", FG_MIN(D, FG_MTP_MAX), o->speculative);
        else fg_set_error("engine: speculative decoding needs a model with multi-token prediction (num_nextn_predict_layers > 0)");
        free(e);
        return NULL;
    }
    e->S = o->speculative;
    e->C = c->hidden_size;
    int kept = FG_MAX(8, o->parallel);
    e->max_seqs = o->parallel + kept + 1;
    int n_ctx = o->n_ctx ? o->n_ctx : (o->parallel + FG_MIN(kept, 8)) * e->max_len;
    int rows = e->rows = o->step_rows + o->parallel * (e->S + 1);
    fg_ctx_params p = {.n_ctx = n_ctx, .max_len = e->max_len, .max_seqs = e->max_seqs, .max_batch = rows,
                       .kind = FG_KV_AUTO, .kv_type = o->kv_type, .mtp = e->S > 0};
    e->ctx = fg_ctx_create(ws, &p);
    int nw = o->parallel * (e->S + 2) + 1; // wanted rows per step: decode rows (and drafts) + prompts finishing
    e->slots = calloc((size_t)e->max_seqs, sizeof(slot));
    e->b_tok = malloc(sizeof(int32_t) * (size_t)rows); e->b_seq = malloc(sizeof(int32_t) * (size_t)rows);
    e->b_want = malloc((size_t)rows);
    e->r_job = malloc(sizeof(fg_job *) * (size_t)(rows)); e->r_ch = malloc(sizeof(int) * (size_t)rows);
    e->logits = malloc(sizeof(float) * (size_t)e->V * (size_t)FG_MIN(rows, nw));
    e->work_logits = malloc(sizeof(float) * (size_t)e->V);
    e->sscratch = malloc(sizeof(float) * 2 * (size_t)e->V);
    int oom = 0;
    if (e->S) {
        size_t hb = sizeof(float) * (size_t)rows * (size_t)e->C;
        e->hid = malloc(hb); e->hin = malloc(hb); e->hout = malloc(hb);
        e->mlog = malloc(sizeof(float) * (size_t)o->parallel * (size_t)e->V);
        e->m_tok = malloc(sizeof(int32_t) * (size_t)rows); e->m_seq = malloc(sizeof(int32_t) * (size_t)rows);
        e->m_pos = malloc(sizeof(int32_t) * (size_t)rows); e->m_want = malloc((size_t)rows);
        e->m_who = malloc(sizeof(choice *) * (size_t)o->parallel); e->drafting = malloc(sizeof(choice *) * (size_t)o->parallel);
        oom = !e->hid || !e->hin || !e->hout || !e->mlog || !e->m_tok || !e->m_seq || !e->m_pos || !e->m_want || !e->m_who || !e->drafting;
    }
    if (!e->ctx || !e->slots || !e->b_tok || !e->b_seq || !e->b_want || !e->r_job || !e->r_ch || !e->logits ||
        !e->work_logits || !e->sscratch || oom || build_pieces(e)) {
        if (e->ctx) fg_set_error("engine: out of memory");
        fg_engine_free(e);
        return NULL;
    }
    static const double le[FG_ENGINE_HIST] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, INFINITY};
    memcpy(e->st.le, le, sizeof le);
    e->st.n_ctx = n_ctx;
    e->st.free_positions = fg_ctx_free_positions(e->ctx);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->out, NULL);
    if (pthread_create(&e->th, NULL, engine_main, e)) { fg_set_error("engine: cannot start its thread"); fg_engine_free(e); return NULL; }
    e->started = 1;
    return e;
}

void fg_engine_drain(fg_engine *e, double drain_s) {
    if (!e || !e->started) return;
    pthread_mutex_lock(&e->mu);
    if (!e->draining) { e->draining = 1; e->drain_until = fg_now() + drain_s; }
    else if (fg_now() + drain_s < e->drain_until) e->drain_until = fg_now() + drain_s;
    pthread_cond_broadcast(&e->work);
    pthread_mutex_unlock(&e->mu);
}

void fg_engine_free(fg_engine *e) {
    if (!e) return;
    if (e->started) {
        fg_engine_drain(e, 0);
        pthread_join(e->th, NULL);
        pthread_cond_destroy(&e->work); pthread_cond_destroy(&e->out); pthread_mutex_destroy(&e->mu);
    }
    for (int q = 0; e->slots && q < e->max_seqs; q++) {
        free(e->slots[q].tok); free(e->slots[q].bh);
        for (int k = 0; k < FG_MTP_MAX; k++) free(e->slots[q].h[k]);
    }
    free(e->hid); free(e->hin); free(e->hout); free(e->mlog);
    free(e->m_tok); free(e->m_seq); free(e->m_pos); free(e->m_want); free(e->m_who); free(e->drafting);
    fg_ctx_free(e->ctx);
    free(e->slots); free(e->b_tok); free(e->b_seq); free(e->b_want); free(e->r_job); free(e->r_ch);
    free(e->logits); free(e->work_logits); free(e->sscratch); free(e->pieces); free(e->piece_off); free(e->nul_ids);
    free(e);
}

static void invalid(fg_api_error *err, const char *param, const char *fmt, int a, int b) {
    memset(err, 0, sizeof *err);
    snprintf(err->message, sizeof err->message, fmt, a, b);
    snprintf(err->param, sizeof err->param, "%s", param);
    err->type = "invalid_request_error";
    err->code = "context_length_exceeded";
}

fg_job *fg_engine_submit(fg_engine *e, const fg_api_request *r, int *status, fg_api_error *err) {
    *status = FG_JOB_INVALID;
    fg_job *j = calloc(1, sizeof *j);
    if (!j) { invalid(err, "", "out of memory", 0, 0); return NULL; }
    if (r->kind == FG_API_CHAT) {
        j->prompt = encode_chat(e, r->msgs, r->n_msgs, &j->n_prompt);
    } else {
        // as `frugal generate`: BOS, then the prompt with special tokens parsed
        int cap = 1;
        if ((j->prompt = malloc(sizeof(int32_t)))) {
            j->prompt[0] = e->bos;
            j->n_prompt = 1;
            if (encode_into(e, r->prompt, r->prompt_len, 1, &j->prompt, &j->n_prompt, &cap)) { free(j->prompt); j->prompt = NULL; }
        }
    }
    if (!j->prompt) { invalid(err, "", "cannot render or encode the prompt", 0, 0); job_free(j); return NULL; }
    if (j->n_prompt >= e->max_len) {
        invalid(err, r->kind == FG_API_CHAT ? "messages" : "prompt",
                "the prompt is %d tokens; this server's context holds %d (shorten it)", j->n_prompt, e->max_len);
        job_free(j);
        return NULL;
    }
    int room = e->max_len - j->n_prompt;
    j->max_tokens = r->max_tokens > 0 ? r->max_tokens : e->o.max_tokens > 0 ? FG_MIN(e->o.max_tokens, room) : room;
    if (j->max_tokens > room) {
        invalid(err, "max_tokens", "the prompt is %d tokens and max_tokens asks for %d more; ", j->n_prompt, j->max_tokens);
        size_t l = strlen(err->message);
        snprintf(err->message + l, sizeof err->message - l, "this server's context holds %d in all", e->max_len);
        job_free(j);
        return NULL;
    }
    j->e = e;
    j->n = r->n;
    j->json = r->json_mode;
    j->temperature = r->temperature; j->top_p = r->top_p;
    j->fpen = r->frequency_penalty; j->ppen = r->presence_penalty;
    // a prompt ending in <think> (or <think> and a newline) starts its answer inside the reasoning
    int32_t last = j->prompt[j->n_prompt - 1], before = j->n_prompt > 1 ? j->prompt[j->n_prompt - 2] : -1;
    size_t ln;
    const char *lp = piece(e, last, &ln);
    j->split = r->kind == FG_API_CHAT;
    j->start_think = j->split && e->think >= 0 && (last == e->think || (before == e->think && ln == 1 && lp[0] == '\n'));
    uint64_t seed = r->has_seed ? r->seed : (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)j << 16);
    for (int i = 0; i < r->n_stop; i++) {
        if (!(j->stop[i] = malloc(r->stop_len[i] + 1))) { invalid(err, "", "out of memory", 0, 0); job_free(j); return NULL; }
        memcpy(j->stop[i], r->stop[i], r->stop_len[i] + 1);
        j->stop_len[i] = r->stop_len[i];
        j->n_stop = i + 1;
    }
    for (int i = 0; i < j->n; i++) {
        choice *c = &j->ch[i];
        c->seq = -1; c->pending = -1;
        fg_rng_seed(&c->rng, seed + (uint64_t)i);
        fg_jsonm_init(&c->jm);
        if ((j->fpen != 0 || j->ppen != 0) && !(c->counts = calloc((size_t)e->V, sizeof(int32_t)))) {
            invalid(err, "", "out of memory", 0, 0); job_free(j); return NULL;
        }
    }
    j->t_submit = fg_now();
    j->refs = 2;
    pthread_mutex_lock(&e->mu);
    if (e->draining) { pthread_mutex_unlock(&e->mu); *status = FG_JOB_CLOSED; job_free(j); return NULL; }
    // busy: the queue holds max_queue requests beyond those the free slots will take at once
    int running = 0, queued = 0;
    for (fg_job *r = e->run; r; r = r->next)
        for (int i = 0; i < r->n; i++) running += !r->ch[i].finish;
    for (fg_job *r = e->queue; r; r = r->next) queued += r->n;
    if (queued + j->n > e->o.max_queue + FG_MAX(0, e->o.parallel - running)) {
        pthread_mutex_unlock(&e->mu);
        *status = FG_JOB_BUSY;
        job_free(j);
        return NULL;
    }
    fg_job **tail = &e->queue;
    while (*tail) tail = &(*tail)->next;
    *tail = j;
    e->nqueue++;
    e->st.requests++;
    e->st.prompt_tokens += (uint64_t)j->n_prompt;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    *status = FG_JOB_OK;
    return j;
}

static int copy_delta(char **dst, size_t *n, size_t *cap, const sbuf *b, size_t *sent, size_t upto) {
    *n = 0;
    if (upto <= *sent) return 0;
    size_t k = upto - *sent;
    if (k + 1 > *cap) {
        char *p = realloc(*dst, k + 1);
        if (!p) return 0;
        *dst = p; *cap = k + 1;
    }
    memcpy(*dst, b->p + *sent, k);
    (*dst)[k] = 0;
    *n = k;
    *sent = upto;
    return 1;
}

int fg_job_wait(fg_job *j, int timeout_ms, fg_job_update *u) {
    fg_engine *e = j->e;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&e->mu);
    int got = 0;
    for (;;) {
        u->n = j->n;
        int done = j->state == J_DONE;
        for (int i = 0; i < j->n; i++) {
            choice *c = &j->ch[i];
            int fin = c->finish != 0;
            got |= copy_delta(&u->ch[i].content, &u->ch[i].n_content, &u->ch[i].cap_content, &c->content, &c->sent_c,
                              committed(j, &c->content, 1, fin));
            got |= copy_delta(&u->ch[i].reasoning, &u->ch[i].n_reasoning, &u->ch[i].cap_reasoning, &c->reasoning, &c->sent_r,
                              committed(j, &c->reasoning, 0, fin));
            u->ch[i].finish = 0;
            u->ch[i].n_tokens = c->ntok - c->sent_tok;
            if (u->ch[i].n_tokens) { c->sent_tok = c->ntok; got = 1; }
            if (fin && !c->finish_sent) { u->ch[i].finish = c->finish; c->finish_sent = 1; got = 1; }
        }
        if (done) {
            u->done = 1; got = 1;
            u->usage.prompt_tokens = j->n_prompt;
            u->usage.cache_hit_tokens = j->hit;
            u->usage.completion_tokens = 0;
            for (int i = 0; i < j->n; i++) u->usage.completion_tokens += j->ch[i].ntok;
            u->usage.ttft_s = j->ttft;
        }
        if (got || timeout_ms <= 0) break;
        if (pthread_cond_timedwait(&e->out, &e->mu, &until)) break;
    }
    pthread_mutex_unlock(&e->mu);
    return got;
}

void fg_job_update_free(fg_job_update *u) {
    for (int i = 0; i < FG_API_MAX_N; i++) { free(u->ch[i].content); free(u->ch[i].reasoning); }
    memset(u, 0, sizeof *u);
}

void fg_job_release(fg_job *j) {
    if (!j) return;
    fg_engine *e = j->e;
    pthread_mutex_lock(&e->mu);
    if (j->state != J_DONE) { j->cancelled = 1; pthread_cond_signal(&e->work); }
    job_unref(j);
    pthread_mutex_unlock(&e->mu);
}

void fg_engine_stats_get(fg_engine *e, fg_engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->st;
    s->queued = e->nqueue;
    s->running = 0;
    for (fg_job *j = e->run; j; j = j->next)
        for (int i = 0; i < j->n; i++) s->running += !j->ch[i].finish;
    s->kept_sequences = 0;
    for (int q = 0; q < e->max_seqs; q++) s->kept_sequences += e->slots[q].live && !e->slots[q].owner;
    pthread_mutex_unlock(&e->mu);
}
