#!/bin/sh
# The clients of `frugal serve`, against tests/mock_openai.py (a stand-in server without a model):
#   - bench/bench_serve: a short streaming sweep (SSE events split across HTTP chunks) with no
#     errors, and an overload past the mock's in-flight limit that sees only 200 and 429;
#   - server/page.html in headless Chromium (tests/serve_page.mjs: two streamed turns).
# Skips a part whose tools are missing (python3; node, chromium and puppeteer-core from
# tests/fetch_npm.sh); skips in all when neither part can run.
BUILD=${BUILD:-build}
B=$BUILD/bench/bench_serve
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not found"; exit 77; }
T=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

python3 tests/mock_openai.py --port 0 --split --max-inflight 8 --delay 0.01 >"$T/mock.log" 2>&1 &
pid=$!
port=
for _ in $(seq 50); do
    port=$(sed -n 's/^mock_openai: listening on http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$T/mock.log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: the mock server did not start: $(cat "$T/mock.log")"; exit 1; }
ran=""

if [ -x "$B" ]; then
    ran="$ran bench_serve"
    if "$B" --port "$port" --wait-health 5 --clients 1,4 --seconds 1 --max-tokens 8 >"$T/sweep" 2>&1; then
        n=$(grep -cE '^ +[14] +[0-9]+ +[0-9]+ .* none$' "$T/sweep")
        [ "$n" = 2 ] || fail "bench_serve sweep: want 2 error-free rows: $(cat "$T/sweep")"
    else
        fail "bench_serve sweep exited non-zero: $(cat "$T/sweep")"
    fi
    if "$B" --port "$port" --overload 24 --seconds 1 --max-tokens 4 --pid $pid >"$T/over" 2>&1; then
        grep -q ' 429: [1-9]' "$T/over" || fail "bench_serve overload: no 429 past the mock's limit: $(cat "$T/over")"
        grep -q 'recovered in' "$T/over" || fail "bench_serve overload: no recovery line: $(cat "$T/over")"
    else
        fail "bench_serve overload exited non-zero: $(cat "$T/over")"
    fi
    # A server that is gone: the overload must say so and fail.
    if "$B" --port 1 --overload 2 --seconds 0.2 >"$T/gone" 2>&1; then fail "bench_serve overload passed with no server"; fi
    grep -q 'connect: [1-9]' "$T/gone" || fail "bench_serve: connection failures not counted: $(cat "$T/gone")"
else
    echo "note: $B not built (make $B): load generator not checked"
fi

chromium=${CHROMIUM:-/usr/bin/chromium}
if command -v node >/dev/null 2>&1 && [ -x "$chromium" ] && [ -f .cache/npm/node_modules/puppeteer-core/package.json ]; then
    ran="$ran page"
    node tests/serve_page.mjs "http://127.0.0.1:$port" "$T/page.png" >"$T/page" 2>&1 || fail "$(cat "$T/page")"
else
    echo "note: node, $chromium or .cache/npm puppeteer-core (sh tests/fetch_npm.sh) missing: chat page not checked"
fi

[ -n "$ran" ] || { echo "SKIP: neither bench_serve nor the page test could run"; exit 77; }
[ $fails = 0 ] || exit 1
echo "ok:$ran"
