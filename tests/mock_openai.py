#!/usr/bin/env python3
"""mock_openai.py: a throwaway stand-in for `frugal serve`, for testing its clients
(bench/bench_serve.c, server/page.html via tests/serve_page.mjs) without a model.

It speaks the same HTTP/1.1 API shape as the real server: POST /v1/chat/completions (streamed as
SSE over chunked transfer encoding, or one chat.completion object), GET /health, /v1/models,
/metrics, and GET / (server/page.html). It generates fixed words with a small sleep per token
(--delay), the first --think of them as reasoning_content, and answers 429 with Retry-After when
--max-inflight requests are already running. It is not a model and not a load-test target for
numbers: only for checking that clients parse, time and count correctly.

  python3 tests/mock_openai.py --port 18081 [--max-inflight 8] [--delay 0.01] [--think 4]
                               [--api-key K] [--split]
A user message "/error" gets a 400 in the API's error shape (for the page's error display).
"""
import argparse, collections, json, os, random, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".",
         " It", " is", " a", " mock", " reply", " from", " a", " server", " that", " has",
         " no", " model", " at", " all", ".")
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server", "page.html")


class State:
    lock = threading.Lock()
    inflight = 0
    served = {}      # status -> count
    seen = collections.deque(maxlen=64)  # recent prompts: a crude prefix cache for usage numbers


def error_body(status, message, typ="invalid_request_error", param=None, code=None):
    return json.dumps({"error": {"message": message, "type": typ, "param": param, "code": code}})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def reply(self, status, body, ctype="application/json", extra=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        with State.lock:
            State.served[status] = State.served.get(status, 0) + 1

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, '{"status":"ok"}')
        elif self.path == "/v1/models":
            self.reply(200, json.dumps({"object": "list", "data": [
                {"id": "mock", "object": "model", "created": 1700000000, "owned_by": "frugal"}]}))
        elif self.path == "/metrics":
            with State.lock:
                lines = ["frugal_requests_inflight %d" % State.inflight]
                lines += ['frugal_http_responses_total{status="%d"} %d' % kv for kv in State.served.items()]
            self.reply(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4")
        elif self.path in ("/", "/index.html"):
            with open(PAGE, encoding="utf-8") as f:
                self.reply(200, f.read(), "text/html; charset=utf-8")
        else:
            self.reply(404, error_body(404, "no route " + self.path, code="not_found"))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/chat/completions":
            return self.reply(404, error_body(404, "no route " + self.path, code="not_found"))
        if ARGS.api_key and self.headers.get("Authorization") != "Bearer " + ARGS.api_key:
            return self.reply(401, error_body(401, "invalid API key", "authentication_error",
                                              code="invalid_api_key"))
        try:
            req = json.loads(body)
            msgs = req["messages"]
            prompt = "".join(m["role"] + ":" + m["content"] for m in msgs)
        except (ValueError, KeyError, TypeError) as e:
            return self.reply(400, error_body(400, "bad request: %s" % e, param="messages"))
        if msgs and msgs[-1]["content"].strip() == "/error":
            return self.reply(400, error_body(400, "mock error on request", param="messages[0].content"))
        with State.lock:
            if State.inflight >= ARGS.max_inflight:
                full = True
            else:
                full = False
                State.inflight += 1
        if full:
            return self.reply(429, error_body(429, "server busy: queue full", "server_error",
                                              code="queue_full"), extra=[("Retry-After", "1")])
        try:
            self.complete(req, prompt)
        finally:
            with State.lock:
                State.inflight -= 1

    def complete(self, req, prompt):
        max_tokens = int(req.get("max_tokens") or 64)
        n = min(max_tokens, ARGS.think + len(WORDS))
        finish = "length" if n == max_tokens else "stop"
        ptok = max(1, len(prompt) // 4)
        with State.lock:
            hit = max((len(p) for p in State.seen if prompt.startswith(p)), default=0) // 4
            State.seen.append(prompt)
        usage = {"prompt_tokens": ptok, "completion_tokens": n, "total_tokens": ptok + n,
                 "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": ptok - hit}
        head = {"id": "chatcmpl-1", "created": 1700000000, "model": req.get("model") or "mock"}
        tokens = [("reasoning_content", "step %d. " % i) if i < ARGS.think else
                  ("content", WORDS[i - ARGS.think]) for i in range(n)]
        if not req.get("stream"):
            time.sleep(ARGS.delay * n)
            msg = {"role": "assistant", "content": "".join(t for k, t in tokens if k == "content")}
            if ARGS.think:
                msg["reasoning_content"] = "".join(t for k, t in tokens if k != "content")
            out = dict(head, object="chat.completion", usage=usage,
                       choices=[{"index": 0, "message": msg, "finish_reason": finish}])
            return self.reply(200, json.dumps(out))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with State.lock:
            State.served[200] = State.served.get(200, 0) + 1

        def event(obj):
            data = ("data: %s\n\n" % (obj if isinstance(obj, str) else json.dumps(obj))).encode()
            cut = random.randint(1, len(data) - 1) if ARGS.split else len(data)
            for part in (data[:cut], data[cut:]):   # --split: SSE events cross HTTP chunks
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()

        def chunk(delta, finish_reason=None):
            return dict(head, object="chat.completion.chunk",
                        choices=[{"index": 0, "delta": delta, "finish_reason": finish_reason}])

        event(chunk({"role": "assistant", "content": ""}))
        for kind, text in tokens:
            time.sleep(ARGS.delay)
            event(chunk({kind: text}))
        event(chunk({}, finish))
        if (req.get("stream_options") or {}).get("include_usage"):
            event(dict(head, object="chat.completion.chunk", choices=[], usage=usage))
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18081)
    ap.add_argument("--max-inflight", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.01, help="seconds per generated token")
    ap.add_argument("--think", type=int, default=4, help="reasoning tokens before the answer")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--split", action="store_true", help="split each SSE event over two HTTP chunks")
    ARGS = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer((ARGS.host, ARGS.port), Handler)
    print("mock_openai: listening on http://%s:%d (pid %d)" % (ARGS.host, srv.server_address[1], os.getpid()),
          flush=True)
    srv.serve_forever()
