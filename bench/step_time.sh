#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The step-time table of docs/performance.md in one command:
#   sudo bench/step_time.sh BUILD_DIR [OUT_DIR]
# For each loopback rate (unshaped, 25gbit, 10gbit, 1gbit) it runs every method over
# TCP and MPI processes (W = 2 and 4) at d = 10M and 50M inside a network
# namespace of its own, shaped with tc tbf, and removes the namespace at
# exit. All traffic stays in the namespace. Needs root (namespace, tc); says
# so and exits cleanly without it. Environment: RATES, TRANSPORTS, WORLDS,
# DIMS, METHODS, STEPS to run a subset; BENCH_ARGS adds options to every run
# (e.g. "--rows 5 --cols-per-k 3.8 --overlap") and LABEL_SUFFIX marks them.
set -uo pipefail
build="${1:?usage: $0 BUILD_DIR [OUT_DIR]}"
out="${2:-$build/step-time}"
rates="${RATES:-unshaped 25gbit 10gbit 1gbit}"
transports="${TRANSPORTS:-tcp mpi}"
worlds="${WORLDS:-2 4}"
dims="${DIMS:-10000000 50000000}"
methods="${METHODS:-dense dense-bf16 dense-fp16 sketched fetchsgd global-sketch local-topk gtopk}"
steps="${STEPS:-3}"
read -r -a bench_args <<< "${BENCH_ARGS:-}"
label_suffix="${LABEL_SUFFIX:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"
bench="$build/bench/bench_step_time"

if [ "$(id -u)" -ne 0 ]; then
  echo "step_time.sh: needs root for a network namespace and tc; nothing measured" >&2
  exit 0
fi
ns="sketchsgd-step-$$"
if ! ip netns add "$ns" 2>/dev/null; then
  echo "step_time.sh: cannot create a network namespace here; nothing measured" >&2
  exit 0
fi
trap 'ip netns delete "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" ip link set lo up
mkdir -p "$out"
csv="$out/step_time.csv"
echo "label,transport,method,W,d,k,step_s,compute_s,communicate_s,compress_s,recover_s,bytes_per_rank,read_g_s,fused_pass_s,floor_s,compute_over_floor,compute_over_fused_pass,page_faults_per_step" > "$csv"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

for rate in $rates; do
  ip netns exec "$ns" tc qdisc del dev lo root 2>/dev/null || true
  if [ "$rate" != "unshaped" ]; then
    # Burst above the 64 KiB loopback MTU, or tbf drops every full-size packet.
    # Bucket near rate / HZ (250): a larger one would let a whole sketch step through unshaped.
    burst=1mb
    [ "$rate" = 10gbit ] && burst=8mb
    [ "$rate" = 25gbit ] && burst=16mb
    ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst "$burst" latency 500ms
  fi
  for transport in $transports; do
    for w in $worlds; do
      for d in $dims; do
        for method in $methods; do
          args=(--transport "$transport" --method "$method" --d "$d" --steps "$steps" --label "$rate$label_suffix"
                "${bench_args[@]}")
          if [ "$transport" = tcp ]; then
            line=$(ip netns exec "$ns" bash "$here/scripts/tcp_launch.sh" -n "$w" --timeout 1800 -- "$bench" "${args[@]}" 2>/dev/null | tail -1)
          else
            # MPI pinned to TCP on lo, so its traffic crosses the shaped device.
            line=$(ip netns exec "$ns" mpiexec -n "$w" --oversubscribe --mca btl tcp,self --mca btl_tcp_if_include lo \
              "$bench" "${args[@]}" 2>/dev/null | tail -1)
          fi
          echo "$line" | tee -a "$csv"
        done
      done
    done
  done
done
python3 "$here/bench/step_time_table.py" "$csv" "$out"
if command -v gnuplot > /dev/null; then
  gnuplot -e "dir='$out'; png='$out/step_time_vs_bandwidth.png'" "$here/bench/step_time_plot.gp"
fi
echo "step_time.sh: wrote $csv and $out/step_time.md"
