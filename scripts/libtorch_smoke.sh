#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# LibTorch smoke test: installs libtorch-dev (Debian 12: LibTorch 1.13) when
# missing, installs sketchsgd into a scratch prefix, builds examples/libtorch
# as a standalone consumer with our warnings as errors, and runs its ctest:
# the flat-parameter adapter's unit tests and 20 Sketched-SGD steps over
# `mpirun -np 2` that must end exactly as over 2 in-process workers.
#   bash scripts/libtorch_smoke.sh [build-dir]
# Environment: JOBS (compile jobs; 2). Each LibTorch translation unit takes
# about 30 s of CPU and 1.5 GB of memory.
set -euo pipefail
cd "$(dirname "$0")/.."
build="$(realpath -m "${1:-build-libtorch}")"
jobs="${JOBS:-2}"
t0=$(date +%s)
stamp() { echo "libtorch_smoke: $1 after $(($(date +%s) - t0)) s"; }

bash scripts/install_deps.sh libtorch # and the compiler, cmake, Catch2, Open MPI, zlib, the data
stamp "libtorch-dev present"

# sketchsgd as an installed package: configuring the header-only core is quick.
cmake -S . -B "$build/core" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_BUILD_TESTS=OFF -DSKETCHSGD_BUILD_EXAMPLES=OFF \
  -DSKETCHSGD_BUILD_BENCH=OFF -DSKETCHSGD_BUILD_DOCS=OFF >/dev/null
cmake --install "$build/core" --prefix "$build/prefix" >/dev/null

# The example as a consumer would build it; our warnings with -Werror prove LibTorch's headers stay -isystem.
warnings="-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast -Wnon-virtual-dtor"
cmake -S examples/libtorch -B "$build/example" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$build/prefix" \
  -DCMAKE_CXX_FLAGS="$warnings -Woverloaded-virtual -Werror" >/dev/null
stamp "configured"
cmake --build "$build/example" -j "$jobs"
stamp "built"
ctest --test-dir "$build/example" --output-on-failure
stamp "done"
