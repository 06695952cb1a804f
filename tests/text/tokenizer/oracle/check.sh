#!/usr/bin/env bash
# Proves that tests/data/tokenizer/expected_ids.json is what js-tiktoken 1.0.21 says: installs the oracle's npm
# project when node_modules is missing (fails loudly when npm cannot reach its registry), regenerates the ids
# into OUT_DIR and diffs them with the committed file. Usage: check.sh [OUT_DIR]   (run from anywhere)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
out_dir="${1:-${TMPDIR:-/tmp}/quarry-tokenizer-oracle}"
mkdir -p "$out_dir"
command -v node >/dev/null || { echo "tokenizer oracle: node is not installed" >&2; exit 1; }
if [[ ! -d "$here/node_modules/js-tiktoken" ]]; then
  command -v npm >/dev/null || { echo "tokenizer oracle: npm is not installed" >&2; exit 1; }
  echo "tokenizer oracle: installing js-tiktoken (npm ci)"
  if ! (cd "$here" && npm ci --no-audit --no-fund); then
    echo "tokenizer oracle: FAILED: npm could not install js-tiktoken 1.0.21 (registry unreachable?)" >&2
    exit 1
  fi
fi
version="$(node -p "require('$here/node_modules/js-tiktoken/package.json').version")"
if [[ "$version" != "1.0.21" ]]; then
  echo "tokenizer oracle: FAILED: js-tiktoken $version installed, 1.0.21 expected" >&2
  exit 1
fi
node "$here/encode.mjs" "$root/tests/data/tokenizer/corpus.json" "$root/assets/tokenizer/tokenizer.json" \
  "$out_dir/expected_ids.json"
if ! diff -q "$root/tests/data/tokenizer/expected_ids.json" "$out_dir/expected_ids.json" >/dev/null; then
  echo "tokenizer oracle: FAILED: committed expected_ids.json differs from js-tiktoken's output:" >&2
  diff "$root/tests/data/tokenizer/expected_ids.json" "$out_dir/expected_ids.json" | head -20 >&2
  exit 1
fi
echo "tokenizer oracle: committed expected ids match js-tiktoken 1.0.21"
