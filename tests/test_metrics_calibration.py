"""ECE, per-level ECE and severity-ECE against direct computations; temperature fitting
recovers a known temperature."""

import numpy as np
import pytest
import torch

from hafcls.hierarchy import Hierarchy
from hafcls.metrics import ece, fit_temperature, per_level_ece, severity_ece


@pytest.fixture(scope="module")
def tree():
    paths = {f"c{i}": ["root", f"g{i // 4}", f"p{i // 2}", f"c{i}"] for i in range(8)}
    return Hierarchy.from_paths(paths)


def direct_ece(conf, correct, bins=15):
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return total


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_ece_against_direct_computation(tree):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 8)) * 2
    targets = rng.integers(0, 8, 2000)
    p = softmax(logits)
    conf, top = p.max(axis=1), p.argmax(axis=1)
    ref = direct_ece(conf, (top == targets).astype(float))
    assert ece(logits, targets) == pytest.approx(ref, abs=1e-12)
    levels = per_level_ece(logits, targets, tree)
    assert set(levels) == {"ece@depth1", "ece@depth2", "ece@depth3"}
    assert levels["ece@depth3"] == pytest.approx(ref, abs=1e-12)
    group = p.reshape(2000, 2, 4).sum(axis=2)  # depth 1: c0-3 and c4-7
    ref1 = direct_ece(group.max(axis=1), (group.argmax(axis=1) == targets // 4).astype(float))
    assert levels["ece@depth1"] == pytest.approx(ref1, abs=1e-12)
    # log-probabilities give the same as logits
    assert ece(np.log(p), targets) == pytest.approx(ref, abs=1e-9)


def test_severity_ece_against_direct_computation(tree):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 8)) * 3
    targets = rng.integers(0, 8, 300)
    p = softmax(logits)
    d = tree.distance_matrix().astype(float)
    pred = p.argmax(axis=1)
    expected, realised = (p * d[pred]).sum(axis=1), d[pred, targets]
    order = np.argsort(expected, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, 15):  # 300 / 15: equal-mass bins of 20
        total += len(chunk) / 300 * abs(expected[chunk].mean() - realised[chunk].mean())
    assert severity_ece(logits, targets, tree) == pytest.approx(total, abs=1e-12)
    # a hedged decision at the root: predicted and realised cost are both H
    root = np.zeros(300, dtype=np.int64)
    assert severity_ece(logits, targets, tree, decisions=root) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_temperature_recovers_known_temperature(true_t):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 10, generator=gen) * 3
    targets = torch.multinomial(torch.softmax(logits / true_t, dim=1), 1, generator=gen)[:, 0]
    fitted = fit_temperature(logits, targets)
    assert fitted == pytest.approx(true_t, rel=0.05)
    nll = torch.nn.functional.cross_entropy
    assert nll(logits / fitted, targets) <= nll(logits / (fitted * 1.01), targets)
    assert nll(logits / fitted, targets) <= nll(logits / (fitted * 0.99), targets)


def test_fit_temperature_bounds():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(logits, [0, 1]) == pytest.approx(1e-2)  # separable: sharpest
    assert fit_temperature(logits, [1, 0]) == pytest.approx(1e2)  # always wrong: flattest
