#!/bin/sh
# cli_refine.sh: `frugal data refine` end to end: kept documents, the report, bad JSONL lines
# reported with line numbers, one-line errors; and `frugal tokenizer train` writes a
# tokenizer.json with the vocabulary asked for.
BIN=${BIN:-./frugal}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

# tokenizer train
cat docs/*.md > "$T/corpus.txt"
printf '{"text": "more text for the tokenizer"}\nnot json\n' > "$T/more.jsonl"
$BIN tokenizer train --vocab-size 600 --special "<s>" --special "</s>" -o "$T/tok.json" "$T/corpus.txt" "$T/more.jsonl" >"$T/out" 2>"$T/err" || fail "tokenizer train: exit $?: $(cat "$T/err")"
grep -q "vocab 600 (342 merges, 2 special)" "$T/out" || fail "tokenizer train summary: $(cat "$T/out")"
grep -q "more.jsonl:2: not valid JSON" "$T/err" || fail "tokenizer train: bad line not reported: $(cat "$T/err")"
$BIN tokenizer train --vocab-size 100 -o "$T/x.json" "$T/corpus.txt" 2>"$T/err" && fail "vocab 100 accepted"
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "vocab_size 100" "$T/err" || fail "vocab 100 error: $(cat "$T/err")"

# data refine (dispatched by `frugal data`; skip if this build has no `data refine` yet)
if ! $BIN data refine --help >/dev/null 2>&1; then
    [ $fails -eq 0 ] || exit 1
    echo "SKIP: this frugal has no 'data refine' subcommand (tokenizer train checks passed)"; exit 77
fi
long="a perfectly ordinary sentence with enough words to pass every quality rule of the refinery"
{
    printf '{"text": "%s one"}\n' "$long"
    printf '{"text": "%s one"}\n' "$long"
    printf '{"text": "short"}\n'
    printf '{oops\n'
    printf '{"title": "no text"}\n'
    printf '{"text": "%s two, and a different ending to it"}\n' "$long"
} > "$T/in.jsonl"
$BIN data refine "$T/in.jsonl" -o "$T/out.jsonl" --report "$T/report.json" >"$T/out" 2>"$T/err" || fail "refine: exit $?: $(cat "$T/err")"
[ "$(wc -l <"$T/out.jsonl")" -eq 2 ] || fail "refine kept $(wc -l <"$T/out.jsonl") documents, want 2"
grep -q "in.jsonl:4: not valid JSON" "$T/out" || fail "refine: bad line 4 not reported: $(cat "$T/out")"
grep -q "in.jsonl:5: missing field" "$T/out" || fail "refine: bad line 5 not reported"
grep -q '"exact_duplicate": {"documents": 1' "$T/report.json" || fail "report lacks the exact duplicate: $(cat "$T/report.json")"
grep -q '"too_short": {"documents": 1' "$T/report.json" || fail "report lacks too_short"
$BIN data refine "$T/nope.jsonl" -o "$T/o.jsonl" 2>"$T/err" && fail "missing input accepted"
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "nope.jsonl" "$T/err" || fail "missing input error: $(cat "$T/err")"
$BIN data refine "$T/in.jsonl" -o "$T/o.jsonl" --jaccard 2 2>"$T/err" && fail "jaccard 2 accepted"
grep -q "jaccard" "$T/err" || fail "jaccard error: $(cat "$T/err")"
: > "$T/empty.jsonl"
$BIN data refine "$T/empty.jsonl" -o "$T/o.jsonl" 2>"$T/err" && fail "empty input accepted"
grep -q "no documents in the inputs" "$T/err" && [ ! -e "$T/o.jsonl" ] || fail "empty input: $(cat "$T/err")"
[ $fails -eq 0 ]
