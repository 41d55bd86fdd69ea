"""Exact ranking (issue 12, item 4): evaluation ranks on float32 logits, never on float32
probabilities; under bf16 autocast the head and its logits stay float32; CRM runs on float64
probabilities; the fitted softmax temperature travels with the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hafcls.engine.evaluate import collapse_measures, evaluate_model
from hafcls.engine.train_step import TrainStep
from hafcls.hierarchy import Hierarchy
from hafcls.losses import CrossEntropyLoss
from hafcls.methods import scores_from_logits
from hafcls.metrics import SeverityMeter

# 8 leaf classes, height 3
EDGES = [("r", "A"), ("r", "B"), ("A", "A1"), ("A", "A2"), ("B", "B1"), ("B", "B2"),
         ("A1", "a"), ("A1", "b"), ("A2", "c"), ("A2", "d"), ("B1", "e"), ("B1", "f"),
         ("B2", "g"), ("B2", "h")]
KS = (1, 3, 5, 8)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tree():
    return Hierarchy.from_edges(EDGES)


class _Head(nn.Module):
    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(table.shape[0], table.shape[1], bias=False)
        self.linear.weight.data.copy_(table.T)

    def forward(self, x):
        return self.linear(x), x


class PatternModel(nn.Module):
    """One-hot inputs pick a row of ``table`` as the logits: an identity "backbone" (exact in
    bf16 on one-hot inputs) and a linear head holding the table."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.backbone = nn.Linear(table.shape[0], table.shape[0], bias=False)
        self.backbone.weight.data.copy_(torch.eye(table.shape[0]))
        self.head = _Head(table)

    def head_input(self, x):
        return self.backbone(x)

    def forward(self, x, return_features=False):
        logits, features = self.head(self.head_input(x))
        return (logits, features) if return_features else logits


def patterns(k: int, n: int, gap: float, base: float = 0.0, seed: int = 0):
    """``n`` logit rows: a random order of the k classes, consecutive logits ``gap`` apart."""
    rng = np.random.default_rng(seed)
    rank = np.stack([rng.permutation(k) for _ in range(n)])
    return torch.tensor(base - gap * rank, dtype=torch.float32)


def loader_for(table: torch.Tensor, k: int, seed: int = 1, batch: int = 16):
    n = table.shape[0]
    x = torch.eye(n)
    y = torch.from_numpy(np.random.default_rng(seed).integers(0, k, n))
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)], y


def brute_hierdist(logits: np.ndarray, y: np.ndarray, dist: np.ndarray, k: int) -> float:
    """Mean over samples of the mean distance of the k best classes (ties: lower index)."""
    out = []
    for row, t in zip(logits, y):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c))
        out.append(np.mean([dist[t, c] for c in order[:k]]))
    return float(np.mean(out))


def _meter_on(scores, y, tree):
    meter = SeverityMeter(tree, ks=KS)
    meter.update(scores, y)
    return meter.compute()


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_logit_gaps_of_300_keep_the_ranking(tree, amp):
    k = tree.num_classes
    table = patterns(k, 48, gap=300.0)
    loader, y = loader_for(table, k)
    got = evaluate_model(PatternModel(table), loader, tree, CPU, amp=amp, ks=KS)
    dist = tree.distance_matrix()
    for kk in KS:
        assert got[f"hierdist@{kk}"] == pytest.approx(
            brute_hierdist(table.numpy(), y.numpy(), dist, kk), abs=1e-12)
    # the finding: ranking float32 probabilities ties the underflowed tail and moves HierDist
    probs = _meter_on(scores_from_logits(table), y, tree)
    assert any(abs(probs[f"hierdist@{kk}"] - got[f"hierdist@{kk}"]) > 0.05 for kk in (3, 5))


def test_bf16_autocast_keeps_float32_logits(tree):
    k = tree.num_classes
    # logits 1000 - 0.25 * rank: bf16's spacing at 1000 is 4, so bf16 logits would all tie
    table = patterns(k, 32, gap=0.25, base=1000.0, seed=3)
    loader, y = loader_for(table, k, seed=4)
    model = PatternModel(table)
    exact = evaluate_model(model, loader, tree, CPU, amp="none", ks=KS)
    half = evaluate_model(model, loader, tree, CPU, amp="bf16", ks=KS)
    assert {m: half[m] for m in exact if m.startswith(("hierdist", "top"))} == \
        {m: exact[m] for m in exact if m.startswith(("hierdist", "top"))}
    assert half["hierdist@3"] == pytest.approx(
        brute_hierdist(table.numpy(), y.numpy(), tree.distance_matrix(), 3), abs=1e-12)
    tied = _meter_on(table.bfloat16(), y, tree)  # what bf16 logits would have given
    assert tied["hierdist@3"] != pytest.approx(exact["hierdist@3"], abs=1e-3)
    # training under autocast: the head's logits and the loss are float32 as well
    step = TrainStep(model, CrossEntropyLoss())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = step(loader[0][0], loader[0][1])
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    torch.testing.assert_close(logits, table[:16], rtol=0, atol=0)


def test_crm_ranks_on_float64_probabilities(tree):
    k = tree.num_classes
    table = patterns(k, 40, gap=15.0, seed=5)  # float32 probabilities underflow past rank 6
    loader, y = loader_for(table, k, seed=6)
    got = evaluate_model(PatternModel(table), loader, tree, CPU, crm=True, ks=KS)
    p = torch.softmax(table.double(), dim=1).numpy()
    dist = tree.distance_matrix().astype(np.float64)
    neg_risk = -(p @ dist)  # risk_j = Σ_i p_i d(i, j)
    for kk in KS:
        assert got[f"hierdist@{kk}"] == pytest.approx(
            brute_hierdist(neg_risk, y.numpy(), dist, kk), abs=1e-12)


def test_nc4_uses_the_network_predictions_with_bias(tree):
    # a linear head with a large bias on class 0: the network predicts 0 for every sample
    k = tree.num_classes
    torch.manual_seed(0)
    model = PatternModel(torch.eye(k) * 4.0)
    model.head.linear.bias = nn.Parameter(torch.zeros(k))
    model.head.linear.bias.data[0] = 100.0
    model.class_vectors = lambda: model.head.linear.weight.T
    x = torch.eye(k).repeat(3, 1) + 0.01 * torch.randn(3 * k, k)
    y = torch.arange(k).repeat(3)
    out = collapse_measures(model, [(x, y)], CPU)
    # nearest class mean = the true class, the network says 0: disagreement on 7 of 8 classes
    assert out["nc4"] == pytest.approx((k - 1) / k)
    from hafcls.metrics import neural_collapse

    no_bias = neural_collapse(x, y, classifier=model.class_vectors().detach())
    assert no_bias["nc4"] == 0.0  # what ignoring the bias reports
    with_bias = neural_collapse(x, y, classifier=model.class_vectors().detach(),
                                bias=model.head.linear.bias.detach())
    assert with_bias["nc4"] == pytest.approx((k - 1) / k)


def test_fitted_temperature_is_stored_and_used(tree, tmp_path):
    import hafcls
    from hafcls.engine.builders import model_from_checkpoint
    from hafcls.engine.checkpoint import load_checkpoint, save_checkpoint
    from hafcls.engine.evaluate import calibrate_checkpoint, collect_logits

    torch.manual_seed(0)
    model = hafcls.create_model("test_resnet", tree, head="linear").eval()
    meta = {"model_config": model.config, "hierarchy": tree.to_dict(),
            "method": {"score_temperature": 0.07}}
    path = save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict()}, meta)
    x = torch.randn(24, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    y[::3] = (y[::3] + 1) % 8  # mostly the model's own top-1: a finite best temperature
    loader = [(x[:12], y[:12]), (x[12:], y[12:])]
    fit, score = calibrate_checkpoint(model, path, loader, CPU)
    logits, y = collect_logits(model, loader, CPU)
    # the minimum of the NLL over a fine grid of temperatures
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 2001))
    nll = [float(nn.functional.cross_entropy(logits.double() / t, y)) for t in grid]
    assert fit["nll"] <= min(nll) + 1e-9 and fit["nll"] <= fit["nll_t1"]
    assert fit["temperature"] == pytest.approx(grid[int(np.argmin(nll))], rel=5e-3)
    assert fit["default"] == 0.07 and fit["n"] == 24
    stored = load_checkpoint(path)["meta"]["method"]
    assert stored["score_temperature"] == fit["temperature"]
    restored, _, restored_score = model_from_checkpoint(load_checkpoint(path), path=path)
    expected = torch.softmax(logits / fit["temperature"], dim=1)
    torch.testing.assert_close(restored_score(logits), expected)
    torch.testing.assert_close(score(logits), expected)
