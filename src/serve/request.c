// request.c: OpenAI-shaped request bodies (POST /v1/chat/completions, /v1/completions) into
// validated fg_api_request values (frugal_serve.h; the HTTP side lives in server/).
//
// What it is: the body goes through the strict DOM parser (formats/json.h), then one walk over the
// known fields checks types and ranges and copies every string the request keeps into a single
// block, the request's arena_. The walk runs twice over the same tree: a measuring pass that
// validates and sizes the block, then a copying pass into a block of exactly that size, so there
// is one allocation per request and no validation code written twice.
// What it deliberately does not do: no HTTP, no tokenisation, no model-dependent defaults
// (max_tokens stays -1 when absent; the engine decides), no tools, logprobs or logit_bias (these
// are unknown fields and ignored, as OpenAI's API ignores fields it does not know).
// Errors: one line, at most 255 bytes, cut on a UTF-8 boundary; param names the field as OpenAI
// does ("messages[1].content[0].text", "stop[2]"); code is one of
//   invalid_json       the body does not parse (the message gives line:col);
//   invalid_type       a known field (or the body itself) has the wrong JSON type;
//   missing_field      a required field is absent or null;
//   invalid_value      out of range, unknown enum value, too many entries, a NUL character;
//   unsupported_value  valid for OpenAI but not served here (response_format "json_schema",
//                      content parts other than text);
//   out_of_memory      the request's block could not be allocated.
// Invariants of an accepted request: kind is FG_API_CHAT with 1 <= n_msgs <= MAX_MSGS and every
// role one of system|user|assistant|tool, or FG_API_COMPLETION with prompt != NULL; every string
// is NUL-terminated at its length and holds no NUL byte; 0 <= n_stop <= FG_API_MAX_STOP, each stop
// non-empty; every number inside the range its comment in frugal_serve.h gives.
#include "frugal_serve.h"
#include "formats/json.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MSGS 4096        // most messages one chat request may carry
#define EXCERPT 32           // most bytes of a client's string quoted back in an error

// ---- errors --------------------------------------------------------------------------------
// Makes s (NUL-terminated, at most cap - 1 bytes) one line: control bytes become spaces, and a
// UTF-8 sequence that vsnprintf cut at the end is dropped whole.
static void tidy_line(char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) s[i] = ' ';
    if (n && fg_utf8_check(s, n) != n) {
        size_t st = n - 1; // start of the last sequence
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        if (fg_utf8_check(s + st, n - st) != n - st) s[st] = 0;
    }
}

static int fail(fg_api_error *err, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(fg_api_error *err, const char *code, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    tidy_line(err->message);
    snprintf(err->param, sizeof err->param, "%s", param);
    err->type = "invalid_request_error";
    err->code = code;
    return fg_set_error("%s", err->message);
}

// A client's string as it may appear inside an error message: at most EXCERPT bytes, cut on a
// UTF-8 boundary (the JSON parser guarantees s is valid UTF-8), "..." when shortened.
static const char *excerpt(const fg_json *v, char *buf, size_t cap) {
    size_t n = v->len;
    int cut = n > EXCERPT;
    if (cut) {
        n = EXCERPT;
        while (n > 0 && ((unsigned char)v->str[n] & 0xC0) == 0x80) n--;
    }
    snprintf(buf, cap, "%.*s%s", (int)n, v->str, cut ? "..." : "");
    return buf;
}

static int bad_type(fg_api_error *err, const char *param, const char *want, const fg_json *v) {
    return fail(err, "invalid_type", param, "invalid type for '%s': expected %s, got %s", param, want,
                fg_json_type_name(v->type));
}

// ---- the walk ------------------------------------------------------------------------------
// A bump allocator over the request's block. base == NULL is the measuring pass: nothing is
// written, used only counts, and the pointers handed out are NULL.
typedef struct {
    fg_api_error *err;
    char *base;
    size_t used;
} walk;

static void *take(walk *w, size_t n, size_t align) {
    w->used = (w->used + align - 1) / align * align;
    char *p = w->base ? w->base + w->used : NULL;
    w->used += n;
    return p;
}

// Appends s[0..n) to the string the caller is building at *dst (its current length *len).
static void put(walk *w, char *dst, size_t *len, const char *s, size_t n) {
    if (w->base) memcpy(dst + *len, s, n);
    *len += n;
}

// A member of obj, or NULL when absent or null (null means absent for every optional field).
static const fg_json *member(const fg_json *obj, const char *key) {
    const fg_json *v = fg_json_get(obj, key);
    return v && v->type != FG_JSON_NULL ? v : NULL;
}

// Text the engine passes on as C strings: a NUL byte (\u0000 in the JSON) would cut it short.
static int no_nul(walk *w, const fg_json *v, const char *param) {
    if (memchr(v->str, 0, v->len))
        return fail(w->err, "invalid_value", param,
                    "'%s' contains a NUL character (\\u0000), which frugal cannot process", param);
    return 0;
}

// Copies string v into the block: *out (NUL-terminated) and *len.
static int copy_string(walk *w, const fg_json *v, const char *param, const char **out, size_t *len) {
    if (no_nul(w, v, param)) return -1;
    char *p = take(w, v->len + 1, 1);
    if (p) { memcpy(p, v->str, v->len); p[v->len] = 0; }
    *out = p;
    if (len) *len = v->len;
    return 0;
}

// x in the fewest digits that read back as x ("0.1", not "0.10000000000000001").
static const char *fmt_num(double x, char *buf, size_t cap) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    return buf;
}

// The optional number key of obj in [lo, hi] (integer: whole values only). Returns 1 and sets *out
// when present, 0 when absent, -1 on error.
static int number_field(walk *w, const fg_json *obj, const char *key, double lo, double hi, int integer,
                        double *out) {
    const fg_json *v = member(obj, key);
    if (!v) return 0;
    if (v->type != FG_JSON_NUMBER) return bad_type(w->err, key, integer ? "an integer" : "a number", v);
    char a[32], b[32], c[32];
    if (integer && v->num != floor(v->num))
        return fail(w->err, "invalid_value", key, "'%s' must be an integer, got %s", key, fmt_num(v->num, c, sizeof c));
    if (!(v->num >= lo && v->num <= hi))
        return fail(w->err, "invalid_value", key, "'%s' must be between %s and %s, got %s", key, fmt_num(lo, a, sizeof a),
                    fmt_num(hi, b, sizeof b), fmt_num(v->num, c, sizeof c));
    *out = v->num;
    return 1;
}

static int bool_field(walk *w, const fg_json *obj, const char *key, const char *param, int *out) {
    const fg_json *v = member(obj, key);
    if (!v) return 0;
    if (v->type != FG_JSON_BOOL) return bad_type(w->err, param, "a boolean", v);
    *out = v->boolean;
    return 0;
}

// One message's content into *out: a string, or an array of text parts joined without separator
// (what the parts say, nothing added). c == NULL (absent or null) reads as "" when optional (an
// assistant message that only calls tools), else it is an error.
static int read_content(walk *w, const fg_json *c, int i, int optional, const char **out) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c) {
        if (!optional) return fail(w->err, "missing_field", param, "missing required field '%s'", param);
        char *empty = take(w, 1, 1);
        if (empty) *empty = 0;
        *out = empty;
        return 0;
    }
    if (c->type == FG_JSON_STRING) return copy_string(w, c, param, out, NULL);
    if (c->type != FG_JSON_ARRAY) return bad_type(w->err, param, "a string or an array of content parts", c);
    // Size the joined text first: the parts are checked here, copied below.
    size_t total = 0;
    int j = 0;
    for (const fg_json *p = c->child; p; p = p->next, j++) {
        snprintf(param, sizeof param, "messages[%d].content[%d]", i, j);
        if (p->type != FG_JSON_OBJECT) return bad_type(w->err, param, "a content part object", p);
        const fg_json *type = member(p, "type"), *text = member(p, "text");
        snprintf(param, sizeof param, "messages[%d].content[%d].type", i, j);
        if (!type) return fail(w->err, "missing_field", param, "missing required field '%s'", param);
        if (type->type != FG_JSON_STRING) return bad_type(w->err, param, "a string", type);
        if (type->len != 4 || memcmp(type->str, "text", 4)) {
            char ex[EXCERPT + 4];
            return fail(w->err, "unsupported_value", param, "content part type '%s' in '%s' is not supported (only 'text')",
                        excerpt(type, ex, sizeof ex), param);
        }
        snprintf(param, sizeof param, "messages[%d].content[%d].text", i, j);
        if (!text) return fail(w->err, "missing_field", param, "missing required field '%s'", param);
        if (text->type != FG_JSON_STRING) return bad_type(w->err, param, "a string", text);
        if (no_nul(w, text, param)) return -1;
        total += text->len;
    }
    char *dst = take(w, total + 1, 1);
    size_t len = 0;
    for (const fg_json *p = c->child; p; p = p->next) {
        const fg_json *text = member(p, "text");
        put(w, dst, &len, text->str, text->len);
    }
    if (dst) dst[len] = 0;
    *out = dst;
    return 0;
}

static int read_messages(walk *w, const fg_json *root, fg_api_request *r) {
    const fg_json *ms = member(root, "messages");
    if (!ms) return fail(w->err, "missing_field", "messages", "missing required field 'messages'");
    if (ms->type != FG_JSON_ARRAY) return bad_type(w->err, "messages", "an array of messages", ms);
    if (ms->n == 0) return fail(w->err, "invalid_value", "messages", "'messages' must hold at least one message");
    if (ms->n > MAX_MSGS)
        return fail(w->err, "invalid_value", "messages", "'messages' holds %d messages; at most %d are accepted", ms->n,
                    MAX_MSGS);
    fg_chat_msg *msgs = take(w, (size_t)ms->n * sizeof *msgs, alignof(fg_chat_msg));
    int i = 0;
    for (const fg_json *m = ms->child; m; m = m->next, i++) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (m->type != FG_JSON_OBJECT) return bad_type(w->err, param, "a message object", m);
        snprintf(param, sizeof param, "messages[%d].role", i);
        const fg_json *role = member(m, "role");
        if (!role) return fail(w->err, "missing_field", param, "missing required field '%s'", param);
        if (role->type != FG_JSON_STRING) return bad_type(w->err, param, "a string", role);
        static const char *const roles[][2] = {
            {"system", "system"}, {"developer", "system"}, {"user", "user"}, {"assistant", "assistant"}, {"tool", "tool"}};
        const char *as = NULL;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            if (role->len == strlen(roles[k][0]) && !memcmp(role->str, roles[k][0], role->len)) as = roles[k][1];
        if (!as) {
            char ex[EXCERPT + 4];
            return fail(w->err, "invalid_value", param,
                        "'%s' must be one of system, developer, user, assistant, tool; got '%s'", param,
                        excerpt(role, ex, sizeof ex));
        }
        const char *content = NULL;
        if (read_content(w, member(m, "content"), i, !strcmp(as, "assistant"), &content)) return -1;
        if (msgs) msgs[i] = (fg_chat_msg){.role = as, .content = content};
    }
    r->msgs = msgs;
    r->n_msgs = ms->n;
    return 0;
}

static int read_prompt(walk *w, const fg_json *root, fg_api_request *r) {
    const fg_json *p = member(root, "prompt");
    if (!p) return fail(w->err, "missing_field", "prompt", "missing required field 'prompt'");
    if (p->type == FG_JSON_ARRAY) {
        if (p->n != 1)
            return fail(w->err, "invalid_value", "prompt",
                        "'prompt' must be a string or an array of exactly one string, got an array of %d", p->n);
        p = p->child;
        if (p->type != FG_JSON_STRING) return bad_type(w->err, "prompt[0]", "a string", p);
        return copy_string(w, p, "prompt[0]", &r->prompt, &r->prompt_len);
    }
    if (p->type != FG_JSON_STRING) return bad_type(w->err, "prompt", "a string or an array of one string", p);
    return copy_string(w, p, "prompt", &r->prompt, &r->prompt_len);
}

static int read_stop(walk *w, const fg_json *root, fg_api_request *r) {
    const fg_json *s = member(root, "stop");
    if (!s) return 0;
    if (s->type != FG_JSON_STRING && s->type != FG_JSON_ARRAY)
        return bad_type(w->err, "stop", "a string or an array of strings", s);
    if (s->type == FG_JSON_ARRAY && s->n > FG_API_MAX_STOP)
        return fail(w->err, "invalid_value", "stop", "'stop' may hold at most %d strings, got %d", FG_API_MAX_STOP, s->n);
    const fg_json *first = s->type == FG_JSON_STRING ? s : s->child;
    int i = 0;
    for (const fg_json *e = first; e; e = s->type == FG_JSON_STRING ? NULL : e->next, i++) {
        char param[64];
        if (s->type == FG_JSON_STRING) snprintf(param, sizeof param, "stop");
        else snprintf(param, sizeof param, "stop[%d]", i);
        if (e->type != FG_JSON_STRING) return bad_type(w->err, param, "a string", e);
        if (e->len == 0) continue; // "" would stop everywhere; OpenAI ignores it
        if (copy_string(w, e, param, &r->stop[r->n_stop], &r->stop_len[r->n_stop])) return -1;
        r->n_stop++;
    }
    return 0;
}

static int read_response_format(walk *w, const fg_json *root, fg_api_request *r) {
    const fg_json *f = member(root, "response_format");
    if (!f) return 0;
    if (f->type != FG_JSON_OBJECT) return bad_type(w->err, "response_format", "an object", f);
    const fg_json *t = member(f, "type");
    if (!t) return fail(w->err, "missing_field", "response_format.type", "missing required field 'response_format.type'");
    if (t->type != FG_JSON_STRING) return bad_type(w->err, "response_format.type", "a string", t);
    if (t->len == 4 && !memcmp(t->str, "text", 4)) r->json_mode = 0;
    else if (t->len == 11 && !memcmp(t->str, "json_object", 11)) r->json_mode = 1;
    else if (t->len == 11 && !memcmp(t->str, "json_schema", 11))
        return fail(w->err, "unsupported_value", "response_format.type",
                    "response_format type 'json_schema' is not supported; use 'json_object'");
    else {
        char ex[EXCERPT + 4];
        return fail(w->err, "invalid_value", "response_format.type",
                    "'response_format.type' must be one of text, json_object; got '%s'", excerpt(t, ex, sizeof ex));
    }
    return 0;
}

// Every known field of root into r (defaults first). The same walk measures (w->base == NULL)
// and copies; on the copying pass it cannot fail, the measuring pass having checked everything.
static int read_request(walk *w, const fg_json *root, int kind, fg_api_request *r) {
    *r = (fg_api_request){.kind = kind, .max_tokens = -1, .temperature = 1, .top_p = 1, .n = 1};
    if (root->type != FG_JSON_OBJECT)
        return fail(w->err, "invalid_type", "", "the request body must be a JSON object, got %s", fg_json_type_article(root->type));
    if (kind == FG_API_CHAT ? read_messages(w, root, r) : read_prompt(w, root, r)) return -1;

    const fg_json *model = member(root, "model");
    if (model) {
        if (model->type != FG_JSON_STRING) return bad_type(w->err, "model", "a string", model);
        if (copy_string(w, model, "model", &r->model, NULL)) return -1;
    }
    if (bool_field(w, root, "stream", "stream", &r->stream)) return -1;
    const fg_json *so = member(root, "stream_options");
    if (so && so->type != FG_JSON_OBJECT) return bad_type(w->err, "stream_options", "an object", so);
    if (so && bool_field(w, so, "include_usage", "stream_options.include_usage", &r->include_usage)) return -1;

    double x;
    int got;
    if ((got = number_field(w, root, "max_tokens", 1, 2147483647.0, 1, &x)) < 0) return -1;
    if (got) r->max_tokens = (int)x;
    if ((got = number_field(w, root, "max_completion_tokens", 1, 2147483647.0, 1, &x)) < 0) return -1;
    if (got) r->max_tokens = (int)x; // the newer name wins when both are given
    if ((got = number_field(w, root, "temperature", 0, 2, 0, &x)) < 0) return -1;
    if (got) r->temperature = (float)x;
    if ((got = number_field(w, root, "top_p", 0, 1, 0, &x)) < 0) return -1;
    if (got) r->top_p = (float)x;
    // seed: any int64 (the doubles of the JSON tree are exact up to 2^53), kept as its bits
    if ((got = number_field(w, root, "seed", -9223372036854775808.0, 9223372036854774784.0, 1, &x)) < 0) return -1;
    if (got) { r->has_seed = 1; r->seed = (uint64_t)(int64_t)x; }
    if ((got = number_field(w, root, "n", 1, FG_API_MAX_N, 1, &x)) < 0) return -1;
    if (got) r->n = (int)x;
    if ((got = number_field(w, root, "frequency_penalty", -2, 2, 0, &x)) < 0) return -1;
    if (got) r->frequency_penalty = (float)x;
    if ((got = number_field(w, root, "presence_penalty", -2, 2, 0, &x)) < 0) return -1;
    if (got) r->presence_penalty = (float)x;
    if (read_stop(w, root, r)) return -1;
    return read_response_format(w, root, r);
}

int fg_api_request_parse(const char *body, size_t len, int kind, fg_api_request *r, fg_api_error *err) {
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    if (kind != FG_API_CHAT && kind != FG_API_COMPLETION)
        return fail(err, "invalid_value", "", "unknown request kind %d (expected chat or completion)", kind);
    fg_json *root = fg_json_parse(body, len, "body");
    if (!root) {
        const char *why = fg_last_error();
        if (!strncmp(why, "body:", 5)) why += 5; // "<line>:<col>: <what>"
        return fail(err, "invalid_json", "", "invalid JSON body at %s", why);
    }
    walk w = {.err = err};
    fg_api_request tmp;
    if (read_request(&w, root, kind, &tmp)) { fg_json_free(root); return -1; }
    // One block holds the messages array and every string: arena_ is that block.
    char *block = malloc(w.used + 1);
    if (!block) {
        fg_json_free(root);
        return fail(err, "out_of_memory", "", "out of memory for a request of %zu bytes", len);
    }
    w = (walk){.err = err, .base = block};
    int rc = read_request(&w, root, kind, r);
    fg_json_free(root);
    if (rc) { free(block); memset(r, 0, sizeof *r); return -1; } // unreachable: the first pass accepted
    r->arena_ = block;
    return 0;
}

void fg_api_request_free(fg_api_request *r) {
    if (!r) return;
    free(r->arena_);
    memset(r, 0, sizeof *r);
}
