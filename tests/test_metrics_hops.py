"""HOPS@k and top-k order accuracy: hand-worked rankings, a literal reference on random trees,
exact ranking with logit gaps of 300 (float32 probabilities would tie) and bf16 inputs."""

import numpy as np
import pytest
import torch

from hafcls.hierarchy import Hierarchy
from hafcls.metrics import (
    evaluate,
    full_ranking,
    hierdist_curve,
    hops,
    ranked_distances,
    topk_order_accuracy,
)


@pytest.fixture(scope="module")
def tree():
    # root -> A -> a1, a2 ; root -> B -> b1, b2   (H = 2; classes a1, a2, b1, b2 = 0..3)
    return Hierarchy.from_paths({
        "a1": ["root", "A", "a1"], "a2": ["root", "A", "a2"],
        "b1": ["root", "B", "b1"], "b2": ["root", "B", "b2"],
    })


def scores_for(order, num_classes):
    """A score row ranking the classes in ``order`` (best first)."""
    row = np.zeros(num_classes, dtype=np.float32)
    row[list(order)] = np.arange(num_classes, 0, -1)
    return row[None, :]


# For label a1: d = (0, 1, 2, 2), dense ranks r = (0, 1, 2, 2), ideal e = (0, 1, 2, 2).
# Weights: run 0 -> 1; run 1 -> 1/2; last run (length 2) -> 1/4, 1/4 * (1 - 1/2) = 1/8.
# Full HOPS: e' = (2, 2, 1, 0), W = 1*2 + .5*1 + .25*1 + .125*2 = 3.
@pytest.mark.parametrize("order, k, expected", [
    ((0, 1, 2, 3), None, 1.0),        # perfect order
    ((0, 1, 3, 2), None, 1.0),        # b1 and b2 share a distance: either order is ideal
    ((0, 2, 1, 3), None, 1 - 0.75 / 3),  # o = (0, 2, 1, 2): D = .5*1 + .25*1
    ((0, 2, 1, 3), 2, 1 - 0.5 / 1.5),    # e' = (1, 0, 2, 2): W = 1 + .5; D = .5*1
    ((2, 1, 0, 3), 3, 0.0),           # first 3 of the ideal order reversed: D = W = 2.5
    ((2, 3, 1, 0), None, 0.0),        # the whole ideal order reversed (a tie-equivalent of it)
    ((1, 0, 2, 3), 1, 0.0),           # HOPS@1 = top-1 correctness
    ((0, 3, 2, 1), 1, 1.0),
])
def test_hand_worked(tree, order, k, expected):
    assert hops(scores_for(order, 4), [0], tree, k=k) == pytest.approx(expected, abs=1e-12)


def test_reversed_prefix_is_zero_and_k1_is_top1(tree):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 4)).astype(np.float32)
    targets = rng.integers(0, 4, 300)
    top1 = (scores.argmax(axis=1) == targets).mean()
    assert hops(scores, targets, tree, k=1) == pytest.approx(top1)
    out = evaluate(scores, targets, tree, ks=(1, 2, 3))
    assert out["hops@1"] == out["top1"]
    for k in (2, 3):
        assert out[f"hops@{k}"] == pytest.approx(hops(scores, targets, tree, k=k), abs=1e-12)
    assert out["hops"] == pytest.approx(hops(scores, targets, tree), abs=1e-12)


def literal_hops(row, y, d, k):
    """docs/ranking-and-decoding.md written out per sample, with Python lists."""
    num = len(row)
    order = sorted(range(num), key=lambda j: (-row[j], j))
    values = sorted(set(d[y].tolist()))
    r = [values.index(d[y][j]) for j in range(num)]
    e, o = sorted(r), [r[j] for j in order]
    w, p = [], 0
    while p < num:
        n, rank = e.count(e[p]), e[p]
        for q in range(n):
            w.append(2.0 ** -rank * (1 - q / n) if rank == e[-1]
                     else 2.0 ** -rank - q / n * (2.0 ** -rank - 2.0 ** -(rank + 1)))
        p += n
    if k == 1:
        return float(order[0] == y)
    dk = sum(w[p] * abs(o[p] - e[p]) for p in range(k))
    reversed_e = e[:k][::-1] + e[k:]
    wk = sum(w[p] * abs(e[p] - reversed_e[p]) for p in range(num))
    return min(1.0, max(0.0, 1 - dk / wk))


def random_tree(rng, leaves=14):
    paths = {}
    for i in range(leaves):
        branches = rng.integers(0, 3, int(rng.integers(1, 4))).astype(str)
        # a node is named by its branch choices from the root, so the paths form a tree
        paths[f"leaf{i}"] = ["root"] + ["n" + "".join(branches[:t + 1])
                                        for t in range(len(branches))]
    return Hierarchy.from_paths(paths)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_literal_definition(seed):
    rng = np.random.default_rng(seed)
    h = random_tree(rng)
    d = h.distance_matrix()
    num = h.num_classes
    scores = rng.integers(0, 4, (60, num)).astype(np.float32)  # many ties
    targets = rng.integers(0, num, 60)
    for k in (1, 2, 5, num, None):
        kk = num if k is None else k
        ref = [literal_hops(row, y, d, kk) for row, y in zip(scores.tolist(), targets)]
        got = hops(scores, targets, h, k=k, per_sample=True).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-12)


def test_topk_order_accuracy(tree):
    rows = np.concatenate([scores_for(o, 4) for o in
                           [(0, 1, 3, 2), (0, 2, 1, 3), (1, 0, 2, 3), (0, 1, 2, 3)]])
    targets = [0, 0, 0, 0]
    assert topk_order_accuracy(rows, targets, tree, 1) == 0.75
    assert topk_order_accuracy(rows, targets, tree, 2) == 0.5  # (0, 2, ...) breaks at p = 2
    assert topk_order_accuracy(rows, targets, tree, 4) == 0.5  # b1/b2 swapped still ideal


def test_gaps_of_300_rank_exactly_and_bf16_too():
    # 3 levels, 8 classes; the label's ideal order scored with gaps of 300 logits
    paths = {f"c{i}": ["root", f"g{i // 4}", f"p{i // 2}", f"c{i}"] for i in range(8)}
    h = Hierarchy.from_paths(paths)
    order = [5, 4, 7, 6, 1, 0, 3, 2]  # label 5: sibling, cousins, then the other half
    logits = torch.empty(1, 8)
    logits[0, order] = -300.0 * torch.arange(8, dtype=torch.float32)
    assert hops(logits, [5], h) == 1.0
    assert torch.equal(full_ranking(logits)[0], torch.tensor(order))
    # float32 probabilities underflow to exact zeros beyond the first class: ties by index
    probs = logits.softmax(dim=1)
    assert int((probs == 0).sum()) == 7
    assert hops(probs, [5], h) < 1.0
    half = logits.to(torch.bfloat16)  # -300 * p rounds, but the gaps stay ~300
    assert torch.equal(full_ranking(half)[0], torch.tensor(order))
    assert hops(half, [5], h) == 1.0
    out = evaluate(half, torch.tensor([5]), h, ks=(1, 3))
    assert out["hops"] == out["hops@3"] == out["top1"] == 1.0


def test_hierdist_curve_and_ranked_distances(tree):
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [3.0, 4.0, 1.0, 2.0]], dtype=np.float32)
    d = ranked_distances(scores, [0, 2], tree, 3)
    assert d.tolist() == [[0, 1, 2], [2, 2, 1]]  # label b1 ranks a2, a1, b2 first
    np.testing.assert_allclose(hierdist_curve(scores, [0, 2], tree, 10),
                               [1.0, 1.25, 4 / 3, 1.25])
    assert evaluate(scores, [0, 2], tree, ks=(2,))["hierdist@2"] == 1.25


@pytest.mark.parametrize("seed", [3, 4])
def test_cached_tables_equal_uncached(seed):
    """The per-class caches (ideal prefixes, K x K dense ranks) equal the direct computation."""
    from hafcls.metrics.hops import HopsTables

    rng = np.random.default_rng(seed)
    d = random_tree(rng, leaves=30).distance_matrix()
    num = d.shape[0]
    for dist in (d, d.astype(np.float64) * 0.5):  # integer and float distances (ties in both)
        tables = HopsTables.of(dist)
        y = torch.from_numpy(rng.integers(0, num, 50))
        for size in (1, 3, num):
            e, w = tables.ideal_prefix(y, size)
            e0, w0 = tables.ideal(y, torch.arange(size)[None, :])
            assert torch.equal(e.long(), e0) and torch.equal(w, w0)
        ranked = torch.from_numpy(np.argsort(rng.normal(size=(50, num)), axis=1))
        cached = tables.obtained(y, ranked)
        tables.group = None  # force the two-gather path
        assert torch.equal(cached.long(), tables.obtained(y, ranked))


def test_full_ranking_is_a_stable_argsort_with_ties_and_threads():
    rng = np.random.default_rng(5)
    # 300 x 1000 = 3e5 keys: the threaded row sort; few distinct values, signed zeros
    scores = rng.integers(-3, 4, (300, 1000)).astype(np.float32) * 0.5
    scores[rng.random(scores.shape) < 0.1] = -0.0
    expected = np.argsort(-(scores + 0.0), axis=1, kind="stable")
    assert np.array_equal(full_ranking(scores).numpy(), expected)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert np.array_equal(full_ranking(scores).numpy(), expected)
    finally:
        torch.set_num_threads(threads)
