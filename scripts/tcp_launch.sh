#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Starts W local processes of a program as the ranks of one TCP job.
#   scripts/tcp_launch.sh -n W [--timeout SECONDS] [--root-host H] [--prefix CMD] -- program [args...]
# Rank 0 listens on a free port of 127.0.0.1 (or H) and publishes it through a file;
# the others are started once it is known. Every rank gets SKETCHSGD_RANK,
# SKETCHSGD_SIZE, SKETCHSGD_TCP_ROOT and a fresh random SKETCHSGD_SECRET_FILE.
# If any rank fails, the others are stopped; the exit status is the first
# failing rank's (or 124 on timeout). --prefix runs each rank under CMD with
# {rank} replaced by its number (bench/netns_cluster.sh: "ip netns exec ns-{rank}").
set -uo pipefail

usage() { echo "usage: $0 -n W [--timeout SECONDS] [--root-host H] [--prefix CMD] -- program [args...]" >&2; exit 2; }
world=""
limit=600
root_host=127.0.0.1
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) world="$2"; shift 2 ;;
    --timeout) limit="$2"; shift 2 ;;
    --root-host) root_host="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ -n "$world" ] && [ "$world" -ge 1 ] && [ $# -ge 1 ] || usage

dir="$(mktemp -d)"
trap 'kill ${pids[*]:-} 2>/dev/null; rm -rf "$dir"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/secret"
chmod 600 "$dir/secret"

prefix_of() { read -r -a pre <<< "${prefix//\{rank\}/$1}"; }  # sets pre: the command to run rank $1 under
pids=()
prefix_of 0
SKETCHSGD_RANK=0 SKETCHSGD_SIZE="$world" SKETCHSGD_TCP_ROOT="$root_host:0" SKETCHSGD_SECRET_FILE="$dir/secret" \
  SKETCHSGD_TCP_PORT_FILE="$dir/port" "${pre[@]}" "$@" &
pids+=($!)
if [ "$world" -gt 1 ]; then
  for _ in $(seq 1 1200); do [ -s "$dir/port" ] && break; sleep 0.05; done  # 60 s: a Python rank imports torch first
  if [ ! -s "$dir/port" ]; then echo "tcp_launch: rank 0 did not start listening" >&2; exit 1; fi
  port="$(cat "$dir/port")"
  for rank in $(seq 1 $((world - 1))); do
    prefix_of "$rank"
    SKETCHSGD_RANK="$rank" SKETCHSGD_SIZE="$world" SKETCHSGD_TCP_ROOT="$root_host:$port" \
      SKETCHSGD_SECRET_FILE="$dir/secret" "${pre[@]}" "$@" &
    pids+=($!)
  done
fi

# Wait for all; on the first failure stop the rest.
status=0
deadline=$(( $(date +%s) + limit ))
remaining=${#pids[@]}
declare -A finished=()
while [ "$remaining" -gt 0 ]; do
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    [ -n "${finished[$pid]:-}" ] && continue
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"; code=$?
      finished[$pid]=1
      remaining=$((remaining - 1))
      if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$code
        echo "tcp_launch: rank $i exited with $code; stopping the others" >&2
        for p in "${pids[@]}"; do [ -z "${finished[$p]:-}" ] && kill "$p" 2>/dev/null; done
      fi
    fi
  done
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "tcp_launch: timed out after $limit s" >&2
    kill "${pids[@]}" 2>/dev/null
    exit 124
  fi
  sleep 0.05
done
exit "$status"
