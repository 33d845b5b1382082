#!/bin/sh
# demo_rl.sh (make demo-rl): the R1 pipeline on the built-in Countdown task, at toy scale, with the
# accuracy and cost of every stage in one table (docs/rl.md):
#   1. base:     a cold-start SFT of the demo preset (MLA + MoE, 1.8M parameters) on Countdown
#                level 1, stopped early so that it solves a minority of held-out problems;
#   2. GRPO:     frugal rl from the base (G completions per prompt, rule-checked rewards);
#   3. samples:  frugal distill generate: the RL model samples completions for training problems,
#                the task's verifier keeps the correct ones (the R1-distill recipe's data);
#   4. student:  the demo-student preset (dense GQA, ~20% of the teacher's active parameters)
#                fine-tuned on those samples (frugal train --sft).
# Every stage is evaluated on the same held-out problems (greedy, N_EVAL of them).
# Environment: DIR (build/demo-rl), BASE_STEPS (600), RL_STEPS (200), GEN_PROMPTS (2000),
# STUDENT_STEPS (1500), N_EVAL (1000), THREADS (0 = all cores), BIN (./frugal).
# About 7 minutes on 2 cores with the defaults (docs/rl.md has the measured table).
set -e
BIN=${BIN:-./frugal}
DIR=${DIR:-build/demo-rl}
BASE_STEPS=${BASE_STEPS:-600}
RL_STEPS=${RL_STEPS:-200}
GEN_PROMPTS=${GEN_PROMPTS:-2000}
STUDENT_STEPS=${STUDENT_STEPS:-1500}
N_EVAL=${N_EVAL:-1000}
THREADS=${THREADS:-0}
rm -rf "$DIR"
mkdir -p "$DIR"
T="--threads $THREADS"
now() { date +%s.%N; }
evaluate() { # checkpoint, stage name: held-out level-1 accuracy into $DIR/NAME.acc
    $BIN eval --ckpt "$1" --task countdown --level 1 --n $N_EVAL --json $T >"$DIR/$2.eval.json"
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['levels'][0]['accuracy'])" "$DIR/$2.eval.json" >"$DIR/$2.acc"
    echo "$2: held-out accuracy $(cat "$DIR/$2.acc")"
}

echo "== 1. base: SFT of the demo preset on Countdown level 1, $BASE_STEPS steps"
t0=$(now)
$BIN train --config demo --task countdown --level 1 --steps $BASE_STEPS --batch 32 --lr 3e-3 --warmup 100 \
    --eval-every 0 --no-progress --quiet $T --out "$DIR/base" >"$DIR/base.log"
echo "$(now) - $t0" | bc >"$DIR/base.wall"
evaluate "$DIR/base/ckpt.fgck" base

echo "== 2. GRPO: $RL_STEPS updates of 32 prompts x G 8"
t0=$(now)
$BIN rl --init "$DIR/base/ckpt.fgck" --level 1 --prompts 32 --group 8 --max-new 48 --temperature 1 --lr 1e-4 \
    --beta 0.04 --steps $RL_STEPS --eval-every 50 --eval-n 300 --no-progress $T --out "$DIR/rl" >"$DIR/rl.log"
echo "$(now) - $t0" | bc >"$DIR/rl.wall"
evaluate "$DIR/rl/ckpt.fgck" rl

echo "== 3. samples: the RL model on $GEN_PROMPTS training problems, 4 samples each, verified"
$BIN distill generate --teacher "$DIR/rl/ckpt.fgck" --task countdown --level 1 --n-prompts $GEN_PROMPTS --n 4 \
    --temperature 0.7 $T -o "$DIR/samples.jsonl" >"$DIR/samples.log"
tail -2 "$DIR/samples.log"

echo "== 4. student: demo-student fine-tuned on the verified samples, $STUDENT_STEPS steps"
t0=$(now)
$BIN train --config demo-student --sft "$DIR/samples.jsonl" --steps $STUDENT_STEPS --batch 32 --lr 3e-3 --warmup 100 \
    --eval-every 0 --no-progress --quiet $T --out "$DIR/student" >"$DIR/student.log"
echo "$(now) - $t0" | bc >"$DIR/student.wall"
evaluate "$DIR/student/ckpt.fgck" student

python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
def ledger(run):
    return json.load(open(f"{d}/{run}/ledger.json"))
def acc(stage):
    return float(open(f"{d}/{stage}.acc").read())
def wall(stage):
    return float(open(f"{d}/{stage}.wall").read())
gen = json.load(open(f"{d}/samples.jsonl.stats.json"))
rows = []
for stage, run, what in (("base", "base", "SFT, demo (MLA + MoE)"), ("rl", "rl", "GRPO from the base")):
    lg = ledger(run)
    f = lg["flops"]
    rows.append((what, lg["model"]["params_active"], acc(stage), f["train"] + f["eval"], f.get("rollout", 0) + f.get("reference", 0), wall(stage)))
rows.append(("verified samples of the RL model", 0, float("nan"), 0, gen["teacher_flops"], gen["wall_s"]))
lg = ledger("student")
f = lg["flops"]
rows.append(("student SFT, demo-student (dense)", lg["model"]["params_active"], acc("student"), f["train"] + f["eval"], 0, wall("student")))
print("\nstage                                active params  held-out acc   train FLOPs   sampling FLOPs   wall s")
tot_t = tot_s = tot_w = 0
for what, p, a, ft, fs, w in rows:
    tot_t += ft; tot_s += fs; tot_w += w
    print("%-36s %13s %13s %13.3g %16.3g %8.1f" % (what, "%.2fM" % (p / 1e6) if p else "-", "-" if a != a else "%.1f%%" % (100 * a), ft, fs, w))
print("%-36s %13s %13s %13.3g %16.3g %8.1f" % ("all stages", "", "", tot_t, tot_s, tot_w))
n = json.load(open(f"{d}/base.eval.json"))["n"]
print("(held-out: the same %d problems of Countdown level 1, greedy; the RL model's samples: %d of %d verified correct, %.1f%%)"
      % (n, gen["accepted"], gen["samples"], 100 * gen["acceptance"]))
PY
