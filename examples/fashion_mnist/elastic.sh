#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fashion-MNIST over an elastic TCP world (docs/reliability.md, "Elastic"):
# for each seed, an uninterrupted run of 4 worker processes, and a run in
# which the worker holding rank 2 is SIGKILLed mid-epoch (after step 400 of
# 1,404), the other three go on at W = 3, and a new process joins after
# step 800 (back to W = 4). A sketchsgd_rendezvous forms every generation.
# Prints one line per run: the final accuracy and, for the interrupted run,
# the seconds from the SIGKILL to the last survivor's resume.
#   examples/fashion_mnist/elastic.sh BUILD_DIR OUT_DIR [SEEDS] [trainer flags...]
#   (SEEDS: "1 2 3"; flags: --method sketched --compression 10)
# KILL_AT and JOIN_AT (400, 800; multiples of 10, the steps rank 0 reports
# progress at) move the kill and the join (ctest's smoke run: 20 and 40 with
# --max-steps 200); RUNS ("plain killed") picks the runs (ctest: killed).
# Exits 1 if a run fails, prints no result, or (killed) does not go
# 4 -> 3 -> 4; 77 without the data.
set -euo pipefail
build="${1:?usage: $0 BUILD_DIR OUT_DIR [SEEDS] [trainer flags...]}"
out="${2:?usage: $0 BUILD_DIR OUT_DIR [SEEDS] [trainer flags...]}"
seeds="${3:-1 2 3}"
shift $(( $# < 3 ? $# : 3 ))
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--method sketched --compression 10)
kill_at="${KILL_AT:-400}"
join_at="${JOIN_AT:-800}"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "elastic.sh: no Fashion-MNIST data" >&2; exit 77; }
trainer="$build/examples/fashion_mnist/fashion_mnist"
rendezvous="$build/examples/rendezvous/sketchsgd_rendezvous"
mkdir -p "$out"
pids=()
trap 'kill -9 ${pids[*]:-} 2>/dev/null || true' EXIT

wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds, or fail
  local limit=$(( $(date +%s) + $1 ))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$limit" ] || { echo "elastic.sh: timed out waiting for: $*" >&2; return 1; }
    sleep 0.05
  done
}
reached() { grep -q "^elastic: step $1, " "$dir"/w*.err 2>/dev/null; }
resumed_all() { [ "$(grep -l 'resumed at step .* W = 3 ' "$dir"/w*.err 2>/dev/null | wc -l)" -ge 3 ]; }

run() {  # run SEED plain|killed
  local seed=$1 kind=$2
  dir="$out/seed$seed-$kind"
  rm -rf "$dir" && mkdir -p "$dir"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/secret"
  export SKETCHSGD_SECRET_FILE="$dir/secret"
  local least=4
  [ "$kind" = killed ] && least=3
  "$rendezvous" --port-file "$dir/port" --min-workers "$least" --max-workers 4 --join-timeout-ms 20000 \
    --settle-ms 2000 2> "$dir/rendezvous.err" &
  local rdv=$!
  pids=("$rdv")
  wait_for 10 test -s "$dir/port"
  export SKETCHSGD_RENDEZVOUS="127.0.0.1:$(cat "$dir/port")"
  local workers=()
  for i in 0 1 2 3; do
    SKETCHSGD_NAME="w$i" "$trainer" --transport tcp-elastic --seed "$seed" "${flags[@]}" \
      > "$dir/w$i.out" 2> "$dir/w$i.err" &
    workers+=($!)
    pids+=($!)
  done
  local note=""
  if [ "$kind" = killed ]; then
    wait_for 600 reached "$kill_at"
    local victim
    victim=$(grep -l "generation 1: rank 2 of 4" "$dir"/w*.err | head -1 | sed 's/.*\/w\([0-9]\)\.err/\1/')
    local killed_at
    killed_at=$(date +%s.%N)
    kill -9 "${workers[$victim]}"
    wait_for 60 resumed_all
    local last
    last=$(grep -h 'resumed at step .* W = 3 ' "$dir"/w*.err | sed 's/.*wall //' | sort -n | tail -1)
    note=$(awk -v a="$killed_at" -v b="$last" 'BEGIN { printf "resumed %.3f s after the SIGKILL (worker w%s)", b - a, "'"$victim"'" }')
    wait_for 600 reached "$join_at"
    SKETCHSGD_NAME="w4" "$trainer" --transport tcp-elastic --seed "$seed" "${flags[@]}" \
      > "$dir/w4.out" 2> "$dir/w4.err" &
    workers+=($!)
    pids+=($!)
    unset "workers[$victim]"
  fi
  local status=0
  for p in "${workers[@]}"; do wait "$p" || status=$?; done
  kill "$rdv" 2>/dev/null || true
  wait "$rdv" 2>/dev/null || true
  local result
  result=$(grep -h '^RESULT' "$dir"/w*.out || true)
  local generations
  generations=$(grep -h "^elastic: generation [0-9]*: rank 0 " "$dir"/w*.err | sed 's/elastic: generation \([0-9]*\): rank 0 of \([0-9]*\).*/\1:W=\2/' | sort -n | tr '\n' ' ')
  echo "seed $seed $kind: status $status, generations ${generations}${note:+, $note}"
  echo "  $result"
  local want="1:W=4 "
  [ "$kind" = killed ] && want="1:W=4 2:W=3 3:W=4 "
  if [ "$status" -ne 0 ] || [ -z "$result" ] || [ "$generations" != "$want" ]; then
    echo "elastic.sh: seed $seed $kind failed (logs in $dir)" >&2
    failed=1
  fi
}
failed=0

for seed in $seeds; do
  for kind in ${RUNS:-plain killed}; do run "$seed" "$kind"; done
done
exit $failed
