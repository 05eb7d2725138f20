#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The comparison grid of docs/results.md: dense once, then true top-k, local
# top-k, Sketched-SGD, FetchSGD and global-sketch SGD at each target
# compression, all with the same seeds and number of steps on W in-process
# workers; a Markdown table and two PNG plots (gnuplot).
#   examples/fashion_mnist/compare.sh BUILD_DIR OUT_DIR
# Environment: EPOCHS (3), COMPRESSIONS ("5 10 20 50 100"), WORKERS (4),
# METHODS ("true-topk local-topk sketched fetchsgd global-sketch"), EVAL_EVERY (117),
# EXTRA (more trainer flags).
set -euo pipefail
build="${1:?usage: $0 BUILD_DIR OUT_DIR}"
out="${2:?usage: $0 BUILD_DIR OUT_DIR}"
epochs="${EPOCHS:-3}"
compressions="${COMPRESSIONS:-5 10 20 50 100}"
workers="${WORKERS:-4}"
methods="${METHODS:-true-topk local-topk sketched fetchsgd global-sketch}"
eval_every="${EVAL_EVERY:-117}"
extra="${EXTRA:-}"
trainer="$build/examples/fashion_mnist/fashion_mnist"
here="$(cd "$(dirname "$0")" && pwd)"

[ -x "$trainer" ] || { echo "compare.sh: build the trainer first ($trainer is missing)" >&2; exit 1; }
mkdir -p "$out"
rm -f "$out/evaluations.csv" "$out/summary.txt"

run() {
  # shellcheck disable=SC2086
  "$trainer" --workers "$workers" --epochs "$epochs" --eval-every "$eval_every" --csv "$out/evaluations.csv" \
    --quiet $extra "$@" | tee -a "$out/summary.txt"
}

run --method dense
for x in $compressions; do
  for m in $methods; do
    run --method "$m" --compression "$x"
  done
done

python3 "$here/results_table.py" "$out/summary.txt" "$out/evaluations.csv" "$out"

if ! command -v gnuplot >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
  else
    echo "compare.sh: gnuplot not found (Debian: gnuplot-nox); skipping the plots" >&2
    exit 0
  fi
fi
gnuplot -e "dir='$out'" "$here/plots.gp"
echo "compare.sh: wrote $out/results.md, $out/accuracy_vs_step.png, $out/accuracy_vs_bytes.png"
