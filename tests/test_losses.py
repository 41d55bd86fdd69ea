"""Losses: hand-computed values on tiny batches, known optima, finite gradients."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.losses import (
    CrossEntropyLoss,
    DotRegressionLoss,
    HAFrameLoss,
    HierarchicalCrossEntropy,
    HUGLoss,
    SoftLabelLoss,
    class_distances,
    inter_class_energy,
    intra_class_distance,
)

# root -> A -> {x, y};  root -> B -> z.  Published distances: d(x,y)=1, d(x,z)=d(y,z)=2.
TWO_LEVEL = [("root", "A"), ("A", "x"), ("A", "y"), ("root", "B"), ("B", "z")]


def two_level():
    return Hierarchy.from_edges(TWO_LEVEL, classes=["x", "y", "z"])


def simplex_etf(k: int) -> torch.Tensor:
    """K x K simplex ETF (columns unit, pairwise cosine -1/(K-1)), by its closed form."""
    return math.sqrt(k / (k - 1)) * (torch.eye(k) - torch.ones(k, k) / k)


def target_similarity(d: np.ndarray, gamma: float, s_min: float) -> np.ndarray:
    return (1 - s_min) * np.exp(-gamma * d / d.max()) + s_min


# ---------------------------------------------------------------------- cross-entropy
def test_cross_entropy_with_label_smoothing_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    y = torch.tensor([0])
    log_p = torch.log_softmax(logits, 1)[0]
    eps = 0.3
    expected = -((1 - eps) * log_p[0] + eps / 3 * log_p.sum())
    got = CrossEntropyLoss(label_smoothing=eps)(logits, None, y)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(HafclsError):
        CrossEntropyLoss(label_smoothing=1.0)


# ---------------------------------------------------------------------- HAFrame
def test_haframe_loss_by_hand():
    # W = I (2 classes in 2-d), S = I; h = (1, 1), y = 0:
    # logits (1, 1): CE = log 2; cos = (1/√2, 1/√2): L_cos = (1/√2 - 1)² + (1/√2)² = 2 - √2
    w = torch.eye(2)
    h = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 0])
    logits = h @ w
    alpha = 0.3
    loss = HAFrameLoss(torch.eye(2), alpha=alpha)
    # second sample: logits (1, 0): CE = log(1 + e^-1), cos = (1, 0): L_cos = 0
    ce = (math.log(2) + math.log(1 + math.exp(-1))) / 2
    cos_term = (2 - math.sqrt(2)) / 2
    assert loss.cosine_loss(logits, h, y).item() == pytest.approx(cos_term, rel=1e-6)
    assert loss(logits, h, y).item() == pytest.approx((1 - alpha) * ce + alpha * cos_term,
                                                      rel=1e-6)


def test_haframe_cosine_term_zero_at_frame_vectors():
    # any W with unit columns and S = WᵀW: features equal to the class vectors (any positive
    # scale) give L_cos = 0
    torch.manual_seed(0)
    w = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=0).float()
    s = w.t() @ w
    y = torch.tensor([0, 1, 2, 3, 2])
    h = w[:, y].t() * torch.tensor([[1.0], [2.0], [0.5], [3.0], [1.0]])
    loss = HAFrameLoss(s, alpha=1.0, frame_weight=w)
    assert loss(h @ w, h, y).item() == pytest.approx(0.0, abs=1e-10)
    # and it is positive away from them
    assert loss((h + 0.3) @ w, h + 0.3, y).item() > 1e-3


def test_haframe_from_distance_matches_dense_targets():
    h = two_level()
    d = h.distance_matrix()
    gamma, s_min = 2.0, -0.3
    dense = HAFrameLoss(target_similarity(d.astype(float), gamma, s_min), alpha=0.4)
    lut = HAFrameLoss.from_distance(h, gamma, s_min, alpha=0.4)
    y = torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(lut.target_cosines(y), dense.target_cosines(y))
    torch.manual_seed(1)
    feats = torch.randn(4, 3)
    logits = torch.randn(4, 3)
    torch.testing.assert_close(lut(logits, feats, y), dense(logits, feats, y))
    with pytest.raises(HafclsError):
        HAFrameLoss.from_distance(h, gamma, "paper")


def test_haframe_loss_gradients_finite_for_zero_features():
    w = F.normalize(torch.randn(3, 3), dim=0)
    h = torch.zeros(2, 3, requires_grad=True)
    loss = HAFrameLoss(w.t() @ w, alpha=0.5)
    value = loss(h @ w, h, torch.tensor([0, 1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(h.grad).all()


def test_haframe_loss_validates():
    with pytest.raises(HafclsError):
        HAFrameLoss(torch.eye(3), alpha=1.5)
    with pytest.raises(HafclsError):
        HAFrameLoss(torch.ones(2, 3))
    with pytest.raises(HafclsError, match="classes"):
        HAFrameLoss(torch.eye(3))(torch.zeros(1, 4), torch.zeros(1, 4), torch.tensor([0]))


# ---------------------------------------------------------------------- dot regression
def test_dot_regression_by_hand():
    w = torch.eye(2)
    theta = math.pi / 3
    unit = torch.tensor([math.cos(theta), math.sin(theta)])
    h = torch.stack([unit, 2 * unit]).requires_grad_(True)
    y = torch.tensor([0, 0])
    loss = DotRegressionLoss(w)
    # unit h: ½(cos 60° - 1)² = 0.125 ; h of norm 2: ½(1 - 2)²/2 = 0.25 ; mean 0.1875
    value = loss(h @ w, h, y)
    assert value.item() == pytest.approx(0.1875, rel=1e-6)
    value.backward()
    # norms detached: the gradient is (hᵀw_y - ‖h‖) w_y / ‖h‖ / B, along w_y only
    expected = torch.tensor([[(0.5 - 1) / 2, 0.0], [(1 - 2) / 2 / 2, 0.0]])
    torch.testing.assert_close(h.grad, expected)


def test_dot_regression_zero_on_true_vector_and_from_logits():
    w = simplex_etf(4)
    y = torch.tensor([3, 0, 1])
    h = w[:, y].t().clone()
    assert DotRegressionLoss(w)(h @ w, h, y).item() == pytest.approx(0.0, abs=1e-12)
    # without the frame, hᵀw_y is read from the logits (unit columns): same value
    h2 = F.normalize(torch.randn(3, 4), dim=1)
    torch.testing.assert_close(DotRegressionLoss()(h2 @ w, h2, y), DotRegressionLoss(w)(h2 @ w,
                                                                                         h2, y))


def test_dot_regression_finite_for_zero_features():
    h = torch.zeros(2, 4, requires_grad=True)
    value = DotRegressionLoss(simplex_etf(4))(h, h, torch.tensor([0, 1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(h.grad).all()


# ---------------------------------------------------------------------- HUG
@pytest.mark.parametrize("c", [2, 5, 10])
def test_hug_energies_at_simplex_etf(c):
    w = simplex_etf(c)
    # cos = -1/(C-1): 2 - 2cos = 2C/(C-1)
    assert inter_class_energy(w, "mhe").item() == pytest.approx((c - 1) / (2 * c), rel=1e-5)
    assert inter_class_energy(w, "mhs").item() == pytest.approx(-2 * c / (c - 1), rel=1e-5)


def test_hug_mgd_by_hand_and_lower_at_etf():
    w = simplex_etf(2)  # two antipodal vectors, squared distance 4
    expected = -math.log((1 + 1e-6) ** 2 - math.exp(-8))
    assert inter_class_energy(w, "mgd").item() == pytest.approx(expected, rel=1e-5)
    torch.manual_seed(0)
    clustered = F.normalize(torch.ones(5, 5) + 0.1 * torch.randn(5, 5), dim=0)
    for variant in ("mhe", "mhs", "mgd"):
        assert inter_class_energy(simplex_etf(5), variant) < inter_class_energy(clustered, variant)


def test_hug_intra_by_hand_is_class_balanced():
    proxies = torch.eye(3)  # d = K = 3
    feats = torch.tensor(
        [[1.0, 0.0, 0.0],  # class 0, on its proxy: 0
         [0.0, 1.0, 0.0],  # class 0, orthogonal: √2
         [0.0, -1.0, 0.0]]  # class 1, opposite: 2
    )
    y = torch.tensor([0, 0, 1])
    expected = (math.sqrt(2) / 2 + 2.0) / 2  # mean over the two present classes
    got = intra_class_distance(feats, y, proxies)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_hug_loss_proxies_get_no_gradient_from_intra_term():
    proxies = torch.nn.Parameter(torch.randn(4, 3))
    feats = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    loss = HUGLoss(lambda: F.normalize(proxies, dim=0), "mhe", alpha=0.0, beta=1.0)
    loss(None, feats, y).backward()
    assert proxies.grad is None or torch.count_nonzero(proxies.grad) == 0
    assert torch.count_nonzero(feats.grad) > 0
    full = HUGLoss(lambda: F.normalize(proxies, dim=0), "mhe")
    parts = full.components(feats, y)
    assert full(None, feats, y).item() == pytest.approx((parts["intra"] + parts["inter"]).item())


def test_hug_finite_gradients_for_zero_features_and_bad_variant():
    proxies = torch.nn.Parameter(F.normalize(torch.randn(4, 3), dim=0))
    feats = torch.zeros(3, 4, requires_grad=True)
    for variant in ("mhe", "mhs", "mgd"):
        value = HUGLoss(proxies, variant)(None, feats, torch.tensor([0, 1, 1]))
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(proxies.grad).all()
        assert torch.isfinite(feats.grad).all()
    with pytest.raises(HafclsError):
        HUGLoss(proxies, "nope")


# ---------------------------------------------------------------------- soft labels
def test_soft_labels_by_hand():
    d = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]], dtype=np.uint8)
    beta = 2.0
    logits = torch.tensor([[0.5, -1.0, 2.0]])
    y = torch.tensor([0])
    q = np.exp(-beta * np.array([0, 1, 2]) / 2)
    q /= q.sum()
    log_p = torch.log_softmax(logits, 1)[0].numpy()
    expected = float(np.sum(q * (np.log(q) - log_p)))
    got = SoftLabelLoss(d, beta=beta)(logits, None, y)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_soft_labels_tend_to_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    ce = F.cross_entropy(logits, y)
    far = SoftLabelLoss(two_level(), beta=200.0)(logits, None, y)
    near = SoftLabelLoss(two_level(), beta=1.0)(logits, None, y)
    assert far.item() == pytest.approx(ce.item(), abs=1e-6)
    assert abs(near.item() - ce.item()) > 1e-2


def test_class_distances_validation():
    with pytest.raises(HafclsError):
        class_distances(np.ones((2, 3)))
    with pytest.raises(HafclsError):
        class_distances(np.array([[1, 1], [1, 0]]))
    assert class_distances(two_level()).dtype == torch.uint8


# ---------------------------------------------------------------------- HXE
def hxe_by_hand(logits, target, alpha):
    """HXE on TWO_LEVEL written out: nodes root (depth 0), A, B (1), x, y, z (2)."""
    e = [math.exp(v) for v in logits]
    total = sum(e)
    z_norm = 1 + 2 * math.exp(-alpha) + 3 * math.exp(-2 * alpha)
    lam1, lam2 = math.exp(-alpha) / z_norm, math.exp(-2 * alpha) / z_norm
    if target == 2:  # z: P(B) = e_z / total, P(z | B) = 1
        return lam1 * -math.log(e[2] / total)
    p_a = (e[0] + e[1]) / total
    return lam1 * -math.log(p_a) + lam2 * -math.log(e[target] / (e[0] + e[1]))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_hxe_two_level_tree_by_hand(alpha):
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.3, 2.0, 0.1], [-0.5, 0.2, 1.5]])
    y = torch.tensor([0, 1, 2])
    expected = np.mean([hxe_by_hand(logits[i].tolist(), int(y[i]), alpha) for i in range(3)])
    got = HierarchicalCrossEntropy(two_level(), alpha=alpha, normalisation="nodes")(logits, None, y)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_hxe_flat_tree_is_scaled_cross_entropy():
    h = Hierarchy.from_edges([("r", c) for c in "abcd"])
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    got = HierarchicalCrossEntropy(h, alpha=0.0, normalisation="nodes")(logits, None, y)
    # alpha = 0: every node weighs 1/Z with Z = 5 nodes; the only edge is root -> class
    assert got.item() == pytest.approx(F.cross_entropy(logits, y).item() / 5, rel=1e-5)


def test_hxe_class_at_internal_node_and_extreme_logits():
    # class "A" sits at an internal node above x and y: P(A) includes x and y
    h = Hierarchy.from_edges(TWO_LEVEL, classes=["x", "y", "z", "A"])
    loss = HierarchicalCrossEntropy(h, alpha=0.0, normalisation="nodes")
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    # target A: one edge root -> A, P(A) = 3/4 ; nodes: root, A, B, x, y, z -> Z = 6
    got = loss(logits, None, torch.tensor([3]))
    assert got.item() == pytest.approx(-math.log(3 / 4) / 6, rel=1e-5)
    extreme = torch.tensor([[1000.0, -1000.0, 0.0, -500.0]], requires_grad=True)
    value = loss(extreme, None, torch.tensor([1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(extreme.grad).all()
    assert value.item() == pytest.approx(2000.0 / 6, rel=1e-4)  # -log P(y|A) = 2000
