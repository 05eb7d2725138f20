#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs fault_mpi under mpiexec and judges the outcome (see fault_mpi.cpp).
#   fault_mpi.sh SCENARIO FAULT_MPI_EXE MPIEXEC NP
set -uo pipefail
scenario="$1" exe="$2" mpiexec="$3" np="$4"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
start=$(date +%s%N)
timeout 120 "$mpiexec" -n "$np" --oversubscribe "$exe" "$scenario" "$dir" > "$dir/log" 2>&1 &
job=$!
if [ "$scenario" = kill ]; then
  # Rank 1 dies at a random moment of its training loop.
  for _ in $(seq 1 400); do [ -s "$dir/pid1" ] && break; sleep 0.05; done
  delay_ms=$(( 100 + RANDOM % 1400 ))
  sleep "$(awk -v m="$delay_ms" 'BEGIN { printf "%.3f", m / 1000 }')"
  if [ -s "$dir/pid1" ]; then
    kill -KILL "$(cat "$dir/pid1")" && echo "fault_mpi.sh: SIGKILLed rank 1 ${delay_ms} ms into its run"
  fi
  start=$(date +%s%N)  # from the kill
fi
wait "$job"
rc=$?
elapsed=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
echo "fault_mpi.sh: scenario $scenario, $np ranks: mpiexec exited $rc after $elapsed s"
grep -E "fault_mpi rank|exited on signal|killed|not finalized|aborted" "$dir/log" | head -20
fail() { echo "fault_mpi.sh: FAILED: $*"; cat "$dir/log"; exit 1; }
[ "$rc" -eq 124 ] && fail "the job hung (killed by timeout after 120 s)"
kind() { [ -f "$dir/rank$1" ] && head -1 "$dir/rank$1" | cut -d' ' -f1 || echo missing; }
field() { head -1 "$dir/rank$1" | cut -d' ' -f"$2"; }
case "$scenario" in
  kill | kill_self)
    [ "$rc" -ne 0 ] || fail "mpiexec reported success although rank 1 was killed"
    for r in $(seq 0 $((np - 1))); do
      [ "$(kind "$r")" = done ] && fail "rank $r finished the run without rank 1"
    done
    awk -v e="$elapsed" 'BEGIN { exit !(e < 60) }' || fail "the job took $elapsed s to end"
    ;;
  slow)
    for r in $(seq 1 $((np - 1))); do
      k="$(kind "$r")"
      [ "$k" = timeout_error ] || fail "rank $r reported '$k', expected timeout_error"
      [ "$(field "$r" 2)" = 10 ] || fail "rank $r failed at step $(field "$r" 2), expected 10"
      s="$(field "$r" 3)"
      awk -v s="$s" 'BEGIN { exit !(s >= 0.5 && s <= 2.5) }' || fail "rank $r timed out after $s s, expected ~1 s"
    done
    [ "$(kind 0)" = done ] && fail "the slow rank finished the run"
    ;;
  nan)
    [ "$rc" -eq 0 ] || fail "mpiexec exited $rc"
    for r in $(seq 0 $((np - 1))); do
      [ "$(kind "$r")" = nonfinite_error ] || fail "rank $r reported '$(kind "$r")', expected nonfinite_error"
      [ "$(field "$r" 2)" = 5 ] || fail "rank $r threw at step $(field "$r" 2), expected 5"
    done
    ;;
  *) fail "unknown scenario $scenario" ;;
esac
echo "fault_mpi.sh: scenario $scenario passed"
