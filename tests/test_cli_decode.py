"""`hafcls evaluate --decode crm|node|hfbeta`: the reported metrics equal the library functions
called directly on the saved scores; bad decodes and betas exit 2."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import invoke as _invoke
from cli_helpers import train_run

from hafcls import inference
from hafcls import metrics as M
from hafcls.engine.decoding import DECODES, _on_true_path, decision_metrics
from hafcls.engine.runs import RunFolder
from hafcls.hierarchy import Hierarchy

CONFIG = {
    "data": "synthetic", "image_size": 16,
    "data_options": {"branching": [2, 3], "per_class": {"train": 6, "val": 2, "test": 5}},
    "method": "haframe", "model": "test_resnet", "epochs": 1, "batch_size": 8, "workers": 0,
    "progress": False, "lr": 0.05,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    out, _ = train_run(root, CONFIG)
    return root, out, Hierarchy.from_json(RunFolder(out).hierarchy_file)


def _evaluate(root, out, decode, *extra):
    scores, js = root / f"{decode}.npz", root / f"{decode}.json"
    result = _invoke("evaluate", out, "--decode", decode, "--save-scores", scores,
                     "--json", js, *extra)
    assert result.exit_code == 0, result.output
    saved = np.load(scores)
    assert saved["classes"].tolist() == Hierarchy.from_json(RunFolder(out).hierarchy_file).classes
    probs = torch.from_numpy(saved["probs"]).double()
    return json.loads(js.read_text()), probs / probs.sum(1, keepdim=True), \
        torch.from_numpy(saved["targets"]), result.output


def _common(m, p, y, h):
    logp = torch.log(p.clamp_min(1e-300))
    assert m["n"] == len(y) == 30
    assert m["full_path_acc"] == pytest.approx(M.full_path_accuracy(logp, y, h))
    assert m["ece"] == pytest.approx(M.ece(logp, y))
    for key, value in M.per_level_ece(logp, y, h).items():
        assert m[key] == pytest.approx(value), key
    assert m["aurc"] == pytest.approx(inference.risk_coverage(p, y, h)["aurc"])
    # the saved scores are the ones the ranking metrics were computed on
    assert m["top1"] == pytest.approx(float((p.argmax(1) == y).double().mean()), abs=1e-6) \
        or m["decode"] == "crm"


def test_node_decode_matches_the_library(run):
    root, out, h = run
    m, p, y, output = _evaluate(root, out, "node")
    _common(m, p, y, h)
    cost = M.hedging_cost(h)
    node = inference.optimal_node(p, h, cost)
    anc = h.ancestor_matrix
    depth = h.node_depths[node.numpy()]
    truth = anc[y.numpy(), np.minimum(depth, anc.shape[1] - 1)]
    assert m["node_acc"] == pytest.approx(float((truth == node.numpy()).mean()))
    expected = inference.expected_cost(p, h, cost).gather(1, node[:, None])[:, 0]
    assert m["expected_cost"] == pytest.approx(float(expected.mean()))
    assert m["cost"] == pytest.approx(float(cost[node.numpy(), y.numpy()].mean()))
    prf = M.hierarchical_prf(y, node, h)
    assert (m["hP"], m["hR"], m["hF"]) == pytest.approx(
        (prf["precision"], prf["recall"], prf["f1"]))
    assert m["hF_macro"] == pytest.approx(M.hierarchical_prf(y, node, h, average="macro")["f1"])
    logp = torch.log(p.clamp_min(1e-300))
    assert m["severity_ece"] == pytest.approx(
        M.severity_ece(logp, y, h, decisions=node, cost=cost))
    assert "decode: optimal node" in output
    for row in ("node_acc", "hF", "aurc", "full_path_acc", "ece@depth1", "severity_ece"):
        assert any(line.split()[:1] == [row] for line in output.splitlines()), row


def test_hfbeta_decode_matches_the_library(run):
    root, out, h = run
    m, p, y, _ = _evaluate(root, out, "hfbeta", "--beta", 2)
    _common(m, p, y, h)
    sets = inference.hfbeta_decode(p, h, beta=2.0, count_root=False)  # exact on small trees
    prf = M.hierarchical_prf(y, sets, h, beta=2.0)
    assert m["beta"] == 2.0
    assert (m["hP"], m["hR"], m["hF"], m["hF_beta"]) == pytest.approx(
        (prf["precision"], prf["recall"], prf["f1"], prf["f_beta"]))
    macro = M.hierarchical_prf(y, sets, h, average="macro", beta=2.0)
    assert (m["hF_macro"], m["hF_beta_macro"]) == pytest.approx((macro["f1"], macro["f_beta"]))
    assert m["set_size"] == pytest.approx(float(sets.sum(1).double().mean()))


def test_crm_decode_matches_the_library(run):
    root, out, h = run
    m, p, y, output = _evaluate(root, out, "crm")
    _common(m, p, y, h)
    pick = M.topk_indices(inference.crm(p, h), 1)[:, 0]
    assert m["crm"] is True and "(CRM)" in output
    assert m["top1"] == pytest.approx(float((pick == y).double().mean()), abs=1e-6)
    node = torch.from_numpy(h.class_nodes)[pick]
    logp = torch.log(p.clamp_min(1e-300))
    assert m["severity_ece"] == pytest.approx(M.severity_ece(logp, y, h, decisions=node))
    prf = M.hierarchical_prf(y, node, h)
    assert m["hF"] == pytest.approx(prf["f1"])


def test_argmax_is_the_default_and_differs_from_node_only_in_the_decision(run):
    root, out, _ = run
    result = _invoke("evaluate", out, "--json", "-")
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)
    assert m["decode"] == "argmax" and "node_acc" not in m and "hF" in m and "aurc" in m


@pytest.mark.parametrize("args, words", [
    (("--decode", "greedy"), ("greedy", "--decode")),
    (("--decode", "hfbeta", "--beta", "0"), ("beta", "> 0")),
    (("--decode", "hfbeta", "--beta", "nan"), ("beta",)),
    (("--crm", "--decode", "node"), ("--crm", "--decode")),
])
def test_bad_decode_or_beta_exits_2(run, args, words):
    _, out, _ = run
    result = _invoke("evaluate", out, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


def test_cli_choices_are_the_engine_decodes():
    from hafcls.cli import evaluate

    assert evaluate.DECODES == DECODES


def test_on_true_path_and_the_node_metrics_on_a_hand_tree():
    h = Hierarchy.from_edges([("r", "A"), ("r", "B"), ("A", "a1"), ("A", "a2"), ("B", "b1")])
    idx = h.node_index
    nodes = torch.tensor([idx("a1"), idx("A"), idx("B"), idx("r"), idx("b1")])
    targets = torch.tensor([h.class_index(c) for c in ("a1", "a2", "a1", "b1", "a2")])
    assert _on_true_path(nodes, targets, h).tolist() == [True, True, False, True, False]
    # under the hedging cost (wrong 1, correct 0.6·(1 − coverage)) the 50/50 split between a1
    # and a2 backs off to A: coverage(A) = 1 − log2(2)/log2(3), so A costs 0.6·log2(2)/log2(3)
    # = 0.3786 < 0.5 for either class; the confident first sample keeps a1 (cost 0.02 < 0.385)
    probs = torch.tensor([[0.98, 0.01, 0.01], [0.5, 0.5, 0.0]], dtype=torch.float64)
    order = [h.class_index(c) for c in ("a1", "a2", "b1")]
    p = torch.zeros_like(probs)
    p[:, order] = probs
    m = decision_metrics(p, torch.tensor([order[0], order[1]]), h, "node")
    vague = 0.6 / np.log2(3)
    assert m["node_acc"] == 1.0 and m["node_depth"] == 1.5
    assert m["cost"] == pytest.approx(vague / 2)
    assert m["expected_cost"] == pytest.approx((0.02 + vague) / 2)
    # and under the distance cost no node beats the best class (why node uses the hedging cost)
    dist = M.node_distance_cost(h)
    assert (inference.optimal_node(p, h, dist) == torch.tensor(
        [idx("a1"), idx("a1")])).all()


# ---------------------------------------------------------------------- hafcls plot
def test_plot_command_writes_every_figure_and_caches_the_decisions(run, monkeypatch):
    pytest.importorskip("matplotlib")
    from hafcls.engine import evaluate as engine_evaluate
    from hafcls.engine import figures

    root, out, h = run
    result = _invoke("plot", out, "-o", root / "plots")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (root / "plots").iterdir())
    assert names == ["confusion.png", "hierdist_at_k.png", "mistake_distances.png",
                     "risk_coverage.png", "similarity.png", "training_curves.png"]
    for name in names:
        data = (root / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    # the cached decisions equal the library on the evaluate scores of the same checkpoint
    _, p, y, _ = _evaluate(root, out, "argmax")

    def refuse(*args, **kwargs):
        raise AssertionError("the cached decisions should be reused")

    monkeypatch.setattr(engine_evaluate, "evaluate_checkpoint", refuse)
    cached = figures.decision_analysis(out, device="cpu")
    assert cached["split"] == "test"
    expected = np.zeros((h.num_classes, h.num_classes), dtype=np.int64)
    np.add.at(expected, (y.numpy(), p.argmax(1).numpy()), 1)
    np.testing.assert_array_equal(cached["confusion"], expected)
    assert cached["aurc"] == pytest.approx(inference.risk_coverage(p, y, h)["aurc"], abs=1e-6)


def test_plot_methods_filter_names_missing_methods(tmp_path):
    from hafcls.engine.figures import select_methods
    from hafcls.errors import HafclsError

    groups = {"ce": [tmp_path], "haframe": [tmp_path]}
    assert list(select_methods(groups, ["haframe", "ce"])) == ["haframe", "ce"]
    assert select_methods(groups, None) is groups
    with pytest.raises(HafclsError, match="bogus"):
        select_methods(groups, ["bogus"])


def test_comparison_hierarchy_is_the_true_tree_even_when_controls_outnumber_it(tmp_path):
    from hafcls.engine.figures import comparison_hierarchy
    from hafcls.hierarchy.permute import permute_classes

    true = Hierarchy.from_edges([("r", "A"), ("r", "B"), ("A", "a1"), ("A", "a2"),
                                 ("B", "b1"), ("B", "b2")])
    dirs = {}
    for name, tree in (("x@permuted", permute_classes(true, 0)),
                       ("y@permuted", permute_classes(true, 1)), ("ce", true)):
        (tmp_path / name).mkdir()
        tree.to_json(tmp_path / name / "hierarchy.json")
        dirs[name] = [tmp_path / name]
    assert comparison_hierarchy(dirs).fingerprint() == true.fingerprint()
