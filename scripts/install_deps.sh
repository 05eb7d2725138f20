#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages sketchsgd's build, tests, benchmarks, docs and
# examples use. Skips apt entirely when everything is already there.
#   bash scripts/install_deps.sh [python] [libtorch]
set -euo pipefail

packages=(
  build-essential cmake
  catch2 libbenchmark-dev
  doxygen graphviz
  libboost-dev libssl-dev libopenmpi-dev openmpi-bin
  dataset-fashion-mnist zlib1g-dev
  python3
  clang-14 libclang-rt-14-dev llvm-14 openssl
)
# Groups named as arguments add what else a suite needs:
#   python    the Python package (python/): its build and tests
#   libtorch  the LibTorch example (scripts/libtorch_smoke.sh)
for group in "$@"; do
  case "$group" in
    python) packages+=(python3-torch python3-numpy python3-pybind11 pybind11-dev python3-pip python3-setuptools
                       python3-wheel python3-pytest) ;;
    libtorch) packages+=(libtorch-dev) ;;
    *) echo "install_deps: unknown group '$group' (python, libtorch)" >&2; exit 2 ;;
  esac
done

missing_packages() {
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
}
missing_packages
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
# One install at a time: a caller may run this in the background (CI installs
# the Python and LibTorch packages while the suite compiles) and again in the
# foreground, which then waits here and finds them present.
exec 9>>/tmp/sketchsgd-install-deps.lock
flock 9
missing_packages
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present (installed by another install_deps.sh)"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
  # No terminal on standard input (a background install): never prompt for a
  # password, fail instead (the caller's foreground install asks).
  [ -t 0 ] || sudo_cmd=(sudo -n)
fi
echo "install_deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
