"""The one HAFrame similarity formula (numpy and torch) and the fast dense S of a tree."""

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.frames import similarity_from_distance
from hafcls.frames.tree import TreeSimilarity
from hafcls.hierarchy import Hierarchy, lca_depth_matrix, load


def test_formula_closed_form_numpy_and_torch_agree():
    d = np.array([[0, 1, 3], [1, 0, 2], [3, 2, 0]], dtype=np.uint8)
    gamma, s_min = 2.0, -0.3
    by_hand = np.array([[1.0, 1.3 * np.exp(-2 / 3) - 0.3, 1.3 * np.exp(-2.0) - 0.3],
                        [1.3 * np.exp(-2 / 3) - 0.3, 1.0, 1.3 * np.exp(-4 / 3) - 0.3],
                        [1.3 * np.exp(-2.0) - 0.3, 1.3 * np.exp(-4 / 3) - 0.3, 1.0]])
    s_np = similarity_from_distance(d, gamma, s_min)
    assert isinstance(s_np, np.ndarray) and s_np.dtype == np.float64
    assert np.abs(s_np - by_hand).max() < 1e-15
    assert np.all(np.diagonal(s_np) == 1.0)  # exactly, not (1 - s_min) + s_min
    s_t = similarity_from_distance(torch.from_numpy(d), gamma, s_min)
    assert isinstance(s_t, torch.Tensor) and s_t.dtype == torch.float64
    assert np.array_equal(s_t.numpy(), s_np)
    s32 = similarity_from_distance(torch.from_numpy(d).float(), gamma, s_min, d_max=3)
    assert s32.dtype == torch.float32 and torch.allclose(s32.double(), s_t, atol=1e-7)
    # d_max given explicitly changes the scale
    assert np.isclose(similarity_from_distance(np.array(1), 1.0, 0.0, d_max=2), np.exp(-0.5))


def test_formula_rejects_all_zero_distances():
    with pytest.raises(HafclsError, match="d_max"):
        similarity_from_distance(np.zeros((2, 2)), 1.0, 0.0)
    with pytest.raises(HafclsError, match="d_max"):
        similarity_from_distance(torch.ones(2), 1.0, 0.0, d_max=0)


def _random_tree(rng, n_nodes):
    edges = [(f"n{rng.integers(0, i)}", f"n{i}") for i in range(1, n_nodes)]
    classes = Hierarchy.from_edges(edges).classes
    inner = sorted({p for p, _ in edges})  # the root may be a class too
    classes += list(rng.choice(inner, size=min(5, len(inner)), replace=False))
    rng.shuffle(classes)  # class order unrelated to the tree
    return Hierarchy.from_edges(edges, classes=classes)


@pytest.mark.parametrize("distance", ["published", "lca_height"])
def test_dense_tree_similarity_equals_brute_force(distance):
    rng = np.random.default_rng(11)
    for _ in range(12):
        h = _random_tree(rng, int(rng.integers(4, 60)))
        t = TreeSimilarity(h, distance)
        gamma, s_min = float(rng.uniform(0.5, 4)), float(rng.uniform(-0.2, 0.3))
        d = h.distance_matrix(distance)
        expected = (1 - s_min) * np.exp(-gamma * d / t.d_max) + s_min
        np.fill_diagonal(expected, 1.0)
        for dtype in (np.float64, np.float32):
            got = t.similarity(gamma, s_min, dtype)
            assert got.dtype == dtype
            assert np.abs(got - expected.astype(dtype)).max() <= (1e-15 if dtype == np.float64
                                                                  else 1e-7)
            rows = np.concatenate([r.copy() for _, r in t.similarity_rows(gamma, s_min, dtype,
                                                                          block=7)])
            assert np.array_equal(got, rows)  # the row generator and the fast fill agree bitwise


def test_dense_tree_similarity_on_imagenet_1k_matches_lca_depths():
    h = load("imagenet-1k")
    t = TreeSimilarity(h)
    s = t.similarity(1.0, -0.01)
    d = (h.height - lca_depth_matrix(h)).astype(float)
    expected = 1.01 * np.exp(-d / t.d_max) - 0.01
    np.fill_diagonal(expected, 1.0)
    assert np.abs(s - expected).max() < 1e-15


def test_tree_frame_without_similarity_keeps_the_same_weight():
    from hafcls.frames import haframe

    h = load("imagenet-1k")
    full = haframe(h, gamma=1.0, method="tree")
    bare = haframe(h, gamma=1.0, method="tree", with_similarity=False)
    assert bare.similarity is None and full.similarity is not None
    assert torch.equal(bare.weight, full.weight) and bare.max_error == full.max_error
