"""``--tensorboard DIR``: event files with the expected tags, read back with TensorBoard's own
EventAccumulator; the per-run folders of ``compare``; the error without the package."""

import json
import sys

import numpy as np
import pytest
import torch

from hafcls.engine.tensorboard import class_mean_cosines, summary_writer_class
from hafcls.engine.train import train
from hafcls.errors import HafclsError

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")

TINY = dict(data="synthetic", image_size=16,
            data_options={"branching": [2, 2], "per_class": {"train": 6, "val": 3, "test": 3}},
            model="test_resnet", epochs=2, batch_size=8, workers=0, progress=False, lr=0.05)


def _read(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0,
                                                                         "histograms": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def haframe_run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tb")
    result = train(dict(TINY, method="haframe", output=str(root / "run"),
                        tensorboard=str(root / "tb")))
    torch.set_num_threads(before)
    return root, result


def test_event_files_hold_losses_lrs_every_val_metric_and_frame_histograms(haframe_run):
    root, result = haframe_run
    acc = _read(root / "tb")
    scalars = set(acc.Tags()["scalars"])
    log = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().split("\n")
           if line]
    assert {"train/loss", "train/top1", "lr/backbone", "lr/head", "frame/mean_abs_gap"} <= scalars
    numeric = {k for k, v in log[0]["val"].items() if isinstance(v, (int, float)) and k != "n"}
    assert {f"val/{k}" for k in numeric} <= scalars  # every validation metric, ECE included
    assert "val/ece" in scalars and "test/top1" in scalars
    assert set(acc.Tags()["histograms"]) == {"frame/target_cos", "frame/realised_cos",
                                             "frame/realised_minus_target"}
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([r["train"]["loss"] for r in log], rel=1e-6)
    assert [e.value for e in acc.Scalars("lr/head")] == pytest.approx([r["lr"] for r in log])
    assert acc.Scalars("val/top1")[-1].value == pytest.approx(log[-1]["val"]["top1"])
    assert acc.Scalars("test/top1")[0].value == pytest.approx(result["test"]["top1"])
    hist = acc.Histograms("frame/target_cos")[0].histogram_value
    assert hist.num == 6  # the 4 x 3 / 2 class pairs of the probe


def test_class_mean_cosines_against_a_hand_computation():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 2, 3])
    target = np.arange(16, dtype=float).reshape(4, 4)
    realised, tgt = class_mean_cosines(feats, labels, target)
    # class means (2, 0), (0, 2), (1, 1): pairs (0,2), (0,3), (2,3)
    assert realised == pytest.approx([0.0, 2**-0.5, 2**-0.5])
    assert tgt.tolist() == [2.0, 3.0, 11.0]


def test_compare_logs_each_run_to_its_own_folder_outside_the_config(tmp_path, monkeypatch):
    from hafcls.cli.compare import _tensorboard_runs
    from hafcls.engine.config import TrainConfig

    cfg = TrainConfig.from_dict(dict(TINY, epochs=1, tensorboard=str(tmp_path / "tb")))
    train_fn = _tensorboard_runs(cfg)
    assert cfg.tensorboard is None  # the runs' configs do not hold the log folder
    run_cfg = TrainConfig.from_dict(dict(cfg.to_dict(), method="ce", seed=1,
                                         output=str(tmp_path / "cmp" / "runs" / "ce" / "seed1")))
    torch.set_num_threads(1)
    train_fn(run_cfg)
    assert "train/loss" in _read(tmp_path / "tb" / "ce" / "seed1").Tags()["scalars"]
    stored = json.loads((tmp_path / "cmp" / "runs" / "ce" / "seed1" / "config.json").read_text())
    assert stored["tensorboard"] is None


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(HafclsError, match="pip install tensorboard"):
        summary_writer_class()
