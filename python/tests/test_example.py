# SPDX-License-Identifier: Apache-2.0
"""examples/pytorch/train.py runs under torch.distributed.run (2 ranks, a few steps)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from sketchsgd.local import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "pytorch" / "train.py"


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist missing")
def test_example_trains_and_reports():
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--redirects", "1", "--tee", "1", "--nproc_per_node", "2",
         "--master_port", str(free_port()), str(TRAIN), "--hook", "sketch", "--method", "fetchsgd",
         "--max-steps", "30", "--start-iter", "10"],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line.split("RESULT ", 1)[1] for line in run.stdout.splitlines() if "RESULT " in line]
    assert len(lines) == 1, run.stdout[-3000:]
    result = json.loads(lines[0])
    assert result["steps"] == 30 and result["identical"] and result["world"] == 2
    assert 0.1 < result["accuracy"] <= 1.0
    # The hook's own count is what the process wrote, but for DDP's own setup traffic.
    assert 0 < result["hook_wire_bytes"] <= result["bytes_written_per_rank"] < result["hook_wire_bytes"] + 4096


def test_example_refuses_bad_options():
    run = subprocess.run([sys.executable, str(TRAIN), "--compression", "-3"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "--compression" in run.stderr and "positive" in run.stderr


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist missing")
def test_example_curve_on_the_mlp_in_one_bucket():
    """The study's options (bench/python/time_to_accuracy.sh): the MLP, PowerSGD
    in one bucket (torch 1.13's aborts over gloo with several), an
    evaluation every 3 steps whose time is not training time."""
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--redirects", "1", "--tee", "1", "--nproc_per_node", "2",
         "--master_port", str(free_port()), str(TRAIN), "--model", "mlp", "--width", "64", "--hook", "powersgd",
         "--rank-powersgd", "2", "--one-bucket", "--max-steps", "7", "--start-iter", "2", "--eval-every", "3",
         "--eval-images", "500", "--label", "loopback"],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(next(line.split("RESULT ", 1)[1] for line in run.stdout.splitlines() if "RESULT " in line))
    assert result["parameters"] == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10 and result["identical"]
    assert result["label"] == "loopback" and [p["step"] for p in result["curve"]] == [3, 6, 7]
    seconds = [p["seconds"] for p in result["curve"]]
    assert 0 < seconds[0] < seconds[1] < seconds[2] and all(0 <= p["accuracy"] <= 1 for p in result["curve"])
    assert result["seconds_per_step"] * 7 == pytest.approx(seconds[2], rel=0.01)  # evaluations not counted


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist missing")
def test_example_under_tcp_launch():
    """Ranks started by scripts/tcp_launch.sh, as bench/netns_cluster.sh starts
    them (one namespace each), take torch's rank, world size and rendezvous
    from its SKETCHSGD_* variables: rank 0 publishes the store's port."""
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tcp_launch.sh"), "-n", "2", "--timeout", "170", "--", "env",
         f"MASTER_PORT={free_port()}", sys.executable, str(TRAIN), "--hook", "sketch", "--method", "sketched",
         "--max-steps", "6", "--start-iter", "2"],
        capture_output=True, text=True, timeout=180,
        env={k: v for k, v in dict(os.environ, OMP_NUM_THREADS="1").items()
             if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")})
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(line.split("RESULT ", 1)[1]) for line in run.stdout.splitlines() if "RESULT " in line]
    assert len(results) == 1, run.stdout[-3000:]  # rank 0's only
    assert results[0]["world"] == 2 and results[0]["steps"] == 6 and results[0]["identical"]


def test_example_exits_when_shutdown_hangs():
    """train.py's exit_within: a rank stuck at shutdown prints where it hangs
    and exits with 1 instead of holding a study's next run."""
    code = (f"import sys, time; sys.path.insert(0, {str(TRAIN.parent)!r}); import train; "
            "train.exit_within(1); time.sleep(120)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Timeout (0:00:01)!" in run.stderr and 'File "<string>", line 1 in <module>' in run.stderr, run.stderr
