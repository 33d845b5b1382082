#!/bin/sh
# cli_interop.sh: `frugal convert`, `frugal export`, Hugging Face directories and GGUF files wherever a
# checkpoint is accepted, the exported GGUF read back by an independent parser (npm @huggingface/gguf),
# and bad input: one-line errors that name the problem, exit codes below 128 (no crash).
# Needs python3 with torch and numpy for the random checkpoints (tests/ref/hf_cases.py); the GGUF
# check needs node and .cache/npm (tests/fetch_npm.sh).
BIN=${BIN:-./frugal}
PY=/usr/bin/python3
$PY -c 'import torch, numpy' >/dev/null 2>&1 || { echo "SKIP: python3 with torch and numpy not found (apt install python3-torch python3-numpy)"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
expect_fail() {
    desc=$1; want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then fail "$desc: exit $rc"; cat "$T/err"; return; fi
    if ! grep -q -- "$want" "$T/err"; then fail "$desc: stderr lacks '$want':"; cat "$T/err"; return; fi
    lines=$(wc -l <"$T/err")
    [ "$lines" -eq 1 ] || { fail "$desc: $lines lines of error (want 1):"; cat "$T/err"; }
}
$PY tests/ref/hf_cases.py "$T/c" >/dev/null || { echo "FAIL: hf_cases.py"; exit 1; }

# ---- convert, and direct loading wherever a checkpoint is accepted
V3="$T/c/dsv3_yarn_bf16"
$BIN convert "$V3" -o "$T/v3.fgck" >"$T/out" 2>"$T/err" || { fail "convert"; cat "$T/err"; }
! grep -q "multi-token-prediction" "$T/err" || fail "convert: V3's whole MTP layer was skipped: $(cat "$T/err")"
$BIN convert "$T/c/dsv2_softmax" -o "$T/v2.fgck" >"$T/out2" 2>"$T/err2" || { fail "convert V2"; cat "$T/err2"; }
grep -q "multi-token-prediction layer but the files lack [0-9]* of their tensors" "$T/err2" || fail "convert: no notice for a partial MTP layer: $(cat "$T/err2")"
grep -q "tokenizer: BPE" "$T/out" || fail "convert: $(cat "$T/out")"
g1=$($BIN generate --ckpt "$V3" --prompt "Hello 12" --max-tokens 8 --temperature 0 2>/dev/null)
g2=$($BIN generate --ckpt "$T/v3.fgck" --prompt "Hello 12" --max-tokens 8 --temperature 0 2>/dev/null)
[ -n "$g1" ] && [ "$g1" = "$g2" ] || fail "generate from the directory and from the converted checkpoint differ: '$g1' vs '$g2'"
g3=$($BIN generate --ckpt "$T/v3.fgck" --prompt "Hello 12" --max-tokens 8 --temperature 0 --speculative 1 2>/dev/null)
[ "$g3" = "$g2" ] || fail "generate --speculative with V3's MTP layer differs from plain: '$g3' vs '$g2'"
$BIN bench --ckpt "$T/c/llama3" --prefill 16 --decode 0 --decode-tokens 4 >/dev/null 2>"$T/err" || { fail "bench on a HF directory"; cat "$T/err"; }
# A BF16 directory runs from its mapping, weights as stored; --weights f32 converts (the fp32 path).
$BIN bench --ckpt "$V3" --prefill 4 --decode 0 --decode-tokens 2 >"$T/out" 2>"$T/err" || { fail "bench on a BF16 HF directory"; cat "$T/err"; }
grep -q "mapped from 1 file" "$T/err" && grep -q "bf16 weights" "$T/out" || fail "BF16 directory not mapped: $(cat "$T/err" "$T/out")"
$BIN bench --ckpt "$V3" --weights f32 --prefill 4 --decode 0 --decode-tokens 2 >"$T/out" 2>"$T/err" || { fail "bench --weights f32 on a HF directory"; cat "$T/err"; }
grep -q "f32 weights" "$T/out" || fail "--weights f32 did not convert: $(cat "$T/err" "$T/out")"
! grep -q "mapped from" "$T/err" || fail "--weights f32 mapped the directory"

# ---- export: GGUF (f32 re-import gives the same greedy text) and HF
$BIN export --gguf "$T/v3.gguf" "$T/v3.fgck" >/dev/null 2>"$T/err" || { fail "export --gguf"; cat "$T/err"; }
g3=$($BIN generate --ckpt "$T/v3.gguf" --prompt "Hello 12" --max-tokens 8 --temperature 0 2>/dev/null)
[ "$g1" = "$g3" ] || fail "generate from the exported GGUF differs: '$g1' vs '$g3'"
$BIN export --hf "$T/v3hf" --type bf16 "$T/v3.fgck" >/dev/null 2>"$T/err" || { fail "export --hf"; cat "$T/err"; }
[ -f "$T/v3hf/config.json" ] && [ -f "$T/v3hf/tokenizer.json" ] && grep -q DeepseekV3ForCausalLM "$T/v3hf/config.json" || fail "export --hf: files"
$BIN export --gguf "$T/q.gguf" --type q8_0 "$T/c/qwen2_f16" >/dev/null 2>"$T/err" || { fail "export q8_0 qwen2"; cat "$T/err"; }
$BIN export --gguf "$T/l.gguf" --type bf16 "$T/c/llama3" >/dev/null 2>"$T/err" || { fail "export bf16 llama"; cat "$T/err"; }
# the llama-quantize mixtures (GGUF only; tests/test_llama_cpp.c checks their blocks and logits)
for ty in q5_k q4_k_m q5_k_m; do
    $BIN export --gguf "$T/$ty.gguf" --type $ty "$V3" >/dev/null 2>"$T/err" || { fail "export $ty"; cat "$T/err"; }
    $BIN bench --ckpt "$T/$ty.gguf" --prefill 4 --decode 0 --decode-tokens 2 >/dev/null 2>"$T/err" || { fail "bench on the $ty export"; cat "$T/err"; }
done
expect_fail "a GGUF mixture for safetensors" "q4_k_m and q5_k_m are GGUF mixtures" $BIN export --hf "$T/xhf" --type q4_k_m "$V3"
expect_fail "an export type frugal does not write" "unknown export type 'q3_k'" $BIN export --gguf "$T/x.gguf" --type q3_k "$V3"

# ---- the exported files, read by an independent GGUF parser
if command -v node >/dev/null 2>&1 && [ -d .cache/npm/node_modules/@huggingface/gguf ]; then
    for f in v3 q l; do
        node tests/gguf_dump.mjs "$T/$f.gguf" >"$T/$f.json" 2>"$T/err" || { fail "@huggingface/gguf cannot read $f.gguf: $(cat "$T/err")"; continue; }
        $PY - "$T/$f.json" "$f" <<'EOF' || fail "GGUF $f: header, metadata or tensor table"
import json, sys
d = json.load(open(sys.argv[1])); m = d["metadata"]; t = d["tensors"]; kind = sys.argv[2]
arch = {"v3": "deepseek2", "q": "qwen2", "l": "llama"}[kind]
def need(c, what):
    if not c: print("GGUF check:", what); sys.exit(1)
need(m["version"] == 3 and m["general.architecture"] == arch, "version/architecture")
need(m["tensor_count"] == len(t) and m["kv_count"] == len([k for k in m if k not in ("version", "tensor_count", "kv_count")]), "counts")
need(m["general.alignment"] == 32 and all(x["offset"] % 32 == 0 for x in t), "alignment")
need(m["tokenizer.ggml.model"] == "gpt2" and m["tokenizer.ggml.tokens"]["array"] == m[arch + ".vocab_size"], "tokenizer")
names = {x["name"]: x for x in t}
C, V, L = m[arch + ".embedding_length"], m[arch + ".vocab_size"], m[arch + ".block_count"]
need(names["token_embd.weight"]["shape"] == [C, V], "token_embd shape")
need(all(("blk.%d.attn_norm.weight" % l) in names for l in range(L)), "per-layer tensors")
size = {0: 4, 1: 2, 30: 2}
for x in t:  # every tensor lies inside the file (Q8_0: 34 bytes per 32)
    n = 1
    for s in x["shape"]: n *= s
    nb = n * size[x["type"]] if x["type"] in size else n // 32 * 34
    need(x["type"] in (0, 1, 8, 30), "type of " + x["name"])
    data_start = d["size"] - max(y["offset"] for y in t) - 1
    need(x["offset"] + nb <= d["size"], "extent of " + x["name"])
if kind == "v3":
    H, Rkv = m["deepseek2.attention.head_count"], m["deepseek2.attention.kv_lora_rank"]
    Dn = m["deepseek2.attention.key_length_mla"] - m["deepseek2.rope.dimension_count"]
    need(names["blk.0.attn_k_b.weight"]["shape"] == [Dn, Rkv, H], "attn_k_b shape")
    E, Fe = m["deepseek2.expert_count"], m["deepseek2.expert_feed_forward_length"]
    need(names["blk.1.ffn_gate_exps.weight"]["shape"] == [C, Fe, E], "experts shape")
    need(m["tokenizer.ggml.pre"] == "deepseek-v3", "pre-tokenizer")
if kind == "l":
    need("rope_freqs.weight" in names and names["blk.0.attn_q.weight"]["type"] == 30, "llama3 rope_freqs / bf16")
if kind == "q":
    need("blk.0.attn_q.bias" in names and names["blk.0.attn_q.weight"]["type"] == 8 and m["tokenizer.ggml.pre"] == "qwen2", "qwen2 biases / q8_0 / pre")
EOF
    done
else
    echo "note: node or .cache/npm/node_modules/@huggingface/gguf missing (sh tests/fetch_npm.sh): independent GGUF parse not run"
fi

# ---- a tokenizer.json whose pre-tokenizer regexes are spelled unlike frugal's named sets (DeepSeek-LLM's
# letter class with raw characters) is still named, by how it splits
cp -r "$T/c/dsv2_softmax" "$T/dsl"
$PY tests/make_dsl_tokenizer.py "$T/dsl/tokenizer.json" || fail "make_dsl_tokenizer.py"
$BIN export --gguf "$T/dsl.gguf" "$T/dsl" >/dev/null 2>"$T/err" || { fail "export with a DeepSeek-LLM pre-tokenizer"; cat "$T/err"; }
grep -aq "deepseek-llm" "$T/dsl.gguf" || fail "the DeepSeek-LLM pre-tokenizer was not named deepseek-llm"

# ---- the exports with real tokenizers (DeepSeek-V3's, Qwen2's, Llama 3's tokenizer.json) load in
# llama.cpp itself, when tests/test_llama_cpp.c's build of it is there (tests/llama_cpp.sh)
H=.cache/llama-cpp/3.21.1/bin/llama_logits
if [ -x "$H" ]; then
    echo "1 2 3 4" >"$T/ids.txt"
    for f in v3 q l dsl; do
        [ -f "$T/$f.gguf" ] || continue
        "$H" logits "$T/$f.gguf" "$T/ids.txt" 2 "$T/$f.bin" >"$T/err" 2>&1 || fail "llama.cpp cannot load $f.gguf: $(tail -3 "$T/err")"
    done
else
    echo "note: $H missing (sh tests/llama_cpp.sh): exports with tokenizers not loaded in llama.cpp"
fi

# ---- bad input: Hugging Face directories
B="$T/bad"
cp -r "$T/c/dsv2_softmax" "$B.shard"; rm "$B.shard/model-00002-of-00002.safetensors"
expect_fail "missing shard" "model-00002-of-00002.safetensors: shard is missing" $BIN generate --ckpt "$B.shard" --prompt x
cp -r "$T/c/dsv2_softmax" "$B.index"
$PY -c "import json,sys; p=sys.argv[1]+'/model.safetensors.index.json'; d=json.load(open(p)); d['weight_map']['model.layers.0.ghost.weight']='model-00001-of-00002.safetensors'; json.dump(d,open(p,'w'))" "$B.index"
expect_fail "index names an absent tensor" "'model.layers.0.ghost.weight' in this shard, but it is not there" $BIN convert "$B.index" -o "$T/x.fgck"
cp -r "$T/c/llama3" "$B.shape"
$PY -c "import json,sys; p=sys.argv[1]+'/config.json'; d=json.load(open(p)); d['intermediate_size']=96; json.dump(d,open(p,'w'))" "$B.shape"
expect_fail "wrong shape" "tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[128,64\], the config expects \[96,64\]" $BIN convert "$B.shape" -o "$T/x.fgck"
cp -r "$T/c/llama3" "$B.dtype"
$PY - "$B.dtype/model.safetensors" <<'EOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h["model.norm.weight"]["dtype"] = "I32"
hb = json.dumps(h, separators=(",", ":")).encode(); hb += b" " * (n - len(hb))
open(sys.argv[1], "wb").write(b[:8] + hb + b[8 + n:])
EOF
expect_fail "wrong dtype" "tensor 'model.norm.weight': dtype I32 is not supported" $BIN convert "$B.dtype" -o "$T/x.fgck"
expect_fail "wrong dtype (mapped)" "tensor 'model.norm.weight': dtype I32 is not supported" $BIN generate --ckpt "$B.dtype" --prompt x
cp -r "$T/c/llama3" "$B.arch"
$PY -c "import json,sys; p=sys.argv[1]+'/config.json'; d=json.load(open(p)); d['architectures']=['MistralForCausalLM']; json.dump(d,open(p,'w'))" "$B.arch"
expect_fail "unknown architecture" "architecture 'MistralForCausalLM' is not supported (known: DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM)" $BIN convert "$B.arch" -o "$T/x.fgck"
cp -r "$T/c/llama3" "$B.trunc"; truncate -s 5000 "$B.trunc/model.safetensors"
expect_fail "truncated safetensors" "model.safetensors" $BIN convert "$B.trunc" -o "$T/x.fgck"
expect_fail "truncated safetensors (mapped)" "is not within the data area" $BIN bench --ckpt "$B.trunc"
cp -r "$T/c/llama3" "$B.hdr"; printf '\377\377\377\377\000\000\000\000' | dd of="$B.hdr/model.safetensors" conv=notrunc 2>/dev/null
expect_fail "header length beyond the file" "header" $BIN convert "$B.hdr" -o "$T/x.fgck"
cp -r "$T/c/dsv3_fp8" "$B.fp8"
$PY - "$B.fp8/model.safetensors" <<'EOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h["model.layers.0.self_attn.o_proj.weight_scale_inx"] = h.pop("model.layers.0.self_attn.o_proj.weight_scale_inv")
hb = json.dumps(h, separators=(",", ":")).encode(); hb += b" " * (n - len(hb))
open(sys.argv[1], "wb").write(b[:8] + hb + b[8 + n:])
EOF
expect_fail "FP8 tensor without its block scales" "F8_E4M3 tensor 'model.layers.0.self_attn.o_proj.weight' has no block scales 'model.layers.0.self_attn.o_proj.weight_scale_inv'" $BIN convert "$B.fp8" -o "$T/x.fgck"
expect_fail "FP8 tensor without its block scales (mapped)" "has no block scales 'model.layers.0.self_attn.o_proj.weight_scale_inv'" $BIN generate --ckpt "$B.fp8" --prompt x
mkdir "$B.empty"
expect_fail "directory without config.json" "not a Hugging Face checkpoint directory" $BIN convert "$B.empty" -o "$T/x.fgck"
[ ! -e "$T/x.fgck" ] || fail "a failed convert left $T/x.fgck"

# ---- bad input: GGUF (patched copies of an exported file)
patch_gguf() { # patch_gguf OUT PYTHON-EXPRESSION-ON-b
    $PY - "$T/l.gguf" "$1" "$2" <<'EOF'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
def at(s): return b.index(s) + len(s)
exec(sys.argv[3])
open(sys.argv[2], "wb").write(b)
EOF
}
patch_gguf "$B.utf8.gguf" 'i = at(b"general.name") + 4 + 8; b[i + 2] = 0xff'
expect_fail "GGUF string not UTF-8" "not valid UTF-8" $BIN generate --ckpt "$B.utf8.gguf" --prompt x
patch_gguf "$B.align.gguf" 'i = at(b"general.alignment") + 4; b[i:i + 4] = struct.pack("<I", 24)'
expect_fail "GGUF alignment not a power of two" "general.alignment 24 is not a power of two" $BIN generate --ckpt "$B.align.gguf" --prompt x
patch_gguf "$B.type.gguf" 'i = at(b"token_embd.weight") + 4 + 16; b[i:i + 4] = struct.pack("<I", 23)'
expect_fail "GGUF tensor type frugal does not read" "has type IQ4_XS, which frugal does not read" $BIN generate --ckpt "$B.type.gguf" --prompt x
patch_gguf "$B.arch.gguf" 'i = at(b"general.architecture") + 4 + 8; b[i:i + 5] = b"mamba"'
expect_fail "GGUF unknown architecture" "GGUF architecture 'mamba' is not supported (known: deepseek2, llama, qwen2)" $BIN generate --ckpt "$B.arch.gguf" --prompt x
patch_gguf "$B.trunc.gguf" 'del b[len(b) // 2:]'
expect_fail "truncated GGUF" "run past the end of the file" $BIN generate --ckpt "$B.trunc.gguf" --prompt x
patch_gguf "$B.count.gguf" 'b[8:16] = struct.pack("<Q", 1 << 40)'
expect_fail "GGUF tensor count beyond the file" "tensor count 1099511627776 is larger than the file could hold" $BIN generate --ckpt "$B.count.gguf" --prompt x
patch_gguf "$B.len.gguf" 'i = b.index(b"general.architecture") - 8; b[i:i + 8] = struct.pack("<Q", 1 << 40)'
expect_fail "GGUF string length beyond the file" "runs past the end of the file" $BIN generate --ckpt "$B.len.gguf" --prompt x

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "cli_interop: all checks passed"
