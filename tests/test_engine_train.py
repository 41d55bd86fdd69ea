"""Training loop: run folder contents, schedule, best-checkpoint selection, NaN stop, precision."""

import importlib
import json

import pytest
import torch

from hafcls.engine.builders import autocast_context, build_method_and_model
from hafcls.engine.checkpoint import load_checkpoint
from hafcls.engine.config import TrainConfig
from hafcls.engine.evaluate import evaluate_checkpoint
from hafcls.engine.train import build_optimizer, lr_factor, train
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

# the module (hafcls.engine.train is the function of the same name)
train_module = importlib.import_module("hafcls.engine.train")

TINY = dict(data="synthetic", image_size=16,
            data_options={"branching": [2, 2], "per_class": {"train": 10, "val": 3, "test": 3}},
            method="haframe", model="test_resnet", epochs=3, batch_size=8, workers=0,
            progress=False, lr=0.05)



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("train") / "run"
    result = train(dict(TINY, output=str(out), select_metric="hierdist@1"))
    torch.set_num_threads(before)
    return out, result


def test_run_folder_holds_config_log_metrics_and_checkpoints(run):
    out, result = run
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [".lock", "checkpoints/best.pt", "checkpoints/last.pt", "config.json",
                     "hierarchy.json", "metrics.json", "metrics.jsonl"]
    assert (out / ".lock").read_text() == ""  # the writer lock, released at the end
    config = json.loads((out / "config.json").read_text())
    assert TrainConfig.from_dict(config).epochs == 3 and config["method"] == "haframe"
    assert Hierarchy.from_json(out / "hierarchy.json").num_classes == 4
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    cfg = TrainConfig(**{k: v for k, v in TINY.items()})
    assert [r["lr"] for r in log] == pytest.approx([0.05 * lr_factor(e, cfg) for e in range(3)])
    for r in log:
        assert r["train"]["images"] == 40 and r["val"]["n"] == 12
        assert {"top1", "top5", "mistake_severity", "hierdist@1", "hierdist@5", "hierdist@20",
                "acc@depth1", "acc@depth2", "loss"} <= set(r["val"])
    final = json.loads((out / "metrics.json").read_text())
    assert {"best_epoch", "val", "test", "select_metric", "wall_time_s"} <= set(final)
    assert final["test"]["n"] == 12 and result["test"]["n"] == 12
    assert load_checkpoint(out / "checkpoints" / "last.pt")["progress"]["epochs_done"] == 3


def test_best_checkpoint_is_the_lowest_validation_hierdist_and_is_the_one_tested(run):
    out, result = run
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    values = [r["val"]["hierdist@1"] for r in log]
    expected = values.index(min(values)) + 1  # lower is better; the earliest on ties
    assert result["best_epoch"] == expected
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["meta"]["epochs_done"] == expected
    assert result["val"] == log[expected - 1]["val"]
    again = evaluate_checkpoint(out, split="test", workers=0)
    for key, value in result["test"].items():
        assert again[key] == pytest.approx(value, nan_ok=True), key


def test_a_second_fresh_run_into_the_same_folder_is_refused(run):
    out, _ = run
    with pytest.raises(HafclsError, match="already holds a training run"):
        train(dict(TINY, output=str(out)))


def test_nan_loss_stops_within_one_step_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                          monkeypatch):
    original = train_module.TrainStep.forward
    calls = [0]

    def forward(self, images, targets):
        loss, logits = original(self, images, targets)
        calls[0] += 1
        return (loss * float("nan") if calls[0] == 7 else loss), logits

    monkeypatch.setattr(train_module.TrainStep, "forward", forward)
    out = tmp_path / "run"
    with pytest.raises(HafclsError, match=r"became nan at epoch 2, step 2") as info:
        train(dict(TINY, output=str(out)))
    assert "--lr" in str(info.value)
    assert calls[0] == 7  # not one step further
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["progress"]["epochs_done"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values()
               if torch.is_tensor(v) and v.is_floating_point())
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_optimizer_groups_split_backbone_and_head_with_their_learning_rates():
    from hafcls.data import synthetic_hierarchy

    h = synthetic_hierarchy((2, 2))
    cfg = TrainConfig(method="haframe", model="test_resnet", lr=0.1, lr_backbone=0.01,
                      nesterov=True)
    method, model = build_method_and_model(cfg, h)
    opt = build_optimizer(model, method.build_loss(model, h), cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["backbone"]["lr"] == 0.01 and groups["head"]["lr"] == 0.1
    assert groups["head"]["nesterov"] and groups["head"]["weight_decay"] == 5e-4
    backbone = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in groups["head"]["params"]} == trainable - backbone
    adamw = build_optimizer(model, method.build_loss(model, h),
                            TrainConfig(method="ce", model="m", optimizer="adamw", lr=1e-3))
    assert isinstance(adamw, torch.optim.AdamW)
    assert {g["lr"] for g in adamw.param_groups} == {1e-3}  # from scratch: one LR


def test_autocast_runs_matmuls_in_bf16_on_the_cpu_and_refuses_fp16_there():
    a = torch.randn(4, 4)
    with autocast_context("bf16", torch.device("cpu")):
        assert (a @ a).dtype == torch.bfloat16
    with autocast_context("none", torch.device("cpu")):
        assert (a @ a).dtype == torch.float32
    with pytest.raises(HafclsError, match="fp16 needs a CUDA"):
        autocast_context("fp16", torch.device("cpu"))


def test_pretrained_backbone_gets_its_own_normalisation(tmp_path):
    # a local "pretrained" file of the same timm model; timm's data config for it uses the
    # ImageNet mean/std, which must replace the synthetic data's own statistics everywhere
    import timm
    from timm.data import resolve_data_config

    weights = tmp_path / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    result = train(TrainConfig.from_dict({**TINY, "epochs": 1, "output": str(tmp_path / "run"),
                                          "pretrained_file": str(weights)}))
    expected = resolve_data_config({}, model=timm.create_model("test_resnet"))
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["meta"]
    assert meta["data"]["mean"] == pytest.approx(list(expected["mean"]))
    assert meta["data"]["std"] == pytest.approx(list(expected["std"]))
    # evaluation of the checkpoint uses the same pipeline and reproduces the test metrics
    again = evaluate_checkpoint(tmp_path / "run", split="test")
    assert again["top1"] == pytest.approx(result["test"]["top1"])
