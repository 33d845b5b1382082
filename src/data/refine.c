// refine.c: see refine.h and docs/data.md.
#include "data/refine.h"
#include "data/data.h"
#include "formats/json.h"
#include "tokenizer/pretok.h" // fg_quote
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BAD_LINES_KEPT 20

static const char *RULE_NAMES[FG_REFINE_NRULES] = {
    "invalid_utf8", "control_chars", "too_short", "too_long", "symbol_ratio", "digit_ratio",
    "repeated_lines", "repeated_ngrams", "exact_duplicate", "near_duplicate", "perplexity"};

const char *fg_refine_rule_name(int rule) { return rule >= 0 && rule < FG_REFINE_NRULES ? RULE_NAMES[rule] : "?"; }

static uint64_t mix64(uint64_t h) {
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 27; h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}
static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

// ---- open-addressing tables of 64-bit keys (0 marks an empty slot; keys are forced nonzero) ----
typedef struct { uint64_t *key; uint32_t *val; size_t cap, n; } u64_table;

static int tab_grow(u64_table *t) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    uint64_t *nk = calloc(cap, sizeof *nk);
    uint32_t *nv = malloc(cap * sizeof *nv);
    if (!nk || !nv) { free(nk); free(nv); return fg_set_error("refine: out of memory growing a hash table to %zu slots", cap); }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->key[i]) continue;
        size_t j = mix64(t->key[i]) & (cap - 1);
        while (nk[j]) j = (j + 1) & (cap - 1);
        nk[j] = t->key[i]; nv[j] = t->val[i];
    }
    free(t->key); free(t->val);
    t->key = nk; t->val = nv; t->cap = cap;
    return 0;
}
// Inserts (key, val); duplicate keys are kept (a multimap).
static int tab_put(u64_table *t, uint64_t key, uint32_t val) {
    if (2 * (t->n + 1) > t->cap && tab_grow(t)) return -1;
    key |= !key;
    size_t j = mix64(key) & (t->cap - 1);
    while (t->key[j]) j = (j + 1) & (t->cap - 1);
    t->key[j] = key; t->val[j] = val; t->n++;
    return 0;
}
static void tab_free(u64_table *t) { free(t->key); free(t->val); }

// ---- state ------------------------------------------------------------------------------------
typedef struct { char *s[8]; int n; } examples;

struct fg_refine {
    fg_refine_opts o;
    fg_refine_stats st;
    int rows;
    uint64_t *perm_a, *perm_b;             // (num_perm) MinHash multipliers (odd) and offsets
    u64_table exact;                       // normalised-text hash -> kept doc
    u64_table *band;                       // (bands) band key -> kept doc
    uint32_t *sigs; size_t n_kept, sig_cap; // (kept, num_perm) signatures
    uint32_t (*loc)[2];                    // (kept) file index, line of each kept doc
    char **files; uint32_t n_files, files_cap;
    examples ex[FG_REFINE_NRULES];
    char *bad[BAD_LINES_KEPT];
    // per-document scratch
    uint64_t *sh; size_t sh_cap; uint64_t *lines; size_t lines_cap; uint32_t *sig; uint32_t *seen; size_t seen_cap;
    int32_t *toks;
    // output
    FILE *out; char *out_path, *tmp_path;
    // perplexity model
    fg_model *model; fg_infer *inf;
};

void fg_refine_opts_default(fg_refine_opts *o) {
    memset(o, 0, sizeof *o);
    o->jaccard = 0.8; o->num_perm = 128; o->bands = 0;
    o->min_chars = 50; o->max_chars = 1000000;
    o->max_symbols = 0.4; o->max_digits = 0.3;
    o->max_repeated_lines = 0.3; o->max_repeated_ngrams = 0.2; o->max_control = 0.01;
    o->max_perplexity = 1e30; o->ppl_tokens = 256; o->examples = 3;
}

// P(a pair with Jaccard j becomes an LSH candidate) with b bands of r rows.
static double p_candidate(double j, int b, int r) { return 1 - pow(1 - pow(j, r), b); }

fg_refine *fg_refine_new(const fg_refine_opts *o, const char *out_path) {
    if (!(o->jaccard > 0 && o->jaccard <= 1)) { fg_set_error("refine: jaccard must be in (0, 1] (got %g)", o->jaccard); return NULL; }
    if (o->num_perm < 8 || o->num_perm > 1024) { fg_set_error("refine: num_perm must be in [8, 1024] (got %d)", o->num_perm); return NULL; }
    if (o->bands < 0 || o->bands > o->num_perm) { fg_set_error("refine: bands must be in [0, num_perm] (got %d)", o->bands); return NULL; }
    if (o->min_chars < 0 || o->max_chars < o->min_chars) { fg_set_error("refine: need 0 <= min_chars <= max_chars (got %d, %d)", o->min_chars, o->max_chars); return NULL; }
    if (o->examples < 0 || o->examples > 8) { fg_set_error("refine: examples must be in [0, 8] (got %d)", o->examples); return NULL; }
    if (o->ppl_model && (o->ppl_tokens < 2 || o->ppl_tokens > 4096)) { fg_set_error("refine: ppl_tokens must be in [2, 4096] (got %d)", o->ppl_tokens); return NULL; }
    fg_refine *r = calloc(1, sizeof *r);
    if (!r) { fg_set_error("refine: out of memory"); return NULL; }
    r->o = *o;
    int b = o->bands, rows;
    if (b == 0) { // the most rows (fewest candidates) that still catch 95% of pairs at the threshold
        for (rows = o->num_perm; rows > 1; rows--)
            if (p_candidate(o->jaccard, o->num_perm / rows, rows) >= 0.95) break;
        b = o->num_perm / rows;
    }
    rows = o->num_perm / b;
    r->st.bands = b; r->st.rows = rows; r->rows = rows;
    r->perm_a = malloc((size_t)o->num_perm * sizeof *r->perm_a);
    r->perm_b = malloc((size_t)o->num_perm * sizeof *r->perm_b);
    r->band = calloc((size_t)b, sizeof *r->band);
    r->sig = malloc((size_t)o->num_perm * sizeof *r->sig);
    if (!r->perm_a || !r->perm_b || !r->band || !r->sig) { fg_set_error("refine: out of memory"); fg_refine_free(r); return NULL; }
    uint64_t x = 0x5eed;
    for (int i = 0; i < o->num_perm; i++) {
        r->perm_a[i] = mix64(x += 0x9e3779b97f4a7c15ull) | 1;
        r->perm_b[i] = mix64(x += 0x9e3779b97f4a7c15ull);
    }
    if (o->ppl_model) {
        r->model = fg_ckpt_load(o->ppl_model, NULL, NULL);
        if (!r->model) { fg_wrap_error("refine: perplexity model"); fg_refine_free(r); return NULL; }
        if (fg_model_config(r->model)->vocab_size < FG_BYTE_VOCAB) {
            fg_set_error("refine: perplexity model '%s' has vocab_size %d, but scoring uses the byte tokenizer (%d ids)",
                         o->ppl_model, fg_model_config(r->model)->vocab_size, FG_BYTE_VOCAB);
            fg_refine_free(r); return NULL;
        }
        int T = o->ppl_tokens;
        if (T > fg_model_config(r->model)->max_position_embeddings) T = fg_model_config(r->model)->max_position_embeddings;
        r->o.ppl_tokens = T;
        r->inf = fg_infer_create(r->model, T);
        r->toks = malloc((size_t)T * sizeof *r->toks);
        if (!r->inf || !r->toks) { fg_wrap_error("refine: perplexity model"); fg_refine_free(r); return NULL; }
    }
    if (out_path) {
        size_t n = strlen(out_path);
        r->out_path = strdup(out_path);
        r->tmp_path = malloc(n + 5);
        if (!r->out_path || !r->tmp_path) { fg_set_error("refine: out of memory"); fg_refine_free(r); return NULL; }
        memcpy(r->tmp_path, out_path, n); memcpy(r->tmp_path + n, ".tmp", 5);
        if (!(r->out = fopen(r->tmp_path, "wb"))) { fg_set_error("refine: cannot create '%s'", r->tmp_path); fg_refine_free(r); return NULL; }
    }
    return r;
}

void fg_refine_free(fg_refine *r) {
    if (!r) return;
    if (r->out) { fclose(r->out); remove(r->tmp_path); }
    free(r->out_path); free(r->tmp_path);
    free(r->perm_a); free(r->perm_b);
    tab_free(&r->exact);
    for (int i = 0; r->band && i < r->st.bands; i++) tab_free(&r->band[i]);
    free(r->band);
    free(r->sigs); free(r->loc);
    for (uint32_t i = 0; i < r->n_files; i++) free(r->files[i]);
    free(r->files);
    for (int k = 0; k < FG_REFINE_NRULES; k++) for (int i = 0; i < r->ex[k].n; i++) free(r->ex[k].s[i]);
    for (int i = 0; i < BAD_LINES_KEPT; i++) free(r->bad[i]);
    free(r->sh); free(r->lines); free(r->sig); free(r->seen); free(r->toks);
    fg_infer_free(r->inf); fg_model_free(r->model);
    free(r);
}

// ---- per-document features -----------------------------------------------------------------
static int push64(uint64_t **a, size_t *cap, size_t n, uint64_t v) {
    if (n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        uint64_t *na = realloc(*a, c * sizeof *na);
        if (!na) return fg_set_error("refine: out of memory");
        *a = na; *cap = c;
    }
    (*a)[n] = v;
    return 0;
}

long fg_refine_shingles(const char *text, size_t len, uint64_t **out, size_t *cap) {
    // word hashes of the normalised text, then every run of FG_REFINE_SHINGLE words
    size_t i = 0, nw = 0, base = 0, n = 0;
    uint64_t win[FG_REFINE_SHINGLE];
    const unsigned char *u = (const unsigned char *)text;
    uint64_t first = 0;
    while (i < len) {
        while (i < len && is_space(u[i])) i++;
        if (i == len) break;
        uint64_t h = 0xcbf29ce484222325ull;
        while (i < len && !is_space(u[i])) { h ^= lower(u[i++]); h *= 0x100000001b3ull; }
        win[nw % FG_REFINE_SHINGLE] = mix64(h);
        nw++;
        if (nw < FG_REFINE_SHINGLE) { first = first * 0x9e3779b97f4a7c15ull + win[(nw - 1) % FG_REFINE_SHINGLE]; continue; }
        uint64_t s = 0;
        for (size_t k = nw - FG_REFINE_SHINGLE; k < nw; k++) s = s * 0x9e3779b97f4a7c15ull + win[k % FG_REFINE_SHINGLE];
        if (push64(out, cap, n, mix64(s))) return -1;
        n++;
    }
    (void)base;
    if (nw > 0 && nw < FG_REFINE_SHINGLE) { if (push64(out, cap, n, mix64(first))) return -1; n++; }
    return (long)n;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}
static size_t count_unique_sorted(uint64_t *a, size_t n) {
    qsort(a, n, sizeof *a, cmp_u64);
    size_t u = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) u += a[i] != a[i - 1];
    return u;
}

// Hash of the normalised text (ASCII lowercased, whitespace runs = one space, trimmed).
static uint64_t norm_hash(const char *text, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    int pending = 0, any = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_space(c)) { pending = any; continue; }
        if (pending) { h ^= ' '; h *= 0x100000001b3ull; pending = 0; }
        h ^= lower(c); h *= 0x100000001b3ull; any = 1;
    }
    return mix64(h);
}

static void note_example(fg_refine *r, int rule, const char *where, const char *text, size_t len, const char *extra) {
    examples *e = &r->ex[rule];
    if (e->n >= r->o.examples) return;
    char snip[200], q[300];
    size_t n = len < 80 ? len : 80;
    while (n < len && n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) n--; // cut on a character boundary
    snprintf(snip, sizeof snip, "%s", fg_quote(q, sizeof q, text, n));
    size_t need = strlen(where) + strlen(snip) + (extra ? strlen(extra) : 0) + 16;
    char *s = malloc(need);
    if (!s) return; // an example is optional
    snprintf(s, need, "%s: \"%s%s\"%s%s", where, snip, n < len ? "..." : "", extra ? " " : "", extra ? extra : "");
    e->s[e->n++] = s;
}

static int drop(fg_refine *r, int rule, const char *where, const char *text, size_t len, const char *extra) {
    r->st.removed[rule]++;
    r->st.removed_bytes[rule] += len;
    note_example(r, rule, where, text, len, extra);
    return 0;
}

// First quality rule that fires, or -1. Needs r->sh filled with the shingles (n_sh of them).
static int quality(fg_refine *r, const char *text, size_t len, size_t n_sh) {
    const fg_refine_opts *o = &r->o;
    size_t bad;
    if (!fg_utf8_validate(text, len, &bad)) return FG_REFINE_INVALID_UTF8;
    size_t ctrl = 0, chars = 0, nonspace = 0, sym = 0, dig = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) == 0x80) continue; // continuation byte
        chars++;
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) ctrl++;
        if (is_space(c)) continue;
        nonspace++;
        if (c >= '0' && c <= '9') dig++;
        else if (c < 0x80 && c > 0x20 && !((c | 32) >= 'a' && (c | 32) <= 'z')) sym++;
    }
    if (len && (double)ctrl / (double)len > o->max_control) return FG_REFINE_CONTROL;
    if (chars < (size_t)o->min_chars) return FG_REFINE_TOO_SHORT;
    if (chars > (size_t)o->max_chars) return FG_REFINE_TOO_LONG;
    if (nonspace && (double)sym / (double)nonspace > o->max_symbols) return FG_REFINE_SYMBOLS;
    if (nonspace && (double)dig / (double)nonspace > o->max_digits) return FG_REFINE_DIGITS;
    // repeated lines
    size_t nl = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        size_t a = i, b = j;
        while (a < b && is_space((unsigned char)text[a])) a++;
        while (b > a && is_space((unsigned char)text[b - 1])) b--;
        if (b > a && push64(&r->lines, &r->lines_cap, nl++, norm_hash(text + a, b - a))) return -2;
        i = j + 1;
    }
    if (nl >= 3 && (double)(nl - count_unique_sorted(r->lines, nl)) / (double)nl > o->max_repeated_lines)
        return FG_REFINE_REPEATED_LINES;
    if (n_sh >= 10) {
        uint64_t *tmp = r->lines; // reuse as scratch: sort a copy of the shingles
        if (n_sh > r->lines_cap) {
            tmp = realloc(r->lines, n_sh * sizeof *tmp);
            if (!tmp) return fg_set_error("refine: out of memory"), -2;
            r->lines = tmp; r->lines_cap = n_sh;
        }
        memcpy(tmp, r->sh, n_sh * sizeof *tmp);
        if ((double)(n_sh - count_unique_sorted(tmp, n_sh)) / (double)n_sh > o->max_repeated_ngrams)
            return FG_REFINE_REPEATED_NGRAMS;
    }
    return -1;
}

static void minhash(fg_refine *r, size_t n_sh) {
    int P = r->o.num_perm;
    for (int i = 0; i < P; i++) r->sig[i] = UINT32_MAX;
    for (size_t s = 0; s < n_sh; s++) {
        uint64_t h = r->sh[s];
        for (int i = 0; i < P; i++) {
            uint32_t v = (uint32_t)((r->perm_a[i] * h + r->perm_b[i]) >> 32);
            r->sig[i] = v < r->sig[i] ? v : r->sig[i];
        }
    }
}

static uint64_t band_key(const fg_refine *r, int b) {
    uint64_t h = 0x243f6a8885a308d3ull ^ (uint64_t)b;
    for (int i = 0; i < r->rows; i++) h = mix64(h ^ r->sig[b * r->rows + i]);
    return h;
}

// Index of a kept document whose signature agrees on >= jaccard of the slots, or -1.
static long near_dup(fg_refine *r) {
    size_t n_seen = 0;
    int P = r->o.num_perm;
    for (int b = 0; b < r->st.bands; b++) {
        u64_table *t = &r->band[b];
        if (!t->cap) continue;
        uint64_t key = band_key(r, b);
        key |= !key;
        for (size_t j = mix64(key) & (t->cap - 1); t->key[j]; j = (j + 1) & (t->cap - 1)) {
            if (t->key[j] != key) continue;
            uint32_t d = t->val[j];
            int dup = 0;
            for (size_t k = 0; k < n_seen; k++) if (r->seen[k] == d) { dup = 1; break; }
            if (dup) continue;
            if (n_seen == r->seen_cap) {
                size_t c = r->seen_cap ? r->seen_cap * 2 : 64;
                uint32_t *ns = realloc(r->seen, c * sizeof *ns);
                if (!ns) continue; // skipping a candidate only costs recall
                r->seen = ns; r->seen_cap = c;
            }
            r->seen[n_seen++] = d;
            r->st.candidates++;
            const uint32_t *s = r->sigs + (size_t)d * P;
            int eq = 0;
            for (int i = 0; i < P; i++) eq += s[i] == r->sig[i];
            if ((double)eq / P >= r->o.jaccard) return d;
        }
    }
    return -1;
}

// Per-byte-token perplexity of the first ppl_tokens tokens (BOS first).
static double perplexity(fg_refine *r, const char *text, size_t len) {
    int T = r->o.ppl_tokens;
    r->toks[0] = FG_TOK_BOS;
    size_t n = fg_bytetok_encode(text, len, 0, r->toks + 1, (size_t)T - 1);
    if (n > (size_t)T - 1) n = (size_t)T - 1;
    n += 1;
    fg_infer_reset(r->inf);
    int V = fg_model_config(r->model)->vocab_size;
    double nll = 0;
    for (size_t t = 0; t + 1 < n; t++) {
        const float *lg = fg_infer_feed(r->inf, &r->toks[t], 1);
        if (!lg) return INFINITY;
        float mx = lg[0];
        for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
        double se = 0;
        for (int v = 0; v < V; v++) se += exp((double)lg[v] - mx);
        nll += mx + log(se) - lg[r->toks[t + 1]];
    }
    return n > 1 ? exp(nll / (double)(n - 1)) : 1.0;
}

static int add_loc(fg_refine *r, uint32_t file, uint32_t line) {
    if (r->n_kept == r->sig_cap) {
        size_t c = r->sig_cap ? r->sig_cap * 2 : 1024;
        uint32_t *ns = realloc(r->sigs, c * (size_t)r->o.num_perm * sizeof *ns);
        if (!ns) return fg_set_error("refine: out of memory holding %zu signatures", c);
        r->sigs = ns;
        uint32_t (*nl)[2] = realloc(r->loc, c * sizeof *nl);
        if (!nl) return fg_set_error("refine: out of memory holding %zu signatures", c);
        r->loc = nl;
        r->sig_cap = c;
    }
    memcpy(r->sigs + r->n_kept * (size_t)r->o.num_perm, r->sig, (size_t)r->o.num_perm * sizeof *r->sig);
    r->loc[r->n_kept][0] = file; r->loc[r->n_kept][1] = line;
    r->n_kept++;
    return 0;
}

static void loc_str(const fg_refine *r, uint32_t file, uint32_t line, char *buf, size_t cap) {
    if (line) snprintf(buf, cap, "%s:%u", r->files[file], line);
    else snprintf(buf, cap, "%s", r->files[file]);
}

// One document. line: 1-based JSONL line, or 0 for a whole text file. -1 only on I/O or memory errors.
static int refine_doc(fg_refine *r, uint32_t file, uint32_t line, const char *text, size_t len) {
    char where[600], extra[700];
    loc_str(r, file, line, where, sizeof where);
    r->st.docs_in++;
    r->st.bytes_in += len;
    long n_sh = fg_refine_shingles(text, len, &r->sh, &r->sh_cap);
    if (n_sh < 0) return -1;
    int rule = quality(r, text, len, (size_t)n_sh);
    if (rule == -2) return -1;
    if (rule >= 0) return drop(r, rule, where, text, len, NULL);
    uint64_t h = norm_hash(text, len);
    h |= !h;
    if (r->exact.cap)
        for (size_t j = mix64(h) & (r->exact.cap - 1); r->exact.key[j]; j = (j + 1) & (r->exact.cap - 1))
            if (r->exact.key[j] == h) {
                uint32_t d = r->exact.val[j];
                char w2[600];
                loc_str(r, r->loc[d][0], r->loc[d][1], w2, sizeof w2);
                snprintf(extra, sizeof extra, "(same as %s)", w2);
                return drop(r, FG_REFINE_EXACT_DUP, where, text, len, extra);
            }
    minhash(r, (size_t)n_sh);
    long d = near_dup(r);
    if (d >= 0) {
        char w2[600];
        loc_str(r, r->loc[d][0], r->loc[d][1], w2, sizeof w2);
        snprintf(extra, sizeof extra, "(near %s)", w2);
        return drop(r, FG_REFINE_NEAR_DUP, where, text, len, extra);
    }
    if (r->model) {
        double ppl = perplexity(r, text, len);
        if (!(ppl <= r->o.max_perplexity)) {
            snprintf(extra, sizeof extra, "(perplexity %.1f)", ppl);
            return drop(r, FG_REFINE_PERPLEXITY, where, text, len, extra);
        }
    }
    if (r->n_kept >= UINT32_MAX) return fg_set_error("refine: more than 2^32 kept documents");
    uint32_t id = (uint32_t)r->n_kept;
    if (add_loc(r, file, line) || tab_put(&r->exact, h, id)) return -1;
    for (int b = 0; b < r->st.bands; b++) if (tab_put(&r->band[b], band_key(r, b), id)) return -1;
    r->st.docs_kept++;
    r->st.bytes_kept += len;
    if (r->out) {
        fputs("{\"text\": ", r->out);
        fg_json_write_string(r->out, text, len);
        fputs("}\n", r->out);
        if (ferror(r->out)) return fg_set_error("refine: write error on '%s'", r->tmp_path);
    }
    return 0;
}

static void bad_line(fg_refine *r, uint32_t file, size_t line, const char *why) {
    if (r->st.bad_lines < BAD_LINES_KEPT) {
        char buf[800];
        snprintf(buf, sizeof buf, "%s:%zu: %s", r->files[file], line, why);
        r->bad[r->st.bad_lines] = strdup(buf);
    }
    r->st.bad_lines++;
}

static int jsonl_line(fg_refine *r, uint32_t file, size_t lineno, const char *line, size_t n) {
    size_t k = 0;
    while (k < n && is_space((unsigned char)line[k])) k++;
    if (k == n) return 0;
    fg_json *j = fg_json_parse(line, n, "line");
    if (!j) {
        // "line:1:col: what": keep the what
        const char *e = fg_last_error(), *c = strstr(e, ": ");
        char why[300];
        snprintf(why, sizeof why, "not valid JSON (%s)", c ? c + 2 : e);
        bad_line(r, file, lineno, why);
        return 0;
    }
    const fg_json *t = fg_json_get(j, "text"), *dup = fg_json_dup_key(j);
    int rc = 0;
    if (j->type != FG_JSON_OBJECT) bad_line(r, file, lineno, "not a JSON object");
    else if (dup) {
        char why[160];
        snprintf(why, sizeof why, "duplicate key \"%.*s\"", (int)(dup->key_len < 64 ? dup->key_len : 64), dup->key);
        bad_line(r, file, lineno, why);
    } else if (!t) bad_line(r, file, lineno, "missing field \"text\"");
    else if (t->type != FG_JSON_STRING) bad_line(r, file, lineno, "field \"text\" is not a string");
    else rc = refine_doc(r, file, lineno > UINT32_MAX ? UINT32_MAX : (uint32_t)lineno, t->str, t->len);
    fg_json_free(j);
    return rc;
}

static int add_name(fg_refine *r, const char *where, uint32_t *id) {
    if (r->n_files == r->files_cap) {
        uint32_t c = r->files_cap ? r->files_cap * 2 : 16;
        char **nf = realloc(r->files, c * sizeof *nf);
        if (!nf) return fg_set_error("refine: out of memory");
        r->files = nf; r->files_cap = c;
    }
    if (!(r->files[r->n_files] = strdup(where))) return fg_set_error("refine: out of memory");
    *id = r->n_files++;
    return 0;
}

static int is_jsonl(const char *path) {
    size_t n = strlen(path);
    return n >= 6 && strcasecmp(path + n - 6, ".jsonl") == 0;
}

int fg_refine_add_mem(fg_refine *r, const char *data, size_t len, const char *where, int jsonl) {
    uint32_t file = 0;
    if (add_name(r, where, &file)) return -1;
    if (!jsonl) return refine_doc(r, file, 0, data, len);
    size_t lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        if (jsonl_line(r, file, ++lineno, data + pos, n)) return -1;
        pos += n + 1;
    }
    return 0;
}

int fg_refine_add_file(fg_refine *r, const char *path) {
    if (!is_jsonl(path)) {
        size_t len;
        char *buf = fg_read_file(path, &len);
        if (!buf) return fg_wrap_error("refine");
        int rc = fg_refine_add_mem(r, buf, len, path, 0);
        free(buf);
        return rc;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return fg_set_error("refine: cannot open '%s'", path);
    uint32_t file = 0;
    if (add_name(r, path, &file)) { fclose(f); return -1; }
    char *line = NULL; size_t cap = 0, lineno = 0; ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) rc = jsonl_line(r, file, ++lineno, line, (size_t)n);
    if (rc == 0 && ferror(f)) rc = fg_set_error("refine: read error on '%s'", path);
    free(line);
    fclose(f);
    return rc;
}

int fg_refine_finish(fg_refine *r) {
    if (!r->out) return 0;
    int bad = ferror(r->out);
    FILE *f = r->out;
    r->out = NULL;
    if (fclose(f) || bad) { remove(r->tmp_path); return fg_set_error("refine: write error on '%s'", r->tmp_path); }
    if (rename(r->tmp_path, r->out_path)) { remove(r->tmp_path); return fg_set_error("refine: cannot rename '%s' to '%s'", r->tmp_path, r->out_path); }
    return 0;
}

const fg_refine_stats *fg_refine_get_stats(const fg_refine *r) { return &r->st; }
const char *fg_refine_example(const fg_refine *r, int rule, int k) {
    return rule >= 0 && rule < FG_REFINE_NRULES && k >= 0 && k < r->ex[rule].n ? r->ex[rule].s[k] : NULL;
}
const char *fg_refine_bad_line(const fg_refine *r, int k) {
    return k >= 0 && k < BAD_LINES_KEPT && (uint64_t)k < r->st.bad_lines ? r->bad[k] : NULL;
}

int fg_refine_write_report(const fg_refine *r, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return fg_set_error("refine: cannot create report '%s'", path);
    const fg_refine_opts *o = &r->o;
    const fg_refine_stats *s = &r->st;
    fprintf(f, "{\n  \"params\": {\"jaccard\": %g, \"num_perm\": %d, \"bands\": %d, \"rows\": %d, \"shingle_words\": %d, "
            "\"min_chars\": %d, \"max_chars\": %d, \"max_symbols\": %g, \"max_digits\": %g, \"max_repeated_lines\": %g, "
            "\"max_repeated_ngrams\": %g, \"max_control\": %g, \"perplexity_model\": ",
            o->jaccard, o->num_perm, s->bands, s->rows, FG_REFINE_SHINGLE, o->min_chars, o->max_chars, o->max_symbols,
            o->max_digits, o->max_repeated_lines, o->max_repeated_ngrams, o->max_control);
    if (o->ppl_model) { fg_json_write_string(f, o->ppl_model, strlen(o->ppl_model)); fprintf(f, ", \"max_perplexity\": %g", o->max_perplexity); }
    else fputs("null", f);
    fprintf(f, "},\n  \"documents_in\": %llu, \"bytes_in\": %llu, \"documents_kept\": %llu, \"bytes_kept\": %llu,\n"
            "  \"lsh_candidates\": %llu,\n  \"bad_lines\": %llu, \"bad_line_examples\": [",
            (unsigned long long)s->docs_in, (unsigned long long)s->bytes_in, (unsigned long long)s->docs_kept,
            (unsigned long long)s->bytes_kept, (unsigned long long)s->candidates, (unsigned long long)s->bad_lines);
    for (int k = 0; fg_refine_bad_line(r, k); k++) {
        fputs(k ? ", " : "", f);
        fg_json_write_string(f, r->bad[k], strlen(r->bad[k]));
    }
    fputs("],\n  \"removed\": {", f);
    for (int i = 0; i < FG_REFINE_NRULES; i++) {
        fprintf(f, "%s\n    \"%s\": {\"documents\": %llu, \"bytes\": %llu, \"examples\": [", i ? "," : "", RULE_NAMES[i],
                (unsigned long long)s->removed[i], (unsigned long long)s->removed_bytes[i]);
        for (int k = 0; k < r->ex[i].n; k++) {
            fputs(k ? ", " : "", f);
            fg_json_write_string(f, r->ex[i].s[k], strlen(r->ex[i].s[k]));
        }
        fputs("]}", f);
    }
    fputs("\n  }\n}\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad) return fg_set_error("refine: write error on report '%s'", path);
    return 0;
}
