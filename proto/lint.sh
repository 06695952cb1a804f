#!/usr/bin/env bash
# Runs `buf lint` over proto/ (rules in proto/buf.yaml). Installs the pinned @bufbuild/buf from npm into
# proto/.buf-tools/ (gitignored) when missing. Fails loudly when npm or the registry is unreachable.
set -euo pipefail
BUF_VERSION=1.75.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${QUARRY_BUF_TOOLS:-$here/.buf-tools}"
buf="$tools/node_modules/.bin/buf"

if [[ ! -x "$buf" ]] || [[ "$("$buf" --version 2>/dev/null)" != "$BUF_VERSION" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "proto/lint.sh: FAILED: npm is not installed; it is needed to fetch @bufbuild/buf@$BUF_VERSION" >&2
    exit 1
  fi
  echo "proto/lint.sh: installing @bufbuild/buf@$BUF_VERSION into $tools"
  mkdir -p "$tools"
  if ! timeout 300 npm install --prefix "$tools" --no-save --no-audit --no-fund --loglevel=error \
      "@bufbuild/buf@$BUF_VERSION" >&2; then
    echo "proto/lint.sh: FAILED: 'npm install @bufbuild/buf@$BUF_VERSION' did not succeed (is the npm registry reachable?)" >&2
    exit 1
  fi
fi
version="$("$buf" --version)"
if [[ "$version" != "$BUF_VERSION" ]]; then
  echo "proto/lint.sh: FAILED: expected buf $BUF_VERSION, got '$version'" >&2
  exit 1
fi
cd "$here"
echo "proto/lint.sh: buf $version lint $here"
"$buf" lint .
echo "proto/lint.sh: OK"
