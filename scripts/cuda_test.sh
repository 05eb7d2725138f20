#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CUDA suite: builds sketchsgd's CUDA targets with nvcc (every .cuh on its
# own, the host tests, the GPU tests, the GPU benchmark) and runs their ctest
# entries: the host tests pass anywhere, the GPU tests skip (exit code 77)
# without a visible GPU. scripts/test.sh builds and runs these itself where a
# GPU is visible; elsewhere they could only compile and skip, a quarter of its
# build, so they are this suite there, which CI runs (about 3 minutes).
#   bash scripts/cuda_test.sh [build-dir] [all|build|test]
# (build: configure and build only; test: run what build built; CI builds at
# the lowest priority beside the test command, then tests.)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-cuda}"
stage="${2:-all}"
case "$stage" in all|build|test) ;; *) echo "cuda_test: unknown stage '$stage' (all, build or test)" >&2; exit 2 ;; esac
t0=$(date +%s)
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "cuda_test: no nvcc on PATH or in /usr/local/cuda/bin; the CUDA suite needs the CUDA toolkit: nothing to do"
  exit 0
fi
if [ "$stage" != test ]; then
  bash scripts/install_deps.sh
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_QUICK_BUILD=ON -DSKETCHSGD_WERROR=ON \
    -DSKETCHSGD_ENABLE_CUDA=ON -DSKETCHSGD_BUILD_LIBTORCH_EXAMPLE=OFF
  cmake --build "$build_dir" -j "$(nproc)" --target sketchsgd_cuda_header_check test_cuda_host test_cuda_gpu bench_cuda
  if [ "$stage" = build ]; then echo "cuda_test: built in $(($(date +%s) - t0)) s"; exit 0; fi
fi
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$(nproc)" -R '^(cuda\.|cli\.bench_cuda\.)'
echo "cuda_test: passed in $(($(date +%s) - t0)) s"
