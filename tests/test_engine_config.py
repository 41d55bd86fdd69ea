"""TrainConfig: defaults, files, precedence, validation; LR schedule; run-folder bookkeeping."""

import json
import math

import pytest

from hafcls.engine.config import (
    TrainConfig,
    metric_is_higher_better,
    parse_assignment,
    read_config_file,
)
from hafcls.engine.runs import RunFolder, check_resume_config, find_checkpoint, json_safe
from hafcls.engine.train import lr_factor
from hafcls.errors import HafclsError


def test_defaults_follow_the_paper_recipe():
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.schedule) == (
        "sgd", 0.1, 0.9, 5e-4, "cosine")
    assert cfg.amp == "none" and cfg.select_metric == "top1"


def test_backbone_lr_is_the_head_lr_from_scratch_and_a_tenth_when_pretrained():
    assert TrainConfig(lr=0.1).backbone_lr == 0.1
    assert TrainConfig(lr=0.1, pretrained=True).backbone_lr == pytest.approx(0.01)
    assert TrainConfig(lr=0.1, pretrained_file="w.pth").backbone_lr == pytest.approx(0.01)
    assert TrainConfig(lr=0.1, pretrained=True, lr_backbone=0.05).backbone_lr == 0.05
    assert TrainConfig(batch_size=32).eval_batch == 64


def test_yaml_file_then_flags_take_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 7\nbatch-size: 16\nlr: 1\ndata_options:\n  per_class: 5\n")
    cfg = TrainConfig.from_sources(path, {"epochs": 3})
    assert cfg.epochs == 3                      # flag beats file
    assert cfg.batch_size == 16                 # dash spelling accepted
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)  # int accepted for a float
    assert cfg.data_options == {"per_class": 5}
    assert cfg.momentum == 0.9                  # untouched default


def test_json_config_file_and_to_dict_round_trip(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"method": "ce", "model": "test_resnet", "amp": "bf16"}))
    cfg = TrainConfig.from_file(path)
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.amp == "bf16"


@pytest.mark.parametrize("values, words", [
    ({"epoch": 3}, ["'epoch'", "did you mean 'epochs'"]),
    ({"epochs": "ten"}, ["'epochs'", "an integer"]),
    ({"epochs": True}, ["'epochs'", "an integer"]),
    ({"lr": "fast"}, ["'lr'", "a number"]),
    ({"amp": "fp8"}, ["'amp'", "none, bf16, fp16"]),
    ({"nesterov": "yes"}, ["'nesterov'", "true or false"]),
    ({"data_options": [1, 2]}, ["'data_options'", "a mapping"]),
    ({"epochs": 0}, ["'epochs'", "at least 1"]),
    ({"lr": -0.1}, ["'lr'", "positive"]),
    ({"lr": math.inf}, ["'lr'", "positive finite"]),
    ({"momentum": 1.5}, ["'momentum'"]),
    ({"optimizer": "adamw", "nesterov": True}, ["nesterov"]),
    ({"epochs": 3, "warmup_epochs": 3}, ["warmup_epochs"]),
    ({"select_metric": "f1"}, ["f1"]),
    ({"device": "tpu"}, ["tpu"]),
    ({"workers": -1}, ["'workers'"]),
])
def test_bad_values_name_the_key_and_the_fix(values, words):
    with pytest.raises(HafclsError) as info:
        TrainConfig.from_dict(values)
    message = str(info.value)
    assert "Fix:" in message
    for word in words:
        assert word in message


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(HafclsError, match="No such config file"):
        read_config_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(HafclsError, match="not valid YAML"):
        read_config_file(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(HafclsError, match="mapping"):
        read_config_file(listy)
    assert read_config_file(_write(tmp_path / "empty.yaml", "")) == {}


def _write(path, text):
    path.write_text(text)
    return path


def test_required_fields_are_checked_when_a_run_starts():
    with pytest.raises(HafclsError, match="--method"):
        TrainConfig(model="m", output="o").require_run_fields()
    TrainConfig(method="ce", model="m", output="o").require_run_fields()


def test_parse_assignment_reads_yaml_values():
    assert parse_assignment("epochs=3") == ("epochs", 3)
    assert parse_assignment("data_options.branching=[2, 2]") == ("data_options.branching", [2, 2])
    assert parse_assignment("hierarchy=my tree.json") == ("hierarchy", "my tree.json")
    with pytest.raises(HafclsError, match="KEY=VALUE"):
        parse_assignment("epochs")


def test_metric_direction():
    assert metric_is_higher_better("top1") and metric_is_higher_better("acc@depth2")
    assert not metric_is_higher_better("hierdist@1")
    assert not metric_is_higher_better("hierdist@7")
    assert not metric_is_higher_better("mistake_severity")
    assert not metric_is_higher_better("loss")


def test_cosine_schedule_per_epoch_closed_form():
    cfg = TrainConfig(epochs=4)
    assert [lr_factor(e, cfg) for e in range(4)] == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])
    warm = TrainConfig(epochs=5, warmup_epochs=1, min_lr=0.1)
    # warmup epoch at half the peak, then cosine over the 4 remaining epochs down towards 0.1
    assert lr_factor(0, warm) == pytest.approx(0.5)
    assert lr_factor(1, warm) == pytest.approx(1.0)
    assert lr_factor(3, warm) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(3, TrainConfig(epochs=5, schedule="constant")) == 1.0


def test_resume_refuses_changes_to_what_is_trained():
    stored = TrainConfig(method="ce", model="m", output="o", epochs=5).to_dict()
    check_resume_config(stored, TrainConfig(method="ce", model="m", output="o", epochs=9,
                                            workers=0, resume=True))
    with pytest.raises(HafclsError, match="method='haframe'"):
        check_resume_config(stored, TrainConfig(method="haframe", model="m", output="o"))
    with pytest.raises(HafclsError, match="lr"):
        check_resume_config(stored, TrainConfig(method="ce", model="m", output="o", lr=0.5))


def test_run_folder_log_is_rewritten_per_epoch_and_truncated_on_resume(tmp_path):
    folder = RunFolder(tmp_path / "run")
    for epoch in (1, 2, 3):
        folder.append_log({"epoch": epoch, "val": {"mistake_severity": math.nan}})
    folder.append_log({"epoch": 3, "val": {"top1": 1.0}})  # a redone epoch replaces its line
    assert [r["epoch"] for r in folder.read_log()] == [1, 2, 3]
    assert folder.read_log()[0]["val"]["mistake_severity"] is None  # strict JSON, no NaN
    assert folder.read_log()[2]["val"] == {"top1": 1.0}
    folder.truncate_log(1)
    assert [r["epoch"] for r in folder.read_log()] == [1]
    assert json_safe({"a": [math.inf, 1.0]}) == {"a": [None, 1.0]}


def test_fresh_run_refuses_an_existing_run_folder(tmp_path):
    folder = RunFolder(tmp_path)
    folder.check_fresh()
    folder.write_config(TrainConfig())
    with pytest.raises(HafclsError, match="--resume"):
        folder.check_fresh()
    assert folder.stored_config()["epochs"] == 100


def test_find_checkpoint_prefers_best_then_last(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(HafclsError, match="no checkpoints"):
        find_checkpoint(tmp_path)
    folder.checkpoint_dir.mkdir()
    folder.last.write_bytes(b"x")
    assert find_checkpoint(tmp_path) == folder.last
    folder.best.write_bytes(b"x")
    assert find_checkpoint(tmp_path) == folder.best
    assert find_checkpoint(folder.last) == folder.last
    with pytest.raises(HafclsError, match="No such"):
        find_checkpoint(tmp_path / "nope.pt")
