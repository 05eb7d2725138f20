#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/step_model.py's communication model against the library: for every
method and W = 2..8 in-process ranks (non-powers of two included), the bytes
per rank the model says must equal the bytes bench_step_time counts (its
mean over the ranks), and the model's rounds must match the collectives' own
byte formula at the recursive-doubling / ring switch.

    test_step_model.py BENCH_STEP_TIME
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_model as sm  # noqa: E402


def main() -> int:
    bench = sys.argv[1]
    failures = 0
    for d in (1000, 200_000):  # the sketch's allreduce by recursive doubling, then by the ring
        for w in (2, 3, 4, 5, 8):
            for m in sm.METHODS:
                how = ["--method", m] if m != "global-sketch-rd" else ["--method", "global-sketch", "--sketch-allreduce", "rd"]
                line = subprocess.run([bench, "--transport", "inproc", "--workers", str(w), "--d", str(d),
                                       "--steps", "1", "--warmup", "0"] + how, check=True, capture_output=True,
                                      text=True).stdout.strip().splitlines()[-1]
                f = line.split(",")
                measured, k = float(f[11]), float(f[5])
                shape = sm.default_shape(d, k, P=0 if m.startswith("global") else 4)
                _, model = sm.communication(m, shape, w, 1e-5, 1e9)
                ok = abs(model - measured) <= 0.5  # bench_step_time prints the mean rounded to a byte
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {m:14} d={d:7} W={w}: model {model:.1f} bytes, counted {measured:.0f}")
    print(f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
