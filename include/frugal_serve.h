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

// ---- the engine (src/serve/engine.c) -----------------------------------------------------------
// One engine owns one batched context (fg_ctx) over a weight store and runs it from its own
// thread. Each step mixes one decode row per running choice with chunks of waiting prompts under
// a row budget (continuous batching: a long prompt is prefilled a chunk per step, so running
// streams keep going). Admission reserves each request's worst case (prompt + max_tokens per
// choice), so an admitted request never runs out of cache. Prefix reuse: every sequence the
// cache holds (running, or kept after its request ended until its blocks are needed) is indexed
// by a chained hash of its full token blocks; a new prompt forks the one sharing the longest
// prefix and prefills only the rest. n > 1 choices fork one prefill. Sampling per choice:
// temperature, top_p, frequency/presence penalties on its generated tokens, a seeded rng
// (seed + choice index), JSON mode by masking tokens whose bytes cannot continue a valid object
// (and closing it when max_tokens runs out). Text inside <think> .. </think> is reasoning.
// Self-speculative decoding (speculative > 0, a model with MTP depths): each step the depths draft
// up to N greedy tokens per choice, the step's forward carries them after the choice's pending
// token, and the choice samples row after row with its own sampler, keeping drafts while they equal
// what it sampled: the text is the text without drafts, token for token and seed for seed.
typedef struct {
    int parallel;       // choices decoded together (>= 1; default 16)
    int max_len;        // positions one sequence may reach (0: the model's max_position_embeddings,
                        // at most FG_ENGINE_DEFAULT_CTX; a larger one must be asked for)
    int n_ctx;          // cache positions in all (0: parallel * max_len, plus room for kept prefixes)
    int max_queue;      // choices that may wait beyond those the free slots take at once; then FG_JOB_BUSY (default 64)
    int kv_type;        // FG_F32 or FG_BF16
    int step_rows;      // rows one step may carry: decode rows first, then prompt chunks (default 256)
    int chat_style;     // FG_CHAT_*; -1: FRUGAL for the byte tokenizer, DEEPSEEK_V3 for BPE
    int max_tokens;     // default max_tokens of a request that names none (0: what the context allows)
    int speculative;    // MTP drafts per choice and step (0: off; at most the model's num_nextn_predict_layers):
                        // each choice's step verifies its drafts in the batch, same output as without
} fg_engine_opts;
#define FG_ENGINE_DEFAULT_CTX 4096
void fg_engine_opts_default(fg_engine_opts *o);

typedef struct fg_engine fg_engine;
// tok: the model's BPE tokenizer, or NULL for frugal's byte tokenizer; ws and tok must outlive
// the engine. Starts the engine thread. NULL with an error (bad options, no memory for the cache).
fg_engine *fg_engine_create(const fg_wstore *ws, const fg_tokenizer *tok, const fg_engine_opts *o);
// Stops admitting, lets running requests finish for up to drain_s seconds, cancels the rest and
// wakes every waiter (their jobs end with finish "cancelled"). Idempotent.
void fg_engine_drain(fg_engine *e, double drain_s);
void fg_engine_free(fg_engine *e);  // drains with 0 s, joins the thread; jobs still held stay valid to release

enum { FG_JOB_OK = 0, FG_JOB_BUSY = 1, FG_JOB_INVALID = 2, FG_JOB_CLOSED = 3 };
enum { FG_FINISH_NONE = 0, FG_FINISH_STOP = 1, FG_FINISH_LENGTH = 2, FG_FINISH_CANCELLED = 3 };
typedef struct fg_job fg_job;
// Renders (chat) or takes (completion: BOS + the prompt, special tokens parsed, as `frugal
// generate`) the prompt, tokenizes it and queues the request. Returns the job (*status
// FG_JOB_OK), or NULL with *status FG_JOB_BUSY (queue full), FG_JOB_INVALID (*err filled: a
// prompt longer than the context, max_tokens beyond it) or FG_JOB_CLOSED (draining). Thread-safe.
fg_job *fg_engine_submit(fg_engine *e, const fg_api_request *r, int *status, fg_api_error *err);

typedef struct {
    int prompt_tokens, completion_tokens, cache_hit_tokens;
    double ttft_s;      // submit to the first sampled token
} fg_job_usage;
typedef struct {        // what a waiter gets: text since its previous fg_job_wait
    int n;              // choices
    struct {
        char *content, *reasoning;   // deltas (NUL-terminated), owned by the update
        size_t n_content, n_reasoning, cap_content, cap_reasoning;
        int finish;                  // FG_FINISH_*, reported once (then 0 in later updates)
        int n_tokens;                // tokens sampled since the previous update (their text may be
                                     // empty, or held back: a part of a character or of a stop string)
    } ch[FG_API_MAX_N];
    int done;           // every choice finished: usage is final, no more updates
    fg_job_usage usage;
} fg_job_update;
// Waits up to timeout_ms for new text or the end. Returns 1 when *u holds something new (or the
// job is done), 0 on timeout. Text is released only as whole UTF-8 characters and never while it
// could still turn out to be the start of a stop string. u starts zeroed; free with
// fg_job_update_free.
int fg_job_wait(fg_job *j, int timeout_ms, fg_job_update *u);
void fg_job_update_free(fg_job_update *u);
// Ends the caller's hold: a job still running is cancelled (its sequences freed at the next
// step); memory is freed once the engine has dropped it too. Thread-safe; once per job.
void fg_job_release(fg_job *j);

#define FG_ENGINE_HIST 12 // latency histogram buckets (upper bounds in fg_engine_stats.le) + 1 overflow
typedef struct {
    uint64_t requests, prompt_tokens, completion_tokens, cache_hit_tokens, cancelled;
    uint64_t steps, step_rows;               // engine steps run and rows they carried
    int queued, running, last_batch;         // requests waiting, choices running, rows of the last step
    double le[FG_ENGINE_HIST];               // bucket bounds in seconds (the last is +inf)
    uint64_t ttft[FG_ENGINE_HIST], itl[FG_ENGINE_HIST]; // counts per bucket (not cumulative)
    double ttft_sum, itl_sum;
    uint64_t ttft_n, itl_n;
    int n_ctx, free_positions, kept_sequences;
    uint64_t spec_proposed[FG_MTP_MAX], spec_accepted[FG_MTP_MAX]; // drafts of depth k+1 verified / accepted
} fg_engine_stats;
void fg_engine_stats_get(fg_engine *e, fg_engine_stats *s);

#ifdef __cplusplus
}
#endif
#endif
