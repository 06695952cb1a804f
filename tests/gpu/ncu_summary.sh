#!/usr/bin/env bash
# Sums an Nsight Compute CSV (ncu --csv --print-kernel-base function --metrics gpu__time_duration.sum,
# dram__throughput.avg.pct_of_peak_sustained_elapsed) per kernel: total time, launches, mean DRAM throughput
# (% of peak), most expensive first. Usage: ncu_summary.sh FILE.csv [ROWS]
awk -F'","' '
  NF >= 15 {
    name = $5; metric = $13; unit = $14; v = $15
    gsub(/"/, "", v); gsub(/,/, "", v)
    if (metric == "gpu__time_duration.sum") {
      f = 1
      if (unit == "nsecond" || unit == "ns") f = 0.001; else if (unit == "msecond" || unit == "ms") f = 1000; else if (unit == "second" || unit == "s") f = 1e6
      t[name] += v * f; n[name]++; total += v * f
    } else if (metric ~ /dram__throughput/) {
      d[name] += v
    }
  }
  END {
    for (k in t) printf "%10.1f us %5d x %6.1f us %5.1f%% dram  %s\n", t[k], n[k], t[k] / n[k], d[k] / n[k], k
    printf "%10.1f us total\n", total
  }' "$1" | sort -rn | head -"${2:-25}"
