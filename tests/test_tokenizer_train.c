// test_tokenizer_train.c: BPE training (src/tokenizer/train.c) against an independent brute-force
// BPE written here: it recounts every pair from scratch before each merge and applies the same
// documented rule (highest count; ties: smallest left id, then smallest right id; merged bytes
// that already are a token reuse that id). The first merges must agree exactly; the written
// tokenizer.json must load and round-trip every byte (invalid UTF-8 included); the vocabulary has
// exactly the size asked for (or fewer ids when the corpus runs out of pairs, reported).
#include "test.h"
#include "frugal.h"
#include "frugal_tools.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretok.h"
#include "formats/json.h"
#include "util.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define N_CHECK 150

static char *make_corpus(size_t *len, uint64_t seed) {
    static const char *words[] = {"the", "cat", "sat", "on", "mat", "and", "then", "there", "these", "other",
                                  "token", "tokens", "tokenizer", "merge", "merging", "byte", "pair", "encoding",
                                  "你好", "世界", "données", "naïve", "x = 42;", "for (i = 0; i < n; i++)", "3.14159",
                                  "\n", "  ", "!!", "aaaa", "abab", "\t"};
    size_t nw = sizeof words / sizeof *words, cap = 1 << 17, n = 0;
    char *s = malloc(cap);
    uint64_t x = seed;
    while (n + 64 < cap) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t r = x >> 33;
        // Zipf-ish: low indices more often
        size_t i = (size_t)((r % nw) * ((r >> 8) % nw) / nw);
        const char *w = words[i];
        size_t l = strlen(w);
        if (r & 0x100000) s[n++] = ' ';
        memcpy(s + n, w, l); n += l;
    }
    *len = n;
    return s;
}

// ---- brute force ----------------------------------------------------------------------------
typedef struct { int32_t *sym; int n; int64_t count; } bword;
typedef struct { char *s; size_t len; } bstr;
static bstr toks[4096]; static int ntok;
typedef struct { int32_t a, b; int64_t c; } bpair;

static int cmp_pair_ab(const void *x, const void *y) {
    const bpair *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

typedef struct { char **s; size_t *len; size_t n, cap; const char *text; } piece_list;
static int collect(void *ctx, size_t a, size_t b) {
    piece_list *p = ctx;
    if (p->n == p->cap) { p->cap = p->cap ? 2 * p->cap : 1024; p->s = realloc(p->s, p->cap * sizeof *p->s); p->len = realloc(p->len, p->cap * sizeof *p->len); }
    p->s[p->n] = (char *)p->text + a; p->len[p->n] = b - a; p->n++;
    return 0;
}

static int brute_merges(const char *text, size_t len, int n_merges, int32_t (*out)[2]) {
    fg_pretok *pre = fg_pretok_new();
    CHECK(fg_pretok_add_named(pre, "deepseek-v3") == 0);
    piece_list pl = {0};
    pl.text = text;
    CHECK(fg_pretok_run(pre, text, len, collect, &pl) == 0);
    fg_pretok_free(pre);
    // unique words with counts (quadratic-free: a simple chained table)
    bword *w = calloc(pl.n, sizeof *w); int nw = 0;
    char **wtext = calloc(pl.n, sizeof *wtext); size_t *wlen = calloc(pl.n, sizeof *wlen);
    for (size_t i = 0; i < pl.n; i++) {
        int found = -1;
        for (int k = 0; k < nw; k++) if (wlen[k] == pl.len[i] && !memcmp(wtext[k], pl.s[i], pl.len[i])) { found = k; break; }
        if (found >= 0) { w[found].count++; continue; }
        wtext[nw] = pl.s[i]; wlen[nw] = pl.len[i];
        w[nw].n = (int)pl.len[i]; w[nw].count = 1; w[nw].sym = malloc(pl.len[i] * sizeof(int32_t));
        for (size_t k = 0; k < pl.len[i]; k++) w[nw].sym[k] = (unsigned char)pl.s[i][k];
        nw++;
    }
    for (int b = 0; b < 256; b++) { toks[b].s = malloc(1); toks[b].s[0] = (char)b; toks[b].len = 1; }
    ntok = 256;
    int done = 0;
    bpair *pairs = malloc(len * sizeof *pairs);
    for (; done < n_merges; done++) {
        size_t np = 0;
        for (int k = 0; k < nw; k++)
            for (int i = 0; i + 1 < w[k].n; i++) pairs[np++] = (bpair){w[k].sym[i], w[k].sym[i + 1], w[k].count};
        if (!np) break;
        qsort(pairs, np, sizeof *pairs, cmp_pair_ab);
        bpair best = {0, 0, 0};
        for (size_t i = 0; i < np;) {
            size_t j = i; int64_t c = 0;
            while (j < np && pairs[j].a == pairs[i].a && pairs[j].b == pairs[i].b) c += pairs[j++].c;
            if (c > best.c) best = (bpair){pairs[i].a, pairs[i].b, c}; // ascending (a, b): first max wins
            i = j;
        }
        if (best.c < 2) break;
        size_t l = toks[best.a].len + toks[best.b].len;
        char *s = malloc(l);
        memcpy(s, toks[best.a].s, toks[best.a].len); memcpy(s + toks[best.a].len, toks[best.b].s, toks[best.b].len);
        int nid = -1;
        for (int k = 0; k < ntok; k++) if (toks[k].len == l && !memcmp(toks[k].s, s, l)) nid = k;
        if (nid < 0) { toks[ntok].s = s; toks[ntok].len = l; nid = ntok++; } else free(s);
        out[done][0] = best.a; out[done][1] = best.b;
        for (int k = 0; k < nw; k++) {
            int o = 0;
            for (int i = 0; i < w[k].n; i++) {
                if (i + 1 < w[k].n && w[k].sym[i] == best.a && w[k].sym[i + 1] == best.b) { w[k].sym[o++] = nid; i++; }
                else w[k].sym[o++] = w[k].sym[i];
            }
            w[k].n = o;
        }
    }
    for (int k = 0; k < nw; k++) free(w[k].sym);
    free(w); free(wtext); free(wlen); free(pairs); free(pl.s); free(pl.len);
    return done;
}

// Byte-level spelling back to bytes.
static size_t unspell(const char *s, size_t n, char *out) {
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        unsigned cp = (unsigned char)s[i];
        if (cp >= 0x80) { cp = ((cp & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F); i += 2; } else i++;
        int b;
        for (b = 0; b < 256; b++) if (fg_byte_char_tab[b] == cp) break;
        out[m++] = (char)b;
    }
    return m;
}

static void test_against_brute_force(void) {
    size_t len;
    char *text = make_corpus(&len, 1);
    int32_t (*ref)[2] = malloc(N_CHECK * sizeof *ref);
    int nref = brute_merges(text, len, N_CHECK, ref);
    CHECK(nref == N_CHECK);

    fg_bpe_train_opts o;
    fg_bpe_train_opts_default(&o);
    o.vocab_size = 256 + N_CHECK + 6;
    fg_bpe_trainer *t = fg_bpe_trainer_new(&o);
    CHECK(t && fg_bpe_trainer_feed(t, text, len) == 0 && fg_bpe_trainer_train(t) == 0);
    char path[] = "/tmp/fg_tok_train_XXXXXX";
    int fd = mkstemp(path); close(fd);
    CHECK(fg_bpe_trainer_write(t, path) == 0);
    CHECK(fg_bpe_trainer_stats(t)->merges == N_CHECK);
    fg_bpe_trainer_free(t);

    size_t flen;
    char *file = fg_read_file(path, &flen);
    fg_json *root = fg_json_parse(file, flen, path);
    CHECK(root);
    const fg_json *merges = fg_json_get(fg_json_get(root, "model"), "merges");
    CHECK(merges && merges->n == N_CHECK);
    fg_byte_chars_init();
    int i = 0, agree = 0;
    for (const fg_json *m = merges ? merges->child : NULL; m && i < nref; m = m->next, i++) {
        const char *sp = memchr(m->str, ' ', m->len);
        char a[512], b[512];
        size_t la = unspell(m->str, (size_t)(sp - m->str), a), lb = unspell(sp + 1, m->len - (size_t)(sp + 1 - m->str), b);
        int ok = la == toks[ref[i][0]].len && !memcmp(a, toks[ref[i][0]].s, la) && lb == toks[ref[i][1]].len &&
                 !memcmp(b, toks[ref[i][1]].s, lb);
        CHECK_MSG(ok, "merge %d: trainer \"%.*s\", brute force \"%.*s\" + \"%.*s\"", i, (int)m->len, m->str,
                  (int)toks[ref[i][0]].len, toks[ref[i][0]].s, (int)toks[ref[i][1]].len, toks[ref[i][1]].s);
        agree += ok;
    }
    printf("merges agreeing with brute force: %d of %d\n", agree, nref);
    fg_json_free(root); free(file);

    // load it back: exact vocabulary size, specials, round trip of held-out text and raw bytes
    fg_tokenizer *tk = fg_tokenizer_load(path);
    CHECK_MSG(tk, "%s", fg_last_error());
    if (tk) {
        CHECK(fg_tokenizer_vocab_size(tk) == o.vocab_size);
        CHECK(fg_tokenizer_token_id(tk, "<think>") >= 256 + N_CHECK);
        size_t hl;
        char *held = make_corpus(&hl, 99);
        hl = 20000;
        for (int k = 0; k < 256; k++) held[k * 37 % hl] = (char)k; // every byte value, invalid UTF-8 too
        memcpy(held + 100, "<think>", 7);                           // not special with parse_special 0
        size_t n = fg_tokenizer_encode(tk, held, hl, 0, NULL, 0);
        int32_t *ids = malloc(n * sizeof *ids);
        CHECK(fg_tokenizer_encode(tk, held, hl, 0, ids, n) == n);
        CHECK(n < hl / 2); // it compresses
        char *back = malloc(hl + 64); size_t bl = 0;
        for (size_t k = 0; k < n && bl <= hl; k++) bl += fg_tokenizer_decode(tk, ids[k], back + bl, hl + 64 - bl);
        CHECK(bl == hl && !memcmp(back, held, hl));
        int32_t sp;
        CHECK(fg_tokenizer_encode(tk, "<think>", 7, 1, &sp, 1) == 1 && sp == fg_tokenizer_token_id(tk, "<think>"));
        free(ids); free(back); free(held);
        fg_tokenizer_free(tk);
    }
    remove(path);
    for (int k = 0; k < ntok; k++) free(toks[k].s);
    free(ref); free(text);
}

static void test_small_corpus_and_bad_input(void) {
    // fewer possible merges than asked for: the vocabulary is smaller, and says so
    fg_bpe_train_opts o;
    fg_bpe_train_opts_default(&o);
    o.vocab_size = 1000;
    const char *sp[] = {"<s>", "</s>"};
    o.specials = sp; o.n_specials = 2;
    fg_bpe_trainer *t = fg_bpe_trainer_new(&o);
    char path[] = "/tmp/fg_tok_train_XXXXXX.jsonl";
    int fd = mkstemps(path, 6);
    const char *jl = "{\"text\": \"hello hello hello\"}\nnot json\n{\"txt\": 1}\n\n{\"text\": 5}\n{\"text\": \"hello world\"}\n";
    CHECK(write(fd, jl, strlen(jl)) == (ssize_t)strlen(jl));
    close(fd);
    CHECK(t && fg_bpe_trainer_add_file(t, path) == 0);
    const fg_bpe_train_stats *st = fg_bpe_trainer_stats(t);
    CHECK(st->docs == 2 && st->bad_lines == 3);
    CHECK(strstr(st->bad_line_msg[0], ":2: not valid JSON") && strstr(st->bad_line_msg[1], ":3: no \"text\"") &&
          strstr(st->bad_line_msg[2], ":5: \"text\" is not a string"));
    CHECK(fg_bpe_trainer_train(t) == 0);
    // "hello" x2 and " hello" x2 reach min_frequency 2 (4 merges for hello, 1 for " hello"); " world" x1 does not
    CHECK_MSG(st->vocab_size == 256 + st->merges + 2 && st->merges == 5, "%d merges", st->merges);
    char out[] = "/tmp/fg_tok_train_XXXXXX";
    fd = mkstemp(out); close(fd);
    CHECK(fg_bpe_trainer_write(t, out) == 0);
    fg_tokenizer *tk = fg_tokenizer_load(out);
    CHECK_MSG(tk && fg_tokenizer_vocab_size(tk) == st->vocab_size, "%s", fg_last_error());
    CHECK(tk && fg_tokenizer_token_id(tk, "hello") >= 256);
    fg_tokenizer_free(tk);
    fg_bpe_trainer_free(t);
    remove(path); remove(out);

    // bad options
    o.vocab_size = 200;
    CHECK(!fg_bpe_trainer_new(&o) && strstr(fg_last_error(), "vocab_size 200"));
    o.vocab_size = 300;
    const char *dup[] = {"<s>", "<s>"};
    o.specials = dup;
    CHECK(!fg_bpe_trainer_new(&o) && strstr(fg_last_error(), "twice"));
    fg_bpe_train_opts_default(&o);
    t = fg_bpe_trainer_new(&o);
    CHECK(t && fg_bpe_trainer_add_file(t, "/nonexistent/x.txt") == -1 && strstr(fg_last_error(), "/nonexistent/x.txt"));
    fg_bpe_trainer_free(t);
}

static void test_pruning(void) {
    // more distinct pieces than the table allows: it prunes and still trains
    fg_bpe_train_opts o;
    fg_bpe_train_opts_default(&o);
    o.vocab_size = 400; o.max_words = 1024;
    fg_bpe_trainer *t = fg_bpe_trainer_new(&o);
    char buf[64];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(buf, sizeof buf, " w%c%c%c the", 'a' + i % 26, 'a' + i / 26 % 26, 'a' + i / 676 % 26);
        CHECK(fg_bpe_trainer_feed(t, buf, (size_t)n) == 0);
    }
    const fg_bpe_train_stats *st = fg_bpe_trainer_stats(t);
    CHECK(st->prunes > 0 && st->pruned_pieces > 0);
    CHECK(fg_bpe_trainer_train(t) == 0 && st->distinct_pieces <= 1024);
    fg_bpe_trainer_free(t);
}

int main(void) {
    test_against_brute_force();
    test_small_corpus_and_bad_input();
    test_pruning();
    return TEST_DONE();
}
