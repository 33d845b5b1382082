#!/bin/sh
# cli_eval_text.sh: `frugal eval --text` (perplexity on a text file) and --top1-against (agreement
# with another model's next-token predictions): the same number from a checkpoint and its f32 GGUF
# export, a model against itself agrees everywhere with zero KL, a Q8_0 export against its f32
# nearly everywhere, a trained model beats its untrained start, and bad input gets one-line errors.
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
num() { sed -n "s/.*\"$1\": \([-0-9.e+]*\).*/\1/p" "$2"; }

i=0
while [ $i -lt 60 ]; do echo "The quick brown fox $i jumps over the lazy dog; the dog sleeps."; i=$((i+1)); done >"$T/train.txt"
printf 'The lazy dog sleeps while the quick brown fox jumps over it, again and again.\n' >"$T/held.txt"
TR="--config tiny --batch 8 --seq 64 --eval-every 0 --val-fraction 0 --no-progress --quiet"
$BIN train $TR --steps 1 --lr 1e-9 --out "$T/r0" "$T/train.txt" >/dev/null 2>&1 || fail "train 1 step"
$BIN train $TR --steps 60 --lr 3e-3 --out "$T/r" "$T/train.txt" >/dev/null 2>&1 || fail "train 60 steps"
$BIN export --gguf "$T/f32.gguf" "$T/r/ckpt.fgck" >/dev/null 2>&1 || fail "export f32"
$BIN export --gguf "$T/q8.gguf" --type q8_0 "$T/r/ckpt.fgck" >/dev/null 2>&1 || fail "export q8_0"

$BIN eval --ckpt "$T/r/ckpt.fgck" --text "$T/held.txt" --json >"$T/ck" 2>"$T/err" || { fail "eval --text"; cat "$T/err"; }
$BIN eval --ckpt "$T/f32.gguf" --text "$T/held.txt" --top1-against "$T/r/ckpt.fgck" --json >"$T/f32" 2>"$T/err" || { fail "eval --text GGUF"; cat "$T/err"; }
$BIN eval --ckpt "$T/q8.gguf" --text "$T/held.txt" --top1-against "$T/f32.gguf" --json >"$T/q8" 2>"$T/err" || { fail "eval --text q8_0"; cat "$T/err"; }
$BIN eval --ckpt "$T/r0/ckpt.fgck" --text "$T/held.txt" --json >"$T/u" 2>"$T/err" || { fail "eval --text untrained"; cat "$T/err"; }
# the held-out text is 78 bytes: BOS + 78 byte ids, 78 predicted in one window (tiny's context is 128)
[ "$(num tokens "$T/ck")" = 78 ] && [ "$(num windows "$T/ck")" = 1 ] || fail "tokens/windows: $(cat "$T/ck")"
[ "$(num perplexity "$T/ck")" = "$(num perplexity "$T/f32")" ] || fail "checkpoint and its f32 GGUF differ: $(cat "$T/ck" "$T/f32")"
[ "$(num top1_agreement "$T/f32")" = 1.000000 ] && [ "$(num kl "$T/f32")" = 0.00000000 ] || fail "f32 against itself: $(cat "$T/f32")"
awk -v a="$(num top1_agreement "$T/q8")" -v k="$(num kl "$T/q8")" 'BEGIN { exit !(a >= 0.9 && k >= 0 && k < 0.01) }' ||
    fail "q8_0 against f32: $(cat "$T/q8")"
awk -v t="$(num perplexity "$T/ck")" -v u="$(num perplexity "$T/u")" 'BEGIN { exit !(t > 1 && t < u && u < 400) }' ||
    fail "trained perplexity not below the untrained one: $(cat "$T/ck" "$T/u")"
# windows: --ctx 16 cuts the 79 tokens into 4 windows of 16 and one of 15, predicting 15 + 15 + 15 + 15 + 14
$BIN eval --ckpt "$T/f32.gguf" --text "$T/held.txt" --ctx 16 --json >"$T/c16" 2>/dev/null
[ "$(num tokens "$T/c16")" = 74 ] && [ "$(num windows "$T/c16")" = 5 ] || fail "--ctx 16: $(cat "$T/c16")"

$BIN train --config demo-student --steps 1 --batch 2 --seq 70 --eval-every 0 --no-progress --quiet --out "$T/other" >/dev/null 2>&1
expect_fail "--top1-against another vocabulary" "vocabulary of 264" $BIN eval --ckpt "$T/f32.gguf" --text "$T/held.txt" --top1-against "$T/other/ckpt.fgck"
expect_fail "--ctx past the context" "--ctx 4096 is outside" $BIN eval --ckpt "$T/f32.gguf" --text "$T/held.txt" --ctx 4096
expect_fail "missing --text file" "cannot open --text" $BIN eval --ckpt "$T/f32.gguf" --text "$T/nope.txt"
expect_fail "--top1-against without --text" "go with --text" $BIN eval --ckpt "$T/f32.gguf" --top1-against "$T/f32.gguf"
: >"$T/empty.txt"
expect_fail "empty --text" "no token to predict" $BIN eval --ckpt "$T/f32.gguf" --text "$T/empty.txt"

[ $fails -eq 0 ] && echo "eval --text: perplexity and top-1 agreement checked" && exit 0
exit 1
