#!/bin/sh
# llama_cpp.sh [src|build]: fetches llama.cpp's source and builds the parts tests/test_llama_cpp.c
# runs, once per version, into the git-ignored .cache/llama-cpp/$VERSION/.
#  - source: the npm package node-llama-cpp (pinned below) carries llama.cpp as a git bundle,
#    llama/gitRelease.bundle; `npm pack` fetches the tarball without running its install scripts
#    (which would download prebuilt binaries), and `git clone` of the bundle gives the tree.
#  - build (`build`, the default): cmake, Release, CPU only, static: the targets llama and
#    ggml-cpu, nothing else (no examples, tests, server, common or tools), then our harness
#    tests/llama_logits.c linked to them. About 5-10 min on 2 cores; `nice -n 10 ... -j2`.
# Prints the path of the source tree (src) or of the harness binary (build) on stdout's last line.
# Exit 0 ok, 77 when a tool it needs is missing or the package cannot be fetched (stdout's first
# line: SKIP: ...), 1 on failure (the log is named). Concurrent runs are serialised by a lock directory.
VERSION=3.21.1
cd "$(dirname "$0")/.." || exit 1
D=$PWD/.cache/llama-cpp/$VERSION
what=${1:-build}
for t in npm git tar; do command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not found (apt install nodejs npm git)"; exit 77; }; done
if [ "$what" = build ]; then
    for t in cmake g++ cc; do command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not found (apt install cmake g++)"; exit 77; }; done
fi
mkdir -p "$D" || exit 1
# One builder at a time (a suite and a hand run may race); a stale lock older than 1 h is broken.
i=0
until mkdir "$D/lock" 2>/dev/null; do
    [ -n "$(find "$D/lock" -maxdepth 0 -mmin +60 2>/dev/null)" ] && rmdir "$D/lock" 2>/dev/null && continue
    i=$((i+1)); [ $i -gt 1800 ] && { echo "llama_cpp.sh: $D/lock held for 30 min" >&2; exit 1; }
    sleep 1
done
trap 'rmdir "$D/lock" 2>/dev/null' EXIT
if [ ! -f "$D/src/CMakeLists.txt" ]; then
    rm -rf "$D/src" "$D/pkg"
    mkdir -p "$D/pkg"
    # No registry (offline) is a skip here; .ci/run calls this script before the suite, where it fails.
    ( cd "$D/pkg" && npm pack --silent "node-llama-cpp@$VERSION" >/dev/null 2>"$D/fetch.log" ) ||
        { echo "SKIP: npm pack node-llama-cpp@$VERSION failed, offline? (see $D/fetch.log)"; exit 77; }
    tar -xzf "$D/pkg/node-llama-cpp-$VERSION.tgz" -C "$D/pkg" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json ||
        { echo "llama_cpp.sh: the package has no llama/gitRelease.bundle" >&2; exit 1; }
    git clone -q "$D/pkg/package/llama/gitRelease.bundle" "$D/src" 2>>"$D/fetch.log" ||
        { echo "llama_cpp.sh: git clone of the bundle failed (see $D/fetch.log)" >&2; exit 1; }
    rm -f "$D/pkg/node-llama-cpp-$VERSION.tgz"
fi
if [ "$what" = src ]; then echo "$D/src"; exit 0; fi
H=$D/bin/llama_logits
if [ ! -x "$H" ] || [ tests/llama_logits.c -nt "$H" ]; then
    if [ ! -f "$D/build/src/libllama.a" ]; then
        echo "llama_cpp.sh: building llama.cpp (node-llama-cpp@$VERSION) in $D/build, once; log: $D/build.log" >&2
        t0=$(date +%s)
        { cmake -S "$D/src" -B "$D/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF \
            -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_NUMBER=0 &&
          nice -n 10 cmake --build "$D/build" -j2 --target llama ggml-cpu; } >"$D/build.log" 2>&1 ||
            { echo "llama_cpp.sh: the llama.cpp build failed (see $D/build.log)" >&2; exit 1; }
        echo "llama_cpp.sh: llama.cpp built in $(( $(date +%s) - t0 )) s" >&2
    fi
    mkdir -p "$D/bin"
    libs=$(find "$D/build" -name 'libllama.a'; find "$D/build" -name 'libggml.a'; find "$D/build" -name 'libggml-cpu.a'; find "$D/build" -name 'libggml-base.a')
    cc -O2 -std=c11 -Wall -I"$D/src/include" -I"$D/src/ggml/include" -c tests/llama_logits.c -o "$D/bin/llama_logits.o" &&
        g++ "$D/bin/llama_logits.o" $libs -fopenmp -lpthread -lm -o "$H.tmp" && mv "$H.tmp" "$H" ||
        { echo "llama_cpp.sh: building the harness tests/llama_logits.c failed" >&2; exit 1; }
fi
echo "$H"
