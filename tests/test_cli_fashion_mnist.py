"""The Fashion-MNIST CLI pieces: `hafcls hierarchy permute` and quickstart's choice of data."""

import importlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hafcls.cli.main import cli
from hafcls.hierarchy import Hierarchy, load
from hafcls.hierarchy.permute import permute_classes


# ---------------------------------------------------------------------- hierarchy permute
def test_permute_writes_the_library_result(tmp_path):
    out = tmp_path / "p.json"
    r = CliRunner().invoke(cli, ["hierarchy", "permute", "fashion-mnist", "--seed", "3",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    h, p = load("fashion-mnist"), Hierarchy.from_json(out)
    assert p == permute_classes(h, 3)  # the CLI is the library function, seed for seed
    assert p.classes == h.classes and p.fingerprint() != h.fingerprint()
    # same shape: the multiset of pairwise distances is kept
    assert sorted(p.distance_matrix().ravel()) == sorted(h.distance_matrix().ravel())
    d, dp = h.distance_matrix(), p.distance_matrix()
    iu = np.triu_indices(10, 1)
    kept = np.mean(d[iu] == dp[iu])
    assert f"{kept:.0%} of class pairs keep their distance" in r.output
    # a file works as the source too, and another seed gives another tree
    r2 = CliRunner().invoke(cli, ["hierarchy", "permute", str(out), "--seed", "4", "-o",
                                  str(tmp_path / "q.json")])
    assert r2.exit_code == 0, r2.output
    assert json.loads((tmp_path / "q.json").read_text())["meta"]["seed"] == 4
    # the file records enough to rebuild the true tree (how a control run is scored)
    from hafcls.engine.compare_control import unpermuted

    assert unpermuted(p) == h and unpermuted(h) is None


def test_permute_bad_input_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(cli, ["hierarchy", "permute", "fashion-mnist", "--seed", "-1",
                                 "-o", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "seed" in r.output.lower()
    r = CliRunner().invoke(cli, ["hierarchy", "permute", str(tmp_path / "none.json"),
                                 "--seed", "0", "-o", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "Traceback" not in r.output


# ---------------------------------------------------------------------- quickstart
@pytest.fixture
def fake_train(monkeypatch):
    """Replace the engine's train with a recorder returning fixed test metrics."""
    engine_train = importlib.import_module("hafcls.engine.train")
    configs = []

    def fake(cfg, log=None):
        configs.append(cfg)
        return {"test": {"top1": 0.5, "mistake_severity": 2.0, "hierdist@1": 1.0,
                         "hierdist@5": 2.0, "hierdist@20": 2.5}, "val": None}

    monkeypatch.setattr(engine_train, "train", fake)
    # quickstart sets torch's thread count for the process: keep the suite's (other tests'
    # bit-exact comparisons depend on it)
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    return configs


def test_quickstart_falls_back_to_synthetic_and_says_how_to_install(tmp_path, fake_train,
                                                                    monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("HAFCLS_FASHION_MNIST_DIR", str(empty))
    r = CliRunner().invoke(cli, ["quickstart", "-o", str(tmp_path / "q"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert [c.data for c in fake_train] == ["synthetic", "synthetic"]
    assert [c.method for c in fake_train] == ["ce", "haframe"]
    assert "apt-get install dataset-fashion-mnist" in r.output
    assert "not installed" in r.output and str(empty) in r.output
    assert ("sudo apt-get" in r.output) != (__import__("os").geteuid() == 0)
    assert "Synthetic data" in r.output and fake_train[0].epochs == 8
    # asking for the real data explicitly: a clear error, nothing trained
    fake_train.clear()
    r = CliRunner().invoke(cli, ["quickstart", "--data", "fashion-mnist", "--data-dir",
                                 str(empty), "-o", str(tmp_path / "q2")])
    assert r.exit_code == 2 and "apt-get install dataset-fashion-mnist" in r.output
    assert fake_train == []


def test_quickstart_uses_fashion_mnist_when_present(tmp_path, fake_train):
    from test_data_fashion_mnist import write_fixture

    write_fixture(tmp_path / "fm", gz=True)
    r = CliRunner().invoke(cli, ["quickstart", "--data-dir", str(tmp_path / "fm"), "-o",
                                 str(tmp_path / "q"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert [c.data for c in fake_train] == ["fashion-mnist"] * 2
    cfg = fake_train[0]
    assert cfg.data_dir == str(tmp_path / "fm") and cfg.workers == 0 and cfg.epochs == 3
    assert cfg.data_options["per_class"] == {"train": 1000, "val": 100}
    assert cfg.output.endswith("fashion-mnist/ce")
    assert "Fashion-MNIST" in r.output and "apt-get" not in r.output
