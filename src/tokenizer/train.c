// train.c: learns a byte-level BPE vocabulary (public API: "BPE training" in include/frugal.h).
//
// Two phases. (1) Counting, streaming: documents go through DeepSeek-V3's pre-tokenizer
// (pretok.c) and every piece's count is kept in a hash table keyed by its bytes. The table is
// bounded (opts.max_words): when it grows past the bound, every entry whose count is at most k
// is dropped, with the smallest k that halves the table (the rarest pieces go; their counts are
// lost, so a piece dropped early and seen again later restarts from zero). Pieces longer than
// FG_BPE_MAX_PIECE bytes (long whitespace runs, base64 blobs) are not counted.
// (2) Merging on the (piece, count) table with incremental pair counts: every adjacent symbol
// pair has a count (sum of the counts of the words it occurs in, overlapping occurrences
// included, as in Hugging Face) and an occurrence list (the words it occurs in; entries can be
// stale and are checked). A max-heap holds (count, pair) entries lazily: an entry whose count is
// out of date is re-pushed with the current count when popped. A merge rewrites only the words in
// the pair's occurrence list, subtracting the word's old pairs and adding its new ones.
// Choice of the next merge (the tie-breaking rule tests/test_tokenizer_train.c checks against a
// brute-force recount): the pair with the highest count; among equal counts, the smallest left
// id, then the smallest right id. A merge rewrites each word left to right, non-overlapping
// ("a a a" -> "aa a"). When the merged bytes already are a token (two merge paths to one string)
// the merge is recorded and maps to the existing id, as in Hugging Face.
// Ids: 0..255 are the byte tokens (id = byte value), then the merges in order, then the added
// special tokens. What it does not do: normalization, dropout, continuing-subword prefixes,
// parallel counting.
#include "frugal_tools.h"
#include "data/data.h"
#include "formats/json.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretok.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FG_BPE_MAX_PIECE 256

// The pre_tokenizer of DeepSeek-V3's tokenizer.json, verbatim.
static const char V3_PRETOK_JSON[] = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[\\u4e00-\\u9fa5\\u3040-\\u309f\\u30a0-\\u30ff]+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}";

static const char *DEFAULT_SPECIALS[] = {FG_DS_BOS, FG_DS_EOS, "<think>", "</think>", FG_DS_USER, FG_DS_ASSISTANT};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 0x100000001b3ull; }
    h ^= h >> 29; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 32;
    return h;
}
static uint64_t mix64(uint64_t h) {
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 27; h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

// ---- phase 1: piece counts -------------------------------------------------------------------
typedef struct { char *s; uint32_t len; uint64_t hash; int64_t count; } wslot; // s == NULL: empty

struct fg_bpe_trainer {
    fg_bpe_train_opts o;
    const char **specials; int n_specials;
    fg_pretok *pre;
    wslot *slots; size_t cap, n;   // open addressing, linear probing, load <= 1/2
    fg_bpe_train_stats st;
    // results of fg_bpe_trainer_train
    char *tok_bytes; size_t tb_len, tb_cap;  // token byte strings back to back
    size_t *tok_off; uint32_t *tok_len; int32_t n_tok, tok_cap;
    int32_t (*merges)[2]; int32_t n_merges;
    int trained;
};

static int table_grow(fg_bpe_trainer *t, size_t cap) {
    wslot *ns = calloc(cap, sizeof *ns);
    if (!ns) return fg_set_error("tokenizer train: out of memory growing the piece table to %zu entries", cap);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].s) continue;
        size_t j = t->slots[i].hash & (cap - 1);
        while (ns[j].s) j = (j + 1) & (cap - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns; t->cap = cap;
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// Drops the rarest pieces: everything with count <= k for the smallest k that leaves at most
// half of max_words entries.
static int table_prune(fg_bpe_trainer *t) {
    int64_t *c = malloc(t->n * sizeof *c);
    if (!c) return fg_set_error("tokenizer train: out of memory pruning the piece table");
    size_t m = 0;
    for (size_t i = 0; i < t->cap; i++) if (t->slots[i].s) c[m++] = t->slots[i].count;
    qsort(c, m, sizeof *c, cmp_i64);
    size_t keep = t->o.max_words / 2;
    int64_t k = c[m - keep - 1]; // entries with count > k number at most keep
    free(c);
    size_t kept = 0;
    for (size_t i = 0; i < t->cap; i++) {
        wslot *s = &t->slots[i];
        if (!s->s) continue;
        if (s->count <= k) { free(s->s); s->s = NULL; t->st.pruned_pieces++; t->st.pruned_count += s->count; }
        else kept++;
    }
    t->n = kept;
    t->st.prunes++;
    if (k + 1 > t->st.prune_threshold) t->st.prune_threshold = k + 1;
    return table_grow(t, t->cap); // rehash in place to close the holes
}

static int count_piece(fg_bpe_trainer *t, const char *s, size_t len) {
    t->st.pieces++;
    if (len > FG_BPE_MAX_PIECE) { t->st.long_pieces++; return 0; }
    uint64_t h = hash_bytes(s, len);
    size_t j = h & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        wslot *w = &t->slots[j];
        if (!w->s) break;
        if (w->hash == h && w->len == len && !memcmp(w->s, s, len)) { w->count++; return 0; }
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) return fg_set_error("tokenizer train: out of memory counting pieces");
    memcpy(copy, s, len);
    t->slots[j] = (wslot){copy, (uint32_t)len, h, 1};
    t->n++;
    if (t->n > t->o.max_words && table_prune(t)) return -1;
    if (2 * t->n > t->cap && table_grow(t, t->cap * 2)) return -1;
    return 0;
}

typedef struct { fg_bpe_trainer *t; const char *text; } piece_ctx;
static int on_piece(void *ctx, size_t a, size_t b) {
    piece_ctx *c = ctx;
    return count_piece(c->t, c->text + a, b - a);
}

void fg_bpe_train_opts_default(fg_bpe_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->vocab_size = 32000;
    o->min_frequency = 2;
    o->max_words = (size_t)8 << 20;
}

fg_bpe_trainer *fg_bpe_trainer_new(const fg_bpe_train_opts *o) {
    const char **sp = o->specials ? o->specials : DEFAULT_SPECIALS;
    int nsp = o->specials ? o->n_specials : (int)(sizeof DEFAULT_SPECIALS / sizeof *DEFAULT_SPECIALS);
    if (nsp < 0) { fg_set_error("tokenizer train: n_specials must be >= 0 (got %d)", nsp); return NULL; }
    if (o->vocab_size < 256 + nsp) {
        fg_set_error("tokenizer train: vocab_size %d is below 256 byte tokens + %d special tokens; hint: use at least %d",
                     o->vocab_size, nsp, 256 + nsp);
        return NULL;
    }
    if (o->max_words < 1024) { fg_set_error("tokenizer train: max_words must be >= 1024 (got %zu)", o->max_words); return NULL; }
    for (int i = 0; i < nsp; i++) {
        if (!sp[i] || !sp[i][0]) { fg_set_error("tokenizer train: special token %d is empty", i); return NULL; }
        for (int j = 0; j < i; j++)
            if (!strcmp(sp[i], sp[j])) { fg_set_error("tokenizer train: special token \"%s\" given twice", sp[i]); return NULL; }
    }
    fg_bpe_trainer *t = calloc(1, sizeof *t);
    if (!t) { fg_set_error("tokenizer train: out of memory"); return NULL; }
    t->o = *o;
    t->n_specials = nsp;
    t->specials = calloc((size_t)nsp + 1, sizeof *t->specials);
    t->pre = fg_pretok_new();
    if (!t->specials || !t->pre || fg_pretok_add_named(t->pre, "deepseek-v3") || table_grow(t, 1 << 16)) {
        if (t->pre && t->specials) fg_wrap_error("tokenizer train");
        else fg_set_error("tokenizer train: out of memory");
        fg_bpe_trainer_free(t);
        return NULL;
    }
    for (int i = 0; i < nsp; i++)
        if (!(t->specials[i] = strdup(sp[i]))) { fg_set_error("tokenizer train: out of memory"); fg_bpe_trainer_free(t); return NULL; }
    return t;
}

void fg_bpe_trainer_free(fg_bpe_trainer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->cap; i++) free(t->slots[i].s);
    free(t->slots);
    for (int i = 0; t->specials && i < t->n_specials; i++) free((char *)t->specials[i]);
    free(t->specials);
    fg_pretok_free(t->pre);
    free(t->tok_bytes); free(t->tok_off); free(t->tok_len); free(t->merges);
    free(t);
}

int fg_bpe_trainer_feed(fg_bpe_trainer *t, const char *text, size_t len) {
    if (t->trained) return fg_set_error("tokenizer train: feed after train");
    t->st.docs++;
    t->st.bytes += len;
    piece_ctx c = {t, text};
    return fg_pretok_run(t->pre, text, len, on_piece, &c) ? -1 : 0;
}

static void note_bad_line(fg_bpe_trainer *t, const char *path, size_t line, const char *why) {
    if (t->st.bad_lines < FG_BPE_BAD_LINES_KEPT) {
        char *m = t->st.bad_line_msg[t->st.bad_lines];
        snprintf(m, sizeof t->st.bad_line_msg[0], "%s:%zu: %s", path, line, why);
    }
    t->st.bad_lines++;
}

static int is_jsonl(const char *path) {
    size_t n = strlen(path);
    return n >= 6 && strcasecmp(path + n - 6, ".jsonl") == 0;
}

int fg_bpe_trainer_add_file(fg_bpe_trainer *t, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return fg_set_error("tokenizer train: cannot open '%s'", path);
    int rc = 0;
    if (is_jsonl(path)) {
        char *line = NULL; size_t cap = 0; ssize_t n; size_t lineno = 0;
        while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
            lineno++;
            size_t k = 0;
            while (k < (size_t)n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
            if (k == (size_t)n) continue;
            fg_json *j = fg_json_parse(line, (size_t)n, path);
            const fg_json *tx = j ? fg_json_get(j, "text") : NULL, *dup = fg_json_dup_key(j);
            if (!j) note_bad_line(t, path, lineno, "not valid JSON");
            else if (j->type != FG_JSON_OBJECT) note_bad_line(t, path, lineno, "not a JSON object");
            else if (dup) note_bad_line(t, path, lineno, "duplicate key");
            else if (!tx) note_bad_line(t, path, lineno, "no \"text\" field");
            else if (tx->type != FG_JSON_STRING) note_bad_line(t, path, lineno, "\"text\" is not a string");
            else rc = fg_bpe_trainer_feed(t, tx->str, tx->len);
            fg_json_free(j);
        }
        free(line);
    } else {
        // A text file is one document, read in chunks that end at a newline (a chunk without one
        // is cut at FG_BPE_CHUNK bytes; pieces never span a cut).
        enum { FG_BPE_CHUNK = 1 << 20 };
        char *buf = malloc(2 * FG_BPE_CHUNK);
        if (!buf) { fclose(f); return fg_set_error("tokenizer train: out of memory"); }
        size_t have = 0, got;
        t->st.docs++;
        while (rc == 0 && (got = fread(buf + have, 1, FG_BPE_CHUNK, f)) > 0) {
            have += got;
            size_t cut = have;
            while (cut > 0 && buf[cut - 1] != '\n') cut--;
            if (cut == 0 || have < FG_BPE_CHUNK / 2) cut = have;
            rc = fg_bpe_trainer_feed(t, buf, cut);
            t->st.docs--;
            memmove(buf, buf + cut, have - cut);
            have -= cut;
        }
        if (rc == 0 && have) { rc = fg_bpe_trainer_feed(t, buf, have); t->st.docs--; }
        free(buf);
    }
    if (rc == 0 && ferror(f)) rc = fg_set_error("tokenizer train: read error on '%s'", path);
    fclose(f);
    return rc;
}

// ---- phase 2: merges -------------------------------------------------------------------------
typedef struct { uint32_t *w; uint32_t n, cap; } occ_list;
typedef struct { int64_t count; int32_t a, b; } heap_ent;

typedef struct {
    // pairs
    uint64_t *pkey; int32_t *pidx; size_t pcap;      // hash: (a<<32|b) -> pair index (-1 empty)
    int32_t (*pab)[2]; int64_t *pcount; int64_t *pdelta; occ_list *pocc; uint8_t *ptouched;
    int32_t np, np_cap;
    int32_t *touched; int32_t n_touched, touched_cap;
    heap_ent *heap; size_t nh, hcap;
    // token bytes -> id
    uint64_t *tkey; int32_t *tid; size_t tcap;
} merge_state;

static int pair_find(merge_state *s, int32_t a, int32_t b, int create) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t j = mix64(key) & (s->pcap - 1);
    for (; s->pidx[j] >= 0; j = (j + 1) & (s->pcap - 1))
        if (s->pkey[j] == key) return s->pidx[j];
    if (!create) return -1;
    if (s->np == s->np_cap) {
        int32_t cap = s->np_cap ? s->np_cap * 2 : 1024;
        void *p1 = realloc(s->pab, (size_t)cap * sizeof *s->pab), *p2, *p3, *p4, *p5;
        if (p1) s->pab = p1;
        p2 = realloc(s->pcount, (size_t)cap * sizeof *s->pcount); if (p2) s->pcount = p2;
        p3 = realloc(s->pdelta, (size_t)cap * sizeof *s->pdelta); if (p3) s->pdelta = p3;
        p4 = realloc(s->pocc, (size_t)cap * sizeof *s->pocc); if (p4) s->pocc = p4;
        p5 = realloc(s->ptouched, (size_t)cap); if (p5) s->ptouched = p5;
        if (!p1 || !p2 || !p3 || !p4 || !p5) return fg_set_error("tokenizer train: out of memory (%d pairs)", cap), -2;
        s->np_cap = cap;
    }
    int32_t id = s->np++;
    s->pab[id][0] = a; s->pab[id][1] = b;
    s->pcount[id] = 0; s->pdelta[id] = 0; s->pocc[id] = (occ_list){0}; s->ptouched[id] = 0;
    s->pkey[j] = key; s->pidx[j] = id;
    if (2 * (size_t)s->np > s->pcap) { // grow the index
        size_t cap = s->pcap * 2;
        uint64_t *nk = malloc(cap * sizeof *nk); int32_t *ni = malloc(cap * sizeof *ni);
        if (!nk || !ni) { free(nk); free(ni); return fg_set_error("tokenizer train: out of memory (pair index)"), -2; }
        memset(ni, 0xff, cap * sizeof *ni);
        for (size_t i = 0; i < s->pcap; i++) {
            if (s->pidx[i] < 0) continue;
            size_t k = mix64(s->pkey[i]) & (cap - 1);
            while (ni[k] >= 0) k = (k + 1) & (cap - 1);
            nk[k] = s->pkey[i]; ni[k] = s->pidx[i];
        }
        free(s->pkey); free(s->pidx);
        s->pkey = nk; s->pidx = ni; s->pcap = cap;
    }
    return id;
}

static int occ_add(occ_list *o, uint32_t w) {
    if (o->n && o->w[o->n - 1] == w) return 0;
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 4;
        uint32_t *nw = realloc(o->w, cap * sizeof *nw);
        if (!nw) return fg_set_error("tokenizer train: out of memory (occurrence lists)");
        o->w = nw; o->cap = cap;
    }
    o->w[o->n++] = w;
    return 0;
}

// Heap order: higher count first, then smaller a, then smaller b.
static int heap_before(const heap_ent *x, const heap_ent *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}
static int heap_push(merge_state *s, heap_ent e) {
    if (s->nh == s->hcap) {
        size_t cap = s->hcap ? s->hcap * 2 : 4096;
        heap_ent *nh = realloc(s->heap, cap * sizeof *nh);
        if (!nh) return fg_set_error("tokenizer train: out of memory (pair heap)");
        s->heap = nh; s->hcap = cap;
    }
    size_t i = s->nh++;
    while (i > 0 && heap_before(&e, &s->heap[(i - 1) / 2])) { s->heap[i] = s->heap[(i - 1) / 2]; i = (i - 1) / 2; }
    s->heap[i] = e;
    return 0;
}
static heap_ent heap_pop(merge_state *s) {
    heap_ent top = s->heap[0], last = s->heap[--s->nh];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nh) break;
        if (c + 1 < s->nh && heap_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!heap_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c]; i = c;
    }
    if (s->nh) s->heap[i] = last;
    return top;
}

// Adds wc to the count of pair (a, b) (negative to subtract); remembers the pair as touched.
static int pair_add(merge_state *s, int32_t a, int32_t b, int64_t wc, uint32_t w, int32_t newid) {
    int p = pair_find(s, a, b, 1);
    if (p < 0) return -1;
    s->pcount[p] += wc;
    s->pdelta[p] += wc;
    if (!s->ptouched[p]) {
        if (s->n_touched == s->touched_cap) {
            int32_t cap = s->touched_cap ? s->touched_cap * 2 : 1024;
            int32_t *nt = realloc(s->touched, (size_t)cap * sizeof *nt);
            if (!nt) return fg_set_error("tokenizer train: out of memory");
            s->touched = nt; s->touched_cap = cap;
        }
        s->touched[s->n_touched++] = p;
        s->ptouched[p] = 1;
    }
    if (wc > 0 && (a == newid || b == newid || newid < 0)) return occ_add(&s->pocc[p], w);
    return 0;
}

static int tok_add(fg_bpe_trainer *t, merge_state *s, const char *bytes, size_t len, int32_t *id) {
    uint64_t h = hash_bytes(bytes, len);
    size_t j = h & (s->tcap - 1);
    for (; s->tid[j] >= 0; j = (j + 1) & (s->tcap - 1)) {
        int32_t k = s->tid[j];
        if (s->tkey[j] == h && t->tok_len[k] == len && !memcmp(t->tok_bytes + t->tok_off[k], bytes, len)) { *id = k; return 0; }
    }
    if (t->tb_len + len > t->tb_cap) {
        size_t cap = t->tb_cap ? t->tb_cap : 4096;
        while (cap < t->tb_len + len) cap *= 2;
        char *nb = realloc(t->tok_bytes, cap);
        if (!nb) return fg_set_error("tokenizer train: out of memory");
        t->tok_bytes = nb; t->tb_cap = cap;
    }
    memcpy(t->tok_bytes + t->tb_len, bytes, len);
    int32_t k = t->n_tok++;
    t->tok_off[k] = t->tb_len; t->tok_len[k] = (uint32_t)len;
    t->tb_len += len;
    s->tkey[j] = h; s->tid[j] = k;
    *id = k;
    return 0;
}

int fg_bpe_trainer_train(fg_bpe_trainer *t) {
    if (t->trained) return fg_set_error("tokenizer train: already trained");
    int32_t target = t->o.vocab_size - t->n_specials; // byte tokens + merges
    merge_state s = {0};
    int rc = -1;
    // words: symbols of every piece (pieces of one byte have no pairs and are skipped)
    size_t nw = 0, nsym = 0;
    for (size_t i = 0; i < t->cap; i++) if (t->slots[i].s && t->slots[i].len > 1) { nw++; nsym += t->slots[i].len; }
    if (nw > UINT32_MAX - 1) return fg_set_error("tokenizer train: too many distinct pieces (%zu)", nw);
    int32_t *sym = malloc((nsym + 1) * sizeof *sym);
    size_t *woff = malloc((nw + 1) * sizeof *woff);
    uint32_t *wlen = malloc((nw + 1) * sizeof *wlen);
    int64_t *wcount = malloc((nw + 1) * sizeof *wcount);
    t->tok_cap = target;
    t->tok_off = malloc((size_t)target * sizeof *t->tok_off);
    t->tok_len = malloc((size_t)target * sizeof *t->tok_len);
    t->merges = malloc((size_t)target * sizeof *t->merges);
    s.pcap = 1 << 16; s.tcap = 1;
    while (s.tcap < 2 * (size_t)target) s.tcap *= 2;
    s.pkey = malloc(s.pcap * sizeof *s.pkey); s.pidx = malloc(s.pcap * sizeof *s.pidx);
    s.tkey = malloc(s.tcap * sizeof *s.tkey); s.tid = malloc(s.tcap * sizeof *s.tid);
    if (!sym || !woff || !wlen || !wcount || !t->tok_off || !t->tok_len || !t->merges || !s.pkey || !s.pidx || !s.tkey || !s.tid) {
        fg_set_error("tokenizer train: out of memory for %zu pieces", nw);
        goto done;
    }
    memset(s.pidx, 0xff, s.pcap * sizeof *s.pidx);
    memset(s.tid, 0xff, s.tcap * sizeof *s.tid);
    nw = 0; nsym = 0;
    for (size_t i = 0; i < t->cap; i++) {
        wslot *w = &t->slots[i];
        if (!w->s) continue;
        t->st.distinct_pieces++;
        if (w->len <= 1) continue;
        woff[nw] = nsym; wlen[nw] = w->len; wcount[nw] = w->count;
        for (uint32_t k = 0; k < w->len; k++) sym[nsym++] = (unsigned char)w->s[k];
        nw++;
    }
    // the piece table is no longer needed: free it before the merge structures grow
    for (size_t i = 0; i < t->cap; i++) free(t->slots[i].s);
    free(t->slots); t->slots = NULL; t->cap = 0; t->n = 0;
    for (int b = 0; b < 256; b++) { char c = (char)b; int32_t id; if (tok_add(t, &s, &c, 1, &id)) goto done; }
    for (size_t w = 0; w < nw; w++)
        for (uint32_t k = 0; k + 1 < wlen[w]; k++)
            if (pair_add(&s, sym[woff[w] + k], sym[woff[w] + k + 1], wcount[w], (uint32_t)w, -1)) goto done;
    for (int32_t i = 0; i < s.n_touched; i++) {
        int32_t p = s.touched[i];
        s.ptouched[p] = 0; s.pdelta[p] = 0;
        if (s.pcount[p] > 0 && heap_push(&s, (heap_ent){s.pcount[p], s.pab[p][0], s.pab[p][1]})) goto done;
    }
    s.n_touched = 0;
    char *buf = NULL; size_t buf_cap = 0;
    while (t->n_tok < target && s.nh > 0) {
        heap_ent e = heap_pop(&s);
        int p = pair_find(&s, e.a, e.b, 0);
        int64_t c = s.pcount[p];
        if (e.count != c) {
            if (e.count > c && c > 0 && heap_push(&s, (heap_ent){c, e.a, e.b})) goto done_buf;
            continue;
        }
        if (c < t->o.min_frequency || c <= 0) break;
        size_t la = t->tok_len[e.a], lb = t->tok_len[e.b];
        if (la + lb > buf_cap) {
            buf_cap = 2 * (la + lb);
            char *nb = realloc(buf, buf_cap);
            if (!nb) { fg_set_error("tokenizer train: out of memory"); goto done_buf; }
            buf = nb;
        }
        memcpy(buf, t->tok_bytes + t->tok_off[e.a], la);
        memcpy(buf + la, t->tok_bytes + t->tok_off[e.b], lb);
        int32_t nid = -1;
        if (tok_add(t, &s, buf, la + lb, &nid)) goto done_buf;
        t->merges[t->n_merges][0] = e.a; t->merges[t->n_merges][1] = e.b; t->n_merges++;
        // occurrence list of p is not modified below: new pairs all contain nid, and p does not
        // (nid's bytes are longer than a's and b's).
        occ_list occ = s.pocc[p];
        for (uint32_t oi = 0; oi < occ.n; oi++) {
            uint32_t w = occ.w[oi];
            int32_t *ws = sym + woff[w];
            uint32_t n = wlen[w], k;
            for (k = 0; k + 1 < n; k++) if (ws[k] == e.a && ws[k + 1] == e.b) break;
            if (k + 1 >= n) continue; // stale entry
            for (k = 0; k + 1 < n; k++) if (pair_add(&s, ws[k], ws[k + 1], -wcount[w], w, nid)) goto done_buf;
            uint32_t o = 0;
            for (k = 0; k < n; k++) {
                if (k + 1 < n && ws[k] == e.a && ws[k + 1] == e.b) { ws[o++] = nid; k++; }
                else ws[o++] = ws[k];
            }
            wlen[w] = n = o;
            for (k = 0; k + 1 < n; k++) if (pair_add(&s, ws[k], ws[k + 1], wcount[w], w, nid)) goto done_buf;
        }
        for (int32_t i = 0; i < s.n_touched; i++) {
            int32_t q = s.touched[i];
            if (s.pdelta[q] > 0 && heap_push(&s, (heap_ent){s.pcount[q], s.pab[q][0], s.pab[q][1]})) goto done_buf;
            s.ptouched[q] = 0; s.pdelta[q] = 0;
        }
        s.n_touched = 0;
        // p's occurrences are all gone; its list is freed unless it can come back (only when a
        // merge mapped to an existing id, which the push above then re-lists).
        if (s.pcount[p] == 0) { free(s.pocc[p].w); s.pocc[p] = (occ_list){0}; }
    }
    t->st.merges = t->n_merges;
    t->st.vocab_size = t->n_tok + t->n_specials;
    t->trained = 1;
    rc = 0;
done_buf:
    free(buf);
done:
    for (int32_t i = 0; i < s.np; i++) free(s.pocc[i].w);
    free(s.pkey); free(s.pidx); free(s.pab); free(s.pcount); free(s.pdelta); free(s.pocc); free(s.ptouched);
    free(s.touched); free(s.heap); free(s.tkey); free(s.tid);
    free(sym); free(woff); free(wlen); free(wcount);
    return rc;
}

const fg_bpe_train_stats *fg_bpe_trainer_stats(const fg_bpe_trainer *t) { return &t->st; }

// ---- output ---------------------------------------------------------------------------------
// Spells bytes[0..n) byte-level (each byte as the UTF-8 of its GPT-2 code point) into out, which
// needs 2n bytes; returns the length.
static size_t spell(char *out, const char *bytes, size_t n) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned cp = fg_byte_char_tab[(unsigned char)bytes[i]];
        if (cp < 0x80) out[m++] = (char)cp;
        else { out[m++] = (char)(0xC0 | (cp >> 6)); out[m++] = (char)(0x80 | (cp & 0x3F)); }
    }
    return m;
}

int fg_bpe_trainer_write(const fg_bpe_trainer *t, const char *path) {
    if (!t->trained) return fg_set_error("tokenizer train: write before train");
    fg_byte_chars_init();
    // a special token must not collide with a vocabulary spelling
    for (int i = 0; i < t->n_specials; i++) {
        const char *sp = t->specials[i];
        for (int32_t k = 0; k < t->n_tok; k++) {
            char tmp[2 * FG_BPE_MAX_PIECE];
            size_t m = spell(tmp, t->tok_bytes + t->tok_off[k], t->tok_len[k]);
            if (m == strlen(sp) && !memcmp(tmp, sp, m))
                return fg_set_error("tokenizer train: special token \"%s\" is also a learned token (id %d); hint: pick a "
                                    "special token that cannot occur as one pre-token", sp, k);
        }
    }
    char tmp_path[4096];
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path) >= (int)sizeof tmp_path)
        return fg_set_error("tokenizer train: output path too long");
    FILE *f = fopen(tmp_path, "wb");
    if (!f) return fg_set_error("tokenizer train: cannot create '%s'", tmp_path);
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", f);
    for (int i = 0; i < t->n_specials; i++) {
        fprintf(f, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", t->n_tok + i);
        fg_json_write_string(f, t->specials[i], strlen(t->specials[i]));
        fputs(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}", f);
    }
    fputs("\n  ],\n  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": []},\n  \"pre_tokenizer\": ", f);
    fputs(V3_PRETOK_JSON, f);
    fputs(",\n  \"post_processor\": null,\n"
          "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
          "  \"model\": {\n    \"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,\n"
          "    \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false,\n    \"vocab\": {", f);
    char sp[4 * FG_BPE_MAX_PIECE + 1];
    for (int32_t k = 0; k < t->n_tok; k++) {
        fputs(k ? ",\n      " : "\n      ", f);
        fg_json_write_string(f, sp, spell(sp, t->tok_bytes + t->tok_off[k], t->tok_len[k]));
        fprintf(f, ": %d", k);
    }
    fputs("\n    },\n    \"merges\": [", f);
    for (int32_t i = 0; i < t->n_merges; i++) {
        fputs(i ? ",\n      " : "\n      ", f);
        int32_t a = t->merges[i][0], b = t->merges[i][1];
        size_t m = spell(sp, t->tok_bytes + t->tok_off[a], t->tok_len[a]);
        sp[m++] = ' ';
        m += spell(sp + m, t->tok_bytes + t->tok_off[b], t->tok_len[b]);
        fg_json_write_string(f, sp, m);
    }
    fputs("\n    ]\n  }\n}\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad) { remove(tmp_path); return fg_set_error("tokenizer train: write error on '%s'", tmp_path); }
    if (rename(tmp_path, path)) { remove(tmp_path); return fg_set_error("tokenizer train: cannot rename '%s' to '%s'", tmp_path, path); }
    return 0;
}
