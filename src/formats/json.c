// json.c: see json.h. A recursive-descent parser over a bounded buffer that allocates every node
// and every decoded string from one chunked arena. Line/column tracking is incremental (raw
// newlines can only appear in whitespace, never inside strings), so errors cost nothing until
// they happen and parsing stays linear.
#include "formats/json.h"
#include "util.h"

#include <assert.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---- arena ---------------------------------------------------------------------------------
// Blocks form a list headed by the first block; the root node is always the first allocation of
// the first block, which is how fg_json_free finds the arena from the root pointer.
#define ARENA_MAGIC 0x6a736f6e61726e61ull // "jsonarna"
#define ARENA_FIRST 4096                   // first block's payload; later blocks double
#define ALIGN_UP(x) (((x) + (_Alignof(fg_json) - 1)) & ~(size_t)(_Alignof(fg_json) - 1))

typedef struct arena_block {
    uint64_t magic;
    struct arena_block *next;
    size_t cap, used;
} arena_block;
#define BLOCK_HDR ALIGN_UP(sizeof(arena_block))

typedef struct {
    arena_block *head, *cur;
    size_t next_cap;
} arena;

static arena_block *block_new(size_t cap) {
    arena_block *b = malloc(BLOCK_HDR + cap);
    if (!b) return NULL;
    b->magic = ARENA_MAGIC;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

static void arena_free(arena_block *head) {
    while (head) {
        arena_block *nx = head->next;
        head->magic = 0;
        free(head);
        head = nx;
    }
}

// Returns n bytes aligned for fg_json, or NULL when out of memory (caller reports).
static void *arena_alloc(arena *a, size_t n) {
    if (n > SIZE_MAX / 4) return NULL; // absurd; also keeps the sums below from wrapping
    n = ALIGN_UP(n);
    if (!a->head) {
        size_t cap = FG_MAX(n, (size_t)ARENA_FIRST);
        if (!(a->head = a->cur = block_new(cap))) return NULL;
        a->next_cap = cap * 2;
    }
    arena_block *b = a->cur;
    if (b->cap - b->used < n) {
        size_t cap = FG_MAX(n, a->next_cap);
        if (!(b = block_new(cap))) return NULL;
        b->next = a->head->next; // head stays first: it holds the root
        a->head->next = b;
        a->cur = b;
        if (a->next_cap < ((size_t)64 << 20)) a->next_cap *= 2;
    }
    void *p = (char *)b + BLOCK_HDR + b->used;
    b->used += n;
    return p;
}

// ---- UTF-8 ---------------------------------------------------------------------------------
// Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 if s[0] does not start one
// (stray continuation, overlong form, surrogate, > U+10FFFF, or truncated).
static int utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      // no overlongs
        else if (c == 0xED) hi = 0x9F; // no UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;      // no overlongs
        else if (c == 0xF4) hi = 0x8F; // <= U+10FFFF
    } else return 0;
    if (n < (size_t)len || s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// ---- parser --------------------------------------------------------------------------------
typedef struct {
    const unsigned char *s;
    size_t len, pos;
    size_t line_start; // offset of the first byte of the current line
    int line;
    int depth;
    char dp;           // the C library's decimal point in the current locale
    const char *where;
    arena a;
} parser;

static int col_at(const parser *p, size_t pos) {
    size_t c = pos - p->line_start + 1;
    return c > INT_MAX ? INT_MAX : (int)c;
}

// Records "<where>:<line>:<col>: <msg>" for a position on the current line; returns -1.
static int fail_at(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(parser *p, size_t pos, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fg_set_error("%s:%d:%d: %s", p->where ? p->where : "<json>", p->line, col_at(p, pos), msg);
}

static int fail_oom(parser *p) { return fail_at(p, p->pos, "out of memory"); }

// Describes the byte at pos for "unexpected ..." messages.
static const char *describe(const parser *p, size_t pos, char *buf, size_t n) {
    if (pos >= p->len) return "end of input";
    unsigned c = p->s[pos];
    if (c >= 0x21 && c < 0x7F) snprintf(buf, n, "'%c'", (char)c);
    else snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        unsigned c = p->s[p->pos];
        if (c == '\n') { p->line += (p->line < INT_MAX); p->line_start = p->pos + 1; }
        else if (c != ' ' && c != '\t' && c != '\r') return;
        p->pos++;
    }
}

static int hex4(const unsigned char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

// p->pos is at the opening quote. Decodes into the arena; *out is NUL-terminated.
static int parse_string(parser *p, char **out, size_t *out_len) {
    const unsigned char *s = p->s;
    size_t start = p->pos + 1, end = start;
    // Pass 1: find the closing quote so the decoded size is bounded before decoding. Escapes
    // never decode to more bytes than they occupy, so end - start + 1 is always enough.
    while (end < p->len && s[end] != '"') end += (s[end] == '\\') ? 2 : 1;
    if (end >= p->len) return fail_at(p, p->pos, "unterminated string");
    char *buf = arena_alloc(&p->a, end - start + 1);
    if (!buf) return fail_oom(p);
    // Pass 2: validate and decode.
    size_t o = 0, i = start;
    while (i < end) {
        unsigned c = s[i];
        if (c >= 0x20 && c != '\\' && c < 0x80) { buf[o++] = (char)c; i++; continue; }
        if (c < 0x20) return fail_at(p, i, "control character 0x%02x in string (must be escaped)", c);
        if (c >= 0x80) {
            int n = utf8_seq_len(s + i, end - i);
            if (!n) return fail_at(p, i, "invalid UTF-8 byte 0x%02x in string at byte offset %zu", c, i);
            memcpy(buf + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
            continue;
        }
        // backslash; pass 1 guarantees i + 1 < end
        unsigned e = s[i + 1];
        switch (e) {
        case '"': case '\\': case '/': buf[o++] = (char)e; i += 2; continue;
        case 'b': buf[o++] = '\b'; i += 2; continue;
        case 'f': buf[o++] = '\f'; i += 2; continue;
        case 'n': buf[o++] = '\n'; i += 2; continue;
        case 'r': buf[o++] = '\r'; i += 2; continue;
        case 't': buf[o++] = '\t'; i += 2; continue;
        case 'u': break;
        default:
            if (e >= 0x21 && e < 0x7F) return fail_at(p, i, "invalid escape '\\%c' in string", (char)e);
            return fail_at(p, i, "invalid escape: backslash followed by byte 0x%02x in string", e);
        }
        uint32_t cp, lo;
        if (end - i < 6 || hex4(s + i + 2, &cp)) return fail_at(p, i, "\\u must be followed by 4 hex digits");
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return fail_at(p, i, "lone low surrogate \\u%04X in string", (unsigned)cp);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s + i + 8, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return fail_at(p, i, "lone high surrogate \\u%04X in string (needs a following \\uDC00-\\uDFFF)",
                               (unsigned)cp);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 12;
        } else i += 6;
        o += utf8_put(buf + o, cp);
    }
    buf[o] = 0;
    *out = buf;
    *out_len = o;
    p->pos = end + 1;
    return 0;
}

static int parse_number(parser *p, double *out) {
    const unsigned char *s = p->s;
    size_t start = p->pos, i = start, n = p->len;
    if (i < n && s[i] == '-') i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return fail_at(p, i, "expected a digit after '-'");
    if (s[i] == '0') {
        i++;
        if (i < n && s[i] >= '0' && s[i] <= '9') return fail_at(p, start, "numbers must not have leading zeros");
    } else while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return fail_at(p, i, "expected a digit after '.'");
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return fail_at(p, i, "expected a digit in the exponent");
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    // strtod needs a NUL-terminated copy; the grammar above already fixed the extent, so strtod
    // only converts. The '.' is mapped to the locale's decimal point for non-"C" locales.
    size_t k = i - start;
    char small[64], *buf = k < sizeof small ? small : malloc(k + 1);
    if (!buf) return fail_oom(p);
    memcpy(buf, s + start, k);
    buf[k] = 0;
    if (p->dp != '.') {
        char *dot = memchr(buf, '.', k);
        if (dot) *dot = p->dp;
    }
    double v = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (isinf(v)) return fail_at(p, start, "number out of range for a double");
    *out = v;
    p->pos = i;
    return 0;
}

static fg_json *parse_value(parser *p);

static fg_json *new_node(parser *p, fg_json_type type) {
    fg_json *j = arena_alloc(&p->a, sizeof *j);
    if (!j) { fail_oom(p); return NULL; }
    memset(j, 0, sizeof *j);
    j->type = type;
    j->line = p->line;
    j->col = col_at(p, p->pos);
    return j;
}

// Shared by arrays and objects: p->pos is at the opening bracket.
static fg_json *parse_container(parser *p, fg_json_type type) {
    const char close = type == FG_JSON_ARRAY ? ']' : '}';
    char d[32];
    fg_json *j = new_node(p, type);
    if (!j) return NULL;
    if (++p->depth > FG_JSON_MAX_DEPTH) {
        fail_at(p, p->pos, "nesting deeper than %d levels", FG_JSON_MAX_DEPTH);
        return NULL;
    }
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) { p->pos++; p->depth--; return j; }
    fg_json **tail = &j->child;
    for (;;) {
        char *key = NULL;
        size_t key_len = 0;
        if (type == FG_JSON_OBJECT) {
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                if (j->n > 0 && p->pos < p->len && p->s[p->pos] == '}')
                    fail_at(p, p->pos, "trailing comma before '}'");
                else fail_at(p, p->pos, "expected a string key, got %s", describe(p, p->pos, d, sizeof d));
                return NULL;
            }
            if (parse_string(p, &key, &key_len)) return NULL;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                fail_at(p, p->pos, "expected ':' after object key, got %s", describe(p, p->pos, d, sizeof d));
                return NULL;
            }
            p->pos++;
            skip_ws(p);
        } else if (j->n > 0 && p->pos < p->len && p->s[p->pos] == ']') {
            fail_at(p, p->pos, "trailing comma before ']'");
            return NULL;
        }
        fg_json *v = parse_value(p);
        if (!v) return NULL;
        v->key = key;
        v->key_len = key_len;
        *tail = v;
        tail = &v->next;
        if (j->n == INT_MAX) { fail_at(p, p->pos, "too many elements"); return NULL; }
        j->n++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; skip_ws(p); continue; }
        if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) { p->pos++; break; }
        fail_at(p, p->pos, "expected ',' or '%c', got %s", close, describe(p, p->pos, d, sizeof d));
        return NULL;
    }
    p->depth--;
    return j;
}

// p->pos is at the first byte of a value (whitespace already skipped).
static fg_json *parse_value(parser *p) {
    char d[32];
    if (p->pos >= p->len) { fail_at(p, p->pos, "expected a value, got end of input"); return NULL; }
    fg_json *j;
    switch (p->s[p->pos]) {
    case '{': return parse_container(p, FG_JSON_OBJECT);
    case '[': return parse_container(p, FG_JSON_ARRAY);
    case '"':
        if (!(j = new_node(p, FG_JSON_STRING)) || parse_string(p, &j->str, &j->len)) return NULL;
        return j;
    case 't': case 'f': case 'n': {
        static const char *const words[3] = {"true", "false", "null"};
        int w = p->s[p->pos] == 't' ? 0 : p->s[p->pos] == 'f' ? 1 : 2;
        size_t k = strlen(words[w]);
        if (p->len - p->pos < k || memcmp(p->s + p->pos, words[w], k)) break;
        if (!(j = new_node(p, w == 2 ? FG_JSON_NULL : FG_JSON_BOOL))) return NULL;
        j->boolean = w == 0;
        p->pos += k;
        return j;
    }
    default:
        if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9')) {
            if (!(j = new_node(p, FG_JSON_NUMBER)) || parse_number(p, &j->num)) return NULL;
            return j;
        }
    }
    fail_at(p, p->pos, "expected a value, got %s", describe(p, p->pos, d, sizeof d));
    return NULL;
}

fg_json *fg_json_parse(const char *text, size_t len, const char *where) {
    if (!text && len) { fg_set_error("%s: no text", where ? where : "<json>"); return NULL; }
    parser p = {.s = (const unsigned char *)text, .len = len, .line = 1, .where = where};
    const char *dp = localeconv()->decimal_point;
    p.dp = dp && dp[0] && !dp[1] ? dp[0] : '.';
    // The root must be the first arena allocation (see fg_json_free).
    fg_json *root = NULL;
    skip_ws(&p);
    if (p.pos >= p.len) fail_at(&p, p.pos, "empty document (expected a JSON value)");
    else if ((root = parse_value(&p))) {
        skip_ws(&p);
        if (p.pos < p.len) {
            char d[32];
            fail_at(&p, p.pos, "unexpected %s after the JSON value", describe(&p, p.pos, d, sizeof d));
            root = NULL;
        }
    }
    if (!root) { arena_free(p.a.head); return NULL; }
    assert((char *)root == (char *)p.a.head + BLOCK_HDR);
    return root;
}

void fg_json_free(fg_json *j) {
    if (!j) return;
    arena_block *head = (arena_block *)(void *)((char *)j - BLOCK_HDR);
    assert(head->magic == ARENA_MAGIC && "fg_json_free: not a root returned by fg_json_parse");
    arena_free(head);
}

const fg_json *fg_json_get(const fg_json *obj, const char *key) {
    if (!obj || obj->type != FG_JSON_OBJECT || !key) return NULL;
    size_t k = strlen(key);
    const fg_json *found = NULL;
    for (const fg_json *c = obj->child; c; c = c->next)
        if (c->key_len == k && !memcmp(c->key, key, k)) found = c;
    return found;
}

const fg_json *fg_json_dup_key(const fg_json *obj) {
    if (!obj || obj->type != FG_JSON_OBJECT) return NULL;
    for (const fg_json *c = obj->child; c; c = c->next)
        for (const fg_json *d = obj->child; d != c; d = d->next)
            if (d->key_len == c->key_len && !memcmp(d->key, c->key, c->key_len)) return c;
    return NULL;
}

const char *fg_json_type_article(fg_json_type t) {
    switch (t) {
    case FG_JSON_NULL: return "null";
    case FG_JSON_BOOL: return "a boolean";
    case FG_JSON_NUMBER: return "a number";
    case FG_JSON_STRING: return "a string";
    case FG_JSON_ARRAY: return "an array";
    case FG_JSON_OBJECT: return "an object";
    }
    return "an unknown value";
}

const char *fg_json_type_name(fg_json_type t) {
    switch (t) {
    case FG_JSON_NULL: return "null";
    case FG_JSON_BOOL: return "bool";
    case FG_JSON_NUMBER: return "number";
    case FG_JSON_STRING: return "string";
    case FG_JSON_ARRAY: return "array";
    case FG_JSON_OBJECT: return "object";
    }
    return "?";
}

size_t fg_utf8_check(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        int n = utf8_seq_len(s + i, len - i);
        if (!n) return i;
        i += (size_t)n;
    }
    return len;
}

// The one JSON string escaper, writing through emit: fg_json_write_string (a FILE) and
// fg_json_append_string (a bounded buffer) differ only in where the bytes go.
typedef struct { FILE *f; char *buf; size_t cap, *pos; } str_sink;

static void sink_put(str_sink *k, const char *s, size_t n) {
    if (k->f) { fwrite(s, 1, n, k->f); return; }
    if (k->cap && *k->pos < k->cap - 1) memcpy(k->buf + *k->pos, s, FG_MIN(n, k->cap - 1 - *k->pos));
    *k->pos += n;
}

static void escape_string(str_sink *k, const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0; // start of the pending run of bytes that go out unchanged
    sink_put(k, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) { i++; continue; }
        int n = c >= 0x80 ? utf8_seq_len(s + i, len - i) : 0;
        if (n) { i += (size_t)n; continue; }
        if (i > run) sink_put(k, str + run, i - run);
        char esc[8];
        switch (c) {
        case '"': sink_put(k, "\\\"", 2); break;
        case '\\': sink_put(k, "\\\\", 2); break;
        case '\n': sink_put(k, "\\n", 2); break;
        case '\r': sink_put(k, "\\r", 2); break;
        case '\t': sink_put(k, "\\t", 2); break;
        case '\b': sink_put(k, "\\b", 2); break;
        case '\f': sink_put(k, "\\f", 2); break;
        default:
            if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); sink_put(k, esc, 6); }
            else sink_put(k, "\\ufffd", 6); // a byte that starts no valid UTF-8 sequence
        }
        run = ++i;
    }
    if (len > run) sink_put(k, str + run, len - run);
    sink_put(k, "\"", 1);
}

void fg_json_write_string(FILE *f, const char *str, size_t len) {
    str_sink k = {.f = f};
    escape_string(&k, str, len);
}

void fg_json_append_string(char *buf, size_t cap, size_t *pos, const char *str, size_t len) {
    str_sink k = {.buf = buf, .cap = cap, .pos = pos};
    escape_string(&k, str, len);
    if (cap) buf[FG_MIN(*pos, cap - 1)] = 0;
}
