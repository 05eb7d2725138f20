#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The "Scaling" section of docs/performance.md in one command:
#   sudo bench/scaling.sh BUILD_DIR [OUT_DIR]
# 1. compute: bench_step_time --transport inproc, one thread, every method at
#    d = 2M, 8M, 25M on one rank, and on two (local top-k's and gTop-k's
#    merges grow with W; and two ranks on this machine share its memory
#    bandwidth, which the validation rig's ranks do too)   -> compute.csv
# 2. latency of the rig: a 1 KB allreduce (recursive doubling) on W ranks in
#    per-rank namespaces (bench/netns_cluster.sh)          -> latency.csv
# 3. the rig without its network: every method at d = 2M on W = 2, 4, 8
#    in-process ranks, one thread each (W ranks sharing this machine's
#    cores)                                               -> rig_compute.csv
# 4. validation: the same on W TCP ranks, each in its own namespace with its
#    own tbf-shaped link (100 Mbit/s and 1 Gbit/s), next to the model of the
#    rig (3. with the modelled network; bench/scaling_table.py validate);
#    3. and 4. in REPEATS passes, medians               -> validation.csv
# 5. prediction: W = 4 .. 1024, d = 25M, 100M, 1B, 1/10/25/100 Gbit/s links,
#    one core per rank (bench/step_model.py's defaults)    -> prediction.csv
# and prints the tables (bench/scaling_table.py). 7-15 minutes on 2 cores.
# Steps 2 to 4 need root (namespaces, tc); without it they are skipped.
# Environment: RATES ("100mbit 1gbit"), WORLDS ("2 4 8"), VALIDATION_D (2000000),
# STEPS (3: steps of 1.; medians), VALIDATION_STEPS (10: of 3. and 4., whose
# millisecond steps vary more), REPEATS (3), LATENCY_US (25: the prediction's alpha).
set -euo pipefail
build="${1:?usage: $0 BUILD_DIR [OUT_DIR]}"
out="${2:-$build/scaling}"
here="$(cd "$(dirname "$0")" && pwd)"
bench="$(cd "$build" && pwd)/bench/bench_step_time"
rates="${RATES:-100mbit 1gbit}"
worlds="${WORLDS:-2 4 8}"
vd="${VALIDATION_D:-2000000}"
steps="${STEPS:-3}"
vsteps="${VALIDATION_STEPS:-10}"
repeats="${REPEATS:-3}"
latency_us="${LATENCY_US:-25}"
methods="dense dense-bf16 true-topk local-topk gtopk sketched fetchsgd global-sketch"
# A method's bench_step_time options; global-sketch-rd sums gs-SGD's table by recursive doubling, as its paper does.
how() { if [ "$1" = global-sketch-rd ]; then echo "--method global-sketch --sketch-allreduce rd"; else echo "--method $1"; fi; }
mkdir -p "$out"
header="label,transport,method,W,d,k,step_s,compute_s,communicate_s,compress_s,recover_s,bytes_per_rank,read_g_s,fused_pass_s,floor_s,compute_over_floor,compute_over_fused_pass,page_faults_per_step"

echo "== compute (one thread per rank)"
echo "$header" > "$out/compute.csv"
for d in 2000000 8000000 25000000; do
  for m in $methods; do
    "$bench" --transport inproc --method "$m" --d "$d" --steps "$steps" --threads 1 >> "$out/compute.csv"
  done
  for m in $methods; do
    "$bench" --transport inproc --workers 2 --method "$m" --d "$d" --steps "$steps" --threads 1 >> "$out/compute.csv"
  done
done
cat "$out/compute.csv"

if [ "$(id -u)" -eq 0 ] && ip netns add "sketchsgd-probe-$$" 2>/dev/null; then
  ip netns delete "sketchsgd-probe-$$"
  echo "== latency: a 1 KB allreduce on W ranks, a namespace each"
  echo "$header" > "$out/latency.csv"
  for w in $worlds; do
    bash "$here/netns_cluster.sh" -n "$w" --rate 1gbit -- "$bench" --transport tcp --method dense --d 256 \
      --steps 20 --label latency | tail -1 >> "$out/latency.csv"
  done
  cat "$out/latency.csv"
  echo "$header" > "$out/rig_compute.csv"
  echo "== validation: d = $vd over TCP, a namespace and a shaped link per rank"
  echo "$header" > "$out/measured.csv"
  # Whole passes repeated (the tables take medians): a slow spell of the
  # shared host then spoils one run of a configuration, not all of them.
  for pass in $(seq "$repeats"); do
    echo "-- pass $pass of $repeats"
    for w in $worlds; do
      for m in $methods global-sketch-rd; do
        # shellcheck disable=SC2046
        "$bench" --transport inproc --workers "$w" --threads 1 $(how "$m") --d "$vd" --steps "$vsteps" --label "$m" \
          >> "$out/rig_compute.csv"
      done
    done
    for rate in $rates; do
      for w in $worlds; do
        for m in $methods global-sketch-rd; do
          # shellcheck disable=SC2046
          bash "$here/netns_cluster.sh" -n "$w" --rate "$rate" -- "$bench" --transport tcp $(how "$m") --d "$vd" \
            --steps "$vsteps" --label "$rate" | tail -1 | sed "s/,global-sketch,/,$m,/" | tee -a "$out/measured.csv"
        done
      done
    done
  done
  cat "$out/rig_compute.csv"
  python3 "$here/scaling_table.py" validate "$out" --cores "$(nproc)"
else
  echo "scaling.sh: no root or no network namespaces here: validation skipped" >&2
fi

echo "== prediction: alpha = $latency_us us, one core per rank"
python3 "$here/step_model.py" --compute "$out/compute.csv" --latency-us "$latency_us" > "$out/prediction.csv"
python3 "$here/scaling_table.py" predict "$out"
# GPU compute is not measured (no GPU here): step_model.py --gpu-model scales
# the CPU's compute by this core's streaming read over an H100's published
# memory bandwidth: an optimistic model, marked as such.
"$(dirname "$bench")/bench_count_sketch" --benchmark_filter='^stream_read/1/' --benchmark_format=json \
  > "$out/stream_read.json" 2>/dev/null
echo "== prediction with GPU compute modelled"
mkdir -p "$out/gpu-model"
python3 "$here/step_model.py" --compute "$out/compute.csv" --latency-us "$latency_us" \
  --gpu-model "$out/stream_read.json" > "$out/gpu-model/prediction.csv"
python3 "$here/scaling_table.py" predict "$out/gpu-model"
