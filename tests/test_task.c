// test_task.c: the synthetic arithmetic task. The oracle is independent of task.c: answers are
// computed here with plain integer arithmetic, and each trace is parsed back and every step
// re-checked (digits, carries/borrows, the final value), for 100k random problems and edge cases.
#include "test.h"
#include "data/bytetok.h"
#include "data/task.h"

#include <stdlib.h>
#include <string.h>

static int dig(int x, int i) { while (i--) x /= 10; return x % 10; }
static int cdig(char c) { return c >= '0' && c <= '9' ? c - '0' : -100; }

// Parses and verifies the trace t (between <think> and </think>) of a op b. Returns 1 if every
// step is arithmetically right and the steps produce the value |a op b| (with its sign).
static int trace_ok(int a, char op, int b, const char *t, size_t len) {
    if (op == '+') {
        if (len != 35) return 0;
        int carry = 0, value = 0, scale = 1;
        for (int i = 0; i < 4; i++) {
            const char *s = t + 9 * i; // "x+y+c=dd" then ' '
            if (i < 3 && s[8] != ' ') return 0;
            if (s[1] != '+' || s[3] != '+' || s[5] != '=') return 0;
            int x = cdig(s[0]), y = cdig(s[2]), c = cdig(s[4]), hi = cdig(s[6]), lo = cdig(s[7]);
            if (x != dig(a, i) || y != dig(b, i) || c != carry) return 0;
            if (hi < 0 || lo < 0 || hi > 1 || 10 * hi + lo != x + y + c) return 0;
            value += lo * scale;
            scale *= 10;
            carry = hi;
        }
        return value + carry * 10000 == a + b;
    }
    if (len != 50) return 0;
    for (int i = 0; i < 4; i++) {
        int x = dig(a, 3 - i), y = dig(b, 3 - i);
        if (t[i] != (x < y ? '<' : x > y ? '>' : '=')) return 0;
    }
    int big = a > b ? a : b, small = a > b ? b : a;
    char xy[16];
    snprintf(xy, sizeof xy, " %04d-%04d ", big, small);
    if (memcmp(t + 4, xy, 11) != 0) return 0;
    int borrow = 0, value = 0, scale = 1;
    for (int i = 0; i < 4; i++) {
        const char *s = t + 15 + 9 * i; // "x-y-b=Br" then ' '
        if (i < 3 && s[8] != ' ') return 0;
        if (s[1] != '-' || s[3] != '-' || s[5] != '=') return 0;
        int x = cdig(s[0]), y = cdig(s[2]), bw = cdig(s[4]), nb = cdig(s[6]), r = cdig(s[7]);
        if (x != dig(big, i) || y != dig(small, i) || bw != borrow) return 0;
        if (nb < 0 || nb > 1 || r < 0 || x - y - bw != r - 10 * nb) return 0;
        value += r * scale;
        scale *= 10;
        borrow = nb;
    }
    return borrow == 0 && value == big - small;
}

// Renders p, checks it against the independent oracle. Returns 1 if all is right.
static int check_problem(int a, char op, int b) {
    fg_task_problem p = { a, b, op };
    char text[256], want[64], ans[16];
    int n_text = fg_task_render_text(&p, text, sizeof text);
    if (n_text < 0 || (size_t)n_text != strlen(text)) return 0;
    long v = op == '+' ? (long)a + b : (long)a - b;
    snprintf(ans, sizeof ans, "%c%05ld", v < 0 ? '-' : '+', labs(v));
    if (fg_task_answer(&p) != v) return 0;
    snprintf(want, sizeof want, "<|bos|>%04d%c%04d=<think>", a, op, b);
    size_t wl = strlen(want);
    if (strncmp(text, want, wl) != 0) return 0;
    snprintf(want, sizeof want, "</think>%s<|eos|>", ans);
    size_t tl = strlen(want);
    if ((size_t)n_text < wl + tl || strcmp(text + n_text - tl, want) != 0) return 0;
    if (!trace_ok(a, op, b, text + wl, (size_t)n_text - wl - tl)) return 0;

    // Ids agree with the text (specials parsed), fixed lengths, prompt length.
    int32_t ids[FG_TASK_MAX_TOKENS], enc[256];
    int pl = -1;
    int n = fg_task_render(&p, ids, &pl);
    if (n != (op == '+' ? 55 : 70) || n > FG_TASK_LONGEST || pl != FG_TASK_PROMPT_LEN) return 0;
    if (fg_bytetok_encode(text, (size_t)n_text, 1, enc, 256) != (size_t)n || memcmp(enc, ids, (size_t)n * 4) != 0) return 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= FG_BYTE_VOCAB || ids[i] == FG_TOK_PAD) return 0;
        if ((ids[i] == FG_TOK_BOS) != (i == 0) || (ids[i] == FG_TOK_EOS) != (i == n - 1)) return 0;
    }
    return 1;
}

static void test_examples(void) {
    const struct { int a, b; char op; const char *text; } ex[] = {
        { 123, 4567, '+', "<|bos|>0123+4567=<think>3+7+0=10 2+6+1=09 1+5+0=06 0+4+0=04</think>+04690<|eos|>" },
        { 123, 4567, '-', "<|bos|>0123-4567=<think><<<< 4567-0123 7-3-0=04 6-2-0=04 5-1-0=04 4-0-0=04</think>-04444<|eos|>" },
        { 5000, 1, '-', "<|bos|>5000-0001=<think>>==< 5000-0001 0-1-0=19 0-0-1=19 0-0-1=19 5-0-1=04</think>+04999<|eos|>" },
        { 9999, 9999, '+', "<|bos|>9999+9999=<think>9+9+0=18 9+9+1=19 9+9+1=19 9+9+1=19</think>+19998<|eos|>" },
        { 42, 42, '-', "<|bos|>0042-0042=<think>==== 0042-0042 2-2-0=00 4-4-0=00 0-0-0=00 0-0-0=00</think>+00000<|eos|>" },
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        fg_task_problem p = { ex[i].a, ex[i].b, ex[i].op };
        char text[256];
        int n = fg_task_render_text(&p, text, sizeof text);
        CHECK_MSG(n == (int)strlen(ex[i].text) && strcmp(text, ex[i].text) == 0, "got  %s\nwant %s", text, ex[i].text);
        CHECK(check_problem(ex[i].a, ex[i].op, ex[i].b));
    }
    CHECK(fg_task_answer(&(fg_task_problem){ 123, 4567, '+' }) == 4690);
    CHECK(fg_task_answer(&(fg_task_problem){ 123, 4567, '-' }) == -4444);

    // Invalid problems and small buffers fail cleanly.
    int32_t ids[FG_TASK_MAX_TOKENS];
    char small[40];
    CHECK(fg_task_render(&(fg_task_problem){ 10000, 1, '+' }, ids, NULL) == -1);
    CHECK(fg_task_render(&(fg_task_problem){ -1, 1, '+' }, ids, NULL) == -1);
    CHECK(fg_task_render(&(fg_task_problem){ 1, 1, '*' }, ids, NULL) == -1);
    CHECK(strstr(fg_last_error(), "hint:") != NULL);
    CHECK(fg_task_render_text(&(fg_task_problem){ 1, 1, '+' }, small, sizeof small) == -1 && small[0] == 0);
}

static void test_oracle(void) {
    // Edges: every pair from a set of boundary values, both ops.
    const int edge[] = { 0, 1, 9, 10, 99, 100, 999, 1000, 1001, 4999, 5000, 9000, 9990, 9998, 9999 };
    int n_edge = sizeof edge / sizeof edge[0], bad = 0;
    for (int i = 0; i < n_edge; i++)
        for (int j = 0; j < n_edge; j++)
            for (int o = 0; o < 2; o++) bad += !check_problem(edge[i], o ? '-' : '+', edge[j]);
    CHECK_MSG(bad == 0, "%d edge problems wrong", bad);
    // 100k random problems, drawn with a generator of the test's own (not task.c's sampler).
    uint64_t x = 0x9e3779b97f4a7c15ull;
    bad = 0;
    for (int k = 0; k < 100000; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int a = (int)((x >> 33) % 10000), b = (int)((x >> 17) % 10000);
        char op = (x >> 63) ? '-' : '+';
        if (!check_problem(a, op, b)) { if (bad++ < 5) fprintf(stderr, "wrong: %04d%c%04d\n", a, op, b); }
    }
    CHECK_MSG(bad == 0, "%d of 100000 random problems wrong", bad);
}

static void test_check(void) {
    fg_rng r;
    fg_rng_seed(&r, 5);
    for (int k = 0; k < 2000; k++) {
        fg_task_problem p;
        fg_task_sample(&r, k % 2, &p);
        int32_t ids[FG_TASK_MAX_TOKENS];
        int pl, n = fg_task_render(&p, ids, &pl);
        const int32_t *gen = ids + pl;
        int gn = n - pl;
        CHECK(fg_task_check(&p, gen, gn) == 1);
        CHECK(fg_task_check(&p, gen, gn - 1) == 1);  // EOS is not required
        CHECK(fg_task_check(&p, gen, gn - 2) == 0);  // answer cut short
        int32_t mod[FG_TASK_MAX_TOKENS];
        memcpy(mod, gen, sizeof(int32_t) * (size_t)gn);
        int pos = gn - 1 - 6 + 1 + (int)fg_rng_below(&r, 5);   // one of the 5 answer digits
        mod[pos] = '0' + (mod[pos] - '0' + 1 + (int)fg_rng_below(&r, 9)) % 10;
        CHECK(fg_task_check(&p, mod, gn) == 0);
        memcpy(mod, gen, sizeof(int32_t) * (size_t)gn);
        mod[gn - 7] = mod[gn - 7] == '+' ? '-' : '+';             // sign flipped
        CHECK(fg_task_check(&p, mod, gn) == 0);
        memcpy(mod, gen, sizeof(int32_t) * (size_t)gn);
        mod[gn - 8] = ' ';                                          // no </think>
        CHECK(fg_task_check(&p, mod, gn) == 0);
    }
    // Trace errors do not matter; only the 6 ids after the first </think> count.
    int32_t gen[] = { FG_TOK_THINK, 'x', FG_TOK_END_THINK, '+', '0', '4', '6', '9', '0' };
    CHECK(fg_task_check(&(fg_task_problem){ 123, 4567, '+' }, gen, 9) == 1);
    CHECK(fg_task_check(&(fg_task_problem){ 123, 4567, '+' }, gen, 0) == 0);
}

static void test_split(void) {
    fg_rng r;
    fg_rng_seed(&r, 11);
    int leaked = 0, wrong_side = 0;
    for (int k = 0; k < 200000; k++) {
        fg_task_problem p;
        fg_task_sample(&r, 0, &p);
        leaked += fg_task_is_heldout(&p);
        if (p.a < 0 || p.a > 9999 || p.b < 0 || p.b > 9999 || (p.op != '+' && p.op != '-')) leaked++;
    }
    CHECK_MSG(leaked == 0, "%d held-out problems sampled for training", leaked);
    for (int k = 0; k < 20000; k++) {
        fg_task_problem p;
        fg_task_sample(&r, 1, &p);
        wrong_side += !fg_task_is_heldout(&p);
    }
    CHECK(wrong_side == 0);
    // Fraction over uniformly random problems (own generator); swapped operands share a side.
    uint64_t x = 12345;
    int held = 0, n = 1000000, asym = 0, plus = 0, minus = 0;
    for (int k = 0; k < n; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        fg_task_problem p = { (int)((x >> 33) % 10000), (int)((x >> 17) % 10000), (x >> 63) ? '-' : '+' };
        fg_task_problem q = { p.b, p.a, p.op };
        int h = fg_task_is_heldout(&p);
        held += h;
        if (p.op == '+') plus += h; else minus += h;
        asym += h != fg_task_is_heldout(&q);
    }
    double f = (double)held / n;
    CHECK_MSG(f >= 0.09 && f <= 0.11, "held-out fraction %.4f", f);
    CHECK(plus > held / 3 && minus > held / 3);
    CHECK(asym == 0);
}

static void test_batch(void) {
    enum { B = 16, T = FG_TASK_LONGEST + 5 };
    int32_t in[B * T], tg[B * T], in2[B * T], tg2[B * T];
    fg_rng r1, r2;
    fg_rng_seed(&r1, 3);
    fg_rng_seed(&r2, 3);
    for (int iter = 0; iter < 50; iter++) {
        fg_task_batch(&r1, in, tg, B, T);
        fg_task_batch(&r2, in2, tg2, B, T);
        CHECK(memcmp(in, in2, sizeof in) == 0 && memcmp(tg, tg2, sizeof tg) == 0);
        for (int b = 0; b < B; b++) {
            const int32_t *x = in + b * T, *y = tg + b * T;
            // Recover the problem from the prompt digits, re-render, compare.
            fg_task_problem p = { 0, 0, (char)x[5] };
            for (int k = 1; k <= 4; k++) { p.a = p.a * 10 + (x[k] - '0'); p.b = p.b * 10 + (x[k + 5] - '0'); }
            CHECK(!fg_task_is_heldout(&p));
            int32_t ids[FG_TASK_MAX_TOKENS];
            int pl, n = fg_task_render(&p, ids, &pl);
            CHECK(n > 0);
            for (int t = 0; t < T; t++) {
                CHECK(x[t] == (t < n ? ids[t] : FG_TOK_PAD));
                int32_t want = (t >= pl - 1 && t < n - 1) ? ids[t + 1] : -1;
                CHECK(y[t] == want);
            }
            CHECK(y[pl - 1] == FG_TOK_THINK && y[n - 2] == FG_TOK_EOS && y[n - 1] == -1 && y[pl - 2] == -1);
        }
    }
    // T exactly the longest example works too.
    fg_task_batch(&r1, in, tg, 2, FG_TASK_LONGEST);
    CHECK(in[0] == FG_TOK_BOS);
}

int main(void) {
    test_examples();
    test_oracle();
    test_check();
    test_split();
    test_batch();
    return TEST_DONE();
}
