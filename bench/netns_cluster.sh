#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A small cluster on one machine: W ranks of a sketchsgd TCP program, each in a
# network namespace of its own, joined by veth pairs to a bridge in a hub
# namespace, every link shaped with tc tbf in both directions. So bandwidth is
# per link, as between the hosts of a cluster, not one loopback shared by all.
#   sudo bench/netns_cluster.sh -n W --rate RATE [--timeout S] -- PROGRAM [ARGS...]
# RATE is tc's (100mbit, 1gbit, ...) or "unshaped". Rank r has address
# 10.77.0.(r+1); scripts/tcp_launch.sh starts them (rank r under "ip netns
# exec" of its namespace). Everything it creates is removed at exit; the
# machine's own interfaces are never touched. Needs root: without it, says so
# and exits 0 having run nothing.
set -uo pipefail
usage() { echo "usage: $0 -n W --rate RATE [--timeout S] -- PROGRAM [ARGS...]" >&2; exit 2; }
world=""
rate=""
limit=600
while [ $# -gt 0 ]; do
  case "$1" in
    -n) world="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --timeout) limit="$2"; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ -n "$world" ] && [ -n "$rate" ] && [ $# -ge 1 ] || usage
if [ "$world" -lt 1 ] || [ "$world" -gt 200 ]; then echo "netns_cluster: -n $world: allowed 1..200" >&2; exit 2; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "netns_cluster: needs root for network namespaces and tc; nothing run" >&2
  exit 0
fi

here="$(cd "$(dirname "$0")" && pwd)"
tag="ssc$$"
hub="$tag-hub"
cleanup() {
  for r in $(seq 0 $((world - 1))); do ip netns delete "$tag-$r" 2>/dev/null || true; done
  ip netns delete "$hub" 2>/dev/null || true
}
trap cleanup EXIT

# A small bucket, as a link has none: one that refills between steps lets a
# message of up to its size through at full speed (a 256 KB bucket passed a
# 150 KB sketch unshaped at 100 Mbit/s); but at least about rate / HZ (HZ =
# 250), or the rate is not reached (64 KB held a 1 Gbit/s link to 0.3-0.7 of
# it). tbf segments larger GSO packets. bench/scaling_table.py's rig_burst
# models this bucket: change both together.
case "$rate" in
  unshaped) burst="" ;;
  *gbit) burst="$(( ${rate%gbit} * 512 ))kb" ;;
  *) burst=32kb ;;
esac
ip netns add "$hub" || { echo "netns_cluster: cannot create a namespace here; nothing run" >&2; exit 0; }
# Any failure from here to the launch stops the script (the trap removes
# what was made) rather than running ranks over a half-built network.
set -e
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
for r in $(seq 0 $((world - 1))); do
  ns="$tag-$r"
  ip netns add "$ns"
  ip -n "$hub" link add "h$r" type veth peer name eth0 netns "$ns"
  ip -n "$hub" link set "h$r" master br0 up
  ip -n "$ns" addr add "10.77.0.$((r + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  if [ -n "$burst" ]; then  # uplink (rank -> bridge) and downlink (bridge -> rank)
    tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 500ms
    tc -n "$hub" qdisc add dev "h$r" root tbf rate "$rate" burst "$burst" latency 500ms
  fi
done
set +e

bash "$here/../scripts/tcp_launch.sh" -n "$world" --timeout "$limit" --root-host 10.77.0.1 --prefix "ip netns exec $tag-{rank}" \
  -- "$@"
