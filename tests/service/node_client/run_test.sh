#!/usr/bin/env bash
# CTest `service_node_client`: starts quarry-worker on a free loopback port with the golden checkpoint
# tests/data/golden/tiny-b, runs the Node.js client against it, then stops the worker with SIGTERM (graceful
# drain must exit 0). Installs the pinned npm packages (package-lock.json) when missing; fails loudly without
# npm or the registry. Every wait is bounded.
set -euo pipefail
worker_bin="${1:?usage: run_test.sh PATH/TO/quarry-worker}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
golden="$root/tests/data/golden/tiny-b"

fail() { echo "service_node_client: FAILED: $*" >&2; exit 1; }
command -v node >/dev/null 2>&1 || fail "node is not installed"
if [[ ! -f "$here/node_modules/@grpc/grpc-js/package.json" || ! -f "$here/node_modules/@grpc/proto-loader/package.json" ]]; then
  command -v npm >/dev/null 2>&1 || fail "npm is not installed (needed for @grpc/grpc-js, @grpc/proto-loader)"
  echo "service_node_client: npm ci in $here"
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
    fail "'npm ci' did not succeed (is the npm registry reachable?)"
fi
[[ -x "$worker_bin" ]] || fail "$worker_bin is not an executable"

log="$(mktemp)"
"$worker_bin" --model "$golden" --port 0 --threads 1 --no-prefault --drain-grace-s 5 >"$log" 2>&1 &
pid=$!
cleanup() {
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$log"
}
trap cleanup EXIT

addr=""
for _ in $(seq 1 600); do  # up to 60 s
  addr="$(sed -n 's/^quarry-worker listening on \(.*\)$/\1/p' "$log")"
  [[ -n "$addr" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "quarry-worker exited before listening"; }
  sleep 0.1
done
[[ -n "$addr" ]] || { cat "$log" >&2; fail "quarry-worker did not listen within 60 s"; }
echo "service_node_client: quarry-worker (pid $pid) on $addr"

status=0
timeout 180 node "$here/client.js" --addr "$addr" --golden "$golden" || status=$?

kill -TERM "$pid"
for _ in $(seq 1 150); do  # up to 15 s for the drain
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  cat "$log" >&2
  fail "quarry-worker did not exit within 15 s of SIGTERM"
fi
worker_rc=0
wait "$pid" || worker_rc=$?
cat "$log"
((status == 0)) || fail "node client exited with $status"
((worker_rc == 0)) || fail "quarry-worker exited with $worker_rc after SIGTERM"
echo "service_node_client: OK"
