#!/bin/sh
# cli_countdown.sh: the Countdown task through the CLI: `train --task countdown` runs, writes a
# checkpoint whose record keeps the task (a resume continues it; the arithmetic default records
# none), `eval --task countdown` prints accuracy and format rate per level (and one JSON line with
# --json), and bad --task / --level combinations get one-line errors with a hint.
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
    grep -q "hint:" "$T/err" || fail "$desc: no hint: $(cat "$T/err")"
    lines=$(wc -l <"$T/err")
    [ "$lines" -eq 1 ] || { fail "$desc: $lines lines of error (want 1):"; cat "$T/err"; }
}

TR="--config tiny --batch 4 --eval-every 0 --no-progress --quiet --threads 1"
if ! $BIN train $TR --task countdown --level 1 --steps 20 --out "$T/run" >"$T/train" 2>&1; then
    echo "FAIL: train --task countdown:"; cat "$T/train"; exit 1
fi
[ -s "$T/run/ckpt.fgck" ] || fail "no checkpoint"
grep -q "data: built-in Countdown task, level 1" "$T/train" || fail "train does not name the task: $(cat "$T/train")"
grep -q '"val_loss"' "$T/run/log.jsonl" || fail "no validation line in the log"
grep -aq '\\"task\\":\\"countdown\\",\\"task_level\\":1' "$T/run/ckpt.fgck" || fail "the checkpoint's record lacks the task"
# resume continues on the task and refuses another one
$BIN train --resume "$T/run/ckpt.fgck" --steps 25 --no-progress --quiet --threads 1 >"$T/resume" 2>&1 || fail "resume: $(cat "$T/resume")"
grep -q "data: built-in Countdown task, level 1" "$T/resume" || fail "resume forgot the task: $(cat "$T/resume")"
expect_fail "resume with another task" "differs from the run's countdown" $BIN train --resume "$T/run/ckpt.fgck" --task arith --steps 30
expect_fail "resume with another level" "\-\-level 2 differs from the run's 1" $BIN train --resume "$T/run/ckpt.fgck" --task countdown --level 2 --steps 30

# eval: one level, every level, JSON
$BIN eval --ckpt "$T/run/ckpt.fgck" --task countdown --level 1 --n 8 --show 2 --threads 1 >"$T/eval" 2>&1 || fail "eval: $(cat "$T/eval")"
grep -Eq "^countdown level 1 held-out accuracy: [0-9.]+%, format [0-9.]+% \(8 problems" "$T/eval" || fail "eval line: $(cat "$T/eval")"
[ "$(grep -c '^  ' "$T/eval")" -eq 2 ] || fail "eval --show 2: $(cat "$T/eval")"
$BIN eval --ckpt "$T/run/ckpt.fgck" --task countdown --n 4 --show 0 --threads 1 >"$T/eval0" 2>&1 || fail "eval all levels: $(cat "$T/eval0")"
[ "$(grep -c '^countdown level [123] held-out accuracy' "$T/eval0")" -eq 3 ] || fail "eval all levels: $(cat "$T/eval0")"
$BIN eval --ckpt "$T/run/ckpt.fgck" --task countdown --level 2 --n 4 --json --threads 1 >"$T/json" 2>&1 || fail "eval --json: $(cat "$T/json")"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["task"] == "countdown" and d["n"] == 4 and len(d["levels"]) == 1, d
l = d["levels"][0]
assert l["level"] == 2 and 0 <= l["accuracy"] <= l["format_rate"] + 1 and 0 <= l["format_rate"] <= 1, d
' "$T/json" || fail "eval --json: $(cat "$T/json")"

# the arithmetic default is unchanged and records no task
$BIN train $TR --steps 2 --out "$T/arith" >"$T/atrain" 2>&1 || fail "arith train: $(cat "$T/atrain")"
grep -q "data: built-in arithmetic task" "$T/atrain" || fail "arith train: $(cat "$T/atrain")"
if grep -aq 'task\\"' "$T/arith/ckpt.fgck"; then fail "an arithmetic run records a task"; fi
$BIN eval --ckpt "$T/arith/ckpt.fgck" --n 3 --show 0 --threads 1 >"$T/aeval" 2>&1 || fail "arith eval: $(cat "$T/aeval")"
grep -q "^held-out exact match: " "$T/aeval" || fail "arith eval: $(cat "$T/aeval")"

# refusals: one line with a hint, non-zero exit
expect_fail "train --level 4" "\-\-level 4 is out of range" $BIN train $TR --task countdown --level 4 --steps 2 --out "$T/x"
expect_fail "train --level -1" "\-\-level -1 is out of range" $BIN train $TR --task countdown --level -1 --steps 2 --out "$T/x"
expect_fail "train --level without the task" "\-\-level goes with --task countdown" $BIN train $TR --level 2 --steps 2 --out "$T/x"
expect_fail "train --task bogus" "\-\-task bogus is not a built-in task" $BIN train $TR --task bogus --steps 2 --out "$T/x"
echo "hello" >"$T/data.txt"
expect_fail "train --task countdown with data" "not on data files" $BIN train $TR --task countdown --steps 2 --out "$T/x" "$T/data.txt"
expect_fail "train --task countdown --seq too short" "needs --seq >= 49" $BIN train $TR --task countdown --level 1 --seq 20 --steps 2 --out "$T/x"
expect_fail "eval --level 7" "\-\-level 7 is out of range" $BIN eval --ckpt "$T/run/ckpt.fgck" --task countdown --level 7
expect_fail "eval --level without the task" "\-\-level goes with --task countdown" $BIN eval --ckpt "$T/run/ckpt.fgck" --level 1
expect_fail "eval --task bogus" "\-\-task bogus is not a built-in task" $BIN eval --ckpt "$T/run/ckpt.fgck" --task bogus
[ $fails -eq 0 ] && echo "cli_countdown: ok" || exit 1
