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
# a failed run leaves no files: a folder it created is removed, an existing one keeps its files
$BIN data prepare -o "$D/o2" "$D/empty.txt" 2>/dev/null && fail "empty input accepted"
[ ! -e "$D/o2" ] || fail "a failed prepare left $(ls -A "$D/o2" | tr '\n' ' ')in a folder it created"
before=$(ls -A "$D/s" | tr '\n' ' ')
$BIN data prepare -o "$D/s" "$D/a.txt" "$D/empty.txt" 2>/dev/null && fail "empty input accepted"
[ "$(ls -A "$D/s" | tr '\n' ' ')" = "$before" ] || fail "a failed rerun changed the folder: '$before' -> '$(ls -A "$D/s" | tr '\n' ' ')'"
# a rerun into an existing folder leaves no stale shards
$BIN data prepare -o "$D/r" --shard-tokens 20 "$D/a.txt" "$D/a.txt" "$D/a.txt" >/dev/null 2>&1 || fail "prepare of 3 shards"
[ "$(ls "$D/r" | grep -c fgsh)" -eq 3 ] || fail "want 3 shards: $(ls "$D/r")"
$BIN data prepare -o "$D/r" "$D/a.txt" >/dev/null 2>&1 || fail "rerun into an existing shard folder"
[ "$(ls -A "$D/r" | tr '\n' ' ')" = "manifest.json train-00000.fgsh " ] || fail "rerun left: $(ls -A "$D/r" | tr '\n' ' ')"
mkdir "$D/mine"; : > "$D/mine/notes.txt"
$BIN data prepare -o "$D/mine" "$D/a.txt" >/dev/null 2>"$D/err" && fail "prepare into a folder of other files"
grep -q "is not empty and not a folder written by data prepare" "$D/err" || fail "foreign folder: $(cat "$D/err")"
[ -f "$D/mine/notes.txt" ] || fail "prepare deleted a file it did not write"
# JSONL lines: a duplicate key and a non-object are errors naming the line; NUL is text, as in refine
printf '{"text": "x", "text": "y"}\n[1,2]\n{"text": "a\\u0000b"}\n' > "$D/c.jsonl"
$BIN data prepare -o "$D/c" "$D/c.jsonl" >"$D/out" 2>"$D/err" || fail "prepare of c.jsonl: $(cat "$D/err")"
grep -q "line 1 skipped: duplicate key \"text\"" "$D/err" || fail "duplicate key: $(cat "$D/err")"
grep -q "line 2 skipped: not a JSON object" "$D/err" || fail "[1,2]: $(cat "$D/err")"
grep -q "^1 documents" "$D/out" && ! grep -q "line 3" "$D/err" || fail "NUL line: $(cat "$D/out" "$D/err")"
$BIN data refine "$D/c.jsonl" -o "$D/c.out.jsonl" >"$D/out" 2>&1 || fail "refine of c.jsonl: $(cat "$D/out")"
grep -q "c.jsonl:1: duplicate key \"text\"" "$D/out" && grep -q "c.jsonl:2: not a JSON object" "$D/out" || fail "refine bad lines: $(cat "$D/out")"
grep -q "control_chars" "$D/out" && ! grep -q "c.jsonl:3: not" "$D/out" || fail "refine: the NUL line is not judged as text: $(cat "$D/out")"
printf '{"conversations": [{"role": "user", "content": "a\\u0000b"}, {"role": "assistant", "content": "c"}]}\n{"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n' > "$D/chat.jsonl"
$BIN data prepare --sft -o "$D/sft" "$D/chat.jsonl" >/dev/null 2>"$D/err" || fail "prepare --sft: $(cat "$D/err")"
grep -q "line 1 skipped: a content holds a NUL character" "$D/err" || fail "SFT NUL: $(cat "$D/err")"
# help for a subcommand
$BIN help data refine | grep -q "usage: frugal data refine" || fail "frugal help data refine: $($BIN help data refine | head -1)"
[ $fails -eq 0 ] || exit 1
