#!/usr/bin/env bash
# One expert-parallel rank killed under load: `quarry serve --workers 2 --ep 2` (one group of two ranks over
# Gloo), a long stream running, rank 1 killed with SIGKILL. The stream must end with an error within seconds
# (nothing hangs), `serve` must re-form the group, and a new request must then succeed.
# Usage: ep_failover_test.sh BIN_DIR [DEVICE]   (DEVICE: cpu (default) or host, the device engine whose rows
# travel through its own exchange path)
set -euo pipefail
BIN="$1"
DEVICE="${2:-cpu}"
WORK=$(mktemp -d /tmp/quarry-ep-failover-XXXXXX)
SERVE_PID=""
cleanup() {
  [[ -n "$SERVE_PID" ]] && kill -TERM "$SERVE_PID" 2>/dev/null || true
  sleep 1
  [[ -n "$SERVE_PID" ]] && kill -KILL "$SERVE_PID" 2>/dev/null || true
  pkill -KILL -f "quarry-worker --model $WORK/model" 2>/dev/null || true
  pkill -KILL -f "quarry-router --model $WORK/model" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n "${KEEP_LOG:-}" ]] && trap 'cp "$WORK/serve.log" "$KEEP_LOG" 2>/dev/null; cleanup' EXIT
fail() { echo "FAIL: $*"; echo "--- serve log"; tail -40 "$WORK/serve.log"; exit 1; }

"$BIN/quarry" make-model --preset tiny --vocab 100352 --out "$WORK/model" >/dev/null
PORT=$(( 20000 + RANDOM % 20000 ))
"$BIN/quarry" serve --model "$WORK/model" --workers 2 --ep 2 --port "$PORT" --threads-per-worker 1 \
  --max-model-len 4096 --device "$DEVICE" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 120); do grep -q "Quarry is serving" "$WORK/serve.log" && break; sleep 0.5; done
grep -q "Quarry is serving" "$WORK/serve.log" || fail "cluster did not become ready"
"$BIN/quarry" chat --endpoint "127.0.0.1:$PORT" --max-tokens 4 "warm up" >/dev/null 2>&1 || fail "first request failed"

# A long stream, then kill rank 1 of the group.
( rc=0; "$BIN/quarry" chat --endpoint "127.0.0.1:$PORT" --max-tokens 3000 --timeout-s 60 "a long answer" \
    >"$WORK/long.out" 2>"$WORK/long.err" || rc=$?; echo "$rc" >"$WORK/long.rc" ) &
sleep 1.5
RANK1=$(pgrep -f "quarry-worker --model $WORK/model" | sort -n | sed -n 2p)
[[ -n "$RANK1" ]] || fail "no rank 1 process"
START=$(date +%s)
kill -KILL "$RANK1"
for _ in $(seq 1 300); do [[ -f "$WORK/long.rc" ]] && break; sleep 0.1; done
[[ -f "$WORK/long.rc" ]] || fail "the stream did not end within 30 s of the kill"
ELAPSED=$(( $(date +%s) - START ))
[[ "$(cat "$WORK/long.rc")" != "0" ]] || fail "the stream ended OK although its group lost a rank"
echo "stream ended after ${ELAPSED}s: $(tail -1 "$WORK/long.err")"
grep -q "restarting the group" "$WORK/serve.log" || { sleep 2; grep -q "restarting the group" "$WORK/serve.log"; } \
  || fail "serve did not restart the group"
# The re-formed group serves again.
for _ in $(seq 1 60); do
  if "$BIN/quarry" chat --endpoint "127.0.0.1:$PORT" --max-tokens 4 "after restart" >/dev/null 2>&1; then
    echo "PASS ($DEVICE engine): rank killed -> stream ended in ${ELAPSED}s, group re-formed, serving again"
    exit 0
  fi
  sleep 1
done
fail "no successful request within 60 s after the restart"
