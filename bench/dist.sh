#!/bin/sh
# bench/dist.sh (make bench-dist): the overhead of the MPI layer itself. On one machine the cores
# are the same either way, so 2 ranks x 1 thread against 1 rank x 2 threads on bench-moe, the same
# step (4 micro-batches of 2 x 512 tokens, 4096 tokens), measures what data parallelism costs:
# the gradient all-reduce (~240 MB per step) and the split of the work. Alternates the two, best
# median step time of ROUNDS rounds each; then the same with the all-reduce overlapped with the
# backward (--overlap), with EP=2 and with ZeRO-1. comm_s: the seconds the step waited on
# the all-reduce / all-gather after its backward.
# Issue 20's bar: 2 x 1 at least 0.9x the tokens/s of 1 x 2.
set -e
ROUNDS=${ROUNDS:-2}; STEPS=${STEPS:-6}
make -s MPI=1 BUILD=build/mpi build/mpi/frugal >/dev/null
make -s frugal >/dev/null
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
FRUGAL_CACHE_DIR=${FRUGAL_CACHE_DIR:-$T/cache}; export FRUGAL_CACHE_DIR
A="train --config bench-moe --batch 2 --seq 512 --accum 4 --steps $STEPS --lr 1e-4 --warmup 1 --eval-every 0 --save-every 0 --no-progress --quiet"
# median tok/s of the steps after the first two (warm-up), and the median communication seconds
med() {
    /usr/bin/python3 -c '
import json, statistics as S, sys
x = [json.loads(l) for l in open(sys.argv[1]) if "tok_per_s" in l][2:]
c = [s["comm_s"] for s in x if "comm_s" in s]
print("%.1f %.3f" % (S.median(s["tok_per_s"] for s in x), S.median(c) if c else 0))' "$1"
}
best() { sort -n -r | head -n 1; }
for r in $(seq "$ROUNDS"); do
    rm -rf "$T"/run*
    ./frugal $A --threads 2 --out "$T/run1" >/dev/null && med "$T/run1/log.jsonl" >>"$T/one"
    mpirun -np 2 --bind-to core build/mpi/frugal $A --threads 1 --out "$T/run2" >/dev/null && med "$T/run2/log.jsonl" >>"$T/dp"
    mpirun -np 2 --bind-to core build/mpi/frugal $A --threads 1 --overlap --out "$T/run5" >/dev/null && med "$T/run5/log.jsonl" >>"$T/noov"
    mpirun -np 2 --bind-to core build/mpi/frugal $A --threads 1 --ep 2 --out "$T/run3" >/dev/null && med "$T/run3/log.jsonl" >>"$T/ep"
    mpirun -np 2 --bind-to core build/mpi/frugal $A --threads 1 --zero --out "$T/run4" >/dev/null && med "$T/run4/log.jsonl" >>"$T/zero"
done
one=$(cut -d' ' -f1 "$T/one" | best)
echo "bench-moe, 4096 tokens per step (4 micro-batches of 2 x 512), best of $ROUNDS rounds, median step:"
printf "  %-40s %8.1f tok/s\n" "1 rank x 2 threads" "$one"
for k in dp noov ep zero; do
    line=$(sort -n -r "$T/$k" | head -n 1)
    tps=${line% *}; cs=${line#* }
    name="2 ranks x 1 thread"; [ $k = ep ] && name="$name, EP=2"; [ $k = zero ] && name="$name, ZeRO-1"
    [ $k = noov ] && name="$name, --overlap"
    printf "  %-40s %8.1f tok/s  %.3fx  (all-reduce/all-gather %.3f s per step)\n" "$name" "$tps" \
        "$(echo "$tps / $one" | bc -l)" "$cs"
done
