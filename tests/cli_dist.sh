#!/bin/sh
# cli_dist.sh: training over MPI (issue 20, docs/distributed.md). Builds `make MPI=1` into
# build/mpi once (about a minute on 2 cores; build/mpi-SANITIZER under the sanitizer suites) and
# runs `mpirun -np 2` on this machine:
#   - DP=2 equals one process with --accum 2 (loss trajectory within 1e-5 relative, 50 steps);
#   - ZeRO-1 equals plain DP, and the all-reduce overlapped with the backward (--overlap) equals
#     it after the backward, checkpoints bit for bit;
#   - a DP=2 checkpoint resumes on 1 process and on 2 ranks with ZeRO-1 with the same next losses;
#   - EP=2 (routed experts split over the ranks) equals EP=1, also with MTP and accumulation; a
#     DP=2 checkpoint resumes on EP=2, an EP=2 one on 1 process; --ep-limit bounds the ranks a
#     token's experts are on (measured per token);
#   - the measured bytes per step equal frugal cost's analytic count (all-gather exactly, the
#     all-reduce within 1%: the trainer also reduces its losses, loads and touched flags), and the
#     all-to-all equals the count of the rows exchanged exactly;
#   - a rank killed mid-run ends the job within 30 s, no rank left behind; the last checkpoint
#     resumes; errors: a build without MPI under a launcher, an uneven split, other commands.
# Skips (exit 77) without Open MPI (Debian: openmpi-bin libopenmpi-dev; .ci/run installs them).
BIN=${BIN:-./frugal}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN;; esac
command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 || {
    echo "SKIP: Open MPI is not installed (apt install openmpi-bin libopenmpi-dev)"; exit 77; }
ROOT=$(pwd)
# Under the sanitizer suites (make test SANITIZE=..., which exports SANITIZE) the MPI build is
# sanitized too, in its own tree. Leak checking is off for the MPI ranks: Open MPI keeps memory
# until exit by design (the single-process runs of the same code check leaks).
MTREE=build/mpi${SANITIZE:+-$SANITIZE}
make -s -j2 MPI=1 BUILD=$MTREE $MTREE/frugal >/dev/null || { echo "FAIL: make MPI=1 BUILD=$MTREE"; exit 1; }
MBIN=$ROOT/$MTREE/frugal
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0; export ASAN_OPTIONS
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FRUGAL_CACHE_DIR=${FRUGAL_CACHE_DIR:-$T/cache}; export FRUGAL_CACHE_DIR
OMP_NUM_THREADS=1; export OMP_NUM_THREADS
# CI runs as root: Open MPI's documented switches for that, in tests only.
OMPI_ALLOW_RUN_AS_ROOT=1; OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
MPIRUN="mpirun -np 2 --oversubscribe"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
cd "$T" || exit 1
A="train --config tiny --steps 50 --batch 4 --threads 1 --no-progress --eval-every 25 --save-every 25"

# compare LOG_A LOG_B TOL [FROM]: the loss of every step >= FROM agrees within TOL relative.
compare() {
    /usr/bin/python3 - "$@" <<'EOF'
import json, sys
def steps(p):
    return {d["step"]: d for d in map(json.loads, open(p)) if "loss" in d}
a, b, tol = steps(sys.argv[1]), steps(sys.argv[2]), float(sys.argv[3])
first = int(sys.argv[4]) if len(sys.argv) > 4 else 1
keys = [s for s in a if s >= first]
if not keys or any(s not in b for s in keys): sys.exit("step sets differ: %d vs %d" % (len(a), len(b)))
worst = max(abs(a[s]["loss"] - b[s]["loss"]) / abs(a[s]["loss"]) for s in keys)
print("  %d steps, largest relative loss difference %.3g" % (len(keys), worst))
sys.exit(0 if worst <= tol else "losses differ by %.3g > %g" % (worst, tol))
EOF
}

"$BIN" $A --accum 2 --out one >one.txt 2>&1 || { fail "one process, --accum 2"; cat one.txt; }
$MPIRUN "$MBIN" $A --out dp >dp.txt 2>&1 || { fail "mpirun -np 2"; cat dp.txt; }
grep -q "distributed: 2 ranks (mpi), layout dp=2 ep=1, ZeRO-1 off, 2 micro-batches" dp.txt || { fail "layout line missing"; cat dp.txt; }
[ "$(grep -c '^step' dp.txt)" -eq 2 ] || { fail "rank 0 alone should print the validation lines"; cat dp.txt; }
echo "DP=2 vs one process with 2-step accumulation:"
compare one/log.jsonl dp/log.jsonl 1e-5 || fail "DP=2 != --accum 2"
$MPIRUN "$MBIN" $A --out ov --overlap >ov.txt 2>&1 || { fail "mpirun --overlap"; cat ov.txt; }
cmp -s dp/ckpt.fgck ov/ckpt.fgck && echo "all-reduce overlapped with the backward vs after it: checkpoints bit-identical" ||
    fail "--overlap checkpoint differs from the run that reduces after the backward"
$MPIRUN "$MBIN" $A --out zero --zero >zero.txt 2>&1 || { fail "mpirun --zero"; cat zero.txt; }
cmp -s dp/ckpt.fgck zero/ckpt.fgck && echo "ZeRO-1 vs DP: checkpoints bit-identical" || fail "ZeRO-1 checkpoint differs from plain DP's"
compare dp/log.jsonl zero/log.jsonl 0 || fail "ZeRO-1 != DP"

# Layout-independent checkpoints: DP=2 (ZeRO-1) stops at step 25; resumed on 1 process and on 2.
$MPIRUN "$MBIN" $A --out half --zero --stop-after 25 >half.txt 2>&1 || { fail "stop-after 25"; cat half.txt; }
cp -r half half1
"$BIN" train --resume half1/ckpt.fgck --threads 1 --no-progress >r1.txt 2>&1 || { fail "resume on 1 process"; cat r1.txt; }
echo "DP=2 checkpoint resumed on 1 process:"
compare dp/log.jsonl half1/log.jsonl 1e-5 26 || fail "resume on 1 process"
$MPIRUN "$MBIN" train --resume half/ckpt.fgck --threads 1 --no-progress >r2.txt 2>&1 || { fail "resume on 2 ranks"; cat r2.txt; }
cmp -s half/ckpt.fgck dp/ckpt.fgck && echo "DP=2 checkpoint resumed on 2 ranks: bit-identical to the uninterrupted run" ||
    fail "resume on 2 ranks differs from the uninterrupted run"

# Expert parallelism: the routed experts split over the 2 ranks (tokens exchanged all-to-all).
$MPIRUN "$MBIN" $A --out ep --ep 2 >ep.txt 2>&1 || { fail "mpirun --ep 2"; cat ep.txt; }
grep -q "layout dp=2 ep=2" ep.txt || { fail "EP layout line missing"; cat ep.txt; }
echo "EP=2 vs EP=1:"
compare dp/log.jsonl ep/log.jsonl 1e-5 || fail "EP=2 != EP=1"
$MPIRUN "$MBIN" $A --out halfep --stop-after 25 >he.txt 2>&1 || { fail "DP=2 stop-after 25"; cat he.txt; }
$MPIRUN "$MBIN" train --resume halfep/ckpt.fgck --ep 2 --threads 1 --no-progress >rep.txt 2>&1 || { fail "resume on EP=2"; cat rep.txt; }
echo "DP=2 checkpoint resumed on EP=2:"
compare dp/log.jsonl halfep/log.jsonl 1e-5 26 || fail "resume on EP=2"
cp -r ep ep1
"$BIN" train --resume ep1/ckpt.fgck --steps 60 --threads 1 --no-progress >rep1.txt 2>&1 || { fail "EP=2 checkpoint on 1 process"; cat rep1.txt; }
$MPIRUN "$MBIN" train --resume ep/ckpt.fgck --steps 60 --threads 1 --no-progress >rep2.txt 2>&1 || { fail "EP=2 continued"; cat rep2.txt; }
echo "EP=2 checkpoint continued on 1 process and on EP=2:"
compare ep/log.jsonl ep1/log.jsonl 1e-5 51 || fail "EP=2 checkpoint on 1 process"
# With MTP (its block is a MoE block too) and 2 micro-batches per rank: EP=2 equals one process.
M="train --config tiny --mtp 1 --steps 20 --batch 4 --threads 1 --no-progress --eval-every 20 --accum 4"
"$BIN" $M --out mtp1 >mtp1.txt 2>&1 || { fail "MTP, one process"; cat mtp1.txt; }
$MPIRUN "$MBIN" $M --out mtp2 --ep 2 >mtp2.txt 2>&1 || { fail "MTP, EP=2"; cat mtp2.txt; }
echo "MTP + MoE, --accum 4: EP=2 vs one process:"
compare mtp1/log.jsonl mtp2/log.jsonl 1e-5 || fail "MTP EP=2 != one process"

# Other data sources: token shards (each rank streams every micro-batch, runs its own) and a
# prompt/completion file (--sft), each against one process with --accum 2.
cat "$ROOT"/docs/*.md | head -c 100000 >corpus.txt
"$BIN" data prepare corpus.txt --out shards >/dev/null 2>&1 || fail "data prepare"
S="train --shards shards --config tiny --steps 12 --batch 4 --seq 64 --threads 1 --no-progress --eval-every 6"
"$BIN" $S --accum 2 --out sh1 >sh1.txt 2>&1 || { fail "shards, one process"; cat sh1.txt; }
$MPIRUN "$MBIN" $S --ep 2 --out sh2 >sh2.txt 2>&1 || { fail "shards, EP=2"; cat sh2.txt; }
echo "token shards: EP=2 vs one process:"
compare sh1/log.jsonl sh2/log.jsonl 1e-5 || fail "shards: EP=2 != one process"
/usr/bin/python3 -c '
import json, random
r = random.Random(1)
with open("sft.jsonl", "w") as f:
    for i in range(200):
        a, b = r.randint(0, 99), r.randint(0, 99)
        f.write(json.dumps({"prompt": "%d+%d=" % (a, b), "completion": str(a + b)}) + "\n")'
Q="train --sft sft.jsonl --config tiny --steps 12 --batch 4 --threads 1 --no-progress --eval-every 6"
"$BIN" $Q --accum 2 --out q1 >q1.txt 2>&1 || { fail "--sft, one process"; cat q1.txt; }
$MPIRUN "$MBIN" $Q --out q2 >q2.txt 2>&1 || { fail "--sft, 2 ranks"; cat q2.txt; }
echo "--sft: DP=2 vs one process:"
compare q1/log.jsonl q2/log.jsonl 1e-5 || fail "--sft: DP=2 != one process"

# Device-limited routing (DeepSeek-V2): demo's routing reaches both ranks; with --ep-limit 1 each
# token's experts sit on one rank (ep_max_ranks: measured over every token of the step).
D="train --config demo --steps 3 --batch 2 --threads 1 --no-progress --eval-every 0 --ep 2"
$MPIRUN "$MBIN" $D --out free >free.txt 2>&1 || { fail "demo --ep 2"; cat free.txt; }
$MPIRUN "$MBIN" $D --ep-limit 1 --out lim >lim.txt 2>&1 || { fail "demo --ep 2 --ep-limit 1"; cat lim.txt; }
grep -q "each token's experts on at most 1 of the 2 ranks" lim.txt || { fail "no device-limited routing line"; cat lim.txt; }
grep -q '"ep_max_ranks":2' free/log.jsonl || fail "demo's free routing never reached both ranks"
grep '"ep_max_ranks"' lim/log.jsonl | grep -vq '"ep_max_ranks":1' && fail "--ep-limit 1: a token reached 2 ranks"

# Bytes per step: measured (rank 0's comm_bytes) against the cost model.
"$BIN" cost tiny --devices 2 --link ib-400g --precision fp32 --batch 4 --seq 70 --zero --json >cost.json || fail "frugal cost --link"
/usr/bin/python3 - <<'EOF' || fail "measured bytes differ from the analytic count"
import json, sys
cost = json.load(open("cost.json"))["communication"]["bytes_per_step"]
logs = [json.loads(l) for l in open("zero/log.jsonl") if '"comm_bytes"' in l]
ok = True
for kind, tol in (("allreduce", 0.01), ("allgather", 0), ("alltoall", 0)):
    got = {d["comm_bytes"][kind] for d in logs}
    if len(got) != 1: print("  %s varies between steps: %s" % (kind, sorted(got))); ok = False; continue
    m, a = got.pop(), cost[kind]
    rel = abs(m - a) / a if a else abs(m)
    print("  %-9s measured %d, analytic %.0f, relative difference %.2g" % (kind, m, a, rel))
    ok &= rel <= tol
sys.exit(0 if ok else 1)
EOF

# All-to-all: exactly 2 crossings (forward and backward) x 2 directions of C fp32 values per row
# this rank exchanged (ep_rows: sent + received), plus the counts (E/ep ints per MoE block per
# micro-batch to the other rank). tiny: C 32, E 8; MTP adds a MoE block.
/usr/bin/python3 - <<'EOF' || fail "all-to-all bytes differ from the count of rows exchanged"
import json, sys
ok = True
for d, blocks_x_mb in (("ep", 1), ("mtp2", 2 * 2)):
    for l in open(d + "/log.jsonl"):
        s = json.loads(l)
        if "ep_rows" not in s: continue
        want = 2 * 4 * 32 * s["ep_rows"] + blocks_x_mb * 4 * 4
        if s["comm_bytes"]["alltoall"] != want:
            print("  %s step %d: all-to-all %d bytes, rows say %d" % (d, s["step"], s["comm_bytes"]["alltoall"], want)); ok = False
print("  all-to-all bytes = 8 C ep_rows + counts on every step" if ok else "")
# The ledger: rank 0's bytes over the run (50 steps) and the cost model's count per step.
led = json.load(open("zero/ledger.json"))["communication"]
cost = json.load(open("cost.json"))["communication"]["bytes_per_step"]
if led["ranks"] != 2 or led["zero"] != 1 or led["bytes"]["allgather"] != 50 * cost["allgather"]:
    print("  ledger: %s" % led); ok = False
if any(led["analytic_per_step"][k] != cost[k] for k in ("allreduce", "allgather", "alltoall")):
    print("  ledger's analytic count %s differs from frugal cost's %s" % (led["analytic_per_step"], cost)); ok = False
sys.exit(0 if ok else 1)
EOF

# Faults: kill -9 one rank mid-run; mpirun must end the job within 30 s.
$MPIRUN "$MBIN" train --config tiny --steps 1000000 --batch 4 --threads 1 --no-progress --eval-every 0 --save-every 100 \
    --out kill >kill.txt 2>&1 &
MP=$!
i=0
while [ ! -f kill/ckpt.fgck ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
victim=$(pgrep -f "$MTREE/frugal train --config tiny --steps 1000000" | tail -n 1)
if [ -z "$victim" ]; then fail "no rank to kill"; else
    kill -9 "$victim"
    i=0
    while kill -0 $MP 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
    if kill -0 $MP 2>/dev/null; then fail "the job still runs 30 s after a rank was killed"; kill -9 $MP; fi
    wait $MP 2>/dev/null
    echo "a rank killed: the job ended after $((i / 10)).$((i % 10)) s"
    pgrep -f "$MTREE/frugal train --config tiny --steps 1000000" >/dev/null && fail "a rank outlived the job"
    grep -q "exited on signal 9" kill.txt || { fail "mpirun did not say which rank died"; cat kill.txt; }
    "$BIN" train --resume kill/ckpt.fgck --stop-after 2 --threads 1 --no-progress >kr.txt 2>&1 ||
        { fail "the last checkpoint does not resume"; cat kr.txt; }
fi

# SIGINT to mpirun (it passes SIGTERM to the ranks): every rank stops after the same step, one
# checkpoint at that step, one message; the run continues from it.
$MPIRUN "$MBIN" train --config tiny --steps 1000000 --batch 4 --threads 1 --no-progress --eval-every 0 --save-every 1000000 \
    --out int >int.txt 2>&1 &
MP=$!
i=0
while [ "$(cat int/log.jsonl 2>/dev/null | wc -l)" -lt 20 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
kill -INT $MP
wait $MP && fail "an interrupted run exited 0"
n=$(grep -c "interrupted by SIGTERM at step" int.txt)
[ "$n" -eq 1 ] || { fail "expected one interruption message, got $n"; cat int.txt; }
step=$(sed -n 's/.*interrupted by SIGTERM at step \([0-9]*\) .*/\1/p' int.txt)
last=$(tail -n 1 int/log.jsonl | sed 's/{"step":\([0-9]*\),.*/\1/')
[ -n "$step" ] && [ "$step" = "$last" ] || fail "checkpoint step '$step' and the log's last step '$last' differ"
"$BIN" train --resume int/ckpt.fgck --stop-after 2 --threads 1 --no-progress >ir.txt 2>&1 || { fail "the interrupted run does not resume"; cat ir.txt; }

# Errors: one line, non-zero exit.
OMPI_COMM_WORLD_SIZE=2 "$BIN" train --config tiny --steps 1 --out nompi >nompi.txt 2>&1 && fail "a build without MPI ran as 1 of 2 ranks"
grep -q "built without MPI.*make MPI=1" nompi.txt || { fail "no hint for a build without MPI"; cat nompi.txt; }
$MPIRUN "$MBIN" $A --accum 3 --out odd >odd.txt 2>&1 && fail "--accum 3 over 2 ranks ran"
grep -q "3 micro-batches per step, which 2 ranks cannot split" odd.txt || { fail "no message for an uneven split"; cat odd.txt; }
$MPIRUN "$MBIN" $A --ep 2 --zero --out epz >epz.txt 2>&1 && fail "--ep 2 --zero ran"
grep -q "ZeRO-1 with expert parallelism is not built yet" epz.txt || { fail "no message for --ep with --zero"; cat epz.txt; }
$MPIRUN "$MBIN" $A --ep 3 --out ep3 >ep3.txt 2>&1 && fail "--ep 3 over 2 ranks ran"
grep -q "ep 3 does not divide the 2 ranks" ep3.txt || { fail "no message for --ep 3 over 2 ranks"; cat ep3.txt; }
$MPIRUN "$MBIN" cost tiny >cost2.txt 2>&1 && fail "frugal cost ran across ranks"
grep -q "runs on one process, not across 2 ranks" cost2.txt || { fail "no message for a command that does not run over MPI"; cat cost2.txt; }

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "distributed: all checks passed"
