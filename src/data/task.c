// task.c: see task.h. Rendering writes the text form once (plain ASCII between the specials) and
// turns it into ids, so text and ids can never disagree.
#include "data/task.h"
#include "data/bytetok.h"

#include <assert.h>
#include <string.h>

static int valid(const fg_task_problem *p) {
    if (p->a < 0 || p->a > 9999 || p->b < 0 || p->b > 9999 || (p->op != '+' && p->op != '-'))
        return fg_set_error("task problem out of range (a=%d, b=%d, op=0x%02x); hint: a and b must "
                            "be in [0, 9999] and op '+' or '-'", p->a, p->b, (unsigned char)p->op);
    return 0;
}

long fg_task_answer(const fg_task_problem *p) { return p->op == '+' ? (long)p->a + p->b : (long)p->a - p->b; }

// digit(x, i): the i-th decimal digit of x, i = 0 least significant.
static int digit(int x, int i) { static const int pow10[4] = { 1, 10, 100, 1000 }; return x / pow10[i] % 10; }

// The trace between <think> and </think>, NUL-terminated; returns its length (35 or 50).
static int write_trace(const fg_task_problem *p, char *o) {
    int k = 0;
    if (p->op == '+') {
        int c = 0;
        for (int i = 0; i < 4; i++) {
            int x = digit(p->a, i), y = digit(p->b, i), s = x + y + c;
            if (i) o[k++] = ' ';
            k += sprintf(o + k, "%d+%d+%d=%d%d", x, y, c, s / 10, s % 10);
            c = s / 10;
        }
        return k;
    }
    for (int i = 3; i >= 0; i--) {
        int x = digit(p->a, i), y = digit(p->b, i);
        o[k++] = x < y ? '<' : x == y ? '=' : '>';
    }
    int big = p->a >= p->b ? p->a : p->b, small = p->a >= p->b ? p->b : p->a;
    k += sprintf(o + k, " %04d-%04d", big, small);
    int bw = 0;
    for (int i = 0; i < 4; i++) {
        int x = digit(big, i), y = digit(small, i), d = x - y - bw;
        int nb = d < 0;
        k += sprintf(o + k, " %d-%d-%d=%d%d", x, y, bw, nb, d + 10 * nb);
        bw = nb;
    }
    return k;
}

// The 6-char answer, NUL-terminated.
static void write_answer(const fg_task_problem *p, char out[8]) {
    long v = fg_task_answer(p), m = v >= 0 ? v : -v; // |v| <= 19998: five digits always suffice
    out[0] = v >= 0 ? '+' : '-';
    for (int k = 5; k >= 1; k--, m /= 10) out[k] = (char)('0' + m % 10);
    out[6] = 0;
}

int fg_task_render(const fg_task_problem *p, int32_t *out, int *prompt_len) {
    if (valid(p)) return -1;
    char prompt[16], trace[64], ans[8];
    snprintf(prompt, sizeof prompt, "%04d%c%04d=", p->a, p->op, p->b);
    write_trace(p, trace);
    write_answer(p, ans);
    int n = 0;
    out[n++] = FG_TOK_BOS;
    n += (int)fg_bytetok_encode(prompt, strlen(prompt), 0, out + n, 10);
    if (prompt_len) *prompt_len = n;
    out[n++] = FG_TOK_THINK;
    n += (int)fg_bytetok_encode(trace, strlen(trace), 0, out + n, 50);
    out[n++] = FG_TOK_END_THINK;
    n += (int)fg_bytetok_encode(ans, 6, 0, out + n, 6);
    out[n++] = FG_TOK_EOS;
    assert(n <= FG_TASK_LONGEST);
    return n;
}

int fg_task_render_text(const fg_task_problem *p, char *buf, size_t cap) {
    int32_t ids[FG_TASK_MAX_TOKENS];
    int n = fg_task_render(p, ids, NULL);
    if (n < 0) return -1;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        char piece[FG_BYTETOK_MAX_PIECE];
        size_t m = fg_bytetok_decode(ids[i], piece);
        if (k + m + 1 > cap) {
            if (cap) buf[0] = 0;
            return fg_set_error("task text needs more than %zu bytes; hint: pass a 256-byte buffer", cap);
        }
        memcpy(buf + k, piece, m);
        k += m;
    }
    buf[k] = 0;
    return (int)k;
}

int fg_task_is_heldout(const fg_task_problem *p) {
    uint64_t lo = (uint64_t)(p->a < p->b ? p->a : p->b), hi = (uint64_t)(p->a < p->b ? p->b : p->a);
    uint64_t z = (lo * 10000 + hi) * 2 + (p->op == '-') + 0x66727567616c7461ull; // salt: "frugalta"
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z % 1000 < 100;
}

void fg_task_sample(fg_rng *r, int heldout, fg_task_problem *p) {
    do {
        p->op = fg_rng_below(r, 2) ? '-' : '+';
        p->a = (int)fg_rng_below(r, 10000);
        p->b = (int)fg_rng_below(r, 10000);
    } while (fg_task_is_heldout(p) != (heldout != 0));
}

void fg_task_batch(fg_rng *r, int32_t *inputs, int32_t *targets, int B, int T) {
    fg_task_batch_split(r, 0, inputs, targets, B, T);
}

void fg_task_batch_split(fg_rng *r, int heldout, int32_t *inputs, int32_t *targets, int B, int T) {
    assert(B >= 1 && T >= 1);
    for (int b = 0; b < B; b++) {
        fg_task_problem p;
        int32_t ids[FG_TASK_MAX_TOKENS];
        int pl;
        fg_task_sample(r, heldout, &p);
        int n = fg_task_render(&p, ids, &pl);
        int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            in[t] = t < n ? ids[t] : FG_TOK_PAD;
            tg[t] = (t + 1 < n && t + 1 >= pl) ? ids[t + 1] : -1;
        }
    }
}

int fg_task_check(const fg_task_problem *p, const int32_t *gen, int n) {
    if (valid(p)) return 0;
    int i = 0;
    while (i < n && gen[i] != FG_TOK_END_THINK) i++;
    if (n - i - 1 < FG_TASK_ANSWER_LEN) return 0;
    char ans[8];
    write_answer(p, ans);
    for (int k = 0; k < FG_TASK_ANSWER_LEN; k++)
        if (gen[i + 1 + k] != (unsigned char)ans[k]) return 0;
    return 1;
}
