#!/bin/sh
# cli_distill.sh: `frugal distill` end to end on tiny models (online, cache, generate, train --sft)
# and its bad inputs: one-line errors, non-zero exits below 128, earlier files left intact.
BIN=${BIN:-./frugal}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
expect_fail() {
    desc=$1; want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then echo "FAIL: $desc: exit $rc"; fails=$((fails+1)); return; fi
    if ! grep -q -- "$want" "$T/err"; then echo "FAIL: $desc: stderr lacks '$want':"; cat "$T/err"; fails=$((fails+1)); return; fi
    lines=$(wc -l <"$T/err")
    if [ "$lines" -ne 1 ]; then echo "FAIL: $desc: $lines lines of error (want 1):"; cat "$T/err"; fails=$((fails+1)); fi
}
ok() { desc=$1; shift; if ! "$@" >"$T/out" 2>"$T/err"; then echo "FAIL: $desc"; cat "$T/err"; fails=$((fails+1)); fi; }
Q="--no-progress --quiet --batch 4 --eval-batches 1"

ok "teacher" $BIN train --config tiny --steps 3 $Q --out "$T/t"
ok "other teacher" $BIN train --config tiny --steps 3 --seed 9 $Q --out "$T/t2"
ok "online distill" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --steps 2 $Q --out "$T/s" --divergence skl
grep -q '"teacher": [1-9]' "$T/s/ledger.json" || { echo "FAIL: ledger lacks teacher FLOPs"; fails=$((fails+1)); }
ok "cache" $BIN distill cache --teacher "$T/t/ckpt.fgck" -o "$T/c.fgdc" --seqs 8 --k 4 --temperature 2
ok "from cache" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --cache "$T/c.fgdc" --temperature 2 --steps 2 $Q --out "$T/s2"
grep -q '"cache_bytes": [1-9]' "$T/s2/ledger.json" || { echo "FAIL: ledger lacks the cache bytes"; fails=$((fails+1)); }
$BIN cost ledger "$T/s2" | grep -q "teacher cache bytes" || { echo "FAIL: cost ledger lacks the cache row"; fails=$((fails+1)); }

printf '{"vocab_size":320,"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"attention_type":"gqa","intermediate_size":64,"max_position_embeddings":128}' >"$T/v320.json"
expect_fail "different vocabularies" "vocabularies differ" $BIN distill --teacher "$T/t/ckpt.fgck" --student "$T/v320.json" --steps 1 $Q --out "$T/x"
expect_fail "cache from another teacher" "different teacher" $BIN distill --teacher "$T/t2/ckpt.fgck" --student tiny --cache "$T/c.fgdc" --temperature 2 --steps 1 $Q --out "$T/x"
printf 'some other text for the data check\n' >"$T/d.txt"
expect_fail "cache from other data" "different data" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --cache "$T/c.fgdc" --temperature 2 --steps 1 $Q --out "$T/x" "$T/d.txt"
expect_fail "cache temperature" "temperature 2" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --cache "$T/c.fgdc" --steps 1 $Q --out "$T/x"
expect_fail "k larger than the vocabulary" "smaller than the vocabulary" $BIN distill cache --teacher "$T/t/ckpt.fgck" -o "$T/k.fgdc" --seqs 2 --k 400
[ -e "$T/k.fgdc" ] && { echo "FAIL: a refused cache left a file"; fails=$((fails+1)); }
cp "$T/c.fgdc" "$T/bad.fgdc"
printf 'X' | dd of="$T/bad.fgdc" bs=1 seek=300 conv=notrunc 2>/dev/null
expect_fail "corrupted cache" "CRC" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --cache "$T/bad.fgdc" --temperature 2 --steps 1 $Q --out "$T/x"
head -c 1000 "$T/c.fgdc" >"$T/short.fgdc"
expect_fail "truncated cache" "truncated" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --cache "$T/short.fgdc" --temperature 2 --steps 1 $Q --out "$T/x"
expect_fail "bad divergence" "unknown divergence" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --divergence kl --out "$T/x"
expect_fail "jsd beta" "beta" $BIN distill --teacher "$T/t/ckpt.fgck" --student tiny --divergence jsd --beta 1 --out "$T/x"

# sequence-level: verifiers that hang, fail or reject everything; the earlier output survives
G="generate --teacher $T/t/ckpt.fgck --n-prompts 2 --n 1 --max-new-tokens 8"
echo keep >"$T/sft.jsonl"
expect_fail "verifier hangs" "did not finish within 0.5 s" $BIN distill $G -o "$T/sft.jsonl" --verifier 'sleep 20' --verifier-timeout 0.5
expect_fail "verifier fails" "exit status 3" $BIN distill $G -o "$T/sft.jsonl" --verifier 'exit 3'
expect_fail "nothing accepted" "accepted none" $BIN distill $G -o "$T/sft.jsonl" --verifier 'cat >/dev/null; exit 1'
[ "$(cat "$T/sft.jsonl")" = keep ] || { echo "FAIL: a failed generation changed the earlier output"; fails=$((fails+1)); }
ok "generate" $BIN distill $G -o "$T/sft.jsonl" --verifier 'grep -q . || true'
[ "$(wc -l <"$T/sft.jsonl")" -eq 2 ] || { echo "FAIL: want 2 accepted samples"; cat "$T/sft.jsonl"; fails=$((fails+1)); }
grep -q '"accepted": 2' "$T/sft.jsonl.stats.json" || { echo "FAIL: stats"; fails=$((fails+1)); }
ok "train --sft" $BIN train --config tiny --sft "$T/sft.jsonl" --steps 2 $Q --out "$T/sft"
grep -q '"teacher": [1-9]' "$T/sft/ledger.json" || { echo "FAIL: the SFT ledger lacks the generation's teacher FLOPs"; fails=$((fails+1)); }
: >"$T/empty.jsonl"
expect_fail "empty generation set" "no examples" $BIN train --config tiny --sft "$T/empty.jsonl" --steps 1 $Q --out "$T/x"
printf '{"prompt": "1+1=", "completion": 5}\n' >"$T/badsft.jsonl"
expect_fail "bad sft line" "badsft.jsonl:1" $BIN train --config tiny --sft "$T/badsft.jsonl" --steps 1 $Q --out "$T/x"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all distill CLI checks passed"
