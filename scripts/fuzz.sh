#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets of tests/fuzz with clang 14 (ASan + UBSan,
# every finding fatal) and runs each for a bounded time from its seed corpus.
#   bash scripts/fuzz.sh [target...]      (default: every tests/fuzz/fuzz_*.cpp)
# Environment:
#   FUZZ_SECONDS    time per target (default 60)
#   FUZZ_JOBS       targets fuzzed at once (default 2: one per core)
#   FUZZ_BUILD_DIR  where binaries, work corpora, logs and crash artifacts go
#                   (default build-fuzz)
# Limits per target: -rss_limit_mb=2048 (resident memory), -malloc_limit_mb=512
# (any single allocation above it is a finding: the readers must never
# allocate from an unchecked length), -timeout=10 s per input.
# Fails on any crash, sanitizer report, broken property, leak, timeout or
# OOM; prints executions, coverage (cov: edges) and features per target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-2}"
build="${FUZZ_BUILD_DIR:-build-fuzz}"
rss_mb=2048
malloc_mb=512
unit_timeout=10
all_targets=()
for source in tests/fuzz/fuzz_*.cpp; do
  name="${source##*/fuzz_}"
  all_targets+=("${name%.cpp}")
done
targets=("${@:-${all_targets[@]}}")

cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [ -z "$cxx" ]; then
  echo "fuzz: clang++-14 not found (bash scripts/install_deps.sh installs it)" >&2
  exit 1
fi
mkdir -p "$build"
build="$(cd "$build" && pwd)"
# -g1: file:line in every report at a fraction of full debug info's build time.
flags=(-std=c++20 -O1 -g1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -Iinclude -Itransports/tcp/include)

start=$(date +%s)
echo "fuzz: building ${#targets[@]} targets with $cxx"
pids=()
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/fuzz_$t.cpp" ] || { echo "fuzz: no target '$t'" >&2; exit 2; }
  "$cxx" "${flags[@]}" "tests/fuzz/fuzz_$t.cpp" -o "$build/fuzz_$t" -lcrypto &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
echo "fuzz: built in $(( $(date +%s) - start )) s; fuzzing each target for $seconds s, $jobs at a time"

run_one() {
  local t="$1"
  local work="$build/corpus/$t"
  rm -rf "$work" "$build/artifacts/$t"
  mkdir -p "$work" "$build/artifacts/$t"
  # New inputs go to the work corpus; the committed seeds stay untouched.
  UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    timeout $((seconds + 120)) "$build/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" \
    -malloc_limit_mb="$malloc_mb" -timeout="$unit_timeout" -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t/" "$work" "tests/fuzz/corpus/$t" > "$build/fuzz_$t.log" 2>&1
}

declare -A status=()
running=()
for t in "${targets[@]}"; do
  run_one "$t" &
  running+=("$!:$t")
  if [ ${#running[@]} -ge "$jobs" ]; then
    entry="${running[0]}"; running=("${running[@]:1}")
    wait "${entry%%:*}" && status[${entry#*:}]=0 || status[${entry#*:}]=$?
  fi
done
for entry in "${running[@]}"; do
  wait "${entry%%:*}" && status[${entry#*:}]=0 || status[${entry#*:}]=$?
done

failed=0
printf '%-18s %12s %10s %8s %8s %8s %9s  %s\n' target executions exec/s cov ft corpus peak_rss result
for t in "${targets[@]}"; do
  log="$build/fuzz_$t.log"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
  last="$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -1 || true)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")"
  corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<< "$last")"
  result=ok
  if [ "${status[$t]}" -ne 0 ] || grep -qE '^==[0-9]+==.*ERROR|^SUMMARY: |fuzz property violated' "$log"; then
    result="FAILED (exit ${status[$t]}; see $log and $build/artifacts/$t/)"
    failed=1
  fi
  printf '%-18s %12s %10s %8s %8s %8s %7sMB  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" "${rss:-?}" "$result"
done
if [ "$failed" -ne 0 ]; then
  for t in "${targets[@]}"; do
    grep -E -m1 -A12 'ERROR|violated' "$build/fuzz_$t.log" 2>/dev/null | head -20 || true
  done
  echo "fuzz: FAILED" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no finding in $(( $(date +%s) - start )) s" \
  "(limits: rss ${rss_mb} MB, malloc ${malloc_mb} MB, ${unit_timeout} s per input)"
