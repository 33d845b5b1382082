#!/bin/sh
# cli_shards.sh: frugal data prepare -> train --shards -> generate end to end on tiny data, and the
# bad inputs of the shard path (empty file, malformed JSONL line, corrupted shard, data refine).
BIN=${BIN:-./frugal}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fails=0
fail() { echo "FAIL: $1"; fails=$((fails+1)); }
printf 'some text for the shards, repeated. some text for the shards, repeated.\n' > "$D/a.txt"
printf '{"text": "ok line"}\n{oops\n' > "$D/b.jsonl"
: > "$D/empty.txt"
$BIN data prepare -o "$D/e" "$D/empty.txt" 2>"$D/err" && fail "empty input accepted"
grep -q "empty" "$D/err" || fail "empty input: no clear error"
$BIN data prepare -o "$D/s" --shard-tokens 40 "$D/a.txt" "$D/b.jsonl" >"$D/out" 2>"$D/err" || fail "prepare failed: $(cat "$D/err")"
grep -q "line 2 skipped" "$D/err" || fail "malformed JSONL line not reported with its number"
$BIN train --config tiny --shards "$D/s" --steps 2 --batch 2 --seq 16 --out "$D/run" --no-progress >/dev/null 2>"$D/err" || fail "train --shards failed: $(cat "$D/err")"
$BIN generate --ckpt "$D/run/ckpt.fgck" --prompt "so" --max-tokens 4 --temperature 0 >/dev/null || fail "generate on a shard-trained checkpoint"
printf 'X' | dd of="$D/s/train-00000.fgsh" bs=1 seek=70 conv=notrunc 2>/dev/null
$BIN train --config tiny --shards "$D/s" --steps 2 --batch 2 --seq 16 --out "$D/run2" --no-progress >/dev/null 2>"$D/err" && fail "corrupted shard accepted"
grep -q "train-00000.fgsh" "$D/err" || fail "corrupted shard not named: $(cat "$D/err")"
$BIN data refine 2>/dev/null && fail "data refine without arguments succeeded"
[ $fails -eq 0 ] || exit 1
