#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The published scaling tables are what the scripts compute from the
published raw files: docs/results/scaling/validation.md and .csv from its
compute, latency, rig_compute and measured CSVs (bench/scaling_table.py
validate), and prediction.csv and prediction_gpu_model.csv from compute.csv
and stream_read.json (bench/step_model.py as bench/scaling.sh runs it: its
defaults, and --gpu-model); and docs/results/time_to_accuracy's tables from
its RESULT lines (bench/python/time_to_accuracy.py). Fails, naming the
file, when the scripts or the data drift.

    test_scaling_tables.py [RESULTS_DIR]
"""
import os
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
PUBLISHED_RUN_CORES = 2  # nproc of the machine of the published run (the earlier rule's column)


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
        subprocess.run([sys.executable, os.path.join(here, "scaling_table.py"), "validate", out,
                        "--cores", str(PUBLISHED_RUN_CORES)], check=True, stdout=subprocess.DEVNULL)
        for name in ("validation.md", "validation.csv"):
            ok &= same(name, os.path.join(out, name), os.path.join(results, name))
        model = [sys.executable, os.path.join(here, "step_model.py"), "--compute", os.path.join(out, "compute.csv")]
        for name, extra in (("prediction.csv", []),
                            ("prediction_gpu_model.csv", ["--gpu-model", os.path.join(results, "stream_read.json")])):
            with open(os.path.join(out, name), "w") as f:
                subprocess.run(model + extra, check=True, stdout=f, stderr=subprocess.DEVNULL)
            ok &= same(name, os.path.join(out, name), os.path.join(results, name))
        # An output folder of an older scaling.sh (no rig_compute.csv) is refused by name, not with a traceback.
        os.remove(os.path.join(out, "rig_compute.csv"))
        old = subprocess.run([sys.executable, os.path.join(here, "scaling_table.py"), "validate", out],
                             capture_output=True, text=True)
        refused = old.returncode != 0 and "rig_compute.csv is missing" in old.stderr and "Traceback" not in old.stderr
        print(f"{'ok  ' if refused else 'FAIL'} a folder without rig_compute.csv: "
              f"{'refused' if refused else 'exit ' + str(old.returncode) + ': ' + old.stderr.strip()[-200:]}")
        ok &= refused
    # docs/results/time_to_accuracy: its tables from its RESULT lines (bench/python/time_to_accuracy.py).
    tta = os.path.join(results, "..", "time_to_accuracy")
    with tempfile.TemporaryDirectory() as out:
        for target in ("0.84", "0.85"):
            name = f"results_{target[2:]}.md"
            with open(os.path.join(out, name), "w") as f:
                subprocess.run([sys.executable, os.path.join(here, "python", "time_to_accuracy.py"),
                                os.path.join(tta, "results.jsonl"), "--target", target], check=True, stdout=f)
            ok &= same(name, os.path.join(out, name), os.path.join(tta, name))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
