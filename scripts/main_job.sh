#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job on a fresh machine: installs what it needs, builds, and runs
# the quickstart (four in-process workers sketching, summing and recovering
# their gradients).
#   bash scripts/main_job.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-main}"

bash scripts/install_deps.sh
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_BUILD_TESTS=OFF -DSKETCHSGD_BUILD_BENCH=OFF \
  -DSKETCHSGD_BUILD_DOCS=OFF
cmake --build "$build_dir" -j "$(nproc)" --target quickstart
"$build_dir/examples/quickstart/quickstart"
