#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine: install what is missing, build, start the local cluster
# (`quarry serve`: router + one worker on the CPU, default model = preset "small" with RANDOM weights and the
# real Granite tokenizer), send one streamed chat request and a raw generation, then stop the cluster.
# To keep the cluster running instead: build/bin/quarry serve [--model DIR] [--workers N]
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/install-deps.sh
deploy/local/build.sh -DQUARRY_BUILD_TESTS=OFF
PORT="${QUARRY_PORT:-50051}"
LOG="build/quickstart-serve.log"
MODEL_ARGS=()
if [[ -n "${QUARRY_MODEL:-}" ]]; then MODEL_ARGS=(--model "$QUARRY_MODEL"); fi
echo "== quarry serve (log: $LOG)"
build/bin/quarry serve --port "$PORT" "${MODEL_ARGS[@]}" >"$LOG" 2>&1 &
SERVE_PID=$!
trap 'kill -TERM $SERVE_PID 2>/dev/null || true; wait $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 1800); do
  if grep -q "Quarry is serving" "$LOG"; then break; fi
  if ! kill -0 $SERVE_PID 2>/dev/null; then cat "$LOG"; echo "quarry serve exited"; exit 1; fi
  sleep 0.5
done
grep -A3 "Quarry is serving" "$LOG"
echo "== quarry chat (streamed)"
build/bin/quarry chat --endpoint "127.0.0.1:$PORT" --max-tokens 48 "Hello! What can you tell me about IBM Granite?"
echo "== four concurrent chats"
for i in 1 2 3 4; do
  build/bin/quarry chat --endpoint "127.0.0.1:$PORT" --max-tokens 24 "Request $i: write a haiku." >/dev/null 2>"build/quickstart-chat-$i.log" &
done
wait $(jobs -p | grep -v "^$SERVE_PID$") 2>/dev/null || true
cat build/quickstart-chat-*.log
echo "== stopping"
