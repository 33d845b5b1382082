// server.c: the HTTP side of `frugal serve` (server.h; endpoints and limits in docs/serve.md).
//
// libmicrohttpd parses HTTP; this file routes, checks the key and the body size, turns bodies
// into engine jobs (fg_api_request_parse, fg_engine_submit) and jobs into OpenAI-shaped JSON:
// a whole response, or server-sent events written by a content reader that waits on the job.
// One thread per connection: a waiting handler blocks only its own client. A client that goes
// away is noticed by polling its socket while waiting (and by a failed write), and its job is
// released, which cancels it. Every error is OpenAI's {"error": {message, type, param, code}}.
#ifdef FG_HAVE_MHD

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"

extern const unsigned char fg_page_html[];
extern const size_t fg_page_html_len;

// ---- a growable text buffer ----------------------------------------------------------------------
typedef struct { char *p; size_t n, cap; int oom; } tb;

static void tb_grow(tb *b, size_t more) {
    if (b->oom || b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p; b->cap = cap;
}
static void tb_add(tb *b, const char *s, size_t n) {
    tb_grow(b, n);
    if (b->oom) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void tb_cstr(tb *b, const char *s) { tb_add(b, s, strlen(s)); }
static void tb_printf(tb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(tb *b, const char *fmt, ...) {
    va_list a;
    va_start(a, fmt);
    int n = vsnprintf(NULL, 0, fmt, a);
    va_end(a);
    tb_grow(b, (size_t)n);
    if (b->oom) return;
    va_start(a, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, a);
    va_end(a);
    b->n += (size_t)n;
}
static void tb_str(tb *b, const char *s, size_t n) { // a JSON string literal: room for its longest form
    tb_grow(b, 6 * n + 2);
    if (b->oom) return;
    fg_json_append_string(b->p, b->cap, &b->n, s, n);
}

// ---- server state ------------------------------------------------------------------------------------
enum { ST_200, ST_400, ST_401, ST_404, ST_405, ST_413, ST_429, ST_500, ST_503, ST_N };
static const int st_code[ST_N] = {200, 400, 401, 404, 405, 413, 429, 500, 503};

typedef struct {
    fg_engine *e;
    const fg_server_opts *o;
    pthread_mutex_t mu;
    uint64_t by_status[ST_N];
    uint64_t next_id;
    int draining;
    int active;           // requests between their headers and their completion
} server;

enum { R_NONE, R_CHAT, R_COMPLETION };

typedef struct {          // one request (MHD's con_cls)
    server *s;
    int route, too_big, status;
    tb body;
    fg_job *job;
    int kind, stream, include_usage, started[FG_API_MAX_N];
    char id[48];
    char *model;
    long created;
    int fd;               // the client's socket (for noticing a hang-up)
    // streaming state
    tb out; size_t out_at;
    int ended;            // [DONE] queued
    double last_write;
} req;

static void count_status(server *s, int code) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < ST_N; i++)
        if (st_code[i] == code) s->by_status[i]++;
    pthread_mutex_unlock(&s->mu);
}

static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static enum MHD_Result send_buf(struct MHD_Connection *c, req *r, int code, const char *type, const char *body,
                                size_t n, const char *retry_after) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, resp);
    MHD_destroy_response(resp);
    if (r) r->status = code;
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, req *r, int code, const char *msg, const char *type,
                                  const char *param, const char *ecode, const char *retry_after) {
    tb b = {0};
    tb_cstr(&b, "{\"error\": {\"message\": ");
    tb_str(&b, msg, strlen(msg));
    tb_printf(&b, ", \"type\": \"%s\", \"param\": ", type);
    if (param && *param) tb_str(&b, param, strlen(param));
    else tb_cstr(&b, "null");
    tb_cstr(&b, ", \"code\": ");
    if (ecode) tb_str(&b, ecode, strlen(ecode));
    else tb_cstr(&b, "null");
    tb_cstr(&b, "}}\n");
    enum MHD_Result ret = b.oom ? MHD_NO : send_buf(c, r, code, "application/json", b.p, b.n, retry_after);
    free(b.p);
    return ret;
}

static const char *finish_name(int f) { return f == FG_FINISH_LENGTH ? "length" : "stop"; }

static void usage_json(tb *b, const fg_job_usage *u) {
    tb_printf(b, "{\"prompt_tokens\": %d, \"completion_tokens\": %d, \"total_tokens\": %d, "
                 "\"prompt_cache_hit_tokens\": %d, \"prompt_cache_miss_tokens\": %d, "
                 "\"prompt_tokens_details\": {\"cached_tokens\": %d}}",
              u->prompt_tokens, u->completion_tokens, u->prompt_tokens + u->completion_tokens, u->cache_hit_tokens,
              u->prompt_tokens - u->cache_hit_tokens, u->cache_hit_tokens);
}

static void head_json(tb *b, const req *r, const char *object) {
    tb_printf(b, "{\"id\": \"%s\", \"object\": \"%s\", \"created\": %ld, \"model\": ", r->id, object, r->created);
    tb_str(b, r->model, strlen(r->model));
}

// ---- streaming: one SSE event per update and choice ------------------------------------------------
static void sse_update(req *r, const fg_job_update *u) {
    int chat = r->kind == FG_API_CHAT;
    for (int i = 0; i < u->n; i++) {
        const char *parts[2] = {u->ch[i].reasoning, u->ch[i].content};
        size_t lens[2] = {u->ch[i].n_reasoning, u->ch[i].n_content};
        for (int k = 0; k < 2; k++) {
            // an event per update with tokens, even when their text is empty or held back: a
            // client sees every step (the content event carries it when there is no reasoning)
            if (!lens[k] && !(k == 1 && !lens[0] && u->ch[i].n_tokens)) continue;
            tb_cstr(&r->out, "data: ");
            head_json(&r->out, r, chat ? "chat.completion.chunk" : "text_completion");
            tb_printf(&r->out, ", \"choices\": [{\"index\": %d, ", i);
            if (chat) {
                tb_cstr(&r->out, "\"delta\": {");
                if (!r->started[i]) { tb_cstr(&r->out, "\"role\": \"assistant\", "); r->started[i] = 1; }
                tb_cstr(&r->out, k == 0 ? "\"reasoning_content\": " : "\"content\": ");
                tb_str(&r->out, parts[k], lens[k]);
                tb_cstr(&r->out, "}");
            } else {
                tb_cstr(&r->out, "\"text\": ");
                tb_str(&r->out, parts[k], lens[k]);
            }
            tb_cstr(&r->out, ", \"logprobs\": null, \"finish_reason\": null}]}\n\n");
        }
        if (u->ch[i].finish) {
            tb_cstr(&r->out, "data: ");
            head_json(&r->out, r, chat ? "chat.completion.chunk" : "text_completion");
            tb_printf(&r->out, ", \"choices\": [{\"index\": %d, %s, \"logprobs\": null, \"finish_reason\": \"%s\"}]}\n\n", i,
                      chat ? "\"delta\": {}" : "\"text\": \"\"", finish_name(u->ch[i].finish));
        }
    }
    if (u->done) {
        if (r->include_usage) {
            tb_cstr(&r->out, "data: ");
            head_json(&r->out, r, chat ? "chat.completion.chunk" : "text_completion");
            tb_cstr(&r->out, ", \"choices\": [], \"usage\": ");
            usage_json(&r->out, &u->usage);
            tb_cstr(&r->out, "}\n\n");
        }
        tb_cstr(&r->out, "data: [DONE]\n\n");
        r->ended = 1;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    req *r = cls;
    (void)pos;
    for (;;) {
        if (r->out_at < r->out.n) {
            size_t k = r->out.n - r->out_at;
            if (k > max) k = max;
            memcpy(buf, r->out.p + r->out_at, k);
            r->out_at += k;
            if (r->out_at == r->out.n) r->out_at = r->out.n = 0;
            r->last_write = fg_now();
            return (ssize_t)k;
        }
        if (r->ended || r->out.oom) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(r->fd)) return MHD_CONTENT_READER_END_WITH_ERROR;
        fg_job_update u = {0};
        if (fg_job_wait(r->job, 500, &u)) sse_update(r, &u);
        else if (fg_now() - r->last_write > 15) tb_cstr(&r->out, ": keep-alive\n\n"); // keeps idle timeouts away
        fg_job_update_free(&u);
    }
}

// ---- a whole response -----------------------------------------------------------------------------
static enum MHD_Result respond_whole(struct MHD_Connection *c, req *r) {
    tb content[FG_API_MAX_N] = {{0}}, reason[FG_API_MAX_N] = {{0}};
    int finish[FG_API_MAX_N] = {0};
    fg_job_update u = {0};
    for (;;) {
        if (client_gone(r->fd)) { fg_job_update_free(&u); for (int i = 0; i < FG_API_MAX_N; i++) { free(content[i].p); free(reason[i].p); } return MHD_NO; }
        if (!fg_job_wait(r->job, 250, &u)) continue;
        for (int i = 0; i < u.n; i++) {
            tb_add(&content[i], u.ch[i].content ? u.ch[i].content : "", u.ch[i].n_content);
            tb_add(&reason[i], u.ch[i].reasoning ? u.ch[i].reasoning : "", u.ch[i].n_reasoning);
            if (u.ch[i].finish) finish[i] = u.ch[i].finish;
        }
        if (u.done) break;
    }
    int chat = r->kind == FG_API_CHAT;
    tb b = {0};
    head_json(&b, r, chat ? "chat.completion" : "text_completion");
    tb_cstr(&b, ", \"choices\": [");
    for (int i = 0; i < u.n; i++) {
        tb_printf(&b, "%s{\"index\": %d, ", i ? ", " : "", i);
        if (chat) {
            tb_cstr(&b, "\"message\": {\"role\": \"assistant\", \"content\": ");
            tb_str(&b, content[i].p ? content[i].p : "", content[i].n);
            if (reason[i].n) { tb_cstr(&b, ", \"reasoning_content\": "); tb_str(&b, reason[i].p, reason[i].n); }
            tb_cstr(&b, "}");
        } else {
            tb_cstr(&b, "\"text\": ");
            tb_str(&b, content[i].p ? content[i].p : "", content[i].n);
        }
        tb_printf(&b, ", \"logprobs\": null, \"finish_reason\": \"%s\"}", finish_name(finish[i]));
    }
    tb_cstr(&b, "], \"usage\": ");
    usage_json(&b, &u.usage);
    tb_cstr(&b, "}\n");
    enum MHD_Result ret = b.oom ? send_error(c, r, 500, "out of memory building the response", "server_error", NULL, NULL, NULL)
                                : send_buf(c, r, 200, "application/json", b.p, b.n, NULL);
    free(b.p);
    fg_job_update_free(&u);
    for (int i = 0; i < FG_API_MAX_N; i++) { free(content[i].p); free(reason[i].p); }
    return ret;
}

static enum MHD_Result handle_generate(struct MHD_Connection *c, req *r) {
    server *s = r->s;
    fg_api_request q;
    fg_api_error err;
    if (fg_api_request_parse(r->body.p ? r->body.p : "", r->body.n, r->kind, &q, &err))
        return send_error(c, r, 400, err.message, err.type ? err.type : "invalid_request_error", err.param, err.code, NULL);
    int status;
    r->job = fg_engine_submit(s->e, &q, &status, &err);
    r->stream = q.stream;
    r->include_usage = q.include_usage;
    fg_api_request_free(&q);
    if (!r->job) {
        if (status == FG_JOB_BUSY)
            return send_error(c, r, 429, "the server is busy: its request queue is full; retry after a second", "rate_limit_error",
                              NULL, "queue_full", "1");
        if (status == FG_JOB_CLOSED)
            return send_error(c, r, 503, "the server is shutting down", "server_error", NULL, "shutting_down", NULL);
        return send_error(c, r, 400, err.message, err.type ? err.type : "invalid_request_error", err.param, err.code, NULL);
    }
    pthread_mutex_lock(&s->mu);
    snprintf(r->id, sizeof r->id, "%s-%llu", r->kind == FG_API_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)++s->next_id);
    pthread_mutex_unlock(&s->mu);
    r->created = (long)time(NULL);
    if (!r->stream) return respond_whole(c, r);
    r->last_write = fg_now();
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, r, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    return ret;
}

// ---- /metrics (Prometheus text) ---------------------------------------------------------------------
static void hist(tb *b, const char *name, const char *help, const fg_engine_stats *st, const uint64_t *h, double sum, uint64_t n) {
    tb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t acc = 0;
    for (int i = 0; i < FG_ENGINE_HIST; i++) {
        acc += h[i];
        if (i == FG_ENGINE_HIST - 1) tb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)acc);
        else tb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, st->le[i], (unsigned long long)acc);
    }
    tb_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, (unsigned long long)n);
}

static enum MHD_Result handle_metrics(struct MHD_Connection *c, req *r) {
    server *s = r->s;
    fg_engine_stats st;
    fg_engine_stats_get(s->e, &st);
    tb b = {0};
    tb_cstr(&b, "# HELP frugal_requests_total HTTP requests answered, by status.\n# TYPE frugal_requests_total counter\n");
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < ST_N; i++) tb_printf(&b, "frugal_requests_total{status=\"%d\"} %llu\n", st_code[i], (unsigned long long)s->by_status[i]);
    pthread_mutex_unlock(&s->mu);
    tb_printf(&b, "# HELP frugal_prompt_tokens_total Prompt tokens received.\n# TYPE frugal_prompt_tokens_total counter\nfrugal_prompt_tokens_total %llu\n",
              (unsigned long long)st.prompt_tokens);
    tb_printf(&b, "# HELP frugal_completion_tokens_total Tokens generated.\n# TYPE frugal_completion_tokens_total counter\nfrugal_completion_tokens_total %llu\n",
              (unsigned long long)st.completion_tokens);
    tb_printf(&b, "# HELP frugal_prompt_cache_hit_tokens_total Prompt tokens found in the cache (not prefilled again).\n"
                  "# TYPE frugal_prompt_cache_hit_tokens_total counter\nfrugal_prompt_cache_hit_tokens_total %llu\n",
              (unsigned long long)st.cache_hit_tokens);
    tb_printf(&b, "# HELP frugal_requests_cancelled_total Requests cancelled (client gone or shutdown).\n"
                  "# TYPE frugal_requests_cancelled_total counter\nfrugal_requests_cancelled_total %llu\n", (unsigned long long)st.cancelled);
    tb_printf(&b, "# HELP frugal_queue_depth Requests waiting for a slot.\n# TYPE frugal_queue_depth gauge\nfrugal_queue_depth %d\n", st.queued);
    tb_printf(&b, "# HELP frugal_running_sequences Choices being decoded.\n# TYPE frugal_running_sequences gauge\nfrugal_running_sequences %d\n", st.running);
    tb_printf(&b, "# HELP frugal_batch_size Rows in the last engine step.\n# TYPE frugal_batch_size gauge\nfrugal_batch_size %d\n", st.last_batch);
    tb_printf(&b, "# HELP frugal_batch_rows_mean Mean rows per engine step.\n# TYPE frugal_batch_rows_mean gauge\nfrugal_batch_rows_mean %.3f\n",
              st.steps ? (double)st.step_rows / (double)st.steps : 0.0);
    tb_printf(&b, "# HELP frugal_cache_free_positions Free KV cache positions.\n# TYPE frugal_cache_free_positions gauge\nfrugal_cache_free_positions %d\n",
              st.free_positions);
    tb_printf(&b, "# HELP frugal_cache_kept_sequences Finished sequences kept for prefix reuse.\n# TYPE frugal_cache_kept_sequences gauge\nfrugal_cache_kept_sequences %d\n",
              st.kept_sequences);
    if (st.spec_proposed[0]) {
        tb_printf(&b, "# HELP frugal_speculative_drafts_total Drafts verified, by MTP depth.\n# TYPE frugal_speculative_drafts_total counter\n");
        for (int k = 0; k < FG_MTP_MAX && st.spec_proposed[k]; k++)
            tb_printf(&b, "frugal_speculative_drafts_total{depth=\"%d\"} %llu\n", k + 1, (unsigned long long)st.spec_proposed[k]);
        tb_printf(&b, "# HELP frugal_speculative_accepted_total Drafts accepted, by MTP depth.\n# TYPE frugal_speculative_accepted_total counter\n");
        for (int k = 0; k < FG_MTP_MAX && st.spec_proposed[k]; k++)
            tb_printf(&b, "frugal_speculative_accepted_total{depth=\"%d\"} %llu\n", k + 1, (unsigned long long)st.spec_accepted[k]);
    }
    hist(&b, "frugal_time_to_first_token_seconds", "Submit to first token.", &st, st.ttft, st.ttft_sum, st.ttft_n);
    hist(&b, "frugal_inter_token_seconds", "Between consecutive tokens of a choice.", &st, st.itl, st.itl_sum, st.itl_n);
    enum MHD_Result ret = send_buf(c, r, 200, "text/plain; version=0.0.4", b.p ? b.p : "", b.n, NULL);
    free(b.p);
    return ret;
}

// ---- routing --------------------------------------------------------------------------------------
static int authorized(struct MHD_Connection *c, const server *s) {
    const char *key = s->o->api_key;
    if (!key || !*key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(key);
    unsigned diff = a != b; // compare every byte: the time does not tell how much matched
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned)(h[i] ^ key[i]);
    return !diff;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *s = cls;
    req *r = *con_cls;
    if (!r) { // the headers: decide early, so a refused body is never read
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->s = s;
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);
        r->fd = -1;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) r->fd = ci->connect_fd;
        const char *m = s->o->model_name;
        r->model = strdup(m ? m : "frugal");
        *con_cls = r;
        int post = !strcmp(method, MHD_HTTP_METHOD_POST);
        if (!strcmp(url, "/v1/chat/completions")) { r->route = R_CHAT; r->kind = FG_API_CHAT; }
        else if (!strcmp(url, "/v1/completions")) { r->route = R_COMPLETION; r->kind = FG_API_COMPLETION; }
        if (r->route) {
            if (!post) return send_error(c, r, 405, "use POST", "invalid_request_error", NULL, "method_not_allowed", NULL);
            if (!authorized(c, s))
                return send_error(c, r, 401, "invalid or missing API key (send Authorization: Bearer KEY)", "authentication_error",
                                  NULL, "invalid_api_key", NULL);
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > s->o->max_body) r->too_big = 1;
        }
        return MHD_YES;
    }
    if (r->status) { *upload_size = 0; return MHD_YES; } // answered early; drop the rest of the body
    if (*upload_size) {
        if (r->route && !r->too_big) {
            if (r->body.n + *upload_size > s->o->max_body) r->too_big = 1;
            else tb_add(&r->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->route) {
        if (r->too_big) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than this server's limit of %zu bytes", s->o->max_body);
            return send_error(c, r, 413, msg, "invalid_request_error", NULL, "request_too_large", NULL);
        }
        if (r->body.oom) return send_error(c, r, 500, "out of memory reading the body", "server_error", NULL, NULL, NULL);
        return handle_generate(c, r);
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return send_error(c, r, 405, "use GET", "invalid_request_error", NULL, "method_not_allowed", NULL);
    if (!strcmp(url, "/")) return send_buf(c, r, 200, "text/html; charset=utf-8", (const char *)fg_page_html, fg_page_html_len, NULL);
    if (!strcmp(url, "/health")) {
        int dr = s->draining;
        const char *b = dr ? "{\"status\": \"draining\"}\n" : "{\"status\": \"ok\"}\n";
        return send_buf(c, r, dr ? 503 : 200, "application/json", b, strlen(b), NULL);
    }
    if (!strcmp(url, "/metrics")) return handle_metrics(c, r);
    if (!strcmp(url, "/v1/models")) {
        if (!authorized(c, s))
            return send_error(c, r, 401, "invalid or missing API key (send Authorization: Bearer KEY)", "authentication_error",
                              NULL, "invalid_api_key", NULL);
        tb b = {0};
        tb_cstr(&b, "{\"object\": \"list\", \"data\": [{\"id\": ");
        tb_str(&b, r->model, strlen(r->model));
        tb_printf(&b, ", \"object\": \"model\", \"created\": %ld, \"owned_by\": \"frugal\"}]}\n", (long)time(NULL));
        enum MHD_Result ret = send_buf(c, r, 200, "application/json", b.p ? b.p : "", b.n, NULL);
        free(b.p);
        return ret;
    }
    return send_error(c, r, 404, "no such endpoint (see docs/serve.md)", "invalid_request_error", NULL, "not_found", NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    req *r = *con_cls;
    if (!r) return;
    if (r->status) count_status(r->s, r->status);
    pthread_mutex_lock(&r->s->mu);
    r->s->active--;
    pthread_mutex_unlock(&r->s->mu);
    fg_job_release(r->job); // cancels it if it still runs (the client went away)
    free(r->body.p); free(r->out.p); free(r->model);
    free(r);
    *con_cls = NULL;
}

int fg_server_run(fg_engine *e, const fg_server_opts *o) {
    server s = {.e = e, .o = o};
    pthread_mutex_init(&s.mu, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        fprintf(stderr, "frugal serve: --host '%s' is not a numeric IPv4 address (hint: 127.0.0.1, or 0.0.0.0 for every interface)\n", o->host);
        return -1;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC, (uint16_t)o->port, NULL, NULL,
        on_request, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_conn,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024U, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "frugal serve: cannot listen on %s:%d (hint: the port may be taken; pick another with --port)\n", o->host, o->port);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("frugal serve: listening on http://%s:%u\n", o->host, di ? (unsigned)di->port : (unsigned)o->port);
    fflush(stdout);
    while (!*o->stop) usleep(50 * 1000);
    // shutdown: refuse new connections, let running requests finish for drain_s, cancel the rest
    s.draining = 1;
    MHD_quiesce_daemon(d);
    fg_engine_drain(e, o->drain_s);
    // the engine ends every job within drain_s; then their answers go out
    for (double until = fg_now() + o->drain_s + 2;;) {
        pthread_mutex_lock(&s.mu);
        int active = s.active;
        pthread_mutex_unlock(&s.mu);
        if (!active || fg_now() > until) break;
        usleep(20 * 1000);
    }
    MHD_stop_daemon(d); // closes what is left and joins the connection threads
    pthread_mutex_destroy(&s.mu);
    return 0;
}

#else // no libmicrohttpd

#include <stdio.h>

#include "server/server.h"

int fg_server_run(fg_engine *e, const fg_server_opts *o) {
    (void)e; (void)o;
    fprintf(stderr, "frugal serve: this frugal was built without libmicrohttpd (hint: apt-get install libmicrohttpd-dev, then make)\n");
    return -1;
}

#endif
