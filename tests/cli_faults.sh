#!/bin/sh
# cli_faults.sh: runs that survive their users (issue 14). Every case is a fault a user causes:
# outputs aimed at devices, FIFOs and folders; a full disk; resuming with and without the options;
# two runs on one folder; SIGINT/SIGTERM at random steps (20 trials, each resumed and compared bit
# for bit with an uninterrupted run); kill -9 and failed saves against the log; out-of-range
# numbers; stdout on a full device; long, NUL-carrying and /help chat lines; error messages that
# must name the key fact; a measured peak poisoned by load. Tiny model, one thread: well under 2
# minutes. Exit 0 pass, 1 fail.
BIN=${BIN:-./frugal}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN;; esac
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# peaks for the ledger: a scratch cache, measured once here (never the user's ~/.cache)
FRUGAL_CACHE_DIR=${FRUGAL_CACHE_DIR:-$T/cache}; export FRUGAL_CACHE_DIR
# One thread everywhere (resumes and inference included): on a loaded machine OpenMP threads
# waiting at barriers can make a tiny model's steps 100x slower.
OMP_NUM_THREADS=1; export OMP_NUM_THREADS
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
# expect_fail "description" "substring expected in stderr" command...: non-zero exit below 128,
# one line of error containing the substring.
expect_fail() {
    desc=$1; want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err" </dev/null; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then fail "$desc: exit $rc"; cat "$T/err"; return; fi
    if ! grep -qF -- "$want" "$T/err"; then fail "$desc: stderr lacks '$want':"; cat "$T/err"; return; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] || { fail "$desc: more than one line of error:"; cat "$T/err"; }
}
# strips the per-step timing from a log, leaving what must be bit-identical between runs
log_core() { sed 's/"tok_per_s":[0-9.e+-]*,//' "$1"; }
# lines of file $1 matching $2 (0 when the file is absent)
count() { n=$(grep -c -- "$2" "$1" 2>/dev/null); echo "${n:-0}"; }

start=$(date +%s)
section() { echo "-- $1 (at $(( $(date +%s) - start )) s)"; }
cd "$T" || exit 1
printf 'The quick brown fox jumps over the lazy dog. %.0s' $(seq 1 300) >text.txt
printf 'Pack my box with five dozen liquor jugs. %.0s' $(seq 1 300) >other.txt
TR="--config tiny --batch 4 --seq 32 --eval-every 10 --threads 1 --no-progress --quiet"
$BIN train $TR --steps 20 --out base text.txt >/dev/null 2>err || { fail "cannot train a tiny model:"; cat err; exit 1; }
CK=base/ckpt.fgck

# ---- 1. outputs write only regular files; temp files go on failure ----------------------------------
section "1. outputs write only regular files; temp files go on failure"
mkfifo fifo
mkdir folder
targets="fifo folder"
if [ "$(id -u)" -eq 0 ] && mknod dev c 1 3 2>/dev/null; then targets="$targets dev"   # a scratch /dev/null
else echo "note: not root (or mknod refused): device targets skipped, FIFO and folder targets cover the check"; fi
for t in $targets; do
    expect_fail "quantize -o $t" "exists and is" $BIN quantize $CK -o $t --type q8_0
    expect_fail "convert -o $t" "exists and is" $BIN convert $CK -o $t
    expect_fail "export --gguf $t" "exists and is" $BIN export --gguf $t $CK
    expect_fail "tokenizer train -o $t" "exists and is" $BIN tokenizer train -o $t --vocab-size 300 text.txt
    expect_fail "data refine -o $t" "exists and is" $BIN data refine -o $t text.txt
done
[ -p fifo ] && [ -d folder ] || fail "an output target was replaced"
if [ -e dev ] && [ ! -c dev ]; then fail "the scratch device became a regular file"; fi
mkdir devrun
[ -e dev ] && { mknod devrun/ckpt.fgck c 1 3 2>/dev/null &&
    expect_fail "train into a folder whose ckpt.fgck is a device" "character device" $BIN train $TR --steps 2 --out devrun text.txt; }
# a full disk (a 20 KiB file size limit; SIGXFSZ ignored so the write fails with EFBIG)
for c in "quantize $CK -o full.fgq" "convert $CK -o full.fgck" "export --gguf full.gguf $CK" "export --hf fullhf $CK"; do
    (ulimit -f 20; trap '' XFSZ; $BIN $c >/dev/null 2>err) && fail "$c succeeded under a 20 KiB file limit"
done
leftover=$(ls -d full* 2>/dev/null)
[ -z "$leftover" ] || fail "failed writes left: $leftover"

# ---- 2. --resume restores the run -------------------------------------------------------------------
section "2. --resume restores the run"
$BIN train $TR --steps 40 --out ref40 text.txt >/dev/null 2>err || { fail "reference run:"; cat err; }
$BIN train $TR --steps 40 --stop-after 20 --out half text.txt >/dev/null 2>err || { fail "half run:"; cat err; }
mkdir elsewhere && cp -r half elsewhere/half
(cd elsewhere && $BIN train --resume half/ckpt.fgck >out 2>err) || { fail "resume without options:"; cat elsewhere/err; }
cmp -s ref40/ckpt.fgck elsewhere/half/ckpt.fgck || fail "resume without options is not bit-exact (data, options or folder not restored)"
[ "$(log_core ref40/log.jsonl)" = "$(log_core elsewhere/half/log.jsonl)" ] || fail "the resumed log differs from the uninterrupted one"
grep -q "out: half" elsewhere/out || fail "resume did not name the run's folder: $(cat elsewhere/out)"
# the README's example, literally: a 20-step run continued to 40 steps by --resume and --steps
cp -r base readme
$BIN train --resume readme/ckpt.fgck --steps 40 >out 2>err || { fail "README resume:"; cat err; }
grep -q "resume: --steps 20 -> 40" out || fail "the change of --steps was not printed: $(cat out)"
grep -q "data: files" out || fail "README resume did not train on the run's files: $(cat out)"
[ "$(grep -c '"loss"' readme/log.jsonl)" -eq 40 ] || fail "README resume: the run's log does not hold 40 steps"
[ ! -e runs/default ] || fail "README resume wrote to runs/default"
tail -n 1 readme/log.jsonl | grep -q '"step":40' || fail "README resume did not reach step 40"
grep '"step":40,"loss"' readme/log.jsonl | grep -q '"tokens":5120,' || fail "README resume changed the batch (want 40 x 4 x 32 tokens)"
expect_fail "resume with another --batch" "--batch 8 differs from the run's 4" $BIN train --resume $CK --steps 30 --batch 8
expect_fail "resume with another --lr" "--lr 0.5 differs" $BIN train --resume $CK --steps 30 --lr 0.5
expect_fail "resume with other data" "data files given differ" $BIN train --resume $CK --steps 30 other.txt
expect_fail "resume with another schedule" "--schedule wsd differs" $BIN train --resume $CK --steps 30 --schedule wsd

# ---- 3. a lock on the run folder --------------------------------------------------------------------
section "3. a lock on the run folder"
$BIN train $TR --steps 100000 --out locked text.txt >/dev/null 2>locked.err &
pid=$!
i=0; while [ ! -s locked/log.jsonl ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done
expect_fail "second run on a locked folder" "in use by another frugal run (PID $pid)" $BIN train $TR --steps 5 --out locked text.txt
expect_fail "resume into a locked folder" "PID $pid" $BIN train --resume $CK --steps 30 --out locked
kill -TERM $pid; wait $pid; rc=$?
[ $rc -eq 143 ] || { fail "SIGTERM: exit $rc, want 143"; cat locked.err; }
grep -q "interrupted by SIGTERM at step" locked.err || fail "SIGTERM: no saved-checkpoint message: $(cat locked.err)"
$BIN train --resume locked/ckpt.fgck --stop-after 1 >/dev/null 2>err || { fail "the lock outlived its run:"; cat err; }

# ---- 4. SIGINT/SIGTERM at random steps, 20 trials, resumed bit for bit ------------------------------
section "4. SIGINT/SIGTERM at random steps, 20 trials, resumed bit for bit"
N=300
$BIN train $TR --steps $N --out sigref text.txt >/dev/null 2>err || { fail "signal reference run:"; cat err; }
ok=0; trials=20; seed=$$
for k in $(seq 1 $trials); do
    seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
    at=$(( 1 + seed % (N - 20) ))
    if [ $((k % 2)) -eq 0 ]; then sig=INT; want=130; else sig=TERM; want=143; fi
    rm -rf sig
    $BIN train $TR --steps $N --out sig text.txt >/dev/null 2>sig.err &
    pid=$!
    while [ "$(count sig/log.jsonl .)" -lt $at ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
    kill -$sig $pid 2>/dev/null; wait $pid; rc=$?
    if [ $rc -ne $want ]; then fail "trial $k ($sig near step $at): exit $rc, want $want"; cat sig.err; continue; fi
    $BIN train --resume sig/ckpt.fgck >/dev/null 2>err || { fail "trial $k: resume failed:"; cat err; continue; }
    if ! cmp -s sigref/ckpt.fgck sig/ckpt.fgck; then fail "trial $k ($sig near step $at): resumed checkpoint differs"; continue; fi
    if [ "$(log_core sigref/log.jsonl)" != "$(log_core sig/log.jsonl)" ]; then fail "trial $k: resumed log differs"; continue; fi
    ok=$((ok+1))
done
echo "signals: $ok of $trials trials resumed bit-exactly"
# a second signal stops at once: a demo-sized step takes far longer than the 0.1 s between them
rm -rf sig2
$BIN train --config demo --batch 64 --threads 1 --steps 100 --no-progress --quiet --out sig2 >/dev/null 2>sig2.err &
pid=$!
i=0; while [ ! -e sig2/log.jsonl ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done
kill -INT $pid; sleep 0.1; kill -INT $pid 2>/dev/null; wait $pid; rc=$?
[ $rc -eq 130 ] || fail "two SIGINTs: exit $rc, want 130"
grep -q "interrupted by SIGINT" sig2.err && fail "two SIGINTs: the second did not stop at once (the step finished and saved)"

# ---- 5. the log follows the checkpoint --------------------------------------------------------------
section "5. the log follows the checkpoint"
# kill -9 after a save: the steps after it are trained again, each logged once
rm -rf k9
$BIN train $TR --steps 60 --save-every 10 --out k9 text.txt >/dev/null 2>&1 &
pid=$!
while [ "$(count k9/log.jsonl '"loss"')" -lt 25 ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
kill -KILL $pid; wait $pid 2>/dev/null
$BIN train --resume k9/ckpt.fgck >/dev/null 2>err || { fail "resume after kill -9:"; cat err; }
[ "$(grep -o '"step":[0-9]*,"loss"' k9/log.jsonl | uniq -d)" = "" ] || fail "kill -9 + resume: steps appear twice in the log"
[ "$(grep -c '"loss"' k9/log.jsonl)" -eq 60 ] || fail "kill -9 + resume: the log does not hold steps 1..60 once each"
# a failed save (file size limit): the log keeps no step beyond the checkpoint once resumed
rm -rf fs; $BIN train $TR --steps 60 --save-every 10 --stop-after 10 --out fs text.txt >/dev/null 2>&1
(ulimit -f 100; trap '' XFSZ; $BIN train --resume fs/ckpt.fgck --save-every 5 >/dev/null 2>err) && fail "a save under a 100 KiB limit succeeded"
$BIN train --resume fs/ckpt.fgck --save-every 10 >/dev/null 2>err || { fail "resume after a failed save:"; cat err; }
[ "$(log_core fs/log.jsonl)" = "$(log_core k9/log.jsonl)" ] || fail "after a failed save and a resume the log differs from an uninterrupted run's"
cmp -s fs/ckpt.fgck k9/ckpt.fgck || fail "after a failed save and a resume the checkpoint differs from an uninterrupted run's"

# ---- 6. every number range-checked, the error naming value and limit --------------------------------
section "6. every number range-checked, the error naming value and limit"
expect_fail "--threads 10000" "--threads 10000 is out of range" $BIN train --threads 10000
expect_fail "--threads -3" "--threads -3 is out of range" $BIN train --threads -3
expect_fail "--lr -1" "--lr -1 is out of range: must be > 0" $BIN train --lr -1
expect_fail "--lr 0" "--lr 0 is out of range" $BIN train --lr 0
expect_fail "--batch 0" "--batch 0 is out of range: must be >= 1" $BIN train --batch 0
expect_fail "--val-fraction 0.9" "must be in [0, 0.5]" $BIN train --val-fraction 0.9
expect_fail "generate --top-p 1.5" "--top-p 1.5 is out of range: must be in (0, 1]" $BIN generate --ckpt $CK --top-p 1.5
expect_fail "chat --threads 99999" "--threads 99999" $BIN chat --ckpt $CK --threads 99999
expect_fail "bench --decode-tokens 0" "--decode-tokens 0 is out of range" $BIN bench --decode-tokens 0
expect_fail "cost ledger --mfu 2" "--mfu 2 is out of range" $BIN cost ledger base --mfu 2

# ---- 7. stdout write errors are errors --------------------------------------------------------------
section "7. stdout write errors are errors"
if [ -w /dev/full ]; then
    for c in "cost deepseek-v3 --json" "config --config tiny" "generate --ckpt $CK --prompt The --max-tokens 4" "version"; do
        $BIN $c >/dev/full 2>err && fail "$c > /dev/full exited 0"
        grep -q "cannot write to standard output" err || fail "$c > /dev/full: no error: $(cat err)"
    done
else echo "note: no writable /dev/full: stdout write errors not checked"; fi

# ---- 8. chat input ----------------------------------------------------------------------------------
section "8. chat input"
{ printf '/help\n'; printf 'y%.0s' $(seq 1 9000); printf '\nab\000cd\n/exit\n'; } >chat.in
$BIN chat --ckpt $CK --max-tokens 4 --temperature 0 <chat.in >chat.out 2>err || { fail "chat:"; cat err; }
grep -q "^commands: /reset" chat.out || fail "chat: /help did not list the commands"
[ "$(grep -c 'message not sent: it is [0-9]* tokens, the context holds 128' chat.out)" -eq 1 ] || fail "chat: a 9000-byte line was not refused exactly once with its counts"
grep -q "context full" chat.out && fail "chat: a too-long message got the /reset notice"
grep -q "NUL byte at offset 2" chat.out || fail "chat: the NUL byte was not reported"
[ "$(grep -c 'reply cut' chat.out)" -eq 0 ] || fail "chat: something was sent to the model: $(cat chat.out)"

# ---- 9. messages name the key fact ------------------------------------------------------------------
section "9. messages name the key fact"
long=$(printf 'x%.0s' $(seq 1 300))
expect_fail "prompt beyond the context" "the prompt is 301 tokens, longer than the model's context of 128" $BIN generate --ckpt $CK --prompt "$long"
expect_fail "bench --decode beyond the context" "--decode 100 needs 100 + 32" $BIN bench --ckpt $CK --prefill 16 --decode 0,100
expect_fail "bad temperature names itself" "--temperature -1" $BIN generate --ckpt $CK --temperature -1
expect_fail "a folder as a data file" "is a directory" $BIN train $TR --steps 2 --out dirdata folder
$BIN export --gguf ok.gguf $CK >/dev/null 2>&1 && cp ok.gguf bad.gguf && printf 'XXXX' | dd of=bad.gguf conv=notrunc 2>/dev/null
expect_fail "a .gguf with a broken magic" "not a GGUF file (bad magic" $BIN generate --ckpt bad.gguf --prompt hi

# ---- 10. a peak measured under load -----------------------------------------------------------------
section "10. a peak measured under load"
mkdir pk
FRUGAL_CACHE_DIR=$T/pk $BIN cost peaks --threads 1 >/dev/null 2>&1
sed 's/"fp32_gflops": [0-9.e+]*/"fp32_gflops": 0.001/' pk/peaks.json >pk/p && mv pk/p pk/peaks.json
grep -q '"fp32_gflops": 0.001' pk/peaks.json || fail "could not plant a poisoned peak"
FRUGAL_CACHE_DIR=$T/pk $BIN train $TR --steps 10 --out pkrun text.txt >/dev/null 2>err || { fail "train with a poisoned peak:"; cat err; }
mfu=$(grep -o '"mfu": [0-9.e+-]*' pkrun/ledger.json | head -1 | sed 's/.*: //')
awk -v m="$mfu" 'BEGIN { exit !(m > 0 && m <= 1) }' || fail "a poisoned peak gave MFU $mfu (want in (0, 1])"
grep -q '"fp32_gflops": 0.001' pk/peaks.json && fail "the poisoned peak stayed in the cache after a run beat it"
grep -q '"measured_at": [1-9]' pk/peaks.json && grep -q '"cpu_share"' pk/peaks.json && grep -q '"load1"' pk/peaks.json ||
    fail "the peak cache does not record when and under what load: $(cat pk/peaks.json)"
# an old ledger recording 161.7%: never printed
sed 's/"mfu": [0-9.e+-]*, "fp32_peak_gflops"/"mfu": 1.617, "fp32_peak_gflops"/' pkrun/ledger.json >l && mv l pkrun/ledger.json
grep -q '"mfu": 1.617' pkrun/ledger.json || fail "could not plant an MFU of 161.7%"
$BIN cost ledger pkrun >out 2>err || { fail "cost ledger:"; cat err; }
grep -q "161.7" out && fail "an MFU above 100% was printed"
grep "MFU (vs fp32 peak)" out | grep -q unknown || fail "cost ledger: MFU above 100% not shown as unknown"

# ---- 11. smaller ------------------------------------------------------------------------------------
section "11. smaller"
$BIN bench --config tiny --prefill 16 --decode 0,16 --decode-tokens 4 --threads 1 --json >bench.json 2>err || { fail "bench --json:"; cat err; }
[ "$(tail -c 1 bench.json | od -An -c | tr -d ' ')" = '\n' ] || fail "bench --json lacks a final newline"
$BIN generate --ckpt $CK --prompt 'The "fox"' --max-tokens 5 --temperature 0 --json >gen.json 2>err || { fail "generate --json:"; cat err; }
grep -q '^{"prompt": "The \\"fox\\"", "text": ".*", "prompt_tokens": 10, "tokens": [0-9]*, "stop": "[a-z_]*", "seed": 1}$' gen.json ||
    fail "generate --json: $(cat gen.json)"
if command -v python3 >/dev/null 2>&1; then python3 -c 'import json,sys; json.load(open(sys.argv[1]))' gen.json || fail "generate --json is not JSON"; fi
printf 'The quick' >prompt.txt
a=$($BIN generate --ckpt $CK --prompt 'The quick' --max-tokens 6 --temperature 0 2>&1)
b=$($BIN generate --ckpt $CK --prompt-file prompt.txt --max-tokens 6 --temperature 0 2>&1)
c=$($BIN generate --ckpt $CK --prompt-file - --max-tokens 6 --temperature 0 <prompt.txt 2>&1)
[ "$a" = "$b" ] && [ "$a" = "$c" ] || fail "--prompt, --prompt-file and stdin disagree: '$a' '$b' '$c'"
expect_fail "--prompt-file with a NUL" "NUL byte at offset 2" sh -c "printf 'ab\\000c' | $BIN generate --ckpt $CK --prompt-file -"
[ "$($BIN version)" = "$($BIN --version)" ] && $BIN version | grep -q '^frugal [0-9]' || fail "frugal version"
(ulimit -f 20; trap '' XFSZ; $BIN export --hf hfout $CK >/dev/null 2>&1) && fail "export --hf under a 20 KiB limit succeeded"
[ ! -e hfout ] || fail "a failed export --hf left the folder $(ls hfout)"
$BIN help export | grep -q "q4_0" || fail "help export does not list q4_0"
$BIN help train | grep -q "demo-student" || fail "help train does not list demo-student"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "cli_faults: all cases passed"
