"""The papers' 5-level CIFAR-100 tree (docs/hierarchies.md) and the 2-level superclass tree."""

import numpy as np
import pytest

from hafcls.errors import HafclsError
from hafcls.frames.similarity import find_s_min
from hafcls.hierarchy import load
from hafcls.hierarchy.sources.cifar100 import cifar100
from hafcls.hierarchy.sources.cifar100_tree import (
    COARSE_LABEL_NAMES,
    FINE_LABEL_NAMES,
    cifar100_tree,
)
from tests.data_fixtures import write_cifar100

# The widely published per-fine-label superclass index of CIFAR-100 (the files' coarse_labels of
# each fine label, in fine-label order): an encoding independent of the module's table.
OFFICIAL_COARSE_OF_FINE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15,
    3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4,
    2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def test_fine_to_coarse_table_matches_official_layout():
    assert len(FINE_LABEL_NAMES) == 100 and len(set(FINE_LABEL_NAMES)) == 100
    assert list(FINE_LABEL_NAMES) == sorted(FINE_LABEL_NAMES)
    assert FINE_LABEL_NAMES[:4] == ("apple", "aquarium_fish", "baby", "bear")
    assert FINE_LABEL_NAMES[-1] == "worm" and len(COARSE_LABEL_NAMES) == 20
    h = cifar100_tree(2)
    got = [COARSE_LABEL_NAMES.index(h.parent(f)[len("superclass:"):]) for f in FINE_LABEL_NAMES]
    assert got == OFFICIAL_COARSE_OF_FINE
    assert np.bincount(got).tolist() == [5] * 20
    members = {s: {h.classes[i] for i in h.descendant_classes(f"superclass:{s}")}
               for s in ("people", "trees", "vehicles_2", "fish")}
    assert members["people"] == {"baby", "boy", "girl", "man", "woman"}
    assert members["trees"] == {"maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"}
    assert members["vehicles_2"] == {"lawn_mower", "rocket", "streetcar", "tank", "tractor"}
    assert members["fish"] == {"aquarium_fish", "flatfish", "ray", "shark", "trout"}


def test_shipped_five_level_tree():
    h = load("cifar100")
    assert h == cifar100_tree(5)  # the shipped JSON is what the code builds
    assert h.classes == list(FINE_LABEL_NAMES) and h.height == 5
    assert {h.depth(c) for c in h.classes} == {5}
    assert [len(h.level_nodes(t)) for t in range(6)] == [1, 2, 4, 8, 20, 100]
    ids = h.meta["level_ids"]
    path = {ids[n] for n in h.path("apple")[1:]}
    assert path == {"L1-0", "L2-3", "L3-5", "L4-4", "L5-0"}
    assert {ids[n] for n in h.path("bus")[1:4]} == {"L1-1", "L2-1", "L3-7"}
    assert ids[h.parent(h.parent("cloud"))] == "L3-2"


@pytest.mark.parametrize("a,b,d", [
    ("apple", "orange", 1), ("bear", "wolf", 1), ("apple", "rose", 2),
    ("aquarium_fish", "dolphin", 2), ("bear", "bee", 3), ("bear", "maple_tree", 4),
    ("bear", "bus", 5), ("bus", "cloud", 4), ("bus", "tank", 2), ("apple", "apple", 0),
])
def test_hand_checked_distances(a, b, d):
    h = load("cifar100")
    assert h.distance_matrix()[h.class_index(a), h.class_index(b)] == d


def test_s_min_paper_rule():
    assert round(find_s_min(load("cifar100"), 2.0, "paper"), 3) == -0.300
    assert round(find_s_min(load("cifar100-coarse"), 2.0, "paper"), 3) == -0.180


def test_coarse_tree_shipped_and_distances():
    h = load("cifar100-coarse")
    assert h == cifar100_tree(2) and h.height == 2 and h.meta["name"] == "cifar100-coarse"
    d = h.distance_matrix()
    assert d[h.class_index("apple"), h.class_index("orange")] == 1
    assert d[h.class_index("apple"), h.class_index("rose")] == 2


def test_source_loader_both_levels(tmp_path):
    write_cifar100(tmp_path, FINE_LABEL_NAMES, COARSE_LABEL_NAMES, OFFICIAL_COARSE_OF_FINE,
                   n_train=1, n_test=1)
    assert cifar100(tmp_path) == load("cifar100")
    assert cifar100(tmp_path).meta["name"] == "cifar100"
    assert cifar100(tmp_path, levels=2) == load("cifar100-coarse")
    with pytest.raises(HafclsError, match="levels=5"):
        cifar100(tmp_path, levels=3)


def test_source_loader_checks_names_against_tree(tmp_path):
    # a subset in another order keeps the 5-level distances
    write_cifar100(tmp_path / "a", ["bus", "apple", "pear"], ["fruit_and_vegetables",
                   "vehicles_1"], [1, 0, 0], n_train=1, n_test=1)
    h = cifar100(tmp_path / "a")
    assert h.classes == ["bus", "apple", "pear"] and h.height == 5
    assert h.distance_matrix().tolist() == [[0, 5, 5], [5, 0, 1], [5, 1, 0]]
    write_cifar100(tmp_path / "b", ["apple", "dragon"], ["fruit_and_vegetables"], [0, 0],
                   n_train=1, n_test=1)
    with pytest.raises(HafclsError, match="'dragon'"):
        cifar100(tmp_path / "b")
    assert cifar100(tmp_path / "b", levels=2).height == 2
    write_cifar100(tmp_path / "c", ["apple", "bus"], ["fruit_and_vegetables", "vehicles_1"],
                   [1, 0], n_train=1, n_test=1)
    with pytest.raises(HafclsError, match="'apple' under superclass 'vehicles_1'"):
        cifar100(tmp_path / "c")
