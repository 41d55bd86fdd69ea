"""The random-hierarchy control: same shape, classes shuffled among the positions, seeded."""

import networkx as nx
import numpy as np
import pytest

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy, load
from hafcls.hierarchy.permute import permute_classes


def _internal_edges(h):
    classes = set(h.classes)
    return sorted((p, c) for p, c in h.graph.edges if p not in classes and c not in classes)


def _brute_distance(h, a, b):
    """H - depth(LCA) from root paths, pair by pair (independent of distances.py)."""
    if a == b:
        return 0
    pa, pb = h.path(a), h.path(b)
    common = sum(1 for x, y in zip(pa, pb) if x == y)
    return h.height - (common - 1)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_same_shape_same_classes_permuted_distances(seed):
    h = load("fashion-mnist")
    q = permute_classes(h, seed)
    assert q.classes == h.classes  # output order untouched
    assert q.num_nodes == h.num_nodes and q.height == h.height
    assert nx.is_isomorphic(q.graph, h.graph)
    assert _internal_edges(q) == _internal_edges(h)  # only the class labels moved
    assert sorted(q.node_depths[q.class_nodes]) == sorted(h.node_depths[h.class_nodes])
    assert q.fingerprint() != h.fingerprint()
    p = np.array(q.meta["class_positions"])
    assert sorted(p.tolist()) == list(range(h.num_classes))
    # class i sits where class p[i] sat: same parent, same depth
    for i, c in enumerate(q.classes):
        src = h.classes[p[i]]
        assert q.parent(c) == h.parent(src) and q.depth(c) == h.depth(src)
    d, dq = h.distance_matrix(), q.distance_matrix()
    np.testing.assert_array_equal(dq, d[np.ix_(p, p)])
    brute = np.array([[_brute_distance(q, a, b) for b in q.classes] for a in q.classes])
    np.testing.assert_array_equal(dq, brute)
    assert sorted(dq.ravel()) == sorted(d.ravel())  # same multiset of distances


def test_seed_reproducible_and_recorded():
    h = load("fashion-mnist")
    a, b, c = permute_classes(h, 3), permute_classes(h, 3), permute_classes(h, 4)
    assert a.fingerprint() == b.fingerprint()
    assert a.meta["class_positions"] == b.meta["class_positions"]
    assert a.fingerprint() != c.fingerprint()
    assert a.meta["seed"] == 3 and a.meta["name"] == "fashion-mnist-permuted-3"
    assert a.meta["permuted_from"]["fingerprint"] == h.fingerprint()
    assert a.meta["permuted_from"]["name"] == "fashion-mnist"
    assert h.meta["name"] == "fashion-mnist"  # the source is not modified


def test_json_round_trip(tmp_path):
    q = permute_classes(load("fashion-mnist"), 5)
    r = Hierarchy.from_json(q.to_json(tmp_path / "perm.json"))
    assert r == q and r.meta["class_positions"] == q.meta["class_positions"]


def test_never_returns_an_identical_tree():
    # 3 classes, two of them siblings: 2 of the 6 permutations give the same tree back
    h = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "x"), ("a", "y"), ("b", "z")],
                             ["x", "y", "z"])
    for seed in range(20):
        q = permute_classes(h, seed)
        assert q.fingerprint() != h.fingerprint()
        assert q.distance_matrix().tolist() != h.distance_matrix().tolist()


def test_classes_at_internal_nodes():
    # WordNet-style: a class that is also the parent of another class
    h = Hierarchy.from_edges([("r", "a"), ("a", "b"), ("r", "c"), ("c", "d"), ("c", "e")],
                             ["a", "b", "d", "e"])
    q = permute_classes(h, 2)
    p = np.array(q.meta["class_positions"])
    np.testing.assert_array_equal(q.distance_matrix(), h.distance_matrix()[np.ix_(p, p)])
    assert nx.is_isomorphic(q.graph, h.graph)


def test_bad_inputs():
    h = load("fashion-mnist")
    for seed in (-1, 1.5, True, "0"):
        with pytest.raises(HafclsError, match="seed"):
            permute_classes(h, seed)
    flat = Hierarchy.from_edges([("r", "x"), ("r", "y"), ("r", "z")])
    with pytest.raises(HafclsError, match="interchangeable"):
        permute_classes(flat, 0)
    with pytest.raises(HafclsError, match="Expected a Hierarchy"):
        permute_classes("fashion-mnist", 0)
