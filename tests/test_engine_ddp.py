"""Two-process DDP on the CPU (gloo) through the real CLI under torchrun.

Checks that evaluation counts every sample exactly once although the split size is odd (a padded
DistributedSampler would count one twice), that only rank 0 writes the run folder, and that the
sharded, all-reduced test metrics equal a single-process evaluation of the same checkpoint.
"""

import json
import os
import subprocess
import sys

import pytest

from hafcls.engine.evaluate import evaluate_checkpoint

LAUNCHER = "from hafcls.cli.main import cli\ncli()\n"


def test_two_process_cpu_ddp_counts_every_evaluation_sample_once(tmp_path):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(launcher), "train", "--data", "synthetic", "--image-size", "16",
           "--set", "data_options.branching=[3, 3]",
           "--set", "data_options.per_class={train: 5, val: 3, test: 3}",
           "--method", "haframe", "--model", "test_resnet", "--epochs", "2",
           "--batch-size", "8", "--workers", "0", "--no-progress", "--device", "cpu",
           "--output", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2" in proc.stderr  # the run saw two processes

    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # one line per epoch: rank 1 wrote nothing
    # 9 classes x 3 = 27 samples, odd: padding would have counted 28
    assert all(r["val"]["n"] == 27 for r in log)
    # training pads 45 images to 2 x 23
    assert all(r["train"]["images"] == 46 for r in log)
    final = json.loads((out / "metrics.json").read_text())
    assert final["test"]["n"] == 27

    single = evaluate_checkpoint(out, split="test", workers=0, device="cpu")
    for key, value in final["test"].items():
        expected = None if single[key] != single[key] else single[key]  # NaN is null in JSON
        assert value == pytest.approx(expected), key
