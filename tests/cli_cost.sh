#!/bin/sh
# cli_cost.sh: `frugal cost` reproduces DeepSeek-V3's published figures, prints JSON that parses,
# runs the ledger of a real (tiny) training run, and answers bad input with one-line errors.
BIN=${BIN:-./frugal}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export FRUGAL_CACHE_DIR="$T/cache"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
expect_fail() {
    desc=$1; want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then fail "$desc: exit $rc"; return; fi
    if ! grep -q -- "$want" "$T/err"; then fail "$desc: stderr lacks '$want':"; cat "$T/err"; return; fi
    lines=$(wc -l <"$T/err")
    [ "$lines" -eq 1 ] || { fail "$desc: $lines lines of error (want 1):"; cat "$T/err"; }
}
expect_out() { grep -q -- "$1" "$T/out" || { fail "output lacks '$1'"; cat "$T/out"; }; }

$BIN cost deepseek-v3 --tokens 14.8T --gpu h800 --price 2 >"$T/out" 2>"$T/err" || fail "deepseek-v3 exit $?"
expect_out "total                           671.0B    37.55B"
expect_out "frugal 250.5G (+0.2%)"
expect_out "MFU 0.3906, back-solved"
expect_out "H800-hours 2.664M"
expect_out "cost \$5.328M"
expect_out "all stages 2.788M hours = \$5.576M"
$BIN cost llama3-405b --json >"$T/out" || fail "llama3-405b --json"
if command -v python3 >/dev/null; then python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/out" || fail "--json does not parse"; fi
$BIN cost deepseek-v2-lite --gpu a100 --mfu 0.5 --tokens 5.7T >"$T/out" || fail "v2-lite"
expect_out "MFU 0.5000 (given)"
$BIN help cost >"$T/out" || fail "help cost"
expect_out "--tokens X"
printf '[{"name": "h800", "price_hr": 3}]' >"$T/acc.json"
$BIN cost deepseek-v3 --accelerators "$T/acc.json" >"$T/out" || fail "--accelerators"
expect_out "\$3.00/h"

expect_fail "unknown preset" "known presets: deepseek-v3" $BIN cost gpt-5
expect_fail "unknown accelerator" "known: H800, H100-SXM" $BIN cost deepseek-v3 --gpu tpu
expect_fail "zero tokens" "--tokens must be > 0" $BIN cost deepseek-v3 --tokens 0
expect_fail "negative tokens" "--tokens must be > 0" $BIN cost deepseek-v3 --tokens -5T
expect_fail "bad suffix" "'14.8X' is not a number" $BIN cost deepseek-v3 --tokens 14.8X
expect_fail "zero mfu" "--mfu must be in (0, 1]" $BIN cost deepseek-v3 --mfu 0
expect_fail "mfu above 1" "--mfu must be in (0, 1]" $BIN cost deepseek-v3 --mfu 1.5
expect_fail "fp8 on a100" "A100 has no fp8" $BIN cost deepseek-v3 --gpu a100 --precision fp8
printf '{"hidden_size": 64}' >"$T/missing.json"
expect_fail "config missing fields" "missing required field 'vocab_size'" $BIN cost "$T/missing.json"
expect_fail "no ledger" "no ledger in" $BIN cost ledger "$T/nowhere"

# a real run writes a ledger; `cost ledger` reads it
$BIN train --config tiny --steps 2 --batch 2 --seq 70 --eval-every 1 --eval-batches 1 --out "$T/run" --quiet --no-progress >/dev/null 2>&1 || fail "train"
[ -f "$T/run/ledger.json" ] || fail "no ledger.json after train"
$BIN cost ledger "$T/run" "$T/run" --target-loss 100 >"$T/out" 2>"$T/err" || { fail "cost ledger"; cat "$T/err"; }
expect_out "MFU (vs fp32 peak)"
expect_out "to reach val loss 100: tokens"
$BIN cost peaks >"$T/out" || fail "cost peaks"
expect_out "fp32 FMA"
[ $fails -eq 0 ] || exit 1
echo "cli_cost: ok"
