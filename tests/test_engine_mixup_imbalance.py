"""Issue 17 through the engine: long-tailed training subsets, shot-group metrics, minority
collapse, mixup/CutMix mixed targets in the training step, and the refusal of ETF/HUG."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import hafcls.methods.mixing as mixed_targets
from hafcls.cli.main import cli
from hafcls.data.imbalance import class_counts
from hafcls.engine import mixup_report
from hafcls.engine.builders import build_data
from hafcls.engine.class_metrics import ClassCounts
from hafcls.engine.config import TrainConfig
from hafcls.engine.train import train
from hafcls.errors import HafclsError
from hafcls.metrics.calibration import ece
from hafcls.metrics.minority import shot_accuracy

# 10 classes, 120 training images each: ratio 100 gives 120, 71, 43, 25, 15, 9, 5, 3, 2, 1
IMBALANCED = dict(data="synthetic", image_size=16,
                  data_options={"branching": [2, 5],
                                "per_class": {"train": 120, "val": 4, "test": 4}},
                  model="test_resnet", epochs=1, batch_size=32, workers=0, progress=False,
                  lr=0.05, imbalance=100.0)
TINY = dict(data="synthetic", image_size=16,
            data_options={"branching": [2, 2], "per_class": {"train": 10, "val": 3, "test": 3}},
            model="test_resnet", epochs=1, batch_size=8, workers=0, progress=False, lr=0.05)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(mixup_report, "N_PAIRS", 10)  # a quick collapse report
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def imbalanced_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("imb") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mixup_report, "N_PAIRS", 10)
        result = train(dict(IMBALANCED, method="ce", output=str(out)))
    return out, result


def test_training_split_follows_the_exponential_profile_and_test_is_untouched():
    cfg = TrainConfig.from_dict(dict(IMBALANCED, method="ce"))
    bundle = build_data(cfg)
    counts = np.bincount(bundle.train.targets, minlength=10)
    # n_c = int(120 * 100^(-c/9)), hand-checked: the CIFAR-LT truncation
    assert counts.tolist() == [120, 71, 43, 25, 15, 9, 5, 3, 2, 1]
    assert counts.tolist() == class_counts(120, 10, 100.0).tolist()
    assert np.bincount(bundle.test.targets).tolist() == [4] * 10
    assert np.bincount(bundle.val.targets).tolist() == [4] * 10
    # the same seed rebuilds the same subset (resume); another seed draws other images
    again = build_data(cfg)
    assert np.array_equal(again.train.indices, bundle.train.indices)
    other = build_data(TrainConfig.from_dict(dict(IMBALANCED, method="ce", seed=1)))
    assert not np.array_equal(other.train.indices, bundle.train.indices)
    step = build_data(TrainConfig.from_dict(dict(IMBALANCED, method="ce",
                                                 imbalance_profile="step",
                                                 imbalance_rare="first")))
    assert np.bincount(step.train.targets).tolist() == [1] * 5 + [120] * 5


def test_short_imbalanced_run_reports_shot_groups_and_minority_collapse(imbalanced_run):
    out, result = imbalanced_run
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("test", "val"):
        for key in ("many_shot", "medium_shot", "few_shot", "ece"):
            assert 0.0 <= metrics[split][key] <= 1.0, (split, key)
    # groups: many = {0}, medium = {1, 2, 3}, few = {4..9}; the test set has 4 images per class
    assert metrics["imbalance"]["shot_groups"] == {"many_shot_classes": 1,
                                                   "medium_shot_classes": 3,
                                                   "few_shot_classes": 6}
    assert metrics["minority_collapse_source"] == "classifier"
    assert -1.0 <= metrics["minority_collapse"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["imbalance"] == 100.0 and config["imbalance_profile"] == "exponential"
    report = json.loads((out / "collapse.json").read_text())
    assert report["minority_collapse"] == metrics["minority_collapse"]
    assert set(report["mixup_geometry"]) == {"mixup_same_class_cos", "mixup_cross_boundary_abs",
                                             "mixup_cross_cos"}
    assert len(report["mixup_curves"]["lambdas"]) == 11
    assert (out / "plots" / "mixup_geometry.png").is_file()


def test_evaluate_rebuilds_the_subset_and_reports_the_same_shot_groups(imbalanced_run):
    from hafcls.engine.evaluate import evaluate_checkpoint

    out, result = imbalanced_run
    again = evaluate_checkpoint(out, split="test", workers=0)
    for key in ("many_shot", "medium_shot", "few_shot", "ece", "top1"):
        assert again[key] == pytest.approx(result["test"][key], abs=1e-6), key


def test_minority_collapse_of_the_run_equals_a_direct_computation(imbalanced_run):
    out, result = imbalanced_run
    ckpt = torch.load(out / "checkpoints" / "best.pt", weights_only=False)
    w = ckpt["model"]["head.classifier.weight"].double()  # the linear classifier, K x d
    rare = [4, 5, 6, 7, 8, 9]  # the six few-shot classes
    unit = w[rare] / w[rare].norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    expected = cos[np.triu_indices(6, 1)].mean().item()
    assert result["minority_collapse"] == pytest.approx(expected, abs=1e-6)
    assert result["minority_collapse_classifier"] == result["minority_collapse"]


def test_class_counts_match_the_reference_ece_and_shot_accuracy():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(300, 10, generator=gen) * 3, dim=1)
    y = torch.randint(0, 10, (300,), generator=gen)
    train_counts = np.array([500, 300, 150, 100, 60, 20, 19, 10, 3, 1])
    counter = ClassCounts(10, torch.device("cpu"))
    for chunk in range(0, 300, 64):  # several batches
        counter.update(probs[chunk:chunk + 64], y[chunk:chunk + 64])
    out = counter.compute(train_counts)
    assert out["ece"] == pytest.approx(ece(probs.double().log(), y), abs=1e-6)
    ref = shot_accuracy(probs.argmax(1), y, train_counts)
    for key in ("many_shot", "medium_shot", "few_shot"):
        assert out[key] == pytest.approx(ref[key], abs=1e-12)


@pytest.mark.parametrize("method", ["ce", "haframe"])
def test_one_step_with_mixup_trains_on_mixed_targets(method, tmp_path, monkeypatch):
    seen = []
    original = mixed_targets.mixed_loss

    def spy(loss, logits, features, soft):
        seen.append(soft.detach().clone())
        return original(loss, logits, features, soft)

    monkeypatch.setattr(mixed_targets, "mixed_loss", spy)
    cfg = dict(TINY, method=method, output=str(tmp_path / "run"), mixup=1.0,
               mixup_mode="elem", data_options={"branching": [2, 2],
                                                "per_class": {"train": 2, "val": 1, "test": 1}})
    result = train(cfg)
    assert len(seen) == 1  # one step of 8 images, each row a mix of two classes
    soft = seen[0]
    assert soft.shape == (8, 4)
    assert torch.allclose(soft.sum(1), torch.ones(8))
    assert ((soft > 0).sum(1) <= 2).all() and (soft.max(1).values < 1).any()
    assert np.isfinite(result["test"]["top1"])
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["mixup"] == 1.0 and stored["mixup_mode"] == "elem"
    assert stored["cutmix"] == 0.0 and stored["mixup_switch_prob"] == 0.5
    assert (tmp_path / "run" / "collapse.json").is_file()  # on by default with mixup


@pytest.mark.parametrize("method", ["etf-dr", "hug-mhe"])
def test_methods_without_a_mixed_target_form_refuse_before_training(method, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--data", "synthetic", "--image-size", "16",
                                   "--set", "data_options.branching=[2, 2]",
                                   "--set", "data_options.per_class=2", "--method", method,
                                   "--model", "test_resnet", "--epochs", "1", "--workers", "0",
                                   "--mixup", "0.2", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert f"Method '{method}' cannot train with mixup or CutMix" in res.output
    assert "without --mixup/--cutmix" in res.output
    assert not (out / "checkpoints").exists()


def test_bad_mixup_and_imbalance_options_are_refused():
    with pytest.raises(HafclsError, match="mixup_prob"):
        TrainConfig.from_dict({"mixup_prob": 1.5})
    with pytest.raises(HafclsError, match="imbalance"):
        TrainConfig.from_dict({"imbalance": 0.5})
    with pytest.raises(HafclsError, match="imbalance_profile"):
        TrainConfig.from_dict({"imbalance_profile": "linear"})
