"""Hierarchical P/R/F on hand-worked node sets (micro and macro), full-path accuracy."""

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics import full_path_accuracy, hierarchical_prf, node_distance_cost


@pytest.fixture(scope="module")
def tree():
    # root -> A -> a1, a2 ; root -> B -> b1, b2 -> b2x (classes a1 a2 b1 b2x)
    return Hierarchy.from_edges(
        [("root", "A"), ("root", "B"), ("A", "a1"), ("A", "a2"), ("B", "b1"), ("B", "b2"),
         ("b2", "b2x")], classes=["a1", "a2", "b1", "b2x"])


def test_prf_hand_worked(tree):
    n = tree.node_index
    true = [0, 0, 3, 2]
    pred = [n("a1"), n("A"), n("b2"), n("root")]
    # alpha / beta / overlap per sample (root excluded):
    # a1 vs a1: {A,a1} {A,a1} 2 ; A vs a1: {A} {A,a1} 1 ; b2 vs b2x: {B,b2} {B,b2,b2x} 2 ;
    # root vs b1: {} {B,b1} 0
    micro = hierarchical_prf(true, pred, tree)
    assert micro["precision"] == pytest.approx(5 / 5)
    assert micro["recall"] == pytest.approx(5 / 9)
    assert micro["f1"] == pytest.approx(2 * 1 * (5 / 9) / (1 + 5 / 9))
    macro = hierarchical_prf(true, pred, tree, average="macro", beta=2.0)
    p_i, r_i = np.array([1, 1, 1, 0.0]), np.array([1, 0.5, 2 / 3, 0])
    assert macro["precision"] == pytest.approx(p_i.mean())
    assert macro["recall"] == pytest.approx(r_i.mean())
    f1 = np.where(p_i + r_i > 0, 2 * p_i * r_i / np.maximum(p_i + r_i, 1e-300), 0)
    assert macro["f1"] == pytest.approx(f1.mean())
    f2 = np.where(p_i + r_i > 0, 5 * p_i * r_i / np.maximum(4 * p_i + r_i, 1e-300), 0)
    assert macro["f_beta"] == pytest.approx(f2.mean())


def test_prf_wrong_branch_and_node_sets(tree):
    n = tree.node_index
    # predicted a2 for b2x: alpha {A, a2}, beta {B, b2, b2x}: no overlap
    out = hierarchical_prf([3], [n("a2")], tree)
    assert out == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "f_beta": 0.0}
    # a node set {a1, b1} hedges across branches: alpha = {A, a1, B, b1}
    mask = torch.zeros(2, tree.num_nodes, dtype=torch.bool)
    mask[0, [n("a1"), n("b1")]] = True
    mask[1, n("b2x")] = True  # closes to {B, b2, b2x}
    out = hierarchical_prf([0, 3], mask, tree)
    assert out["precision"] == pytest.approx((2 + 3) / (4 + 3))
    assert out["recall"] == pytest.approx((2 + 3) / (2 + 3))
    single = hierarchical_prf([3], [n("b2x")], tree)
    assert single["f1"] == 1.0
    with pytest.raises(HafclsError):
        hierarchical_prf([0], [99], tree)
    with pytest.raises(HafclsError):
        hierarchical_prf([0], [0], tree, average="weighted")


def test_full_path_accuracy(tree):
    # class order a1 a2 b1 b2x; log-probabilities
    probs = np.array([
        [0.40, 0.00, 0.30, 0.30],  # A 0.4 < B 0.6: leaf a1 right, depth 1 wrong -> miss
        [0.40, 0.20, 0.30, 0.10],  # A 0.6, a1 -> hit for label a1
        [0.10, 0.10, 0.20, 0.60],  # B, b2 (0.6), b2x -> hit for label b2x
        [0.10, 0.10, 0.50, 0.30],  # B, b1 -> hit for label b1; miss for b2x at depth 2
    ])
    scores = np.log(np.maximum(probs, 1e-300))
    assert full_path_accuracy(scores, [0, 0, 3, 2], tree) == 0.75
    assert full_path_accuracy(scores, [0, 0, 3, 3], tree) == 0.5


def test_node_distance_cost(tree):
    cost = node_distance_cost(tree)
    d = tree.distance_matrix()
    assert np.array_equal(cost[tree.class_nodes], d)  # classes: the published distance
    assert cost[tree.node_index("root")].tolist() == [3, 3, 3, 3]
    assert cost[tree.node_index("B")].tolist() == [3, 3, 2, 2]
    assert cost[tree.node_index("b2")].tolist() == [3, 3, 2, 1]
