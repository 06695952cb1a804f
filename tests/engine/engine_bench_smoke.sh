#!/usr/bin/env bash
# quarry-engine-bench on the host backend with golden tiny-b: it must print the table and write JSON with a
# prefill row per prefill shape and a decode row per batch size, each with positive throughput.
set -euo pipefail
bench=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bench" --model tests/data/golden/tiny-b --device host --batches 1,3 --steps 2 --context 20 --prefill 16 \
  --prefill8 8 --json "$out/bench.json" >"$out/stdout" 2>"$out/stderr"
grep -q "Quarry device engine" "$out/stdout"
/usr/bin/python3 - "$out/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["results"]
phases = [(r["phase"], r["batch"]) for r in rows]
assert phases == [("prefill", 1), ("prefill", 8), ("decode", 1), ("decode", 3)], phases
for r in rows:
    assert r["tokens_per_second"] > 0 and r["seconds"] > 0, r
    if r["phase"] == "decode":
        assert 0 < r["fraction_of_floor"], r
        # host + wait time of a step: positive and not more than the step itself
        assert r["host_ms_per_step"] > 0 and r["wait_ms_per_step"] >= 0, r
        assert r["host_ms_per_step"] + r["wait_ms_per_step"] <= r["ms_per_step"] * 1.01 + 0.05, r
assert d["copy_bandwidth_gbps"] > 0
print("engine bench smoke OK:", len(rows), "rows")
PY
