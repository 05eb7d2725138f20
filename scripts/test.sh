#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs what it needs, builds everything with warnings as
# errors, and runs every test (unit, statistical, consumer projects, docs).
#   bash scripts/test.sh [build-dir]
# Suites of their own, which CI runs: the LibTorch example
# (scripts/libtorch_smoke.sh, built as a standalone consumer) and, where no
# GPU is visible, the CUDA tests (scripts/cuda_test.sh); docs/performance.md,
# "Build and test time".
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-test}"
jobs="$(nproc)"
t0=$(date +%s)
say() { echo "test: $* [$(($(date +%s) - t0)) s]"; }

reliability=0
if [ "${CI:-}" = true ] || [ "${SKETCHSGD_RELIABILITY:-0}" = 1 ]; then reliability=1; fi
# CUDA 13 lives outside PATH on these machines. Where a GPU is visible the
# CUDA tests build and run here; without one, where the GPU tests could only
# compile and skip, the CUDA targets (a quarter of the build) are
# scripts/cuda_test.sh's suite, which CI runs.
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
cuda=OFF
if command -v nvcc >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then cuda=ON; fi
if [ "$cuda" = ON ]; then
  extras=", and the CUDA tests (a GPU is visible; add several minutes)"
elif command -v nvcc >/dev/null 2>&1; then
  extras=" (no GPU visible: the CUDA tests are scripts/cuda_test.sh's, which CI runs)"
else
  extras=""
fi
cat <<PLAN
test: what this does, and roughly how long on 2 idle cores (about 8 minutes in all, packages
      present or cached):
  1. install missing Debian packages (none missing: instant; a fresh machine downloads them first;
     the Python stage's, PyTorch among them, in the background during step 2)
  2. configure and build everything with -Werror, at -O1 (SKETCHSGD_QUICK_BUILD): the library's
     tests, the examples, the benchmarks$extras (about 4.5 minutes)
  3. build the API reference with Doxygen, warnings as errors (seconds)
  4. run every ctest entry (about 2 minutes): unit, statistical, transport conformance over
     threads, TCP and MPI processes, fault injection, optimizers, consumer projects, examples, docs
  5. the Python package (python/): install PyTorch and pybind11 from Debian if missing, pip-install
     the package into the build folder (while step 4 runs, at the lowest priority) and run its pytest
     suite, DDP over gloo included (about 1 minute)
PLAN
if [ "$reliability" = 1 ]; then
  echo "  6. CI=true or SKETCHSGD_RELIABILITY=1: the suite under ASan+UBSan and TSan, built with clang
     (about 6.5 minutes),"
  echo "     then each fuzz target for ${FUZZ_SECONDS:-60} s, two at a time (about $(( (${FUZZ_SECONDS:-60} * 3 + 90) / 60 )) minutes)"
fi

bash scripts/install_deps.sh
say "packages present"
# The Python stage's packages (PyTorch among them: large) download and unpack
# while the suite compiles; that stage waits for them (install_deps.sh's lock).
mkdir -p "$build_dir"
bash scripts/install_deps.sh python < /dev/null > "$build_dir/install_deps_python.log" 2>&1 &
python_deps=$!
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSKETCHSGD_QUICK_BUILD=ON -DSKETCHSGD_WERROR=ON \
  -DSKETCHSGD_ENABLE_CUDA="$cuda" -DSKETCHSGD_BUILD_LIBTORCH_EXAMPLE=OFF
say "configured; building"
cmake --build "$build_dir" -j "$jobs"
say "built"
cmake --build "$build_dir" --target docs
wait "$python_deps" || echo "test: the background install of the Python packages failed ($build_dir/install_deps_python.log); trying again"
# The Python extension compiles while ctest runs, at the lowest priority: it
# takes the cores only when the tests leave them idle (about a tenth of the
# time: they wait on sockets, processes and timeouts).
nice -n 19 bash scripts/python_test.sh "$build_dir" install > "$build_dir/python_install.log" 2>&1 &
python_install=$!
trap 'kill "$python_install" 2>/dev/null || true' EXIT
say "docs built; running ctest (the Python package builds meanwhile)"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
say "ctest passed"
if ! wait "$python_install"; then
  cat "$build_dir/python_install.log"
  echo "test: installing the Python package failed (above)" >&2
  exit 1
fi
trap - EXIT
say "Python package installed"
bash scripts/python_test.sh "$build_dir" test
say "Python package tests passed"
# Reliability stages (docs/reliability.md): in CI, or when asked for with
# SKETCHSGD_RELIABILITY=1.
if [ "$reliability" = 1 ]; then
  bash scripts/sanitizers.sh
  say "sanitizers passed"
  bash scripts/fuzz.sh
  say "fuzzing passed"
fi
