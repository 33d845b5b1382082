// frugal_serve.h: serving models to many clients (docs/serve.md). Three parts, all HTTP-free:
//   - the API request parser: an OpenAI-shaped JSON body (chat completions or completions) into a
//     validated fg_api_request, or an error naming the field (src/serve/request.c);
//   - the JSON-mode constraint: an incremental JSON prefix checker that says whether bytes can
//     still continue a valid JSON object, and the shortest bytes that close it (src/serve/jsonmask.c);
//   - the engine: continuous batching over one fg_ctx, prefix reuse by block content hash, jobs
//     that stream text to their waiters (src/serve/engine.c).
// The HTTP transport (libmicrohttpd) lives in server/ and sees only the public headers.
#ifndef FRUGAL_SERVE_H
#define FRUGAL_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "frugal.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- API requests (src/serve/request.c) --------------------------------------------------------
enum { FG_API_CHAT = 0, FG_API_COMPLETION = 1 };
#define FG_API_MAX_STOP 4   // OpenAI's limit on "stop" strings
#define FG_API_MAX_N 16     // most choices ("n") one request may ask for

typedef struct {
    int kind;                  // FG_API_CHAT or FG_API_COMPLETION
    // chat: messages (role system|developer|user|assistant|tool; "developer" is read as system);
    // content as a string or an array of {"type":"text","text":...} parts, joined.
    fg_chat_msg *msgs; int n_msgs;
    // completion: the prompt (a string; an array of one string is accepted).
    const char *prompt; size_t prompt_len;
    const char *model;         // as given, or NULL
    int stream;                // "stream": true
    int include_usage;         // "stream_options": {"include_usage": true}
    int max_tokens;            // "max_tokens" or "max_completion_tokens" (>= 1), -1 when absent
    float temperature;         // [0, 2], default 1
    float top_p;               // [0, 1], default 1 (0 is kept as given; the engine clamps it)
    const char *stop[FG_API_MAX_STOP]; size_t stop_len[FG_API_MAX_STOP]; int n_stop; // non-empty strings
    int has_seed; uint64_t seed;
    int n;                     // [1, FG_API_MAX_N], default 1
    float frequency_penalty, presence_penalty; // [-2, 2], default 0
    int json_mode;             // "response_format": {"type": "json_object"} ("text" = 0)
    void *arena_;              // owns every string above (private)
} fg_api_request;

// The error of a rejected request, shaped as OpenAI's {"error": {...}}: message is one line,
// param names the offending field ("messages[1].content", "temperature") or is "" when none.
typedef struct {
    char message[256];
    char param[64];
    const char *type;          // "invalid_request_error"
    const char *code;          // NULL or a short code ("invalid_json", "missing_field", ...)
} fg_api_error;

// Parses body[0..len) (need not be NUL-terminated) as a request of kind. Returns 0 and fills *r
// (free it with fg_api_request_free), or -1 and fills *err (r left empty, nothing to free).
// Unknown fields are ignored, as OpenAI's API does; known fields of the wrong type or out of
// range are errors. Never reads outside body, never allocates more than a small multiple of len.
int fg_api_request_parse(const char *body, size_t len, int kind, fg_api_request *r, fg_api_error *err);
void fg_api_request_free(fg_api_request *r);   // zeroes *r; safe on a zeroed or freed request

// Appends s[0..len) as a JSON string literal (with quotes) to buf at *pos (capacity cap; writes
// stop at cap - 1 but *pos advances by the full length, so callers can size a second try).
// Escapes '"', '\\' and control characters; bytes that are not valid UTF-8 become \ufffd.
void fg_json_append_string(char *buf, size_t cap, size_t *pos, const char *s, size_t len);

// ---- JSON mode (src/serve/jsonmask.c) -------------------------------------------------------------
// An incremental checker for "bytes so far are a prefix of a valid JSON text whose top-level value is
// an object" (RFC 8259 grammar, UTF-8 checked, optional whitespace before and after). Plain value
// state: copy it to try bytes without committing. Nesting deeper than FG_JSONM_MAX_DEPTH is refused.
#define FG_JSONM_MAX_DEPTH 32
typedef struct {
    uint8_t stack[FG_JSONM_MAX_DEPTH]; // open containers: '{' or '['
    int depth;
    int state;                 // where in the grammar (private enum in jsonmask.c)
    int aux;                   // state detail: literal progress, \u digits, UTF-8 bytes left, ...
    int done;                  // the top-level object has been closed
} fg_jsonm;
void fg_jsonm_init(fg_jsonm *m);
// Feeds n bytes: returns 1 and advances *m when the bytes keep it a viable prefix, else returns 0
// and leaves *m unchanged. After the object closes only whitespace is accepted.
int fg_jsonm_feed(fg_jsonm *m, const char *s, size_t n);
// 1 once the top-level object is complete.
int fg_jsonm_done(const fg_jsonm *m);
// Writes the shortest bytes that complete the value (NUL-terminated when they fit) and returns
// their count (may exceed cap - 1). Feeding them makes fg_jsonm_done true.
size_t fg_jsonm_closing(const fg_jsonm *m, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
