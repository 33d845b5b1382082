#!/bin/sh
# cli_chat.sh: `frugal chat` holds a multi-turn conversation from stdin, handles /reset and /exit,
# says when the context is full or a message can never fit, and fails cleanly without a checkpoint.
BIN=${BIN:-./frugal}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export FRUGAL_CACHE_DIR="$T/cache"
fails=0
printf 'hello world, this is a tiny chat corpus. %.0s' $(seq 1 50) >"$T/text.txt"
$BIN train --config tiny --steps 2 --batch 2 --seq 32 --eval-every 0 --no-progress --quiet --out "$T/run" "$T/text.txt" >/dev/null 2>&1 \
    || { echo "FAIL: could not train a tiny model"; exit 1; }
printf 'first question\nsecond question\n/reset\nthird\n/exit\nnever read\n' |
    $BIN chat --ckpt "$T/run/ckpt.fgck" --temperature 0 --max-tokens 8 >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: chat exit $rc"; cat "$T/err"; fails=$((fails+1)); }
grep -q "(conversation reset)" "$T/out" || { echo "FAIL: /reset not acknowledged"; fails=$((fails+1)); }
[ "$(grep -c 'reply cut at' "$T/out")" -eq 3 ] || { echo "FAIL: expected three replies cut at 8 tokens:"; cat "$T/out"; fails=$((fails+1)); }
# a message longer than the context (tiny: 128 positions) is refused with its counts: /reset
# cannot help it
long=$(printf 'y%.0s' $(seq 1 300))
printf '%s\n' "$long" | $BIN chat --ckpt "$T/run/ckpt.fgck" >"$T/out2" 2>&1
grep -q "message not sent: it is [0-9]* tokens, the context holds 128" "$T/out2" || { echo "FAIL: no too-long message:"; cat "$T/out2"; fails=$((fails+1)); }
# a conversation that fills the context gets the /reset notice
mid=$(printf 'z%.0s' $(seq 1 50))
printf '%s\n%s\n%s\n' "$mid" "$mid" "$mid" | $BIN chat --ckpt "$T/run/ckpt.fgck" --temperature 0 --max-tokens 8 >"$T/out3" 2>&1
grep -q "context full: [0-9]* of 128 tokens used" "$T/out3" || { echo "FAIL: no context-full message:"; cat "$T/out3"; fails=$((fails+1)); }
$BIN chat >/dev/null 2>"$T/err"; rc=$?
{ [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q -- "--ckpt is required" "$T/err"; } || { echo "FAIL: chat without --ckpt"; fails=$((fails+1)); }
[ $fails -eq 0 ] && echo "chat ok"
[ $fails -eq 0 ]
