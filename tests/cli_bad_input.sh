#!/bin/sh
# cli_bad_input.sh: every kind of bad input gets a one-line error naming the problem, a non-zero
# exit code below 128 (no crash), and leaves existing files intact.
BIN=${BIN:-./frugal}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
# expect_fail "description" "substring expected in stderr" command...
expect_fail() {
    desc=$1; want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then echo "FAIL: $desc: exit $rc"; fails=$((fails+1)); return; fi
    if ! grep -q -- "$want" "$T/err"; then echo "FAIL: $desc: stderr lacks '$want':"; cat "$T/err"; fails=$((fails+1)); return; fi
    lines=$(wc -l <"$T/err")
    if [ "$lines" -ne 1 ]; then echo "FAIL: $desc: $lines lines of error (want 1):"; cat "$T/err"; fails=$((fails+1)); fi
}

expect_fail "unknown command" "unknown command" $BIN frobnicate
expect_fail "unknown option" "unknown option '--bogus'" $BIN train --bogus 1
expect_fail "bad number" "--lr expects a number" $BIN train --lr fast
expect_fail "unknown preset" "unknown preset 'huge'" $BIN train --config huge
printf '{"vocab_size": 300, "hidden_size": ' >"$T/trunc.json"
expect_fail "malformed config json" "trunc.json:1:" $BIN train --config "$T/trunc.json"
printf '{"vocab_size":300,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":2,"kv_lora_rank":16,"qk_nope_head_dim":8,"qk_rope_head_dim":4,"v_head_dim":8,"intermediate_size":64,"moe_intermediate_size":16,"n_routed_experts":8,"num_experts_per_tok":9,"max_position_embeddings":64}' >"$T/incons.json"
expect_fail "inconsistent config" "num_experts_per_tok" $BIN train --config "$T/incons.json"
printf '{"vocab_size":2000000,"hidden_size":16384,"num_hidden_layers":2,"num_attention_heads":2,"kv_lora_rank":16,"qk_nope_head_dim":8,"qk_rope_head_dim":4,"v_head_dim":8,"intermediate_size":64,"max_position_embeddings":64}' >"$T/huge.json"
expect_fail "config too big for memory" "GiB" $BIN train --config "$T/huge.json"
expect_fail "missing data file" "cannot open" $BIN train --config tiny --steps 1 --out "$T/r" "$T/nope.txt"
: >"$T/empty.txt"
expect_fail "empty data file" "empty" $BIN train --config tiny --steps 1 --out "$T/r" "$T/empty.txt"
printf 'hello \377\376 world\n' >"$T/bad.txt"
expect_fail "invalid utf-8" "UTF-8" $BIN train --config tiny --steps 1 --out "$T/r" "$T/bad.txt"
printf '{"text": "ok"}\n{"txt": "x"}\n' >"$T/bad.jsonl"
expect_fail "jsonl without text" "line 2" $BIN train --config tiny --steps 1 --out "$T/r" "$T/bad.jsonl"
expect_fail "batch too big for memory" "GiB" $BIN train --config demo --batch 2000000 --steps 1 --out "$T/r"
expect_fail "seq beyond context" "max_position_embeddings" $BIN train --config tiny --seq 200 --steps 1 --out "$T/r"

# unknown config fields are warned about, not fatal
printf '{"vocab_size":300,"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":2,"kv_lora_rank":16,"qk_nope_head_dim":8,"qk_rope_head_dim":4,"v_head_dim":8,"intermediate_size":64,"max_position_embeddings":64,"frobnicate":1}' >"$T/unk.json"
if ! $BIN config --config "$T/unk.json" >/dev/null 2>"$T/err" || ! grep -q "warning: .*unknown field 'frobnicate'" "$T/err"; then
    echo "FAIL: unknown config field not warned:"; cat "$T/err"; fails=$((fails+1))
fi

# checkpoints: make a real one, then damage copies of it
printf 'The quick brown fox jumps over the lazy dog. %.0s' $(seq 1 200) >"$T/text.txt"
if ! $BIN train --config tiny --steps 2 --batch 2 --seq 32 --eval-every 0 --no-progress --quiet --out "$T/run" "$T/text.txt" >/dev/null 2>"$T/err"; then
    echo "FAIL: could not train a tiny model:"; cat "$T/err"; exit 1
fi
ck="$T/run/ckpt.fgck"
size=$(wc -c <"$ck")
head -c $((size / 2)) "$ck" >"$T/trunc.fgck"
expect_fail "truncated checkpoint" "trunc.fgck" $BIN generate --ckpt "$T/trunc.fgck"
cp "$ck" "$T/corrupt.fgck"  # byte 6000 lies in the weights section of a tiny checkpoint
printf '\125\125\125\125' | dd of="$T/corrupt.fgck" bs=1 seek=6000 conv=notrunc 2>/dev/null
expect_fail "corrupted checkpoint" "corrupt.fgck" $BIN generate --ckpt "$T/corrupt.fgck"
cp "$ck" "$T/version.fgck"
printf '\007' | dd of="$T/version.fgck" bs=1 seek=8 conv=notrunc 2>/dev/null
expect_fail "wrong version checkpoint" "version" $BIN generate --ckpt "$T/version.fgck"
printf 'not a checkpoint at all' >"$T/junk.fgck"
expect_fail "not a checkpoint" "junk.fgck" $BIN eval --ckpt "$T/junk.fgck"
expect_fail "checkpoint from a different config" "differs" $BIN train --resume "$ck" --config demo --out "$T/run2"
expect_fail "negative temperature" "--temperature -1 is out of range" $BIN generate --ckpt "$ck" --temperature -1
expect_fail "top-p outside (0, 1]" "--top-p 1.5 is out of range" $BIN generate --ckpt "$ck" --top-p 1.5
expect_fail "min-p outside [0, 1]" "--min-p 2 is out of range" $BIN generate --ckpt "$ck" --min-p 2
long=$(printf 'x%.0s' $(seq 1 300))
expect_fail "prompt longer than the context" "longer than the model's context" $BIN generate --ckpt "$ck" --prompt "$long"
expect_fail "generate without a checkpoint" "--ckpt is required" $BIN generate --prompt hi
expect_fail "empty prompt" "the prompt is empty" $BIN generate --ckpt "$ck" --prompt '' --no-bos
expect_fail "unknown KV cache type" "unknown KV cache type 'q4_k'" $BIN generate --ckpt "$ck" --kv-type q4_k
expect_fail "q8_0 cache on rows that are not whole blocks" "whole 32-value blocks" $BIN generate --ckpt "$ck" --kv-type q8_0
# a checkpoint of another architecture: a safetensors/JSON file is not a frugal model
expect_fail "not a frugal model" "bad magic" $BIN generate --ckpt "$T/unk.json" --prompt hi

# quantised models: make one, then damage copies of it
if ! $BIN quantize "$ck" -o "$T/q8.fgq" --type q8_0 >/dev/null 2>"$T/err"; then
    echo "FAIL: quantize:"; cat "$T/err"; fails=$((fails+1))
fi
$BIN generate --ckpt "$T/q8.fgq" --prompt The --temperature 0 --max-tokens 4 >/dev/null 2>"$T/err" ||
    { echo "FAIL: generate from a quantised model:"; cat "$T/err"; fails=$((fails+1)); }
expect_fail "quantize to an unknown type" "unknown weight type 'q3'" $BIN quantize "$ck" -o "$T/x.fgq" --type q3
expect_fail "quantize without -o" "-o OUT is required" $BIN quantize "$ck"
expect_fail "quantize a quantised model" "already a quantised model" $BIN quantize "$T/q8.fgq" -o "$T/x.fgq"
[ -e "$T/x.fgq" ] && { echo "FAIL: a failed quantize left an output"; fails=$((fails+1)); }
expect_fail "--weights with a quantised model" "converts checkpoints only" $BIN generate --ckpt "$T/q8.fgq" --weights bf16
qsize=$(wc -c <"$T/q8.fgq")
head -c $((qsize - 1000)) "$T/q8.fgq" >"$T/trunc.fgq"
expect_fail "truncated quantised model" "trunc.fgq: truncated" $BIN generate --ckpt "$T/trunc.fgq"
cp "$T/q8.fgq" "$T/flip.fgq"
printf '\125' | dd of="$T/flip.fgq" bs=1 seek=$((qsize - 2000)) conv=notrunc 2>/dev/null
expect_fail "corrupted quantised model" "checksum mismatch" $BIN eval --ckpt "$T/flip.fgq"
if command -v python3 >/dev/null 2>&1; then
    # Rewrites the quantised file $1 into $2 with python ($3: what to change), fixing the CRCs.
    edit_fgq() {
        python3 - "$1" "$2" "$3" <<'PY'
import struct, sys, zlib
b = bytearray(open(sys.argv[1], 'rb').read()); what = sys.argv[3]
secs, off = {}, 16
while off < len(b):
    tag = bytes(b[off:off+4]).decode(); n = struct.unpack_from('<Q', b, off + 4)[0]
    secs[tag] = (off + 12, n); off += 16 + n
q, qn = secs['QTAB']
p = q + 4
nl = struct.unpack_from('<I', b, p)[0]; p += 4 + nl
nd = struct.unpack_from('<I', b, p)[0]; p += 4 + 8 * nd   # p: type, offset, nbytes of tensor 0
if what == 'blocks':   # one Q8_0 block (34 bytes) fewer than the shape needs
    nb = struct.unpack_from('<Q', b, p + 12)[0]; struct.pack_into('<Q', b, p + 12, nb - 34)
elif what == 'arch':   # the config of another architecture (GQA) over MLA tensors
    c, cn = secs['CONF']
    conf = bytes(b[c:c+cn]).replace(b'"attention_type": "mla"', b'"attention_type": "gqa"')
    b[c - 8:c] = struct.pack('<Q', len(conf)); b[c:c+cn+4] = conf + struct.pack('<I', zlib.crc32(conf))
    q += len(conf) - cn
    open(sys.argv[2], 'wb').write(b); sys.exit(0)
struct.pack_into('<I', b, q + qn, zlib.crc32(bytes(b[q:q+qn])))
open(sys.argv[2], 'wb').write(b)
PY
    }
    edit_fgq "$T/q8.fgq" "$T/blocks.fgq" blocks
    expect_fail "quantised blocks do not match the header" "blocks do not match the header" $BIN generate --ckpt "$T/blocks.fgq"
    edit_fgq "$T/q8.fgq" "$T/arch.fgq" arch
    expect_fail "quantised model of another architecture" "different models" $BIN chat --ckpt "$T/arch.fgq"
fi
cp "$ck" "$T/before.fgck"
expect_fail "resume with other data keeps the checkpoint" "data files given differ" $BIN train --resume "$ck" --steps 4 --out "$T/run" "$T/nope.txt"
mv "$T/text.txt" "$T/text.moved"
expect_fail "resume whose data file is gone keeps the checkpoint" "cannot open" $BIN train --resume "$ck" --steps 4
mv "$T/text.moved" "$T/text.txt"
cmp -s "$ck" "$T/before.fgck" || { echo "FAIL: checkpoint changed after a failed run"; fails=$((fails+1)); }

[ $fails -eq 0 ] && echo "all bad-input cases handled" && exit 0
exit 1
