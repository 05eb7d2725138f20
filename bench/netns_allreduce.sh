#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Allreduce throughput of the TCP and MPI transports when the loopback is
# shaped to a given rate: creates a network namespace of its own, brings its
# loopback up, shapes it with `tc ... tbf`, runs the benchmark inside, and
# removes the namespace at exit. Needs root; all traffic stays in the
# namespace. Note that every rank shares the one shaped device, so the rate
# is the aggregate of all ranks' traffic (a shared link, not one per rank).
#   bench/netns_allreduce.sh BUILD_DIR [RATE=1gbit] [RANKS="2 4"] [SIZES=1,4,16]
set -euo pipefail
build="${1:?usage: $0 BUILD_DIR [RATE] [RANKS] [SIZES]}"
rate="${2:-1gbit}"
ranks="${3:-2 4}"
sizes="${4:-1,4,16}"
here="$(cd "$(dirname "$0")/.." && pwd)"
bench="$build/bench/bench_allreduce"

if [ "$(id -u)" -ne 0 ]; then
  echo "netns_allreduce: needs root for a network namespace and tc; skipping" >&2
  exit 0
fi
ns="sketchsgd-bench-$$"
ip netns add "$ns"
trap 'ip netns delete "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" ip link set lo up
# Burst above the 64 KiB loopback MTU, or tbf drops every full-size packet.
ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst 1mb latency 200ms
echo "loopback of namespace $ns shaped to $rate"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for w in $ranks; do
  ip netns exec "$ns" bash "$here/scripts/tcp_launch.sh" -n "$w" -- "$bench" --transport tcp --sizes "$sizes" --reps 3 \
    --algorithms ring
  # MPI pinned to its TCP transport on lo, so it crosses the shaped device
  # rather than shared memory.
  ip netns exec "$ns" mpiexec -n "$w" --oversubscribe --mca btl tcp,self --mca btl_tcp_if_include lo \
    "$bench" --transport mpi --sizes "$sizes" --reps 3 --algorithms native,ring | grep -v "^|---\|transport |"
done
