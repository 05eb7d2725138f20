#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Python package's suite: installs its Debian prerequisites (PyTorch 1.13,
# pybind11, pytest), installs the package from python/ into a scratch folder
# with pip (no network: --no-build-isolation), and runs its tests against that
# install: the extension alone, then DDP with the sketch hook over real gloo
# process groups of 2 and 3 processes on loopback (about 1.5 minutes).
#   bash scripts/python_test.sh [build-dir] [install|test]
# "install" only builds and installs the package, "test" only runs the tests
# against an earlier install (scripts/test.sh builds it while ctest runs).
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${1:-build-test}")/python"
stage="${2:-all}"
python=/usr/bin/python3 # Debian's, whose site-packages hold torch (a pyenv one may shadow it)
t0=$(date +%s)
stamp() { echo "python_test: $1 after $(($(date +%s) - t0)) s"; }

case "$stage" in
  all | install | test) ;;
  *) echo "python_test: the stage must be install or test, not '$stage'" >&2; exit 2 ;;
esac
bash scripts/install_deps.sh python
if [ "$stage" != test ]; then
  rm -rf "$target" python/build
  SKETCHSGD_BUILD_JOBS="$(nproc)" "$python" -m pip install --quiet --root-user-action=ignore --no-build-isolation \
    --no-deps --target "$target" ./python
  stamp "package built and installed in $target"
fi
if [ "$stage" != install ]; then
  PYTHONPATH="$target" "$python" -m pytest -q -p no:cacheprovider python/tests
  stamp "tests passed"
fi
