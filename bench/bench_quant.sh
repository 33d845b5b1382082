#!/bin/sh
# bench_quant.sh (make bench-quant): writes docs/quant.md, frugal against llama.cpp on the same GGUF
# files in every weight type, measured side by side in one run (about 15 minutes on 2 cores; not
# part of `make test`). Needs the llama.cpp that tests/llama_cpp.sh builds into .cache/ (built here
# when missing, 5-10 minutes more).
#  - Speed: bench-moe's shape (random weights after one training step; context 1024 so that a
#    512-token prompt and the decode after it fit) exported by frugal in F32, BF16 and Q8_0 and
#    quantised by llama.cpp (llama_model_quantize through tests/llama_logits.c) to Q4_K_M and Q6_K.
#    For each file and 1 and 2 threads: prefill tokens/s of a 512-token prompt and decode tokens/s
#    of 32 steps after it (context 512 .. 544 in both engines) by `frugal bench` and by the
#    harness's bench mode (llama.cpp's default context: F16 cache), the two engines alternated,
#    best of REPS.
#  - Quality: an MLA + MoE and a dense model (row lengths multiples of 256, so that the K-quants
#    apply) trained briefly on this repository's docs, docs/serve.md and docs/task.md held out,
#    exported by frugal and quantised by llama.cpp into each type; `frugal eval --text` gives the
#    perplexity on the held-out text and, against the f32 file, the top-1 agreement and mean KL of
#    the next-token predictions. Bits per weight are llama.cpp's own (its loader's "file size" line).
# Environment: DIR (build/bench-quant), OUT (docs/quant.md), BIN (./frugal), REPS (3),
# THREADS ("1 2"), STEPS (300, training steps of each quality model), DEMO_STEPS (0: the demo's
# own count) and DEMO_N (500): the demo model's training steps and held-out problems, TRAIN_THREADS (0: all cores;
# 1 on a machine other jobs share, where OpenMP's waiting threads spin against them).
set -e
BIN=${BIN:-./frugal}
DIR=${DIR:-build/bench-quant}
OUT=${OUT:-docs/quant.md}
REPS=${REPS:-3}
THREADS=${THREADS:-"1 2"}
STEPS=${STEPS:-300}
DEMO_STEPS=${DEMO_STEPS:-0}
DEMO_N=${DEMO_N:-500}
TRAIN_THREADS=${TRAIN_THREADS:-0}
S=$DIR/speed
Q=$DIR/quality
t_start=$(date +%s)

die() { echo "bench-quant: $*" >&2; exit 1; }
say() { echo "bench-quant: $* ($(( $(date +%s) - t_start )) s)"; }
# num KEY TEXT: the number after `"KEY": ` (JSON) or ` KEY=` (the harness) in TEXT; KEY occurs once.
num() { printf ' %s\n' "$2" | sed -n "s/.*[\" ]$1\"*[:=] *\([-0-9.e+]*\).*/\1/p" | head -n 1; }
bytes() { wc -c <"$1" | tr -d ' '; }

[ -x "$BIN" ] || die "$BIN not found; hint: make"
mkdir -p "$S" "$Q"
out=$(sh tests/llama_cpp.sh 2>"$DIR/llama_cpp.log") || die "llama.cpp is needed: $(echo "$out" | head -n 1) (log: $DIR/llama_cpp.log)"
H=$(echo "$out" | tail -n 1)
[ -x "$H" ] || die "tests/llama_cpp.sh gave no harness binary (log: $DIR/llama_cpp.log)"
# bpw FILE: llama.cpp's bits per weight of a GGUF file (all tensors' bytes over their elements).
bpw() {
    LLAMA_LOGITS_VERBOSE=1 "$H" bench "$1" 1 2 2 2>&1 | sed -n 's/.*file size *= .*(\([0-9.]*\) BPW).*/\1/p' | head -n 1
}

# ---- speed -------------------------------------------------------------------------------------
SPEED_TYPES="f32 bf16 q8_0 q6_k q4_k_m"
say "speed: bench-moe (context 1024), one training step, exports"
"$BIN" config --config bench-moe | sed '/^[a-z]/d; s/"max_position_embeddings": [0-9]*/"max_position_embeddings": 1024/' >"$S/bench-moe.json"
grep -q '"max_position_embeddings": 1024' "$S/bench-moe.json" || die "could not write $S/bench-moe.json from frugal config"
rm -rf "$S/ckpt"
"$BIN" train --config "$S/bench-moe.json" --steps 1 --batch 1 --seq 70 --eval-every 0 --no-progress --quiet \
    --out "$S/ckpt" >"$S/train.log" 2>&1 || die "training bench-moe failed (see $S/train.log)"
for t in f32 bf16 q8_0; do
    "$BIN" export --gguf "$S/$t.gguf" --type $t "$S/ckpt/ckpt.fgck" >/dev/null
done
rm -rf "$S/ckpt" # 0.7 GB with its optimizer state
# The machine's peaks (fp32 / bf16 GFLOP/s, read bandwidth) measured afresh for the sanity table,
# not taken from frugal's cache, which may come from a busier moment.
for n in $THREADS; do "$BIN" cost peaks --remeasure --threads "$n" >/dev/null || die "frugal cost peaks failed"; done
for t in q6_k q4_k_m; do "$H" quantize "$S/f32.gguf" "$S/$t.gguf" $t || die "llama.cpp could not quantize $S/f32.gguf to $t"; done

# frugal runs every GGUF file from its mapping, tensors as stored (Q8_0 and the K-quants with int8
# activations); bench's JSON says the type of its largest matrix ("weights").
run_frugal() { # TYPE THREADS
    j=$("$BIN" bench --ckpt "$S/$1.gguf" --threads $2 --prefill 512 --decode 512 --decode-tokens 32 --json) ||
        die "frugal bench failed on $S/$1.gguf"
    echo "$j" >"$S/frugal-$1-$2.json"
    p=$(echo "$j" | sed -n 's/.*"prefill": \[{"prompt": 512, "tok_per_s": \([0-9.]*\).*/\1/p')
    d=$(echo "$j" | sed -n 's/.*"decode": \[{"context": 512, "tok_per_s": \([0-9.]*\).*/\1/p')
    [ -n "$p" ] && [ -n "$d" ] || die "cannot read frugal bench's JSON: $S/frugal-$1-$2.json"
    echo "frugal $1 $2 $p $d" >>"$S/runs.txt"
}
run_llama() { # TYPE THREADS
    r=$("$H" bench "$S/$1.gguf" $2 512 33) || die "llama.cpp bench failed on $S/$1.gguf"
    p=$(num prefill_tok_s "$r"); d=$(num decode_tok_s "$r")
    [ -n "$p" ] && [ -n "$d" ] || die "cannot read the harness's bench line: $r"
    echo "llama $1 $2 $p $d" >>"$S/runs.txt"
}
: >"$S/runs.txt"
rep=1
while [ $rep -le "$REPS" ]; do
    say "speed: round $rep of $REPS"
    for t in $SPEED_TYPES; do
        for n in $THREADS; do
            if [ $((rep % 2)) = 1 ]; then run_frugal $t $n; run_llama $t $n; else run_llama $t $n; run_frugal $t $n; fi
        done
    done
    rep=$((rep + 1))
done
# best ENGINE TYPE THREADS FIELD (4 prefill, 5 decode)
best() { awk -v e=$1 -v t=$2 -v n=$3 -v f=$4 '$1 == e && $2 == t && $3 == n && $f > m { m = $f } END { printf "%.1f", m }' "$S/runs.txt"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
mb() { awk -v b=$1 'BEGIN { printf "%.1f", b / 1e6 }'; }

# ---- quality -----------------------------------------------------------------------------------
cat >"$Q/moe.json" <<'EOF'
{
  "model_type": "deepseek_v3", "attention_type": "mla", "vocab_size": 264,
  "hidden_size": 256, "num_hidden_layers": 4, "intermediate_size": 768, "moe_intermediate_size": 256,
  "first_k_dense_replace": 1, "moe_layer_freq": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
  "head_dim": 64, "attention_bias": false, "q_lora_rank": null, "kv_lora_rank": 128,
  "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
  "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2,
  "scoring_func": "sigmoid", "topk_method": "noaux_tc", "n_group": 1, "topk_group": 1,
  "norm_topk_prob": true, "routed_scaling_factor": 1, "rms_norm_eps": 1e-06, "rope_theta": 10000,
  "max_position_embeddings": 128, "rope_interleave": true, "tie_word_embeddings": false, "hidden_act": "silu",
  "num_nextn_predict_layers": 0, "rope_scaling": null
}
EOF
cat >"$Q/dense.json" <<'EOF'
{
  "model_type": "qwen2", "attention_type": "gqa", "vocab_size": 264,
  "hidden_size": 256, "num_hidden_layers": 4, "intermediate_size": 768,
  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "attention_bias": true,
  "rms_norm_eps": 1e-06, "rope_theta": 10000, "max_position_embeddings": 128,
  "tie_word_embeddings": false, "hidden_act": "silu", "rope_scaling": null
}
EOF
HELD="docs/serve.md docs/task.md" # held out: never in the training files
TRAIN=
for f in docs/*.md; do case $f in docs/quant.md | docs/serve.md | docs/task.md) ;; *) TRAIN="$TRAIN $f" ;; esac; done
cat $HELD >"$Q/heldout.txt"
# Each file: NAME WRITER TYPE (frugal export --type, or the harness's quantize type of the f32 file).
FILES="f32:frugal:f32 bf16:frugal:bf16 q8_0:frugal:q8_0 q8_0-llama:llama.cpp:q8_0 q6_k:frugal:q6_k q6_k-llama:llama.cpp:q6_k
q5_k:frugal:q5_k q5_k-llama:llama.cpp:q5_k q5_k_m:frugal:q5_k_m q5_k_m-llama:llama.cpp:q5_k_m
q4_k:frugal:q4_k q4_k-llama:llama.cpp:q4_k q4_k_m:frugal:q4_k_m q4_k_m-llama:llama.cpp:q4_k_m q4_0:frugal:q4_0 q4_0-llama:llama.cpp:q4_0
iq4_nl-llama:llama.cpp:iq4_nl q3_k-llama:llama.cpp:q3_k q2_k-llama:llama.cpp:q2_k"
for m in moe dense; do
    say "quality: training $m, $STEPS steps"
    rm -rf "${Q:?}/$m"
    "$BIN" train --config "$Q/$m.json" --steps "$STEPS" --batch 16 --seq 128 --lr 3e-3 --warmup 20 --val-fraction 0 \
        --eval-every 0 --no-progress --quiet --threads "$TRAIN_THREADS" --out "$Q/$m" $TRAIN >"$Q/$m-train.log" 2>&1 || die "training $m failed (see $Q/$m-train.log)"
    say "quality: $m: exports, quantisations, perplexities"
    : >"$Q/$m.txt"
    for f in $FILES; do
        name=${f%%:*}; rest=${f#*:}; who=${rest%%:*}; t=${rest#*:}
        g=$Q/$m-$name.gguf
        if [ $who = frugal ]; then "$BIN" export --gguf "$g" --type $t "$Q/$m/ckpt.fgck" >/dev/null
        else "$H" quantize "$Q/$m-f32.gguf" "$g" $t || die "llama.cpp could not quantize $Q/$m-f32.gguf to $t"; fi
        b=$(bpw "$g")
        [ -n "$b" ] || die "llama.cpp cannot load $g (LLAMA_LOGITS_VERBOSE=1 $H bench $g 1 2 2 says why)"
        j=$("$BIN" eval --ckpt "$g" --text "$Q/heldout.txt" --top1-against "$Q/$m-f32.gguf" --threads 1 --json) ||
            die "frugal eval failed on $g"
        echo "$t $who $b $(bytes "$g") $(num perplexity "$j") $(num top1_agreement "$j") $(num kl "$j") $(num tokens "$j")" >>"$Q/$m.txt"
    done
done

# ---- the demo model's task accuracy in every type -----------------------------------------------
# The built-in task's model (frugal demo, fewer steps, no distillation), exported and quantised into
# each type, and its exact-match accuracy on DEMO_N held-out problems run from each file.
say "demo: training (frugal demo --steps $DEMO_STEPS, 0 = its own count; about 6 minutes)"
rm -rf "${DIR:?}/demo"
"$BIN" demo --steps "$DEMO_STEPS" --distill-steps 0 --n 50 --threads "$TRAIN_THREADS" --out "$DIR/demo" >"$DIR/demo-train.log" 2>&1 ||
    die "frugal demo failed (see $DIR/demo-train.log)"
: >"$DIR/demo.txt"
for f in $FILES; do
    name=${f%%:*}; rest=${f#*:}; who=${rest%%:*}; t=${rest#*:}
    g=$DIR/demo-$name.gguf
    if [ $who = frugal ]; then "$BIN" export --gguf "$g" --type $t "$DIR/demo/ckpt.fgck" >/dev/null
    else "$H" quantize "$DIR/demo-f32.gguf" "$g" $t || die "llama.cpp could not quantize $DIR/demo-f32.gguf to $t"; fi
    a=$("$BIN" eval --ckpt "$g" --n "$DEMO_N" --show 0 --threads 1 | sed -n 's/^held-out exact match: \([0-9.]*\)%.*/\1/p')
    [ -n "$a" ] || die "frugal eval failed on $g"
    echo "$t $who $(bpw "$g") $(bytes "$g") $a" >>"$DIR/demo.txt"
done

# ---- docs/quant.md -----------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1)
cores=$(grep -c '^processor' /proc/cpuinfo)
params() { "$BIN" config --config "$1" | sed -n 's/^parameters: .*(\(.*\))$/\1/p'; }
fjson() { cat "$S/frugal-$1-$2.json"; }
# quality_table MODEL: one row per file; perplexity change against the f32 file (the table's first row).
quality_table() {
    echo "| type | written by | bits/weight | size (MB) | perplexity | vs f32 | top-1 agreement with f32 | mean KL from f32 (nats) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    awk 'NR == 1 { ref = $5 }
         { printf "| %s | %s | %.2f | %.2f | %.4f | %+.2f%% | %.2f%% | %.5f |\n", toupper($1), $2, $3, $4 / 1e6, $5,
                  100 * ($5 / ref - 1), 100 * $6, $7 }' "$Q/$1.txt"
}
tmp=$OUT.tmp
{
    echo "# Quantised GGUF files: frugal and llama.cpp side by side"
    echo
    echo "What each GGUF weight type costs in speed and in quality, with frugal and llama.cpp run on the"
    echo "same files in the same run. Written by \`make bench-quant\` (bench/bench_quant.sh); every number"
    echo "below comes from that run: rerun it to reproduce them on your machine."
    echo
    echo "- Machine: $cpu, $cores logical CPUs; $(date -u '+%Y-%m-%d %H:%M UTC'); frugal $(git describe --always --dirty 2>/dev/null || echo '?');"
    echo "  llama.cpp from node-llama-cpp@3.21.1 (tests/llama_cpp.sh: CPU, Release, GGML_NATIVE)."
    echo "- Run time: $(( ($(date +%s) - t_start + 30) / 60 )) minutes."
    echo
    echo "## Speed"
    echo
    echo "bench-moe's shape ($(params "$S/bench-moe.json") parameters, total / active: MLA, 16 routed experts top-4 + 1 shared, vocabulary"
    echo "4096), random weights. F32, BF16 and Q8_0 written by \`frugal export\`, Q6_K and Q4_K_M by"
    echo "llama.cpp's \`llama_model_quantize\` from the F32 file. Prefill: one 512-token prompt; decode: 32"
    echo "tokens after it, so both engines decode at context 512 to 544. frugal: \`frugal bench --ckpt FILE"
    echo "--prefill 512 --decode 512 --decode-tokens 32\` (prefill warmed up, best of 3 inside; fp32 latent"
    echo "cache). llama.cpp: tests/llama_logits.c's bench mode, llama.cpp's default context (F16 cache,"
    echo "flash attention and weight repacking as it chooses; one warm-up prompt, as llama-bench). Each"
    echo "figure is the best of $REPS runs, the engines alternated; ratio = frugal / llama.cpp."
    echo
    echo "| file | size (MB) | threads | frugal computes in | prefill frugal | prefill llama.cpp | ratio | decode frugal | decode llama.cpp | ratio |"
    echo "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    for t in $SPEED_TYPES; do
        for n in $THREADS; do
            w=$(fjson $t $n | sed -n 's/.*"weights": "\([a-z0-9_]*\)".*/\1/p')
            fp=$(best frugal $t $n 4); lp=$(best llama $t $n 4); fd=$(best frugal $t $n 5); ld=$(best llama $t $n 5)
            echo "| $(echo $t | tr a-z A-Z) | $(mb "$(bytes "$S/$t.gguf")") | $n | $w | $fp | $lp | $(ratio $fp $lp) | $fd | $ld | $(ratio $fd $ld) |"
        done
    done
    echo
    echo "Tokens per second. frugal runs every file from its mapping, tensors as stored: Q8_0 and the"
    echo "K-quants decode with int8 activations (AVX-512 VNNI), prefill on bf16 panels packed from the"
    echo "blocks; \"frugal computes in\" is the type of its largest matrix."
    echo
    n1=$(echo $THREADS | cut -d' ' -f1)
    if [ "$n1" = 1 ]; then on="1 thread"; else on="$n1 threads"; fi
    echo "Sanity check of both engines: the bytes a decode step reads (the active weights"
    echo "as stored: frugal's count of active weights, times llama.cpp's bits per weight of the file for"
    echo "llama.cpp) times tokens/s, against this machine's streaming read bandwidth on $on, measured by"
    echo "\`frugal cost peaks --remeasure\` in this run ($(num machine_mem_gbs "$(fjson f32 $n1)") GB/s): decode comes near it (above it by what the CPU caches keep between"
    echo "tokens), and a figure far above it would mean a broken timer. Prefill: the cost model's FLOPs per"
    echo "token (docs/cost.md) times tokens/s, against the fp32 FMA peak measured with it ($(num matmul_peak_gflops "$(fjson f32 $n1)") GFLOP/s) and the bf16 one ($(num matmul_peak_gflops "$(fjson bf16 $n1)"))."
    echo
    echo "| file ($on) | bits/weight | decode GB/s frugal | decode GB/s llama.cpp | prefill GFLOP/s frugal | prefill GFLOP/s llama.cpp |"
    echo "|---|---:|---:|---:|---:|---:|"
    f32j=$(fjson f32 $n1)
    act=$(awk -v b="$(num weight_bytes_per_decode_token "$f32j")" 'BEGIN { print b / 4 }') # active weights read per token
    fpt=$(awk -v g="$(num gflops "$f32j")" -v p="$(printf '%s\n' "$f32j" | sed -n 's/.*"prompt": 512, "tok_per_s": \([0-9.]*\).*/\1/p')" \
        'BEGIN { print g / p }') # GFLOP per prefill token
    for t in $SPEED_TYPES; do
        j=$(fjson $t $n1); b=$(bpw "$S/$t.gguf")
        awk -v b=$b -v act=$act -v fpt=$fpt -v fw="$(num weight_bytes_per_decode_token "$j")" -v kv="$(num kv_bytes_per_token "$j")" \
            -v fd="$(best frugal $t $n1 5)" -v ld="$(best llama $t $n1 5)" -v fp="$(best frugal $t $n1 4)" -v lp="$(best llama $t $n1 4)" -v t=$t \
            'BEGIN { printf "| %s | %.2f | %.1f | %.1f | %.0f | %.0f |\n", toupper(t), b, (fw + kv * 528) * fd / 1e9,
                     (act * b / 8 + kv / 2 * 528) * ld / 1e9, fpt * fp, fpt * lp }'
    done
    echo
    echo "(frugal's KV cache: fp32 MLA latent, $(num kv_bytes_per_token "$f32j") bytes per token; llama.cpp's F16 cache is counted at half that.)"
    echo
    echo "## Quality"
    echo
    echo "Two small models trained from scratch for $STEPS steps (16 x 128 byte-level tokens each) on this"
    echo "repository's documentation ($(echo $TRAIN | wc -w) files, $(cat $TRAIN | wc -c | tr -d ' ') bytes), and measured on held-out"
    echo "documentation they never saw ($(echo $HELD | sed 's/ / and /'): $(bytes "$Q/heldout.txt") bytes, $(awk 'NR == 1 { print $8 }' "$Q/moe.txt") predicted tokens in windows of 128)."
    echo "Every matrix row is a multiple of 256 long where the shapes allow, so the K-quants apply (rows"
    echo "without whole 256-value super-blocks fall back to other types, in both writers: the bits per"
    echo "weight, llama.cpp's figure over all tensors, say what each file holds). frugal writes its files"
    echo "with \`frugal export --type\`; llama.cpp's come from \`llama_model_quantize\` of frugal's F32 file"
    echo "(pure types, except Q6_K and Q4_K_M, which follow llama.cpp's per-tensor mixture rules). Perplexity"
    echo "per byte, by \`frugal eval --text\` (which reads every file's blocks bit for bit as llama.cpp's"
    echo "dequantiser, docs/formats.md); top-1 agreement: the share of positions whose most likely next"
    echo "token is the F32 file's."
    echo
    echo "### MLA + MoE ($(params "$Q/moe.json") parameters total / active, 8 routed experts top-2 + 1 shared; trained in $(sed -n 's/.*"wall_s": \([0-9]*\).*/\1/p' "$Q/moe/ledger.json") s)"
    echo
    quality_table moe
    echo
    echo "### Dense GQA ($(params "$Q/dense.json") parameters, qwen2 layout; trained in $(sed -n 's/.*"wall_s": \([0-9]*\).*/\1/p' "$Q/dense/ledger.json") s)"
    echo
    quality_table dense
    echo
    echo "### The demo model on its task"
    echo
    echo "\`frugal demo --steps $DEMO_STEPS --distill-steps 0\` (0: the demo's own step count; the built-in arithmetic task's MLA + MoE model,"
    echo "hidden size 128), exported and quantised into each type, then \`frugal eval --ckpt FILE --n $DEMO_N\`"
    echo "(exact-match accuracy on held-out problems, greedy). Its rows are 128 and 384 values long, so the"
    echo "K-quant files hold other blocks (Q8_0, Q5_0, Q4_0, ...) where whole 256-value super-blocks do not fit (the bits"
    echo "per weight say how much): what a user of these writers gets on this model."
    echo
    echo "| type | written by | bits/weight | size (MB) | held-out accuracy | of f32's |"
    echo "|---|---|---:|---:|---:|---:|"
    awk 'NR == 1 { ref = $5 }
         { printf "| %s | %s | %.2f | %.3f | %.1f%% | %.1f%% |\n", toupper($1), $2, $3, $4 / 1e6, $5, (ref > 0 ? 100 * $5 / ref : 0) }' "$DIR/demo.txt"
} >"$tmp"
mv "$tmp" "$OUT"
say "wrote $OUT"
