#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Python package's suite: installs its Debian prerequisites (PyTorch 1.13,
# pybind11, pytest), installs the package from python/ into a scratch folder
# with pip (no network: --no-build-isolation), and runs its tests against that
# install: the extension alone, then DDP with the sketch hook over real gloo
# process groups of 2 and 3 processes on loopback (about 1.5 minutes).
#   bash scripts/python_test.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${1:-build-test}")/python"
python=/usr/bin/python3 # Debian's, whose site-packages hold torch (a pyenv one may shadow it)
t0=$(date +%s)
stamp() { echo "python_test: $1 after $(($(date +%s) - t0)) s"; }

bash scripts/install_deps.sh python
rm -rf "$target" python/build
SKETCHSGD_BUILD_JOBS="$(nproc)" "$python" -m pip install --quiet --root-user-action=ignore --no-build-isolation --no-deps \
  --target "$target" ./python
stamp "package built and installed in $target"
PYTHONPATH="$target" "$python" -m pytest -q -p no:cacheprovider python/tests
stamp "tests passed"
