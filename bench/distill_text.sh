#!/bin/sh
# distill_text.sh (make bench-distill): logit distillation against training from scratch on a
# natural-language corpus (>= 5 MB, built from this machine's Debian docs and Python docstrings by
# bench/distill_corpus.py; never committed). A byte-level teacher (the demo preset) trains first;
# then the same student (demo-student) trains twice for the same number of tokens, once from
# scratch and once from the teacher's top-k cache, and both validation curves are printed.
# Environment: DIR (build/bench-distill), TEACHER_STEPS (900), STEPS (300), K (16), ALPHA (0.5),
# TEMP (1), DIV (fkl), BIN (./frugal).
set -e
BIN=${BIN:-./frugal}
DIR=${DIR:-build/bench-distill}
TEACHER_STEPS=${TEACHER_STEPS:-900}
STEPS=${STEPS:-300}
K=${K:-16}; ALPHA=${ALPHA:-0.5}; TEMP=${TEMP:-1}; DIV=${DIV:-fkl}
B=16; SEQ=128
mkdir -p "$DIR"
C="$DIR/corpus.jsonl"
[ -s "$C" ] || python3 bench/distill_corpus.py "$C"
COMMON="--batch $B --seq $SEQ --eval-every 50 --eval-batches 8 --no-progress --quiet --val-fraction 0.05"
if [ ! -s "$DIR/teacher/ckpt.fgck" ]; then
    echo "teacher: demo preset, $TEACHER_STEPS steps"
    $BIN train --config demo --steps $TEACHER_STEPS --lr 3e-3 --warmup 50 $COMMON --out "$DIR/teacher" "$C"
fi
echo "cache: the teacher's top-$K over the $((STEPS * B)) training windows the student will see"
$BIN distill cache --teacher "$DIR/teacher/ckpt.fgck" -o "$DIR/cache.fgdc" --k $K --temperature $TEMP --seq $SEQ \
    --seqs $((STEPS * B)) --val-fraction 0.05 "$C"
echo "student from scratch: demo-student, $STEPS steps"
$BIN train --config demo-student --steps $STEPS --lr 3e-3 --warmup 50 $COMMON --out "$DIR/scratch" "$C"
echo "student distilled ($DIV, T $TEMP, alpha $ALPHA, top-$K cache): demo-student, $STEPS steps"
$BIN distill --teacher "$DIR/teacher/ckpt.fgck" --student demo-student --cache "$DIR/cache.fgdc" --divergence $DIV \
    --temperature $TEMP --alpha $ALPHA --steps $STEPS --lr 3e-3 --warmup 50 $COMMON --out "$DIR/distill" "$C"
python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
def curve(run):
    return {j["step"]: j["val_loss"] for j in map(json.loads, open(f"{d}/{run}/log.jsonl")) if "val_loss" in j}
s, k, t = curve("scratch"), curve("distill"), curve("teacher")
print("\nvalidation loss (nats/token) on the same held-out documents, same student, same tokens:")
print("%6s %10s %10s %10s" % ("step", "scratch", "distilled", "delta"))
for step in sorted(s):
    if step in k:
        print("%6d %10.4f %10.4f %+10.4f" % (step, s[step], k[step], k[step] - s[step]))
last = max(s)
print("teacher final val loss %.4f (step %d)" % (t[max(t)], max(t)))
print("final: scratch %.4f, distilled %.4f: distillation %s by %.4f nats/token" %
      (s[last], k[last], "WINS" if k[last] < s[last] else "LOSES", abs(s[last] - k[last])))
PY
./frugal cost ledger "$DIR/teacher" "$DIR/scratch" "$DIR/distill" 2>/dev/null | head -16 || true
