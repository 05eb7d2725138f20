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
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_WERROR=ON
cmake --build "$build_dir" -j "$jobs"
cmake --build "$build_dir" --target docs
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
