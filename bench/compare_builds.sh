#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Compute per step of two builds of bench_step_time (say, before and after a
# change), alternating old and new REPS times per method in one run so that
# the machine's drift hits both alike; prints each method's median compute
# seconds and the ratio new/old.
#   bash bench/compare_builds.sh OLD/bench_step_time NEW/bench_step_time [reps] [d]
# Environment: METHODS (default: all seven), BENCH_ARGS (more options for
# both, e.g. "--update adam").
set -euo pipefail
old="$1"
new="$2"
reps="${3:-5}"
d="${4:-50000000}"
compute() { # binary method -> compute_s of one run
  "$1" --transport inproc --method "$2" --d "$d" --threads 1 --steps 5 --warmup 1 ${BENCH_ARGS:-} | grep ",$2," | cut -d, -f8
}
echo "method,old_median_s,new_median_s,new_over_old,old_runs,new_runs"
for m in ${METHODS:-dense true-topk local-topk gtopk fetchsgd global-sketch sketched}; do
  o=""
  n=""
  for _ in $(seq "$reps"); do
    o="$o $(compute "$old" "$m")"
    n="$n $(compute "$new" "$m")"
  done
  python3 - "$m" "$o" "$n" <<'PY'
import statistics, sys
m, o, n = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mo, mn = statistics.median(o), statistics.median(n)
print(f"{m},{mo:.4f},{mn:.4f},{mn / mo:.3f},{' '.join(map(str, o))},{' '.join(map(str, n))}")
PY
done
