"""End to end through the CLI: train (config file + flags) -> evaluate -> predict, and the errors
users hit (bad config, existing run, foreign hierarchy, damaged image) as exit code 2."""

import json

import numpy as np
import pytest
from cli_helpers import invoke as _invoke
from cli_helpers import train_run
from PIL import Image

from hafcls.cli.quickstart import comparison_table
from hafcls.hierarchy import Hierarchy

CONFIG = {
    "data": "synthetic", "image_size": 16,
    "data_options": {"branching": [2, 2], "per_class": {"train": 10, "val": 3, "test": 3}},
    "method": "haframe", "model": "test_resnet", "epochs": 5, "batch_size": 4, "workers": 0,
    "progress": False, "lr": 0.05,
}
METRIC_ROWS = ("top1", "top5", "mistake_severity", "hierdist@1", "hierdist@5", "hierdist@20",
               "acc@depth1", "acc@depth2", "n")



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    out, result = train_run(root, CONFIG, "--epochs", 2, "--batch-size", 8)
    return root, out, result


def _assert_user_error(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


# ---------------------------------------------------------------------- train
def test_train_writes_the_run_folder_and_flags_override_the_config_file(trained):
    _, out, result = trained
    config = json.loads((out / "config.json").read_text())
    assert (config["epochs"], config["batch_size"]) == (2, 8)       # flags
    assert (config["lr"], config["method"], config["image_size"]) == (0.05, "haframe", 16)  # file
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    final = json.loads((out / "metrics.json").read_text())
    assert {"best_epoch", "val", "test", "wall_time_s"} <= set(final)
    assert set(METRIC_ROWS) <= set(final["test"]) and final["test"]["n"] == 12
    assert (out / "checkpoints" / "last.pt").is_file()
    assert (out / "checkpoints" / "best.pt").is_file()
    for row in METRIC_ROWS:
        assert row in result.output


def test_bad_config_keys_and_types_exit_2_naming_the_key(tmp_path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("epoch: 3\n")
    _assert_user_error(_invoke("train", "--config", bad_key, "--output", tmp_path / "r"),
                       "Unknown option 'epoch'", "did you mean 'epochs'")
    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("epochs: ten\n")
    _assert_user_error(_invoke("train", "--config", bad_type, "--output", tmp_path / "r"),
                       "'epochs'", "an integer")
    _assert_user_error(_invoke("train", "--method", "ce", "--model", "test_resnet",
                               "--set", "warmup_epochs=-1", "--output", tmp_path / "r"),
                       "'warmup_epochs'")
    _assert_user_error(_invoke("train", "--model", "test_resnet", "--output", tmp_path / "r"),
                       "--method")
    assert not (tmp_path / "r").exists()


def test_existing_run_needs_resume_and_resume_keeps_the_run_config(trained):
    _, out, _ = trained
    _assert_user_error(_invoke("train", "--method", "haframe", "--model", "test_resnet",
                               "--output", out), "already holds a training run", "--resume")
    _assert_user_error(_invoke("train", "--resume", "--method", "ce", "--output", out),
                       "Cannot resume with method='ce'")
    # a finished run resumes with its own stored config: nothing is retrained
    before = (out / "checkpoints" / "last.pt").read_bytes()
    result = _invoke("train", "--resume", "--output", out)
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------------- evaluate
def test_evaluate_prints_the_metric_table_and_writes_json(trained):
    root, out, _ = trained
    path = root / "eval.json"
    result = _invoke("evaluate", out, "--json", path)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.split()[:1]]
    table = {line.split()[0]: line.split()[1] for line in lines[1:] if len(line.split()) == 2}
    assert set(METRIC_ROWS) <= set(table)
    metrics = json.loads(path.read_text())
    assert metrics["n"] == 12 and metrics["split"] == "test" and metrics["crm"] is False
    trained_test = json.loads((out / "metrics.json").read_text())["test"]
    for key in METRIC_ROWS:
        assert metrics[key] == pytest.approx(trained_test[key]), key
    assert table["top1"] == f"{100 * metrics['top1']:.2f}%"


def test_evaluate_with_crm_and_json_on_stdout(trained):
    _, out, _ = trained
    result = _invoke("evaluate", out / "checkpoints" / "last.pt", "--crm", "--split", "val",
                     "--json", "-")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["crm"] is True and metrics["split"] == "val" and metrics["n"] == 12


def test_checkpoint_used_with_another_hierarchy_is_refused(trained):
    root, out, _ = trained
    other = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "x"), ("b", "y"), ("b", "z")])
    path = other.to_json(root / "other.json")
    _assert_user_error(_invoke("evaluate", out, "--hierarchy", path), "different hierarchy")


# ---------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def images(trained):
    from hafcls.data import SyntheticHierarchyDataset, synthetic_hierarchy

    root, _, _ = trained
    data = SyntheticHierarchyDataset(synthetic_hierarchy((2, 2)), "test", 1, image_size=16)
    paths = []
    for i in range(2):
        array, _ = data.generate(i)
        paths.append(root / f"img{i}.png")
        Image.fromarray(array).save(paths[-1])
    return paths


def test_predict_lists_top_k_with_distances_to_the_top1_and_the_hedged_node(trained, images):
    _, out, _ = trained
    result = _invoke("predict", out, *images, "--top-k", 3, "--hedge", 0.5, "--json")
    assert result.exit_code == 0, result.output
    preds = json.loads(result.output)
    h = Hierarchy.from_json(out / "hierarchy.json")
    d = h.distance_matrix()
    assert [p["image"] for p in preds] == [str(p) for p in images]
    for p in preds:
        top = p["top"]
        assert [c["rank"] for c in top] == [1, 2, 3]
        probs = [c["prob"] for c in top]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        first = top[0]["index"]
        assert [c["distance"] for c in top] == [int(d[first, c["index"]]) for c in top]
        assert [c["id"] for c in top] == [h.classes[c["index"]] for c in top]
        hedged = p["hedge"]
        assert hedged["prob"] >= 0.5 - 1e-9 and hedged["id"] in h.nodes
        # the hedged node lies on the top-1 class's path or above a more probable group
        assert hedged["depth"] == h.depth(hedged["id"])
    text = _invoke("predict", out, images[0], "-k", 2)
    assert text.exit_code == 0 and "rank" in text.output and str(images[0]) in text.output


def test_predict_with_crm_ranks_by_expected_distance(trained, images):
    _, out, _ = trained
    result = _invoke("predict", out, images[0], "--top-k", 4, "--crm", "--json")
    top = json.loads(result.output)[0]["top"]
    h = Hierarchy.from_json(out / "hierarchy.json")
    probs = np.zeros(h.num_classes)
    for c in top:
        probs[c["index"]] = c["prob"]
    risk = probs @ h.distance_matrix().astype(float)
    assert [c["index"] for c in top] == list(np.argsort(risk, kind="stable"))


def test_predict_on_a_damaged_image_exits_2_naming_the_file(trained, images, tmp_path):
    _, out, _ = trained
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    _assert_user_error(_invoke("predict", out, images[0], bad), "broken.png")
    _assert_user_error(_invoke("predict", out, images[0], "--hedge", 1.5), "--hedge")


# ---------------------------------------------------------------------- quickstart
def test_quickstart_table_lines_up_methods_and_metrics():
    table = comparison_table({
        "ce": {"top1": 0.8125, "mistake_severity": 2.5, "hierdist@1": 0.46875,
               "hierdist@5": 1.2, "hierdist@20": 2.0},
        "haframe": {"top1": 0.8, "mistake_severity": float("nan"), "hierdist@1": 0.4,
                    "hierdist@5": 1.1, "hierdist@20": 1.9},
    })
    lines = table.splitlines()
    assert lines[0].split()[0] == "method" and "HierDist@20" in lines[0]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["ce", "81.25%", "2.500", "0.469", "1.200", "2.000"]
    assert lines[3].split()[:3] == ["haframe", "80.00%", "nan"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
