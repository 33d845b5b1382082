// bpe.c: see bpe.h. The vocabulary and merge hash tables are open-addressed; merging one piece
// uses a doubly linked symbol list and a binary heap of candidate pairs keyed by (rank, left
// position), so a piece of n bytes costs O(n log n) even for very long whitespace runs.
#include "tokenizer/bpe.h"
#include "tokenizer/unicode.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

uint16_t fg_byte_char_tab[256];
static pthread_once_t byte_once = PTHREAD_ONCE_INIT;
static uint16_t char_byte[324]; // inverse: code point (< 324) -> byte + 1, 0 if unmapped

static void byte_chars_build(void) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        fg_byte_char_tab[b] = (uint16_t)(printable ? b : 256 + n++);
        char_byte[fg_byte_char_tab[b]] = (uint16_t)(b + 1);
    }
}
void fg_byte_chars_init(void) { pthread_once(&byte_once, byte_chars_build); }

typedef struct { uint64_t key; int32_t rank, id; } merge_slot; // key 0 = empty (ids are +1)
typedef struct { char *s; uint32_t len; int32_t id; } added_tok;
typedef struct { int32_t child, next, id; uint8_t byte; } trie_node;

struct fg_tokenizer {
    char *where;
    int32_t n_vocab;
    char **tok; uint32_t *tok_len;  // (V) byte-level spelling; NULL where no token
    char **dec; uint32_t *dec_len;  // (V) decoded bytes
    int32_t *vh; size_t vh_mask;    // vocab hash: slot -> id or -1
    merge_slot *mh; size_t mh_mask; size_t n_merges;
    int32_t byte_id[256];
    trie_node *trie; int n_trie, trie_cap;
    uint8_t *is_added; // (V)
    fg_pretok *pre;
    int ignore_merges;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}
static inline uint64_t hash_u64(uint64_t k) { k *= 0x9E3779B97F4A7C15ull; return k ^ (k >> 31); }

fg_tokenizer *fg_tok_new(int32_t n_vocab, const char *where) {
    fg_byte_chars_init();
    fg_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { fg_set_error("%s: out of memory", where); return NULL; }
    t->n_vocab = n_vocab;
    t->where = strdup(where ? where : "tokenizer");
    size_t cap = 1024;
    while (cap < (size_t)n_vocab * 2) cap *= 2;
    t->vh_mask = cap - 1;
    t->tok = calloc((size_t)n_vocab, sizeof *t->tok); t->tok_len = calloc((size_t)n_vocab, sizeof *t->tok_len);
    t->dec = calloc((size_t)n_vocab, sizeof *t->dec); t->dec_len = calloc((size_t)n_vocab, sizeof *t->dec_len);
    t->is_added = calloc((size_t)n_vocab, 1);
    t->vh = malloc(cap * sizeof *t->vh);
    t->pre = fg_pretok_new();
    t->trie = calloc(1, sizeof *t->trie); t->n_trie = 1; t->trie_cap = 1;
    if (!t->where || !t->tok || !t->tok_len || !t->dec || !t->dec_len || !t->is_added || !t->vh || !t->pre || !t->trie) {
        fg_tokenizer_free(t);
        fg_set_error("%s: out of memory for a vocabulary of %d tokens", where, n_vocab);
        return NULL;
    }
    t->trie[0].child = -1; t->trie[0].next = -1; t->trie[0].id = -1;
    memset(t->vh, 0xff, cap * sizeof *t->vh);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    return t;
}

void fg_tokenizer_free(fg_tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; t->tok && i < t->n_vocab; i++) { free(t->tok[i]); if (t->dec) free(t->dec[i]); }
    free(t->tok); free(t->tok_len); free(t->dec); free(t->dec_len); free(t->is_added);
    free(t->vh); free(t->mh); free(t->trie); free(t->where);
    fg_pretok_free(t->pre);
    free(t);
}

fg_pretok *fg_tok_pretok(fg_tokenizer *t) { return t->pre; }
void fg_tok_set_ignore_merges(fg_tokenizer *t, int on) { t->ignore_merges = on; }
int32_t fg_tokenizer_vocab_size(const fg_tokenizer *t) { return t->n_vocab; }

static int32_t vocab_find(const fg_tokenizer *t, const char *s, size_t n) {
    for (size_t h = hash_bytes(s, n) & t->vh_mask;; h = (h + 1) & t->vh_mask) {
        int32_t id = t->vh[h];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && !memcmp(t->tok[id], s, n)) return id;
    }
}

// Decoded bytes of a byte-level spelling: every character mapped back through bytes_to_unicode;
// if any character is outside that alphabet the spelling is used as is (as Hugging Face does).
static int decode_spelling(const char *s, size_t n, char **out, uint32_t *out_len) {
    char *d = malloc(n + 1);
    if (!d) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int l;
        uint32_t cp = fg_utf8_decode((const unsigned char *)s + i, n - i, &l);
        if (cp >= 324 || !char_byte[cp]) { memcpy(d, s, n); o = n; break; }
        d[o++] = (char)(char_byte[cp] - 1);
        i += (size_t)l;
    }
    *out = d; *out_len = (uint32_t)o;
    return 0;
}

int fg_tok_set_token(fg_tokenizer *t, int32_t id, const char *s, size_t len) {
    if (id < 0 || id >= t->n_vocab) return fg_set_error("%s: token id %d out of range [0, %d)", t->where, id, t->n_vocab);
    if (len > 0xFFFFFF) return fg_set_error("%s: token %d is longer than 16 MB", t->where, id);
    if (t->tok[id]) {
        if (t->tok_len[id] == len && !memcmp(t->tok[id], s, len)) return 0; // added token repeated in the vocab
    {
        char q1[80], q2[80];
        return fg_set_error("%s: token id %d is used twice (\"%s\" and \"%s\")", t->where, id,
                            fg_quote(q1, sizeof q1, t->tok[id], t->tok_len[id]), fg_quote(q2, sizeof q2, s, len));
    }
    }
    char *c = malloc(len + 1);
    if (!c) return fg_set_error("%s: out of memory", t->where);
    memcpy(c, s, len); c[len] = 0;
    t->tok[id] = c; t->tok_len[id] = (uint32_t)len;
    if (decode_spelling(s, len, &t->dec[id], &t->dec_len[id])) return fg_set_error("%s: out of memory", t->where);
    size_t h = hash_bytes(s, len) & t->vh_mask;
    while (t->vh[h] >= 0) {
        int32_t o = t->vh[h];
        if (t->tok_len[o] == len && !memcmp(t->tok[o], s, len)) return 0; // duplicate spelling: first id wins
        h = (h + 1) & t->vh_mask;
    }
    t->vh[h] = id;
    return 0;
}

static int merge_grow(fg_tokenizer *t) {
    size_t cap = t->mh ? (t->mh_mask + 1) * 2 : 4096;
    merge_slot *m = calloc(cap, sizeof *m);
    if (!m) return fg_set_error("%s: out of memory for merges", t->where);
    for (size_t i = 0; t->mh && i <= t->mh_mask; i++) {
        if (!t->mh[i].key) continue;
        size_t h = hash_u64(t->mh[i].key) & (cap - 1);
        while (m[h].key) h = (h + 1) & (cap - 1);
        m[h] = t->mh[i];
    }
    free(t->mh); t->mh = m; t->mh_mask = cap - 1;
    return 0;
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1); }

static inline const merge_slot *merge_find(const fg_tokenizer *t, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b);
    for (size_t h = hash_u64(k) & t->mh_mask;; h = (h + 1) & t->mh_mask) {
        if (t->mh[h].key == k) return &t->mh[h];
        if (!t->mh[h].key) return NULL;
    }
}

int fg_tok_add_merge(fg_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank) {
    int32_t ia = vocab_find(t, a, alen), ib = vocab_find(t, b, blen);
    char qa[80], qb[80];
    if (ia < 0 || ib < 0)
        return fg_set_error("%s: merge %d (\"%s\" \"%s\"): token \"%s\" is not in the vocabulary", t->where, rank,
                            fg_quote(qa, sizeof qa, a, alen), fg_quote(qb, sizeof qb, b, blen), ia < 0 ? qa : qb);
    char buf[512], *cat = alen + blen <= sizeof buf ? buf : malloc(alen + blen);
    if (!cat) return fg_set_error("%s: out of memory", t->where);
    memcpy(cat, a, alen); memcpy(cat + alen, b, blen);
    int32_t im = vocab_find(t, cat, alen + blen);
    if (cat != buf) free(cat);
    if (im < 0)
        return fg_set_error("%s: merge %d (\"%s\" \"%s\"): the merged token is not in the vocabulary", t->where, rank,
                            fg_quote(qa, sizeof qa, a, alen), fg_quote(qb, sizeof qb, b, blen));
    if (!t->mh || (t->n_merges + 1) * 2 > t->mh_mask + 1)
        if (merge_grow(t)) return -1;
    uint64_t k = pair_key(ia, ib);
    size_t h = hash_u64(k) & t->mh_mask;
    while (t->mh[h].key && t->mh[h].key != k) h = (h + 1) & t->mh_mask;
    if (!t->mh[h].key) t->n_merges++;
    t->mh[h].key = k; t->mh[h].rank = rank; t->mh[h].id = im; // a repeated pair: the later rank wins (as in HF)
    return 0;
}

int fg_tok_add_added(fg_tokenizer *t, int32_t id, const char *s, size_t len, int special) {
    if (len == 0) return fg_set_error("%s: added token %d has empty content", t->where, id);
    if (fg_tok_set_token(t, id, s, len)) return -1;
    // Like Hugging Face, added tokens decode through the byte-level alphabet too when every
    // character of theirs is in it ("õ" in DeepSeek-Coder is byte 0xF5), else to their content.
    t->is_added[id] = 1;
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        int32_t k = t->trie[node].child;
        while (k >= 0 && t->trie[k].byte != c) k = t->trie[k].next;
        if (k < 0) {
            if (t->n_trie == t->trie_cap) {
                int nc = t->trie_cap * 2;
                trie_node *tn = realloc(t->trie, (size_t)nc * sizeof *tn);
                if (!tn) return fg_set_error("%s: out of memory", t->where);
                t->trie = tn; t->trie_cap = nc;
            }
            k = t->n_trie++;
            t->trie[k] = (trie_node){-1, t->trie[node].child, -1, c};
            t->trie[node].child = k;
        }
        node = k;
    }
    if (t->trie[node].id < 0) t->trie[node].id = id;
    (void)special;
    return 0;
}

int fg_tok_finish(fg_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[4];
        int n = fg_utf8_encode(fg_byte_char_tab[b], s);
        t->byte_id[b] = vocab_find(t, s, (size_t)n);
        if (t->byte_id[b] < 0)
            return fg_set_error("%s: the vocabulary lacks the byte-level token \"%.*s\" for byte 0x%02x (not a byte-level BPE?)",
                                t->where, n, s, b);
    }
    if (!t->mh && merge_grow(t)) return -1;
    return 0;
}

int32_t fg_tokenizer_token_id(const fg_tokenizer *t, const char *text) {
    size_t n = strlen(text);
    int32_t node = 0;
    for (size_t i = 0; i < n && node >= 0; i++) {
        int32_t k = t->trie[node].child;
        while (k >= 0 && t->trie[k].byte != (uint8_t)text[i]) k = t->trie[k].next;
        node = k;
    }
    if (node > 0 && t->trie[node].id >= 0) return t->trie[node].id;
    return vocab_find(t, text, n);
}

size_t fg_tokenizer_decode(const fg_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab || !t->dec[id]) return 0;
    size_t n = t->dec_len[id];
    if (buf && cap) memcpy(buf, t->dec[id], FG_MIN(n, cap)); // (NULL, 0): a length query
    return n;
}

// ---- encoding ------------------------------------------------------------------------------
typedef struct { int32_t rank, left; } cand; // heap entry: merge candidate (left symbol, its right)
// Per-call cache of short pieces (words repeat: "the", " of"): direct-mapped, keyed by the bytes.
#define CACHE_BYTES 22
#define CACHE_SLOTS 4096
typedef struct { uint32_t hash; uint8_t len, nids; char bytes[CACHE_BYTES]; int32_t ids[CACHE_BYTES]; } cache_slot;
typedef struct {
    const fg_tokenizer *t;
    const char *text;
    int32_t *out; size_t cap, n;
    // per-piece scratch, grown as needed
    int32_t *id, *prev, *next; size_t sym_cap;
    cand *heap; size_t heap_cap, heap_n;
    char *spell; size_t spell_cap;
    cache_slot *cache;   // CACHE_SLOTS entries, or NULL for short texts
    int32_t *rec; int nrec; // while filling a cache slot: where put() also records
    int oom;
} enc;

static inline void put(enc *e, int32_t id) {
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
    if (e->rec) e->rec[e->nrec++] = id;
}

static inline int cand_less(cand a, cand b) { return a.rank < b.rank || (a.rank == b.rank && a.left < b.left); }
static void heap_push(enc *e, cand c) {
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(c, e->heap[p])) break;
        e->heap[i] = e->heap[p]; i = p;
    }
    e->heap[i] = c;
}
static cand heap_pop(enc *e) {
    cand top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && cand_less(e->heap[l], last)) m = l;
        if (l + 1 < n && cand_less(e->heap[l + 1], m == i ? last : e->heap[l])) m = l + 1;
        if (m == i) break;
        e->heap[i] = e->heap[m]; i = m;
    }
    if (n) e->heap[i] = last;
    return top;
}

static void try_pair(enc *e, int32_t left) {
    int32_t right = e->next[left];
    if (right < 0) return;
    const merge_slot *m = merge_find(e->t, e->id[left], e->id[right]);
    if (m) heap_push(e, (cand){m->rank, left});
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q; *cap = nc;
    return 0;
}

static void bpe_piece(enc *e, const unsigned char *s, size_t n) {
    const fg_tokenizer *t = e->t;
    if (n == 1) { put(e, t->byte_id[s[0]]); return; }
    if (t->ignore_merges) {
        if (grow((void **)&e->spell, &e->spell_cap, 2 * n, 1)) { e->oom = 1; return; }
        size_t o = 0;
        for (size_t i = 0; i < n; i++) o += (size_t)fg_utf8_encode(fg_byte_char_tab[s[i]], e->spell + o);
        int32_t id = vocab_find(t, e->spell, o);
        if (id >= 0) { put(e, id); return; }
    }
    size_t c0 = e->sym_cap, c1 = e->sym_cap, c2 = e->sym_cap;
    if (grow((void **)&e->id, &c0, n, sizeof(int32_t)) || grow((void **)&e->prev, &c1, n, sizeof(int32_t)) ||
        grow((void **)&e->next, &c2, n, sizeof(int32_t)) || grow((void **)&e->heap, &e->heap_cap, 2 * n, sizeof(cand))) {
        e->oom = 1; return;
    }
    e->sym_cap = c0 < c1 ? (c0 < c2 ? c0 : c2) : (c1 < c2 ? c1 : c2);
    for (size_t i = 0; i < n; i++) {
        e->id[i] = t->byte_id[s[i]];
        e->prev[i] = (int32_t)i - 1;
        e->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(e, (int32_t)i);
    while (e->heap_n) {
        cand c = heap_pop(e);
        int32_t l = c.left, r = e->next[l];
        if (e->id[l] < 0 || r < 0) continue;
        const merge_slot *m = merge_find(t, e->id[l], e->id[r]);
        if (!m || m->rank != c.rank) continue; // stale: the pair changed since it was pushed
        e->id[l] = m->id;
        e->id[r] = -1;
        e->next[l] = e->next[r];
        if (e->next[r] >= 0) e->prev[e->next[r]] = l;
        if (e->heap_n + 2 > e->heap_cap && grow((void **)&e->heap, &e->heap_cap, e->heap_n + 2, sizeof(cand))) { e->oom = 1; return; }
        if (e->prev[l] >= 0) try_pair(e, e->prev[l]);
        try_pair(e, l);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i]) put(e, e->id[i]);
}

static int piece_cb(void *ctx, size_t a, size_t b) {
    enc *e = ctx;
    const char *s = e->text + a;
    size_t n = b - a;
    if (!e->cache || n > CACHE_BYTES || n < 2) {
        bpe_piece(e, (const unsigned char *)s, n);
        return e->oom;
    }
    uint64_t h = hash_bytes(s, n);
    cache_slot *c = &e->cache[h & (CACHE_SLOTS - 1)];
    if (c->len == n && c->hash == (uint32_t)h && !memcmp(c->bytes, s, n)) {
        for (int k = 0; k < c->nids; k++) put(e, c->ids[k]);
        return 0;
    }
    c->len = 0; // invalid while being refilled
    e->rec = c->ids; e->nrec = 0;
    bpe_piece(e, (const unsigned char *)s, n); // at most n ids: each covers >= 1 byte
    e->rec = NULL;
    c->hash = (uint32_t)h; c->len = (uint8_t)n; c->nids = (uint8_t)e->nrec;
    memcpy(c->bytes, s, n);
    return e->oom;
}

static int encode_text(enc *e, size_t a, size_t b) {
    if (a >= b) return 0;
    const char *base = e->text;
    e->text = base + a;
    int rc = fg_pretok_run(e->t->pre, base + a, b - a, piece_cb, e);
    e->text = base;
    return rc;
}

size_t fg_tokenizer_encode(const fg_tokenizer *t, const char *text, size_t len, int parse_special,
                           int32_t *out, size_t cap) {
    enc e = {.t = t, .text = text, .out = out, .cap = cap};
    if (len >= 4096) e.cache = calloc(CACHE_SLOTS, sizeof *e.cache); // without it (no memory) it is only slower
    size_t seg = 0;
    int rc = 0;
    if (parse_special && t->trie[0].child >= 0) {
        for (size_t i = 0; i < len && !rc;) {
            int32_t node = 0, best = -1; size_t best_len = 0;
            for (size_t j = i; j < len; j++) {
                int32_t k = t->trie[node].child;
                while (k >= 0 && t->trie[k].byte != (uint8_t)text[j]) k = t->trie[k].next;
                if (k < 0) break;
                node = k;
                if (t->trie[k].id >= 0) { best = t->trie[k].id; best_len = j + 1 - i; }
            }
            if (best < 0) { i++; continue; }
            rc = encode_text(&e, seg, i);
            put(&e, best);
            i += best_len; seg = i;
        }
    }
    if (!rc) rc = encode_text(&e, seg, len);
    free(e.id); free(e.prev); free(e.next); free(e.heap); free(e.spell); free(e.cache);
    if (rc || e.oom) { fg_set_error("tokenizer: out of memory while encoding %zu bytes", len); return SIZE_MAX; }
    return e.n;
}
