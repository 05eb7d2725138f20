#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The policy-layer study of docs/results.md: the Adam update rule (dense Adam
# against Sketched-SGD's aggregation with Adam at 10x and 50x) and momentum
# masking on and off for Sketched-SGD at 10x and 50x (momentum SGD, as the
# main comparison), each over several seeds on W in-process workers; a
# Markdown table and two PNG plots.
#   examples/fashion_mnist/compare_policies.sh BUILD_DIR OUT_DIR
# Environment: EPOCHS (3), SEEDS ("1 2 3"), WORKERS (4), EVAL_EVERY (117),
# DENSE_ADAM_LR (0.003) and SKETCHED_ADAM_LR (0.001): the best of
# {0.003, 0.001, 0.0003} for each after one epoch with seed 1.
set -euo pipefail
build="${1:?usage: $0 BUILD_DIR OUT_DIR}"
out="${2:?usage: $0 BUILD_DIR OUT_DIR}"
epochs="${EPOCHS:-3}"
seeds="${SEEDS:-1 2 3}"
workers="${WORKERS:-4}"
dense_adam_lr="${DENSE_ADAM_LR:-0.003}"
sketched_adam_lr="${SKETCHED_ADAM_LR:-0.001}"
eval_every="${EVAL_EVERY:-117}"
trainer="$build/examples/fashion_mnist/fashion_mnist"
here="$(cd "$(dirname "$0")" && pwd)"

[ -x "$trainer" ] || { echo "compare_policies.sh: build the trainer first ($trainer is missing)" >&2; exit 1; }
mkdir -p "$out"
rm -f "$out/policies_evaluations.csv" "$out/policies_summary.txt"

run() {
  "$trainer" --workers "$workers" --epochs "$epochs" --eval-every "$eval_every" --csv "$out/policies_evaluations.csv" --quiet "$@" |
    tee -a "$out/policies_summary.txt"
}

for seed in $seeds; do
  run --seed "$seed" --method dense
  run --seed "$seed" --method dense --update adam --lr "$dense_adam_lr"
  for x in 10 50; do
    run --seed "$seed" --method sketched --compression "$x"
    run --seed "$seed" --method sketched --compression "$x" --no-mask
    run --seed "$seed" --method sketched --compression "$x" --update adam --lr "$sketched_adam_lr"
  done
done

python3 "$here/policies_table.py" "$out/policies_summary.txt" "$out/policies_evaluations.csv" "$out"
if command -v gnuplot >/dev/null 2>&1; then
  gnuplot -e "dir='$out'" "$here/policies.gp"
  echo "compare_policies.sh: wrote $out/policies.md and the plots"
else
  echo "compare_policies.sh: wrote $out/policies.md (gnuplot not found: no plots)"
fi
