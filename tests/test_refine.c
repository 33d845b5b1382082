// test_refine.c: the data refinery (src/data/refine.c): each quality rule on a crafted document,
// exact duplicates, bad JSONL lines with line numbers, and a planted near-duplicate benchmark:
// base documents of random words, copies edited word by word until their exact 5-word-shingle
// Jaccard (computed here with sorted sets, independent of MinHash) falls in [0.85, 0.95], and
// unrelated documents. Recall at threshold 0.8 must be >= 0.9; precision is printed and must be
// >= 0.95.
#include "test.h"
#include "frugal.h"
#include "frugal_tools.h"
#include "data/refine.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 12345;
static uint32_t rnd(void) { rng = rng * 6364136223846793005ull + 1442695040888963407ull; return (uint32_t)(rng >> 33); }

static char vocab[5000][12];
static void make_vocab(void) {
    for (int i = 0; i < 5000; i++) {
        int n = 3 + (int)(rnd() % 7);
        for (int k = 0; k < n; k++) vocab[i][k] = (char)('a' + rnd() % 26);
        vocab[i][n] = 0;
    }
}

static const char *LOREM = "The refinery keeps documents that read like ordinary prose, with words, sentences and "
                           "a little punctuation, and drops the rest by rules that are easy to state.";

static void test_rules(void) {
    fg_refine_opts o;
    fg_refine_opts_default(&o);
    fg_refine *r = fg_refine_new(&o, NULL);
    CHECK(r);
    char big[4096];
    // one crafted document per rule, then a good one, an exact duplicate (case and spacing differ)
    const char *docs[16]; size_t lens[16]; int expect[16], n = 0;
    docs[n] = "ok \xff\xfe text that is long enough to pass the length rule easily, yes"; expect[n++] = FG_REFINE_INVALID_UTF8;
    docs[n] = "bell\x07\x07\x07 text that is long enough to pass the length rule easily, yes"; expect[n++] = FG_REFINE_CONTROL;
    docs[n] = "too short"; expect[n++] = FG_REFINE_TOO_SHORT;
    docs[n] = "#### $$$$ %%%% &&&& **** (((( )))) ++++ ==== ~~~~ |||| <<<< >>>> @@@@ !!!! words"; expect[n++] = FG_REFINE_SYMBOLS;
    docs[n] = "call 555 1234 5678 9012 3456 7890 1234 5678 9012 3456 7890 1234 5678 now"; expect[n++] = FG_REFINE_DIGITS;
    docs[n] = "Buy now and save\nBuy now and save\nBuy now and save\nBuy now and save\nreal content line"; expect[n++] = FG_REFINE_REPEATED_LINES;
    docs[n] = "the same few words again the same few words again the same few words again the same few words again"; expect[n++] = FG_REFINE_REPEATED_NGRAMS;
    docs[n] = LOREM; expect[n++] = -1;
    docs[n] = "the REFINERY keeps documents that read like ordinary prose,   with words, sentences and "
              "a little punctuation, and drops the rest by rules that are easy to state.\n"; expect[n++] = FG_REFINE_EXACT_DUP;
    for (int i = 0; i < n; i++) lens[i] = strlen(docs[i]);
    for (int i = 0; i < n; i++) {
        fg_refine_stats before = *fg_refine_get_stats(r);
        CHECK(fg_refine_add_mem(r, docs[i], lens[i], "doc", 0) == 0);
        const fg_refine_stats *s = fg_refine_get_stats(r);
        if (expect[i] < 0) CHECK_MSG(s->docs_kept == before.docs_kept + 1, "doc %d should be kept", i);
        else CHECK_MSG(s->removed[expect[i]] == before.removed[expect[i]] + 1 && s->removed_bytes[expect[i]] == before.removed_bytes[expect[i]] + lens[i],
                       "doc %d should be removed by %s", i, fg_refine_rule_name(expect[i]));
    }
    // too long
    fg_refine_opts o2 = o;
    o2.max_chars = 100;
    fg_refine *r2 = fg_refine_new(&o2, NULL);
    snprintf(big, sizeof big, "%s %s", LOREM, LOREM);
    CHECK(fg_refine_add_mem(r2, big, strlen(big), "big", 0) == 0 && fg_refine_get_stats(r2)->removed[FG_REFINE_TOO_LONG] == 1);
    fg_refine_free(r2);
    // examples name the source and the first document kept
    const char *ex = fg_refine_example(r, FG_REFINE_EXACT_DUP, 0);
    CHECK(ex && strstr(ex, "(same as doc)"));
    // bad JSONL lines: counted with line numbers, the rest still processed
    const char *jl = "{\"text\": \"a fine line of prose that is long enough for the length rule to pass\"}\n"
                     "{broken\n[1, 2]\n{\"txt\": \"x\"}\n\n{\"text\": 3}\n"
                     "{\"text\": \"another fine line of prose, also long enough for the length rule to pass\"}";
    CHECK(fg_refine_add_mem(r, jl, strlen(jl), "in.jsonl", 1) == 0);
    const fg_refine_stats *s = fg_refine_get_stats(r);
    CHECK(s->bad_lines == 4);
    CHECK(fg_refine_bad_line(r, 0) && strstr(fg_refine_bad_line(r, 0), "in.jsonl:2: not valid JSON"));
    CHECK(fg_refine_bad_line(r, 1) && strstr(fg_refine_bad_line(r, 1), "in.jsonl:3: not a JSON object"));
    CHECK(fg_refine_bad_line(r, 2) && strstr(fg_refine_bad_line(r, 2), "in.jsonl:4: missing field"));
    CHECK(fg_refine_bad_line(r, 3) && strstr(fg_refine_bad_line(r, 3), "in.jsonl:6: field \"text\" is not a string"));
    CHECK(s->docs_kept == 3);
    // bad options
    o2 = o; o2.jaccard = 1.5;
    CHECK(!fg_refine_new(&o2, NULL) && strstr(fg_last_error(), "jaccard"));
    o2 = o; o2.ppl_model = "/nonexistent.fgck";
    CHECK(!fg_refine_new(&o2, NULL) && strstr(fg_last_error(), "/nonexistent.fgck"));
    fg_refine_free(r);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}
// Exact Jaccard of two shingle sets.
static double jaccard(const char *a, const char *b) {
    uint64_t *x = NULL, *y = NULL; size_t cx = 0, cy = 0;
    long nx = fg_refine_shingles(a, strlen(a), &x, &cx), ny = fg_refine_shingles(b, strlen(b), &y, &cy);
    qsort(x, (size_t)nx, 8, cmp_u64); qsort(y, (size_t)ny, 8, cmp_u64);
    long ux = 0, uy = 0;
    for (long i = 0; i < nx; i++) if (!i || x[i] != x[i - 1]) x[ux++] = x[i];
    for (long i = 0; i < ny; i++) if (!i || y[i] != y[i - 1]) y[uy++] = y[i];
    long i = 0, j = 0, inter = 0;
    while (i < ux && j < uy) { if (x[i] == y[j]) { inter++; i++; j++; } else if (x[i] < y[j]) i++; else j++; }
    free(x); free(y);
    return (double)inter / (double)(ux + uy - inter);
}

#define WORDS 300
static void words_to_text(const int *w, int n, char *out) {
    size_t m = 0;
    for (int i = 0; i < n; i++) { size_t l = strlen(vocab[w[i]]); if (i) out[m++] = ' '; memcpy(out + m, vocab[w[i]], l); m += l; }
    out[m] = 0;
}

static void test_planted(void) {
    make_vocab();
    enum { BASES = 300, UNRELATED = 300 };
    fg_refine_opts o;
    fg_refine_opts_default(&o);
    fg_refine *r = fg_refine_new(&o, NULL);
    static char text[WORDS * 13];
    int w[WORDS], e[WORDS];
    int planted = 0, caught = 0;
    uint64_t prev_near = 0;
    double jsum = 0;
    for (int b = 0; b < BASES; b++) {
        for (int i = 0; i < WORDS; i++) w[i] = (int)(rnd() % 5000);
        words_to_text(w, WORDS, text);
        char base[WORDS * 13];
        strcpy(base, text);
        CHECK(fg_refine_add_mem(r, base, strlen(base), "base", 0) == 0);
        prev_near = fg_refine_get_stats(r)->removed[FG_REFINE_NEAR_DUP];
        // plant a near duplicate: edit random words until the exact Jaccard drops into the target
        double target = 0.85 + 0.1 * (rnd() % 1000) / 1000.0, j = 1;
        memcpy(e, w, sizeof w);
        while (j > target) {
            e[rnd() % WORDS] = (int)(rnd() % 5000);
            words_to_text(e, WORDS, text);
            j = jaccard(base, text);
        }
        if (j < 0.8) continue; // overshot below the threshold: not a planted duplicate
        planted++; jsum += j;
        CHECK(fg_refine_add_mem(r, text, strlen(text), "dup", 0) == 0);
        caught += fg_refine_get_stats(r)->removed[FG_REFINE_NEAR_DUP] > prev_near;
    }
    uint64_t near_before = fg_refine_get_stats(r)->removed[FG_REFINE_NEAR_DUP];
    for (int u = 0; u < UNRELATED; u++) {
        for (int i = 0; i < WORDS; i++) w[i] = (int)(rnd() % 5000);
        words_to_text(w, WORDS, text);
        CHECK(fg_refine_add_mem(r, text, strlen(text), "unrelated", 0) == 0);
    }
    const fg_refine_stats *s = fg_refine_get_stats(r);
    uint64_t false_pos = s->removed[FG_REFINE_NEAR_DUP] - near_before; // unrelated docs flagged
    // base documents flagged against each other would also be false positives
    uint64_t flagged = s->removed[FG_REFINE_NEAR_DUP];
    double recall = (double)caught / planted;
    double precision = flagged ? (double)caught / (double)flagged : 1;
    printf("planted near-duplicates: %d (mean Jaccard %.3f), recall %.3f, precision %.3f (%llu false positives among "
           "%d unrelated), LSH %d x %d, %llu candidates\n", planted, jsum / planted, recall, precision,
           (unsigned long long)false_pos, UNRELATED, s->bands, s->rows, (unsigned long long)s->candidates);
    CHECK(planted >= BASES * 9 / 10);
    CHECK(recall >= 0.9);
    CHECK(precision >= 0.95);
    fg_refine_free(r);
}

// Perplexity rule: a freshly initialised tiny model predicts bytes almost uniformly, so its
// perplexity is close to the vocabulary size (the oracle); thresholds on either side keep or drop.
static void test_perplexity(void) {
    fg_config c;
    CHECK(fg_config_preset(&c, "tiny") == 0);
    fg_model *m = fg_model_create(&c);
    CHECK(m);
    if (!m) return;
    fg_model_init_weights(m, 7);
    char path[] = "/tmp/fg_refine_ppl_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_MSG(fg_ckpt_save(path, m, NULL, NULL) == 0, "%s", fg_last_error());
    fg_model_free(m);
    fg_refine_opts o;
    fg_refine_opts_default(&o);
    o.ppl_model = path; o.ppl_tokens = 64;
    for (int pass = 0; pass < 2; pass++) {
        o.max_perplexity = pass ? 1e6 : 10;
        fg_refine *r = fg_refine_new(&o, NULL);
        CHECK_MSG(r, "%s", fg_last_error());
        if (!r) break;
        CHECK(fg_refine_add_mem(r, LOREM, strlen(LOREM), "doc", 0) == 0);
        const fg_refine_stats *s = fg_refine_get_stats(r);
        if (pass) CHECK(s->docs_kept == 1);
        else {
            CHECK(s->removed[FG_REFINE_PERPLEXITY] == 1);
            const char *ex = fg_refine_example(r, FG_REFINE_PERPLEXITY, 0), *p = ex ? strstr(ex, "(perplexity ") : NULL;
            double ppl = p ? atof(p + 12) : 0;
            printf("perplexity of a fresh tiny model on prose: %.1f (vocab %d)\n", ppl, c.vocab_size);
            CHECK(fabs(log(ppl) - log((double)c.vocab_size)) < 0.2);
        }
        fg_refine_free(r);
    }
    remove(path);
}

int main(void) {
    test_perplexity();
    test_rules();
    test_planted();
    return TEST_DONE();
}
