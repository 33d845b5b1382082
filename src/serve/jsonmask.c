// jsonmask.c: the JSON-mode constraint (frugal_serve.h): an incremental checker that says whether
// the bytes fed so far are a prefix of some valid JSON text whose top-level value is an object, and
// the shortest bytes that would complete it.
//
// What it is: one pushdown state machine over bytes. The stack holds the open containers; state
// says where in RFC 8259's grammar the next byte lands; aux carries the detail of the states that
// need it (which literal and how far, how many \u hex digits, which UTF-8 continuation bytes are
// still due, and whether the open string is an object key). It checks everything JSON's syntax
// checks: whitespace only where the grammar allows it, the exact number grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, escapes (\u and four hex digits, any of them: a lone
// surrogate escape is valid JSON syntax), no raw control bytes in strings, and UTF-8 inside strings
// byte by byte (no overlong forms, no encoded surrogates, nothing above U+10FFFF).
// What it deliberately does not do: no values, no duplicate-key or schema checks, no tokenizer
// knowledge (the sampler asks it about each candidate token's bytes), nesting beyond
// FG_JSONM_MAX_DEPTH (refused, so the completion stays short and the stack fixed).
// Invariants: the state is a plain value (copy it to try bytes); depth is the number of open
// containers, 0 only before the top-level '{' and after its '}' (then done == 1 and only
// whitespace follows); the bytes fed so far always have a completion, and fg_jsonm_closing
// writes a shortest one.
#include "frugal_serve.h"
#include "util.h"

#include <string.h>

enum {
    J_START,      // before the top-level '{'
    J_OBJ_OPEN,   // after '{': a key or '}'
    J_KEY,        // after ',' in an object: a key
    J_COLON,      // after a key: ':'
    J_VALUE,      // after ':' or ',' in an array: a value
    J_ARR_OPEN,   // after '[': a value or ']'
    J_AFTER,      // after a value inside a container: ',' or the closer
    J_DONE,       // the top-level object is closed: whitespace only
    J_STR,        // inside a string (aux & KEY: it is an object key)
    J_ESC,        // after '\' in a string
    J_HEX,        // inside a \u escape: aux & 7 of its four hex digits seen
    J_UTF8,       // inside a multi-byte UTF-8 sequence: aux & 3 bytes due, (aux >> 2) & 7 first-byte range
    J_MINUS,      // number: after '-'
    J_ZERO,       // number: a leading 0
    J_INT,        // number: integer digits after 1-9
    J_DOT,        // number: after '.'
    J_FRAC,       // number: fraction digits
    J_EXP,        // number: after 'e' / 'E'
    J_EXP_SIGN,   // number: after the exponent's sign
    J_EXP_DIG,    // number: exponent digits
    J_LIT,        // inside true / false / null: aux >> 3 which, aux & 7 bytes matched
};
#define KEY 0x100 // aux flag of the string states: the string is an object key

static const char *const literals[3] = {"true", "false", "null"};

// The allowed range of the first continuation byte after a lead byte (Unicode table 3-7); the
// later ones are always 0x80..0xBF.
enum { R_ANY, R_E0, R_ED, R_F0, R_F4 };
static const unsigned char range_lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const unsigned char range_hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

static int is_ws(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }
static int is_hex(unsigned c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static int open_container(fg_jsonm *m, unsigned c) {
    if (m->depth >= FG_JSONM_MAX_DEPTH) return 0;
    m->stack[m->depth++] = (uint8_t)c;
    m->state = c == '{' ? J_OBJ_OPEN : J_ARR_OPEN;
    return 1;
}

static int close_container(fg_jsonm *m, unsigned c) {
    if (m->depth == 0 || m->stack[m->depth - 1] != (c == '}' ? '{' : '[')) return 0;
    m->depth--;
    if (m->depth == 0) { m->state = J_DONE; m->done = 1; }
    else m->state = J_AFTER;
    return 1;
}

// The first byte of a value (after optional whitespace, which the caller handles).
static int value_start(fg_jsonm *m, unsigned c) {
    m->aux = 0;
    switch (c) {
    case '{': case '[': return open_container(m, c);
    case '"': m->state = J_STR; return 1;
    case '-': m->state = J_MINUS; return 1;
    case '0': m->state = J_ZERO; return 1;
    case 't': case 'f': case 'n':
        m->state = J_LIT;
        m->aux = (c == 't' ? 0 : c == 'f' ? 1 : 2) << 3 | 1;
        return 1;
    default:
        if (is_digit(c)) { m->state = J_INT; return 1; }
        return 0;
    }
}

// One byte. Returns 1 and advances *m, or 0 (then *m is partly updated: callers work on a copy).
static int step(fg_jsonm *m, unsigned c) {
    for (;;) {
        switch (m->state) {
        case J_START:
            if (is_ws(c)) return 1;
            return c == '{' && open_container(m, c);
        case J_DONE:
            return is_ws(c);
        case J_OBJ_OPEN:
        case J_KEY:
            if (is_ws(c)) return 1;
            if (c == '"') { m->state = J_STR; m->aux = KEY; return 1; }
            return m->state == J_OBJ_OPEN && c == '}' && close_container(m, c);
        case J_COLON:
            if (is_ws(c)) return 1;
            if (c != ':') return 0;
            m->state = J_VALUE;
            return 1;
        case J_VALUE:
            if (is_ws(c)) return 1;
            return value_start(m, c);
        case J_ARR_OPEN:
            if (is_ws(c)) return 1;
            if (c == ']') return close_container(m, c);
            return value_start(m, c);
        case J_AFTER:
            if (is_ws(c)) return 1;
            if (c == ',') { m->state = m->stack[m->depth - 1] == '{' ? J_KEY : J_VALUE; return 1; }
            return (c == '}' || c == ']') && close_container(m, c);

        case J_STR: {
            if (c == '"') { m->state = (m->aux & KEY) ? J_COLON : J_AFTER; m->aux = 0; return 1; }
            if (c == '\\') { m->state = J_ESC; return 1; }
            if (c < 0x20) return 0;              // raw control bytes must be escaped
            if (c < 0x80) return 1;
            // a UTF-8 lead byte: how many continuation bytes follow, and the first one's range
            int due, range = R_ANY;
            if (c >= 0xC2 && c <= 0xDF) due = 1;
            else if (c >= 0xE0 && c <= 0xEF) { due = 2; range = c == 0xE0 ? R_E0 : c == 0xED ? R_ED : R_ANY; }
            else if (c >= 0xF0 && c <= 0xF4) { due = 3; range = c == 0xF0 ? R_F0 : c == 0xF4 ? R_F4 : R_ANY; }
            else return 0;                       // continuation byte, 0xC0/0xC1 (overlong), 0xF5..
            m->state = J_UTF8;
            m->aux = (m->aux & KEY) | range << 2 | due;
            return 1;
        }
        case J_UTF8: {
            int range = (m->aux >> 2) & 7, due = m->aux & 3;
            if (c < range_lo[range] || c > range_hi[range]) return 0;
            due--;
            m->aux = (m->aux & KEY) | due;       // range R_ANY from here on
            if (due == 0) m->state = J_STR;
            return 1;
        }
        case J_ESC:
            if (c == 'u') { m->state = J_HEX; return 1; }
            if (c == 0 || !strchr("\"\\/bfnrt", (int)c)) return 0;
            m->state = J_STR;
            return 1;
        case J_HEX:
            if (!is_hex(c)) return 0;
            m->aux++;
            if ((m->aux & 7) == 4) { m->state = J_STR; m->aux &= KEY; }
            return 1;

        case J_MINUS:
            if (c == '0') { m->state = J_ZERO; return 1; }
            if (is_digit(c)) { m->state = J_INT; return 1; }
            return 0;
        case J_DOT:
        case J_EXP_SIGN:
            if (!is_digit(c)) return 0;
            m->state = m->state == J_DOT ? J_FRAC : J_EXP_DIG;
            return 1;
        case J_EXP:
            if (c == '+' || c == '-') { m->state = J_EXP_SIGN; return 1; }
            if (!is_digit(c)) return 0;
            m->state = J_EXP_DIG;
            return 1;
        case J_ZERO:
        case J_INT:
        case J_FRAC:
        case J_EXP_DIG:
            // digits continue the part they are in (never after a leading 0), '.' only after the
            // integer part, 'e' not after the exponent; any other byte ends the number
            if (is_digit(c) && m->state != J_ZERO) return 1;
            if (c == '.' && (m->state == J_ZERO || m->state == J_INT)) { m->state = J_DOT; return 1; }
            if ((c == 'e' || c == 'E') && m->state != J_EXP_DIG) { m->state = J_EXP; return 1; }
            m->state = J_AFTER;                  // numbers live only inside containers
            continue;                            // the byte is read again after the value

        case J_LIT: {
            const char *word = literals[m->aux >> 3];
            int at = m->aux & 7;
            if (c != (unsigned char)word[at]) return 0;
            m->aux++;
            if (word[at + 1] == 0) { m->state = J_AFTER; m->aux = 0; }
            return 1;
        }
        }
        return 0;
    }
}

void fg_jsonm_init(fg_jsonm *m) { memset(m, 0, sizeof *m); }

int fg_jsonm_feed(fg_jsonm *m, const char *s, size_t n) {
    fg_jsonm t = *m;
    for (size_t i = 0; i < n; i++)
        if (!step(&t, (unsigned char)s[i])) return 0;
    *m = t;
    return 1;
}

int fg_jsonm_done(const fg_jsonm *m) { return m->done; }

// The shortest completion: finish the token in progress with the fewest bytes (a '0' digit, the
// rest of a literal, the lowest valid continuation byte, ...), then the fewest bytes the grammar
// still needs (a key needs ':' and a value, the smallest value being "0"), then one closer per open
// container, innermost first. Each step is forced or a cheapest choice, so the sum is minimal.
size_t fg_jsonm_closing(const fg_jsonm *m, char *buf, size_t cap) {
    char out[16 + FG_JSONM_MAX_DEPTH];
    size_t n = 0;
    int key = 0;
    switch (m->state) {
    case J_START: out[n++] = '{'; out[n++] = '}'; break;
    case J_KEY: memcpy(out + n, "\"\":0", 4); n += 4; break;
    case J_COLON: out[n++] = ':'; out[n++] = '0'; break;
    case J_VALUE: case J_MINUS: case J_DOT: case J_EXP: case J_EXP_SIGN: out[n++] = '0'; break;
    case J_LIT: {
        const char *rest = literals[m->aux >> 3] + (m->aux & 7);
        memcpy(out + n, rest, strlen(rest));
        n += strlen(rest);
        break;
    }
    case J_UTF8: case J_ESC: case J_HEX: case J_STR:
        key = m->aux & KEY;
        if (m->state == J_UTF8)
            for (int i = 0; i < (m->aux & 3); i++) out[n++] = (char)(i ? 0x80 : range_lo[(m->aux >> 2) & 7]);
        if (m->state == J_ESC) out[n++] = 'n';
        if (m->state == J_HEX)
            for (int i = m->aux & 7; i < 4; i++) out[n++] = '0';
        out[n++] = '"';
        if (key) { out[n++] = ':'; out[n++] = '0'; }
        break;
    default: break; // J_OBJ_OPEN, J_ARR_OPEN, J_AFTER, a complete number, J_DONE: closers only
    }
    for (int d = m->depth - 1; d >= 0; d--) out[n++] = m->stack[d] == '{' ? '}' : ']';
    if (cap) {
        size_t k = FG_MIN(n, cap - 1);
        memcpy(buf, out, k);
        buf[k] = 0;
    }
    return n;
}
