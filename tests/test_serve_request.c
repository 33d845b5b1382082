// test_serve_request.c: the server's request parser, JSON-mode checker and JSON string writer
// (frugal_serve.h).
//   (a) fg_api_request_parse: chat and completion bodies with every field and its default, and a
//       table of rejected bodies, each with the param, code and message text it must report;
//   (b) fg_jsonm_*: Python's json module as an independent oracle (tests/ref/jsonm_oracle.py):
//       every prefix of a few hundred random documents is accepted byte by byte and in one feed,
//       each full document ends done, each prefix + fg_jsonm_closing() is accepted, ends done and
//       reads as a dict in Python; mutated documents get the same verdict from the checker and
//       from Python; hand-written closings (checked shortest by a breadth-first search over the
//       checker's own transitions) and rejects; a rejected feed leaves the state unchanged.
//       Without python3 those checks are skipped with a note and the C-only ones still run;
//   (c) fg_json_append_string: byte-identical to fg_json_write_string, parses back to the input,
//       and truncation at every capacity writes nothing past cap and always NUL-terminates.
#include "test.h"
#include "frugal_serve.h"
#include "formats/json.h"
#include "util.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

// ---- (a) requests --------------------------------------------------------------------------
static int parse(int kind, const char *body, fg_api_request *r, fg_api_error *e) {
    return fg_api_request_parse(body, strlen(body), kind, r, e);
}

static int str_is(const char *s, const char *want) { return s && !strcmp(s, want); }

static void test_chat_valid(void) {
    fg_api_request r;
    fg_api_error e;
    // defaults
    int rc = parse(FG_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, &e);
    CHECK_MSG(rc == 0, "%s", e.message);
    if (rc == 0) {
        CHECK(r.kind == FG_API_CHAT && r.n_msgs == 1 && str_is(r.msgs[0].role, "user") && str_is(r.msgs[0].content, "hi"));
        CHECK(r.prompt == NULL && r.model == NULL && r.stream == 0 && r.include_usage == 0 && r.max_tokens == -1);
        CHECK(r.temperature == 1 && r.top_p == 1 && r.n_stop == 0 && r.has_seed == 0 && r.n == 1);
        CHECK(r.frequency_penalty == 0 && r.presence_penalty == 0 && r.json_mode == 0 && r.arena_);
    }
    fg_api_request_free(&r);
    CHECK(r.arena_ == NULL && r.msgs == NULL);
    fg_api_request_free(&r); // twice is safe

    // every field, roles, parts, null content, nulls meaning absent, unknown fields ignored
    const char *body =
        "{\"model\":\"frugal-tiny\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        " \"messages\":["
        "  {\"role\":\"developer\",\"content\":\"be brief\"},"
        "  {\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"\\u00e9b\"}]},"
        "  {\"role\":\"user\",\"content\":\"q\\n\",\"name\":\"x\"},"
        "  {\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
        "  {\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c1\"},"
        "  {\"role\":\"assistant\"}],"
        " \"max_tokens\":10,\"max_completion_tokens\":20,\"temperature\":0.5,\"top_p\":0,"
        " \"stop\":[\"\\n\\n\",\"\",\"END\"],\"seed\":-1,\"n\":16,\"frequency_penalty\":-2,\"presence_penalty\":2,"
        " \"response_format\":{\"type\":\"json_object\"},\"logit_bias\":null,\"user\":\"u\",\"tools\":[1,2]}";
    rc = parse(FG_API_CHAT, body, &r, &e);
    CHECK_MSG(rc == 0, "%s", e.message);
    if (rc == 0) {
        CHECK(r.n_msgs == 6 && str_is(r.model, "frugal-tiny") && r.stream == 1 && r.include_usage == 1);
        CHECK(str_is(r.msgs[0].role, "system") && str_is(r.msgs[0].content, "be brief"));
        CHECK(str_is(r.msgs[1].role, "system") && str_is(r.msgs[1].content, "a\xc3\xa9" "b"));
        CHECK(str_is(r.msgs[2].role, "user") && str_is(r.msgs[2].content, "q\n"));
        CHECK(str_is(r.msgs[3].role, "assistant") && str_is(r.msgs[3].content, ""));
        CHECK(str_is(r.msgs[4].role, "tool") && str_is(r.msgs[4].content, "42"));
        CHECK(str_is(r.msgs[5].role, "assistant") && str_is(r.msgs[5].content, ""));
        CHECK(r.max_tokens == 20 && r.temperature == 0.5f && r.top_p == 0);
        CHECK(r.n_stop == 2 && str_is(r.stop[0], "\n\n") && r.stop_len[0] == 2 && str_is(r.stop[1], "END") && r.stop_len[1] == 3);
        CHECK(r.has_seed && r.seed == UINT64_MAX && r.n == 16);
        CHECK(r.frequency_penalty == -2 && r.presence_penalty == 2 && r.json_mode == 1);
    }
    fg_api_request_free(&r);

    // nulls for optional fields mean absent; a single stop string; seed and tokens as 1e3 style
    rc = parse(FG_API_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":[]}],\"model\":null,\"stream\":null,\"temperature\":null,"
               "\"stop\":\"###\",\"seed\":1e3,\"max_tokens\":2147483647,\"response_format\":{\"type\":\"text\"},"
               "\"stream_options\":null,\"n\":null}", &r, &e);
    CHECK_MSG(rc == 0, "%s", e.message);
    if (rc == 0) {
        CHECK(str_is(r.msgs[0].content, "") && r.model == NULL && r.stream == 0 && r.temperature == 1);
        CHECK(r.n_stop == 1 && str_is(r.stop[0], "###") && r.has_seed && r.seed == 1000);
        CHECK(r.max_tokens == 2147483647 && r.json_mode == 0 && r.n == 1);
    }
    fg_api_request_free(&r);

    // max_tokens alone; stop "" alone leaves no stops; 4096 messages is the limit
    rc = parse(FG_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":7,\"stop\":\"\"}", &r, &e);
    CHECK(rc == 0 && r.max_tokens == 7 && r.n_stop == 0);
    fg_api_request_free(&r);
    for (int n = 4096; n <= 4097; n++) {
        size_t cap = 64 + (size_t)n * 40, at = 0;
        char *b = malloc(cap);
        at += (size_t)snprintf(b + at, cap - at, "{\"messages\":[");
        for (int i = 0; i < n; i++)
            at += (size_t)snprintf(b + at, cap - at, "%s{\"role\":\"user\",\"content\":\"m%d\"}", i ? "," : "", i);
        snprintf(b + at, cap - at, "]}");
        rc = parse(FG_API_CHAT, b, &r, &e);
        if (n == 4096) CHECK_MSG(rc == 0 && r.n_msgs == 4096 && str_is(r.msgs[4095].content, "m4095"), "%s", e.message);
        else CHECK(rc == -1 && !strcmp(e.param, "messages") && str_is(e.code, "invalid_value") && strstr(e.message, "4097"));
        fg_api_request_free(&r);
        free(b);
    }
}

static void test_completion_valid(void) {
    fg_api_request r;
    fg_api_error e;
    int rc = parse(FG_API_COMPLETION, "{\"prompt\":\"Once upon\",\"model\":\"m\",\"max_tokens\":5,\"seed\":12345}", &r, &e);
    CHECK_MSG(rc == 0, "%s", e.message);
    if (rc == 0) {
        CHECK(r.kind == FG_API_COMPLETION && str_is(r.prompt, "Once upon") && r.prompt_len == 9 && r.msgs == NULL);
        CHECK(r.n_msgs == 0 && str_is(r.model, "m") && r.max_tokens == 5 && r.has_seed && r.seed == 12345);
    }
    fg_api_request_free(&r);
    rc = parse(FG_API_COMPLETION, " {\"prompt\":[\"\\u4e2d\"],\"messages\":\"ignored\"} ", &r, &e);
    CHECK_MSG(rc == 0 && str_is(r.prompt, "\xe4\xb8\xad") && r.prompt_len == 3, "%s", e.message);
    fg_api_request_free(&r);
    rc = parse(FG_API_COMPLETION, "{\"prompt\":\"\"}", &r, &e);
    CHECK(rc == 0 && str_is(r.prompt, "") && r.prompt_len == 0);
    fg_api_request_free(&r);
}

// A rejected body: the param it names, its code and a piece of its message.
typedef struct { int kind; const char *body; const char *param, *code, *msg; } bad_case;
#define C FG_API_CHAT
#define P FG_API_COMPLETION
#define U "{\"role\":\"user\",\"content\":\"x\"}"
#define CHAT(extra) "{\"messages\":[" U "]" extra "}"
static const bad_case bad[] = {
    {C, "", "", "invalid_json", "invalid JSON body at 1:1: empty document"},
    {C, "{\"messages\": [", "", "invalid_json", "at 1:15"},
    {C, "{\n  \"a\": 1,\n  \"b\" 2}", "", "invalid_json", "at 3:7: expected ':'"},
    {P, "{\"prompt\":\"x\"} x", "", "invalid_json", "at 1:16"},
    {C, "[1]", "", "invalid_type", "must be a JSON object, got an array"},
    {P, "\"x\"", "", "invalid_type", "must be a JSON object, got a string"},
    {C, "{}", "messages", "missing_field", "missing required field 'messages'"},
    {C, "{\"messages\":null}", "messages", "missing_field", "'messages'"},
    {C, "{\"messages\":{}}", "messages", "invalid_type", "expected an array of messages, got object"},
    {C, "{\"messages\":[]}", "messages", "invalid_value", "at least one message"},
    {C, "{\"messages\":[1]}", "messages[0]", "invalid_type", "expected a message object, got number"},
    {C, "{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role", "missing_field", "'messages[0].role'"},
    {C, "{\"messages\":[" U ",{\"role\":7,\"content\":\"x\"}]}", "messages[1].role", "invalid_type", "expected a string, got number"},
    {C, "{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", "messages[0].role", "invalid_value",
     "must be one of system, developer, user, assistant, tool; got 'function'"},
    {C, "{\"messages\":[{\"role\":\"user\\u0000\",\"content\":\"x\"}]}", "messages[0].role", "invalid_value", "got 'user'"},
    {C, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content", "missing_field", "'messages[0].content'"},
    {C, "{\"messages\":[{\"role\":\"system\",\"content\":null}]}", "messages[0].content", "missing_field", "content"},
    {C, "{\"messages\":[" U ",{\"role\":\"user\",\"content\":5}]}", "messages[1].content", "invalid_type",
     "invalid type for 'messages[1].content': expected a string or an array of content parts, got number"},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":[\"a\"]}]}", "messages[0].content[0]", "invalid_type", "got string"},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}", "messages[0].content[0].type", "missing_field", "type"},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image_url\",\"image_url\":{}}]}]}",
     "messages[0].content[1].type", "unsupported_value", "content part type 'image_url'"},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content[0].text", "missing_field", "text"},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}", "messages[0].content[0].text",
     "invalid_type", "expected a string, got number"},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", "messages[0].content", "invalid_value", "NUL character"},
    {C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"\\u0000\"}]}]}", "messages[0].content[0].text",
     "invalid_value", "NUL"},
    {P, "{}", "prompt", "missing_field", "missing required field 'prompt'"},
    {P, "{\"prompt\":null}", "prompt", "missing_field", "prompt"},
    {P, "{\"prompt\":[]}", "prompt", "invalid_value", "array of exactly one string, got an array of 0"},
    {P, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "invalid_value", "got an array of 2"},
    {P, "{\"prompt\":[1,2,3]}", "prompt", "invalid_value", "got an array of 3"},
    {P, "{\"prompt\":[15496]}", "prompt[0]", "invalid_type", "expected a string, got number"},
    {P, "{\"prompt\":true}", "prompt", "invalid_type", "got bool"},
    {P, "{\"prompt\":\"a\\u0000\"}", "prompt", "invalid_value", "NUL"},
    {P, "{\"prompt\":\"a\",\"model\":3}", "model", "invalid_type", "expected a string, got number"},
    {C, CHAT(",\"stream\":1"), "stream", "invalid_type", "expected a boolean, got number"},
    {C, CHAT(",\"stream_options\":true"), "stream_options", "invalid_type", "expected an object"},
    {C, CHAT(",\"stream_options\":{\"include_usage\":\"yes\"}"), "stream_options.include_usage", "invalid_type", "got string"},
    {C, CHAT(",\"max_tokens\":0"), "max_tokens", "invalid_value", "'max_tokens' must be between 1 and 2147483647, got 0"},
    {C, CHAT(",\"max_tokens\":2147483648"), "max_tokens", "invalid_value", "got 2147483648"},
    {C, CHAT(",\"max_tokens\":1.5"), "max_tokens", "invalid_value", "must be an integer, got 1.5"},
    {C, CHAT(",\"max_tokens\":\"10\""), "max_tokens", "invalid_type", "expected an integer, got string"},
    {C, CHAT(",\"max_completion_tokens\":-3"), "max_completion_tokens", "invalid_value", "got -3"},
    {C, CHAT(",\"max_tokens\":0,\"max_completion_tokens\":5"), "max_tokens", "invalid_value", "got 0"},
    {C, CHAT(",\"temperature\":2.1"), "temperature", "invalid_value", "'temperature' must be between 0 and 2, got 2.1"},
    {C, CHAT(",\"temperature\":-0.1"), "temperature", "invalid_value", "got -0.1"},
    {C, CHAT(",\"temperature\":\"hot\""), "temperature", "invalid_type", "expected a number, got string"},
    {C, CHAT(",\"top_p\":1.01"), "top_p", "invalid_value", "between 0 and 1, got 1.01"},
    {C, CHAT(",\"top_p\":-1e-9"), "top_p", "invalid_value", "got -1e-09"},
    {C, CHAT(",\"stop\":5"), "stop", "invalid_type", "expected a string or an array of strings, got number"},
    {C, CHAT(",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), "stop", "invalid_value", "at most 4 strings, got 5"},
    {C, CHAT(",\"stop\":[\"a\",\"b\",null]"), "stop[2]", "invalid_type", "expected a string, got null"},
    {C, CHAT(",\"stop\":\"\\u0000\""), "stop", "invalid_value", "NUL"},
    {C, CHAT(",\"seed\":1.25"), "seed", "invalid_value", "must be an integer, got 1.25"},
    {C, CHAT(",\"seed\":1e19"), "seed", "invalid_value", "got 1e+19"},
    {C, CHAT(",\"seed\":\"7\""), "seed", "invalid_type", "got string"},
    {C, CHAT(",\"n\":0"), "n", "invalid_value", "'n' must be between 1 and 16, got 0"},
    {C, CHAT(",\"n\":17"), "n", "invalid_value", "got 17"},
    {C, CHAT(",\"frequency_penalty\":-2.5"), "frequency_penalty", "invalid_value", "between -2 and 2, got -2.5"},
    {C, CHAT(",\"presence_penalty\":3"), "presence_penalty", "invalid_value", "between -2 and 2, got 3"},
    {C, CHAT(",\"presence_penalty\":[]"), "presence_penalty", "invalid_type", "got array"},
    {C, CHAT(",\"response_format\":\"json\""), "response_format", "invalid_type", "expected an object, got string"},
    {C, CHAT(",\"response_format\":{}"), "response_format.type", "missing_field", "'response_format.type'"},
    {C, CHAT(",\"response_format\":{\"type\":1}"), "response_format.type", "invalid_type", "got number"},
    {C, CHAT(",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}"), "response_format.type", "unsupported_value",
     "'json_schema' is not supported; use 'json_object'"},
    {C, CHAT(",\"response_format\":{\"type\":\"yaml\"}"), "response_format.type", "invalid_value", "one of text, json_object; got 'yaml'"},
};

static void test_rejects(void) {
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const bad_case *c = &bad[i];
        fg_api_request r;
        fg_api_error e;
        memset(&r, 0xAB, sizeof r);
        int rc = parse(c->kind, c->body, &r, &e);
        CHECK_MSG(rc == -1, "case %zu '%s' should fail", i, c->body);
        if (rc == 0) { fg_api_request_free(&r); continue; }
        CHECK_MSG(!strcmp(e.param, c->param), "case %zu: param '%s', want '%s'", i, e.param, c->param);
        CHECK_MSG(str_is(e.code, c->code), "case %zu: code '%s', want '%s'", i, e.code ? e.code : "(null)", c->code);
        CHECK_MSG(strstr(e.message, c->msg), "case %zu: message '%s' should contain '%s'", i, e.message, c->msg);
        CHECK_MSG(str_is(e.type, "invalid_request_error") && !strchr(e.message, '\n'), "case %zu", i);
        CHECK_MSG(r.arena_ == NULL && r.msgs == NULL && r.prompt == NULL && r.model == NULL, "case %zu: r not left empty", i);
        CHECK(!strcmp(fg_last_error(), e.message));
        fg_api_request_free(&r);
    }
}

// Messages fit 256 bytes, stay one line and valid UTF-8 even when a client's string is long.
static void test_error_text_bounds(void) {
    char body[600];
    // a role of 3-byte characters: the excerpt must cut on a character boundary
    size_t at = (size_t)snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"");
    for (int i = 0; i < 60; i++) at += (size_t)snprintf(body + at, sizeof body - at, "\xe4\xb8\xad");
    snprintf(body + at, sizeof body - at, "\",\"content\":\"x\"}]}");
    fg_api_request r;
    fg_api_error e;
    CHECK(parse(FG_API_CHAT, body, &r, &e) == -1);
    size_t n = strlen(e.message);
    CHECK(n < sizeof e.message && fg_utf8_check(e.message, n) == n && strstr(e.message, "...'"));
    // a long JSON error: the parser's message is cut to 255 bytes on a UTF-8 boundary, one line
    at = (size_t)snprintf(body, sizeof body, "{\"messages\":\n[");
    for (int i = 0; i < 100; i++) at += (size_t)snprintf(body + at, sizeof body - at, " ");
    snprintf(body + at, sizeof body - at, "\xe4\xb8\xad]}");
    CHECK(parse(FG_API_CHAT, body, &r, &e) == -1 && str_is(e.code, "invalid_json"));
    n = strlen(e.message);
    CHECK(n < sizeof e.message && fg_utf8_check(e.message, n) == n && !strchr(e.message, '\n'));
    CHECK(fg_api_request_parse(NULL, 0, FG_API_CHAT, &r, &e) == -1 && str_is(e.code, "invalid_json"));
    CHECK(fg_api_request_parse("{}", 2, 7, &r, &e) == -1 && r.arena_ == NULL);
    // not NUL-terminated: parse reads only len bytes
    const char whole[] = "{\"prompt\":\"abc\"}garbage";
    CHECK(fg_api_request_parse(whole, 16, FG_API_COMPLETION, &r, &e) == 0 && str_is(r.prompt, "abc"));
    fg_api_request_free(&r);
}

// ---- (b) JSON mode -------------------------------------------------------------------------
static int feed_str(fg_jsonm *m, const char *s) { return fg_jsonm_feed(m, s, strlen(s)); }

// Feeds s[0..n) byte by byte; returns how many bytes were accepted.
static size_t feed_bytes(fg_jsonm *m, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!fg_jsonm_feed(m, s + i, 1)) return i;
    return n;
}

// The state with the bytes past depth cleared, so equal grammar positions compare equal.
static fg_jsonm canon(const fg_jsonm *m) {
    fg_jsonm c = *m;
    memset(c.stack + c.depth, 0, sizeof c.stack - (size_t)c.depth);
    return c;
}

// The length of the shortest completion of m, found by breadth-first search over single bytes
// through the checker's own transitions; -1 when more than max_len bytes or too many states.
enum { BFS_MAX = 4096 };
static int bfs_shortest(const fg_jsonm *m, int max_len) {
    static fg_jsonm seen[BFS_MAX], level[BFS_MAX], next[BFS_MAX];
    int n_seen = 0, n_level = 0;
    seen[n_seen++] = level[n_level++] = canon(m);
    for (int d = 0; d <= max_len; d++) {
        int n_next = 0;
        for (int i = 0; i < n_level; i++) {
            if (fg_jsonm_done(&level[i])) return d;
            for (int b = 0; b < 256; b++) {
                fg_jsonm t = level[i];
                char c = (char)b;
                if (!fg_jsonm_feed(&t, &c, 1)) continue;
                t = canon(&t);
                int dup = 0;
                for (int k = 0; k < n_seen && !dup; k++) dup = !memcmp(&seen[k], &t, sizeof t);
                if (dup) continue;
                if (n_seen == BFS_MAX || n_next == BFS_MAX) return -1;
                seen[n_seen++] = next[n_next++] = t;
            }
        }
        memcpy(level, next, (size_t)n_next * sizeof next[0]);
        n_level = n_next;
    }
    return -1;
}

// Prefix -> the exact shortest completion the checker must give.
static const struct { const char *prefix, *closing; } closings[] = {
    {"", "{}"}, {"  \n", "{}"}, {"{", "}"}, {"{ ", "}"}, {"{\"", "\":0}"}, {"{\"ab", "\":0}"}, {"{\"a\"", ":0}"},
    {"{\"a\" :", "0}"}, {"{\"a\":1", "}"}, {"{\"a\":1.", "0}"}, {"{\"a\":-", "0}"}, {"{\"a\":1e", "0}"},
    {"{\"a\":1E+", "0}"}, {"{\"a\":0", "}"}, {"{\"a\":12.5e-3", "}"}, {"{\"a\":tr", "ue}"}, {"{\"a\":f", "alse}"},
    {"{\"a\":nul", "l}"}, {"{\"a\":\"x", "\"}"}, {"{\"a\":\"x\\", "n\"}"}, {"{\"a\":\"\\u", "0000\"}"},
    {"{\"a\":\"\\uD8", "00\"}"}, {"{\"a\\u12", "00\":0}"}, {"{\"a\\", "n\":0}"}, {"{\"a\":\"\xc3", "\x80\"}"},
    {"{\"a\":\"\xe0", "\xa0\x80\"}"}, {"{\"a\":\"\xed", "\x80\x80\"}"}, {"{\"a\":\"\xf0", "\x90\x80\x80\"}"},
    {"{\"a\":\"\xf4", "\x80\x80\x80\"}"}, {"{\"a\":\"\xf0\x9f", "\x80\x80\"}"}, {"{\"\xe2\x82", "\x80\":0}"},
    {"{\"a\":[", "]}"}, {"{\"a\":[1,", "0]}"}, {"{\"a\":[1", "]}"}, {"{\"a\":[{}", "]}"}, {"{\"a\":[{", "}]}"},
    {"{\"a\":1,", "\"\":0}"}, {"{\"a\":[[[\"", "\"]]]}"}, {"{\"a\":{\"b\":", "0}}"}, {"{\"a\":true", "}"},
    {"{}", ""}, {"{} \n", ""},
};

// Bytes the checker must refuse somewhere (accepted_prefix: how many are accepted first).
static const struct { const char *s; size_t len, accepted; } rejects[] = {
#define R(lit, acc) {lit, sizeof(lit) - 1, acc}
    R("{,", 1), R("{\"a\" 1", 5), R("{\"a\":01", 6), R("{\"a\":1.e", 7), R("{\"a\":-a", 6), R("{\"a\":1e+e", 8),
    R("{\"a\":.5", 5), R("{\"a\":+1", 5), R("{\"a\":1.5.2", 8), R("{\"a\":1e5e", 8), R("{\"a\":1e5.", 8),
    R("{\"a\":\"x\ty\"}", 7), R("{\"a\":\"\n\"}", 6), R("{\"\x1f\":0}", 2), R("{\"a\":\"\\x\"}", 7),
    R("{\"a\":\"\\u12g4\"}", 10), R("{\"a\":\"\\u\"}", 8), R("{\"a\":\"\xff\"}", 6), R("{\"a\":\"\x80\"}", 6),
    R("{\"a\":\"\xc0\x80\"}", 6), R("{\"a\":\"\xc1\xbf\"}", 6), R("{\"a\":\"\xe0\x80\x80\"}", 7),
    R("{\"a\":\"\xed\xa0\x80\"}", 7), R("{\"a\":\"\xf0\x80\x80\x80\"}", 7), R("{\"a\":\"\xf4\x90\x80\x80\"}", 7),
    R("{\"a\":\"\xf5\x80\x80\x80\"}", 6), R("{\"a\":\"\xc3\x41\"}", 7), R("{\"a\":\"\xe2\x82\"}", 8),
    R("{\"a\":tru3}", 8), R("{\"a\":nulL}", 8), R("{\"a\":True}", 5), R("[", 0), R("1", 0), R("\"a\"", 0),
    R(" null", 1), R("\xef\xbb\xbf{}", 0), R("{}x", 2), R("{} {}", 3), R("{}\x00", 2), R("{\"a\":1}}", 7),
    R("{\"a\":[1}", 7), R("{\"a\":{]}", 6), R("{\"a\":[1,]}", 8), R("{\"a\":1,}", 7), R("{\"a\":[,]}", 6),
    R("{a:1}", 1), R("{'a':1}", 1), R("{\"a\"::1}", 5), R("{\"a\":1 2}", 7), R("{\"a\":\"x\" \"y\"}", 9),
    R("{\"a\":NaN}", 5), R("{\"a\":Infinity}", 5), R("{\"a\":-Infinity}", 6), R("{\"a\":\x00}", 5),
#undef R
};

static void test_mask_hand(void) {
    for (size_t i = 0; i < sizeof closings / sizeof closings[0]; i++) {
        const char *p = closings[i].prefix, *want = closings[i].closing;
        fg_jsonm m;
        fg_jsonm_init(&m);
        CHECK_MSG(feed_bytes(&m, p, strlen(p)) == strlen(p), "closing case %zu: prefix '%s' refused", i, p);
        char buf[64];
        size_t n = fg_jsonm_closing(&m, buf, sizeof buf);
        CHECK_MSG(n == strlen(want) && !strcmp(buf, want), "closing case %zu: '%s' gave '%s', want '%s'", i, p, buf, want);
        CHECK_MSG(bfs_shortest(&m, (int)n) == (int)n, "closing case %zu: a shorter completion than %zu bytes exists", i, n);
        fg_jsonm t = m;
        CHECK_MSG(fg_jsonm_feed(&t, buf, n) && fg_jsonm_done(&t), "closing case %zu: '%s' + '%s' not done", i, p, buf);
        CHECK(fg_jsonm_done(&m) == (n == 0));
        // small capacities: the count stays, the prefix is written and terminated, nothing past cap
        for (size_t cap = 0; cap <= n + 1; cap++) {
            char small[64];
            memset(small, 'Z', sizeof small);
            CHECK(fg_jsonm_closing(&m, small, cap) == n);
            if (cap) CHECK(!memcmp(small, want, cap - 1 < n ? cap - 1 : n) && small[cap - 1 < n ? cap - 1 : n] == 0);
            CHECK(small[cap] == 'Z');
        }
    }
    for (size_t i = 0; i < sizeof rejects / sizeof rejects[0]; i++) {
        fg_jsonm m, whole;
        fg_jsonm_init(&m);
        fg_jsonm_init(&whole);
        size_t acc = feed_bytes(&m, rejects[i].s, rejects[i].len);
        CHECK_MSG(acc == rejects[i].accepted, "reject case %zu: %zu bytes accepted, want %zu", i, acc, rejects[i].accepted);
        // all or nothing: a refused feed leaves the state as it was
        fg_jsonm before = m;
        CHECK(!fg_jsonm_feed(&m, rejects[i].s + acc, rejects[i].len - acc) && !memcmp(&before, &m, sizeof m));
        CHECK(!fg_jsonm_feed(&whole, rejects[i].s, rejects[i].len) && whole.state == 0 && whole.depth == 0);
    }
    // nesting: 32 open containers are accepted, a 33rd is refused; the completion closes all 32
    char deep[80];
    int n = 0;
    deep[n++] = '{';
    deep[n++] = '"'; deep[n++] = 'a'; deep[n++] = '"'; deep[n++] = ':';
    for (int i = 1; i < FG_JSONM_MAX_DEPTH; i++) deep[n++] = '[';
    fg_jsonm m;
    fg_jsonm_init(&m);
    CHECK(fg_jsonm_feed(&m, deep, (size_t)n) && m.depth == FG_JSONM_MAX_DEPTH);
    fg_jsonm t = m;
    CHECK(!fg_jsonm_feed(&t, "[", 1) && !fg_jsonm_feed(&t, "{", 1) && fg_jsonm_feed(&t, "1", 1));
    char buf[64];
    CHECK(fg_jsonm_closing(&m, buf, sizeof buf) == FG_JSONM_MAX_DEPTH && fg_jsonm_feed(&m, buf, 32) && fg_jsonm_done(&m));
    CHECK(feed_str(&m, " \t\r\n") && !feed_str(&m, "x") && fg_jsonm_done(&m));
}

// python3 and the oracle script, or NULL (then the Python checks are skipped with a note).
static const char *oracle_cmd(void) {
    static char cmd[256];
    const char *script = "tests/ref/jsonm_oracle.py";
    if (access(script, R_OK)) return NULL;
    const char *py = !access("/usr/bin/python3", X_OK) ? "/usr/bin/python3" : NULL;
    if (!py && system("python3 -c 'import json' >/dev/null 2>&1") == 0) py = "python3";
    if (!py) return NULL;
    snprintf(cmd, sizeof cmd, "%s %s", py, script);
    return cmd;
}

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void put_hex(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", (unsigned char)s[i]);
}

// Runs the oracle's verdict mode on path; fills got[0..n) with 0/1; returns 0 on success.
static int oracle_verdicts(const char *cmd, const char *path, char *got, size_t n) {
    char line[512];
    snprintf(line, sizeof line, "%s verdict %s", cmd, path);
    FILE *p = popen(line, "r");
    if (!p) return -1;
    size_t k = 0;
    int c;
    while ((c = fgetc(p)) != EOF)
        if (c == '0' || c == '1') { if (k < n) got[k] = (char)(c - '0'); k++; }
    return pclose(p) == 0 && k == n ? 0 : -1;
}

typedef struct { char *s; size_t len; } doc;

static void test_mask_oracle(void) {
    const char *cmd = oracle_cmd();
    if (!cmd) { printf("note: python3 or tests/ref/jsonm_oracle.py not found: the Python oracle checks of JSON mode were skipped\n"); return; }
    // 1. a few hundred random documents from Python (fixed seed)
    enum { N_DOCS = 300 };
    char line[300];
    snprintf(line, sizeof line, "%s gen 20261 %d", cmd, N_DOCS);
    FILE *p = popen(line, "r");
    CHECK(p != NULL);
    if (!p) return;
    doc docs[N_DOCS];
    int n_docs = 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    while (n_docs < N_DOCS && (got = getline(&buf, &cap, p)) > 0) {
        size_t h = (size_t)got;
        while (h && (buf[h - 1] == '\n' || buf[h - 1] == '\r')) h--;
        docs[n_docs].len = h / 2;
        docs[n_docs].s = malloc(h / 2 + 1);
        for (size_t i = 0; i < h / 2; i++) docs[n_docs].s[i] = (char)(hexval(buf[2 * i]) << 4 | hexval(buf[2 * i + 1]));
        n_docs++;
    }
    free(buf);
    CHECK_MSG(pclose(p) == 0 && n_docs == N_DOCS, "the oracle generated %d of %d documents", n_docs, N_DOCS);

    // 2. every prefix is accepted byte by byte and in one feed; the closing of each is accepted and
    // ends done, and goes to Python; the shortest ones are checked shortest by search
    char tmp[] = "/tmp/fg_jsonm_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    size_t n_lines = 0, n_bfs = 0, n_bad = 0;
    for (int d = 0; d < n_docs; d++) {
        const doc *x = &docs[d];
        fg_jsonm m;
        fg_jsonm_init(&m);
        for (size_t i = 0; i <= x->len; i++) {
            char close[64];
            size_t cn = fg_jsonm_closing(&m, close, sizeof close);
            fg_jsonm t = m;
            int ok = cn < sizeof close && fg_jsonm_feed(&t, close, cn) && fg_jsonm_done(&t);
            if (cn <= 6 && (i % 5 == 0)) {
                n_bfs++;
                ok &= bfs_shortest(&m, (int)cn) == (int)cn;
            }
            if (i % 3 == 0 || i == x->len) { // one whole-prefix feed in three (quadratic otherwise)
                fg_jsonm w;
                fg_jsonm_init(&w);
                ok &= fg_jsonm_feed(&w, x->s, i) && !memcmp(&w, &m, sizeof m);
            }
            if (!ok && n_bad++ < 5) fprintf(stderr, "doc %d prefix %zu: closing '%s' failed\n", d, i, close);
            put_hex(f, x->s, i);
            put_hex(f, close, cn);
            fputc('\n', f);
            n_lines++;
            if (i < x->len && !fg_jsonm_feed(&m, x->s + i, 1)) {
                CHECK_MSG(0, "doc %d: byte %zu (0x%02x) refused", d, i, (unsigned char)x->s[i]);
                break;
            }
        }
        CHECK_MSG(fg_jsonm_done(&m), "doc %d: not done at its end", d);
    }
    CHECK_MSG(n_bad == 0, "%zu prefix completions failed", n_bad);
    fclose(f);
    char *verdict = malloc(n_lines);
    int rc = oracle_verdicts(cmd, tmp, verdict, n_lines);
    CHECK_MSG(rc == 0, "the oracle failed on %s", tmp);
    size_t n_py_bad = 0;
    for (size_t i = 0; rc == 0 && i < n_lines; i++) n_py_bad += !verdict[i];
    CHECK_MSG(n_py_bad == 0, "%zu of %zu prefix + closing texts are not a JSON object for Python", n_py_bad, n_lines);
    free(verdict);
    unlink(tmp);

    // 3. mutated documents: the checker accepts the whole text (and is done) exactly when Python
    // reads it as a dict
    enum { N_MUT = 3000 };
    static const char alphabet[] = "{}[]:,\" \t\n\\/ue0123456789.-+Eaflnrst\x00\x01\x1f\x7f\x80\xbf\xc0\xc2\xe0\xed\xef\xf0\xf4\xf5\xff";
    strcpy(tmp, "/tmp/fg_jsonm_XXXXXX");
    fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd < 0) return;
    f = fdopen(fd, "w");
    char mine[N_MUT];
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char *mut = malloc(4096);
    for (int k = 0; k < N_MUT; k++) {
        const doc *x = &docs[k % n_docs];
        size_t len = FG_MIN(x->len, (size_t)4000);
        memcpy(mut, x->s, len);
        int edits = 1 + (int)((rng >> 40) % 3);
        for (int e = 0; e < edits; e++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = len ? (size_t)(rng >> 33) % len : 0;
            char c = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
            switch ((rng >> 10) % 3) {
            case 0: if (len) mut[at] = c; break;                                       // replace
            case 1: memmove(mut + at + 1, mut + at, len - at); mut[at] = c; len++; break; // insert
            default: if (len) { memmove(mut + at, mut + at + 1, len - at - 1); len--; } // delete
            }
        }
        fg_jsonm m;
        fg_jsonm_init(&m);
        mine[k] = (char)(fg_jsonm_feed(&m, mut, len) && fg_jsonm_done(&m));
        put_hex(f, mut, len);
        fputc('\n', f);
    }
    free(mut);
    fclose(f);
    char theirs[N_MUT];
    rc = oracle_verdicts(cmd, tmp, theirs, N_MUT);
    CHECK_MSG(rc == 0, "the oracle failed on %s", tmp);
    int n_diff = 0, n_valid = 0;
    for (int k = 0; rc == 0 && k < N_MUT; k++) {
        n_valid += theirs[k];
        if (mine[k] != theirs[k] && n_diff++ < 5) fprintf(stderr, "mutation %d: checker %d, Python %d\n", k, mine[k], theirs[k]);
    }
    CHECK_MSG(n_diff == 0, "%d of %d mutated documents judged differently", n_diff, N_MUT);
    printf("json mode vs Python: %d documents, %zu prefixes completed (%zu searched for shorter), %d mutations (%d still valid)\n",
           n_docs, n_lines, n_bfs, N_MUT, n_valid);
    unlink(tmp);
    for (int d = 0; d < n_docs; d++) free(docs[d].s);
}

// ---- (c) fg_json_append_string ---------------------------------------------------------------
static void check_append(const char *s, size_t len) {
    char *want = NULL;
    size_t wlen = 0;
    FILE *m = open_memstream(&want, &wlen);
    fg_json_write_string(m, s, len);
    fclose(m);
    size_t pos = 0, cap = wlen + 8;
    char *out = malloc(cap);
    fg_json_append_string(out, cap, &pos, s, len);
    CHECK(pos == wlen && !memcmp(out, want, wlen) && out[wlen] == 0);
    fg_json *j = fg_json_parse(out, pos, "appended");
    CHECK_MSG(j && j->type == FG_JSON_STRING, "%s", fg_last_error());
    if (j && fg_utf8_check(s, len) == len) CHECK(j->len == len && !memcmp(j->str, s, len));
    fg_json_free(j);
    // appended after existing text, at every capacity: nothing past cap, always terminated
    for (size_t c = 0; c <= wlen + 4; c++) {
        char *b = malloc(c + 16);
        memset(b, 'Z', c + 16);
        size_t p = 3;
        if (c > 3) memcpy(b, "ab:", 3);
        fg_json_append_string(b, c, &p, s, len);
        CHECK(p == 3 + wlen);
        for (size_t i = c; i < c + 16; i++) CHECK(b[i] == 'Z');
        if (c) {
            size_t end = FG_MIN(p, c - 1);
            CHECK(b[end] == 0);
            if (end > 3) CHECK(!memcmp(b + 3, want, end - 3));
        }
        free(b);
    }
    free(out);
    free(want);
}

static void test_append_string(void) {
#define APPEND(lit) check_append(lit, sizeof(lit) - 1)
    APPEND("");
    APPEND("plain");
    APPEND("q\"b\\s\n\t\r\b\f\x01\x1f\x7f/");
    APPEND("a\0b");
    APPEND("h\xc3\xa9llo \xf0\x9f\x98\x80 \xe4\xb8\xad");
    APPEND("\xff\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82"); // each invalid byte -> \ufffd
#undef APPEND
    size_t pos = 0;
    char buf[32];
    fg_json_append_string(buf, sizeof buf, &pos, "\xff", 1);
    CHECK(pos == 8 && !strcmp(buf, "\"\\ufffd\""));
    pos = 0;
    fg_json_append_string(NULL, 0, &pos, "abc", 3); // sizing pass
    CHECK(pos == 5);
    // random bytes, biased towards UTF-8 lead and continuation bytes
    uint64_t rng = 42;
    char s[40];
    for (int k = 0; k < 400; k++) {
        size_t len = (size_t)(k % 40);
        for (size_t i = 0; i < len; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            unsigned v = (unsigned)(rng >> 56);
            s[i] = (char)((rng >> 40) % 3 == 0 ? v : (rng >> 40) % 3 == 1 ? 0x80 | (v & 0x3F) : 'a' + v % 26);
        }
        check_append(s, len);
    }
}

int main(void) {
    test_chat_valid();
    test_completion_valid();
    test_rejects();
    test_error_text_bounds();
    test_mask_hand();
    test_mask_oracle();
    test_append_string();
    return TEST_DONE();
}
