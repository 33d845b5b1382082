// data.c: see data.h. Loading goes in three steps: (1) every file is read, validated and its
// documents appended to one byte arena with a content hash each; (2) each document is assigned
// to train or val; (3) the two token streams are allocated at their exact size and filled.
// The arena costs one extra copy of the text, but keeps ownership in one place and lets step 2
// see all documents before anything is tokenized.
#include "data/data.h"
#include "data/bytetok.h"
#include "formats/json.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HINT_JSONL "hint: each line of a .jsonl file must be one JSON object like {\"text\": \"...\"}"

// ---- UTF-8 ---------------------------------------------------------------------------------
int fg_utf8_validate(const char *s, size_t len, size_t *bad_offset) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = u[i];
        if (c < 0x80) { i++; continue; }
        // n continuation bytes follow; the first of them must lie in [lo, hi] (this is what
        // excludes overlongs, surrogates and > U+10FFFF), the others in [0x80, 0xBF].
        int n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) { n = 2; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) n = 2;
        else if (c == 0xED) { n = 2; hi = 0x9F; }
        else if (c >= 0xEE && c <= 0xEF) n = 2;
        else if (c == 0xF0) { n = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else if (c == 0xF4) { n = 3; hi = 0x8F; }
        else goto bad; // 0x80..0xC1 (stray continuation, overlong lead), 0xF5..0xFF
        if (len - i <= (size_t)n) goto bad;
        if (u[i + 1] < lo || u[i + 1] > hi) goto bad;
        for (int k = 2; k <= n; k++) if (u[i + k] < 0x80 || u[i + k] > 0xBF) goto bad;
        i += (size_t)n + 1;
    }
    return 1;
bad:
    if (bad_offset) *bad_offset = i;
    return 0;
}

// ---- document arena ------------------------------------------------------------------------
typedef struct { size_t off, len; uint64_t hash; int val; } doc_ref;

typedef struct {
    char *bytes; size_t n_bytes, cap_bytes;     // all document texts back to back
    doc_ref *docs; size_t n_docs, cap_docs;
} doc_arena;

// FNV-1a over the bytes, then the splitmix64 finalizer so the top bits are well mixed (the
// split reads the hash as a fraction).
static uint64_t content_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 0x100000001b3ull; }
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27; h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static double hash_fraction(uint64_t h) { return (double)(h >> 11) * 0x1p-53; }

static int arena_add(doc_arena *a, const char *text, size_t len) {
    if (a->n_bytes + len > a->cap_bytes) {
        size_t cap = a->cap_bytes ? a->cap_bytes : (1 << 16);
        while (cap < a->n_bytes + len) cap *= 2;
        char *nb = realloc(a->bytes, cap);
        if (!nb) return fg_set_error("out of memory holding %zu bytes of training text", cap);
        a->bytes = nb; a->cap_bytes = cap;
    }
    if (a->n_docs == a->cap_docs) {
        size_t cap = a->cap_docs ? a->cap_docs * 2 : 64;
        doc_ref *nd = realloc(a->docs, cap * sizeof *nd);
        if (!nd) return fg_set_error("out of memory indexing %zu documents", cap);
        a->docs = nd; a->cap_docs = cap;
    }
    memcpy(a->bytes + a->n_bytes, text, len);
    a->docs[a->n_docs++] = (doc_ref){ a->n_bytes, len, content_hash(text, len), 0 };
    a->n_bytes += len;
    return 0;
}

static void arena_free(doc_arena *a) { free(a->bytes); free(a->docs); memset(a, 0, sizeof *a); }

// ---- file readers --------------------------------------------------------------------------
static void line_col(const char *s, size_t off, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) { if (s[i] == '\n') { l++; c = 1; } else c++; }
    *line = l; *col = c;
}

static int utf8_error(const char *path, const char *s, size_t len, size_t off) {
    size_t line, col;
    line_col(s, off, &line, &col);
    char hex[16] = "";
    for (size_t k = 0; k < 4 && off + k < len; k++)
        snprintf(hex + strlen(hex), sizeof hex - strlen(hex), "%s%02x", k ? " " : "", (unsigned char)s[off + k]);
    return fg_set_error("'%s': invalid UTF-8 at byte offset %zu (line %zu, column %zu; bytes from there: %s); "
                        "hint: convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8",
                        path, off, line, col, hex);
}

static int load_jsonl(doc_arena *a, const char *path, const char *buf, size_t len) {
    size_t lineno = 0, n_lines = 0;
    char where[512];
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;
        const char *line = buf + pos;
        pos = nl ? end + 1 : len;
        lineno++;
        if (n && line[n - 1] == '\r') n--;
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == n) continue; // blank line
        n_lines++;
        snprintf(where, sizeof where, "%s:%zu", path, lineno);
        fg_json *j = fg_json_parse(line, n, where);
        if (!j) {
            char why[768];
            snprintf(why, sizeof why, "%s", fg_last_error());
            return fg_set_error("'%s' line %zu: not valid JSON (%s); " HINT_JSONL, path, lineno, why);
        }
        int rc = 0;
        const fg_json *t = fg_json_get(j, "text");
        if (j->type != FG_JSON_OBJECT)
            rc = fg_set_error("'%s' line %zu: expected a JSON object, got %s; " HINT_JSONL,
                              path, lineno, fg_json_type_article(j->type));
        else if (!t)
            rc = fg_set_error("'%s' line %zu: missing field \"text\"; " HINT_JSONL, path, lineno);
        else if (t->type != FG_JSON_STRING)
            rc = fg_set_error("'%s' line %zu: field \"text\" is %s, not a string; " HINT_JSONL,
                              path, lineno, fg_json_type_article(t->type));
        else {
            size_t bad;
            if (!fg_utf8_validate(t->str, t->len, &bad))
                rc = fg_set_error("'%s' line %zu: field \"text\" decodes to invalid UTF-8 at byte %zu of "
                                  "the string; hint: check its \\u escapes (a lone surrogate like "
                                  "\\ud800 is not text)", path, lineno, bad);
            else if (t->len > 0)
                rc = arena_add(a, t->str, t->len); // "text": "" adds nothing
        }
        fg_json_free(j);
        if (rc) return rc;
    }
    if (n_lines == 0)
        return fg_set_error("'%s' is empty (only blank lines); hint: remove it from the data list "
                            "or add lines like {\"text\": \"...\"}", path);
    return 0;
}

static int is_jsonl(const char *path) {
    size_t n = strlen(path);
    return n >= 6 && strcasecmp(path + n - 6, ".jsonl") == 0;
}

static int load_buffer(doc_arena *a, const char *path, const char *buf, size_t len);

static int load_file(doc_arena *a, const char *path) {
    size_t len = 0;
    char *buf = fg_read_file(path, &len);
    if (!buf) {
        char why[768];
        snprintf(why, sizeof why, "%s", fg_last_error());
        return fg_set_error("%s; hint: check the path (data files are UTF-8 text, or .jsonl with a "
                            "\"text\" field per line)", why);
    }
    int rc = load_buffer(a, path, buf, len);
    free(buf);
    return rc;
}

// Adds the documents of one file's bytes; `path` names it (and picks JSONL by its extension).
static int load_buffer(doc_arena *a, const char *path, const char *buf, size_t len) {
    int rc = 0;
    size_t bad;
    if (len == 0)
        rc = fg_set_error("'%s' is empty; hint: remove it from the data list or add text", path);
    else if (!fg_utf8_validate(buf, len, &bad))
        rc = utf8_error(path, buf, len, bad);
    else if (is_jsonl(path))
        rc = load_jsonl(a, path, buf, len);
    else {
        size_t skip = (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) ? 3 : 0; // UTF-8 BOM
        if (skip == len)
            rc = fg_set_error("'%s' holds only a byte-order mark; hint: add text", path);
        else
            rc = arena_add(a, buf + skip, len - skip);
    }
    return rc;
}

// ---- split and streams ---------------------------------------------------------------------
// Moves every document whose hash equals that of docs[pick] to side `to`, unless that would
// empty the other side (all documents identical), in which case only docs[pick] moves.
static void move_docs(doc_arena *a, size_t pick, int to) {
    size_t same = 0, other = 0;
    for (size_t i = 0; i < a->n_docs; i++) {
        if (a->docs[i].val == to) continue;
        other++;
        if (a->docs[i].hash == a->docs[pick].hash) same++;
    }
    if (same == other) { a->docs[pick].val = to; return; }
    uint64_t h = a->docs[pick].hash;
    for (size_t i = 0; i < a->n_docs; i++) if (a->docs[i].hash == h) a->docs[i].val = to;
}

static void assign_split(doc_arena *a, double vf) {
    size_t n_val = 0;
    for (size_t i = 0; i < a->n_docs; i++) {
        a->docs[i].val = vf > 0 && hash_fraction(a->docs[i].hash) < vf;
        n_val += a->docs[i].val;
    }
    if (vf <= 0 || a->n_docs < 2) return;
    // Guarantee one document per side, choosing by hash (not position) to stay order-independent:
    // the train document nearest to the threshold moves to val, or the val one farthest from 0.
    if (n_val == 0) {
        size_t pick = 0;
        for (size_t i = 1; i < a->n_docs; i++) if (a->docs[i].hash < a->docs[pick].hash) pick = i;
        move_docs(a, pick, 1);
    } else if (n_val == a->n_docs) {
        size_t pick = 0;
        for (size_t i = 1; i < a->n_docs; i++) if (a->docs[i].hash > a->docs[pick].hash) pick = i;
        move_docs(a, pick, 0);
    }
}

static int stream_alloc(fg_token_stream *s, size_t n_tokens, const char *which) {
    s->tokens = fg_calloc(n_tokens, sizeof *s->tokens, which);
    return s->tokens ? 0 : -1;
}

static size_t put_doc(int32_t *out, const char *text, size_t len) {
    out[0] = FG_TOK_BOS;
    size_t n = fg_bytetok_encode(text, len, 0, out + 1, len);
    out[1 + n] = FG_TOK_EOS;
    return n + 2;
}

// The one-document case: its last vf of tokens (at least one, never all) become val, with the
// cut moved back off UTF-8 continuation bytes so neither side starts mid-character.
static int split_single(fg_dataset *ds, const doc_arena *a, double vf) {
    const doc_ref *d = &a->docs[0];
    size_t n = d->len + 2;
    size_t n_val = (size_t)llround((double)n * vf);
    n_val = FG_MAX(n_val, (size_t)1);
    n_val = FG_MIN(n_val, n - 1);
    size_t cut = n - n_val; // train = tokens[0, cut), val = tokens[cut, n); 1 <= cut <= n-1
    const unsigned char *text = (const unsigned char *)a->bytes + d->off;
    while (cut > 1 && cut < n - 1 && (text[cut - 1] & 0xC0) == 0x80) cut--; // token k is text[k-1]
    if (stream_alloc(&ds->train, cut, "train tokens") || stream_alloc(&ds->val, n - cut, "val tokens"))
        return -1;
    int32_t *all = fg_calloc(n, sizeof *all, "document tokens");
    if (!all) return -1;
    put_doc(all, a->bytes + d->off, d->len);
    memcpy(ds->train.tokens, all, cut * sizeof *all);
    memcpy(ds->val.tokens, all + cut, (n - cut) * sizeof *all);
    free(all);
    ds->train.n_tokens = cut;
    ds->val.n_tokens = n - cut;
    ds->train.n_docs = ds->val.n_docs = 1;
    ds->train.n_bytes = cut - 1;             // tokens 1..cut-1 are bytes (EOS is always in val)
    ds->val.n_bytes = d->len - ds->train.n_bytes;
    return 0;
}

static int build_streams(fg_dataset *ds, const doc_arena *a, double vf) {
    if (a->n_docs == 1 && vf > 0) return split_single(ds, a, vf);
    size_t n_tok[2] = { 0, 0 };
    for (size_t i = 0; i < a->n_docs; i++) n_tok[a->docs[i].val] += a->docs[i].len + 2;
    if (stream_alloc(&ds->train, n_tok[0], "train tokens") || stream_alloc(&ds->val, n_tok[1], "val tokens"))
        return -1;
    for (size_t i = 0; i < a->n_docs; i++) {
        const doc_ref *d = &a->docs[i];
        fg_token_stream *s = d->val ? &ds->val : &ds->train;
        s->n_tokens += put_doc(s->tokens + s->n_tokens, a->bytes + d->off, d->len);
        s->n_docs++;
        s->n_bytes += d->len;
    }
    return 0;
}

// BPE streams: each document is encoded (special strings not parsed) between bos and eos.
static int build_streams_bpe(fg_dataset *ds, const doc_arena *a, double vf, const fg_tokenizer *tok, int32_t bos, int32_t eos) {
    int single = a->n_docs == 1 && vf > 0;
    size_t n_tok[2] = { 0, 0 };
    for (size_t i = 0; i < a->n_docs; i++) {
        size_t n = fg_tokenizer_encode(tok, a->bytes + a->docs[i].off, a->docs[i].len, 0, NULL, 0);
        if (n == SIZE_MAX) return -1;
        n_tok[single ? 0 : a->docs[i].val] += n + 2; // a single document is split below, whatever its hash says
    }
    if (stream_alloc(&ds->train, n_tok[0], "train tokens") || stream_alloc(&ds->val, n_tok[1], "val tokens")) return -1;
    for (size_t i = 0; i < a->n_docs; i++) {
        const doc_ref *d = &a->docs[i];
        fg_token_stream *s = d->val && !single ? &ds->val : &ds->train;
        int32_t *out = s->tokens + s->n_tokens;
        size_t n = fg_tokenizer_encode(tok, a->bytes + d->off, d->len, 0, out + 1, SIZE_MAX / 8);
        out[0] = bos; out[n + 1] = eos;
        s->n_tokens += n + 2; s->n_docs++; s->n_bytes += d->len;
    }
    if (single) { // one document: its last vf of tokens (at least one, never all) become val
        fg_token_stream *t = &ds->train, *v = &ds->val;
        size_t n = t->n_tokens, n_val = (size_t)llround((double)n * vf);
        n_val = FG_MAX(n_val, (size_t)1);
        n_val = FG_MIN(n_val, n - 1);
        free(v->tokens);
        if (stream_alloc(v, n_val, "val tokens")) return -1;
        memcpy(v->tokens, t->tokens + n - n_val, n_val * sizeof *v->tokens);
        v->n_tokens = n_val; t->n_tokens = n - n_val;
        v->n_docs = 1;
        size_t bytes = t->n_bytes;
        v->n_bytes = (size_t)llround((double)bytes * (double)n_val / (double)n); // estimate: bytes follow tokens
        t->n_bytes = bytes - v->n_bytes;
    }
    return 0;
}

int fg_dataset_load_tok(fg_dataset *ds, const char *const *paths, int n_paths, double val_fraction, const fg_tokenizer *tok,
                        int32_t bos, int32_t eos) {
    if (!tok) return fg_dataset_load(ds, paths, n_paths, val_fraction);
    memset(ds, 0, sizeof *ds);
    if (!(val_fraction >= 0 && val_fraction <= 0.5))
        return fg_set_error("val_fraction must be in [0, 0.5] (got %g)", val_fraction);
    if (n_paths <= 0 || !paths) return fg_set_error("no data files given; hint: pass at least one .txt or .jsonl path");
    doc_arena a = { 0 };
    for (int i = 0; i < n_paths; i++)
        if (load_file(&a, paths[i])) { arena_free(&a); return -1; }
    if (a.n_docs == 0) { arena_free(&a); return fg_set_error("no data: %d file(s) hold no non-empty document", n_paths); }
    assign_split(&a, val_fraction);
    int rc = build_streams_bpe(ds, &a, val_fraction, tok, bos, eos);
    arena_free(&a);
    if (rc) fg_dataset_free(ds);
    return rc;
}

int fg_dataset_load(fg_dataset *ds, const char *const *paths, int n_paths, double val_fraction) {
    memset(ds, 0, sizeof *ds);
    if (!(val_fraction >= 0 && val_fraction <= 0.5)) // also rejects NaN
        return fg_set_error("val_fraction must be in [0, 0.5] (got %g); hint: 0.1 holds out about "
                            "10%% of documents for validation", val_fraction);
    if (n_paths <= 0 || !paths)
        return fg_set_error("no data files given; hint: pass at least one .txt or .jsonl path");
    doc_arena a = { 0 };
    for (int i = 0; i < n_paths; i++)
        if (load_file(&a, paths[i])) { arena_free(&a); return -1; }
    if (a.n_docs == 0) {
        arena_free(&a);
        return fg_set_error("no data: %d file(s) hold no non-empty document (every \"text\" is \"\"); "
                            "hint: check the files' contents", n_paths);
    }
    assign_split(&a, val_fraction);
    int rc = build_streams(ds, &a, val_fraction);
    arena_free(&a);
    if (rc) fg_dataset_free(ds);
    return rc;
}

int fg_dataset_load_mem(fg_dataset *ds, const char *buf, size_t len, const char *name, double val_fraction) {
    memset(ds, 0, sizeof *ds);
    if (!(val_fraction >= 0 && val_fraction <= 0.5))
        return fg_set_error("val_fraction must be in [0, 0.5] (got %g)", val_fraction);
    doc_arena a = { 0 };
    if (load_buffer(&a, name, buf, len)) { arena_free(&a); return -1; }
    if (a.n_docs == 0) { arena_free(&a); return fg_set_error("no data: '%s' holds no non-empty document", name); }
    assign_split(&a, val_fraction);
    int rc = build_streams(ds, &a, val_fraction);
    arena_free(&a);
    if (rc) fg_dataset_free(ds);
    return rc;
}

void fg_dataset_free(fg_dataset *ds) {
    free(ds->train.tokens);
    free(ds->val.tokens);
    memset(ds, 0, sizeof *ds);
}

// ---- batches -------------------------------------------------------------------------------
// One row: inputs = tokens[start, start+T), targets = tokens[start+1, start+T+1), with PAD / -1
// wherever the stream has ended.
static void fill_row(const fg_token_stream *s, size_t start, int32_t *inputs, int32_t *targets, int T) {
    for (int t = 0; t < T; t++) {
        size_t p = start + (size_t)t;
        inputs[t] = p < s->n_tokens ? s->tokens[p] : FG_TOK_PAD;
        targets[t] = p + 1 < s->n_tokens ? s->tokens[p + 1] : -1;
    }
}

void fg_sampler_init(fg_sampler *sp, const fg_token_stream *s, uint64_t seed) {
    sp->s = s;
    fg_rng_seed(&sp->rng, seed);
    sp->batches_drawn = 0;
}

void fg_sampler_next(fg_sampler *sp, int32_t *inputs, int32_t *targets, int B, int T) {
    assert(B >= 1 && T >= 1);
    const fg_token_stream *s = sp->s;
    for (int b = 0; b < B; b++) {
        size_t start = 0;
        if (s->n_tokens >= (size_t)T + 1) start = (size_t)fg_rng_below(&sp->rng, s->n_tokens - (size_t)T);
        fill_row(s, start, inputs + (size_t)b * T, targets + (size_t)b * T, T);
    }
    sp->batches_drawn++;
}

size_t fg_stream_n_windows(const fg_token_stream *s, int T) {
    assert(T >= 1);
    if (s->n_tokens == 0) return 0;
    if (s->n_tokens < (size_t)T + 1) return 1;
    return (s->n_tokens - 1) / (size_t)T;
}

void fg_stream_window(const fg_token_stream *s, size_t i, int32_t *inputs, int32_t *targets, int B, int T) {
    assert(B >= 1 && T >= 1);
    size_t nw = fg_stream_n_windows(s, T);
    for (int b = 0; b < B; b++) {
        size_t w = 0;
        if (nw > 0) w = (size_t)(((unsigned __int128)(i % nw) * (unsigned)B + (unsigned)b) % nw);
        // nw == 0 means an empty stream: start 0 makes fill_row write PAD / -1 throughout.
        fill_row(s, w * (size_t)T, inputs + (size_t)b * T, targets + (size_t)b * T, T);
    }
}
