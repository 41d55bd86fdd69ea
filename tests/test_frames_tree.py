"""The exact tree construction: O(#nodes) PSD test, Sherman-Morrison solve, rank-one shift, sparse
structure, LCA rows, and the shipped ImageNet-1k hierarchy."""

import numpy as np
import pytest
import torch

from hafcls.frames import haframe, paper_grid, psd_bound, target_similarity
from hafcls.frames.tree import TreeSimilarity
from hafcls.hierarchy import Hierarchy, lca_depth_matrix, load


def random_tree(rng, n_nodes, internal_classes):
    edges = [(f"n{rng.integers(0, i)}", f"n{i}") for i in range(1, n_nodes)]
    classes = Hierarchy.from_edges(edges).classes
    if internal_classes:
        inner = sorted({p for p, _ in edges} - {"n0"})
        classes += list(rng.choice(inner, size=min(4, len(inner)), replace=False))
    return Hierarchy.from_edges(edges, classes=classes)


def trees():
    rng = np.random.default_rng(5)
    out = [random_tree(rng, int(rng.integers(6, 45)), i % 2 == 0) for i in range(8)]
    # a unary chain above the first branching, and a class at the root
    out.append(Hierarchy.from_edges([("r", "c1"), ("c1", "c2"), ("c2", "a"), ("c2", "b"),
                                     ("a", "a1"), ("a", "a2"), ("b", "b1")]))
    out.append(Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2")],
                                    classes=["r", "a1", "a2", "b", "a"]))
    return out


def dense_target(h, gamma, s_min, kind="published"):
    d = h.distance_matrix(kind).astype(float)
    s = (1 - s_min) * np.exp(-gamma * d / d.max()) + s_min
    np.fill_diagonal(s, 1.0)
    return s


def test_top_skips_a_unary_chain_at_the_root():
    h = trees()[-2]
    t = TreeSimilarity(h)
    assert h.nodes[t.top] == "c2" and t.d_max == h.distance_matrix().max() == 2
    f = haframe(h, gamma=1.5, s_min=-0.4, method="tree", dtype=torch.float64)
    w = f.weight.numpy()
    assert np.abs(w.T @ w - dense_target(h, 1.5, -0.4)).max() < 1e-12
    # coordinates: internal nodes below the top (a, b) + 3 private, no top coordinate (g < 0)
    assert f.dim == 2 + 3 and f.factor.shift is not None


@pytest.mark.parametrize("mu", [-1e-6, 0.0, 1e-9, 1e-3])
def test_psd_test_agrees_with_eigenvalues(mu):
    rng = np.random.default_rng(1)
    checked = 0
    for h in trees():
        t = TreeSimilarity(h)
        for s in rng.uniform(-1.2, 0.2, size=6):
            gamma = float(rng.uniform(0.3, 5))
            lam = np.linalg.eigvalsh(dense_target(h, gamma, s))[0]
            if abs(lam - mu) < 1e-10:
                continue
            assert t.min_eig_exceeds(gamma, s, mu) == (lam > mu), (h, gamma, s, lam)
            checked += 1
    assert checked > 50


def test_sherman_morrison_solve_matches_dense_solve():
    for h in trees():
        t = TreeSimilarity(h)
        c, q, g_top = t.weights(2.0, -0.3)
        assert np.all(q > 0) and np.all(c[t.coord_nodes] > 0)
        s_prime = dense_target(h, 2.0, -0.3) - g_top  # drop the shared top value
        sigma, alpha = t.solve_ones(c, q)
        np.testing.assert_allclose(alpha, np.linalg.solve(s_prime, np.ones(h.num_classes)),
                                   rtol=1e-10)
        assert sigma == pytest.approx(alpha.sum(), rel=1e-12)


def test_rank_one_shift_identities():
    for h in trees():
        t = TreeSimilarity(h)
        gamma = 2.0
        s = psd_bound(h, gamma) * (1 - 1e-4)  # feasible, and g(top) < 0 near the boundary
        fac, info = t.factor(gamma, s)
        a = -info["g_top"]
        assert a > 0 and not fac.has_top
        wp = fac.matrix.toarray()
        target = dense_target(h, gamma, s)
        np.testing.assert_allclose(wp.T @ wp, target + a, atol=1e-13)  # S' = S + a 11^T
        np.testing.assert_allclose(wp.T @ fac.shift, 1.0, atol=1e-12)  # W'^T y = S' alpha = 1
        sigma = fac.shift @ fac.shift
        assert info["a_sigma"] == pytest.approx(a * sigma, rel=1e-12) and a * sigma < 1
        w = fac.to_dense(np.float64)
        np.testing.assert_allclose(w, wp - fac.kappa * fac.shift[:, None], atol=1e-15)
        assert np.abs(w.T @ w - target).max() < 1e-12
        assert t.factor_error(fac, gamma, s) == pytest.approx(
            np.abs(w.T @ w - target).max(), abs=1e-14)


def test_sparse_pattern_and_products():
    rng = np.random.default_rng(2)
    for h in trees():
        t = TreeSimilarity(h)
        for s in (0.1, -0.2):  # with and without the shared top coordinate
            fac, _ = t.factor(1.0, s)
            nnz = np.diff(fac.matrix.tocsc().indptr)
            path = h.node_depths[t.attach] - t.top_depth + 1
            np.testing.assert_array_equal(nnz, path + int(fac.has_top))
            w = fac.to_dense(np.float64)
            x = rng.standard_normal((h.num_classes, 3))
            z = rng.standard_normal((fac.shape[0], 3))
            np.testing.assert_allclose(fac.matvec(x), w @ x, atol=1e-12)
            np.testing.assert_allclose(fac.rmatvec(z), w.T @ z, atol=1e-12)  # sparse logits
            np.testing.assert_allclose(fac.gram_operator() @ x[:, 0],
                                       dense_target(h, 1.0, s) @ x[:, 0], atol=1e-12)


def test_lca_rows_match_the_hierarchy():
    for h in trees():
        t = TreeSimilarity(h)
        full = np.concatenate([d.copy() for _, d in t.lca_depth_rows(block=3)])
        np.testing.assert_array_equal(full, lca_depth_matrix(h))
        nodes = np.concatenate([n for _, n in t.lca_node_rows(block=4)])
        names = np.array(h.nodes)[nodes]
        for i, a in enumerate(h.classes):
            for j, b in enumerate(h.classes):
                assert names[i, j] == h.lca(a, b)


def test_lca_height_distance_is_exact_too():
    for h in trees():
        f = haframe(h, gamma=2.0, s_min=-0.05, method="tree", distance="lca_height",
                    dtype=torch.float64)
        w = f.weight.numpy()
        target = dense_target(h, 2.0, -0.05, "lca_height")
        np.testing.assert_allclose(f.similarity.numpy(), target.astype(np.float32))
        assert np.abs(w.T @ w - target).max() < 1e-12 and f.max_error < 1e-12


def test_imagenet_1k_grid_rule_and_exact_frame():
    h = load("imagenet-1k")
    f = haframe(h, gamma=1.0, method="tree")
    assert f.max_error < 1e-12 and f.num_classes == 1000
    t = TreeSimilarity(h)
    assert f.dim == len(t.coord_nodes) + 1000 + int(f.info["g_top"] > 0)
    grid = list(paper_grid(1000))
    j = grid.index(f.s_min)
    lam = np.linalg.eigvalsh(target_similarity(h, 1.0, f.s_min))[0]
    assert lam > -1e-6  # the chosen grid point is feasible ...
    s_next = grid[j + 1]
    s_next_target = dense_target(h, 1.0, s_next)
    assert np.linalg.eigvalsh(s_next_target)[0] <= -1e-6  # ... and the next one is not
    w = f.weight.double()
    assert float((w.T @ w - f.similarity.double()).abs().max()) < 1e-6  # float32 storage
