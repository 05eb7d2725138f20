#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs what it needs, builds everything with warnings as
# errors, and runs every test (unit, statistical, consumer projects, docs).
#   bash scripts/test.sh [build-dir]
# The LibTorch example is not built here: its suite is scripts/libtorch_smoke.sh
# (run by CI), which builds it as a standalone consumer (docs/performance.md,
# "Build and test time").
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build-test}"
jobs="$(nproc)"
t0=$(date +%s)
say() { echo "test: $* [$(($(date +%s) - t0)) s]"; }

reliability=0
if [ "${CI:-}" = true ] || [ "${SKETCHSGD_RELIABILITY:-0}" = 1 ]; then reliability=1; fi
# CUDA 13 lives outside PATH on these machines; with nvcc found the CUDA tests
# build and report as skipped when no GPU is visible.
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
extras=""
command -v nvcc >/dev/null 2>&1 && extras="$extras, the CUDA host tests (nvcc found)"
cat <<PLAN
test: what this does, and roughly how long on 2 idle cores (about 10.5 minutes in all; 626 s
      measured in CI with the packages present or cached):
  1. install missing Debian packages (none missing: instant; a fresh machine downloads them first;
     the Python stage's, PyTorch among them, in the background during step 2)
  2. configure and build everything with -Werror: the library's tests, the examples, the
     benchmarks$extras (about 6.5 minutes with nvcc present, less without)
  3. build the API reference with Doxygen, warnings as errors (seconds)
  4. run every ctest entry (about 2.5 minutes): unit, statistical, transport conformance over
     threads, TCP and MPI processes, fault injection, optimizers, consumer projects, examples, docs
  5. the Python package (python/): install PyTorch and pybind11 from Debian if missing, pip-install
     the package into the build folder and run its pytest suite, DDP over gloo included (about 1 minute)
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
  -DSKETCHSGD_BUILD_LIBTORCH_EXAMPLE=OFF
say "configured; building"
cmake --build "$build_dir" -j "$jobs"
say "built"
cmake --build "$build_dir" --target docs
say "docs built; running ctest"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
say "ctest passed"
wait "$python_deps" || echo "test: the background install of the Python packages failed ($build_dir/install_deps_python.log); trying again"
bash scripts/python_test.sh "$build_dir"
say "Python package tests passed"
# Reliability stages (docs/reliability.md): in CI, or when asked for with
# SKETCHSGD_RELIABILITY=1.
if [ "$reliability" = 1 ]; then
  bash scripts/sanitizers.sh
  say "sanitizers passed"
  bash scripts/fuzz.sh
  say "fuzzing passed"
fi
