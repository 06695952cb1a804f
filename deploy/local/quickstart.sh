#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine: install what is missing, build, make the default model
# (preset "small": the Granite-4.0-H layer pattern at ~150M parameters, random weights, Granite tokenizer
# files) and generate from it on the CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/install-deps.sh
deploy/local/build.sh -DQUARRY_BUILD_TESTS=OFF
MODEL="${QUARRY_MODEL:-models/small}"
if [[ ! -f "$MODEL/config.json" ]]; then
  build/bin/quarry make-model --preset small --seed 1 --out "$MODEL"
fi
# "Simply put, the theory of relativity states that " in Granite token ids.
exec build/bin/quarry generate --model "$MODEL" \
  --prompt-ids 61346,2231,11,279,10334,315,1375,44515,5415,430,220 --max-tokens 32 "$@"
