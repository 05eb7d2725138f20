#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Accuracy and bytes against the number of workers (docs/results.md, "Scaling
# in the number of workers"): the global batch fixed (128 examples per step,
# so each worker's batch is 128 / W), every method sized under --compression
# for W = 4 and those sizes kept as W grows (--budget-workers 4), so the table
# shows whose traffic grows with W and whose accuracy survives.
#   examples/fashion_mnist/scaling.sh TRAINER [OUT_DIR]
# Environment: WORKERS ("4 16 64"), COMPRESSIONS ("10 50"), METHODS, SEEDS
# ("1"), EPOCHS (1), GLOBAL_BATCH (128). In-process workers are threads that
# time-share the cores: W = 64 takes 3-8 minutes a run on 2 cores.
set -euo pipefail
trainer="${1:?usage: $0 TRAINER [OUT_DIR]}"
out="${2:-scaling-out}"
workers="${WORKERS:-4 16 64}"
compressions="${COMPRESSIONS:-10 50}"
methods="${METHODS:-true-topk local-topk gtopk sketched fetchsgd global-sketch}"
seeds="${SEEDS:-1}"
epochs="${EPOCHS:-1}"
global_batch="${GLOBAL_BATCH:-128}"
mkdir -p "$out"
results="$out/results.txt"
run() {  # the trainer's RESULT line, appended; a run already in the file is skipped
  local key="$*"
  if grep -qF "# $key" "$results" 2>/dev/null; then return; fi
  local line
  line=$("$trainer" --epochs "$epochs" --global-batch "$global_batch" --csv "$out/evaluations.csv" --quiet "$@" | tail -1)
  printf '%s # %s\n' "$line" "$key" >> "$results"
  echo "$line"
}
for w in $workers; do
  for seed in $seeds; do
    run --workers "$w" --seed "$seed" --method dense
    for x in $compressions; do
      for m in $methods; do
        run --workers "$w" --seed "$seed" --method "$m" --compression "$x" --budget-workers 4
      done
    done
  done
done
python3 "$(dirname "$0")/scaling_table.py" "$results" "$out"
