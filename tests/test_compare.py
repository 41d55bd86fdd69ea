"""hafcls compare: table maths, CSV/Markdown content, resumability, analysis, CLI and plots."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from hafcls.cli.main import cli
from hafcls.engine import compare as C
from hafcls.engine import compare_tables
from hafcls.errors import HafclsError

# Student-t quantiles t(0.975, dof), from tables (independent of scipy)
T975 = {1: 12.706204736174707, 2: 4.302652729749464}

TINY = {"data": "synthetic", "model": "test_resnet", "epochs": 1, "batch_size": 16,
        "workers": 0, "progress": False, "image_size": 16, "device": "cpu",
        "data_options": {"per_class": 6, "branching": [2, 2]}}
TINY_FLAGS = ["--data", "synthetic", "--model", "test_resnet", "--epochs", "1",
              "--batch-size", "16", "--workers", "0", "--no-progress", "--image-size", "16",
              "--device", "cpu", "--set", "data_options.per_class=6",
              "--set", "data_options.branching=[2,2]"]
METHODS = ["ce", "haframe"]
SEEDS = 2


# ---------------------------------------------------------------------- table maths
def _row(method, seed, top1, sev, h1, h5, h20, crm_shift=0.0):
    row = {"method": method, "seed": seed}
    for prefix, shift in (("", 0.0), ("crm_", crm_shift)):
        row.update({f"{prefix}top1": top1, f"{prefix}mistake_severity": sev - shift,
                    f"{prefix}hierdist@1": h1 - shift, f"{prefix}hierdist@5": h5 - shift,
                    f"{prefix}hierdist@20": h20 - shift, f"{prefix}top5": 1.0,
                    f"{prefix}hops@20": top1, f"{prefix}hops": top1 / 2,
                    f"{prefix}ece": 0.1})
    row["hf1"] = top1  # the hedged decision's hF1 has no CRM variant
    return row


FIXED_ROWS = [
    _row("ce", 0, 0.5, 2.0, 1.0, 1.5, 2.0, crm_shift=0.5),
    _row("ce", 1, 0.6, 2.0, 0.8, 1.5, 2.0, crm_shift=0.5),
    _row("ce", 2, 0.7, 2.0, 0.6, 1.5, 2.0, crm_shift=0.5),
    _row("haframe", 0, 0.8, 1.0, 0.2, 1.0, 1.5),
    _row("haframe", 1, 0.9, 2.0, 0.2, 1.0, 1.5),
    _row("single", 0, 1.0, float("nan"), 0.0, 0.5, 1.0),
]


def test_summaries_match_hand_computed_t_intervals():
    summaries = C.summarize_rows(FIXED_ROWS, ["ce", "haframe", "single", "absent"])
    assert list(summaries) == ["ce", "haframe", "single"]
    ce = summaries["ce"]["plain"]
    # top1 0.5, 0.6, 0.7: mean 0.6, s = 0.1, half-width t(2) * 0.1 / sqrt(3)
    assert ce["top1"]["mean"] == pytest.approx(0.6)
    assert ce["top1"]["std"] == pytest.approx(0.1)
    assert ce["top1"]["ci95"] == pytest.approx(T975[2] * 0.1 / math.sqrt(3), rel=1e-9)
    assert ce["top1"]["n"] == 3
    assert ce["mistake_severity"]["ci95"] == pytest.approx(0.0)
    assert summaries["ce"]["crm"]["hierdist@1"]["mean"] == pytest.approx(0.3)
    hf = summaries["haframe"]["plain"]["mistake_severity"]
    # 1.0, 2.0: mean 1.5, s = sqrt(0.5), half-width t(1) * s / sqrt(2) = t(1) / 2
    assert hf["mean"] == pytest.approx(1.5)
    assert hf["ci95"] == pytest.approx(T975[1] / 2, rel=1e-9)
    single = summaries["single"]["plain"]
    assert math.isnan(single["top1"]["ci95"]) and single["top1"]["n"] == 1


def test_markdown_table_cells():
    summaries = C.summarize_rows(FIXED_ROWS, ["ce", "haframe", "single"])
    plain = C.markdown_table(summaries, "plain").splitlines()
    assert plain[0] == ("| method | runs | top-1 (%) ↑ | mistake severity ↓ | HierDist@1 ↓ | "
                        "HierDist@5 ↓ | HierDist@20 ↓ | HOPS@20 ↑ | HOPS ↑ | "
                        "hF1 (hedged, %) ↑ | ECE (%) ↓ |")
    assert plain[1] == "|---|---|---|---|---|---|---|---|---|---|---|"
    ci_top1 = 100 * T975[2] * 0.1 / math.sqrt(3)  # 24.84...
    ci_h1 = T975[2] * 0.2 / math.sqrt(3)
    ci_hops = T975[2] * 0.1 / math.sqrt(3)
    assert plain[2] == (f"| ce | 3 | 60.00 ± {ci_top1:.2f} | 2.000 ± 0.000 | "
                        f"0.800 ± {ci_h1:.3f} | 1.500 ± 0.000 | 2.000 ± 0.000 | "
                        f"0.600 ± {ci_hops:.3f} | 0.300 ± {ci_hops / 2:.3f} | "
                        f"60.00 ± {ci_top1:.2f} | 10.00 ± 0.00 |")
    assert plain[3].startswith(f"| haframe | 2 | 85.00 ± {100 * T975[1] * 0.05:.2f} | "
                               f"1.500 ± {T975[1] / 2:.3f} |")
    # one run: the value alone; an undefined severity (no mistakes) is n/a, never 0
    assert plain[4] == ("| single | 1 | 100.00 | n/a | 0.000 | 0.500 | 1.000 | 1.000 | 0.500 "
                        "| 100.00 | 10.00 |")
    crm = C.markdown_table(summaries, "crm").splitlines()
    assert "hF1" not in crm[0] and crm[0].endswith("| HOPS ↑ | ECE (%) ↓ |")
    assert "| ce | 3 | 60.00" in crm[2] and "| 1.500 ± 0.000 | 0.300 ±" in crm[2]
    assert crm[2].endswith(f"| 0.600 ± {ci_hops:.3f} | 0.300 ± {ci_hops / 2:.3f} | "
                           "10.00 ± 0.00 |")
    report = C.markdown_report(summaries, "SETTING")
    assert report.count("| method | runs |") == 2 and "SETTING" in report
    assert "95% Student-t" in report


def test_csv_round_trips_exact_values(tmp_path):
    path = C.write_csv(FIXED_ROWS, tmp_path / "r.csv")
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(FIXED_ROWS)
    assert list(back[0]) == list(FIXED_ROWS[0])
    for got, want in zip(back, FIXED_ROWS):
        assert got["method"] == want["method"] and int(got["seed"]) == want["seed"]
        for key in ("top1", "hierdist@1", "crm_hierdist@5"):
            assert float(got[key]) == want[key]  # repr() keeps every digit
    assert math.isnan(float(back[-1]["mistake_severity"]))


def test_parse_seeds_and_methods():
    assert C.parse_seeds(3) == [0, 1, 2]
    assert C.parse_seeds("3") == [0, 1, 2]
    assert C.parse_seeds("0,4,7") == [0, 4, 7]
    for bad in (0, "x", "1,1", [-1]):
        with pytest.raises(HafclsError):
            C.parse_seeds(bad)
    assert C.parse_methods("ce, haframe") == ["ce", "haframe"]
    with pytest.raises(HafclsError, match="Unknown method"):
        C.parse_methods("ce,nope")
    with pytest.raises(HafclsError, match="twice"):
        C.parse_methods("ce,ce")


# ---------------------------------------------------------------------- real runs
class CountingTrain:
    """The real train function, counting calls and the configs it was given."""

    def __init__(self):
        self.configs = []

    def __call__(self, cfg):
        from hafcls.engine.train import train

        self.configs.append(cfg)
        return train(cfg, log=lambda msg: None)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    counter = CountingTrain()
    result = C.compare(METHODS, SEEDS, TINY, out, train_fn=counter, log=lambda msg: None)
    return out, result, counter


def _stamps(out):
    return {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()
            and "plots" not in p.parts and p.name not in ("results.csv", "results.md",
                                                           "summary.json")}


def test_first_call_trains_every_run_and_writes_files(compared):
    out, result, counter = compared
    assert [(c.method, c.seed) for c in counter.configs] == [
        (m, s) for m in METHODS for s in range(SEEDS)]
    assert all(not c.resume for c in counter.configs)
    for m in METHODS:
        for s in range(SEEDS):
            assert (out / "runs" / m / f"seed{s}" / "metrics.json").is_file()
    rows = list(csv.DictReader(open(out / "results.csv", newline="")))
    assert [(r["method"], r["seed"]) for r in rows] == [
        (m, str(s)) for m in METHODS for s in range(SEEDS)]
    md = (out / "results.md").read_text()
    assert md == result.markdown
    summaries = C.summarize_rows(result.rows, METHODS)
    for method in METHODS:
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {method} |"))
        assert compare_tables._cell(summaries[method]["plain"]["top1"], "top1") in line
    assert "test split (24 images)" in md  # 4 classes x 6 images


def test_analysis_agrees_with_engine_and_evaluate(compared):
    from hafcls.engine.evaluate import evaluate_checkpoint

    out, result, _ = compared
    run = out / "runs" / "haframe" / "seed1"
    analysis = C.analyse_run(run)  # cached
    engine = json.loads((run / "metrics.json").read_text())["test"]
    ranking = [k for k in C.COMPARED_METRICS if k not in ("hf1", "ece")]
    for key in ranking:
        assert analysis["metrics"][key] == pytest.approx(engine[key], nan_ok=True)
    # CRM metrics through the engine's own evaluation path
    with_crm = evaluate_checkpoint(run, crm=True, device="cpu", workers=0)
    for key in ranking:
        assert analysis["crm_metrics"][key] == pytest.approx(with_crm[key], nan_ok=True)
    _check_ece_and_hf1(run, analysis)
    for prefix in ("", "crm_"):
        m = analysis[f"{prefix}metrics"]
        curve = analysis[f"{prefix}hierdist_curve"]
        hist = np.asarray(analysis[f"{prefix}mistake_histogram"])
        assert len(curve) == 4  # K = 4 classes < max_k
        assert curve[0] == pytest.approx(m["hierdist@1"])
        assert curve[-1] == pytest.approx(m["hierdist@5"])  # k = 5 clipped to K = 4
        assert hist.sum() == analysis["n"] == 24
        assert hist[0] / hist.sum() == pytest.approx(m["top1"])
        if hist[1:].sum():
            severity = (np.arange(hist.size) * hist).sum() / hist[1:].sum()
            assert severity == pytest.approx(m["mistake_severity"])
    geometry = C.load_geometry(run)
    assert geometry["target"].shape == (4, 4)
    np.testing.assert_allclose(np.diag(geometry["target"]), 1.0, atol=1e-6)
    assert geometry["class_means"].shape[0] == 4


def _test_probabilities(run):
    """The best checkpoint's test probabilities and targets, recomputed directly."""
    import torch

    from hafcls.engine.builders import build_data, model_from_checkpoint
    from hafcls.engine.checkpoint import load_checkpoint
    from hafcls.engine.config import TrainConfig
    from hafcls.engine.runs import find_checkpoint

    ckpt = load_checkpoint(find_checkpoint(run), map_location="cpu")
    model, tree, score = model_from_checkpoint(ckpt)
    data = build_data(TrainConfig.from_dict(ckpt["meta"]["config"]), hierarchy=tree)
    x, y = zip(*(data.test[i] for i in range(len(data.test))))
    with torch.no_grad():
        probs = score(model(torch.stack(x)).float())
    return probs, torch.tensor(y), tree


def _check_ece_and_hf1(run, analysis):
    """ECE and hF1 of the analysis against the library functions on the whole test set."""
    from hafcls.inference import crm, hfbeta_decode
    from hafcls.metrics import ece, hierarchical_prf

    probs, y, tree = _test_probabilities(run)
    # ece() takes log-probabilities (it applies the softmax itself)
    assert analysis["metrics"]["ece"] == pytest.approx(ece(probs.double().log(), y), abs=1e-6)
    sets = hfbeta_decode(probs.double(), tree, beta=1.0, count_root=False)
    want = hierarchical_prf(y.numpy(), np.asarray(sets), tree)["f1"]
    assert analysis["metrics"]["hf1"] == pytest.approx(want, abs=1e-9)
    # with CRM: the confidence is the model's probability of CRM's choice
    choice = crm(probs, tree).argmax(1)
    conf = probs.gather(1, choice[:, None])[:, 0]
    from hafcls.metrics import binned_calibration_error
    want = binned_calibration_error(conf, (choice == y).double(), 15)
    assert analysis["crm_metrics"]["ece"] == pytest.approx(want, abs=1e-6)
    assert "hf1" not in analysis["crm_metrics"]


def test_random_hierarchy_control_trains_permuted_and_scores_true_tree(tmp_path):
    from hafcls.engine.compare_control import true_hierarchy
    from hafcls.engine.config import TrainConfig
    from hafcls.hierarchy import load
    from hafcls.metrics import evaluate

    counter = CountingTrain()
    result = C.compare(["haframe@permuted"], [1], TINY, tmp_path, plots=False,
                       train_fn=counter, log=lambda msg: None, permute_seed=5)
    (control,) = counter.configs
    assert control.method == "haframe" and control.hierarchy.endswith("permuted-seed6.json")
    true = true_hierarchy(TrainConfig.from_dict(TINY))
    permuted = load(control.hierarchy)
    assert permuted.classes == true.classes
    assert permuted.fingerprint() != true.fingerprint()
    assert [r["method"] for r in result.rows] == ["haframe@permuted"]
    assert "| haframe@permuted | 1 |" in result.markdown
    # the model trained on the permuted tree, scored with the true one
    run = tmp_path / "runs" / "haframe@permuted" / "seed1"
    analysis = C.analyse_run(run, hierarchy=true)  # cached: same stamp
    # from the run folder alone (hafcls plot): the true tree is rebuilt from the permuted one
    assert C.analyse_run(run)["stamp"] == analysis["stamp"]
    probs, y, trained_on = _test_probabilities(run)
    assert trained_on.fingerprint() == permuted.fingerprint()
    keys = ("hierdist@1", "hierdist@5", "hops", "mistake_severity")
    want, other = evaluate(probs, y, true), evaluate(probs, y, permuted)
    for key in keys:
        assert analysis["metrics"][key] == pytest.approx(want[key], nan_ok=True)
    assert any(want[k] != pytest.approx(other[k]) for k in keys)


def test_second_call_trains_nothing(compared):
    out, first, _ = compared
    before = _stamps(out)
    counter = CountingTrain()
    again = C.compare(METHODS, SEEDS, TINY, out, train_fn=counter, log=lambda msg: None)
    assert counter.configs == []
    assert again.trained == [] and len(again.skipped) == len(METHODS) * SEEDS
    assert _stamps(out) == before  # no run file (checkpoint, metrics, analysis) rewritten
    assert again.markdown == first.markdown


def test_interrupted_run_is_resumed_and_changed_options_refused(compared, tmp_path):
    import shutil

    out, first, _ = compared
    copy = tmp_path / "cmp"
    shutil.copytree(out, copy)
    (copy / "runs" / "ce" / "seed1" / "metrics.json").unlink()
    counter = CountingTrain()
    result = C.compare(METHODS, SEEDS, TINY, copy, plots=False, train_fn=counter,
                       log=lambda msg: None)
    assert [(c.method, c.seed, c.resume) for c in counter.configs] == [("ce", 1, True)]
    assert (copy / "runs" / "ce" / "seed1" / "metrics.json").is_file()
    assert result.rows[1]["top1"] == first.rows[1]["top1"]  # same weights, same numbers
    with pytest.raises(HafclsError, match="epochs=1"):
        C.compare(METHODS, SEEDS, {**TINY, "epochs": 2}, copy, train_fn=counter,
                  log=lambda msg: None)
    assert len(counter.configs) == 1


def test_comparison_plots_written(compared):
    pytest.importorskip("matplotlib")
    from hafcls import plots

    out, result, _ = compared
    names = ("similarity", "mistake_distances", "hierdist_at_k", "training_curves")
    for name in names:
        data = result.files[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    groups = C.collect_runs(out)
    analyses = {m: [C.analyse_run(d) for d in dirs] for m, dirs in groups.items()}
    figures = C.comparison_figures(analyses, groups)
    assert {n: len(plots.panels(f)) for n, f in figures.items()} == {
        "similarity": 1 + len(METHODS), "mistake_distances": 2, "hierdist_at_k": 2,
        "training_curves": 4}


def test_cli_compare_reuses_runs_and_plot_command(compared, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    import importlib

    # the module, not the function hafcls.engine re-exports under the same name
    engine_train = importlib.import_module("hafcls.engine.train")

    out, first, _ = compared

    def refuse(cfg, log=None):
        raise AssertionError("nothing should be trained")

    monkeypatch.setattr(engine_train, "train", refuse)
    runner = CliRunner()
    res = runner.invoke(cli, ["compare", "--methods", ",".join(METHODS), "--seeds", str(SEEDS),
                              "--no-plots", "-o", str(out), *TINY_FLAGS])
    assert res.exit_code == 0, res.output
    assert first.markdown.splitlines()[6] in res.output  # the first table's first row
    assert "Trained 0 run(s), reused 4" in res.output
    bad = runner.invoke(cli, ["compare", "--methods", "ce,bogus", "-o", str(tmp_path / "x"),
                              *TINY_FLAGS])
    assert bad.exit_code == 2 and "bogus" in bad.output
    res = runner.invoke(cli, ["plot", str(out / "runs" / "ce" / "seed0"), "-o",
                              str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert {"hierdist_at_k.png", "mistake_distances.png", "similarity.png",
            "training_curves.png"} <= set(written)  # (plot also draws newer figures)


# ---------------------------------------------------------------------- options per method
class FakeTrain:
    """Records configs and leaves a finished run folder (config.json + metrics.json)."""

    def __init__(self):
        self.configs = []

    def __call__(self, cfg):
        from hafcls.engine.runs import RunFolder

        self.configs.append(cfg)
        folder = RunFolder(cfg.output)
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_config(cfg)
        folder.write_metrics({"test": None})


def test_method_options_per_method(tmp_path):
    from hafcls.engine.config import TrainConfig

    fake = FakeTrain()
    cfg = TrainConfig.from_dict({**TINY, "method_options": {"haframe": {"alpha": 0.3},
                                                           "hxe": {"alpha": 0.2}}})
    trained, skipped = C.train_runs(["ce", "haframe", "hxe"], [0], cfg, tmp_path,
                                    train_fn=fake, log=lambda m: None)
    assert [c.method_options for c in fake.configs] == [{}, {"alpha": 0.3}, {"alpha": 0.2}]
    assert len(trained) == 3 and skipped == []
    stored = json.loads((tmp_path / "runs/haframe/seed0/config.json").read_text())
    assert stored["method_options"] == {"alpha": 0.3}
    # same request again: all finished, nothing trained
    C.train_runs(["ce", "haframe", "hxe"], [0], cfg, tmp_path, train_fn=fake,
                 log=lambda m: None)
    assert len(fake.configs) == 3
    # another alpha for HAFrame is another experiment: refused before anything trains (ce
    # seed 1 is new and comes first, yet is not trained)
    other = TrainConfig.from_dict({**TINY, "method_options": {"haframe": {"alpha": 0.5}}})
    with pytest.raises(HafclsError, match="method_options"):
        C.train_runs(["ce", "haframe"], [1, 0], other, tmp_path, train_fn=fake,
                     log=lambda m: None)
    assert len(fake.configs) == 3


def test_shared_method_option_checked_before_training(tmp_path):
    from hafcls.engine.config import TrainConfig

    fake = FakeTrain()
    cfg = TrainConfig.from_dict({**TINY, "method_options": {"alpha": 0.3}})
    with pytest.raises(HafclsError, match="under a method's name"):
        C.train_runs(["haframe", "ce"], [0, 1], cfg, tmp_path, train_fn=fake,
                     log=lambda m: None)
    assert fake.configs == []  # nothing trained before the error
