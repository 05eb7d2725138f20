#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# --global-batch G gives each of W workers G / W examples; --budget-workers 4
# sizes the sketch and k for W = 4 and keeps them at W = 8, so only the
# collectives' own growth with W changes the bytes: the ring allreduce of the
# table sends 2 (W-1)/W of it, 1.5 -> 1.75 of it from W = 4 to 8.
#   scaling_options.sh FASHION_MNIST
set -euo pipefail
fm="${1:?usage: $0 FASHION_MNIST}"
field() { grep -o " $1=[^ ]*" <<< "$2" | cut -d= -f2; }
run() { "$fm" --method sketched --compression 10 --budget-workers 4 --global-batch 64 --max-steps 3 --quiet "$@" | tail -1; }
four=$(run --workers 4)
eight=$(run --workers 8)
unsized=$("$fm" --method sketched --compression 10 --workers 8 --global-batch 64 --max-steps 3 --quiet | tail -1)
echo "$four"; echo "$eight"; echo "$unsized"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(field batch "$four")" = 16 ] || fail "W = 4 should take 64 / 4 = 16 examples a worker"
[ "$(field batch "$eight")" = 8 ] || fail "W = 8 should take 64 / 8 = 8 examples a worker"
[ "$(field k "$four")" = "$(field k "$eight")" ] && [ "$(field cols "$four")" = "$(field cols "$eight")" ] ||
  fail "--budget-workers 4 should keep k and cols at W = 8"
[ "$(field cols "$unsized")" != "$(field cols "$four")" ] || fail "without --budget-workers, W = 8 is sized for itself"
# Bytes: the table and the P k second round by the ring (x 2 (W-1)/W), the bias allreduce and the 8-byte NaN check
# by the ring / recursive doubling; the ratio must sit between the ring's 1.75 / 1.5 and recursive doubling's 3 / 2.
python3 - "$(field bytes "$four")" "$(field bytes "$eight")" <<'PY'
import sys
four, eight = map(int, sys.argv[1:])
ratio = eight / four
print(f"bytes W=8 / W=4: {ratio:.4f}")
sys.exit(0 if 1.75 / 1.5 <= ratio < 1.5 else 1)
PY
