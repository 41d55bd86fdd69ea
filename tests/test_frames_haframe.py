"""HAFrame construction: closed forms on a balanced two-level tree, W^T W = S for both methods,
the paper's grid rule against a brute-force eigenvalue scan, s_min / gamma validation, low-dim."""

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.frames import find_s_min, haframe, paper_grid, psd_bound, target_similarity
from hafcls.hierarchy import Hierarchy


def balanced(groups=4, per_group=5):
    """root -> g0..g{G-1} -> G*m leaves (a CIFAR-like two-level tree, H = 2)."""
    edges = [("root", f"g{a}") for a in range(groups)]
    edges += [(f"g{a}", f"c{a}_{b}") for a in range(groups) for b in range(per_group)]
    return Hierarchy.from_edges(edges)


def unbalanced():
    """Leaves at depths 1-4, classes at two internal nodes (x and q), root has 3 children."""
    edges = [("r", "a"), ("r", "b"), ("r", "z"), ("a", "x"), ("a", "y"), ("x", "x1"),
             ("x", "x2"), ("x2", "x21"), ("x2", "x22"), ("b", "q"), ("q", "q1"), ("q", "q2"),
             ("b", "p")]
    classes = ["x1", "x21", "x22", "y", "q1", "q2", "p", "z", "x", "q"]
    return Hierarchy.from_edges(edges, classes=classes)


def random_tree(rng, n_nodes, internal_classes):
    edges = [(f"n{rng.integers(0, i)}", f"n{i}") for i in range(1, n_nodes)]
    leaves = Hierarchy.from_edges(edges).classes
    classes = list(leaves)
    if internal_classes:
        inner = sorted({p for p, _ in edges} - {"n0"})
        classes += list(rng.choice(inner, size=min(3, len(inner)), replace=False))
    return Hierarchy.from_edges(edges, classes=classes)


def dense_target(h, gamma, s_min):
    d = h.distance_matrix().astype(float)
    s = (1 - s_min) * np.exp(-gamma * d / d.max()) + s_min
    np.fill_diagonal(s, 1.0)
    return s


def gram64(frame):
    w = frame.weight.double().numpy()
    return w.T @ w


# ---------------------------------------------------------------------- closed forms
def balanced_eigen(groups, m, gamma, s):
    """Closed-form eigenvalues of S for the balanced two-level tree (d_max = 2)."""
    a = (1 - s) * np.exp(-gamma / 2) + s  # same group
    b = (1 - s) * np.exp(-gamma) + s  # different groups
    return {
        "within": 1 - a,  # multiplicity G (m - 1)
        "between": 1 + (m - 1) * a - m * b,  # multiplicity G - 1
        "ones": 1 + (m - 1) * a + (groups - 1) * m * b,  # multiplicity 1
    }


@pytest.mark.parametrize("gamma", [0.7, 2.0, 5.0])
def test_balanced_s_min_closed_form(gamma):
    groups, m = 4, 5
    h = balanced(groups, m)
    # lambda_ones(s) is affine in s and is the one that vanishes first as s decreases
    l0 = balanced_eigen(groups, m, gamma, 0.0)["ones"]
    l1 = balanced_eigen(groups, m, gamma, 1.0)["ones"]
    boundary = -l0 / (l1 - l0)
    assert psd_bound(h, gamma) == pytest.approx(boundary, abs=1e-11)
    exact = find_s_min(h, gamma, "exact")
    assert boundary < exact < boundary + 1e-8
    assert min(balanced_eigen(groups, m, gamma, exact).values()) == pytest.approx(1e-9, rel=1e-3)
    # the paper's rule, evaluated on the closed-form eigenvalues
    feasible = [min(balanced_eigen(groups, m, gamma, s).values()) > -1e-6 for s in paper_grid(20)]
    expected = paper_grid(20)[np.flatnonzero(feasible).max()]
    assert find_s_min(h, gamma, "paper") == expected


def test_paper_rule_counts_tiny_negative_eigenvalues_as_zero():
    """A grid point with lambda_min = -5e-7 is kept (|lambda| < 1e-6 is zero); -2e-6 is not."""
    from scipy.optimize import brentq

    groups, m, j = 4, 5, 30
    h = balanced(groups, m)
    s_j = paper_grid(20)[j]
    for target_lam, expected_index in ((-5e-7, j), (-2e-6, j - 1)):
        gamma = brentq(lambda g, t=target_lam: balanced_eigen(groups, m, g, s_j)["ones"] - t,
                       0.1, 20, xtol=1e-14)
        assert psd_bound(h, gamma) > s_j  # s_j is genuinely (slightly) indefinite
        assert np.linalg.eigvalsh(dense_target(h, gamma, s_j))[0] == pytest.approx(
            target_lam, abs=1e-12)
        assert find_s_min(h, gamma, "paper") == paper_grid(20)[expected_index]
        assert brute_force_paper(h, gamma) == paper_grid(20)[expected_index]


def test_balanced_tree_frame_coordinates_closed_form():
    """With s_min = 0, g(root) > 0: W is the sparse tree factor itself, entries in closed form."""
    gamma, groups, m = 2.0, 4, 5
    h = balanced(groups, m)
    f = haframe(h, gamma=gamma, s_min=0.0, method="tree", dtype=torch.float64)
    a, b = np.exp(-gamma / 2), np.exp(-gamma)
    assert f.dim == 1 + groups + groups * m  # top, one per group, one private per class
    w = f.weight.numpy()
    assert np.allclose(w[0], np.sqrt(b))  # the shared top coordinate
    for i, cls in enumerate(h.classes):
        group = int(cls[1])
        col = w[:, i]
        assert col[1 + group] == pytest.approx(np.sqrt(a - b))
        assert col[1 + groups + i] == pytest.approx(np.sqrt(1 - a))
        assert np.count_nonzero(col) == 3
    assert f.info["g_top"] == pytest.approx(b)


# ---------------------------------------------------------------------- W^T W = S
@pytest.mark.parametrize("make", [balanced, unbalanced])
@pytest.mark.parametrize("s_min", ["paper", "exact", 0.0, 0.3, -0.05])
@pytest.mark.parametrize("method", ["eigh", "tree"])
def test_gram_equals_target(make, s_min, method):
    h = make()
    gamma = 2.0
    f = haframe(h, gamma=gamma, s_min=s_min, method=method, dtype=torch.float64)
    target = dense_target(h, gamma, f.s_min)
    assert np.abs(gram64(f) - target).max() < 1e-8
    assert f.max_error < 1e-8
    assert np.allclose(f.weight.norm(dim=0).numpy(), 1.0, atol=1e-12)
    assert np.array_equal(f.similarity.numpy(), target.astype(np.float32))
    # float32 default: same frame up to float32 rounding
    f32 = haframe(h, gamma=gamma, s_min=s_min, method=method)
    assert f32.weight.dtype == torch.float32
    assert np.abs(gram64(f32) - target).max() < 1e-6


@pytest.mark.parametrize("s_min,sign", [(0.2, 1), ("paper", -1)])
def test_root_value_above_and_below_zero(s_min, sign):
    """g(root) > 0 adds a shared coordinate; g(root) < 0 uses the rank-one shift. Both exact."""
    h = unbalanced()
    f = haframe(h, gamma=3.0, s_min=s_min, method="tree", dtype=torch.float64)
    assert np.sign(f.info["g_top"]) == sign
    assert (f.factor.shift is None) == (sign > 0)
    assert np.abs(gram64(f) - dense_target(h, 3.0, f.s_min)).max() < 1e-12


def test_tree_and_eigh_agree_on_random_trees():
    rng = np.random.default_rng(3)
    for trial in range(6):
        h = random_tree(rng, int(rng.integers(8, 40)), internal_classes=trial % 2 == 0)
        gamma = float(rng.uniform(0.5, 5))
        a = haframe(h, gamma=gamma, method="tree", dtype=torch.float64)
        b = haframe(h, gamma=gamma, method="eigh", dtype=torch.float64)
        assert a.s_min == b.s_min
        assert np.abs(gram64(a) - gram64(b)).max() < 1e-8
        assert b.dim == h.num_classes


def test_eigh_rotation_is_seeded():
    h = unbalanced()
    a, b = haframe(h, seed=1), haframe(h, seed=1)
    c = haframe(h, seed=2)
    assert torch.equal(a.weight, b.weight)
    assert not torch.allclose(a.weight, c.weight)
    assert np.abs(gram64(a) - gram64(c)).max() < 1e-6


def test_eigh_accepts_a_distance_matrix():
    h = unbalanced()
    d = h.distance_matrix()
    f = haframe(d, gamma=2.0, method="eigh", dtype=torch.float64)
    assert f.fingerprint is None and f.s_min == find_s_min(h, 2.0)
    assert np.abs(gram64(f) - dense_target(h, 2.0, f.s_min)).max() < 1e-8
    with pytest.raises(HafclsError, match="needs a Hierarchy"):
        haframe(d, method="tree")


# ---------------------------------------------------------------------- grid rule
def brute_force_paper(h, gamma):
    """The published search, literally: every grid point, eigenvalues, |lambda| < 1e-6 -> 0."""
    keep = None
    for s in paper_grid(h.num_classes):
        lam = np.linalg.eigvalsh(dense_target(h, gamma, s))
        lam[np.abs(lam) < 1e-6] = 0.0
        if np.all(lam >= 0):
            keep = s
    return keep


def test_paper_rule_matches_brute_force_on_random_trees():
    rng = np.random.default_rng(0)
    hits_boundary = 0
    for trial in range(10):
        h = random_tree(rng, int(rng.integers(5, 30)), internal_classes=trial % 2 == 1)
        gamma = float(rng.uniform(0.3, 6))
        expected = brute_force_paper(h, gamma)
        assert find_s_min(h, gamma, "paper") == expected
        assert find_s_min(h.distance_matrix(), gamma, "paper") == expected
        hits_boundary += expected > -1.0
    assert hits_boundary >= 5  # most cases stop inside the grid, not at its end


def test_exact_is_more_negative_than_paper_and_psd():
    h = unbalanced()
    paper, exact = find_s_min(h, 2.0, "paper"), find_s_min(h, 2.0, "exact")
    assert exact <= paper
    lam = np.linalg.eigvalsh(dense_target(h, 2.0, exact))[0]
    assert 0 < lam < 1e-8
    assert np.linalg.eigvalsh(dense_target(h, 2.0, exact - 1e-6))[0] < 0


def test_target_similarity_matches_formula_for_both_inputs():
    h = unbalanced()
    s = target_similarity(h, 2.0, -0.1)
    assert np.array_equal(s, target_similarity(h.distance_matrix(), 2.0, -0.1))
    np.testing.assert_allclose(s, dense_target(h, 2.0, -0.1), rtol=0, atol=1e-15)
    d = h.distance_matrix("lca_height").astype(float)
    expected = 1.1 * np.exp(-2.0 * d / d.max()) - 0.1
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(
        target_similarity(h, 2.0, -0.1, distance="lca_height"), expected, atol=1e-15
    )
    assert target_similarity(h, 2.0, "paper").dtype == np.float64


# ---------------------------------------------------------------------- validation
def test_infeasible_float_s_min_names_the_bound():
    h = balanced()
    bound = psd_bound(h, 2.0)
    with pytest.raises(HafclsError) as err:
        haframe(h, gamma=2.0, s_min=bound - 0.01)
    text = str(err.value)
    assert "indefinite" in text and f"{bound:.6f}"[:-1] in text and "Fix:" in text
    # just inside the paper's tolerance is accepted, just outside rejected
    haframe(h, gamma=2.0, s_min=bound, method="tree")
    with pytest.raises(HafclsError):
        target_similarity(h, 2.0, bound - 1e-4)


@pytest.mark.parametrize("gamma", [0, -1.0, float("nan"), float("inf"), "x"])
def test_gamma_must_be_positive(gamma):
    with pytest.raises(HafclsError, match="gamma"):
        haframe(balanced(), gamma=gamma)
    with pytest.raises(HafclsError, match="gamma"):
        find_s_min(balanced(), gamma)


@pytest.mark.parametrize("kwargs,match", [
    ({"s_min": "lowest"}, "s_min"), ({"s_min": 1.0}, "below 1"), ({"method": "svd"}, "method"),
    ({"dim": 0}, "dim"), ({"dim": 2.5}, "dim"), ({"dtype": torch.float16}, "dtype"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(HafclsError, match=match):
        haframe(unbalanced(), **kwargs)


def test_single_class_is_rejected():
    h = Hierarchy.from_edges([("r", "a")])
    with pytest.raises(HafclsError, match="at least 2 classes"):
        haframe(h)


# ---------------------------------------------------------------------- low-dimensional frames
@pytest.mark.parametrize("method", ["tree", "eigh"])
def test_low_dim_error_decreases_with_rank(method):
    rng = np.random.default_rng(7)
    h = random_tree(rng, 70, internal_classes=True)
    k = h.num_classes
    target = target_similarity(h, 2.0, "exact")
    lam = np.linalg.eigvalsh(target)
    errors = []
    for r in (2, 10, 20, k - 5, k - 1):
        f = haframe(h, gamma=2.0, s_min="exact", method=method, dim=r, dtype=torch.float64)
        assert f.dim == r and f.weight.shape == (r, k)
        assert np.allclose(f.weight.norm(dim=0).numpy(), 1.0)
        realised = np.abs(gram64(f) - target).max()
        assert f.max_error == pytest.approx(realised, abs=1e-12)
        assert f.info["lambda_next"] == pytest.approx(lam[k - r - 1], abs=1e-9)
        errors.append(f.max_error)
    # max |cos - S| falls slowly (renormalising a truncated column inflates single pairs), then
    # vanishes once only the ~1e-9 eigenvalue of the exact boundary is dropped
    assert errors == sorted(errors, reverse=True) and errors[0] > errors[2] > errors[3]
    assert errors[-1] < 1e-6


def test_low_dim_tree_uses_lanczos_and_matches_dense_spectrum():
    rng = np.random.default_rng(11)
    h = random_tree(rng, 90, internal_classes=False)
    f = haframe(h, gamma=1.0, method="tree", dim=5, dtype=torch.float64)
    assert f.info["solver"] == "lanczos"
    lam = np.linalg.eigvalsh(target_similarity(h, 1.0, f.s_min))
    assert f.info["lambda_next"] == pytest.approx(lam[-6], rel=1e-9)
    with pytest.raises(HafclsError, match="exact frame in d ="):
        haframe(h, method="tree", dim=h.num_classes)
