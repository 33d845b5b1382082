// fuzz_request.c: libFuzzer target for the server's request side (frugal_serve.h): the API request
// parser, the JSON-mode checker and the JSON string writer, all on the same input bytes.
// Properties checked beyond "no crash, no sanitizer report":
//   - fg_api_request_parse, as chat and as completion: an accepted request keeps every invariant
//     (n in [1, FG_API_MAX_N], n_stop <= FG_API_MAX_STOP, every string NUL-terminated at its
//     length and valid UTF-8, at least one message with a known role for chat, numbers in range)
//     and fg_api_request_free zeroes it; a rejected one leaves the request empty and an error of
//     one line, valid UTF-8, with a type and a code;
//   - fg_jsonm_feed byte by byte and whole agree; after every accepted byte the prefix plus
//     fg_jsonm_closing() is accepted and ends done; a refused byte leaves the state unchanged;
//   - fg_json_append_string of the input parses back with fg_json_parse as one string (equal to
//     the input when that is valid UTF-8), and a truncated write is a prefix of the full one.
#include "frugal_serve.h"
#include "formats/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_string(const char *s, size_t len) {
    if (!s || strlen(s) != len || fg_utf8_check(s, len) != len) abort();
}

static void check_request(const fg_api_request *r, int kind) {
    if (r->kind != kind || !r->arena_) abort();
    if (kind == FG_API_CHAT) {
        if (r->n_msgs < 1 || r->n_msgs > 4096 || !r->msgs || r->prompt) abort();
        for (int i = 0; i < r->n_msgs; i++) {
            const char *role = r->msgs[i].role;
            if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool")))
                abort();
            if (!r->msgs[i].content) abort();
            check_string(r->msgs[i].content, strlen(r->msgs[i].content));
        }
    } else {
        if (r->n_msgs != 0 || r->msgs) abort();
        check_string(r->prompt, r->prompt_len);
    }
    if (r->model) check_string(r->model, strlen(r->model));
    if (r->n < 1 || r->n > FG_API_MAX_N || r->n_stop < 0 || r->n_stop > FG_API_MAX_STOP) abort();
    for (int i = 0; i < r->n_stop; i++) {
        if (r->stop_len[i] == 0) abort();
        check_string(r->stop[i], r->stop_len[i]);
    }
    if (r->max_tokens != -1 && r->max_tokens < 1) abort();
    if (!(r->temperature >= 0 && r->temperature <= 2) || !(r->top_p >= 0 && r->top_p <= 1)) abort();
    if (!(r->frequency_penalty >= -2 && r->frequency_penalty <= 2)) abort();
    if (!(r->presence_penalty >= -2 && r->presence_penalty <= 2)) abort();
    if ((r->stream | r->include_usage | r->json_mode | r->has_seed) & ~1) abort();
}

static void fuzz_parse(const char *s, size_t n, int kind) {
    fg_api_request r;
    fg_api_error e;
    if (fg_api_request_parse(s, n, kind, &r, &e) == 0) {
        check_request(&r, kind);
        fg_api_request_free(&r);
        if (r.arena_ || r.msgs || r.prompt || r.n_msgs) abort();
        return;
    }
    size_t ml = strnlen(e.message, sizeof e.message);
    if (ml == 0 || ml == sizeof e.message || fg_utf8_check(e.message, ml) != ml || strchr(e.message, '\n')) abort();
    if (strnlen(e.param, sizeof e.param) == sizeof e.param || !e.type || !e.code) abort();
    if (r.arena_ || r.msgs || r.prompt || r.model || r.n_msgs) abort();
}

static void fuzz_mask(const char *s, size_t n) {
    fg_jsonm m, whole;
    fg_jsonm_init(&m);
    fg_jsonm_init(&whole);
    int all = fg_jsonm_feed(&whole, s, n);
    size_t i = 0;
    for (; i < n; i++) {
        fg_jsonm before = m;
        if (!fg_jsonm_feed(&m, s + i, 1)) {
            if (memcmp(&before, &m, sizeof m)) abort();
            break;
        }
        char close[64];
        size_t cn = fg_jsonm_closing(&m, close, sizeof close);
        fg_jsonm t = m;
        if (cn >= sizeof close || !fg_jsonm_feed(&t, close, cn) || !fg_jsonm_done(&t)) abort();
        if (fg_jsonm_done(&m) != (cn == 0)) abort();
    }
    if (all != (i == n)) abort();
    if (all && memcmp(&whole, &m, sizeof m)) abort();
    if (!all && (whole.state != 0 || whole.depth != 0)) abort(); // unchanged from init
}

static void fuzz_append(const char *s, size_t n) {
    size_t cap = 6 * n + 3, pos = 0;
    char *out = malloc(cap);
    if (!out) abort();
    fg_json_append_string(out, cap, &pos, s, n);
    if (pos >= cap || out[pos] != 0) abort();
    fg_json *j = fg_json_parse(out, pos, "appended");
    if (!j || j->type != FG_JSON_STRING) abort();
    if (fg_utf8_check(s, n) == n && (j->len != n || memcmp(j->str, s, n))) abort();
    fg_json_free(j);
    // truncated: the first cap - 1 bytes of the full text, terminated, the full length counted
    size_t small = pos / 2 + 1, p2 = 0;
    char *t = malloc(small);
    if (!t) abort();
    fg_json_append_string(t, small, &p2, s, n);
    if (p2 != pos || t[small - 1] != 0 || memcmp(t, out, small - 1)) abort();
    free(t);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    fuzz_parse(s, size, FG_API_CHAT);
    fuzz_parse(s, size, FG_API_COMPLETION);
    fuzz_mask(s, size);
    fuzz_append(s, size);
    return 0;
}
