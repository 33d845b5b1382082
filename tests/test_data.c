// test_data.c: UTF-8 validation, dataset loading from temp files (text and JSONL), every
// validation error, the train/val split (disjoint, stable under file order), the batch sampler
// (determinism, resume from saved rng state, padding) and the evaluation windows.
#include "test.h"
#include "data/bytetok.h"
#include "data/data.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

// ---- temp files ----------------------------------------------------------------------------
static char tmp_dir[64];
static char tmp_paths[64][128];
static int n_tmp;

static const char *write_file(const char *name, const char *bytes, size_t len) {
    char *p = tmp_paths[n_tmp++];
    snprintf(p, 128, "%s/%s", tmp_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(2); }
    fwrite(bytes, 1, len, f);
    fclose(f);
    return p;
}
static const char *write_str(const char *name, const char *s) { return write_file(name, s, strlen(s)); }

static void cleanup(void) {
    for (int i = 0; i < n_tmp; i++) unlink(tmp_paths[i]);
    rmdir(tmp_dir);
}

// Loading paths must fail with a message containing every needle; the dataset must stay empty.
static void expect_error(const char *const *paths, int n, double vf, const char *n1, const char *n2) {
    fg_dataset ds;
    int rc = fg_dataset_load(&ds, paths, n, vf);
    const char *msg = fg_last_error();
    CHECK_MSG(rc == -1, "load of '%s' should fail", n > 0 ? paths[0] : "(none)");
    CHECK(ds.train.tokens == NULL && ds.val.tokens == NULL && ds.train.n_tokens == 0);
    CHECK_MSG(strstr(msg, n1) != NULL, "'%s' not in: %s", n1, msg);
    if (n2) CHECK_MSG(strstr(msg, n2) != NULL, "'%s' not in: %s", n2, msg);
    CHECK_MSG(strstr(msg, "hint:") != NULL, "no hint in: %s", msg);
    CHECK_MSG(strchr(msg, '\n') == NULL, "message is not one line: %s", msg);
    fg_dataset_free(&ds);
}

// ---- UTF-8 ---------------------------------------------------------------------------------
static void test_utf8(void) {
    struct { const char *s; int ok; size_t off; } cases[] = {
        { "", 1, 0 },
        { "plain ascii\n\t~\x7f", 1, 0 },
        { "\xc2\x80", 1, 0 },                  // U+0080, smallest 2-byte
        { "caf\xc3\xa9", 1, 0 },
        { "\xdf\xbf", 1, 0 },                  // U+07FF
        { "\xe0\xa0\x80", 1, 0 },              // U+0800, smallest 3-byte
        { "\xe2\x82\xac", 1, 0 },              // euro sign
        { "\xed\x9f\xbf", 1, 0 },              // U+D7FF, just below the surrogates
        { "\xee\x80\x80", 1, 0 },              // U+E000, just above
        { "\xef\xbf\xbf", 1, 0 },              // U+FFFF
        { "\xf0\x90\x80\x80", 1, 0 },          // U+10000, smallest 4-byte
        { "\xf0\x9f\x98\x80", 1, 0 },          // emoji
        { "\xf4\x8f\xbf\xbf", 1, 0 },          // U+10FFFF, the maximum
        { "\xc0\x80", 0, 0 },                  // overlong NUL
        { "\xc1\xbf", 0, 0 },                  // overlong
        { "\xe0\x80\x80", 0, 0 },              // overlong 3-byte
        { "\xe0\x9f\xbf", 0, 0 },              // overlong 3-byte (U+07FF)
        { "\xf0\x8f\xbf\xbf", 0, 0 },          // overlong 4-byte (U+FFFF)
        { "\xed\xa0\x80", 0, 0 },              // surrogate U+D800
        { "\xed\xbf\xbf", 0, 0 },              // surrogate U+DFFF
        { "\xf4\x90\x80\x80", 0, 0 },          // U+110000
        { "\xf5\x80\x80\x80", 0, 0 },          // lead beyond F4
        { "\xff", 0, 0 },
        { "\xfe", 0, 0 },
        { "\x80", 0, 0 },                      // stray continuation
        { "ab\xbf", 0, 2 },
        { "a\xc3", 0, 1 },                     // truncated at end
        { "a\xe2\x82", 0, 1 },
        { "\xf0\x9f\x98", 0, 0 },
        { "\xc3" "a", 0, 0 },                  // continuation missing
        { "\xe2\x82" "a", 0, 0 },
        { "\xf0\x9f\x98" "a", 0, 0 },
        { "ok\xc3\xa9\xc3\xc3\xa9", 0, 4 },    // first bad sequence, not the last
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t off = 12345;
        int ok = fg_utf8_validate(cases[i].s, strlen(cases[i].s), &off);
        CHECK_MSG(ok == cases[i].ok, "case %zu", i);
        if (!cases[i].ok) CHECK_MSG(off == cases[i].off, "case %zu: offset %zu, want %zu", i, off, cases[i].off);
        CHECK(fg_utf8_validate(cases[i].s, strlen(cases[i].s), NULL) == cases[i].ok);
    }
    CHECK(fg_utf8_validate("a\0b", 3, NULL) == 1); // NUL is a valid code point
    // Exhaustive over two-byte inputs: valid exactly when ASCII pair or a 2-byte sequence C2..DF + 80..BF.
    for (int x = 0; x < 256; x++)
        for (int y = 0; y < 256; y++) {
            char s[2] = { (char)x, (char)y };
            int want = (x < 0x80 && y < 0x80) || (x >= 0xc2 && x <= 0xdf && y >= 0x80 && y <= 0xbf);
            CHECK(fg_utf8_validate(s, 2, NULL) == want);
        }
}

// ---- loading -------------------------------------------------------------------------------
static int tokens_equal(const fg_token_stream *s, const int32_t *want, size_t n) {
    return s->n_tokens == n && memcmp(s->tokens, want, n * sizeof *want) == 0;
}

// Appends BOS + text + EOS to out at *n.
static void push_doc(int32_t *out, size_t *n, const char *text) {
    out[(*n)++] = FG_TOK_BOS;
    for (const char *c = text; *c; c++) out[(*n)++] = (unsigned char)*c;
    out[(*n)++] = FG_TOK_EOS;
}

static void test_load(void) {
    const char *txt = write_str("a.txt", "hello\nworld\n");
    const char *jl = write_str("b.jsonl", "{\"text\": \"doc one\"}\n\n{\"id\": 3, \"text\": \"caf\\u00e9 <think>\"}\r\n"
                                          "  \t\n{\"text\": \"\"}\n{\"text\":\"x\"}");
    const char *bom = write_str("c.txt", "\xef\xbb\xbfhi");
    const char *paths[] = { txt, jl, bom };
    fg_dataset ds;
    CHECK(fg_dataset_load(&ds, paths, 3, 0.0) == 0);
    int32_t want[128];
    size_t n = 0;
    push_doc(want, &n, "hello\nworld\n");
    push_doc(want, &n, "doc one");
    push_doc(want, &n, "caf\xc3\xa9 <think>"); // specials in file text stay bytes
    push_doc(want, &n, "x");
    push_doc(want, &n, "hi");                  // BOM dropped
    CHECK(tokens_equal(&ds.train, want, n));
    CHECK(ds.train.n_docs == 5 && ds.train.n_bytes == 12 + 7 + 13 + 1 + 2);
    CHECK(ds.val.n_tokens == 0 && ds.val.n_docs == 0);
    fg_dataset_free(&ds);
    CHECK(ds.train.tokens == NULL);
    fg_dataset_free(&ds); // twice is harmless
}

static void test_errors(void) {
    char missing[128];
    snprintf(missing, sizeof missing, "%s/nope.txt", tmp_dir);
    const char *ok = write_str("ok.txt", "fine");
    const char *p1[] = { ok, missing };
    expect_error(p1, 2, 0.1, "nope.txt", "No such file");

    const char *empty = write_str("empty.txt", "");
    const char *p2[] = { empty };
    expect_error(p2, 1, 0.1, "empty.txt", "empty");

    const char *bad = write_str("bad.txt", "line one\nab\xc0\x80 more");
    const char *p3[] = { ok, bad };
    expect_error(p3, 2, 0.1, "bad.txt", "byte offset 11");
    expect_error(p3, 2, 0.1, "line 2, column 3", "c0 80");
    const char *bad_jl = write_str("bad_utf8.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"\xed\xa0\x80\"}\n");
    const char *p3b[] = { bad_jl };
    expect_error(p3b, 1, 0.1, "bad_utf8.jsonl", "byte offset 25");

    // Bad JSONL lines: the message names the file and the line (blank lines counted).
    const char *j_num = write_str("num.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": 5}\n");
    const char *j_arr = write_str("arr.jsonl", "{\"text\": \"a\"}\n[1, 2]\n");
    const char *j_miss = write_str("miss.jsonl", "\n{\"txt\": \"a\"}\n");
    const char *j_syn = write_str("syn.jsonl", "{\"text\": \"a\"}\n\n\n{\"text\": \n{\"text\": \"b\"}\n");
    const char *j_blank = write_str("blank.jsonl", "\n  \n\r\n");
    const char *j_sur = write_str("sur.jsonl", "{\"text\": \"\\ud800\"}\n");
    const char *j_str = write_str("str.jsonl", "\"text\"\n");
    const char *p4[] = { j_num }, *p5[] = { j_arr }, *p6[] = { j_miss }, *p7[] = { j_syn },
               *p8[] = { j_blank }, *p9[] = { j_sur }, *p10[] = { j_str };
    expect_error(p4, 1, 0.1, "num.jsonl' line 3", "not a string");
    expect_error(p5, 1, 0.1, "arr.jsonl' line 2", "JSON object");
    expect_error(p6, 1, 0.1, "miss.jsonl' line 2", "missing field \"text\"");
    expect_error(p7, 1, 0.1, "syn.jsonl' line 4", "not valid JSON");
    expect_error(p8, 1, 0.1, "blank.jsonl", "empty");
    expect_error(p9, 1, 0.1, "sur.jsonl' line 1", NULL); // lone surrogate: rejected by parser or by us
    expect_error(p10, 1, 0.1, "str.jsonl' line 1", "JSON object");

    // No data at all; bad arguments.
    const char *j_empty_text = write_str("et.jsonl", "{\"text\": \"\"}\n");
    const char *p11[] = { j_empty_text };
    expect_error(p11, 1, 0.1, "no data", NULL);
    expect_error(p1, 0, 0.1, "no data files", NULL);
    const char *p12[] = { ok };
    expect_error(p12, 1, 0.7, "val_fraction", "0.7");
    expect_error(p12, 1, -0.1, "val_fraction", NULL);
    expect_error(p12, 1, NAN, "val_fraction", NULL);
}

// ---- split ---------------------------------------------------------------------------------
#define N_SPLIT 300

// Walks a stream doc by doc (BOS ... EOS), recording side[id] = which for each "doc #id" seen.
// Returns the number of documents found.
static int scan_docs(const fg_token_stream *s, int which, int *side, int *count) {
    int found = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        if (s->tokens[i] != FG_TOK_BOS) continue;
        char buf[64];
        size_t k = 0;
        for (i++; i < s->n_tokens && s->tokens[i] != FG_TOK_EOS && k < 63; i++) buf[k++] = (char)s->tokens[i];
        buf[k] = 0;
        int id;
        if (sscanf(buf, "doc #%d", &id) == 1 && id >= 0 && id < N_SPLIT) { side[id] = which; count[id]++; }
        found++;
    }
    return found;
}

static void test_split(void) {
    // 300 distinct documents; written forwards into one file and backwards across two.
    static char fwd[N_SPLIT * 64], rev_a[N_SPLIT * 64], rev_b[N_SPLIT * 64];
    size_t nf = 0, na = 0, nb = 0;
    for (int i = 0; i < N_SPLIT; i++) nf += (size_t)sprintf(fwd + nf, "{\"text\": \"doc #%d: %d\"}\n", i, i * 7919);
    for (int i = N_SPLIT - 1; i >= 0; i--) {
        if (i % 2) na += (size_t)sprintf(rev_a + na, "{\"text\": \"doc #%d: %d\"}\n", i, i * 7919);
        else nb += (size_t)sprintf(rev_b + nb, "{\"text\": \"doc #%d: %d\"}\n", i, i * 7919);
    }
    const char *pf[] = { write_file("fwd.jsonl", fwd, nf) };
    const char *pr[] = { write_file("rev_b.jsonl", rev_b, nb), write_file("rev_a.jsonl", rev_a, na) };
    fg_dataset d1, d2;
    CHECK(fg_dataset_load(&d1, pf, 1, 0.1) == 0);
    CHECK(fg_dataset_load(&d2, pr, 2, 0.1) == 0);
    int side1[N_SPLIT], side2[N_SPLIT], count1[N_SPLIT] = { 0 }, count2[N_SPLIT] = { 0 };
    CHECK(scan_docs(&d1.train, 0, side1, count1) == (int)d1.train.n_docs);
    CHECK(scan_docs(&d1.val, 1, side1, count1) == (int)d1.val.n_docs);
    scan_docs(&d2.train, 0, side2, count2);
    scan_docs(&d2.val, 1, side2, count2);
    CHECK(d1.train.n_docs + d1.val.n_docs == N_SPLIT);
    CHECK_MSG(d1.val.n_docs >= 12 && d1.val.n_docs <= 55, "val docs %zu of %d at 0.1", d1.val.n_docs, N_SPLIT);
    for (int i = 0; i < N_SPLIT; i++) {
        CHECK_MSG(count1[i] == 1, "doc %d appears %d times", i, count1[i]); // disjoint and complete
        CHECK(count2[i] == 1);
        CHECK_MSG(side1[i] == side2[i], "doc %d changed side with file order", i);
    }
    fg_dataset_free(&d1);
    fg_dataset_free(&d2);

    // Duplicates land on the same side; val_fraction 0 keeps everything in train.
    const char *dup = write_str("dup.jsonl", "{\"text\": \"same\"}\n{\"text\": \"other\"}\n{\"text\": \"same\"}\n"
                                             "{\"text\": \"third\"}\n");
    const char *pd[] = { dup };
    for (int k = 0; k < 2; k++) {
        double vf = k ? 0.5 : 0.01;
        CHECK(fg_dataset_load(&d1, pd, 1, vf) == 0);
        CHECK(d1.train.n_docs >= 1 && d1.val.n_docs >= 1 && d1.train.n_docs + d1.val.n_docs == 4);
        int same_train = 0, same_val = 0;
        for (size_t i = 0; i + 4 < d1.train.n_tokens; i++) same_train += d1.train.tokens[i] == FG_TOK_BOS && d1.train.tokens[i + 1] == 's';
        for (size_t i = 0; i + 4 < d1.val.n_tokens; i++) same_val += d1.val.tokens[i] == FG_TOK_BOS && d1.val.tokens[i + 1] == 's';
        CHECK_MSG((same_train == 2 && same_val == 0) || (same_train == 0 && same_val == 2), "vf %g: %d/%d", vf, same_train, same_val);
        fg_dataset_free(&d1);
    }
    CHECK(fg_dataset_load(&d1, pd, 1, 0.0) == 0);
    CHECK(d1.train.n_docs == 4 && d1.val.n_docs == 0 && d1.val.n_tokens == 0);
    fg_dataset_free(&d1);
    // Two documents, tiny fraction: still one each.
    const char *two[] = { write_str("t1.txt", "first"), write_str("t2.txt", "second") };
    CHECK(fg_dataset_load(&d1, two, 2, 0.001) == 0);
    CHECK(d1.train.n_docs == 1 && d1.val.n_docs == 1);
    fg_dataset_free(&d1);

    // A single document: its tail becomes val, the two streams concatenate back to the document.
    static char text[1001];
    for (int i = 0; i < 1000; i++) text[i] = (char)('a' + i % 26);
    const char *ps[] = { write_file("single.txt", text, 1000) };
    CHECK(fg_dataset_load(&d1, ps, 1, 0.1) == 0);
    CHECK(d1.train.n_tokens + d1.val.n_tokens == 1002);
    CHECK_MSG(d1.val.n_tokens >= 95 && d1.val.n_tokens <= 105, "val tokens %zu", d1.val.n_tokens);
    CHECK(d1.train.tokens[0] == FG_TOK_BOS && d1.val.tokens[d1.val.n_tokens - 1] == FG_TOK_EOS);
    CHECK(memcmp(d1.train.tokens + 1, (int32_t[]){ 'a', 'b', 'c' }, 3 * sizeof(int32_t)) == 0);
    for (size_t i = 1; i < d1.train.n_tokens; i++) CHECK(d1.train.tokens[i] == text[i - 1]);
    for (size_t i = 0; i + 1 < d1.val.n_tokens; i++) CHECK(d1.val.tokens[i] == text[d1.train.n_tokens - 1 + i]);
    CHECK(d1.train.n_bytes + d1.val.n_bytes == 1000 && d1.train.n_docs == 1 && d1.val.n_docs == 1);
    fg_dataset_free(&d1);
    // Multi-byte text: the cut never lands inside a character.
    static char utf[1000];
    for (int i = 0; i < 500; i++) { utf[2 * i] = '\xc3'; utf[2 * i + 1] = '\xa9'; }
    const char *pu[] = { write_file("utf.txt", utf, 1000) };
    for (int k = 1; k <= 50; k++) {
        CHECK(fg_dataset_load(&d1, pu, 1, k / 100.0) == 0);
        CHECK_MSG(d1.val.tokens[0] == 0xc3, "vf %g: val starts with 0x%x", k / 100.0, d1.val.tokens[0]);
        CHECK(d1.train.n_bytes + d1.val.n_bytes == 1000 && d1.val.n_tokens >= 2);
        fg_dataset_free(&d1);
    }
}

// ---- sampler and windows -------------------------------------------------------------------
static void test_sampler(void) {
    enum { N = 1000, B = 4, T = 16 };
    static int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = i; // value = position, so windows are easy to check
    fg_token_stream s = { toks, N, 1, N - 2 };
    int32_t in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];

    fg_sampler a, b;
    fg_sampler_init(&a, &s, 7);
    fg_sampler_init(&b, &s, 7);
    for (int k = 0; k < 5; k++) {
        fg_sampler_next(&a, in1, tg1, B, T);
        fg_sampler_next(&b, in2, tg2, B, T);
        CHECK(memcmp(in1, in2, sizeof in1) == 0 && memcmp(tg1, tg2, sizeof tg1) == 0);
        for (int r = 0; r < B; r++) {
            int32_t start = in1[r * T];
            CHECK(start >= 0 && start <= N - T - 1);
            for (int t = 0; t < T; t++) CHECK(in1[r * T + t] == start + t && tg1[r * T + t] == start + t + 1);
        }
    }
    CHECK(a.batches_drawn == 5);
    fg_sampler_init(&b, &s, 8);
    fg_sampler_next(&b, in2, tg2, B, T);
    CHECK(memcmp(in1, in2, sizeof in1) != 0);

    // Resume: save the state, draw, restore into a fresh sampler, draw again.
    fg_rng saved = a.rng;
    uint64_t saved_n = a.batches_drawn;
    fg_sampler_next(&a, in1, tg1, B, T);
    fg_sampler_next(&a, in1 + 0, tg1 + 0, 1, T); // advance further with another shape
    fg_sampler c;
    fg_sampler_init(&c, &s, 999);
    c.rng = saved;
    c.batches_drawn = saved_n;
    fg_sampler_next(&c, in2, tg2, B, T);
    fg_sampler_init(&b, &s, 0);
    b.rng = saved;
    int32_t in3[B * T], tg3[B * T];
    fg_sampler_next(&b, in3, tg3, B, T);
    CHECK(memcmp(in2, in3, sizeof in2) == 0 && memcmp(tg2, tg3, sizeof tg2) == 0);
    CHECK(c.batches_drawn == saved_n + 1);

    // Every start in [0, N-T-1] is reachable, including both ends, on a short stream.
    fg_token_stream small = { toks, 40, 1, 38 };
    int seen[40] = { 0 };
    fg_sampler_init(&a, &small, 1);
    for (int k = 0; k < 1000; k++) {
        fg_sampler_next(&a, in1, tg1, B, 8);
        for (int r = 0; r < B; r++) seen[in1[r * 8]]++;
    }
    for (int st = 0; st < 40; st++) CHECK_MSG((st <= 40 - 8 - 1) == (seen[st] > 0), "start %d seen %d", st, seen[st]);

    // Shorter than T+1: the whole stream, padded. Exactly T+1: always start 0.
    fg_token_stream tiny = { toks, 5, 1, 3 };
    fg_sampler_init(&a, &tiny, 3);
    fg_sampler_next(&a, in1, tg1, 2, 8);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 8; t++) {
            CHECK(in1[r * 8 + t] == (t < 5 ? t : FG_TOK_PAD));
            CHECK(tg1[r * 8 + t] == (t < 4 ? t + 1 : -1));
        }
    fg_token_stream exact = { toks, T + 1, 1, T - 1 };
    fg_sampler_init(&a, &exact, 3);
    fg_sampler_next(&a, in1, tg1, B, T);
    for (int r = 0; r < B; r++) CHECK(in1[r * T] == 0 && tg1[r * T + T - 1] == T);
}

static void test_windows(void) {
    enum { N = 1000, B = 4, T = 16 };
    static int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = i;
    fg_token_stream s = { toks, N, 1, N - 2 };
    size_t nw = fg_stream_n_windows(&s, T);
    CHECK(nw == (N - 1) / T);
    int32_t in[B * T], tg[B * T], in2[B * T], tg2[B * T];
    int covered[(N - 1) / T] = { 0 };
    size_t n_batches = (nw + B - 1) / B;
    for (size_t i = 0; i < n_batches; i++) {
        fg_stream_window(&s, i, in, tg, B, T);
        fg_stream_window(&s, i, in2, tg2, B, T);
        CHECK(memcmp(in, in2, sizeof in) == 0 && memcmp(tg, tg2, sizeof tg) == 0); // deterministic
        for (int r = 0; r < B; r++) {
            size_t w = (i * B + (size_t)r) % nw;
            CHECK(in[r * T] == (int32_t)(w * T));
            for (int t = 0; t < T; t++) CHECK(in[r * T + t] == (int32_t)(w * T) + t && tg[r * T + t] == in[r * T + t] + 1);
            if (i * B + (size_t)r < nw) covered[w]++;
        }
    }
    for (size_t w = 0; w < nw; w++) CHECK(covered[w] == 1);
    // Wrapping: batch n_batches + 2 equals batch (n_batches + 2) * B mod nw onwards; a huge i is fine.
    fg_stream_window(&s, nw, in, tg, 1, T);
    CHECK(in[0] == 0);
    fg_stream_window(&s, (size_t)-1, in, tg, B, T);
    for (int r = 0; r < B; r++) CHECK(in[r * T] % T == 0 && (size_t)in[r * T] / T < nw);

    fg_token_stream tiny = { toks, 5, 1, 3 }, none = { NULL, 0, 0, 0 };
    CHECK(fg_stream_n_windows(&tiny, T) == 1 && fg_stream_n_windows(&none, T) == 0);
    fg_stream_window(&tiny, 3, in, tg, 2, T);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++) CHECK(in[r * T + t] == (t < 5 ? t : FG_TOK_PAD) && tg[r * T + t] == (t < 4 ? t + 1 : -1));
    fg_stream_window(&none, 0, in, tg, B, T);
    for (int k = 0; k < B * T; k++) CHECK(in[k] == FG_TOK_PAD && tg[k] == -1);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/fg_test_data_XXXXXX");
    if (!mkdtemp(tmp_dir)) SKIP("cannot create a temp directory under /tmp");
    test_utf8();
    test_load();
    test_errors();
    test_split();
    test_sampler();
    test_windows();
    cleanup();
    return TEST_DONE();
}
