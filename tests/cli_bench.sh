#!/bin/sh
# cli_bench.sh: `frugal bench` runs on a tiny model, reports the latent KV cache size by the
# formula L * (Rkv + Dr) * 4 bytes, emits valid JSON, and rejects bad lists.
BIN=${BIN:-./frugal}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export FRUGAL_CACHE_DIR="$T/cache"
fails=0
if ! $BIN bench --config tiny --prefill 8,16 --decode 0,16 --decode-tokens 4 --json >"$T/out" 2>"$T/err"; then
    echo "FAIL: bench on tiny:"; cat "$T/err"; exit 1
fi
# tiny preset: L=2, Rkv=16, Dr=4 -> 2 * 20 * 4 = 160 bytes per token
grep -q '"kv_bytes_per_token": 160,' "$T/out" || { echo "FAIL: latent KV bytes per token:"; cat "$T/out"; fails=$((fails+1)); }
grep -q '"kv_cache": "latent"' "$T/out" || { echo "FAIL: MLA default cache is not latent"; fails=$((fails+1)); }
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["prefill"])==2 and len(d["decode"])==2 and all(x["tok_per_s"]>0 for x in d["decode"])' "$T/out" \
        || { echo "FAIL: bench JSON"; cat "$T/out"; fails=$((fails+1)); }
fi
# batched decode: every size measured (interleaved rounds), ratios to batch 1
$BIN bench --config tiny --prefill 8 --decode 0 --decode-tokens 3 --batch 1,3,5 --batch-context 40 --json >"$T/bat" 2>&1
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["batch"]; assert [x["batch"] for x in b]==[1,3,5] and all(x["tok_per_s"]>0 and x["context"]==40 for x in b) and b[0]["x_batch1"]==1' "$T/bat" \
        || { echo "FAIL: bench --batch JSON"; cat "$T/bat"; fails=$((fails+1)); }
fi
$BIN bench --config tiny --prefill 8 --decode 0 --decode-tokens 2 --full-cache --json >"$T/full" 2>&1
grep -q '"kv_bytes_per_token": 320,' "$T/full" || { echo "FAIL: full cache bytes: L*H*(Dn+Dr+Dv)*4 = 2*2*20*4"; cat "$T/full"; fails=$((fails+1)); }
for w in bf16 q8_0; do
    $BIN bench --config tiny --prefill 8 --decode 0 --decode-tokens 2 --weights $w --json >"$T/w" 2>&1
    grep -q "\"weights\": \"$w\"" "$T/w" || { echo "FAIL: --weights $w:"; cat "$T/w"; fails=$((fails+1)); }
done
# bf16 KV cache: half the bytes (2 * 20 * 2 = 80)
$BIN bench --config tiny --prefill 8 --decode 0,8 --decode-tokens 2 --kv-type bf16 --json >"$T/kv" 2>&1
grep -q '"kv_bytes_per_token": 80,' "$T/kv" && grep -q '"kv_type": "bf16"' "$T/kv" || { echo "FAIL: --kv-type bf16:"; cat "$T/kv"; fails=$((fails+1)); }
# a quantised model file benchmarks as stored
$BIN train --config tiny --steps 1 --batch 2 --seq 70 --eval-every 0 --no-progress --quiet --out "$T/run" >/dev/null 2>&1 &&
    $BIN quantize "$T/run/ckpt.fgck" -o "$T/m.fgq" --type bf16 >/dev/null 2>&1 &&
    $BIN bench --ckpt "$T/m.fgq" --prefill 8 --decode 0 --decode-tokens 2 --json >"$T/q" 2>&1
grep -q '"weights": "bf16"' "$T/q" || { echo "FAIL: bench of a .fgq:"; cat "$T/q"; fails=$((fails+1)); }
if $BIN bench --config tiny --weights q3 >/dev/null 2>"$T/err"; then echo "FAIL: --weights q3 accepted"; fails=$((fails+1)); fi
grep -q "unknown weight type 'q3'" "$T/err" || { echo "FAIL: bad --weights message"; cat "$T/err"; fails=$((fails+1)); }
if $BIN bench --config tiny --prefill abc >/dev/null 2>"$T/err"; then echo "FAIL: bad --prefill accepted"; fails=$((fails+1)); fi
[ "$(wc -l <"$T/err")" -eq 1 ] || { echo "FAIL: bad --prefill error is not one line"; fails=$((fails+1)); }
[ $fails -eq 0 ] && echo "bench ok"
[ $fails -eq 0 ]
