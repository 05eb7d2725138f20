#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs what it needs, builds everything with warnings as
# errors, and runs every test (unit, statistical, consumer projects, docs).
#   bash scripts/test.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-test}"
jobs="$(nproc)"

bash scripts/install_deps.sh
# CUDA 13 lives outside PATH on these machines; with nvcc found the CUDA tests
# build and report as skipped when no GPU is visible.
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_WERROR=ON
cmake --build "$build_dir" -j "$jobs"
cmake --build "$build_dir" --target docs
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
# Reliability stages (docs/reliability.md): in CI, or when asked for with
# SKETCHSGD_RELIABILITY=1.
if [ "${CI:-}" = true ] || [ "${SKETCHSGD_RELIABILITY:-0}" = 1 ]; then
  bash scripts/sanitizers.sh
  bash scripts/fuzz.sh
fi
