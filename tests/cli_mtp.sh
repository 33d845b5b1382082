#!/bin/sh
# cli_mtp.sh: multi-token prediction through the CLI: `train --mtp 2` logs each depth's loss and
# keeps the depths in the checkpoint; `generate --speculative` prints the same greedy text as
# plain decoding and reports its drafts; `bench --speculative` compares the two (identical output);
# `serve --speculative` answers with generate's text and counts its drafts in /metrics;
# quantize / export / convert carry the MTP layers; --speculative without MTP and --mtp on a
# resumed run are refused with one line.
BIN=${BIN:-./frugal}
T=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$T"' EXIT
export FRUGAL_CACHE_DIR="$T/cache"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
if ! $BIN train --config tiny --mtp 2 --steps 30 --batch 4 --seq 70 --eval-every 0 --no-progress --quiet --out "$T/run" >"$T/train" 2>&1; then
    echo "FAIL: train --mtp 2:"; cat "$T/train"; exit 1
fi
grep -q "2 MTP depths (0.[0-9]*M parameters; lambda 0.3, then 0.1)" "$T/train" || fail "train does not announce the MTP depths: $(cat "$T/train")"
# the log: mtp_ce of both depths each step, and the total loss = ce + lambda/D * sum (bal 0)
python3 - "$T/run/log.jsonl" <<'EOF' || fail "MTP losses in log.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l and '"loss"' in l]
assert len(rows) == 30, len(rows)
for r in rows:
    assert len(r["mtp_ce"]) == 2 and all(x > 0 for x in r["mtp_ce"]), r
    lam = r["mtp_lambda"]
    want = r["ce"] + r["bal"] + lam / 2 * sum(r["mtp_ce"])
    assert abs(r["loss"] - want) < 1e-4 * want, (r["loss"], want)
assert rows[0]["mtp_lambda"] == 0.3 and rows[-1]["mtp_lambda"] == 0.1   # V3's schedule: 0.3, then 0.1
assert rows[-1]["mtp_ce"][0] < rows[0]["mtp_ce"][0]                     # depth 1 learns
EOF
C="$T/run/ckpt.fgck"
# generate: speculative greedy == plain greedy, with draft statistics
$BIN generate --ckpt "$C" --prompt '0123+4567=' --temperature 0 --max-tokens 24 --json >"$T/plain" 2>&1 || fail "generate: $(cat "$T/plain")"
$BIN generate --ckpt "$C" --prompt '0123+4567=' --temperature 0 --max-tokens 24 --json --speculative 2 >"$T/spec" 2>&1 || fail "generate --speculative: $(cat "$T/spec")"
python3 - "$T/plain" "$T/spec" <<'EOF' || fail "generate --speculative output: $(cat "$T/plain" "$T/spec")"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["text"] == b["text"] and a["tokens"] == b["tokens"], (a, b)
s = b["speculative"]
assert s["steps"] >= 1 and 1 <= s["tokens_per_step"] <= 3 and len(s["accepted"]) == 2, s
assert "speculative" not in a
EOF
# sampling with drafts runs and is reproducible for a seed
$BIN generate --ckpt "$C" --prompt '12' --temperature 1 --top-k 20 --max-tokens 16 --seed 5 --speculative 1 >"$T/s1" 2>&1 || fail "speculative sampling: $(cat "$T/s1")"
$BIN generate --ckpt "$C" --prompt '12' --temperature 1 --top-k 20 --max-tokens 16 --seed 5 --speculative 1 >"$T/s2" 2>&1
cmp -s "$T/s1" "$T/s2" || fail "speculative sampling is not reproducible for a seed"
# bench --speculative: the task's prompts, identical output, one acceptance per depth
$BIN bench --ckpt "$C" --speculative 2 --spec-prompts 3 --json >"$T/bench" 2>&1 || fail "bench --speculative: $(cat "$T/bench")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["identical"] and d["prompts"]=="task" and len(d["acceptance"])==2 and d["plain_tok_s"]>0 and d["speculative_tok_s"]>0, d' "$T/bench" \
    || fail "bench --speculative JSON: $(cat "$T/bench")"
# serve --speculative: the completion is generate's text (the plain greedy oracle above), the
# metrics count each depth's drafts (skipped without libmicrohttpd)
if "$BIN" serve --config tiny --port 1 --host 999 2>&1 | grep -q "not a numeric IPv4"; then
    "$BIN" serve --model "$C" --port 0 --speculative 2 >"$T/srv.out" 2>"$T/srv.err" &
    SRV=$!
    URL=
    for k in $(seq 1 100); do
        URL=$(sed -n 's/^frugal serve: listening on \(http:[^ ]*\)$/\1/p' "$T/srv.out")
        [ -n "$URL" ] && break
        sleep 0.1
    done
    python3 - "$URL" "$T/plain" <<'EOF2' || fail "serve --speculative: $(cat "$T/srv.err")"
import json, sys, urllib.request
url, plain = sys.argv[1], json.load(open(sys.argv[2]))
req = urllib.request.Request(url + "/v1/completions", headers={"Content-Type": "application/json"},
    data=json.dumps({"prompt": "0123+4567=", "max_tokens": 24, "temperature": 0}).encode())
got = json.load(urllib.request.urlopen(req, timeout=60))["choices"][0]["text"]
want = plain["text"][:-7] if plain["text"].endswith("<|eos|>") else plain["text"]
assert got == want, (got, want)
m = urllib.request.urlopen(url + "/metrics", timeout=60).read().decode()
assert 'frugal_speculative_drafts_total{depth="1"}' in m and 'frugal_speculative_accepted_total{depth="2"}' in m, m
EOF2
    kill $SRV 2>/dev/null; wait $SRV 2>/dev/null
fi
# the MTP layers survive quantize, HF export and GGUF export (read back: drafts still identical)
$BIN quantize "$C" -o "$T/m.fgq" --type bf16 >/dev/null 2>&1 || fail "quantize with MTP"
$BIN export --hf "$T/hf" "$C" >/dev/null 2>&1 || fail "export --hf with MTP"
$BIN export --gguf "$T/m.gguf" "$C" >/dev/null 2>&1 || fail "export --gguf with MTP"
for m in "$T/m.fgq" "$T/hf" "$T/m.gguf"; do
    $BIN generate --ckpt "$m" --prompt '0123+4567=' --temperature 0 --max-tokens 8 --json --speculative 2 >"$T/o" 2>&1 ||
        fail "generate --speculative on $m: $(cat "$T/o")"
    grep -q '"speculative"' "$T/o" || fail "$m lost its MTP layers: $(cat "$T/o")"
done
# refusals: one line, non-zero exit
if $BIN train --config tiny --steps 2 --batch 2 --seq 70 --eval-every 0 --no-progress --quiet --out "$T/plainrun" >/dev/null 2>&1; then
    if $BIN generate --ckpt "$T/plainrun/ckpt.fgck" --prompt x --speculative 1 >/dev/null 2>"$T/err"; then fail "--speculative without MTP accepted"; fi
    grep -q "needs a model with multi-token prediction" "$T/err" || fail "--speculative without MTP: $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "--speculative refusal is not one line: $(cat "$T/err")"
    if "$BIN" serve --model "$T/plainrun/ckpt.fgck" --port 0 --speculative 1 >/dev/null 2>"$T/err"; then fail "serve --speculative without MTP accepted"; fi
    grep -q "needs a model with multi-token prediction" "$T/err" && [ "$(wc -l <"$T/err")" -eq 1 ] || fail "serve --speculative without MTP: $(cat "$T/err")"
fi
if $BIN train --resume "$C" --mtp 1 --steps 40 >/dev/null 2>"$T/err"; then fail "--mtp with --resume accepted"; fi
grep -q "\-\-mtp shapes a new model" "$T/err" || fail "--mtp with --resume: $(cat "$T/err")"
[ $fails -eq 0 ] && echo "cli_mtp: ok" || exit 1
