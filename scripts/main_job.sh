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
t0=$(date +%s)
say() { echo "main_job: $* [$(($(date +%s) - t0)) s]"; }

cat <<'PLAN'
main_job: what this does, and roughly how long on 2 cores (about 2 minutes in all):
  1. install missing Debian packages (none missing: instant; a fresh machine downloads them first)
  2. configure and build only the Fashion-MNIST trainer (about 45 s)
  3. train the MLP 784-256-128-10 for 3 epochs on 4 in-process workers, three times with the
     same seeds: dense SGD, Sketched-SGD and FetchSGD at 10x less traffic (10-20 s each)
  4. print a table of accuracy, bytes sent and time
PLAN

bash scripts/install_deps.sh
say "packages present"
# Only what this job builds: no tests, benchmarks, docs, CUDA or LibTorch
# (so no probing for a CUDA compiler or LibTorch either). The configure log
# is kept in the build directory and shown only if configuring fails.
mkdir -p "$build_dir"
if ! cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_BUILD_TESTS=OFF -DSKETCHSGD_BUILD_BENCH=OFF \
  -DSKETCHSGD_BUILD_DOCS=OFF -DSKETCHSGD_ENABLE_CUDA=OFF -DSKETCHSGD_BUILD_LIBTORCH_EXAMPLE=OFF \
  >"$build_dir/configure.log" 2>&1; then
  cat "$build_dir/configure.log" >&2
  exit 1
fi
say "configured (log: $build_dir/configure.log); building the trainer"
cmake --build "$build_dir" -j "$(nproc)" --target fashion_mnist
trainer="$build_dir/examples/fashion_mnist/fashion_mnist"
say "built $trainer"

mkdir -p "$out"
rm -f "$out/summary.txt" "$out/evaluations.csv"
for method in "dense" "sketched --compression 10" "fetchsgd --compression 10"; do
  echo
  # shellcheck disable=SC2086
  "$trainer" --workers 4 --epochs 3 --csv "$out/evaluations.csv" --method $method | tee -a "$out/summary.txt"
  say "trained: $method"
done
python3 examples/fashion_mnist/results_table.py "$out/summary.txt" "$out/evaluations.csv" "$out"
echo
echo "Fashion-MNIST, MLP 784-256-128-10, 4 in-process workers, 3 epochs, same seeds:"
cat "$out/results.md"
say "done"
