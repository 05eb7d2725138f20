#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Issue 27's question, asked of a real-sized model: does the job reach its
# accuracy sooner? DDP (gloo) on Fashion-MNIST with a 5.8M-parameter MLP
# (examples/pytorch/train.py --model mlp), W = 4 processes, each in a network
# namespace of its own with its own tbf-shaped link (bench/netns_cluster.sh),
# for DDP's allreduce, torch's fp16_compress_hook, PowerSGD (rank chosen to
# move the sketch hook's bytes) and the sketch hook (Sketched-SGD, FetchSGD)
# at 10x; test accuracy every EVAL_EVERY steps against training time and
# bytes. Then a table (bench/python/time_to_accuracy.py) and, with gnuplot,
# the plots (accuracy against time and against bytes, per rate).
#   sudo bench/python/time_to_accuracy.sh [out-dir]
# Environment: RATES ("1gbit 10gbit"), SEEDS ("1"), STEPS (500), EVAL_EVERY
# (50), TARGET (0.84: the accuracy whose time is reported), CONFIGS (one
# train.py option set per line; default: the five above). Needs root and the
# package installed (bash scripts/python_test.sh; PYTHONPATH defaults to
# build-test/python). 4 to 14 minutes a run on 2 cores (PowerSGD the longest).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-build-test/time-to-accuracy}"
mkdir -p "$out"
python_path="$(realpath -m "${PYTHONPATH:-build-test/python}")"
rates="${RATES:-1gbit 10gbit}"
seeds="${SEEDS:-1}"
steps="${STEPS:-500}"
eval_every="${EVAL_EVERY:-50}"
# PowerSGD rank 80 moves about what the sketch hook at 10x does on this MLP:
# (784 + 2048 + 2 * 2048) r floats for its two big matrices, the 2048 x 10
# layer and the biases uncompressed (min_compression_rate 2), against
# 5,824,522 / 10.
default_configs="--hook allreduce
--hook fp16
--hook powersgd --rank-powersgd 80 --one-bucket
--hook sketch --method sketched --compression 10
--hook sketch --method fetchsgd --compression 10 --cols-per-k 4"
configs="${CONFIGS:-$default_configs}"
common=(--model mlp --max-steps "$steps" --eval-every "$eval_every" --eval-images 2000 --start-iter 50)
for seed in $seeds; do
  for rate in $rates; do
    while IFS= read -r config; do
      [ -n "$config" ] || continue
      echo "time_to_accuracy: $rate, seed $seed: $config" >&2
      # shellcheck disable=SC2086
      { bash bench/netns_cluster.sh -n 4 --rate "$rate" --timeout 3600 -- \
        env GLOO_SOCKET_IFNAME=eth0 PYTHONPATH="$python_path" /usr/bin/python3 examples/pytorch/train.py \
        "${common[@]}" $config --seed "$seed" --label "$rate" </dev/null 2>>"$out/stderr.log" |
        sed -n 's/^RESULT //p' | tee -a "$out/results.jsonl"; } || echo "time_to_accuracy: that run failed ($?)" >&2
    done <<<"$configs"
  done
done
/usr/bin/python3 bench/python/time_to_accuracy.py "$out/results.jsonl" --target "${TARGET:-0.84}" --plots "$out" |
  tee "$out/results_$(echo "${TARGET:-0.84}" | cut -c3-).md"
if command -v gnuplot >/dev/null; then gnuplot "$out/plot.gp"; fi
