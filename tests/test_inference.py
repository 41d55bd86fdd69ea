"""CRM, hedging and top-k with severity: hand-worked cases and the tree/matmul equivalence."""

import math

import numpy as np
import pytest
import torch

from hafcls import inference
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics import evaluate, topk_indices


@pytest.fixture(scope="module")
def tree():
    # root -> A -> a1, a2 ; root -> B -> b1, b2   (siblings at distance 1, others 2)
    return Hierarchy.from_paths(
        {"a1": ["root", "A", "a1"], "a2": ["root", "A", "a2"],
         "b1": ["root", "B", "b1"], "b2": ["root", "B", "b2"]},
        names={"a1": "apple", "A": "fruit"},
    )


@pytest.fixture(scope="module")
def uneven():
    """Classes at depths 0..4, including the root and an internal class."""
    edges = [("r", "a"), ("a", "a1"), ("a", "a2"), ("a2", "a2x"), ("a2", "a2y"), ("r", "c"),
             ("c", "c1"), ("c", "c2"), ("r", "z"), ("a1", "a1p"), ("a1p", "a1q")]
    return Hierarchy.from_edges(edges, ["a1q", "a2x", "r", "a2y", "c", "c1", "c2", "z", "a2"])


# ---------------------------------------------------------------------- CRM
def test_crm_hand_worked_changes_the_top1(tree):
    probs = torch.tensor([[0.4, 0.0, 0.3, 0.3]], dtype=torch.float64)
    # risk_j = Σ_i p_i d(i, j): a1 .3*2+.3*2, a2 .4*1+.6*2, b1 .4*2+.3*1, b2 .4*2+.3*1
    risk = inference.conditional_risk(probs, tree)
    torch.testing.assert_close(risk, torch.tensor([[1.2, 1.6, 1.1, 1.1]], dtype=torch.float64))
    scores = inference.crm(probs, tree)
    torch.testing.assert_close(scores, -risk)
    assert probs.argmax().item() == 0  # most probable: a1 ...
    assert topk_indices(scores, 4).tolist() == [[2, 3, 0, 1]]  # ... min risk: b1 (tie b2 -> b1)
    label = torch.tensor([3])  # true class b2: plain top-1 costs 2, CRM's costs 1
    assert evaluate(probs, label, tree)["mistake_severity"] == 2.0
    assert evaluate(scores, label, tree)["mistake_severity"] == 1.0


def test_crm_tree_path_equals_matmul(uneven):
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(300, uneven.num_classes, generator=gen, dtype=torch.float64)
    probs[:5] = 0  # rows of zeros and one-hot rows are fine
    probs[5:10, 2] = 1
    d = uneven.distance_matrix()
    want = probs @ torch.from_numpy(d.astype(np.float64))
    torch.testing.assert_close(inference.conditional_risk(probs, uneven), want,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inference.conditional_risk(probs, d), want, rtol=1e-12, atol=1e-12)
    f32 = inference.conditional_risk(probs.float(), uneven)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), want, rtol=1e-5, atol=1e-5)
    out = inference.crm(probs.numpy(), uneven)  # numpy in, numpy out
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, -want.numpy(), rtol=1e-12, atol=1e-12)


def test_crm_validation(tree):
    with pytest.raises(HafclsError, match="negative"):
        inference.crm(torch.tensor([[0.5, -0.1, 0.3, 0.3]]), tree)
    with pytest.raises(HafclsError, match="NaN"):
        inference.crm(torch.tensor([[0.5, math.nan, 0.3, 0.3]]), tree)
    with pytest.raises(HafclsError, match="3 columns but there are 4"):
        inference.crm(torch.ones(2, 3), tree)


# ---------------------------------------------------------------------- hedging
P = torch.tensor([[0.4, 0.35, 0.15, 0.1]], dtype=torch.float64)  # A = .75, B = .25


@pytest.mark.parametrize("threshold, node, prob", [
    (0.0, "a1", 0.4),    # no hedging: the top-1 class
    (0.3, "a1", 0.4),    # a1 and a2 both qualify at depth 2: the more probable
    (0.38, "a1", 0.4),
    (0.5, "A", 0.75),    # no class reaches .5; A does
    (0.76, "root", 1.0),
    (1.0, "root", 1.0),
])
def test_hedge_hand_worked(tree, threshold, node, prob):
    result = inference.hedge(P, tree, threshold)
    assert result.node_ids == [node]
    assert result.probability.item() == pytest.approx(prob, abs=1e-12)
    assert result.depth.item() == tree.depth(node)
    assert tree.nodes[result.node_index.item()] == node


def test_hedge_ties_and_extremes(tree):
    uniform = torch.full((1, 4), 0.25)
    assert tree.nodes.index("A") < tree.nodes.index("B")
    # A = B = .5: lower node index; four leaves tie: lower index; top-1 with ties to class 0
    assert inference.hedge(uniform, tree, 0.5).node_ids == ["A"]
    assert inference.hedge(uniform, tree, 0.25).node_ids == ["a1"]
    assert inference.hedge(uniform, tree, 0.0).node_ids == ["a1"]
    # threshold 1: the deepest node holding all the mass
    probs = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.1, 0.0, 0.5, 0.4]])
    assert inference.hedge(probs, tree, 1.0).node_ids == ["b1", "B", "root"]
    # rows are normalised first: 2 of 4 is one half
    result = inference.hedge(torch.tensor([[2.0, 0.0, 1.0, 1.0]]), tree, 0.5)
    assert result.node_ids == ["a1"] and result.probability.item() == 0.5


def test_hedge_at_zero_is_the_top1_even_with_classes_at_several_depths():
    h = Hierarchy.from_edges([("r", "X"), ("X", "x1"), ("r", "Y"), ("Y", "y1"), ("y1", "y2")],
                             ["X", "x1", "y2"])
    probs = torch.tensor([[0.9, 0.0, 0.1]])
    assert inference.hedge(probs, h, 0.0).node_ids == ["X"]
    # above zero the deepest qualifying node wins, even a less probable one
    assert inference.hedge(probs, h, 0.05).node_ids == ["y2"]
    assert inference.hedge(probs, h, 0.5).node_ids == ["X"]


def test_hedge_matches_a_per_node_reference(uneven):
    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(200, uneven.num_classes, generator=gen) ** 3
    node_idx, cls_idx = uneven.membership()
    depths = uneven.node_depths
    for threshold in (0.2, 0.5, 0.9):
        result = inference.hedge(probs, uneven, threshold)
        for row, got in zip(probs.double().tolist(), result.node_index.tolist()):
            mass = np.zeros(uneven.num_nodes)
            np.add.at(mass, node_idx, np.asarray(row)[cls_idx] / sum(row))
            ok = [v for v in range(uneven.num_nodes) if mass[v] >= threshold - 1e-12]
            want = max(ok, key=lambda v: (depths[v], mass[v], -v))
            assert got == want


def test_hedged_metrics_hand_worked(tree):
    probs = torch.tensor([[0.8, 0.1, 0.05, 0.05], [0.4, 0.4, 0.1, 0.1], [0.3, 0.1, 0.3, 0.3]])
    result = inference.hedge(probs, tree, 0.7)
    assert isinstance(result, inference.HedgeResult) and len(result) == 3
    assert result.node_ids == ["a1", "A", "root"]
    out = inference.hedged_metrics(result, torch.tensor([0, 1, 2]), tree)
    assert out["accuracy"] == 1.0  # a1 = a1, A is above a2, the root is above everything
    # information gain 1 - log(#classes below) / log K: a1 1, A 1 - log 2 / log 4 = .5, root 0
    assert out["specificity"] == pytest.approx(0.5)
    assert out["mean_depth"] == 1.0 and out["n"] == 3
    assert inference.hedged_metrics(result, [1, 2, 2], tree)["accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(HafclsError, match="outside the 4 classes"):
        inference.hedged_metrics(result, [0, 1, 4], tree)


def test_hedge_validation(tree):
    with pytest.raises(HafclsError, match=r"\[0, 1\]"):
        inference.hedge(P, tree, 1.5)
    with pytest.raises(HafclsError, match="sums to 0"):
        inference.hedge(torch.zeros(1, 4), tree, 0.5)
    with pytest.raises(HafclsError, match="needs a Hierarchy"):
        inference.hedge(P, tree.distance_matrix(), 0.5)


# ---------------------------------------------------------------------- top-k for display
def test_topk_with_severity_hand_worked(tree):
    out = inference.topk_with_severity(P, tree, k=3)
    assert len(out) == 1
    top = out[0]["top"]
    assert [c["id"] for c in top] == ["a1", "a2", "b1"]
    assert [c["distance"] for c in top] == [0, 1, 2]
    assert [c["index"] for c in top] == [0, 1, 2]
    assert top[0]["name"] == "apple" and top[1]["name"] == "a2"
    assert top[0]["prob"] == pytest.approx(0.4)
    assert out[0]["lca"] == {"index": 0, "id": "root", "name": "root", "depth": 0}
    assert inference.topk_with_severity(P, tree, k=2)[0]["lca"]["id"] == "A"
    assert inference.topk_with_severity(P, tree, k=2)[0]["lca"]["name"] == "fruit"
    assert inference.topk_with_severity(P, tree, k=1)[0]["lca"]["id"] == "a1"
    assert len(inference.topk_with_severity(P, tree, k=10)[0]["top"]) == 4  # clipped to K


def test_topk_with_severity_ranked_by_crm(tree):
    probs = torch.tensor([[0.4, 0.0, 0.3, 0.3]])
    out = inference.topk_with_severity(probs, tree, k=2, scores=inference.crm(probs, tree))[0]
    assert [(c["id"], c["distance"]) for c in out["top"]] == [("b1", 0), ("b2", 1)]
    assert [c["prob"] for c in out["top"]] == pytest.approx([0.3, 0.3])
    assert out["lca"]["id"] == "B"
    with pytest.raises(HafclsError, match="positive integer"):
        inference.topk_with_severity(probs, tree, k=0)


def test_topk_lca_with_an_internal_class(uneven):
    # classes a2 (internal) and a2x (below it): their LCA is a2 itself
    probs = torch.zeros(1, uneven.num_classes)
    probs[0, uneven.class_index("a2")] = 0.6
    probs[0, uneven.class_index("a2x")] = 0.4
    out = inference.topk_with_severity(probs, uneven, k=2)[0]
    assert [c["id"] for c in out["top"]] == ["a2", "a2x"]
    assert out["top"][1]["distance"] == uneven.height - uneven.depth("a2")
    assert out["lca"]["id"] == "a2"
