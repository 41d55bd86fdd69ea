"""Issue 15: one group of tests per cause (concurrent runs, unchecked options, the environment,
degenerate batches, inputs accepted silently, memory, misleading messages, exact-vs-approximate).
Each test fails on the code before the fix (a second writer was allowed, an option ignored, a
16-bit image clipped to white, ...)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from hafcls.cli.main import cli
from hafcls.cli.train import assignments_to_dict, resolve_config
from hafcls.engine.preflight import check_run_options, check_select_metric, outside_errors
from hafcls.engine.runs import RunFolder, stop_message
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

TINY = ["--data", "synthetic", "--method", "haframe", "--model", "test_resnet", "--epochs", "1",
        "--batch-size", "8", "--image-size", "16", "--workers", "0", "--device", "cpu",
        "--no-progress", "--set", "data_options.per_class={train: 4, val: 2, test: 2}",
        "--set", "data_options.branching=[2, 2]"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _holder(folder, seconds=60):
    """A child process holding the folder's lock (as a running training would)."""
    code = ("import sys, time; from hafcls.engine.runs import RunFolder; "
            f"f = RunFolder({str(folder)!r}); f.lock(); print('locked', flush=True); "
            f"time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


# ---------------------------------------------------------------------- 1. concurrent runs
def test_second_writer_is_refused_naming_the_holder_and_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        with pytest.raises(HafclsError, match=f"another hafcls process \\(pid {proc.pid} "):
            RunFolder(run).lock()
        result = invoke("train", *TINY, "-o", run)
        assert result.exit_code == 2 and f"pid {proc.pid}" in result.output
        assert "-c" in result.output or "python" in result.output  # the holder's command
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the holder died by SIGKILL: its lock file is left, but the kernel released the lock
    assert (run / ".lock").read_text().strip()
    folder = RunFolder(run)
    folder.lock()
    assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    folder.unlock()


def test_lock_file_does_not_count_as_a_foreign_file_and_is_released(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", *TINY, "-o", run).exit_code == 0
    assert (run / ".lock").read_text() == ""  # released: holder details cleared
    result = invoke("train", "-o", run, "--resume", "--epochs", "2", "--no-progress")
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------- 2. options
def test_squashed_flow_mapping_is_read_not_ignored():
    out = assignments_to_dict(["data_options.per_class={train:2,val:1,test:1}"])
    assert out == {"data_options": {"per_class": {"train": 2, "val": 1, "test": 1}}}
    cfg = resolve_config({}, None, ["data_options.per_class={train:2,val:1,test:1}"])
    assert cfg.data_options["per_class"] == {"train": 2, "val": 1, "test": 1}


@pytest.mark.parametrize("assignment, match", [
    ("method_options.alpha=0,5", "alpha.*must be a number"),
    ("model_options.drop_rate=abc", "drop_rate.*must be a number"),
    ("model_options.drop_rate=1.5", "drop_rate.*in \\[0, 1\\)"),
    ("data_options.noise=-1", "noise"),
    ("data_options.per_class={train: 0}", "per_class.train"),
    ("data_options.per_class={trian: 2}", "per_class has the key 'trian'"),
    ("data_options.bogus=1", "Unknown data_options.*bogus"),
])
def test_nested_options_are_checked_before_anything_is_written(assignment, match, tmp_path):
    run = tmp_path / "run"
    result = invoke("train", *TINY, "--set", assignment, "-o", run)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert __import__("re").search(match, result.output), result.output
    assert not run.exists()


def test_unknown_select_metric_is_refused_before_training(tmp_path):
    run = tmp_path / "run"
    result = invoke("train", *TINY, "--select-metric", "top7", "-o", run)
    assert result.exit_code == 2 and "top7" in result.output and "Training" not in result.output
    assert not run.exists()
    with pytest.raises(HafclsError, match="acc@depth1 .. acc@depth2"):
        check_select_metric("acc@depth3", height=2)
    check_select_metric("acc@depth2", height=2)
    check_select_metric("hierdist@5")


# ---------------------------------------------------------------------- 3. environment
def test_network_and_permission_failures_become_clear_errors():
    import urllib.error

    with pytest.raises(HafclsError, match="no network connection"):
        with outside_errors("Fetching X", "go online"):
            raise urllib.error.URLError("Name or service not known")
    with pytest.raises(HafclsError, match="cannot write /cache/hub"):
        with outside_errors("Fetching X", "go online"):
            raise PermissionError(13, "Permission denied", "/cache/hub")
    with pytest.raises(KeyError):  # anything else is not hidden
        with outside_errors("Fetching X", "go online"):
            raise KeyError("bug")


def test_pretrained_without_network_exits_2(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # never downloads, with or without network
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = invoke("train", *TINY, "--model", "resnet18", "--pretrained", "-o", tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert "pretrained weights of resnet18" in result.output and "--pretrained-file" in \
        result.output


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs a read-only /sys")
def test_read_only_output_folder_exits_2():
    result = invoke("train", *TINY, "-o", "/sys/hafcls-run")
    assert result.exit_code == 2 and "/sys/hafcls-run" in result.output


# ---------------------------------------------------------------------- 4. degenerate batches
def test_batch_size_one_with_batch_norm_is_refused(tmp_path):
    result = invoke("train", *TINY, "--batch-size", "1", "-o", tmp_path / "r")
    assert result.exit_code == 2 and "batch norm" in result.output
    assert not (tmp_path / "r").exists()


def _folder_data(root, corrupt_train: int):
    h = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2"), ("b", "b1"),
                              ("b", "b2")])
    rng = np.random.default_rng(0)
    n = 0
    for split in ("train", "val", "test"):
        for c in h.classes:
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                path = root / split / c / f"{i}.png"
                if split == "train" and n < corrupt_train:
                    path.write_bytes(b"")  # unreadable: skipped and counted
                else:
                    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(path)
                n += split == "train"
    h.to_json(root / "h.json")
    return root / "h.json"


def test_batch_of_one_left_by_unreadable_images_is_left_out_and_resumes(tmp_path):
    # 8 train images, 7 unreadable, batches of 4: one batch holds a single readable image
    h = _folder_data(tmp_path / "data", corrupt_train=7)
    args = ["train", "--data", "folder", "--data-dir", tmp_path / "data", "--hierarchy", h,
            "--method", "ce", "--model", "test_resnet", "--batch-size", "4", "--image-size",
            "16", "--workers", "0", "--device", "cpu", "--no-progress", "-o", tmp_path / "r"]
    result = invoke(*args, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "batch of one" in result.output
    line = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["train"]["skipped"] == 8
    assert invoke(*args, "--epochs", "2", "--resume").exit_code == 0


# ---------------------------------------------------------------------- 5. inputs
def _hierarchy_dict():
    return Hierarchy.from_edges([("r", "a"), ("r", "b")]).to_dict()


@pytest.mark.parametrize("change, match", [
    (lambda d: d["classes"].__setitem__(0, 1), "holds 1 \\(int\\)"),
    (lambda d: d["edges"][0].__setitem__(1, None), "holds None"),
    (lambda d: d.update(names={"a": 3}), "names must be JSON strings"),
    (lambda d: d.update(version=2), "format version 2; this hafcls reads up to version 1"),
    (lambda d: d.update(version="1"), "version"),
])
def test_hierarchy_files_with_wrong_types_or_future_versions_are_refused(change, match,
                                                                        tmp_path):
    data = _hierarchy_dict()
    data.pop("fingerprint")
    change(data)
    path = tmp_path / "h.json"
    path.write_text(json.dumps(data))
    with pytest.raises(HafclsError, match=match):
        Hierarchy.from_json(path)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.1\nepochs: 2\nlr: 0.01\n")
    result = invoke("train", "--config", path, "-o", tmp_path / "r")
    assert result.exit_code == 2 and "sets 'lr' twice" in result.output


def test_resume_after_config_json_was_lost_uses_the_checkpoint_config(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", *TINY, "--lr", "0.05", "-o", run).exit_code == 0
    (run / "config.json").unlink()
    result = invoke("train", "-o", run, "--resume", "--lr", "0.2", "--epochs", "2")
    assert result.exit_code == 2 and "lr=0.2" in result.output and "lr=0.05" in result.output
    result = invoke("train", "-o", run, "--resume", "--epochs", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["lr"] == 0.05


def test_image_modes_are_converted_by_rule_or_refused(tmp_path):
    from hafcls.data.images import CorruptImageError, load_rgb

    grey16 = np.full((4, 4), 32896, dtype=np.uint16)       # 50 % of 16-bit: 128 in 8 bits
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert np.asarray(load_rgb(tmp_path / "g16.png")).tolist() == [[[128] * 3] * 4] * 4
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))        # fully transparent: background
    rgba.save(tmp_path / "a.png")
    assert np.asarray(load_rgb(tmp_path / "a.png"))[0, 0].tolist() == [255, 255, 255]
    la = Image.new("LA", (2, 2), (0, 128))                   # black at half opacity over white
    la.save(tmp_path / "la.png")
    assert np.asarray(load_rgb(tmp_path / "la.png"))[0, 0].tolist() == [127] * 3
    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([0, 0, 0, 200, 0, 0] * 128)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert np.asarray(load_rgb(tmp_path / "p.png"))[0, 0].tolist() == [255, 255, 255]
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    assert np.asarray(load_rgb(tmp_path / "c.jpg"))[0, 0].tolist()[0] > 200  # red stays red
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(CorruptImageError, match="pixel mode 'F'"):
        load_rgb(tmp_path / "f.tif")


# ---------------------------------------------------------------------- 6. memory
def test_summary_histogram_needs_no_distance_matrix(monkeypatch):
    from hafcls.hierarchy import load

    h = load("cifar100")
    d = h.distance_matrix()
    iu = np.triu_indices(h.num_classes, 1)
    expected = np.bincount(d[iu].astype(np.int64))

    def refuse(*a, **k):
        raise AssertionError("summary built a K x K matrix")

    monkeypatch.setattr(type(h), "distance_matrix", refuse)
    text = h.summary()
    for v, c in enumerate(expected):
        if c:
            assert f"  {v:5d}  {c}" in text


def test_predict_streams_batch_by_batch(tmp_path, monkeypatch):
    from hafcls.data import images as I
    from hafcls.engine import predict as P

    run = tmp_path / "run"
    assert invoke("train", *TINY, "-o", run).exit_code == 0
    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.png")
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(files[-1])
    decoded = []
    original = I.load_rgb
    monkeypatch.setattr(I, "load_rgb", lambda p: decoded.append(p) or original(p))
    stream = P.iter_predictions(run, files, batch_size=2, device="cpu")
    next(stream)
    assert len(decoded) == 2  # only the first batch was decoded before the first result


@pytest.mark.parametrize("decode", ["node", "hfbeta"])
def test_predict_decode_matches_the_library(decode, tmp_path):
    from hafcls import inference
    from hafcls.engine.predict import load_predictor
    from hafcls.metrics import node_distance_cost

    run = tmp_path / "run"
    assert invoke("train", *TINY, "-o", run).exit_code == 0
    path = tmp_path / "x.png"
    Image.new("RGB", (16, 16), (200, 30, 60)).save(path)
    result = invoke("predict", run, path, "--decode", decode, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)[0]["decision"]
    model, h, score, transform, dev = load_predictor(run, "cpu")
    with torch.no_grad():
        p = score(model(transform(Image.open(path).convert("RGB"))[None]).float().double())
    if decode == "node":
        node = int(inference.optimal_node(p, h, node_distance_cost(h))[0])
        assert decision["id"] == h.nodes[node]
    else:
        sets = inference.hfbeta_decode(p, h, beta=1.0, count_root=False)
        ids = [h.nodes[i] for i in sets[0].nonzero().flatten().tolist() if i != 0]
        assert [n["id"] for n in decision["nodes"]] == ids


# ---------------------------------------------------------------------- 7. messages
def test_divergence_message_names_only_what_exists(tmp_path):
    folder = RunFolder(tmp_path)
    kept, fix = stop_message(folder, "bf16")
    assert "no checkpoint" in kept and "bf16" not in fix and "--amp none" in fix
    folder.checkpoint_dir.mkdir()
    folder.last.write_bytes(b"x")
    kept, fix = stop_message(folder, "none")
    assert str(folder.last) in kept and "--resume" in fix


def test_tilde_paths_and_exponent_floats(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text("lr: 1e-3\nweight_decay: 5E-4\noutput: ~/runs/a\n")
    cfg = resolve_config({"data_dir": "~/data"}, "~/c.yaml", ["min_lr=1e-2"])
    assert (cfg.lr, cfg.weight_decay, cfg.min_lr) == (1e-3, 5e-4, 1e-2)
    assert cfg.output == str(tmp_path / "runs" / "a") and cfg.data_dir == str(tmp_path / "data")


def test_isa_header_line_gets_a_hint(tmp_path):
    path = tmp_path / "isa.txt"
    path.write_text("parent child\nr a\nr b\n")
    with pytest.raises(HafclsError, match="looks like a header") as info:
        Hierarchy.from_isa_file(path)
    assert "#" in info.value.fix
    path.write_text("r,a\nr,b\n")
    with pytest.raises(HafclsError, match="separated by ','"):
        Hierarchy.from_isa_file(path)


def test_evaluate_on_a_copy_holding_only_test(tmp_path):
    h = _folder_data(tmp_path / "data", corrupt_train=0)
    run = tmp_path / "r"
    args = ["--data", "folder", "--hierarchy", h, "--method", "ce", "--model", "test_resnet",
            "--batch-size", "4", "--image-size", "16", "--workers", "0", "--device", "cpu",
            "--no-progress", "--epochs", "1"]
    assert invoke("train", *args, "--data-dir", tmp_path / "data", "-o", run).exit_code == 0
    only_test = tmp_path / "copy"
    (only_test / "test").parent.mkdir()
    os.rename(tmp_path / "data" / "test", only_test / "test")
    result = invoke("evaluate", run, "--data-dir", only_test, "--device", "cpu")
    assert result.exit_code == 0, result.output
    result = invoke("train", *args, "--data-dir", only_test, "-o", tmp_path / "r2")
    assert result.exit_code == 2 and "No 'train' folder" in result.output


# ---------------------------------------------------------------------- 8. exact values
def test_hedging_at_exactly_the_threshold():
    from hafcls.inference import hedge

    h = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "x"), ("a", "y"), ("b", "z")])
    probs = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)  # x, y, z
    assert h.nodes[int(hedge(probs, h, 0.5).node_index[0])] == "x"   # 0.5 reaches 0.5
    assert h.nodes[int(hedge(probs, h, 0.8).node_index[0])] == "a"   # 0.5 + 0.3 reaches 0.8
    assert h.nodes[int(hedge(probs, h, 0.8 + 1e-9).node_index[0])] == "r"
    assert h.nodes[int(hedge(probs, h, 0.5 + 1e-9).node_index[0])] == "a"


def test_s_min_tolerance_is_the_papers_minus_1e6():
    from hafcls.frames.similarity import resolve_s_min

    k, gamma = 4, 3.0   # the PSD boundary (s = -0.403) lies inside the paper's grid
    h = Hierarchy.from_edges([("r", c) for c in "abcd"])   # every pair at distance 1 = d_max
    e = math.exp(-gamma)

    def s_for(lam_min):  # off-diagonal S = -(1 - lam_min)/(K - 1) gives lambda_min exactly
        off = -(1 - lam_min) / (k - 1)
        return (off - e) / (1 - e)

    assert resolve_s_min(h, gamma, s_for(-0.5e-6))[0] == pytest.approx(s_for(-0.5e-6))
    with pytest.raises(HafclsError):
        resolve_s_min(h, gamma, s_for(-2e-6))
    # the paper's grid: the most negative feasible point, and the next one is infeasible
    grid = np.linspace(-1 / (k - 1), -1, 100)
    value, _ = resolve_s_min(h, gamma, "paper")
    i = int(np.argmin(np.abs(grid - value)))
    assert grid[i] == value

    def lam_min(s):
        off = (1 - s) * e + s
        return min(1 - off, 1 + (k - 1) * off)

    assert lam_min(grid[i]) > -1e-6 and lam_min(grid[i + 1]) <= -1e-6


@pytest.mark.parametrize("alpha", [0.5, 0.3, 1.0])
def test_haframe_loss_closed_form(alpha):
    from hafcls.losses import HAFrameLoss

    s = torch.tensor([[1.0, 0.2, -0.5], [0.2, 1.0, 0.1], [-0.5, 0.1, 1.0]])
    loss = HAFrameLoss(similarity=s, alpha=alpha)
    features = torch.tensor([[3.0, 4.0]])          # |h| = 5
    logits = torch.tensor([[5.0, 0.0, 0.0]])       # cosines 1, 0, 0 (unit class vectors)
    ce = math.log(1 + 2 * math.exp(-5))
    cos_term = 0.0 + 0.2 ** 2 + 0.5 ** 2
    got = float(loss(logits, features, torch.tensor([0])))
    assert got == pytest.approx((1 - alpha) * ce + alpha * cos_term, rel=1e-6)


def test_lock_holder_time_and_host_are_written(tmp_path):
    folder = RunFolder(tmp_path / "r")
    folder.lock()
    info = json.loads((tmp_path / "r" / ".lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] and time.strptime(
        info["started"], "%Y-%m-%d %H:%M:%S")
    folder.unlock()
    cfg = resolve_config({"data": "synthetic"}, None)
    check_run_options(cfg)
