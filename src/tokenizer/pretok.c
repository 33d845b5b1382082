// pretok.c: see pretok.h. Text is decoded once into code points with their class bits; each
// step splits a piece into matches and the gaps between them (both kept: "Isolated") and hands
// every sub-piece to the next step, so no piece lists are ever built.
#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAT_BIT(c) (1u << (c))
#define CATS_L (CAT_BIT(FG_UC_LU) | CAT_BIT(FG_UC_LL) | CAT_BIT(FG_UC_LT) | CAT_BIT(FG_UC_LM) | CAT_BIT(FG_UC_LO))
#define CATS_M (CAT_BIT(FG_UC_MN) | CAT_BIT(FG_UC_MC) | CAT_BIT(FG_UC_ME))
#define CATS_N (CAT_BIT(FG_UC_ND) | CAT_BIT(FG_UC_NL) | CAT_BIT(FG_UC_NO))
#define CATS_P (CAT_BIT(FG_UC_PC) | CAT_BIT(FG_UC_PD) | CAT_BIT(FG_UC_PS) | CAT_BIT(FG_UC_PE) | \
                CAT_BIT(FG_UC_PI) | CAT_BIT(FG_UC_PF) | CAT_BIT(FG_UC_PO))
#define CATS_S (CAT_BIT(FG_UC_SM) | CAT_BIT(FG_UC_SC) | CAT_BIT(FG_UC_SK) | CAT_BIT(FG_UC_SO))
#define CATS_Z (CAT_BIT(FG_UC_ZS) | CAT_BIT(FG_UC_ZL) | CAT_BIT(FG_UC_ZP))
#define CATS_C (CAT_BIT(FG_UC_CN) | CAT_BIT(FG_UC_CC) | CAT_BIT(FG_UC_CF) | CAT_BIT(FG_UC_CS) | CAT_BIT(FG_UC_CO))

// A bracket class or \p{X} or \s. BMP membership is precomputed into a bitmap.
typedef struct {
    int neg, ws;
    uint32_t cats;           // bit per FG_UC_* category
    uint32_t (*ranges)[2];   // inclusive code point ranges
    int nranges;
    uint8_t *bmp;            // (0x10000 / 8) membership bits for U+0000..U+FFFF, neg applied
} cclass;

enum { ST_SIMPLE, ST_V3, ST_QWEN2, ST_LLAMA3, ST_GPT2 };
typedef struct {
    int kind;
    int ws_prefix;   // simple: leading \s?
    int maxrep;      // simple: 0 = unbounded (+), else at most this many (1 = no quantifier)
    int anchored;    // simple: trailing $ (only with \s+ style atoms and +)
    cclass atom;     // simple
} step;

struct fg_pretok { step *steps; int n, cap; };

fg_pretok *fg_pretok_new(void) { return fg_calloc(1, sizeof(fg_pretok), "pre-tokenizer"); }

void fg_pretok_free(fg_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) { free(p->steps[i].atom.ranges); free(p->steps[i].atom.bmp); }
    free(p->steps);
    free(p);
}

int fg_pretok_nsteps(const fg_pretok *p) { return p->n; }

const char *fg_quote(char *out, size_t cap, const char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5];
        if (c == '\r') strcpy(tmp, "\\r");
        else if (c == '\n') strcpy(tmp, "\\n");
        else if (c == '\t') strcpy(tmp, "\\t");
        else if (c < 32 || c == 127) snprintf(tmp, sizeof tmp, "\\x%02x", c);
        else { tmp[0] = (char)c; tmp[1] = 0; }
        size_t l = strlen(tmp);
        if (o + l + 4 > cap) { memcpy(out + o, "...", 3); o += 3; break; }
        memcpy(out + o, tmp, l); o += l;
    }
    out[o] = 0;
    return out;
}

static step *push_step(fg_pretok *p) {
    if (p->n == p->cap) {
        int nc = p->cap ? 2 * p->cap : 8;
        step *s = realloc(p->steps, (size_t)nc * sizeof(step));
        if (!s) { fg_set_error("pre-tokenizer: out of memory"); return NULL; }
        p->steps = s; p->cap = nc;
    }
    step *s = &p->steps[p->n++];
    memset(s, 0, sizeof *s);
    return s;
}

static int is_ws(uint32_t cp) { return (fg_uc_flags(cp) & FG_UCF_WS) != 0; }

static int cc_has_slow(const cclass *c, uint32_t cp) {
    int r = (c->cats >> fg_uc_cat(cp)) & 1;
    if (!r && c->ws) r = is_ws(cp);
    for (int i = 0; !r && i < c->nranges; i++) r = cp >= c->ranges[i][0] && cp <= c->ranges[i][1];
    return r ^ c->neg;
}

static inline int cc_has(const cclass *c, uint32_t cp) {
    if (cp < 0x10000) return (c->bmp[cp >> 3] >> (cp & 7)) & 1;
    return cc_has_slow(c, cp);
}

static int cc_finish(cclass *c) {
    c->bmp = calloc(0x10000 / 8, 1);
    if (!c->bmp) return fg_set_error("pre-tokenizer: out of memory");
    for (uint32_t cp = 0; cp < 0x10000; cp++)
        if (cc_has_slow(c, cp)) c->bmp[cp >> 3] |= (uint8_t)(1u << (cp & 7));
    return 0;
}

static int cc_add_range(cclass *c, uint32_t lo, uint32_t hi) {
    uint32_t (*r)[2] = realloc(c->ranges, (size_t)(c->nranges + 1) * sizeof *r);
    if (!r) return fg_set_error("pre-tokenizer: out of memory");
    c->ranges = r;
    r[c->nranges][0] = lo; r[c->nranges][1] = hi;
    c->nranges++;
    return 0;
}

// Category mask of a \p{NAME}: one- and two-letter general categories. 0 if unknown.
static uint32_t prop_cats(const char *name, size_t n) {
    static const char *two[FG_UC_NCAT] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
        "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp",
        "Cc", "Cf", "Cs", "Co"};
    if (n == 1) switch (name[0]) {
        case 'L': return CATS_L; case 'M': return CATS_M; case 'N': return CATS_N;
        case 'P': return CATS_P; case 'S': return CATS_S; case 'Z': return CATS_Z; case 'C': return CATS_C;
        default: return 0;
    }
    if (n == 2) for (int i = 0; i < FG_UC_NCAT; i++) if (!memcmp(two[i], name, 2)) return CAT_BIT(i);
    return 0;
}

typedef struct { const char *s; size_t n, i; } rx;

// Parses "\p{X}" at r->i (after the backslash and 'p'); adds its categories to c.
static int parse_prop(rx *r, cclass *c) {
    if (r->i >= r->n || r->s[r->i] != '{') return -1;
    size_t st = ++r->i;
    while (r->i < r->n && r->s[r->i] != '}') r->i++;
    if (r->i >= r->n) return -1;
    uint32_t m = prop_cats(r->s + st, r->i - st);
    r->i++;
    if (!m) return -1;
    c->cats |= m;
    return 0;
}

static int hexval(const char *s, int n, uint32_t *v) {
    *v = 0;
    for (int k = 0; k < n; k++) {
        char ch = s[k]; int d;
        if (ch >= '0' && ch <= '9') d = ch - '0';
        else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
        else return -1;
        *v = *v * 16 + (uint32_t)d;
    }
    return 0;
}

// One literal inside a class (possibly escaped). Returns 0 and *cp, 1 if it was a class escape
// (\p, \s) already added to c, -1 on error.
static int class_atom(rx *r, cclass *c, uint32_t *cp) {
    if (r->i >= r->n) return -1;
    if (r->s[r->i] == '\\') {
        if (++r->i >= r->n) return -1;
        char e = r->s[r->i++];
        switch (e) {
        case 'r': *cp = '\r'; return 0;
        case 'n': *cp = '\n'; return 0;
        case 't': *cp = '\t'; return 0;
        case 'f': *cp = '\f'; return 0;
        case 'v': *cp = '\v'; return 0;
        case 's': c->ws = 1; return 1;
        case 'p': return parse_prop(r, c) ? -1 : 1;
        case 'u':
            if (r->i + 4 > r->n || hexval(r->s + r->i, 4, cp)) return -1;
            r->i += 4; return 0;
        case 'x':
            if (r->i + 2 > r->n || hexval(r->s + r->i, 2, cp)) return -1;
            r->i += 2; return 0;
        default:
            if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) return -1;
            *cp = (unsigned char)e; return 0;
        }
    }
    int l;
    *cp = fg_utf8_decode((const unsigned char *)r->s + r->i, r->n - r->i, &l);
    if (*cp >= FG_UC_INVALID) return -1;
    r->i += (size_t)l;
    return 0;
}

static int parse_class(rx *r, cclass *c) {
    r->i++; // '['
    if (r->i < r->n && r->s[r->i] == '^') { c->neg = 1; r->i++; }
    int first = 1;
    while (r->i < r->n && (r->s[r->i] != ']' || first)) {
        first = 0;
        uint32_t lo, hi;
        int k = class_atom(r, c, &lo);
        if (k < 0) return -1;
        if (k == 1) continue;
        hi = lo;
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            r->i++;
            if (class_atom(r, c, &hi) != 0 || hi < lo) return -1;
        }
        if (cc_add_range(c, lo, hi)) return -1;
    }
    if (r->i >= r->n) return -1;
    r->i++; // ']'
    return 0;
}

// [\s?] ATOM [+ | {1,k}] [$]
static int parse_simple(const char *pat, size_t len, step *s) {
    rx r = {pat, len, 0};
    s->kind = ST_SIMPLE;
    if (len >= 3 && !memcmp(pat, "\\s?", 3)) { s->ws_prefix = 1; r.i = 3; }
    if (r.i >= len) return -1;
    if (pat[r.i] == '[') { if (parse_class(&r, &s->atom)) return -1; }
    else if (pat[r.i] == '\\' && r.i + 1 < len && pat[r.i + 1] == 'p') { r.i += 2; if (parse_prop(&r, &s->atom)) return -1; }
    else if (pat[r.i] == '\\' && r.i + 1 < len && pat[r.i + 1] == 's') { r.i += 2; s->atom.ws = 1; }
    else return -1;
    s->maxrep = 1;
    if (r.i < len && pat[r.i] == '+') { s->maxrep = 0; r.i++; }
    else if (r.i + 4 < len + 1 && pat[r.i] == '{') {
        if (r.i + 5 > len || memcmp(pat + r.i, "{1,", 3) || pat[r.i + 3] < '1' || pat[r.i + 3] > '9' || pat[r.i + 4] != '}') return -1;
        s->maxrep = pat[r.i + 3] - '0';
        r.i += 5;
    }
    if (r.i < len && pat[r.i] == '$') {
        if (s->ws_prefix || s->maxrep != 0) return -1;
        s->anchored = 1; r.i++;
    }
    if (r.i != len) return -1;
    return cc_finish(&s->atom);
}

// The alternations recognised verbatim, written with \r and \n as regex escapes (patterns that
// hold raw CR/LF characters are converted to this form before comparing).
static const char V3_MAIN[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_MAIN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_MAIN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT2_MAIN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int canon_eq(const char *pat, size_t len, const char *want) {
    size_t w = 0, wn = strlen(want);
    for (size_t i = 0; i < len; i++) {
        if (pat[i] == '\r' || pat[i] == '\n') {
            if (w + 2 > wn || want[w] != '\\' || want[w + 1] != (pat[i] == '\r' ? 'r' : 'n')) return 0;
            w += 2;
        } else {
            if (w >= wn || want[w] != pat[i]) return 0;
            w++;
        }
    }
    return w == wn;
}

int fg_pretok_add_split(fg_pretok *p, const char *pat, size_t len) {
    static const struct { const char *pat; int kind; } alts[] = {
        {V3_MAIN, ST_V3}, {QWEN2_MAIN, ST_QWEN2}, {LLAMA3_MAIN, ST_LLAMA3}, {GPT2_MAIN, ST_GPT2}};
    for (size_t k = 0; k < sizeof alts / sizeof alts[0]; k++)
        if (canon_eq(pat, len, alts[k].pat)) {
            step *s = push_step(p);
            if (!s) return -1;
            s->kind = alts[k].kind;
            return 0;
        }
    step *s = push_step(p);
    if (!s) return -1;
    if (parse_simple(pat, len, s)) {
        free(s->atom.ranges); free(s->atom.bmp);
        p->n--;
        char q[256];
        return fg_set_error("unsupported pre-tokenizer regex \"%s\" (docs/tokenizer.md lists the supported forms)",
                            fg_quote(q, sizeof q, pat, len));
    }
    return 0;
}

int fg_pretok_add_digits(fg_pretok *p, int individual) {
    return individual ? fg_pretok_add_split(p, "\\p{N}", 5) : fg_pretok_add_split(p, "\\p{N}+", 6);
}

int fg_pretok_add_gpt2(fg_pretok *p) { return fg_pretok_add_split(p, GPT2_MAIN, strlen(GPT2_MAIN)); }

// llama.cpp's pre-tokenizer names (GGUF tokenizer.ggml.pre) and the Hugging Face Split
// sequences they stand for. DeepSeek-LLM's letter class is written with \u escapes where the
// original holds characters that Unicode normalization (NFC) would change (U+1F7D, U+1FD3,
// U+1FDB, U+1FBE, U+2126, U+212A): copies of it that went through NFC have reversed or
// widened ranges (K-ℭ becomes U+004B-U+212D).
static const char *DSL_STEPS[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-"
    "ὗὙὛὝ\\u1F5F-\\u1F7Dᾀ-ᾴᾶ-ᾼ\\u1FBEῂ-ῄῆ-ῌ\\u1FD0-\\u1FD3\\u1FD6-\\u1FDBῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\u2126ℨ\\u212A-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-"
    "ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
    NULL};
static const char *DSC_STEPS[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}", NULL};
static const char *DS3_STEPS[] = {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", V3_MAIN, NULL};
static const char *QWEN2_STEPS[] = {QWEN2_MAIN, NULL};
static const char *LLAMA3_STEPS[] = {LLAMA3_MAIN, NULL};
static const char *GPT2_STEPS[] = {GPT2_MAIN, NULL};

int fg_pretok_add_named(fg_pretok *p, const char *name) {
    static const struct { const char *name; const char **steps; } named[] = {
        {"deepseek-llm", DSL_STEPS}, {"deepseek-coder", DSC_STEPS}, {"deepseek-v3", DS3_STEPS},
        {"qwen2", QWEN2_STEPS}, {"llama-bpe", LLAMA3_STEPS}, {"llama3", LLAMA3_STEPS}, {"gpt-2", GPT2_STEPS}, {"gpt2", GPT2_STEPS},
        {"default", GPT2_STEPS}};
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++)
        if (!strcmp(name, named[k].name)) {
            for (const char **s = named[k].steps; *s; s++)
                if (fg_pretok_add_split(p, *s, strlen(*s))) return -1;
            return 0;
        }
    char q[80];
    return fg_set_error("unknown pre-tokenizer \"%s\" (supported: deepseek-llm, deepseek-coder, deepseek-v3, "
                        "qwen2, llama-bpe, gpt-2)", fg_quote(q, sizeof q, name, strlen(name)));
}

// ---- matching ------------------------------------------------------------------------------
typedef struct {
    const uint32_t *cp; const uint8_t *fl; const size_t *off;
    const fg_pretok *p; fg_pretok_fn fn; void *ctx; int stop;
} run_ctx;

#define F_L FG_UCF_L
#define F_N FG_UCF_N
#define F_P FG_UCF_P
#define F_S FG_UCF_S
#define F_M FG_UCF_M
#define F_WS FG_UCF_WS

static inline size_t run_fl(const uint8_t *fl, size_t i, size_t b, unsigned mask) {
    while (i < b && (fl[i] & mask)) i++;
    return i;
}
static inline size_t run_nl(const uint32_t *cp, size_t i, size_t b) {
    while (i < b && (cp[i] == '\r' || cp[i] == '\n')) i++;
    return i;
}
static inline int ascii_alpha(uint32_t c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static inline int ascii_punct(uint32_t c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

// The three whitespace alternatives shared by the big patterns: \s*[\r\n]+ (when with_nl),
// \s+(?!\S), \s+. Requires fl[i] & WS.
static size_t ws_tail(const run_ctx *c, size_t i, size_t b, int with_nl) {
    size_t k = run_fl(c->fl, i, b, F_WS);
    if (with_nl) {
        for (size_t j = k; j > i; j--)
            if (c->cp[j - 1] == '\r' || c->cp[j - 1] == '\n') return j;
    }
    if (k == b) return k;
    if (k - i >= 2) return k - 1;
    return k;
}

static size_t m_v3(const run_ctx *c, size_t i, size_t b) {
    const uint32_t *cp = c->cp; const uint8_t *fl = c->fl;
    uint32_t ch = cp[i]; unsigned f = fl[i];
    if (ascii_punct(ch) && i + 1 < b && ascii_alpha(cp[i + 1])) {
        size_t j = i + 1;
        while (j < b && ascii_alpha(cp[j])) j++;
        return j;
    }
    if (ch != '\r' && ch != '\n' && !(f & (F_L | F_P | F_S)) && i + 1 < b && (fl[i + 1] & (F_L | F_M)))
        return run_fl(fl, i + 1, b, F_L | F_M);
    if (f & (F_L | F_M)) return run_fl(fl, i, b, F_L | F_M);
    if (ch == ' ' && i + 1 < b && (fl[i + 1] & (F_P | F_S))) return run_nl(cp, run_fl(fl, i + 1, b, F_P | F_S), b);
    if (f & (F_P | F_S)) return run_nl(cp, run_fl(fl, i, b, F_P | F_S), b);
    if (f & F_WS) return ws_tail(c, i, b, 1);
    return i;
}

static inline uint32_t fold(uint32_t ch) { return ch == 0x17F ? 's' : (ch < 128 ? (ch | 32) : ch); }

// 's 't 're 've 'm 'll 'd (case-insensitive when ci); returns the end or i.
static size_t contraction(const uint32_t *cp, size_t i, size_t b, int ci) {
    if (cp[i] != '\'' || i + 1 >= b) return i;
    uint32_t a = ci ? fold(cp[i + 1]) : cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= b) return i;
    uint32_t z = ci ? fold(cp[i + 2]) : cp[i + 2];
    if ((a == 'r' && z == 'e') || (a == 'v' && z == 'e') || (a == 'l' && z == 'l')) return i + 3;
    return i;
}

// Qwen2 (maxd 1) and Llama-3 (maxd 3).
static size_t m_qwen(const run_ctx *c, size_t i, size_t b, int maxd) {
    const uint32_t *cp = c->cp; const uint8_t *fl = c->fl;
    uint32_t ch = cp[i]; unsigned f = fl[i];
    size_t e = contraction(cp, i, b, 1);
    if (e > i) return e;
    if (ch != '\r' && ch != '\n' && !(f & (F_L | F_N)) && i + 1 < b && (fl[i + 1] & F_L)) return run_fl(fl, i + 1, b, F_L);
    if (f & F_L) return run_fl(fl, i, b, F_L);
    if (f & F_N) {
        size_t j = i;
        while (j < b && j - i < (size_t)maxd && (fl[j] & F_N)) j++;
        return j;
    }
    if (ch == ' ' && i + 1 < b && !(fl[i + 1] & (F_WS | F_L | F_N))) {
        size_t j = i + 1;
        while (j < b && !(fl[j] & (F_WS | F_L | F_N))) j++;
        return run_nl(cp, j, b);
    }
    if (!(f & (F_WS | F_L | F_N))) {
        size_t j = i;
        while (j < b && !(fl[j] & (F_WS | F_L | F_N))) j++;
        return run_nl(cp, j, b);
    }
    return ws_tail(c, i, b, 1);
}

static size_t m_gpt2(const run_ctx *c, size_t i, size_t b) {
    const uint32_t *cp = c->cp; const uint8_t *fl = c->fl;
    size_t e = contraction(cp, i, b, 0);
    if (e > i) return e;
    size_t j = (cp[i] == ' ' && i + 1 < b) ? i + 1 : i;
    for (int pass = 0; pass < 2; pass++, j = i) {
        if (fl[j] & F_L) return run_fl(fl, j, b, F_L);
        if (fl[j] & F_N) return run_fl(fl, j, b, F_N);
        if (!(fl[j] & (F_WS | F_L | F_N))) {
            while (j < b && !(fl[j] & (F_WS | F_L | F_N))) j++;
            return j;
        }
        if (j == i) break;
    }
    if (fl[i] & F_WS) return ws_tail(c, i, b, 0);
    return i;
}

// Simple form. *next: where the search resumes after a failed match at i.
static size_t m_simple(const run_ctx *c, const step *s, size_t i, size_t b, size_t *next) {
    const cclass *a = &s->atom;
    if (s->anchored) {
        size_t j = i;
        while (j < b && cc_has(a, c->cp[j])) j++;
        if (j == b && j > i) return j;
        *next = j > i ? j : i + 1;
        return i;
    }
    size_t st = i;
    if (s->ws_prefix && (c->fl[i] & F_WS) && i + 1 < b && cc_has(a, c->cp[i + 1])) st = i + 1;
    else if (!cc_has(a, c->cp[i])) return i;
    size_t j = st + 1;
    while (j < b && (s->maxrep == 0 || j - st < (size_t)s->maxrep) && cc_has(a, c->cp[j])) j++;
    return j;
}

static void apply(run_ctx *c, int k, size_t a, size_t b);

static inline void emit(run_ctx *c, int k, size_t a, size_t b) {
    if (c->stop || a >= b) return;
    if (k + 1 < c->p->n) apply(c, k + 1, a, b);
    else c->stop = c->fn(c->ctx, c->off[a], c->off[b]);
}

static void apply(run_ctx *c, int k, size_t a, size_t b) {
    const step *s = &c->p->steps[k];
    size_t i = a, last = a;
    while (i < b && !c->stop) {
        size_t e, next = i + 1;
        switch (s->kind) {
        case ST_V3: e = m_v3(c, i, b); break;
        case ST_QWEN2: e = m_qwen(c, i, b, 1); break;
        case ST_LLAMA3: e = m_qwen(c, i, b, 3); break;
        case ST_GPT2: e = m_gpt2(c, i, b); break;
        default: e = m_simple(c, s, i, b, &next); break;
        }
        if (e > i) {
            emit(c, k, last, i);
            emit(c, k, i, e);
            last = i = e;
        } else i = next;
    }
    emit(c, k, last, b);
}

int fg_pretok_run(const fg_pretok *p, const char *text, size_t len, fg_pretok_fn fn, void *ctx) {
    if (len == 0) return 0;
    uint32_t *cp = malloc(len * sizeof *cp);
    uint8_t *fl = malloc(len);
    size_t *off = malloc((len + 1) * sizeof *off);
    if (!cp || !fl || !off) {
        free(cp); free(fl); free(off);
        return fg_set_error("pre-tokenizer: out of memory for %zu bytes of text", len);
    }
    size_t n = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        int l;
        uint32_t u = s[i] < 0x80 ? s[i] : fg_utf8_decode(s + i, len - i, &l);
        if (s[i] < 0x80) l = 1;
        cp[n] = u;
        fl[n] = (uint8_t)fg_uc_flags(u);
        off[n] = i;
        n++;
        i += (size_t)l;
    }
    off[n] = len;
    run_ctx c = {cp, fl, off, p, fn, ctx, 0};
    if (p->n == 0) c.stop = fn(ctx, 0, len);
    else apply(&c, 0, 0, n);
    free(cp); free(fl); free(off);
    return c.stop ? -1 : 0;
}

const char *fg_pretok_name_of(const char *const *patterns, int n, int bytelevel_regex) {
    static const struct { const char *name; const char **steps; } named[] = {
        {"deepseek-v3", DS3_STEPS}, {"deepseek-llm", DSL_STEPS}, {"deepseek-coder", DSC_STEPS},
        {"qwen2", QWEN2_STEPS}, {"llama-bpe", LLAMA3_STEPS}, {"gpt-2", GPT2_STEPS}};
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++) {
        const char **s = named[k].steps;
        int i = 0;
        for (; i < n && s[i]; i++)
            if (!canon_eq(patterns[i], strlen(patterns[i]), s[i])) break;
        if (i < n) continue;
        if (!s[i] && !bytelevel_regex) return named[k].name;
        if (s[i] && !strcmp(s[i], GPT2_MAIN) && !s[i + 1] && bytelevel_regex) return named[k].name;
    }
    return NULL;
}
