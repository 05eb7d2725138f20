#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The published scaling tables are what the scripts compute from the
published raw files: docs/results/scaling/validation.md from its
compute, latency, rig_compute and measured CSVs (bench/scaling_table.py
validate), and prediction.csv and prediction_gpu_model.csv from compute.csv
and stream_read.json (bench/step_model.py with bench/scaling.sh's
arguments). Fails, naming the file, when the scripts or the data drift.

    test_scaling_tables.py [RESULTS_DIR]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
# bench/scaling.sh's prediction: d, W, links and alpha.
MODEL_ARGS = ["--d", "25e6,100e6,1e9", "--workers", "4,8,16,32,64,128,256,512,1024", "--gbits", "1,10,25,100",
              "--latency-us", "25"]
H100_BYTES_PER_S = 3.35e12  # as in bench/scaling.sh


def same(name: str, produced: str, published: str) -> bool:
    ok = open(produced).read() == open(published).read()
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {'reproduced' if ok else 'differs from ' + published}")
    return ok


def main() -> int:
    results = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "docs", "results", "scaling")
    ok = True
    with tempfile.TemporaryDirectory() as out:
        for f in ("compute.csv", "latency.csv", "rig_compute.csv", "measured.csv"):
            shutil.copy(os.path.join(results, f), out)
        subprocess.run([sys.executable, os.path.join(here, "scaling_table.py"), "validate", out, "--cores", "2"],
                       check=True, stdout=subprocess.DEVNULL)
        ok &= same("validation.md", os.path.join(out, "validation.md"), os.path.join(results, "validation.md"))
        model = [sys.executable, os.path.join(here, "step_model.py"), "--compute", os.path.join(out, "compute.csv")]
        stream = json.load(open(os.path.join(results, "stream_read.json")))["benchmarks"][0]["bytes_per_second"]
        for name, extra in (("prediction.csv", []),
                            ("prediction_gpu_model.csv", ["--compute-scale", str(stream / H100_BYTES_PER_S)])):
            with open(os.path.join(out, name), "w") as f:
                subprocess.run(model + MODEL_ARGS + extra, check=True, stdout=f)
            ok &= same(name, os.path.join(out, name), os.path.join(results, name))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
