"""Run-folder safety, resume rules, weight loading and the image-strictness flags (no training)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hafcls.cli.train import resolve_config
from hafcls.engine.checkpoint import load_weights
from hafcls.engine.config import TrainConfig, read_config_file
from hafcls.engine.runs import RunFolder, check_resume_config
from hafcls.errors import HafclsError


def test_check_fresh_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HafclsError, match="holds other files.*metrics.json, notes.txt"):
        RunFolder(tmp_path).check_fresh()
    RunFolder(tmp_path / "new").check_fresh()  # a missing folder is fine
    (tmp_path / "empty").mkdir()
    RunFolder(tmp_path / "empty").check_fresh()  # so is an empty one


def test_check_fresh_names_a_run_that_never_saved_a_checkpoint(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_config(TrainConfig())
    with pytest.raises(HafclsError, match="before its first checkpoint") as info:
        folder.check_fresh()
    assert "--resume" in info.value.fix


def test_remove_stale_temp_files_removes_only_the_runs_own(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoint_dir.mkdir(parents=True)
    stale = [folder.checkpoint_dir / ".last.pt.ab12cd34.tmp", tmp_path / ".metrics.jsonl.x1.tmp",
             tmp_path / ".config.json.y2.tmp"]
    kept = [tmp_path / ".mydata.csv.z3.tmp", tmp_path / "notes.tmp",
            folder.checkpoint_dir / ".other.pt.q4.tmp", tmp_path / ".last.pt.misplaced.tmp"]
    for i, path in enumerate(stale + kept):
        path.write_bytes(b"x" * (i + 1))
    freed = folder.remove_stale_temp_files()
    assert freed == 1 + 2 + 3
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


def test_resume_may_change_skip_corrupt_but_not_other_data_options():
    stored = TrainConfig.from_dict({"data_options": {"per_class": 5}}).to_dict()
    changed = TrainConfig.from_dict({"data_options": {"per_class": 5, "skip_corrupt": False}})
    check_resume_config(stored, changed)
    other = TrainConfig.from_dict({"data_options": {"per_class": 6, "skip_corrupt": False}})
    with pytest.raises(HafclsError, match="data_options"):
        check_resume_config(stored, other)


def test_image_flags_merge_into_data_options_of_file_and_run(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data_options:\n  per_class: 7\n")
    cfg = resolve_config({"skip_corrupt": False}, config,
                         ["data_options.branching=[2, 2]"])
    assert cfg.data_options == {"per_class": 7, "branching": [2, 2], "skip_corrupt": False}
    # resuming: the run's own data_options are the base the flag merges into
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_config(TrainConfig.from_dict({"data_options": {"per_class": 3}}))
    cfg = resolve_config({"skip_corrupt": True, "resume": True, "output": str(run.path)}, None)
    assert cfg.data_options == {"per_class": 3, "skip_corrupt": True}


def test_config_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"epochs: 3\n\xff\xfe")
    with pytest.raises(HafclsError, match="not UTF-8 text .*offset 10"):
        read_config_file(path)


def test_load_weights_counts_missing_unexpected_and_misshaped(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"] = torch.zeros(5, 3)       # mis-shaped
    del state["1.bias"]                          # missing
    state["2.weight"] = torch.zeros(1)           # unexpected
    with pytest.raises(HafclsError) as info:
        load_weights(model, state, tmp_path / "x.pt")
    text = info.value.problem
    assert "1 missing, 1 unexpected and 1 mis-shaped" in text and "x.pt" in text
    good = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    load_weights(good, model.state_dict(), "y.pt")
    assert all(torch.equal(a, b) for a, b in zip(good.state_dict().values(),
                                                  model.state_dict().values()))


def test_evaluate_json_path_is_checked_before_evaluating(tmp_path):
    from click.testing import CliRunner

    from hafcls.cli.main import cli

    blocker = tmp_path / "file"
    blocker.write_text("x")
    # the checkpoint does not exist either: the --json problem must be reported first
    for bad, words in ((tmp_path, "is a folder"), (blocker / "sub" / "m.json", "in the way")):
        result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "nothing"), "--json",
                                          str(bad)])
        assert result.exit_code == 2 and words in result.output, result.output


def test_epoch_totals_read_checkpoints_without_a_skip_count():
    from hafcls.engine.train import EpochTotals

    old = {"loss": 1.0, "correct": 2, "count": 4, "steps": 1, "seconds": 0.5}
    totals = EpochTotals(**old)
    assert totals.skipped == 0 and json.dumps(totals.state())
    assert EpochTotals(**{**old, "skipped": 3}).reduced(torch.device("cpu"))["skipped"] == 3
