// test_json.c: the strict JSON parser against a table of valid and invalid documents, decoded
// values (escapes, surrogates, numbers), positions in error messages, the depth limit, linear time
// on multi-MB input, and fg_json_write_string round trips.
#include "test.h"
#include "formats/json.h"
#include "util.h"

#include <stdint.h>
#include <string.h>

// One document: parse must succeed (err == NULL) or fail with a message containing err.
typedef struct { const char *text; size_t len; const char *err; } doc_case;
#define OK(s) {s, sizeof(s) - 1, NULL}
#define BAD(s, e) {s, sizeof(s) - 1, e}

static const doc_case docs[] = {
    OK("null"), OK("true"), OK("false"), OK("0"), OK("-0"), OK("-0.5"), OK("1e-6"), OK("1E+10"), OK("12.5e3"),
    OK("\"\""), OK("[]"), OK("{}"), OK(" \t\r\n[ 1 , 2 ]\n"), OK("{\"a\":{\"b\":[null,true,{}]}}"),
    OK("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), OK("\"\\u00e9\\uD83D\\uDE00\""), OK("\"h\xc3\xa9llo \xf0\x9f\x98\x80\""),
    OK("{\"a\":1,\"a\":2}"), OK("1e-400"), OK("\"\x7f\""), OK("[\"\\u0000\"]"),
    BAD("", "empty document"), BAD("   ", "empty document"), BAD("nul", "expected a value"),
    BAD("truex", "unexpected 'x' after the JSON value"), BAD("[1] [2]", "after the JSON value"),
    BAD("01", "leading zeros"), BAD("-01", "leading zeros"), BAD("-", "digit after '-'"), BAD("1.", "digit after '.'"),
    BAD(".5", "expected a value"), BAD("1e", "exponent"), BAD("1e+", "exponent"), BAD("+1", "expected a value"),
    BAD("1e999", "out of range"), BAD("-1e400", "out of range"), BAD("NaN", "expected a value"),
    BAD("Infinity", "expected a value"), BAD("0x10", "unexpected 'x'"),
    BAD("[1,]", "trailing comma before ']'"), BAD("{\"a\":1,}", "trailing comma before '}'"), BAD("[,1]", "expected a value"),
    BAD("[1 2]", "expected ',' or ']'"), BAD("{\"a\" 1}", "expected ':'"), BAD("{a:1}", "expected a string key"),
    BAD("{1:1}", "expected a string key"), BAD("{\"a\":}", "expected a value"), BAD("[", "end of input"),
    BAD("{", "expected a string key, got end of input"), BAD("\"abc", "unterminated string"),
    BAD("\"abc\\\"", "unterminated string"), BAD("'a'", "expected a value"),
    BAD("\"a\tb\"", "control character 0x09"), BAD("\"a\nb\"", "control character 0x0a"),
    BAD("\"a\x00\"", "control character 0x00"), BAD("\"\\x\"", "invalid escape '\\x'"),
    BAD("\"\\u12\"", "4 hex digits"), BAD("\"\\u12G4\"", "4 hex digits"),
    BAD("\"\\uD800\"", "lone high surrogate"), BAD("\"\\uD800\\u0041\"", "lone high surrogate"),
    BAD("\"\\uDC00\"", "lone low surrogate"), BAD("\"\\uDE00\\uD83D\"", "lone low surrogate"),
    BAD("\"\xff\"", "invalid UTF-8 byte 0xff in string at byte offset 1"),
    BAD("\"ab\xc0\xaf\"", "invalid UTF-8 byte 0xc0 in string at byte offset 3"),          // overlong '/'
    BAD("\"\xed\xa0\x80\"", "invalid UTF-8 byte 0xed"),                                    // UTF-8 surrogate
    BAD("\"\xf4\x90\x80\x80\"", "invalid UTF-8 byte 0xf4"),                                // > U+10FFFF
    BAD("\"\xe2\x82\"", "invalid UTF-8 byte 0xe2"),                                        // truncated
    BAD("\"\x80\"", "invalid UTF-8 byte 0x80"),                                            // stray continuation
    BAD("[1]\x00", "unexpected byte 0x00"), BAD("/* c */ 1", "expected a value"),
    BAD("\xef\xbb\xbf{}", "expected a value"),                                             // BOM not allowed
};

static int streq_n(const char *s, size_t len, const char *want, size_t wlen) { return len == wlen && !memcmp(s, want, len); }

static void test_table(void) {
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        const doc_case *c = &docs[i];
        fg_json *j = fg_json_parse(c->text, c->len, "t.json");
        if (!c->err) {
            CHECK_MSG(j != NULL, "case %zu '%s' should parse: %s", i, c->text, fg_last_error());
        } else {
            CHECK_MSG(j == NULL, "case %zu '%s' should fail", i, c->text);
            if (!j) CHECK_MSG(strstr(fg_last_error(), c->err) && !strncmp(fg_last_error(), "t.json:", 7),
                              "case %zu: error '%s' should contain '%s'", i, fg_last_error(), c->err);
        }
        fg_json_free(j);
    }
}

static fg_json *parse(const char *s) { return fg_json_parse(s, strlen(s), "t.json"); }

static void test_values(void) {
    fg_json *j = parse("{\"n\": [0, -0.5, 1e-6, 12.5e3, -0, 123456789012, 1E2],"
                       " \"s\": \"a\\u00e9\\uD83D\\uDE00\\n\\u0000z\", \"b\": true, \"f\": false, \"z\": null,"
                       " \"d\": 1, \"d\": 2}");
    CHECK_MSG(j, "%s", fg_last_error());
    if (!j) return;
    CHECK(j->type == FG_JSON_OBJECT && j->n == 7 && j->key == NULL);
    const fg_json *n = fg_json_get(j, "n");
    CHECK(n && n->type == FG_JSON_ARRAY && n->n == 7 && n->key && !strcmp(n->key, "n"));
    if (n && n->n == 7) {
        const double want[7] = {0, -0.5, 1e-6, 12500, 0, 123456789012.0, 100};
        int k = 0;
        for (const fg_json *x = n->child; x; x = x->next, k++) {
            CHECK(x->type == FG_JSON_NUMBER && x->num == want[k] && x->key == NULL);
        }
        CHECK(k == 7);
        CHECK(signbit(n->child->next->next->next->next->num)); // -0 keeps its sign
    }
    const fg_json *s = fg_json_get(j, "s");
    static const char want_s[] = "a\xc3\xa9\xf0\x9f\x98\x80\n\0z";
    CHECK(s && s->type == FG_JSON_STRING && streq_n(s->str, s->len, want_s, sizeof want_s - 1) && s->str[s->len] == 0);
    const fg_json *b = fg_json_get(j, "b"), *f = fg_json_get(j, "f"), *z = fg_json_get(j, "z");
    CHECK(b && b->type == FG_JSON_BOOL && b->boolean == 1);
    CHECK(f && f->type == FG_JSON_BOOL && f->boolean == 0);
    CHECK(z && z->type == FG_JSON_NULL);
    const fg_json *d = fg_json_get(j, "d");
    CHECK(d && d->num == 2); // duplicate keys: last wins
    CHECK(fg_json_get(j, "missing") == NULL && fg_json_get(n, "x") == NULL && fg_json_get(NULL, "x") == NULL);
    fg_json_free(j);

    // keys with \u0000 do not match their prefix
    j = parse("{\"a\\u0000b\": 1}");
    CHECK(j && fg_json_get(j, "a") == NULL && j->child->key_len == 3);
    fg_json_free(j);

    // a top-level scalar string, and text that is not NUL-terminated
    const char buf[] = {'"', 'x', 'y', '"', '1'};
    j = fg_json_parse(buf, 4, "t.json");
    CHECK(j && j->type == FG_JSON_STRING && j->len == 2 && !strcmp(j->str, "xy"));
    fg_json_free(j);
    j = fg_json_parse(buf + 4, 1, "t.json");
    CHECK(j && j->type == FG_JSON_NUMBER && j->num == 1);
    fg_json_free(j);
    CHECK(fg_json_parse(NULL, 0, "t.json") == NULL);
}

static void test_positions(void) {
    fg_json *j = parse("{\n  \"a\": [1,\n    \"x\"]}");
    CHECK(j);
    if (j) {
        const fg_json *a = fg_json_get(j, "a");
        CHECK(j->line == 1 && j->col == 1);
        CHECK(a && a->line == 2 && a->col == 8);
        CHECK(a && a->child->next->line == 3 && a->child->next->col == 5);
    }
    fg_json_free(j);
    CHECK(!parse("{\n  \"a\": [1,\n    x]}"));
    CHECK_MSG(!strcmp(fg_last_error(), "t.json:3:5: expected a value, got 'x'"), "%s", fg_last_error());
    CHECK(!parse("[1,\n\"ok\",\n  \"bad\xff\"]"));
    CHECK_MSG(!strcmp(fg_last_error(), "t.json:3:7: invalid UTF-8 byte 0xff in string at byte offset 16"), "%s",
              fg_last_error());
    CHECK(!fg_json_parse("[1]", 3 - 1, "dir/f.json"));
    CHECK_MSG(!strncmp(fg_last_error(), "dir/f.json:1:3: ", 16), "%s", fg_last_error());
}

static void test_depth(void) {
    char buf[2 * (FG_JSON_MAX_DEPTH + 1) + 1];
    for (int depth = FG_JSON_MAX_DEPTH; depth <= FG_JSON_MAX_DEPTH + 1; depth++) {
        memset(buf, '[', (size_t)depth);
        memset(buf + depth, ']', (size_t)depth);
        fg_json *j = fg_json_parse(buf, 2 * (size_t)depth, "deep.json");
        if (depth <= FG_JSON_MAX_DEPTH) CHECK_MSG(j, "depth %d: %s", depth, fg_last_error());
        else CHECK(!j && strstr(fg_last_error(), "nesting deeper than 256"));
        fg_json_free(j);
    }
    // 1 MB of '[' must fail quickly, not overflow the stack; same for objects
    size_t n = 1 << 20;
    char *big = malloc(n);
    memset(big, '[', n);
    CHECK(!fg_json_parse(big, n, "deep.json") && strstr(fg_last_error(), "nesting deeper"));
    for (size_t i = 0; i + 5 <= n; i += 5) memcpy(big + i, "{\"a\":", 5);
    CHECK(!fg_json_parse(big, n, "deep.json") && strstr(fg_last_error(), "nesting deeper"));
    free(big);
}

// Multi-MB inputs: one long string with escapes, and a flat array of ~1M numbers (linear time).
static void test_big(void) {
    size_t n = 8u << 20;
    char *s = malloc(n + 16);
    size_t o = 0;
    s[o++] = '"';
    while (o + 8 < n) { memcpy(s + o, "ab\\n\\u00e9", 10); o += 10; }
    s[o++] = '"';
    double t0 = fg_now();
    fg_json *j = fg_json_parse(s, o, "big.json");
    double t1 = fg_now();
    CHECK_MSG(j && j->type == FG_JSON_STRING && j->len == (o - 2) / 10 * 5, "%s", fg_last_error());
    fg_json_free(j);
    o = 0;
    s[o++] = '[';
    int count = 0;
    while (o + 16 < n) { o += (size_t)sprintf(s + o, "%d.5,", count); count++; }
    s[o - 1] = ']';
    double t2 = fg_now();
    j = fg_json_parse(s, o, "big.json");
    double t3 = fg_now();
    CHECK_MSG(j && j->n == count, "%s", fg_last_error());
    if (j) {
        const fg_json *last = j->child;
        while (last->next) last = last->next;
        CHECK(last->num == count - 1 + 0.5);
    }
    fg_json_free(j);
    printf("json: 8 MB string in %.3f s, %d-number array in %.3f s\n", t1 - t0, count, t3 - t2);
    free(s);
}

// fg_json_write_string output must parse back to the same bytes (or with \ufffd replacements).
static void roundtrip(const char *in, size_t len, const char *want, size_t wlen) {
    char *out = NULL;
    size_t olen = 0;
    FILE *m = open_memstream(&out, &olen);
    fg_json_write_string(m, in, len);
    fclose(m);
    fg_json *j = fg_json_parse(out, olen, "written");
    CHECK_MSG(j && j->type == FG_JSON_STRING && streq_n(j->str, j->len, want, wlen), "write_string output '%s' %s", out,
              j ? "decodes differently" : fg_last_error());
    fg_json_free(j);
    free(out);
}

static void test_write_string(void) {
    static const char a[] = "plain \"quoted\" back\\slash \n\r\t\b\f \x01\x1f\x7f h\xc3\xa9 \xf0\x9f\x98\x80 \0 end";
    roundtrip(a, sizeof a - 1, a, sizeof a - 1);
    static const char bad[] = "a\xff" "b\xc0\xaf" "c\xe2\x82";
    static const char fixed[] = "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd";
    roundtrip(bad, sizeof bad - 1, fixed, sizeof fixed - 1);
    roundtrip("", 0, "", 0);
    char *out = NULL;
    size_t olen = 0;
    FILE *m = open_memstream(&out, &olen);
    fg_json_write_string(m, "a\"\n\x01\xff", 5);
    fclose(m);
    CHECK_MSG(!strcmp(out, "\"a\\\"\\n\\u0001\\ufffd\""), "%s", out);
    free(out);
    CHECK(fg_utf8_check("ok\xc3\xa9", 4) == 4 && fg_utf8_check("ok\xc3", 3) == 2);
}

int main(void) {
    test_table();
    test_values();
    test_positions();
    test_depth();
    test_big();
    test_write_string();
    return TEST_DONE();
}
