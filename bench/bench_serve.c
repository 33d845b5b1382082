// bench_serve.c: a bounded load generator for `frugal serve` (or any OpenAI-compatible server),
// `make bench-serve`; not a test.
//
// Sweep (--clients 1,4,16,64): for each client count, that many threads send streaming chat
// completions back to back for --seconds; requests still in flight at the deadline are finished
// and counted, and the aggregate rate divides by the time until the last one ended. One line per
// count: requests, completion tokens/s (usage.completion_tokens, or the token chunks of a stream
// without usage), its ratio to the first count's, time to first token and inter-token latency
// (p50/p99 over the successful requests), prefix-cache hits (usage.prompt_cache_hit_tokens over
// prompt_tokens) and errors by kind. Each prompt starts with its client and request number, so a
// prefix cache can reuse only the chat template, not the question.
// Overload (--overload C): C threads send non-streamed requests as fast as replies come; every
// reply must be 200 or 429, the server (--pid) must stay alive (its VmRSS is sampled every 0.5 s),
// and once the load has stopped, one request (max_tokens 1) must get a 200 within 1 s (requests
// follow each other without pause until one does, for at most 3 s).
//
// What it deliberately is not: no keep-alive (one request per connection, `Connection: close`),
// no TLS, no HTTP/2, no general HTTP client: it reads the status, Content-Length, chunked transfer
// coding, Content-Type and Retry-After, and SSE `data:` fields (events end at a blank line).
// Times are CLOCK_MONOTONIC (fg_now); a request's clock starts just before connect(), so accept
// delays count; token times are when recv() returned the bytes (chunks that arrive in one read
// share a time and give a 0 ms gap). No sleep happens inside a measured span; a 429 in the sweep
// waits Retry-After (at most 5 s, not past the deadline) before that client's next request.
// Exit status: 0 when every request succeeded (sweep) and the overload rules held, else 1.
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "formats/json.h"
#include "util.h"

#define MAX_CLIENTS 4096
#define MAX_PROMPT 16384       // bytes of --prompt
#define HEAD_CAP 16384         // bytes of one reply's status line and headers
#define BODY_CAP (1 << 20)     // bytes of a non-streamed body kept for parsing

static const char *usage_text =
    "usage: bench_serve [--host H] [--port P] [--api-key K] [--model M] [--wait-health SECONDS]\n"
    "                   [--clients 1,4,16,64 --seconds S --max-tokens N --prompt TEXT]\n"
    "                   [--overload C --seconds S --pid SERVER_PID --max-tokens N]\n"
    "  --host H            server address (default 127.0.0.1)\n"
    "  --port P            server port (default 18080)\n"
    "  --api-key K         sent as Authorization: Bearer K (default none)\n"
    "  --model M           the request's \"model\" (default frugal)\n"
    "  --wait-health S     first poll GET /health until a 200, at most S seconds (default: no wait)\n"
    "  --clients LIST      sweep: comma-separated client counts, each for --seconds (streamed)\n"
    "  --overload C        overload: C clients send non-streamed requests without pause\n"
    "  --seconds S         load time per client count or overload run (default 10)\n"
    "  --max-tokens N      max_tokens of each request (default 64)\n"
    "  --prompt TEXT       the user message, after \"Request i of client c/n, run R: \" (default a question)\n"
    "  --pid PID           overload: the server's pid, for VmRSS samples and crash detection\n"
    "  --timeout S         one request's socket timeout (default 60)\n"
    "  --prefix N          prefix reuse: a system prompt of N bytes sent twice (two user messages);\n"
    "                      time to first token of each, the hit the second reports, best of 3\n"
    "Each mode runs when its option is given: --wait-health, then the sweep, then the overload.\n";

static struct {
    const char *host, *port, *api_key, *model, *prompt;
    int clients[64], n_clients;
    double seconds, timeout, wait_health;
    int max_tokens, overload, pid, prefix;
} opt = {"127.0.0.1", "18080", NULL, "frugal",
         "Explain in a few sentences why the sky is blue, then name three colours of a sunset.",
         {0}, 0, 10, 60, -1, 64, 0, 0, 0};
static struct addrinfo *addr;  // the server, resolved once
static unsigned long run_id;   // CLOCK_REALTIME microseconds at start: makes prompts unique per run

// ---- small buffers --------------------------------------------------------------------------
typedef struct { double *v; size_t n, cap; } dvec;
typedef struct { char *p; size_t n, cap; } bbuf;

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) { fprintf(stderr, "bench_serve: out of memory (%zu bytes)\n", n); exit(1); }
    return p;
}
static void dvec_push(dvec *d, double x) {
    if (d->n == d->cap) { d->cap = d->cap ? 2 * d->cap : 256; d->v = xrealloc(d->v, d->cap * sizeof *d->v); }
    d->v[d->n++] = x;
}
static void bb_put(bbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) { b->cap = (b->n + n + 1) * 2; b->p = xrealloc(b->p, b->cap); }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
// Nearest-rank percentile of v[0..n) (sorts v); NAN when empty.
static double percentile(dvec *d, double p) {
    if (!d->n) return NAN;
    qsort(d->v, d->n, sizeof *d->v, cmp_double);
    size_t k = (size_t)ceil(p / 100 * d->n);
    return d->v[k ? k - 1 : 0];
}

// ---- one HTTP exchange ----------------------------------------------------------------------
enum { F_CONNECT, F_IO, F_TIMEOUT, F_PROTO, F_N };  // failures without a usable HTTP reply
static const char *fail_name[F_N] = {"connect", "io", "timeout", "proto"};

typedef struct {
    int want_sse;          // the request asked for a stream: a 200 must be text/event-stream
    int status;            // HTTP status; 0 when none was read
    int fail;              // -1, or the F_* that ended the exchange
    char why[200];         // the failure, or the error message of a non-200 reply
    double retry_after;    // Retry-After seconds, -1 when absent
    double t0, t_first, t_last;  // start (before connect), first and latest token chunk
    int sse, done, tokens; // text/event-stream; saw [DONE]; chunks with content or reasoning text
    long usage_completion, usage_prompt, usage_hit;  // -1 when the reply had no usage
    dvec *itl;             // where gaps between token chunks (ms) go
    bbuf line, data, body; // SSE line and event data; a non-streamed body
} reply;

static void fail(reply *r, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(reply *r, int kind, const char *fmt, ...) {
    if (r->fail >= 0) return;
    r->fail = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
}

static long json_long(const fg_json *o, const char *key) {
    const fg_json *v = fg_json_get(o, key);
    return v && v->type == FG_JSON_NUMBER ? (long)v->num : -1;
}
static void read_usage(reply *r, const fg_json *j) {
    const fg_json *u = fg_json_get(j, "usage");
    if (!u || u->type != FG_JSON_OBJECT) return;
    r->usage_completion = json_long(u, "completion_tokens");
    r->usage_prompt = json_long(u, "prompt_tokens");
    r->usage_hit = json_long(u, "prompt_cache_hit_tokens");
}
// A token event: a content or reasoning_content string, even an empty one (frugal serve sends an
// event per decode step; a token's text may be empty or held back for a whole UTF-8 character).
static int has_text(const fg_json *delta, const char *key) {
    const fg_json *s = fg_json_get(delta, key);
    return s && s->type == FG_JSON_STRING;
}

// One SSE event's data (the data: lines joined by '\n'), received at time t.
static void sse_event(reply *r, const char *d, size_t n, double t) {
    if (n == 6 && !memcmp(d, "[DONE]", 6)) { r->done = 1; return; }
    if (r->done) { fail(r, F_PROTO, "SSE data after [DONE]"); return; }
    fg_json *j = fg_json_parse(d, n, "SSE data");
    if (!j) { fail(r, F_PROTO, "%s", fg_last_error()); return; }
    const fg_json *e = fg_json_get(j, "error"), *m = e ? fg_json_get(e, "message") : NULL;
    if (e) fail(r, F_PROTO, "error event in the stream: %s", m && m->type == FG_JSON_STRING ? m->str : "?");
    read_usage(r, j);
    const fg_json *ch = fg_json_get(j, "choices");
    int tok = 0;
    if (ch && ch->type == FG_JSON_ARRAY)
        for (const fg_json *c = ch->child; c; c = c->next) {
            const fg_json *delta = fg_json_get(c, "delta");
            tok += has_text(delta, "content") || has_text(delta, "reasoning_content");
        }
    if (tok) {
        if (!r->tokens) r->t_first = t;
        else if (r->itl) dvec_push(r->itl, (t - r->t_last) * 1e3);
        r->t_last = t;
        r->tokens += tok;
    }
    fg_json_free(j);
}

// Body bytes of a text/event-stream: lines end at '\n' (a '\r' before it is dropped); a blank
// line ends an event; only data: fields matter.
static void sse_feed(reply *r, const char *p, size_t n, double t) {
    while (n && r->fail < 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        bb_put(&r->line, p, k);
        p += k; n -= k;
        if (!nl) return;
        p++; n--;
        char *s = r->line.p;
        size_t len = r->line.n;
        if (len && s[len - 1] == '\r') len--;
        if (!len) {
            if (r->data.n) sse_event(r, r->data.p, r->data.n, t);
            r->data.n = 0;
        } else if (len >= 5 && !memcmp(s, "data:", 5)) {
            size_t o = 5 + (len > 5 && s[5] == ' ');
            if (r->data.n) bb_put(&r->data, "\n", 1);
            bb_put(&r->data, s + o, len - o);
        }
        r->line.n = 0;
    }
}

static void body_feed(reply *r, const char *p, size_t n, double t) {
    if (r->sse) sse_feed(r, p, n, t);
    else if (r->body.n < BODY_CAP) bb_put(&r->body, p, FG_MIN(n, BODY_CAP - r->body.n));
}

// The decoder of one reply's body: Content-Length, chunked, or up to EOF.
typedef struct {
    enum { B_LENGTH, B_CHUNKED, B_EOF } mode;
    enum { C_SIZE, C_DATA, C_DATA_END, C_TRAILER } state;
    long long left;        // bytes left of the body (B_LENGTH) or of this chunk (C_DATA)
    char line[256]; size_t ln; // the chunk-size or trailer line so far
    int complete;
} decoder;

// Feeds n received bytes; sets d->complete at the end of the body.
static void decode(reply *r, decoder *d, const char *p, size_t n, double t) {
    if (d->mode != B_CHUNKED) {
        size_t k = d->mode == B_LENGTH ? (size_t)FG_MIN((long long)n, d->left) : n;
        body_feed(r, p, k, t);
        if (d->mode == B_LENGTH && (d->left -= (long long)k) == 0) d->complete = 1;
        return;
    }
    while (n && !d->complete && r->fail < 0) {
        if (d->state == C_DATA) {
            size_t k = (size_t)FG_MIN((long long)n, d->left);
            body_feed(r, p, k, t);
            p += k; n -= k;
            if ((d->left -= (long long)k) == 0) { d->state = C_DATA_END; d->ln = 0; }
            continue;
        }
        char c = *p++; n--;               // size line, CRLF after data, or trailer: line by line
        if (c != '\n') {
            if (d->ln == sizeof d->line - 1) { fail(r, F_PROTO, "chunk-size or trailer line over 255 bytes"); return; }
            d->line[d->ln++] = c;
            continue;
        }
        if (d->ln && d->line[d->ln - 1] == '\r') d->ln--;
        d->line[d->ln] = 0;
        if (d->state == C_DATA_END) {
            if (d->ln) { fail(r, F_PROTO, "chunk data longer than its size"); return; }
            d->state = C_SIZE;
        } else if (d->state == C_SIZE) {
            char *end;
            errno = 0;
            long long size = strtoll(d->line, &end, 16);
            if (end == d->line || errno || size < 0 || (*end && *end != ';' && *end != ' ')) {
                fail(r, F_PROTO, "bad chunk size line '%.40s'", d->line);
                return;
            }
            d->left = size;
            d->state = size ? C_DATA : C_TRAILER;
        } else if (!d->ln) {
            d->complete = 1;              // the blank line after the last chunk (and trailers)
        }
        d->ln = 0;
    }
}

// Parses the status line and headers in h[0..n) (ending at the blank line).
static void parse_head(reply *r, decoder *d, char *h, size_t n) {
    h[n] = 0;
    if (sscanf(h, "HTTP/%*d.%*d %d", &r->status) != 1 || r->status < 100 || r->status > 599) {
        r->status = 0;
        fail(r, F_PROTO, "bad status line '%.40s'", h);
        return;
    }
    d->mode = B_EOF;
    for (char *s = strchr(h, '\n'); s && *++s;) {
        char *e = strchr(s, '\n'), *v = strchr(s, ':');
        if (e) *e = 0;
        if (v && (!e || v < e)) {
            *v++ = 0;
            while (*v == ' ' || *v == '\t') v++;
            if (!strcasecmp(s, "content-length") && d->mode != B_CHUNKED) { d->mode = B_LENGTH; d->left = atoll(v); }
            else if (!strcasecmp(s, "transfer-encoding") && strcasestr(v, "chunked")) d->mode = B_CHUNKED;
            else if (!strcasecmp(s, "content-type")) r->sse = !strncasecmp(v, "text/event-stream", 17);
            else if (!strcasecmp(s, "retry-after")) r->retry_after = atof(v);
        }
        s = e;
    }
    if (r->status == 204 || r->status == 304) { d->mode = B_LENGTH; d->left = 0; }
    if (d->mode == B_LENGTH && d->left == 0) d->complete = 1;
}

// What a complete reply says: a 200 must be the kind asked for; an error's message is kept.
static void finish(reply *r) {
    if (r->status == 200 && r->want_sse) {
        if (!r->sse) fail(r, F_PROTO, "asked for a stream, got a reply that is not text/event-stream");
        else if (!r->done) fail(r, F_PROTO, "stream ended without data: [DONE]");
        return;
    }
    if (r->sse) return;
    fg_json *j = r->body.n ? fg_json_parse(r->body.p, r->body.n, "reply body") : NULL;
    if (r->status == 200) {
        if (!j) fail(r, F_PROTO, "200 with a body that is not JSON: %s", fg_last_error());
        else read_usage(r, j);
    } else {
        const fg_json *e = fg_json_get(j, "error"), *m = e ? fg_json_get(e, "message") : NULL;
        snprintf(r->why, sizeof r->why, "%d: %.180s", r->status,
                 m && m->type == FG_JSON_STRING ? m->str : r->body.n ? r->body.p : "(empty body)");
    }
    fg_json_free(j);
}

// Sends req[0..len) on a new connection and reads the whole reply into *r (see reply).
static void exchange(const char *req, size_t len, reply *r) {
    r->status = 0; r->fail = -1; r->why[0] = 0; r->retry_after = -1;
    r->t_first = r->t_last = 0; r->sse = r->done = r->tokens = 0;
    r->usage_completion = r->usage_prompt = r->usage_hit = -1;
    r->line.n = r->data.n = r->body.n = 0;
    decoder d = {0};
    char buf[16384], head[HEAD_CAP + 1];
    size_t hn = 0;
    int in_body = 0;
    r->t0 = fg_now();
    int fd = socket(addr->ai_family, addr->ai_socktype, addr->ai_protocol);
    if (fd < 0) { fail(r, F_CONNECT, "socket: %s", strerror(errno)); return; }
    struct timeval tv = {(time_t)opt.timeout, (suseconds_t)((opt.timeout - (time_t)opt.timeout) * 1e6)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, addr->ai_addr, addr->ai_addrlen) < 0) {
        fail(r, errno == EINPROGRESS || errno == EAGAIN ? F_TIMEOUT : F_CONNECT, "connect: %s", strerror(errno));
        close(fd);
        return;
    }
    for (size_t off = 0; off < len;) {
        ssize_t k = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {                     // the server may have answered and closed early: read on
            if (errno != EPIPE && errno != ECONNRESET) { fail(r, errno == EAGAIN ? F_TIMEOUT : F_IO, "send: %s", strerror(errno)); close(fd); return; }
            break;
        }
        off += (size_t)k;
    }
    while (!d.complete && r->fail < 0) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        double t = fg_now();
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { fail(r, F_TIMEOUT, "no bytes for %g s (--timeout)", opt.timeout); break; }
        if (k < 0) { fail(r, F_IO, "recv: %s", strerror(errno)); break; }
        if (k == 0) {
            if (in_body && d.mode == B_EOF) d.complete = 1;
            else fail(r, F_IO, "connection closed %s", !hn ? "before a reply" : in_body ? "in the body" : "in the headers");
            break;
        }
        const char *p = buf;
        size_t n = (size_t)k;
        while (!in_body && n) {             // headers, possibly after 1xx interim replies
            size_t take = FG_MIN(n, HEAD_CAP - hn);
            memcpy(head + hn, p, take);
            hn += take;
            head[hn] = 0;
            char *end = strstr(head, "\r\n\r\n");
            size_t hl = end ? (size_t)(end - head) + 4 : 0;
            if (!end && (end = strstr(head, "\n\n"))) hl = (size_t)(end - head) + 2;
            if (!end) {
                if (hn == HEAD_CAP) fail(r, F_PROTO, "reply headers over %d bytes", HEAD_CAP);
                p += take; n -= take;
                break;
            }
            size_t used = take - (hn - hl); // bytes of this read that belonged to the headers
            p += used; n -= used;
            parse_head(r, &d, head, hl);
            if (r->fail >= 0) break;
            if (r->status >= 200) in_body = 1;
            else { hn = 0; d = (decoder){0}; } // 1xx: another head follows
        }
        if (in_body && n && !d.complete) decode(r, &d, p, n, t);
    }
    close(fd);
    if (r->fail < 0) finish(r);
}

static void reply_free(reply *r) { free(r->line.p); free(r->data.p); free(r->body.p); }

// ---- requests -------------------------------------------------------------------------------
// s as a JSON string literal (quotes included); the caller frees it.
static char *jlit(const char *s) {
    size_t n = strlen(s), cap = 6 * n + 3, pos = 0;
    char *o = xrealloc(NULL, cap);
    fg_json_append_string(o, cap, &pos, s, n);
    return o;
}

// A POST /v1/chat/completions of these messages (a JSON array), greedy, max_tokens, streamed or
// not; *len gets its length. The caller frees the returned buffer.
static char *post_chat(const char *messages, int max_tokens, int stream, size_t *len) {
    char *model = jlit(opt.model);
    size_t cap = strlen(messages) + strlen(model) + strlen(opt.host) + (opt.api_key ? strlen(opt.api_key) : 0) + 1024;
    char *body = xrealloc(NULL, cap), *out = xrealloc(NULL, 2 * cap);
    int bn = snprintf(body, cap, "{\"model\":%s,\"messages\":%s,\"max_tokens\":%d,\"temperature\":0,\"stream\":%s%s}", model,
                      messages, max_tokens, stream ? "true" : "false", stream ? ",\"stream_options\":{\"include_usage\":true}" : "");
    int hl = snprintf(out, cap,
                      "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: frugal-bench_serve\r\n"
                      "Accept: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n%s%s%s\r\n",
                      opt.host, opt.port, stream ? "text/event-stream" : "application/json", bn,
                      opt.api_key ? "Authorization: Bearer " : "", opt.api_key ? opt.api_key : "",
                      opt.api_key ? "\r\n" : "");
    memcpy(out + hl, body, (size_t)bn + 1);
    *len = (size_t)(hl + bn);
    free(model); free(body);
    return out;
}

// One user message "Request i of client c/n, run R: PROMPT" (R: this process's start time, so
// prompts repeat neither across client counts nor across runs on one server).
static char *chat_request(int client, int n, long i, int stream, int max_tokens, size_t *len) {
    size_t pl = strlen(opt.prompt) + 96;
    char *msg = xrealloc(NULL, pl);
    snprintf(msg, pl, "Request %ld of client %d/%d, run %lx: %s", i, client, n, run_id, opt.prompt);
    char *content = jlit(msg), *messages = xrealloc(NULL, strlen(content) + 64);
    sprintf(messages, "[{\"role\":\"user\",\"content\":%s}]", content);
    char *out = post_chat(messages, max_tokens, stream, len);
    free(msg); free(content); free(messages);
    return out;
}

// A streamed chat request with a system message and a user message.
static char *sys_request(const char *sys, const char *user, size_t *len) {
    char *a = jlit(sys), *b = jlit(user), *messages = xrealloc(NULL, strlen(a) + strlen(b) + 96);
    sprintf(messages, "[{\"role\":\"system\",\"content\":%s},{\"role\":\"user\",\"content\":%s}]", a, b);
    char *out = post_chat(messages, 4, 1, len);
    free(a); free(b); free(messages);
    return out;
}

// Prefix reuse: the same long system prompt twice (a fresh one per round, so the first is a miss);
// the second request's time to first token against the first's. Best (largest ratio) of 3 rounds.
static int prefix_bench(void) {
    double best = 0, t1b = 0, t2b = 0;
    long hit = -1, prompt = -1;
    for (int round = 0; round < 3; round++) {
        char *sys = xrealloc(NULL, (size_t)opt.prefix + 64);
        int n = snprintf(sys, 64, "Round %d of run %lx. ", round, run_id);
        for (int k = 0; n < opt.prefix; k++) n += snprintf(sys + n, 64, "Rule %d: answer briefly. ", k);
        sys[opt.prefix] = 0;
        double ttft[2];
        reply r = {0};
        r.want_sse = 1;
        for (int q = 0; q < 2; q++) {
            size_t len;
            char *req = sys_request(sys, q ? "And the second question?" : "The first question?", &len);
            exchange(req, len, &r);
            free(req);
            if (r.fail >= 0 || r.status != 200 || !r.tokens) {
                printf("bench_serve: prefix: request %d failed: %s\n", q + 1, r.why);
                reply_free(&r); free(sys);
                return 1;
            }
            ttft[q] = (r.t_first - r.t0) * 1e3;
            if (q) { hit = r.usage_hit; prompt = r.usage_prompt; }
        }
        reply_free(&r);
        free(sys);
        printf("  round %d: time to first token %.1f ms, then %.1f ms with the prefix cached (%.1fx; %ld of %ld prompt tokens hit)\n",
               round + 1, ttft[0], ttft[1], ttft[0] / ttft[1], hit, prompt);
        if (ttft[0] / ttft[1] > best) { best = ttft[0] / ttft[1]; t1b = ttft[0]; t2b = ttft[1]; }
    }
    printf("prefix reuse: %d-byte system prompt: first %.1f ms, second %.1f ms: %.1fx shorter (best of 3)\n", opt.prefix, t1b, t2b, best);
    return 0;
}

// ---- clients --------------------------------------------------------------------------------
typedef struct {
    int id, n, stream;            // client id of n
    double deadline;
    long requests, ok, tokens, prompt_tok, hit_tok;
    long status[600], failed[F_N];
    dvec ttft, itl;        // ms, successful requests only
    char why[200];         // the first error seen
    atomic_int *finished;  // incremented when this client stops
} client;

static void *client_run(void *arg) {
    client *c = arg;
    reply r = {0};
    r.want_sse = c->stream;
    r.itl = &c->itl;
    for (long i = 0; fg_now() < c->deadline; i++) {
        size_t len, itl0 = c->itl.n;
        char *req = chat_request(c->id, c->n, i, c->stream, opt.max_tokens, &len);
        exchange(req, len, &r);
        free(req);
        c->requests++;
        if (r.fail < 0 && r.status == 200) {
            c->ok++;
            c->status[200]++;
            c->tokens += r.usage_completion >= 0 ? r.usage_completion : r.tokens;
            if (r.usage_prompt > 0) c->prompt_tok += r.usage_prompt;
            if (r.usage_hit > 0) c->hit_tok += r.usage_hit;
            if (r.tokens) dvec_push(&c->ttft, (r.t_first - r.t0) * 1e3);
            continue;
        }
        c->itl.n = itl0;                  // a failed stream's gaps do not count
        if (r.fail >= 0) c->failed[r.fail]++;
        else c->status[r.status]++;
        if (!c->why[0]) snprintf(c->why, sizeof c->why, "%s", r.why);
        if (c->stream && r.status == 429) { // back off as told, outside any measured span
            double wait = FG_MIN(r.retry_after >= 0 ? FG_MIN(r.retry_after, 5) : 1, c->deadline - fg_now());
            if (wait > 0) nanosleep(&(struct timespec){(time_t)wait, (long)((wait - (time_t)wait) * 1e9)}, NULL);
        }
    }
    reply_free(&r);
    if (c->finished) atomic_fetch_add(c->finished, 1);
    return NULL;
}

// Starts n clients until deadline (stream or not); returns the array (caller frees with clients_free).
static client *clients_start(int n, int stream, double deadline, atomic_int *finished, pthread_t *tid) {
    client *cs = xrealloc(NULL, sizeof(client) * (size_t)n);
    memset(cs, 0, sizeof(client) * (size_t)n);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 1 << 19);
    for (int i = 0; i < n; i++) {
        cs[i].id = i; cs[i].n = n; cs[i].stream = stream; cs[i].deadline = deadline; cs[i].finished = finished;
        if (pthread_create(&tid[i], &at, client_run, &cs[i])) {
            fprintf(stderr, "bench_serve: cannot start client thread %d of %d\nhint: fewer clients\n", i, n);
            exit(1);
        }
    }
    pthread_attr_destroy(&at);
    return cs;
}

// Sums clients into cs[0] (vectors appended).
static void clients_merge(client *cs, int n) {
    for (int i = 1; i < n; i++) {
        client *a = &cs[0], *b = &cs[i];
        a->requests += b->requests; a->ok += b->ok; a->tokens += b->tokens;
        a->prompt_tok += b->prompt_tok; a->hit_tok += b->hit_tok;
        for (int s = 0; s < 600; s++) a->status[s] += b->status[s];
        for (int f = 0; f < F_N; f++) a->failed[f] += b->failed[f];
        for (size_t k = 0; k < b->ttft.n; k++) dvec_push(&a->ttft, b->ttft.v[k]);
        for (size_t k = 0; k < b->itl.n; k++) dvec_push(&a->itl, b->itl.v[k]);
        if (!a->why[0]) memcpy(a->why, b->why, sizeof a->why);
        free(b->ttft.v); free(b->itl.v);
    }
}

// "429:3 connect:1" (statuses other than 200, then failures) into out; returns the count.
static long errors_text(const client *c, char *out, size_t cap) {
    long total = 0;
    size_t o = 0;
    out[0] = 0;
    for (int s = 0; s < 600; s++)
        if (s != 200 && c->status[s]) { o += (size_t)snprintf(out + o, cap > o ? cap - o : 0, "%s%d:%ld", o ? " " : "", s, c->status[s]); total += c->status[s]; }
    for (int f = 0; f < F_N; f++)
        if (c->failed[f]) { o += (size_t)snprintf(out + o, cap > o ? cap - o : 0, "%s%s:%ld", o ? " " : "", fail_name[f], c->failed[f]); total += c->failed[f]; }
    if (!total) snprintf(out, cap, "none");
    return total;
}

// ---- modes ----------------------------------------------------------------------------------
static int sweep(void) {
    printf("bench_serve: http://%s:%s, streamed chat completions, %g s per client count, max_tokens %d\n",
           opt.host, opt.port, opt.seconds, opt.max_tokens);
    printf("clients requests   tokens   tok/s  vs %-4d ttft p50/p99 ms   itl p50/p99 ms  cache hit  errors\n",
           opt.clients[0]);
    double base = 0;
    int bad = 0;
    for (int k = 0; k < opt.n_clients; k++) {
        int n = opt.clients[k];
        pthread_t *tid = xrealloc(NULL, sizeof(pthread_t) * (size_t)n);
        double t0 = fg_now();
        client *cs = clients_start(n, 1, t0 + opt.seconds, NULL, tid);
        for (int i = 0; i < n; i++) pthread_join(tid[i], NULL);
        double dt = fg_now() - t0;
        clients_merge(cs, n);
        client *c = &cs[0];
        double rate = c->tokens / dt;
        if (k == 0) base = rate;
        char errs[256];
        long ne = errors_text(c, errs, sizeof errs);
        printf("%7d %8ld %8ld %7.1f %6.2f %9.1f / %7.1f %7.2f / %6.2f %9.1f%%  %s\n", n, c->requests, c->tokens,
               rate, base > 0 ? rate / base : NAN, percentile(&c->ttft, 50), percentile(&c->ttft, 99),
               percentile(&c->itl, 50), percentile(&c->itl, 99),
               c->prompt_tok ? 100.0 * c->hit_tok / c->prompt_tok : 0.0, errs);
        if (ne) printf("        first error: %s\n", c->why);
        fflush(stdout);
        bad |= ne > 0 || c->ok == 0;
        free(c->ttft.v); free(c->itl.v); free(cs); free(tid);
    }
    return bad;
}

// VmRSS of pid in KiB; 0 when the process is gone or a zombie.
static long rss_kib(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long kib = 0;
    int zombie = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "State:", 6)) zombie = strchr(line, 'Z') || strchr(line, 'X');
        else if (!strncmp(line, "VmRSS:", 6)) kib = atol(line + 6);
    }
    fclose(f);
    return zombie ? 0 : kib;
}

static int overload(void) {
    int n = opt.overload;
    printf("bench_serve: overload: %d clients, non-streamed, %g s, max_tokens %d, http://%s:%s%s\n", n,
           opt.seconds, opt.max_tokens, opt.host, opt.port, opt.pid ? "" : " (no --pid: no memory or crash check)");
    fflush(stdout);
    long rss_first = -1, rss_max = 0, rss_last = 0;
    int samples = 0, died = 0;
    atomic_int finished = 0;
    pthread_t *tid = xrealloc(NULL, sizeof(pthread_t) * (size_t)n);
    double t0 = fg_now(), deadline = t0 + opt.seconds, next = t0;
    client *cs = clients_start(n, 0, deadline, &finished, tid);
    while (atomic_load(&finished) < n) {  // sample every 0.5 s until every client has stopped
        double now = fg_now();
        if (opt.pid && now >= next && !died) {
            long kib = rss_kib(opt.pid);
            if (!kib) died = 1;
            else { if (rss_first < 0) rss_first = kib; rss_max = FG_MAX(rss_max, kib); rss_last = kib; samples++; }
            next += 0.5;
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    double t_end = fg_now();
    for (int i = 0; i < n; i++) pthread_join(tid[i], NULL);
    if (opt.pid && !died && !rss_kib(opt.pid)) died = 1;
    clients_merge(cs, n);
    client *c = &cs[0];
    long other = 0, failed = 0;
    for (int s = 0; s < 600; s++) other += s != 200 && s != 429 ? c->status[s] : 0;
    for (int f = 0; f < F_N; f++) failed += c->failed[f];
    printf("  %ld requests in %.2f s (%.1f/s); the last reply came %.2f s after the deadline\n", c->requests,
           t_end - t0, c->requests / (t_end - t0), t_end - deadline);
    printf("  replies:");
    for (int s = 0; s < 600; s++) if (c->status[s] || s == 200 || s == 429) printf(" %d: %ld", s, c->status[s]);
    printf("%s\n", other ? "  (statuses other than 200 and 429 are failures)" : "");
    printf("  connection failures:");
    for (int f = 0; f < F_N; f++) printf(" %s: %ld", fail_name[f], c->failed[f]);
    printf("\n");
    if (other || failed) printf("  first error: %s\n", c->why);
    if (opt.pid) {
        if (samples) printf("  server pid %d VmRSS: first %.1f MiB, max %.1f MiB, last %.1f MiB (%d samples)\n", opt.pid,
                            rss_first / 1024.0, rss_max / 1024.0, rss_last / 1024.0, samples);
        printf("  server pid %d: %s\n", opt.pid, died ? "GONE (crashed)" : "alive");
    }
    double rec = -1;
    if (!died) {                          // after the load: until one request gets a 200, no pauses
        reply r = {0};
        dvec unused = {0};
        r.itl = &unused;
        double r0 = fg_now();
        for (long i = 0; fg_now() - r0 < 3; i++) { // 3 s: the pass mark is 1 s, the rest for the report
            size_t len;
            char *req = chat_request(n, n + 1, i, 0, 1, &len);
            exchange(req, len, &r);
            free(req);
            if (r.fail < 0 && r.status == 200) { rec = fg_now() - r0; break; }
        }
        if (rec >= 0) printf("  recovered in %.1f ms (one request, max_tokens 1, until a 200)\n", rec * 1e3);
        else printf("  not recovered: no 200 within 3 s after the load (last: %s)\n", r.fail >= 0 || r.status ? r.why : "?");
        reply_free(&r); free(unused.v);
    }
    int ok = !other && !failed && !died && rec >= 0 && rec <= 1.0 && c->status[200] + c->status[429] > 0;
    if (ok) printf("overload: PASS (only 200 and 429, server alive, a 200 within 1 s after)\n");
    else printf("overload: FAIL:%s%s%s%s%s\n", other ? " statuses other than 200 and 429;" : "",
                failed ? " requests without a reply;" : "", died ? " the server died;" : "",
                !died && rec < 0 ? " no 200 after the load;" : "", rec > 1.0 ? " recovery over 1 s;" : "");
    free(c->ttft.v); free(c->itl.v); free(cs); free(tid);
    return !ok;
}

static int wait_health(void) {
    char req[512];
    int len = snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n", opt.host, opt.port);
    reply r = {0};
    double t0 = fg_now();
    for (;;) {
        exchange(req, (size_t)len, &r);
        if (r.fail < 0 && r.status == 200) break;
        if (opt.pid && !rss_kib(opt.pid)) {
            fprintf(stderr, "bench_serve: the server (pid %d) exited before /health answered\n", opt.pid);
            reply_free(&r);
            return 1;
        }
        if (fg_now() - t0 > opt.wait_health) {
            fprintf(stderr, "bench_serve: no 200 from http://%s:%s/health within %g s (last: %s)\n"
                    "hint: is the server running on that port? --wait-health sets the wait\n",
                    opt.host, opt.port, opt.wait_health, r.fail >= 0 ? r.why : r.status ? r.why : "?");
            reply_free(&r);
            return 1;
        }
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    printf("bench_serve: http://%s:%s/health answered 200 after %.2f s\n", opt.host, opt.port, fg_now() - t0);
    fflush(stdout);
    reply_free(&r);
    return 0;
}

// ---- options --------------------------------------------------------------------------------
static double num_arg(const char *flag, const char *v, double lo, double hi) {
    char *end;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "bench_serve: %s needs a number in [%g, %g] (got '%s')\nhint: bench_serve --help\n", flag, lo, hi, v ? v : "");
        exit(2);
    }
    return x;
}

int main(int argc, char **argv) {
    int sweep_on = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage_text, stdout); return 0; }
        if (!v) { fprintf(stderr, "bench_serve: %s needs a value\nhint: bench_serve --help\n", a); return 2; }
        i++;
        if (strlen(v) > (strcmp(a, "--prompt") ? 1024u : (unsigned)MAX_PROMPT)) {
            fprintf(stderr, "bench_serve: the value of %s is over %d bytes\n", a, strcmp(a, "--prompt") ? 1024 : MAX_PROMPT);
            return 2;
        }
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) { num_arg(a, v, 1, 65535); opt.port = v; }
        else if (!strcmp(a, "--api-key")) opt.api_key = v;
        else if (!strcmp(a, "--model")) opt.model = v;
        else if (!strcmp(a, "--prompt")) opt.prompt = v;
        else if (!strcmp(a, "--seconds")) opt.seconds = num_arg(a, v, 0.1, 3600);
        else if (!strcmp(a, "--timeout")) opt.timeout = num_arg(a, v, 0.1, 3600);
        else if (!strcmp(a, "--wait-health")) opt.wait_health = num_arg(a, v, 0, 3600);
        else if (!strcmp(a, "--max-tokens")) opt.max_tokens = (int)num_arg(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--overload")) opt.overload = (int)num_arg(a, v, 1, MAX_CLIENTS);
        else if (!strcmp(a, "--pid")) opt.pid = (int)num_arg(a, v, 1, 1 << 30);
        else if (!strcmp(a, "--prefix")) opt.prefix = (int)num_arg(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--clients")) {
            char list[512], *save = NULL;
            snprintf(list, sizeof list, "%s", v);
            opt.n_clients = 0;
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (opt.n_clients == 64) { fprintf(stderr, "bench_serve: --clients lists at most 64 counts\n"); return 2; }
                opt.clients[opt.n_clients++] = (int)num_arg(a, t, 1, MAX_CLIENTS);
            }
            if (!opt.n_clients) num_arg(a, "", 1, MAX_CLIENTS);
            sweep_on = 1;
        } else { fprintf(stderr, "bench_serve: unknown option '%s'\nhint: bench_serve --help\n", a); return 2; }
    }
    if (!sweep_on && !opt.overload && !opt.prefix && opt.wait_health < 0) {
        fprintf(stderr, "bench_serve: nothing to do\nhint: give --clients LIST, --overload C or --wait-health S\n");
        return 2;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(opt.host, opt.port, &hints, &addr);
    if (rc) { fprintf(stderr, "bench_serve: cannot resolve '%s': %s\n", opt.host, gai_strerror(rc)); return 1; }
    signal(SIGPIPE, SIG_IGN);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    run_id = (unsigned long)now.tv_sec * 1000000ul + (unsigned long)now.tv_nsec / 1000;
    int bad = 0;
    if (opt.wait_health >= 0 && wait_health()) bad = 1;
    if (!bad && sweep_on) bad |= sweep();
    if (!bad && opt.overload) bad |= overload();
    if (!bad && opt.prefix) bad |= prefix_bench();
    freeaddrinfo(addr);
    return bad;
}
