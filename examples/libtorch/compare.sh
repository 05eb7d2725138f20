#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The LibTorch comparison of docs/results.md: dense SGD, Sketched-SGD and
# FetchSGD with the same seeds, steps and hyperparameters, over mpirun or
# in-process workers; appends every RESULT line to OUT_DIR/summary.txt and
# every evaluation to OUT_DIR/evaluations.csv, then prints a Markdown table.
#   examples/libtorch/compare.sh TRAINER OUT_DIR
# Environment: TRANSPORT (mpi), WORKERS (2), SEEDS ("1 2 3"), EPOCHS (2),
# COMPRESSIONS ("10"), METHODS ("sketched fetchsgd"), EVAL_EVERY (200), EXTRA (more flags).
set -euo pipefail
trainer="${1:?usage: $0 TRAINER OUT_DIR}"
out="${2:?usage: $0 TRAINER OUT_DIR}"
transport="${TRANSPORT:-mpi}"
workers="${WORKERS:-2}"
seeds="${SEEDS:-1 2 3}"
epochs="${EPOCHS:-2}"
compressions="${COMPRESSIONS:-10}"
methods="${METHODS:-sketched fetchsgd}"
eval_every="${EVAL_EVERY:-200}"
extra="${EXTRA:-}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

[ -x "$trainer" ] || { echo "compare.sh: $trainer is not an executable" >&2; exit 1; }
mkdir -p "$out"

run() {
  local launch=("$trainer" --transport inproc --workers "$workers")
  [ "$transport" = mpi ] && launch=(mpirun -np "$workers" --oversubscribe "$trainer" --transport mpi)
  # shellcheck disable=SC2086
  "${launch[@]}" --epochs "$epochs" --eval-every "$eval_every" --csv "$out/evaluations.csv" --quiet $extra "$@" |
    grep '^RESULT' | tee -a "$out/summary.txt"
}

for seed in $seeds; do
  run --method dense --seed "$seed"
  for x in $compressions; do
    for m in $methods; do run --method "$m" --compression "$x" --seed "$seed"; done
  done
done

# One row per method, transport, W and target: accuracy per seed and its mean, bytes, compression, time.
awk '
  /^RESULT/ {
    delete f
    for (i = 2; i <= NF; ++i) { split($i, kv, "="); f[kv[1]] = kv[2] }
    target = f["method"] == "dense" ? "-" : f["compression_target"]
    key = f["method"] " | " f["transport"] " | " f["workers"] " | " target
    if (!(key in n)) order[++rows] = key
    n[key]++; acc[key] += f["accuracy"]; accs[key] = accs[key] sprintf(" %.2f", 100 * f["accuracy"])
    mb[key] += f["bytes"] / 1e6; cx[key] += f["compression"]; sec[key] += f["seconds"]; steps[key] = f["steps"]
  }
  END {
    print "| method | transport | W | target compression | steps | accuracy per seed (%) | mean accuracy | MB sent per rank | achieved compression | seconds (mean) |"
    print "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"
    for (r = 1; r <= rows; ++r) {
      k = order[r]
      printf "| %s | %s |%s | %.2f%% | %.1f | %.1f | %.1f |\n", k, steps[k], accs[k], 100 * acc[k] / n[k], mb[k] / n[k],
             cx[k] / n[k], sec[k] / n[k]
    }
  }' "$out/summary.txt" | tee "$out/table.md"
