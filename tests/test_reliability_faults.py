"""Fault injection: a training run killed with SIGKILL anywhere resumes from a valid checkpoint
and ends exactly where an uninterrupted run ends; a NaN/inf loss stops the run within one step
with the last good checkpoint untouched.

Kills are made deterministic by a small launcher (:data:`CHILD`) that runs the real
``hafcls train`` in a fresh interpreter and SIGKILLs its own process at a chosen point: after the
N-th optimizer step, in the middle of writing ``last.pt``/``best.pt`` (half the bytes of the
temporary file written and synced), just before the atomic rename, right after an epoch's log
line but before its checkpoint, inside validation, and before ``metrics.json``. SIGKILL cannot
be caught, so the process dies exactly as under ``kill -9`` or the OOM killer. One more run is
killed from outside at a moment chosen by watching its run folder. The kill points are grouped
into chains (each resumed launch is killed at the next point) to keep the number of fresh
interpreters small. After each kill the run folder is checked (every file that exists parses,
``last.pt`` loads, progress never goes backwards), then the run is finished with
``hafcls train -o RUN --resume`` and its final metrics, ``metrics.jsonl`` and weights are
compared bit for bit with an uninterrupted run of the same seed on the CPU. A gradient that is
NaN while the loss is finite must not reach a checkpoint either.

``scripts/fault_injection.py`` runs a longer random soak of the same kind.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hafcls.cli.main import cli

#: Synthetic 4-class tree, 16 px, test_resnet: 64 train images = 8 steps of 8 per epoch.
CONFIG = {"data": "synthetic", "method": "haframe", "model": "test_resnet", "epochs": 3,
          "batch_size": 8, "image_size": 16, "workers": 0, "device": "cpu", "seed": 3,
          "progress": False, "checkpoint_every": 3, "lr": 0.05,
          "data_options": {"per_class": {"train": 16, "val": 4, "test": 4},
                           "branching": [2, 2]}}
STEPS_PER_EPOCH = 8

#: The launcher: patches one kill point into the real code, then runs the CLI.
CHILD = r'''
import io, json, os, signal, sys
from pathlib import Path

plan = json.loads(os.environ["HAFCLS_FAULT_PLAN"])
point, nth = plan["point"], plan.get("nth", 1)
counter = {"n": 0}

def hit():
    counter["n"] += 1
    return counter["n"] == nth

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

import importlib
import torch
import hafcls.io
from hafcls.engine.runs import RunFolder
T = importlib.import_module("hafcls.engine.train")  # the package re-exports a train() function

if point == "step":                      # after the nth optimizer step
    orig_backward = T.Trainer._backward
    def _backward(self, loss):
        orig_backward(self, loss)
        if hit():
            die()
    T.Trainer._backward = _backward
elif point in ("write-last", "write-best"):   # half-way through writing the temp file
    target = "." + ("last.pt" if point == "write-last" else "best.pt") + "."
    orig_save = torch.save
    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and Path(f).name.startswith(target) and hit():
            buf = io.BytesIO()
            orig_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            with open(f, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
            die()
        return orig_save(obj, f, *args, **kwargs)
    torch.save = save
elif point == "before-rename":           # temp file complete, rename not done
    orig_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == plan.get("file", "last.pt") and hit():
            die()
        return orig_replace(src, dst, *args, **kwargs)
    hafcls.io.os.replace = replace
elif point == "after-log":               # epoch logged, its checkpoint not yet written
    orig_append = RunFolder.append_log
    def append_log(self, record):
        orig_append(self, record)
        if hit():
            die()
    RunFolder.append_log = append_log
elif point == "validate":                # inside validation
    orig_validate = T.Trainer._validate
    def _validate(self):
        if hit():
            die()
        return orig_validate(self)
    T.Trainer._validate = _validate
elif point == "finish":                  # all epochs done, metrics.json not yet written
    def write_metrics(self, metrics):
        die()
    RunFolder.write_metrics = write_metrics
elif point != "none":
    raise SystemExit(f"unknown fault point {point}")

from hafcls.cli.main import cli
cli(sys.argv[1:], prog_name="hafcls")
'''


def config_args(config: dict) -> list[str]:
    """``hafcls train`` flags for a config dict (dict options through --set as YAML)."""
    args = []
    for key, value in config.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                args += ["--set", f"{key}.{sub}={json.dumps(v)}"]
        elif isinstance(value, bool):
            flag = key.replace("_", "-")
            args.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def launch(run: Path, plan: dict, config: dict = CONFIG, resume: bool = False,
           wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    """Start ``hafcls train`` in a fresh interpreter with the kill ``plan``."""
    run.parent.mkdir(parents=True, exist_ok=True)
    child = run.parent / "fault_child.py"
    if not child.exists():
        child.write_text(CHILD)
    env = dict(os.environ, HAFCLS_FAULT_PLAN=json.dumps(plan), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")
    argv = [sys.executable, str(child), "train", *config_args(config), "-o", str(run)]
    if resume:
        argv.append("--resume")
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def resume(run: Path) -> str:
    """``hafcls train -o RUN --resume`` in this process (the run's own config is used)."""
    result = CliRunner().invoke(cli, ["train", "-o", str(run), "--resume", "--no-progress"])
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------------- checks
def check_folder_consistent(run: Path) -> int:
    """Every file of the run that exists is complete; returns the epochs ``last.pt`` holds."""
    from hafcls.engine.checkpoint import load_checkpoint
    from hafcls.hierarchy import Hierarchy

    if (run / "config.json").exists():
        assert isinstance(json.loads((run / "config.json").read_text()), dict)
    if (run / "hierarchy.json").exists():
        Hierarchy.from_json(run / "hierarchy.json")
    if (run / "metrics.jsonl").exists():
        for line in (run / "metrics.jsonl").read_text().splitlines():
            json.loads(line)
    if (run / "metrics.json").exists():
        json.loads((run / "metrics.json").read_text())
    done = 0
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        if path.exists():
            ckpt = load_checkpoint(path)  # raises on a half-written file
            if name == "last.pt":
                done = ckpt["progress"]["epochs_done"] * STEPS_PER_EPOCH \
                    + ckpt["progress"]["step_in_epoch"]
    return done


def weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    from hafcls.engine.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / name)["model"]


#: wall-clock entries inside state dicts' extra state (e.g. a frame's build time)
CLOCK_KEYS = ("build_seconds", "seconds", "wall_time_s")


def same_weights(a, b) -> bool:
    """Bit-identical state dicts (nested dicts and plain values compared recursively, wall-clock
    entries ignored)."""
    if isinstance(a, dict):
        keys = {k for k in a if k not in CLOCK_KEYS}
        return isinstance(b, dict) and keys == {k for k in b if k not in CLOCK_KEYS} and all(
            same_weights(a[k], b[k]) for k in keys)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def comparable_log(run: Path) -> list[dict]:
    """metrics.jsonl without wall-clock fields."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        record["train"] = {k: v for k, v in record["train"].items() if k not in ("img_per_s",)}
        out.append(record)
    return out


def final_metrics(run: Path) -> dict:
    data = json.loads((run / "metrics.json").read_text())
    return {k: data[k] for k in ("best_epoch", "val", "test")}


def leftover_temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.rglob("*") if p.is_file() and p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (same process kind as the resumes: in-process CLI)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    result = CliRunner().invoke(cli, ["train", *config_args(CONFIG), "-o", str(run)])
    assert result.exit_code == 0, result.output
    return run


def assert_same_as_reference(run: Path, reference: Path) -> None:
    assert final_metrics(run) == final_metrics(reference)
    assert comparable_log(run) == comparable_log(reference)
    assert same_weights(weights(run, "last.pt"), weights(reference, "last.pt"))
    assert same_weights(weights(run, "best.pt"), weights(reference, "best.pt"))


# ---------------------------------------------------------------------- kills
#: Kill chains: each run is killed at every point of its chain in turn (each launch after the
#: first resumes the folder), then resumed once more without faults and compared with the
#: reference. ``nth`` counts events within one launch; last.pt is written every 3 steps and at
#: each epoch end, so step 13 lies in epoch 2 after its mid-epoch checkpoint at step 12 (=3+9).
KILL_CHAINS = {
    "mid-epoch+writing-last+after-log+before-metrics": [
        {"point": "step", "nth": 13},                # epoch 2, step 5: resume from step 3
        {"point": "write-last", "nth": 2},           # half-written temp of last.pt
        {"point": "after-log", "nth": 1},            # epoch logged, checkpoint not written
        {"point": "finish"},                         # all epochs done, no metrics.json
    ],
    "first-config-write+writing-best+before-rename+validation": [
        {"point": "before-rename", "file": "config.json", "nth": 1},  # nothing but a temp file
        {"point": "write-best", "nth": 1},           # half-written temp of best.pt
        {"point": "before-rename", "file": "last.pt", "nth": 2},  # complete temp, no rename
        {"point": "validate", "nth": 2},             # inside validation
    ],
}


@pytest.mark.parametrize("chain", list(KILL_CHAINS))
def test_killed_run_resumes_to_the_same_result(chain, tmp_path, reference):
    run = tmp_path / "run"
    progress = []
    for i, plan in enumerate(KILL_CHAINS[chain]):
        proc = launch(run, plan, resume=i > 0)
        assert proc.returncode == -signal.SIGKILL, (
            f"kill point {plan} not reached (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}")
        if plan["point"] in ("write-last", "write-best"):
            name = plan["point"].split("-")[1] + ".pt"
            assert any(t.startswith(f".{name}.") for t in leftover_temp_files(run)), \
                "the kill did not land inside the checkpoint write"
        progress.append(check_folder_consistent(run))
    assert progress == sorted(progress), f"a resume went backwards: {progress}"
    resume(run)
    check_folder_consistent(run)
    assert_same_as_reference(run, reference)


def test_resume_removes_stale_temp_files(tmp_path, reference):
    """The half-written temporary files that killed checkpoint writes leave behind (see the
    chains above) are removed when the run is resumed, so they do not pile up."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    last = (run / "checkpoints" / "last.pt").read_bytes()
    (run / "checkpoints" / ".last.pt.k1ll3d00.tmp").write_bytes(last[: len(last) // 2])
    (run / "checkpoints" / ".best.pt.k1ll3d01.tmp").write_bytes(last[:100])
    (run / ".metrics.jsonl.k1ll3d02.tmp").write_text('{"epoch": 1')
    resume(run)  # all epochs are done: only the final evaluation runs again
    assert leftover_temp_files(run) == [], "stale temp files of killed writes remain"
    assert final_metrics(run) == final_metrics(reference)


def test_external_sigkill_while_training(tmp_path, reference):
    """A real ``kill -9`` from outside, as soon as the first epoch is logged (so it lands
    between that log line and its checkpoint, or in epoch 2's training, mid-epoch checkpoint or
    validation)."""
    run = tmp_path / "run"
    proc = launch(run, {"point": "none"}, wait=False)
    log = run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (log.exists() and log.read_text().strip()) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never finished epoch 1"
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before the kill:\n{proc.stdout.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert check_folder_consistent(run) > 0  # a checkpoint of epoch 1 or later is there
    resume(run)
    assert_same_as_reference(run, reference)


# ---------------------------------------------------------------------- non-finite losses
class _PoisonGrad(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``value`` (NaN/inf)."""

    @staticmethod
    def forward(ctx, x, value):
        ctx.value = value
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.value, None


def _poison_forward(monkeypatch, at_call: int, value: float, where: str = "loss"):
    """Make the ``at_call``-th training forward return a non-finite loss (``where="loss"``), or
    keep the loss finite but make its gradient non-finite (``where="grad"``). Returns the list
    of forward calls seen."""
    T = importlib.import_module("hafcls.engine.train")  # not the train() function

    calls = []
    orig_forward = T.TrainStep.forward

    def forward(self, images, targets):
        loss, logits = orig_forward(self, images, targets)
        calls.append(float(loss.detach()))
        if len(calls) == at_call:
            loss = loss * value if where == "loss" else _PoisonGrad.apply(loss, value)
        return loss, logits

    monkeypatch.setattr(T.TrainStep, "forward", forward)
    return calls


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir() if p.is_file()
            and not p.name.endswith(".tmp")}


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_loss_stops_within_one_step(value, tmp_path, monkeypatch):
    """Epoch 1 trains; the 3rd step of the resumed epoch 2 gives a NaN/inf loss: exit 2 naming
    the loss, epoch and step; no further step; every checkpoint bit-identical to before."""
    run = tmp_path / "run"
    config = {**CONFIG, "epochs": 1, "checkpoint_every": 0}
    result = CliRunner().invoke(cli, ["train", *config_args(config), "-o", str(run)])
    assert result.exit_code == 0, result.output
    before = _snapshot(run)
    log_before = (run / "metrics.jsonl").read_text()
    calls = _poison_forward(monkeypatch, 3, value)
    result = CliRunner().invoke(cli, ["train", "-o", str(run), "--resume", "--epochs", "2",
                                      "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Fix:" in result.output
    assert ("nan" if value != value else "inf") in result.output.lower()
    assert "epoch 2" in result.output and "step 3" in result.output
    assert len(calls) == 3, "training went on after the non-finite loss"
    assert _snapshot(run) == before
    assert (run / "metrics.jsonl").read_text() == log_before


@pytest.mark.parametrize("at_step", [3, STEPS_PER_EPOCH], ids=["before-mid-epoch-ckpt",
                                                                "last-step-of-epoch"])
def test_non_finite_gradient_never_reaches_a_checkpoint(at_step, tmp_path, monkeypatch):
    """A finite loss with a NaN gradient makes the weights NaN in the optimizer step. The run
    must stop with exit 2 and no checkpoint (mid-epoch last.pt, epoch-end last.pt or best.pt)
    may hold the NaN weights."""
    run = tmp_path / "run"
    calls = _poison_forward(monkeypatch, at_step, float("nan"), where="grad")
    result = CliRunner().invoke(cli, ["train", *config_args({**CONFIG, "epochs": 2}),
                                      "-o", str(run)])
    assert len(calls) >= at_step
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(calls) <= at_step + 1, "the NaN weights were trained on for more than one step"
    from hafcls.engine.checkpoint import load_checkpoint

    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        if path.exists():
            state = load_checkpoint(path)["model"]
            bad = [k for k, v in state.items() if isinstance(v, torch.Tensor)
                   and v.is_floating_point() and not torch.isfinite(v).all()]
            assert not bad, f"{name} holds non-finite weights: {bad[:3]}"
