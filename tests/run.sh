#!/bin/sh
# Runs every test program, then the shell-level CLI tests. Prints one line per test and a summary.
# Exit codes from a test: 0 pass, 77 skip (its first output line says why), other = fail.
BUILD=${BUILD:-build}
# Training runs measure this machine's peaks for their ledger: cache them in a scratch directory,
# never in the user's ~/.cache (measured once per suite run).
FRUGAL_CACHE_DIR=$(mktemp -d); export FRUGAL_CACHE_DIR
trap 'rm -rf "$FRUGAL_CACHE_DIR"' EXIT
pass=0; fail=0; skip=0; failed=""
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out=$("$t" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS $name"
    elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP $name: $(printf '%s\n' "$out" | grep -m1 SKIP | sed 's/^SKIP: //')"
    else fail=$((fail+1)); failed="$failed $name"; echo "FAIL $name (exit $rc)"; printf '%s\n' "$out" | tail -n 30 | sed 's/^/    /'
    fi
done
for t in tests/cli_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    bin=${BIN:-frugal}; case $bin in */*) ;; *) bin=./$bin;; esac
    out=$(BIN="$bin" sh "$t" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS $name"
    elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP $name: $(printf '%s\n' "$out" | grep -m1 SKIP | sed 's/^SKIP: //')"
    else fail=$((fail+1)); failed="$failed $name"; echo "FAIL $name (exit $rc)"; printf '%s\n' "$out" | tail -n 30 | sed 's/^/    /'
    fi
done
echo "---- $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] || { echo "failed:$failed"; exit 1; }
