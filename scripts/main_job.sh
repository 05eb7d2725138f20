#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job on a fresh machine: installs what it needs, builds the
# Fashion-MNIST trainer, and trains the same MLP three ways on 4 in-process
# workers with the same seeds and steps (dense SGD, Sketched-SGD and FetchSGD
# at 10x less traffic than dense), ending with a table. About 2 minutes on
# 2 cores.
#   bash scripts/main_job.sh [build-dir]
# The full grid (every method, 5x to 100x, plots): examples/fashion_mnist/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-main}"
out="$build_dir/main-job"

bash scripts/install_deps.sh
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_BUILD_TESTS=OFF -DSKETCHSGD_BUILD_BENCH=OFF \
  -DSKETCHSGD_BUILD_DOCS=OFF
cmake --build "$build_dir" -j "$(nproc)" --target fashion_mnist
trainer="$build_dir/examples/fashion_mnist/fashion_mnist"

mkdir -p "$out"
rm -f "$out/summary.txt" "$out/evaluations.csv"
for method in "dense" "sketched --compression 10" "fetchsgd --compression 10"; do
  echo
  # shellcheck disable=SC2086
  "$trainer" --workers 4 --epochs 3 --csv "$out/evaluations.csv" --method $method | tee -a "$out/summary.txt"
done
python3 examples/fashion_mnist/results_table.py "$out/summary.txt" "$out/evaluations.csv" "$out"
echo
echo "Fashion-MNIST, MLP 784-256-128-10, 4 in-process workers, 3 epochs, same seeds:"
cat "$out/results.md"
