#!/bin/sh
# cli_rl.sh: `frugal rl` through the CLI: a few GRPO updates from a checkpoint write ckpt.fgck,
# rl.jsonl (one line per update with the rollout's statistics; held-out accuracy where measured),
# rl.svg and a ledger with rollout and reference FLOPs (also shown by `frugal cost ledger`); a
# resume continues the update count with the run's recorded options; an external --verifier is
# used instead of the built-in check (one that accepts everything gives accuracy 1, one that exits
# 3 stops the run with an error); with --drop-zero-var, rewards that never differ make every
# rollout sample its 8 rounds; `frugal bench --group` prints both sampling speeds; bad input
# gets one-line errors with a hint.
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

if ! $BIN train --config tiny --task countdown --level 1 --steps 10 --batch 4 --eval-every 0 --no-progress --quiet \
        --threads 1 --out "$T/base" >"$T/train" 2>&1; then
    echo "FAIL: train:"; cat "$T/train"; exit 1
fi
RL="--level 1 --prompts 2 --group 4 --max-new 24 --eval-every 2 --eval-n 4 --save-every 2 --no-progress --threads 1"
$BIN rl --init "$T/base/ckpt.fgck" $RL --steps 4 --stop-after 2 --out "$T/rl" >"$T/rl1" 2>&1 || fail "rl: $(cat "$T/rl1")"
[ -s "$T/rl/ckpt.fgck" ] && [ -s "$T/rl/rl_opts.json" ] || fail "no checkpoint or recorded options"
[ "$(grep -c '"reward_mean"' "$T/rl/rl.jsonl")" -eq 2 ] || fail "rl.jsonl after 2 updates: $(cat "$T/rl/rl.jsonl")"
$BIN rl --resume "$T/rl/ckpt.fgck" --eval-every 2 --eval-n 4 --no-progress --threads 1 >"$T/rl2" 2>&1 || fail "resume: $(cat "$T/rl2")"
for u in 1 2 3 4; do grep -q "{\"update\":$u,\"rollout\"" "$T/rl/rl.jsonl" || fail "update $u missing after resume"; done
grep -q '"final":true' "$T/rl/rl.jsonl" || fail "no final held-out line"
grep -q '"heldout_accuracy":[0-9]' "$T/rl/rl.jsonl" || fail "no held-out accuracy"
grep -q "<svg" "$T/rl/rl.svg" || fail "no rl.svg"
grep -q '"rollout": [1-9]' "$T/rl/ledger.json" || fail "ledger: no rollout FLOPs: $(grep rollout "$T/rl/ledger.json")"
grep -q '"reference": [1-9]' "$T/rl/ledger.json" || fail "ledger: no reference FLOPs"
$BIN cost ledger "$T/rl" >"$T/cost" 2>&1 && grep -q "rollout FLOPs (rl)" "$T/cost" || fail "cost ledger: $(cat "$T/cost")"
# an external verifier: accepting everything makes every rollout correct; a broken one stops the run
$BIN rl --init "$T/base/ckpt.fgck" $RL --steps 1 --beta 0 --verifier "cat >/dev/null; exit 0" --out "$T/v" >"$T/v1" 2>&1 \
    || fail "rl --verifier: $(cat "$T/v1")"
grep -q '"accuracy":1.000000' "$T/v/rl.jsonl" || fail "--verifier accepting all: $(cat "$T/v/rl.jsonl")"
expect_fail "broken verifier" "exit status 3" $BIN rl --init "$T/base/ckpt.fgck" $RL --steps 1 --beta 0 \
    --verifier "cat >/dev/null; exit 3" --out "$T/v3"
# dynamic sampling (--drop-zero-var): rewards that never differ (every answer accepted, no format
# reward) leave no group with a signal, so each rollout samples FG_RL_MAX_ROUNDS (8) rounds of 2
# prompts, drops all 16 groups and the update's loss is 0
$BIN rl --init "$T/base/ckpt.fgck" $RL --steps 1 --beta 0 --format-reward 0 --drop-zero-var \
    --verifier "cat >/dev/null; exit 0" --out "$T/dz" >"$T/dz1" 2>&1 || fail "rl --drop-zero-var: $(cat "$T/dz1")"
grep -q '"dropped_groups":16,"rounds":8,"loss":0.000000' "$T/dz/rl.jsonl" || fail "--drop-zero-var: $(cat "$T/dz/rl.jsonl")"
grep -q '"rounds":1,' "$T/rl/rl.jsonl" && ! grep -q '"rounds":[02-9]' "$T/rl/rl.jsonl" || fail "one round without --drop-zero-var: $(cat "$T/rl/rl.jsonl")"
# group sampling bench
$BIN bench --ckpt "$T/base/ckpt.fgck" --group 4 --group-prompts 2 --group-new 8 --json --threads 1 >"$T/bench" 2>&1 \
    || fail "bench --group: $(cat "$T/bench")"
grep -q '"single_tok_s": [0-9]' "$T/bench" && grep -q '"group_tok_s": [0-9]' "$T/bench" || fail "bench --group: $(cat "$T/bench")"
# bad input
expect_fail "no policy" "no starting policy" $BIN rl --steps 2
expect_fail "missing init" "cannot open" $BIN rl --init "$T/nope.fgck" --steps 2
expect_fail "bad task" "--task must be" $BIN rl --init "$T/base/ckpt.fgck" --task chess
expect_fail "bad level" "level" $BIN rl --init "$T/base/ckpt.fgck" --level 7
expect_fail "too long" "exceed the model's context" $BIN rl --init "$T/base/ckpt.fgck" --max-new 500 --steps 1 --out "$T/x"
[ $fails -eq 0 ] || exit 1
echo "ok"
