#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages sketchsgd's build, tests, benchmarks, docs and
# examples use (with `python`: also the Python package's). Skips apt entirely
# when everything is already there.
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
# `install_deps.sh python`: also what the Python package (python/) builds and tests with.
if [ "${1:-}" = python ]; then
  packages+=(python3-torch python3-numpy python3-pybind11 pybind11-dev python3-pip python3-setuptools
             python3-wheel python3-pytest)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
echo "install_deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
