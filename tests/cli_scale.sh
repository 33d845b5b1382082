#!/bin/sh
# cli_scale.sh: `frugal scale` end to end on a tiny sweep (two families, two widths, three token
# counts, on the repository's own docs): every run directory has its ledger, the fit and the
# multiplier land in scale.json (which parses), a second invocation trains nothing (resume skips
# finished runs), `frugal plot` draws loss curves and expert load; every SVG is rendered to PNG
# with rsvg-convert (Debian librsvg2-bin) and must be non-empty with labelled axes. The PNGs are
# kept in $BUILD/artefacts/scale/. Bad input gets one-line errors.
BIN=${BIN:-./frugal}
BUILD=${BUILD:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export FRUGAL_CACHE_DIR="$T/cache"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
expect_fail() {
    desc=$1; want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then fail "$desc: exit $rc"; return; fi
    if ! grep -q -- "$want" "$T/err"; then fail "$desc: stderr lacks '$want':"; cat "$T/err"; return; fi
    lines=$(wc -l <"$T/err")
    [ "$lines" -eq 1 ] || { fail "$desc: $lines lines of error (want 1):"; cat "$T/err"; }
}

SW="--out $T/sw --families dense,moe --widths 16,32 --tokens 6K,12K,24K --batch 4 --seq 32 --evals 2 --eval-batches 2 --boot 40"
$BIN scale $SW README.md docs/cost.md docs/model.md >"$T/out" 2>"$T/err" || { fail "scale exit $?"; cat "$T/err"; }
grep -q "^\[12/12\]" "$T/err" || fail "progress lacks [12/12]"
grep -q "ETA" "$T/err" || fail "progress lacks an ETA"
n=$(ls "$T"/sw/*/ledger.json 2>/dev/null | wc -l)
[ "$n" -eq 12 ] || fail "$n ledgers, want 12"
grep -q "compute multiplier of MLA+MoE over dense" "$T/out" || { fail "report lacks the multiplier"; cat "$T/out"; }
grep -q "EXTRAPOLATED" "$T/out" || true
if command -v python3 >/dev/null; then
    python3 - "$T/sw/scale.json" <<'PY' || fail "scale.json"
import json, sys
j = json.load(open(sys.argv[1]))
for fam in ("dense", "moe"):
    f = j["families"][fam]
    assert len(f["points"]) == 6, fam
    for k in ("E", "A", "B", "alpha", "beta"):
        p = f["params"][k]
        assert p["lo"] <= p["hi"], (fam, k, p)
at = j["multiplier"]["at"]
assert len(at) == 6 and all("value" in m and "lo" in m for m in at), at
PY
fi
# resume: a second invocation finds every run finished and trains nothing
$BIN scale $SW README.md docs/cost.md docs/model.md >"$T/out2" 2>"$T/err2" || fail "second scale exit $?"
grep -q "^\[" "$T/err2" && fail "second invocation trained again: $(head -2 "$T/err2")"
$BIN scale $SW --json README.md docs/cost.md docs/model.md >"$T/json" 2>/dev/null || fail "--json exit $?"
if command -v python3 >/dev/null; then python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/json" || fail "--json does not parse"; fi
$BIN plot "$T/sw/moe-w32-s188" "$T/sw/dense-w32-s188" --out "$T/plot" >"$T/out" 2>"$T/err" || { fail "plot exit $?"; cat "$T/err"; }
for f in "$T/sw/plots/loss_vs_compute.svg:training compute" "$T/sw/plots/isoflop.svg:active parameters N" \
         "$T/sw/plots/multiplier.svg:dense compute / MLA+MoE compute" "$T/plot/loss.svg:optimizer step" \
         "$T/plot/expert_load.svg:coefficient of variation"; do
    svg=${f%%:*}; label=${f#*:}
    [ -s "$svg" ] || { fail "$svg missing"; continue; }
    grep -q "$label" "$svg" || fail "$svg lacks its axis label '$label'"
    [ "$(grep -c '<text' "$svg")" -ge 8 ] || fail "$svg has fewer than 8 text elements (ticks, labels)"
done
expect_fail "bad width" "width 20 must be a multiple of 16" $BIN scale --out "$T/bad" --widths 20 --tokens 1K README.md
expect_fail "bad tokens" "--tokens: 'lots' is not a positive number" $BIN scale --out "$T/bad" --tokens lots README.md
expect_fail "bad family" "unknown family 'gpt'" $BIN scale --out "$T/bad" --families gpt README.md
expect_fail "no corpus" "no training data at" $BIN scale --out "$T/bad" --corpus "$T/none.jsonl"
expect_fail "plot without runs" "no run directory given" $BIN plot
expect_fail "plot of a non-run" "cannot open" $BIN plot "$T/nothing"
if ! command -v rsvg-convert >/dev/null; then
    [ $fails -eq 0 ] || exit 1
    echo "SKIP: rsvg-convert missing (apt-get install librsvg2-bin): the PNG rendering was not checked; everything else passed"
    exit 77
fi
A="$BUILD/artefacts/scale"
mkdir -p "$A"
for svg in "$T"/sw/plots/*.svg "$T"/plot/*.svg; do
    png="$A/$(basename "$svg" .svg).png"
    rsvg-convert "$svg" -o "$png" 2>"$T/err" || { fail "rsvg-convert $svg: $(cat "$T/err")"; continue; }
    size=$(wc -c <"$png")
    # a blank 860x540 canvas compresses to a few KB; axes, ticks, labels and curves make far more
    [ "$size" -gt 12000 ] || fail "$png is only $size bytes"
    head -c 8 "$png" | od -An -c | grep -q "P   N   G" || fail "$png is not a PNG"
done
[ $fails -eq 0 ] || exit 1
echo "ok (PNGs in $A)"
