#!/usr/bin/env bash
# CTest `cluster_node_client`: writes a tiny random model with the Granite tokenizer (`quarry make-model`),
# starts two quarry-worker processes and a quarry-router in front of them on free loopback ports, runs the
# Node.js client (grpc-js, proto-loader, grpc-health-check) against the router, then stops everything with
# SIGTERM (the router's and the workers' drains must exit 0). Installs the pinned npm packages
# (package-lock.json) when missing; fails loudly without npm or the registry. Every wait is bounded.
set -euo pipefail
worker_bin="${1:?usage: run_test.sh QUARRY-WORKER QUARRY-ROUTER QUARRY}"
router_bin="${2:?usage: run_test.sh QUARRY-WORKER QUARRY-ROUTER QUARRY}"
quarry_bin="${3:?usage: run_test.sh QUARRY-WORKER QUARRY-ROUTER QUARRY}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workers=2

fail() { echo "cluster_node_client: FAILED: $*" >&2; exit 1; }
command -v node >/dev/null 2>&1 || fail "node is not installed"
have_deps() {
  local p
  for p in @grpc/grpc-js @grpc/proto-loader grpc-health-check; do
    [[ -f "$here/node_modules/$p/package.json" ]] || return 1
  done
}
if ! have_deps; then
  command -v npm >/dev/null 2>&1 || fail "npm is not installed (needed for @grpc/grpc-js, @grpc/proto-loader, grpc-health-check)"
  echo "cluster_node_client: npm ci in $here"
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
    fail "'npm ci' did not succeed (is the npm registry reachable?)"
  have_deps || fail "npm ci finished but the packages are missing"
fi
for b in "$worker_bin" "$router_bin" "$quarry_bin"; do [[ -x "$b" ]] || fail "$b is not an executable"; done

tmp="$(mktemp -d)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
dump_logs() { local f; for f in "$tmp"/*.log; do echo "---- $(basename "$f") ----" >&2; cat "$f" >&2; done; }

model="$tmp/tiny"
timeout 120 "$quarry_bin" make-model --preset tiny --vocab 100352 --seed 5 --out "$model" >"$tmp/make-model.log" 2>&1 ||
  { dump_logs; fail "quarry make-model failed"; }

# Waits for "<marker> ADDR" in a log (up to 60 s) and prints ADDR.
wait_listening() {
  local log="$1" marker="$2" pid="$3" addr=""
  for _ in $(seq 1 600); do
    addr="$(sed -n "s/^$marker \([^ ]*\).*$/\1/p" "$log" | head -n 1)"
    [[ -n "$addr" ]] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

addrs=()
for i in $(seq 0 $((workers - 1))); do
  "$worker_bin" --model "$model" --port 0 --threads 1 --no-prefault --max-model-len 512 --drain-grace-s 5 \
    >"$tmp/worker$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 0 $((workers - 1))); do
  a="$(wait_listening "$tmp/worker$i.log" "quarry-worker listening on" "${pids[$i]}")" ||
    { dump_logs; fail "quarry-worker $i did not listen within 60 s"; }
  addrs+=("$a")
done
worker_list="$(IFS=,; echo "${addrs[*]}")"
"$router_bin" --model "$model" --workers "$worker_list" --port 0 --max-model-len 512 --drain-grace-s 5 \
  --wait-workers-s 30 >"$tmp/router.log" 2>&1 &
router_pid=$!
pids+=("$router_pid")
router_addr="$(wait_listening "$tmp/router.log" "quarry-router listening on" "$router_pid")" ||
  { dump_logs; fail "quarry-router did not listen within 60 s"; }
echo "cluster_node_client: quarry-router (pid $router_pid) on $router_addr, workers $worker_list"

# The router prints its line when one worker is healthy; give the poller a moment to see all of them.
status=0
timeout 180 node "$here/client.js" --addr "$router_addr" --model-dir "$model" --workers "$workers" || status=$?

# Stops a process with SIGTERM and waits up to 15 s; sets stop_rc to its exit code (or "timeout").
# (Not in a $(...) subshell: only this shell can wait for its children.)
stop_rc=""
stop() {
  local pid="$1"
  stop_rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then stop_rc=timeout; return 0; fi
  wait "$pid" || stop_rc=$?
}
stop "$router_pid"
router_rc="$stop_rc"
worker_rcs=()
for i in $(seq 0 $((workers - 1))); do
  stop "${pids[$i]}"
  worker_rcs+=("$stop_rc")
done
dump_logs 2>&1
((status == 0)) || fail "node client exited with $status"
[[ "$router_rc" == 0 ]] || fail "quarry-router exited with '$router_rc' after SIGTERM"
for i in "${!worker_rcs[@]}"; do
  [[ "${worker_rcs[$i]}" == 0 ]] || fail "quarry-worker $i exited with '${worker_rcs[$i]}' after SIGTERM"
done
echo "cluster_node_client: OK"
