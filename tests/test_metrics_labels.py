"""Label-based metrics: hand-worked cases on a small unbalanced tree, brute force, errors."""

import numpy as np
import pytest

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics import evaluate
from hafcls.metrics.labels import (
    class_indices,
    evaluate_labels,
    node_indices,
)


@pytest.fixture(scope="module")
def tree():
    # root -> A(a1, a2), B(b1, B2(b2, b3)); H = 3, unbalanced
    edges = [("root", "A"), ("root", "B"), ("A", "a1"), ("A", "a2"), ("B", "b1"),
             ("B", "B2"), ("B2", "b2"), ("B2", "b3")]
    return Hierarchy.from_edges(edges, classes=["a1", "a2", "b1", "b2", "b3"])


def test_hand_worked_case(tree):
    # s1 exact; s2 sibling; s3 hedged at B (an ancestor of b2); s4 hedged at the root
    out = evaluate_labels(["a1", "a1", "b2", "b3"], ["a1", "a2", "B", "root"], tree)
    assert out["n"] == 4
    assert out["top1"] == pytest.approx(1 / 4)
    # mistakes cost H - depth(LCA): a2 vs a1 -> 3-1, B vs b2 -> 3-1, root -> 3-0
    assert out["mistake_severity"] == pytest.approx(7 / 3)
    assert out["node_accuracy"] == pytest.approx(3 / 4)
    # |a∩b| = 2, 1, 1, 0; |a| = 2, 2, 1, 0; |b| = 2, 2, 3, 3
    assert out["hP_micro"] == pytest.approx(4 / 5)
    assert out["hR_micro"] == pytest.approx(4 / 10)
    assert out["hF_micro"] == pytest.approx(2 * 0.8 * 0.4 / 1.2)
    assert out["hP_macro"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert out["hR_macro"] == pytest.approx((1 + 0.5 + 1 / 3 + 0) / 4)
    assert out["hF_macro"] == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)
    f2 = evaluate_labels(["a1", "a1", "b2", "b3"], ["a1", "a2", "B", "root"], tree, beta=2.0)
    assert f2["hF_micro"] == pytest.approx(5 * 0.8 * 0.4 / (4 * 0.8 + 0.4))


def test_no_mistake_gives_nan_severity(tree):
    out = evaluate_labels(["b3", "a2"], ["b3", "a2"], tree)
    assert out["top1"] == 1.0 and np.isnan(out["mistake_severity"])
    assert out["hF_micro"] == out["hF_macro"] == 1.0


def test_brute_force_against_sets_and_severity_module(tree):
    rng = np.random.default_rng(0)
    n = 200
    y_true = rng.choice(tree.classes, size=n)
    y_pred = rng.choice(tree.nodes, size=n)
    out = evaluate_labels(y_true, y_pred, tree)
    inter = sizes_a = sizes_b = 0
    per_p = []
    for t, p in zip(y_true, y_pred):
        a, b = set(tree.path(p)[1:]), set(tree.path(t)[1:])
        inter += len(a & b)
        sizes_a += len(a)
        sizes_b += len(b)
        per_p.append(len(a & b) / len(a) if a else 0.0)
    assert out["hP_micro"] == pytest.approx(inter / sizes_a)
    assert out["hR_micro"] == pytest.approx(inter / sizes_b)
    assert out["hP_macro"] == pytest.approx(np.mean(per_p))

    # class predictions: the severity equals hafcls.metrics.evaluate on one-hot scores
    y_cls = rng.choice(tree.classes, size=n)
    onehot = np.eye(tree.num_classes)[class_indices(y_cls, tree)]
    ref = evaluate(onehot, class_indices(y_true, tree), tree, ks=(1,))
    got = evaluate_labels(y_true, y_cls, tree)
    assert got["top1"] == pytest.approx(ref["top1"])
    assert got["mistake_severity"] == pytest.approx(ref["mistake_severity"])


def test_int_and_float_labels_map_through_str():
    h = Hierarchy.from_edges([("r", "x"), ("r", "y"), ("x", 0), ("x", 1), ("y", 2), ("y", 3)])
    assert class_indices([3, "0", np.int64(2)], h).tolist() == [3, 0, 2]
    assert class_indices(np.array([3, 1.0], dtype=object), h).tolist() == [3, 1]
    out = evaluate_labels(np.array([0, 1, 2]), np.array([1.0, 1.0, 3.0]), h)
    assert out["top1"] == pytest.approx(1 / 3)
    assert out["mistake_severity"] == pytest.approx(1.0)


def test_unknown_labels_are_named(tree):
    with pytest.raises(HafclsError, match=r"2 label\(s\).*'zz'.*Hierarchy.classes"):
        evaluate_labels(["a1", "zz", "qq"], ["a1", "a1", "a1"], tree)
    with pytest.raises(HafclsError, match="'nope'"):
        node_indices(["nope"], tree)
    with pytest.raises(HafclsError, match="class ids"):
        evaluate_labels([0.5], ["a1"], tree)
    with pytest.raises(HafclsError, match="1 labels but y_pred has 2"):
        evaluate_labels(["a1"], ["a1", "a2"], tree)
    with pytest.raises(HafclsError, match="beta"):
        evaluate_labels(["a1"], ["a1"], tree, beta=0)
