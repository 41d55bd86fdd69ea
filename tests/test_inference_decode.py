"""Metric-matched decoding: optimal_node against brute force on random trees and costs, the
hF_beta decoder against exhaustive search over node sets, risk-coverage endpoints."""

import itertools

import numpy as np
import pytest
import torch

from hafcls.hierarchy import Hierarchy
from hafcls.inference import expected_cost, hfbeta_decode, optimal_node, risk_coverage
from hafcls.metrics import hierarchical_prf, node_distance_cost


def random_tree(rng, leaves=9, max_depth=3):
    paths = {}
    for i in range(leaves):
        branches = rng.integers(0, 3, int(rng.integers(1, max_depth + 1))).astype(str)
        # a node is named by its branch choices from the root, so the paths form a tree
        paths[f"leaf{i}"] = ["root"] + ["n" + "".join(branches[:t + 1])
                                        for t in range(len(branches))]
    return Hierarchy.from_paths(paths)


def peaked_probs(rng, n, k):
    return torch.from_numpy(rng.dirichlet(np.full(k, 0.3), size=n))


def hedging_cost(h, wrong=1.0, vague=0.6):
    """0 for the class itself, vague * (1 - coverage) for an ancestor, `wrong` otherwise."""
    below = np.bincount(h.membership()[0], minlength=h.num_nodes)
    cov = 1 - np.log2(below) / np.log2(h.num_classes)
    cost = np.full((h.num_nodes, h.num_classes), wrong)
    for c in range(h.num_classes):
        for t, node in enumerate(h.ancestor_matrix[c]):
            if t <= h.node_depths[h.class_nodes[c]]:
                cost[node, c] = vague * (1 - cov[node])
    return cost


@pytest.mark.parametrize("seed", range(6))
def test_optimal_node_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    h = random_tree(rng, leaves=int(rng.integers(4, 12)))
    probs = peaked_probs(rng, 300, h.num_classes)
    costs = [hedging_cost(h), node_distance_cost(h),
             rng.integers(0, 4, (h.num_nodes, h.num_classes)).astype(float)]  # ties
    for cost in costs:
        risk = probs.double() @ torch.from_numpy(cost).T
        tol = 1e-12 * max(1.0, np.abs(cost).max())
        brute = [next(j for j in range(h.num_nodes) if r[j] <= min(r) + tol)
                 for r in risk.tolist()]
        assert optimal_node(probs, h, cost).tolist() == brute
        assert torch.allclose(expected_cost(probs, h, cost), risk)


def expected_hf(probs, h, subset, b2, count_root):
    """Σ_l p(l) (1+β²)|S ∩ anc(l)| / (|S| + β²|anc(l)|) with anc(l) the class's path."""
    if not subset:
        return np.zeros(len(probs))
    total = np.zeros(len(probs))
    for c in range(h.num_classes):
        path = set(h.ancestor_matrix[c][: h.node_depths[h.class_nodes[c]] + 1].tolist())
        if not count_root:
            path.discard(0)
        total += probs[:, c] * (1 + b2) * len(path & subset) / (len(subset) + b2 * len(path))
    return total


@pytest.mark.parametrize("seed, beta, count_root", [(0, 1.0, False), (1, 2.0, False),
                                                     (2, 0.5, True), (3, 1.0, True),
                                                     (4, 1.0, False)])
def test_hfbeta_decoder_against_exhaustive_search(seed, beta, count_root):
    rng = np.random.default_rng(seed)
    h = random_tree(rng, leaves=6)
    while h.num_nodes > 11:  # 2^10 subsets at most
        h = random_tree(rng, leaves=6)
    probs = peaked_probs(rng, 200, h.num_classes).numpy()
    nodes = range(0 if count_root else 1, h.num_nodes)
    best = np.zeros(len(probs))
    for r in range(1, len(nodes) + 1):
        for subset in itertools.combinations(nodes, r):
            best = np.maximum(best, expected_hf(probs, h, set(subset), beta ** 2, count_root))
    chosen, score = hfbeta_decode(probs, h, beta=beta, count_root=count_root, return_score=True)
    np.testing.assert_allclose(score.numpy(), best, atol=1e-12)
    got = np.array([expected_hf(probs[i:i + 1], h, set(np.flatnonzero(row).tolist()),
                                beta ** 2, count_root)[0] for i, row in enumerate(chosen.numpy())])
    np.testing.assert_allclose(got, best, atol=1e-12)


def test_hfbeta_sets_feed_hierarchical_prf():
    h = Hierarchy.from_paths({"a1": ["r", "A", "a1"], "a2": ["r", "A", "a2"],
                              "b1": ["r", "B", "b1"]})
    # confident a1: the set {A, a1}; split between a1 and a2: {A, a1, a2} (expected hF .72)
    # beats {A} (.6) and {A, a1} (.45 + .45 * 2/4 = .675)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.45, 0.45, 0.10]])
    chosen = hfbeta_decode(probs, h, count_root=False)
    idx = h.node_index
    assert set(np.flatnonzero(chosen[0]).tolist()) == {idx("A"), idx("a1")}
    assert set(np.flatnonzero(chosen[1]).tolist()) == {idx("A"), idx("a1"), idx("a2")}
    out = hierarchical_prf([0, 0], chosen, h)
    assert out["precision"] == 0.8 and out["recall"] == 1.0


def test_risk_coverage_endpoints():
    rng = np.random.default_rng(0)
    h = random_tree(rng, leaves=20)
    while any(h.node_index(c) != n for c, n in zip(h.classes, h.class_nodes)):
        h = random_tree(rng, leaves=20)
    probs = peaked_probs(rng, 500, h.num_classes)
    targets = rng.integers(0, h.num_classes, 500)
    curve = risk_coverage(probs, targets, h)
    t, risk, cov = curve["thresholds"], curve["risk"], curve["coverage"]
    assert t[0] == 0 and t[-1] == np.inf and np.all(np.diff(t) > 0)
    top1 = (probs.argmax(dim=1).numpy() == targets).mean()
    assert risk[0] == pytest.approx(1 - top1) and cov[0] == pytest.approx(1.0)
    assert risk[-1] == 0 and cov[-1] == 0  # the root: always right, covers nothing
    assert np.all(np.diff(cov) <= 1e-12)  # backing off never adds coverage
    assert 0 < curve["aurc"] < 1 - top1


def test_risk_coverage_hand_worked():
    h = Hierarchy.from_paths({"a1": ["r", "A", "a1"], "a2": ["r", "A", "a2"],
                              "b1": ["r", "B", "b1"], "b2": ["r", "B", "b2"]})
    probs = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.125, 0.0, 0.625, 0.25]])  # exact sums
    curve = risk_coverage(probs, [1, 2], h)
    # sample 0: a1 (p .5, wrong) -> A (.75, right) -> root
    # sample 1: b1 (.625, right) -> B (.875) -> root; coverage: leaf 1, A/B .5, root 0
    np.testing.assert_allclose(curve["thresholds"], [0, 0.5, 0.625, 0.75, 0.875, np.inf])
    np.testing.assert_allclose(curve["risk"], [0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(curve["coverage"], [1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    # area under risk(coverage): risk 0 up to 0.75, then a jump to 0.5 at coverage 1
    assert curve["aurc"] == pytest.approx(0.5 * 0.25 * 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_cost_form_reproduces_cost_and_decisions(seed, monkeypatch):
    """δ telescopes back to C exactly; the sparse path decides as the dense product does."""
    from hafcls.inference.decode import _under
    from hafcls.inference.node_cost import cost_increments, sparse_cost

    rng = np.random.default_rng(seed)
    h = random_tree(rng, leaves=25, max_depth=4)
    under = _under(h).astype(np.float64)
    dense = rng.normal(size=(h.num_nodes, h.num_classes))
    for cost in (hedging_cost(h), node_distance_cost(h), dense):
        rows, cols, values = cost_increments(cost, h)
        delta = np.zeros((h.num_nodes, h.num_nodes))
        delta[rows, cols] = values
        np.testing.assert_allclose(delta @ under, cost, atol=1e-12)
    assert sparse_cost(dense, h) is None  # no tree shape: the dense, pruned product decides
    cost = hedging_cost(h)
    monkeypatch.setattr("hafcls.inference.node_cost.SPARSE_SHARE", 1.0)  # small tree: force it
    assert sparse_cost(cost, h) is not None
    probs = peaked_probs(rng, 400, h.num_classes)
    risk = probs @ torch.from_numpy(cost).T
    expected = (risk <= risk.min(dim=1, keepdim=True).values + 1e-12).to(torch.uint8).argmax(1)
    assert torch.equal(optimal_node(probs, h, cost), expected)


@pytest.mark.parametrize("seed", range(3))
def test_node_mass_bottom_up_equals_membership_and_cumulative_forms(seed):
    # the CPU's bottom-up sums, the cumulative-sum form kept for other devices, and the
    # definition (classes at or below each node) agree, classes at inner nodes included
    from hafcls.inference.crm import _Tree

    rng = np.random.default_rng(seed)
    paths = {}
    for i in range(12):
        branches = "".join(rng.integers(0, 3, int(rng.integers(2, 5))).astype(str))
        paths[f"leaf{i}"] = ["root"] + ["n" + branches[:t + 1] for t in range(len(branches))]
    paths["inner"] = paths["leaf0"][:-1]  # a class at an inner node
    h = Hierarchy.from_paths(paths)
    p = peaked_probs(rng, 50, h.num_classes)
    tree = _Tree.of(h, "cpu")
    node_idx, cls_idx = h.membership()
    member = np.zeros((h.num_nodes, h.num_classes))
    member[node_idx, cls_idx] = 1
    want = p.numpy() @ member.T
    np.testing.assert_allclose(tree.node_mass(p).numpy(), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tree._mass(p, tree.all_nodes).numpy(), want, rtol=0, atol=1e-12)


def test_first_near_min_takes_the_lowest_row_within_the_tolerance():
    from hafcls.inference.decode import _first_near_min

    risk = torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.2 + 1e-14, 0.3], [0.1 + 1e-14, 0.1, 0.3]],
                        dtype=torch.float64)
    assert _first_near_min(risk, 1e-12).tolist() == [1, 2, 0]
    assert _first_near_min(risk, 0.15).tolist() == [1, 0, 0]
