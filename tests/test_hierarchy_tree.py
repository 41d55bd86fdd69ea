"""Hierarchy: constructors, hand-checked distances on unbalanced trees, validation, JSON."""

import json

import networkx as nx
import numpy as np
import pytest

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy, load

# root -> X -> {x1, x2};  root -> Y -> Z -> W -> {w1, w2}.  Leaves at depths 2 and 4, H = 4.
UNBALANCED = [("root", "X"), ("X", "x1"), ("X", "x2"), ("root", "Y"), ("Y", "Z"), ("Z", "W"),
              ("W", "w1"), ("W", "w2")]


def test_default_classes_are_sorted_leaves():
    h = Hierarchy.from_edges(UNBALANCED)
    assert h.classes == ["w1", "w2", "x1", "x2"]
    assert h.root == "root" and h.height == 4 and h.num_nodes == 9


def test_published_distance_by_hand():
    h = Hierarchy.from_edges(UNBALANCED, classes=["x1", "x2", "w1", "w2"])
    d = h.distance_matrix()
    # siblings under a depth-1 parent: H - 1 = 3, though their subtree height is 1
    expected = np.array([[0, 3, 4, 4], [3, 0, 4, 4], [4, 4, 0, 1], [4, 4, 1, 0]])
    np.testing.assert_array_equal(d, expected)
    assert d.dtype == np.uint8


def test_lca_height_distance_by_hand():
    h = Hierarchy.from_edges(UNBALANCED, classes=["x1", "x2", "w1", "w2"])
    d = h.distance_matrix("lca_height")
    expected = np.array([[0, 1, 4, 4], [1, 0, 4, 4], [4, 4, 0, 1], [4, 4, 1, 0]])
    np.testing.assert_array_equal(d, expected)


def test_class_at_internal_node():
    h = Hierarchy.from_edges(UNBALANCED, classes=["x1", "Z", "w1"])
    assert h.height == 4
    np.testing.assert_array_equal(
        h.distance_matrix(), [[0, 4, 4], [4, 0, 2], [4, 2, 0]]
    )
    np.testing.assert_array_equal(
        h.distance_matrix("lca_height"), [[0, 4, 4], [4, 0, 2], [4, 2, 0]]
    )
    assert h.descendant_classes("Z") == [1, 2]
    assert h.lca("Z", "w1") == "Z"


def test_balanced_tree_kinds_agree():
    paths = {f"c{i}{j}": ["r", f"p{i}", f"c{i}{j}"] for i in range(3) for j in range(2)}
    h = Hierarchy.from_paths(paths)
    np.testing.assert_array_equal(h.distance_matrix(), h.distance_matrix("lca_height"))
    assert h.distance_matrix()[0, 1] == 1 and h.distance_matrix()[0, 2] == 2


def test_distance_matches_networkx_lca_on_random_tree():
    rng = np.random.default_rng(0)
    g = nx.DiGraph()
    for i in range(1, 120):
        g.add_edge(f"n{rng.integers(0, i)}", f"n{i}")
    h = Hierarchy.from_networkx(g)
    d = h.distance_matrix()
    for _ in range(200):
        a, b = rng.choice(h.classes, 2, replace=False)
        lca = nx.lowest_common_ancestor(g, a, b)
        expected = h.height - nx.shortest_path_length(g, "n0", lca)
        assert d[h.class_index(a), h.class_index(b)] == expected


def test_paths_ancestors_level():
    h = Hierarchy.from_edges(UNBALANCED, classes=["x1", "x2", "w1", "w2"])
    assert h.path("w1") == ["root", "Y", "Z", "W", "w1"]
    assert h.ancestors("x2") == ["root", "X"]
    assert h.depth("W") == 3 and h.parent("root") is None
    lv = h.level(1)
    assert lv[0] == lv[1] != lv[2] == lv[3]
    assert [h.level_nodes(1)[i] for i in lv] == ["X", "X", "Y", "Y"]
    # a class shallower than the depth maps to itself
    assert [h.level_nodes(3)[i] for i in h.level(3)] == ["x1", "x2", "W", "W"]
    with pytest.raises(HafclsError, match="outside"):
        h.level(9)


def test_membership_sums_probabilities_into_nodes():
    h = Hierarchy.from_edges(UNBALANCED, classes=["x1", "x2", "w1", "w2"])
    node_idx, cls_idx = h.membership()
    p = np.array([0.1, 0.2, 0.3, 0.4])
    mass = np.bincount(node_idx, weights=p[cls_idx], minlength=h.num_nodes)
    assert mass[h.node_index("root")] == pytest.approx(1.0)
    assert mass[h.node_index("X")] == pytest.approx(0.3)
    assert mass[h.node_index("Z")] == pytest.approx(0.7)


def test_from_paths_and_networkx_equal_from_edges():
    a = Hierarchy.from_edges(UNBALANCED)
    g = nx.DiGraph(UNBALANCED)
    b = Hierarchy.from_networkx(g)
    c = Hierarchy.from_paths({c: a.path(c) for c in a.classes})
    assert a == b == c
    assert a.fingerprint() != Hierarchy.from_edges(UNBALANCED, ["x1", "w1"]).fingerprint()


def test_isa_file(tmp_path):
    f = tmp_path / "tree.isa"
    f.write_text("# comment\n" + "\n".join(f"{p} {c}" for p, c in UNBALANCED) + "\n\n")
    h = Hierarchy.from_isa_file(f)
    assert h == Hierarchy.from_edges(UNBALANCED)
    f.write_text("root a extra\n")
    with pytest.raises(HafclsError, match="line 1"):
        Hierarchy.from_isa_file(f)


def test_json_round_trip_is_lossless(tmp_path):
    h = Hierarchy.from_edges(UNBALANCED, classes=["x2", "x1", "Z"],
                             names={"x1": "first x", "root": "everything"},
                             meta={"rule": "shortest", "prune_chains": False})
    path = h.to_json(tmp_path / "h.json")
    back = Hierarchy.from_json(path)
    assert back.classes == ["x2", "x1", "Z"]
    assert back == h and back.names == h.names and back.meta == h.meta
    data = json.loads(path.read_text())
    assert data["format"] == "hafcls-hierarchy" and data["fingerprint"] == h.fingerprint()
    np.testing.assert_array_equal(back.distance_matrix(), h.distance_matrix())


def test_json_fingerprint_guards_edits(tmp_path):
    h = Hierarchy.from_edges(UNBALANCED)
    data = h.to_dict()
    data["edges"] = [e for e in data["edges"] if e != ["Z", "W"]] + [["Y", "W"]]
    (tmp_path / "h.json").write_text(json.dumps(data))
    with pytest.raises(HafclsError, match="fingerprint"):
        Hierarchy.from_json(tmp_path / "h.json")


def test_unused_branches_are_pruned():
    h = Hierarchy.from_edges(UNBALANCED, classes=["x1", "x2"])
    assert set(h.nodes) == {"root", "X", "x1", "x2"}
    assert h.height == 2


@pytest.mark.parametrize(
    "edges, classes, match",
    [
        ([], None, "empty"),
        ([("a", "b"), ("b", "c"), ("c", "a")], None, "cycle"),
        ([("a", "a")], None, "own parent"),
        ([("r", "a"), ("r", "b"), ("a", "c"), ("b", "c")], None, "2 parents"),
        ([("r", "a"), ("s", "b")], None, "2 roots"),
        ([("r", "a"), ("r", "b")], ["a", "zz"], "not in the tree"),
        ([("r", "a"), ("r", "b")], ["a", "a"], "listed 2 times"),
        ([("r", "a"), ("r", "a")], None, "listed twice"),
        ([("r", "a")], [], "no classes"),
    ],
)
def test_validation_errors(edges, classes, match):
    with pytest.raises(HafclsError, match=match):
        Hierarchy.from_edges(edges, classes)


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HafclsError, match="not valid JSON"):
        Hierarchy.from_json(bad)
    bad.write_text('{"edges": []}')
    with pytest.raises(HafclsError, match="not a hafcls hierarchy"):
        Hierarchy.from_json(bad)
    latin = tmp_path / "latin.isa"
    latin.write_bytes("r caf\xe9\n".encode("latin-1"))
    with pytest.raises(HafclsError, match="not UTF-8"):
        Hierarchy.from_isa_file(latin)
    with pytest.raises(HafclsError, match="No such file"):
        Hierarchy.from_isa_file(tmp_path / "missing.txt")
    with pytest.raises(HafclsError, match="not one of"):
        Hierarchy.from_edges(UNBALANCED).class_index("nope")
    with pytest.raises(HafclsError, match="Unknown distance kind"):
        Hierarchy.from_edges(UNBALANCED).distance_matrix("euclid")


def test_deep_chain_uses_wider_ints():
    edges = [(f"n{i}", f"n{i + 1}") for i in range(300)] + [("n0", "leaf")]
    h = Hierarchy.from_edges(edges)
    d = h.distance_matrix()
    assert d.dtype == np.int16 and d[0, 1] == 300


def test_shipped_imagenet_1k():
    h = load("imagenet-1k")
    assert h.num_classes == 1000 and h.classes[0] == "n01440764"
    assert h.name("n01440764") == "tench" and h.name(h.root) == "entity"
    d = h.distance_matrix()
    assert d.shape == (1000, 1000) and (d == d.T).all() and (np.diag(d) == 0).all()
    assert d.max() == h.height
