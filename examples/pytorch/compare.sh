#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The PyTorch comparison of docs/results.md: DDP on Fashion-MNIST (W = 4
# processes, gloo) with the default allreduce, torch's fp16_compress_hook (the
# 16-bit baseline; gloo in torch 1.13 refuses bfloat16), PowerSGD of rank 1, 2 and 4,
# and sketchsgd's sketch hook (Sketched-SGD) at 10x, 20x, 37x (PowerSGD rank
# 1's bytes) and 50x, 3 epochs, learning rate 0.1 and momentum 0.5 for every
# hook (train.py's defaults), seeds 1-3; then a table and a plot.
#   bash examples/pytorch/compare.sh [out-dir]   (about 30 minutes on 2 cores)
# Needs the package installed (bash scripts/python_test.sh installs it into
# build-test/python; PYTHONPATH is set to that unless given).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-build-test/pytorch-compare}"
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-$PWD/build-test/python}"
seeds="${SEEDS:-1 2 3}"
configs=("--hook allreduce" "--hook fp16" "--hook powersgd --rank-powersgd 1" "--hook powersgd --rank-powersgd 2"
         "--hook powersgd --rank-powersgd 4" "--hook sketch --compression 10" "--hook sketch --compression 20"
         "--hook sketch --compression 37" "--hook sketch --compression 50")
: >"$out/results.jsonl"
for seed in $seeds; do
  for c in "${configs[@]}"; do
    echo "compare: $c --seed $seed"
    # torch.distributed.run of Debian's torch 1.13 under Python 3.11 needs
    # --redirects/--tee of 1 or 2 (its default 0 no longer parses).
    # shellcheck disable=SC2086
    /usr/bin/python3 -m torch.distributed.run --redirects 1 --tee 1 --nproc_per_node 4 \
      examples/pytorch/train.py $c --seed "$seed" "${@:2}" 2>"$out/last.err" |
      sed -n 's/^\[default0\]:RESULT //p' | tee -a "$out/results.jsonl"
  done
done
/usr/bin/python3 examples/pytorch/summary.py "$out/results.jsonl" >"$out/results.md"
gnuplot -e "data='$out/summary.dat'; out='$out/accuracy_vs_bytes.png'" examples/pytorch/plot.gp
cat "$out/results.md"
