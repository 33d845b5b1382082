// test_countdown.c: the Countdown task (src/data/countdown.c). Oracles independent of the code
// under test: hand-written expressions with values worked out by hand; each rendered trace
// re-played step by step here (own sscanf parse, own arithmetic, numbers consumed as a multiset);
// and tests/ref/countdown_ref.py, which judges a dump of expressions and problems with Python's
// own parser, fractions and a subset DP (skipped, with a SKIP line, without /usr/bin/python3).
// `test_countdown --dump PATH` only writes that dump.
#include "test.h"
#include "data/bytetok.h"
#include "data/countdown.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static fg_countdown mk(int target, int n, const int *nums) {
    fg_countdown p = {.n = n, .target = target};
    for (int i = 0; i < n && i < FG_CD_MAX_NUMS; i++) p.nums[i] = nums[i]; // n may be too many: kept, for tests
    return p;
}
#define PROB(target, ...) mk(target, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__})

static int expr_ok(const fg_countdown *p, const char *s) { return fg_countdown_check_expr(p, s, strlen(s)); }
static int syntax_ok(const char *s) { return fg_countdown_parse(NULL, s, strlen(s), NULL); }

// Decodes ids to text (specials by name).
static int ids_text(const int32_t *ids, int n, char *buf, size_t cap) {
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        char piece[FG_BYTETOK_MAX_PIECE];
        size_t m = fg_bytetok_decode(ids[i], piece);
        if (k + m + 1 > cap) break;
        memcpy(buf + k, piece, m);
        k += m;
    }
    buf[k] = 0;
    return (int)k;
}

static void test_verifier(void) {
    fg_countdown a = PROB(52, 25, 7, 3, 2);
    CHECK(expr_ok(&a, "(25-7)*3-2"));
    CHECK(expr_ok(&a, "3*(25-7)-2"));
    CHECK(expr_ok(&a, " ( 25 - 7 ) * 3 - 2 "));        // spaces between tokens
    CHECK(expr_ok(&a, "((((25-7))*3)-2)"));             // redundant parentheses
    CHECK(!expr_ok(&a, "(25-7)*3+2"));                  // 56
    CHECK(!expr_ok(&a, "25-7*3-2"));                    // 2: precedence
    CHECK(!expr_ok(&a, "(25-7*3-2"));                   // unbalanced
    CHECK(!expr_ok(&a, "25-7)*3-2"));
    CHECK(!expr_ok(&a, "((25-7)*3-2"));
    CHECK(!expr_ok(&a, "(25-7)*3-2)"));
    CHECK(!expr_ok(&a, "(25-7)*3-2abc"));               // trailing garbage
    CHECK(!expr_ok(&a, "(25-7)x3-2"));                  // 'x' is not an operator
    CHECK(!expr_ok(&a, "(25-7)*3-2="));
    CHECK(!expr_ok(&a, ""));
    CHECK(!fg_countdown_check_expr(&a, NULL, 0));
    CHECK(!expr_ok(&a, "(25 - 7) * 3 - 2 - 0"));        // an extra literal
    CHECK(!expr_ok(&a, "(2 5-7)*3-2"));                 // a space inside a number
    CHECK(!fg_countdown_check_expr(&a, "(25-7)*3-2\0", 11)); // a NUL byte is garbage too
    CHECK(fg_countdown_check_expr(&a, "(25-7)*3-2+9", 10));  // only len bytes are read

    fg_countdown b = PROB(13, 2, 3, 7);
    CHECK(expr_ok(&b, "2*3+7") && expr_ok(&b, "7+3*2"));
    CHECK(!expr_ok(&b, "3+3+7"));                       // 3 twice, 2 missing
    CHECK(!expr_ok(&b, "3*2+7+2-2"));                   // 2 three times
    fg_countdown c = PROB(20, 4, 5, 6, 1);
    CHECK(expr_ok(&c, "6*4-5+1"));
    CHECK(!expr_ok(&c, "4*5"));                         // 6 and 1 missing
    CHECK(!expr_ok(&c, "4*5*1"));                       // 6 missing
    fg_countdown d = PROB(14, 7, 2, 4);
    CHECK(expr_ok(&d, "7*4/2"));                        // 28/2 is exact
    CHECK(!expr_ok(&d, "7/2*4"));                       // 7/2 is not, though the real value is 14
    CHECK(!expr_ok(&d, "4/(2/7)"));
    fg_countdown e = PROB(3, 5, 5, 3);
    CHECK(expr_ok(&e, "5/5*3"));
    CHECK(!expr_ok(&e, "3+5/(5-5)"));                   // division by zero
    CHECK(!expr_ok(&e, "3/(5-5)*5"));
    CHECK(syntax_ok("3+5/(5-5)"));                      // ... which is a value error, not syntax
    fg_countdown f = PROB(5, 2, 3, 4);
    CHECK(expr_ok(&f, "2*4-3"));
    CHECK(!expr_ok(&f, "-3+2*4"));                      // no unary minus (documented)
    CHECK(!expr_ok(&f, "+2*4-3"));                      // no unary plus
    CHECK(!expr_ok(&f, "2*4+-3"));
    CHECK(!expr_ok(&f, "2*4-(-3)"));
    CHECK(!expr_ok(&f, "02*4-3"));                      // no leading zero
    CHECK(!expr_ok(&f, "2**4-3") && !expr_ok(&f, "2*4//3") && !expr_ok(&f, "2*4-3*"));
    fg_countdown g = PROB(10, 3, 7, 6);
    CHECK(expr_ok(&g, "6-(3-7)"));                      // a negative intermediate is fine
    CHECK(expr_ok(&g, "6-3+7"));

    // Bounds: nesting depth, literal length, overflow.
    char deep[400];
    int k = 0;
    for (int i = 0; i < FG_CD_MAX_DEPTH; i++) deep[k++] = '(';
    k += sprintf(deep + k, "2*4-3");
    for (int i = 0; i < FG_CD_MAX_DEPTH; i++) deep[k++] = ')';
    deep[k] = 0;
    CHECK(expr_ok(&f, deep));
    memmove(deep + 1, deep, (size_t)k + 1);
    deep[0] = '(';
    strcat(deep, ")");
    CHECK(!expr_ok(&f, deep) && !syntax_ok(deep));      // one level too deep
    CHECK(syntax_ok("999999999") && !syntax_ok("1000000000"));
    CHECK(syntax_ok("999999999*999999999*999999999")); // overflows int64: a value error
    CHECK(!expr_ok(&f, "999999999*999999999*999999999-2*4-3"));
    char many[20000];
    for (k = 0; k < 19998; k += 2) { many[k] = '1'; many[k + 1] = '+'; }
    many[k - 1] = 0;
    CHECK(syntax_ok(many) && !expr_ok(&f, many));       // long input: linear, no recursion
    for (k = 0; k < 19999; k++) many[k] = '(';
    many[k] = 0;
    CHECK(!syntax_ok(many));
    // Garbage bytes, every single byte, and the problem's own validity.
    CHECK(!syntax_ok("\xff\xfe") && !syntax_ok("()") && !syntax_ok(" ") && !syntax_ok("(1)(2)"));
    for (int ch = 0; ch < 256; ch++) {
        char s[2] = {(char)ch, 0};
        CHECK(fg_countdown_parse(NULL, s, 1, NULL) == (ch >= '0' && ch <= '9'));
    }
    fg_countdown bad = PROB(5, 2, 3, 4);
    bad.n = FG_CD_MAX_NUMS + 1;
    CHECK(!expr_ok(&bad, "2*4-3"));
}

// Replays the trace of a rendered example: each step "x op y=z" (x >= y) takes x and y from the
// pool (the numbers, then earlier results), z an integer in [1, 999] by this test's arithmetic;
// the last z is the target. Returns 1 if all holds.
static int trace_ok(const fg_countdown *p, const char *t, size_t len) {
    int pool[2 * FG_CD_MAX_NUMS], np = p->n, steps = 0, last = -1;
    memcpy(pool, p->nums, sizeof(int) * (size_t)p->n);
    char buf[256];
    if (len >= sizeof buf) return 0;
    memcpy(buf, t, len);
    buf[len] = 0;
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        int x, y, z, used = 0;
        char op;
        if (sscanf(tok, "%d%c%d=%d%n", &x, &op, &y, &z, &used) != 4 || tok[used] || x < y) return 0;
        long want = op == '+' ? (long)x + y : op == '-' ? (long)x - y : op == '*' ? (long)x * y
                  : op == '/' && y && x % y == 0 ? x / y : -1;
        if (want != z || z < 1 || z > 999) return 0;
        for (int v = 0; v < 2; v++) {
            int need = v ? y : x, i = 0;
            while (i < np && pool[i] != need) i++;
            if (i == np) return 0;
            pool[i] = pool[--np];
        }
        pool[np++] = z;
        last = z;
        steps++;
    }
    return steps == p->n - 1 && np == 1 && last == p->target;
}

static const int LEVEL_N[4] = {0, 3, 4, 5};

static void test_render_all_levels(void) {
    fg_rng r;
    fg_rng_seed(&r, 77);
    int bad = 0, total = 0;
    for (int level = 0; level <= FG_CD_LEVELS; level++)
        for (int split = 0; split < 2; split++)
            for (int k = 0; k < 3000; k++) {
                fg_countdown p;
                fg_countdown_sample(&r, level, split, &p);
                int ok = p.level >= 1 && p.level <= FG_CD_LEVELS && (level == 0 || p.level == level);
                ok = ok && p.n == LEVEL_N[p.level] && fg_countdown_is_heldout(&p) == split;
                int sum = 0;
                for (int i = 0; i < p.n; i++) { sum += p.nums[i]; ok = ok && p.nums[i] >= 1 && p.nums[i] <= 100; }
                ok = ok && p.target != sum && p.target >= (p.level == 3 ? 100 : 1);
                ok = ok && p.target <= (p.level == 1 ? 199 : p.level == 2 ? 499 : 999);
                int32_t ids[FG_CD_MAX_TOKENS + 8], pr[FG_CD_MAX_TOKENS];
                int pl = -1, n = fg_countdown_render(&p, ids, &pl);
                ok = ok && n > 0 && n <= FG_CD_MAX_TOKENS && n <= fg_countdown_max_len(p.level) && n <= fg_countdown_max_len(0);
                ok = ok && fg_countdown_prompt(&p, pr) == pl && !memcmp(pr, ids, sizeof(int32_t) * (size_t)pl);
                if (!ok) { if (bad++ < 5) fprintf(stderr, "bad problem or render (level %d)\n", level); continue; }
                // text layout: prompt as printed here, then <think> trace </think> answer <|eos|>
                char text[600], want[64];
                int tl = ids_text(ids, n, text, sizeof text), w = sprintf(want, "<|bos|>");
                for (int i = 0; i < p.n; i++) w += sprintf(want + w, i ? " %d" : "%d", p.nums[i]);
                sprintf(want + w, ":%d=<think>", p.target);
                const char *th = strstr(text, "</think>");
                size_t wl = strlen(want);
                ok = !strncmp(text, want, wl) && th && tl > 7 && !strcmp(text + tl - 7, "<|eos|>");
                ok = ok && trace_ok(&p, text + wl, (size_t)(th - text - (long)wl));
                ok = ok && fg_countdown_check_expr(&p, th + 8, strlen(th + 8) - 7);
                int fmt = -1;
                ok = ok && fg_countdown_check(&p, ids + pl, n - pl, &fmt) == 1 && fmt == 1;
                for (int i = 0; i < n && ok; i++) // specials only where they belong
                    ok = ids[i] >= 0 && ids[i] < FG_BYTE_VOCAB && ids[i] != FG_TOK_PAD && (ids[i] == FG_TOK_BOS) == (i == 0) &&
                         (ids[i] == FG_TOK_EOS) == (i == n - 1);
                if (!ok && bad++ < 5) fprintf(stderr, "wrong example: %s\n", text);
                total++;
            }
    CHECK_MSG(bad == 0, "%d of %d sampled problems wrong", bad, total);
    CHECK(fg_countdown_max_len(1) == 50 && fg_countdown_max_len(2) == 70 && fg_countdown_max_len(3) == 92);
    CHECK(fg_countdown_max_len(0) == 92 && fg_countdown_max_len(0) <= FG_CD_MAX_TOKENS);

    // The example of the docs; the canonical solution ignores the prompt order.
    fg_countdown a = PROB(52, 25, 7, 3, 2), b = PROB(52, 2, 3, 25, 7);
    int32_t ia[FG_CD_MAX_TOKENS], ib[FG_CD_MAX_TOKENS];
    int pa, pb, na = fg_countdown_render(&a, ia, &pa), nb = fg_countdown_render(&b, ib, &pb);
    char ta[400], tb[400];
    ids_text(ia, na, ta, sizeof ta);
    ids_text(ib, nb, tb, sizeof tb);
    CHECK_MSG(!strcmp(ta, "<|bos|>25 7 3 2:52=<think>25-7=18 18*3=54 54-2=52</think>(25-7)*3-2<|eos|>"), "%s", ta);
    CHECK(pa == 13 && pb == 13 && na == nb && !strcmp(strstr(ta, "<think>"), strstr(tb, "<think>")));
    // The worst case of the rules fits: six 100s, intermediates and target of 3 digits.
    fg_countdown big = PROB(600, 100, 100, 100, 100, 100, 100);
    int32_t ids[FG_CD_MAX_TOKENS];
    int n = fg_countdown_render(&big, ids, NULL);
    CHECK(n > 0 && n <= FG_CD_MAX_TOKENS);
    // Invalid and unsolvable problems fail cleanly with a hint.
    fg_countdown inv[] = {PROB(5, 5), PROB(5, 1, 2, 3, 4, 5, 6, 7), PROB(5, 0, 5), PROB(5, 101, 5), PROB(0, 2, 3), PROB(1000, 2, 3)};
    for (size_t i = 0; i < sizeof inv / sizeof inv[0]; i++) {
        CHECK(fg_countdown_render(&inv[i], ids, NULL) == -1 && strstr(fg_last_error(), "hint:"));
        CHECK(fg_countdown_prompt(&inv[i], ids) == -1);
    }
    fg_countdown none = PROB(999, 1, 1, 1);
    CHECK(fg_countdown_render(&none, ids, NULL) == -1 && strstr(fg_last_error(), "no solution"));
    fg_countdown neg = PROB(10, 3, 7, 6); // only 6-(3-7), 6-3+7 and the like: 7-3=4 6+4=10 is fine
    CHECK(fg_countdown_render(&neg, ids, NULL) > 0);
}

static void test_split(void) {
    // ~10% over problems drawn by this test's own generator; every permutation on the same side.
    uint64_t x = 4242;
    int held = 0, N = 200000, asym = 0;
    for (int k = 0; k < N; k++) {
        fg_countdown p = {.n = 3 + k % 3};
        for (int i = 0; i < p.n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            p.nums[i] = 1 + (int)((x >> 33) % 100);
        }
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        p.target = 1 + (int)((x >> 33) % 999);
        int h = fg_countdown_is_heldout(&p);
        held += h;
        fg_countdown q = p;
        for (int i = q.n - 1; i > 0; i--) { // a shuffled copy
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int j = (int)((x >> 33) % (uint64_t)(i + 1)), t = q.nums[i];
            q.nums[i] = q.nums[j]; q.nums[j] = t;
        }
        q.level = 3;
        asym += fg_countdown_is_heldout(&q) != h;
    }
    double f = (double)held / N;
    CHECK_MSG(f >= 0.09 && f <= 0.11, "held-out fraction %.4f", f);
    CHECK(asym == 0);
    // Every permutation of one problem; the verdicts of a few problems are fixed forever (a
    // changed hash would silently move problems between the splits of existing runs).
    fg_countdown p = PROB(52, 25, 7, 3, 2);
    int perm[4] = {0, 1, 2, 3}, h0 = fg_countdown_is_heldout(&p), diff = 0;
    for (int a = 0; a < 24; a++) {
        int rest[4] = {0, 1, 2, 3}, pick = a;
        for (int i = 0; i < 4; i++) { // a-th permutation (factorial number system)
            int f4 = i == 0 ? 6 : i == 1 ? 2 : 1, idx = i < 3 ? pick / f4 : 0;
            if (i < 3) pick %= f4;
            perm[i] = rest[idx];
            for (int j = idx; j < 3 - i; j++) rest[j] = rest[j + 1];
        }
        fg_countdown q = p;
        for (int i = 0; i < 4; i++) q.nums[i] = p.nums[perm[i]];
        diff += fg_countdown_is_heldout(&q) != h0;
    }
    CHECK(diff == 0);
    fg_rng r;
    fg_rng_seed(&r, 2024);
    for (int k = 0; k < 1000; k++) { // sampling honours the split, both ways
        fg_countdown q;
        fg_countdown_sample(&r, 1 + k % 3, k % 2, &q);
        if (fg_countdown_is_heldout(&q) != k % 2) diff++;
    }
    CHECK(diff == 0);
    fg_countdown pins[] = {PROB(52, 25, 7, 3, 2), PROB(24, 3, 8, 1), PROB(100, 4, 25, 1, 1), PROB(199, 20, 10, 1),
                           PROB(7, 1, 2, 3), PROB(10, 3, 7, 6), PROB(500, 100, 5, 5, 2, 3), PROB(36, 6, 6, 1)};
    const int want[] = {0, 1, 0, 0, 0, 1, 0, 0};
    for (int i = 0; i < 8; i++) {
        int h = fg_countdown_is_heldout(&pins[i]);
        CHECK_MSG(h == want[i], "pinned problem %d moved to the %s split", i, h ? "held-out" : "training");
    }
    // Sampling is a function of the rng state.
    fg_rng r1, r2;
    fg_rng_seed(&r1, 9); fg_rng_seed(&r2, 9);
    for (int k = 0; k < 200; k++) {
        fg_countdown u, v;
        fg_countdown_sample(&r1, k % 4, k % 2, &u);
        fg_countdown_sample(&r2, k % 4, k % 2, &v);
        CHECK(!memcmp(&u, &v, sizeof u));
    }
}

// A completion by hand: [<think>] t [</think>] ans [<|eos|>] tail; returns its length.
static int build(int32_t *g, int think, const char *t, int end_think, const char *ans, int eos, const char *tail) {
    int k = 0;
    if (think) g[k++] = FG_TOK_THINK;
    for (const char *c = t; *c; c++) g[k++] = (unsigned char)*c;
    if (end_think) g[k++] = FG_TOK_END_THINK;
    for (const char *c = ans; *c; c++) g[k++] = (unsigned char)*c;
    if (eos) g[k++] = FG_TOK_EOS;
    for (const char *c = tail; *c; c++) g[k++] = (unsigned char)*c;
    return k;
}

static void test_check_ids(void) {
    fg_countdown p = PROB(52, 25, 7, 3, 2);
    int32_t ids[FG_CD_MAX_TOKENS];
    int pl, n = fg_countdown_render(&p, ids, &pl), fmt;
    const int32_t *gen = ids + pl;
    int gn = n - pl;
    CHECK(fg_countdown_check(&p, gen, gn, &fmt) == 1 && fmt == 1);
    CHECK(fg_countdown_check(&p, gen, gn, NULL) == 1);
    CHECK(fg_countdown_check(&p, gen, gn - 1, &fmt) == 1 && fmt == 0); // no EOS: right, not well-formed
    CHECK(fg_countdown_check(&p, gen, 0, &fmt) == 0 && fmt == 0);
    CHECK(fg_countdown_check(&p, NULL, 0, &fmt) == 0 && fmt == 0);
    // Built by hand: <think> t </think> answer <|eos|>, with the variations.
    int32_t g[256];
    int k;
    k = build(g, 1, "anything", 1, "(25-7)*3-2", 1, "");
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 1 && fmt == 1);
    k = build(g, 1, "", 1, "3*(25-7)-2", 1, "junk after EOS");    // another correct answer, empty think
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 1 && fmt == 1);
    k = build(g, 1, "x", 1, "(25-7)*3+2", 1, "");                   // wrong value, well-formed
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0 && fmt == 1);
    k = build(g, 1, "x", 1, "25+25+2", 1, "");                      // wrong numbers, well-formed
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0 && fmt == 1);
    k = build(g, 1, "x", 1, "(25-7)*3-", 1, "");                    // malformed answer
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0 && fmt == 0);
    k = build(g, 1, "x", 1, "", 1, "");                             // empty answer
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0 && fmt == 0);
    k = build(g, 1, "(25-7)*3-2", 0, "", 1, "");                    // no </think>
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0 && fmt == 0);
    k = build(g, 0, "25-7=18", 1, "(25-7)*3-2", 1, "");             // no <think>: right, not well-formed
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 1 && fmt == 0);
    k = build(g, 1, "x", 1, "(25-7)*3-2", 0, "");                   // no EOS
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 1 && fmt == 0);
    g[k - 3] = FG_TOK_PAD;                                          // a special id inside the answer
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0 && fmt == 0);
    k = build(g, 1, "x", 1, "(25-7)*3-2", 1, "");
    g[1] = FG_TOK_BOS;                                              // a special id inside the think
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 1 && fmt == 0);
    g[1] = FG_TOK_END_THINK;                                        // the first </think> counts
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0 && fmt == 0);
    k = build(g, 1, "x", 1, "(25-7)*3-2", 1, "");
    g[3] = -5;                                                      // ids outside the vocabulary
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0);
    g[3] = 1 << 30;
    CHECK(fg_countdown_check(&p, g, k, &fmt) == 0);
}

static void test_batch(void) {
    fg_rng r;
    fg_rng_seed(&r, 3);
    enum { B = 64 };
    for (int level = 0; level <= FG_CD_LEVELS; level++) {
        int T = fg_countdown_max_len(level), bad = 0;
        int32_t *in = malloc(sizeof(int32_t) * B * T), *tg = malloc(sizeof(int32_t) * B * T);
        fg_countdown_batch(&r, level, 1, in, tg, B, T);
        for (int b = 0; b < B; b++) {
            const int32_t *x = in + (size_t)b * T, *y = tg + (size_t)b * T;
            int n = 0, pl = 0;
            while (n < T && x[n] != FG_TOK_PAD) n++;
            while (pl < n && x[pl] != FG_TOK_THINK) pl++;
            bad += x[0] != FG_TOK_BOS || n < 2 || x[n - 1] != FG_TOK_EOS || pl == n;
            for (int t = 0; t < T; t++) {
                int32_t want = t + 1 < n && t + 1 >= pl ? x[t + 1] : -1;
                bad += y[t] != want;
            }
            bad += y[pl - 1] != FG_TOK_THINK;
            // the row is a held-out problem: its prompt parses back into one
            fg_countdown p = {0};
            char text[200];
            ids_text(x + 1, pl - 1, text, sizeof text);
            char *colon = strchr(text, ':'), *s = text;
            for (; colon && s < colon && p.n < FG_CD_MAX_NUMS; p.n++) p.nums[p.n] = (int)strtol(s, &s, 10);
            p.target = colon ? atoi(colon + 1) : 0;
            bad += !fg_countdown_is_heldout(&p);
            bad += fg_countdown_check(&p, x + pl, n - pl, NULL) != 1;
        }
        CHECK_MSG(bad == 0, "level %d: %d bad batch entries", level, bad);
        free(in); free(tg);
    }
}

// ---- the Python oracle -------------------------------------------------------------------------
static void hex(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", (unsigned char)s[i]);
}

static void dump_expr(FILE *f, const fg_countdown *p, const char *s, size_t n) {
    fputs("E;", f);
    for (int i = 0; i < p->n; i++) fprintf(f, i ? " %d" : "%d", p->nums[i]);
    fprintf(f, ";%d;", p->target);
    hex(f, s, n);
    fprintf(f, ";%d\n", fg_countdown_check_expr(p, s, n));
}

static void dump_problem(FILE *f, const fg_countdown *p) {
    int32_t ids[FG_CD_MAX_TOKENS];
    int n = fg_countdown_render(p, ids, NULL);
    char text[600];
    ids_text(ids, n > 0 ? n : 0, text, sizeof text);
    const char *a = n > 0 ? strstr(text, "</think>") + 8 : "";
    fputs("S;", f);
    for (int i = 0; i < p->n; i++) fprintf(f, i ? " %d" : "%d", p->nums[i]);
    fprintf(f, ";%d;%d;", p->target, n > 0);
    hex(f, a, n > 0 ? strlen(a) - 7 : 0);
    fputc('\n', f);
}

// A random expression over some of p's numbers (maybe repeated or dropped) with random operators.
static int random_expr(fg_rng *r, const fg_countdown *p, char *o) {
    int k = 0, m = p->n - 1 + (int)fg_rng_below(r, 3), open = 0;
    static const char ops[] = "+-*/";
    for (int i = 0; i < m; i++) {
        if (i && fg_rng_below(r, 4) == 0 && open) { o[k++] = ')'; open--; }
        if (i) o[k++] = ops[fg_rng_below(r, 4)];
        if (fg_rng_below(r, 3) == 0) { o[k++] = '('; open++; }
        k += sprintf(o + k, "%d", p->nums[fg_rng_below(r, (uint64_t)p->n)]);
    }
    while (open--) o[k++] = ')';
    o[k] = 0;
    return k;
}

static int write_dump(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fg_rng r;
    fg_rng_seed(&r, 31337);
    static const char alpha[] = "0123456789+-*/() x";
    for (int level = 1; level <= FG_CD_LEVELS; level++)
        for (int k = 0; k < 150; k++) {
            fg_countdown p;
            fg_countdown_sample(&r, level, k % 2, &p);
            dump_problem(f, &p);
            int32_t ids[FG_CD_MAX_TOKENS];
            char text[600], e[256];
            int n = fg_countdown_render(&p, ids, NULL);
            ids_text(ids, n, text, sizeof text);
            const char *a = strstr(text, "</think>") + 8;
            int al = (int)strlen(a) - 7;
            dump_expr(f, &p, a, (size_t)al);
            for (int m = 0; m < 6; m++) { // mutations of the right answer: replace, delete, insert a byte
                memcpy(e, a, (size_t)al);
                int el = al, at = (int)fg_rng_below(&r, (uint64_t)al);
                int what = m % 3;
                char ch = alpha[fg_rng_below(&r, sizeof alpha - 1)];
                if (what == 0) e[at] = ch;
                else if (what == 1) { memmove(e + at, e + at + 1, (size_t)(el - at - 1)); el--; }
                else { memmove(e + at + 1, e + at, (size_t)(el - at)); e[at] = ch; el++; }
                dump_expr(f, &p, e, (size_t)el);
            }
            for (int m = 0; m < 6; m++) { // random expressions over the numbers
                int el = random_expr(&r, &p, e);
                dump_expr(f, &p, e, (size_t)el);
            }
            // another problem of the level with a random target: solvable or not
            fg_countdown q = p;
            q.target = 1 + (int)fg_rng_below(&r, 999);
            dump_problem(f, &q);
        }
    for (int k = 0; k < 300; k++) { // random strings over the alphabet, for a fixed problem
        fg_countdown p = PROB(52, 25, 7, 3, 2);
        char e[64];
        int el = 1 + (int)fg_rng_below(&r, 20);
        for (int i = 0; i < el; i++) e[i] = alpha[fg_rng_below(&r, sizeof alpha - 1)];
        dump_expr(f, &p, e, (size_t)el);
    }
    // hand cases, as above, through the oracle too
    const struct { fg_countdown p; const char *e; } hand[] = {
        {PROB(52, 25, 7, 3, 2), "(25-7)*3-2"}, {PROB(52, 25, 7, 3, 2), " ( 25 - 7 ) * 3 - 2 "}, {PROB(13, 2, 3, 7), "3+3+7"},
        {PROB(14, 7, 2, 4), "7/2*4"}, {PROB(14, 7, 2, 4), "7*4/2"}, {PROB(3, 5, 5, 3), "3+5/(5-5)"}, {PROB(5, 2, 3, 4), "-3+2*4"},
        {PROB(5, 2, 3, 4), "02*4-3"}, {PROB(10, 3, 7, 6), "6-(3-7)"}, {PROB(5, 2, 3, 4), "2*4--3"}, {PROB(5, 2, 3, 4), "(1)(2)"},
        {PROB(5, 2, 3, 4), "2*4-3 "}, {PROB(5, 2, 3, 4), "2 * 4 - 3"}, {PROB(5, 2, 3, 4), "2*4//3"}, {PROB(1, 1, 1), "1*1"},
    };
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) dump_expr(f, &hand[i].p, hand[i].e, strlen(hand[i].e));
    return fclose(f) ? -1 : 0;
}

static int run_oracle(void) {
    if (access("/usr/bin/python3", X_OK)) return 77;
    char path[] = "/tmp/fg_countdown_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    int rc = write_dump(path);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/countdown_ref.py %s", path);
    if (!rc) rc = system(cmd);
    unlink(path);
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--dump")) return write_dump(argv[2]) ? 1 : 0;
    test_verifier();
    test_render_all_levels();
    test_split();
    test_check_ids();
    test_batch();
    int oracle = run_oracle();
    CHECK_MSG(oracle != -1, "tests/ref/countdown_ref.py disagrees (run from the repository root)");
    if (oracle == 77 && !tst_failures) {
        printf("SKIP: /usr/bin/python3 not found: the Python oracle was skipped (every other check passed)\n");
        return 77;
    }
    return TEST_DONE();
}
