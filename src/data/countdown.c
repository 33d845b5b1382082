// countdown.c: see countdown.h. Rendering writes the text once (plain ASCII between the specials)
// and turns it into ids, as task.c does, so text and ids never disagree.
//
// Invariants: a rendered example never exceeds FG_CD_MAX_TOKENS (nums <= 100 and intermediates
// <= 999 bound every piece: at most 29 + 1 + 59 + 1 + 31 + 1 = 122 ids for 6 numbers); the
// canonical solution is a function of the sorted numbers and the target; the parser reads
// nothing outside its input and recurses at most 3 * FG_CD_MAX_DEPTH frames.
#include "data/countdown.h"
#include "data/bytetok.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

// ---- levels ------------------------------------------------------------------------------------
// n numbers in [lo, hi], the last one replaced by one of 25/50/75/100 when big; targets in [tmin, tmax].
typedef struct { int n, lo, hi, big, tmin, tmax; } level_spec;
static const level_spec LEVELS[FG_CD_LEVELS] = {
    {3, 1, 20, 0, 1, 199},
    {4, 1, 20, 0, 1, 499},
    {5, 1, 20, 1, 100, 999},
};

static int digits(int x) { return x >= 100 ? 3 : x >= 10 ? 2 : 1; }

int fg_countdown_max_len(int level) {
    if (level <= 0 || level > FG_CD_LEVELS) {
        int m = 0;
        for (int l = 1; l <= FG_CD_LEVELS; l++) m = FG_MAX(m, fg_countdown_max_len(l));
        return m;
    }
    const level_spec *s = &LEVELS[level - 1];
    int n = s->n, d = (n - s->big) * digits(s->hi) + s->big * digits(FG_CD_MAX_NUM);
    int prompt = 1 + d + (n - 1) + 1 + digits(s->tmax) + 1;   // BOS nums, spaces, ':', target, '='
    int trace = (n - 1) * 11 + (n - 2);                         // "xxx*yyy=zzz" steps, spaces
    int answer = d + (n - 1) + 2 * (n - 2);                     // numbers, ops, parentheses
    return prompt + 1 + trace + 1 + answer + 1;
}

// ---- problems ----------------------------------------------------------------------------------
// 1 when p is a problem the renderer takes (see fg_countdown); no error recorded.
static int in_range(const fg_countdown *p) {
    if (p->n < 2 || p->n > FG_CD_MAX_NUMS || p->target < 1 || p->target > FG_CD_MAX_VALUE) return 0;
    for (int i = 0; i < p->n; i++)
        if (p->nums[i] < 1 || p->nums[i] > FG_CD_MAX_NUM) return 0;
    return 1;
}

static int valid(const fg_countdown *p) {
    if (in_range(p)) return 0;
    if (p->n < 2 || p->n > FG_CD_MAX_NUMS)
        return fg_set_error("countdown problem has %d numbers; hint: 2 to %d", p->n, FG_CD_MAX_NUMS);
    for (int i = 0; i < p->n; i++)
        if (p->nums[i] < 1 || p->nums[i] > FG_CD_MAX_NUM)
            return fg_set_error("countdown number %d is %d; hint: numbers are in [1, %d]", i, p->nums[i], FG_CD_MAX_NUM);
    if (p->target < 1 || p->target > FG_CD_MAX_VALUE)
        return fg_set_error("countdown target %d; hint: targets are in [1, %d]", p->target, FG_CD_MAX_VALUE);
    return 0;
}

static void sort_desc(int *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] > v[j - 1]; j--) { int t = v[j]; v[j] = v[j - 1]; v[j - 1] = t; }
}

int fg_countdown_is_heldout(const fg_countdown *p) {
    int n = FG_MAX(0, FG_MIN(p->n, FG_CD_MAX_NUMS)), v[FG_CD_MAX_NUMS];
    memcpy(v, p->nums, sizeof(int) * (size_t)n);
    sort_desc(v, n);
    uint64_t z = 0x66676364746e6463ull; // salt: "fgcdtndc"
    for (int i = 0; i < n; i++) z = (z ^ (uint32_t)v[i]) * 0x100000001b3ull;
    z = (z ^ (uint32_t)p->target) * 0x100000001b3ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z % 1000 < 100;
}

// x op y under the generator's rules (x >= y > 0): an integer in [1, FG_CD_MAX_VALUE], else 0.
// Division by 1 is refused (it repeats "*1").
static int apply(char op, int x, int y) {
    int z = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : (y > 1 && x % y == 0) ? x / y : 0;
    return z >= 1 && z <= FG_CD_MAX_VALUE ? z : 0;
}
static const char OPS[4] = {'+', '-', '*', '/'};

void fg_countdown_sample(fg_rng *r, int level, int heldout, fg_countdown *p) {
    assert(level >= 0 && level <= FG_CD_LEVELS);
    if (level == 0) level = 1 + (int)fg_rng_below(r, FG_CD_LEVELS);
    const level_spec *s = &LEVELS[level - 1];
    for (;;) {
        memset(p, 0, sizeof *p);
        p->n = s->n; p->level = level;
        int sum = 0;
        for (int i = 0; i < s->n; i++) p->nums[i] = s->lo + (int)fg_rng_below(r, (uint64_t)(s->hi - s->lo + 1));
        if (s->big) p->nums[s->n - 1] = 25 * (1 + (int)fg_rng_below(r, 4));
        for (int i = s->n - 1; i > 0; i--) { // shuffle: the prompt order says nothing about the tree
            int j = (int)fg_rng_below(r, (uint64_t)i + 1), t = p->nums[i];
            p->nums[i] = p->nums[j]; p->nums[j] = t;
        }
        // a random tree: combine two random values with a random valid op until one is left
        int pool[FG_CD_MAX_NUMS], k = s->n, ok = 1;
        memcpy(pool, p->nums, sizeof pool);
        for (int i = 0; i < s->n; i++) sum += p->nums[i];
        while (k > 1 && ok) {
            int i = (int)fg_rng_below(r, (uint64_t)k), j = (int)fg_rng_below(r, (uint64_t)k - 1);
            if (j >= i) j++;
            int x = FG_MAX(pool[i], pool[j]), y = FG_MIN(pool[i], pool[j]), z[4], nz = 0;
            for (int o = 0; o < 4; o++) if (apply(OPS[o], x, y)) z[nz++] = apply(OPS[o], x, y);
            if (!nz) { ok = 0; break; }
            pool[FG_MIN(i, j)] = z[fg_rng_below(r, (uint64_t)nz)];
            pool[FG_MAX(i, j)] = pool[--k];
        }
        if (!ok) continue;
        p->target = pool[0];
        if (p->target < s->tmin || p->target > s->tmax || p->target == sum) continue;
        if (fg_countdown_is_heldout(p) == (heldout != 0)) return;
    }
}

// ---- the canonical solution --------------------------------------------------------------------
// Values are combined two at a time: node i < n is number i, node n + k the result of step k.
typedef struct { char op; int l, r, v; } cd_node;
typedef struct { cd_node node[2 * FG_CD_MAX_NUMS]; int n_nodes; } cd_solution;

// Depth-first search over the live node ids alive[0..k) (kept sorted by value, descending, so the
// state is a function of the multiset): pairs in order, ops in the order + - * /, larger value
// first. Appends steps to s; returns 1 once one value equal to target is left.
static int solve(cd_solution *s, const int *alive, int k, int target) {
    if (k == 1) return s->node[alive[0]].v == target;
    for (int i = 0; i < k; i++) {
        if (i && s->node[alive[i]].v == s->node[alive[i - 1]].v) continue; // its pairs were tried from i-1
        for (int j = i + 1; j < k; j++) {
            int x = s->node[alive[i]].v, y = s->node[alive[j]].v;
            if (j > i + 1 && y == s->node[alive[j - 1]].v) continue; // the same values as (i, j-1)
            for (int o = 0; o < 4; o++) {
                int z = apply(OPS[o], x, y);
                if (!z) continue;
                int id = s->n_nodes++, next[FG_CD_MAX_NUMS], m = 0, placed = 0;
                s->node[id] = (cd_node){OPS[o], alive[i], alive[j], z};
                for (int t = 0; t < k; t++) {
                    if (t == i || t == j) continue;
                    if (!placed && s->node[alive[t]].v <= z) { next[m++] = id; placed = 1; }
                    next[m++] = alive[t];
                }
                if (!placed) next[m++] = id;
                if (solve(s, next, m, target)) return 1;
                s->n_nodes--;
            }
        }
    }
    return 0;
}

static int prec(char op) { return op == '+' || op == '-' ? 1 : op == '*' || op == '/' ? 2 : 3; }

// Writes node id as an expression with the fewest parentheses (operators left-associative).
static int write_expr(const cd_solution *s, int id, char *o) {
    const cd_node *d = &s->node[id];
    if (!d->op) return sprintf(o, "%d", d->v);
    int k = 0, pl = prec(s->node[d->l].op) < prec(d->op);
    int pr = prec(s->node[d->r].op) < prec(d->op) || (prec(s->node[d->r].op) == prec(d->op) && (d->op == '-' || d->op == '/'));
    if (pl) o[k++] = '(';
    k += write_expr(s, d->l, o + k);
    if (pl) o[k++] = ')';
    o[k++] = d->op;
    if (pr) o[k++] = '(';
    k += write_expr(s, d->r, o + k);
    if (pr) o[k++] = ')';
    o[k] = 0;
    return k;
}

int fg_countdown_prompt(const fg_countdown *p, int32_t *out) {
    if (valid(p)) return -1;
    char text[64];
    int k = 0;
    for (int i = 0; i < p->n; i++) k += sprintf(text + k, i ? " %d" : "%d", p->nums[i]);
    k += sprintf(text + k, ":%d=", p->target);
    out[0] = FG_TOK_BOS;
    return 1 + (int)fg_bytetok_encode(text, (size_t)k, 0, out + 1, FG_CD_MAX_TOKENS - 1);
}

int fg_countdown_render(const fg_countdown *p, int32_t *out, int *prompt_len) {
    int n = fg_countdown_prompt(p, out);
    if (n < 0) return -1;
    cd_solution s;
    int alive[FG_CD_MAX_NUMS], v[FG_CD_MAX_NUMS];
    memcpy(v, p->nums, sizeof(int) * (size_t)p->n);
    sort_desc(v, p->n);
    for (int i = 0; i < p->n; i++) { s.node[i] = (cd_node){0, -1, -1, v[i]}; alive[i] = i; }
    s.n_nodes = p->n;
    if (!solve(&s, alive, p->n, p->target))
        return fg_set_error("countdown problem has no solution with intermediate results in [1, %d] (target %d); "
                            "hint: draw problems with fg_countdown_sample", FG_CD_MAX_VALUE, p->target);
    char trace[96], answer[64];
    int k = 0;
    for (int id = p->n; id < s.n_nodes; id++) {
        const cd_node *d = &s.node[id];
        k += sprintf(trace + k, "%s%d%c%d=%d", id > p->n ? " " : "", s.node[d->l].v, d->op, s.node[d->r].v, d->v);
    }
    int a = write_expr(&s, s.n_nodes - 1, answer);
    if (prompt_len) *prompt_len = n;
    out[n++] = FG_TOK_THINK;
    n += (int)fg_bytetok_encode(trace, (size_t)k, 0, out + n, (size_t)(FG_CD_MAX_TOKENS - n));
    out[n++] = FG_TOK_END_THINK;
    n += (int)fg_bytetok_encode(answer, (size_t)a, 0, out + n, (size_t)(FG_CD_MAX_TOKENS - n));
    out[n++] = FG_TOK_EOS;
    assert(n <= FG_CD_MAX_TOKENS);
    return n;
}

void fg_countdown_batch(fg_rng *r, int level, int heldout, int32_t *inputs, int32_t *targets, int B, int T) {
    assert(B >= 1 && T >= 1);
    for (int b = 0; b < B; b++) {
        fg_countdown p;
        int32_t ids[FG_CD_MAX_TOKENS];
        int pl = 0, n;
        do { // sampled problems always render (their tree is a solution); the loop is a guard
            fg_countdown_sample(r, level, heldout, &p);
        } while ((n = fg_countdown_render(&p, ids, &pl)) < 0);
        int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            in[t] = t < n ? ids[t] : FG_TOK_PAD;
            tg[t] = (t + 1 < n && t + 1 >= pl) ? ids[t + 1] : -1;
        }
    }
}

// ---- the verifier ------------------------------------------------------------------------------
// Recursive descent over untrusted input: bytes (s) or token ids (ids, where a special id is no
// character). Syntax errors stop the parse; value errors (division by zero or inexact, overflow)
// only mark the result wrong, so the syntax verdict stays whole.
typedef struct {
    const char *s;
    const int32_t *ids;
    size_t len, at;
    int depth, bad_syntax, bad_value, n_lit;
    int64_t lit[FG_CD_MAX_NUMS]; // the first FG_CD_MAX_NUMS literals; n_lit counts all
} cd_parser;

// The character at the cursor, or -1 at the end (or on a special id).
static int peek(const cd_parser *q) {
    if (q->at >= q->len) return -1;
    if (q->s) return (unsigned char)q->s[q->at];
    int32_t id = q->ids[q->at];
    return id >= 0 && id <= 255 ? id : -1;
}

static void skip_space(cd_parser *q) { while (peek(q) == ' ') q->at++; }

static int64_t combine(cd_parser *q, int op, int64_t a, int64_t b) {
    int64_t z = 0;
    if (q->bad_value) return 0;
    switch (op) {
    case '+': q->bad_value = __builtin_add_overflow(a, b, &z); break;
    case '-': q->bad_value = __builtin_sub_overflow(a, b, &z); break;
    case '*': q->bad_value = __builtin_mul_overflow(a, b, &z); break;
    default:
        if (b == 0 || (a == INT64_MIN && b == -1) || a % b) q->bad_value = 1;
        else z = a / b;
    }
    return q->bad_value ? 0 : z;
}

static int64_t parse_sum(cd_parser *q);

// factor := number | '(' sum ')'
static int64_t parse_factor(cd_parser *q) {
    skip_space(q);
    int c = peek(q);
    if (c == '(') {
        if (++q->depth > FG_CD_MAX_DEPTH) { q->bad_syntax = 1; return 0; }
        q->at++;
        int64_t v = parse_sum(q);
        if (q->bad_syntax) return 0;
        skip_space(q);
        if (peek(q) != ')') { q->bad_syntax = 1; return 0; }
        q->at++;
        q->depth--;
        return v;
    }
    if (c < '0' || c > '9') { q->bad_syntax = 1; return 0; }
    int lead_zero = c == '0';
    size_t start = q->at;
    int64_t v = 0;
    for (; (c = peek(q)) >= '0' && c <= '9'; q->at++) {
        if (q->at - start == FG_CD_MAX_DIGITS) { q->bad_syntax = 1; return 0; }
        v = v * 10 + (c - '0');
    }
    if (lead_zero && q->at - start > 1) { q->bad_syntax = 1; return 0; } // "07" is no number
    if (q->n_lit < FG_CD_MAX_NUMS) q->lit[q->n_lit] = v;
    q->n_lit++;
    return v;
}

// term := factor (('*' | '/') factor)*
static int64_t parse_product(cd_parser *q) {
    int64_t v = parse_factor(q);
    for (;;) {
        if (q->bad_syntax) return 0;
        skip_space(q);
        int op = peek(q);
        if (op != '*' && op != '/') return v;
        q->at++;
        int64_t w = parse_factor(q);
        v = combine(q, op, v, w);
    }
}

// sum := term (('+' | '-') term)*
static int64_t parse_sum(cd_parser *q) {
    int64_t v = parse_product(q);
    for (;;) {
        if (q->bad_syntax) return 0;
        skip_space(q);
        int op = peek(q);
        if (op != '+' && op != '-') return v;
        q->at++;
        int64_t w = parse_product(q);
        v = combine(q, op, v, w);
    }
}

// Parses all of q's input; returns 1 for valid syntax and sets *correct (may be NULL) as
// fg_countdown_parse describes.
static int verify(cd_parser *q, const fg_countdown *p, int *correct) {
    if (correct) *correct = 0;
    int64_t v = parse_sum(q);
    if (!q->bad_syntax) { skip_space(q); if (q->at != q->len) q->bad_syntax = 1; }
    if (q->bad_syntax) return 0;
    if (!correct || !p || q->bad_value || !in_range(p) || q->n_lit != p->n || v != p->target) return 1;
    int used[FG_CD_MAX_NUMS] = {0};
    for (int i = 0; i < q->n_lit; i++) { // each literal takes one unused equal number
        int found = 0;
        for (int j = 0; j < p->n && !found; j++)
            if (!used[j] && p->nums[j] == q->lit[i]) used[j] = found = 1;
        if (!found) return 1;
    }
    *correct = 1;
    return 1;
}

int fg_countdown_parse(const fg_countdown *p, const char *expr, size_t len, int *correct) {
    cd_parser q = {.s = expr ? expr : "", .len = expr ? len : 0};
    return verify(&q, p, correct);
}

int fg_countdown_check_expr(const fg_countdown *p, const char *expr, size_t len) {
    int ok = 0;
    fg_countdown_parse(p, expr, len, &ok);
    return ok;
}

int fg_countdown_check(const fg_countdown *p, const int32_t *gen, int n, int *format_ok) {
    if (format_ok) *format_ok = 0;
    int e = 0;
    while (e < n && gen[e] != FG_TOK_END_THINK) e++;
    if (e >= n) return 0;
    int end = e + 1;
    while (end < n && gen[end] != FG_TOK_EOS) end++;
    cd_parser q = {.ids = gen + e + 1, .len = (size_t)(end - e - 1)};
    for (size_t i = 0; i < q.len; i++) // a special id inside the answer: not text, not an answer
        if (q.ids[i] < 0 || q.ids[i] > 255) return 0;
    int correct = 0, syntax = verify(&q, p, &correct);
    if (format_ok) {
        int clean = gen[0] == FG_TOK_THINK;
        for (int i = 1; i < e && clean; i++) clean = gen[i] >= 0 && gen[i] <= 255;
        *format_ok = clean && syntax && end < n;
    }
    return correct;
}
