"""Mixed (mixup/CutMix) targets for every loss: timm's targets, λ = 1 reduction, soft forms."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hafcls import losses as L
from hafcls.errors import HafclsError
from hafcls.frames import haframe
from hafcls.hierarchy import Hierarchy
from hafcls.losses.mixed_targets import (
    build_mixup,
    check_soft_targets,
    mix_batch,
    mix_rows,
    mixed_loss,
    one_hot_targets,
    require_mixed_targets,
    supports_mixed_targets,
)

# root -> {A, B, C}; A -> {a0, a1, a2}, B -> {b0, b1 -> {b10, b11}}, C -> c0 (depths 2 and 3),
# plus the internal node A as a class of its own (HXE's class-at-an-inner-node path)
EDGES = [("r", "A"), ("r", "B"), ("r", "C"), ("A", "a0"), ("A", "a1"), ("A", "a2"),
         ("B", "b0"), ("B", "b1"), ("b1", "b10"), ("b1", "b11"), ("C", "c0")]
CLASSES = ["a0", "a1", "a2", "b0", "b10", "b11", "c0", "A"]
K = len(CLASSES)


@pytest.fixture(scope="module")
def hierarchy():
    return Hierarchy.from_edges(EDGES, classes=CLASSES)


@pytest.fixture(scope="module")
def frame(hierarchy):
    return haframe(hierarchy, gamma=2.0, seed=0)


def batch(seed=0, b=6, d=K):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, d, generator=g)
    y1 = torch.randint(0, K, (b,), generator=g)
    y2 = torch.randint(0, K, (b,), generator=g)
    lam = torch.rand(b, generator=g)
    return h, y1, y2, lam


def losses(hierarchy, frame):
    w = frame.weight
    s = frame.similarity
    return {
        "ce": L.CrossEntropyLoss(),
        "ce-smooth": L.CrossEntropyLoss(label_smoothing=0.1),
        "haframe-dense": L.HAFrameLoss(s, alpha=0.4, frame_weight=w),
        "haframe-lut": L.HAFrameLoss.from_distance(hierarchy, frame.gamma, frame.s_min, 0.5, w),
        "haframe-alpha0": L.HAFrameLoss(s, alpha=0.0),
        "soft-labels": L.SoftLabelLoss(hierarchy, beta=4.0),
        "hxe": L.HierarchicalCrossEntropy(hierarchy, alpha=0.6),
    }


@pytest.mark.parametrize("name", ["ce", "ce-smooth", "haframe-dense", "haframe-lut",
                                  "haframe-alpha0", "soft-labels", "hxe"])
def test_one_hot_targets_give_the_plain_loss_and_gradient(hierarchy, frame, name):
    loss = losses(hierarchy, frame)[name]
    h, y, _, _ = batch(1)
    h.requires_grad_(True)
    logits = h @ frame.weight
    plain = loss(logits, h, y)
    (g_plain,) = torch.autograd.grad(plain, h, retain_graph=True)
    mixed = mixed_loss(loss, logits, h, one_hot_targets(y, K))
    (g_mixed,) = torch.autograd.grad(mixed, h)
    assert mixed.item() == pytest.approx(plain.item(), rel=1e-6, abs=1e-7)
    torch.testing.assert_close(g_mixed, g_plain, rtol=1e-5, atol=1e-7)


def mixed(y1, y2, lam):
    return lam[:, None] * one_hot_targets(y1, K) + (1 - lam[:, None]) * one_hot_targets(y2, K)


@pytest.mark.parametrize("name", ["ce", "ce-smooth", "hxe"])
def test_losses_linear_in_the_target_mix_the_two_plain_losses(hierarchy, frame, name):
    # CE and HXE are linear in the target: the mixed loss is λ·L(y1) + (1−λ)·L(y2) per sample
    loss = losses(hierarchy, frame)[name]
    h, y1, y2, lam = batch(2)
    logits = h @ frame.weight
    per1 = torch.stack([loss(logits[i:i + 1], h[i:i + 1], y1[i:i + 1]) for i in range(6)])
    per2 = torch.stack([loss(logits[i:i + 1], h[i:i + 1], y2[i:i + 1]) for i in range(6)])
    expected = (lam * per1 + (1 - lam) * per2).mean()
    got = mixed_loss(loss, logits, h, mixed(y1, y2, lam))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_haframe_cosine_term_uses_the_mixed_row(hierarchy, frame):
    alpha = 0.4
    loss = L.HAFrameLoss.from_distance(hierarchy, frame.gamma, frame.s_min, alpha, frame.weight)
    s = frame.similarity.double()
    w = frame.weight.double()
    h, y1, y2, lam = batch(3)
    logits = h @ frame.weight
    # by hand in float64: cos(w_c, h) − (λ·S[c, y1] + (1−λ)·S[c, y2])
    lam64, hd = lam.double(), h.double()
    cos = (hd @ w) / hd.norm(dim=1, keepdim=True) / w.norm(dim=0)
    row = lam64[:, None] * s[y1] + (1 - lam64[:, None]) * s[y2]
    log_p = torch.log_softmax(hd @ w, dim=1)
    ce = -(lam64 * log_p[range(6), y1] + (1 - lam64) * log_p[range(6), y2]).mean()
    expected = (1 - alpha) * ce + alpha * (cos - row).pow(2).sum(dim=1).mean()
    got = mixed_loss(loss, logits, h, mixed(y1, y2, lam))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # not the same as mixing the two plain losses (the cosine term is quadratic in the row)
    per = [torch.stack([loss(logits[i:i + 1], h[i:i + 1], y[i:i + 1]) for i in range(6)])
           for y in (y1, y2)]
    plain_mix = (lam * per[0] + (1 - lam) * per[1]).mean()
    assert plain_mix.item() - got.item() > 1e-3  # Jensen: the mixed row's error is smaller


def test_soft_labels_target_is_the_mix_of_the_two_soft_labels(hierarchy):
    beta = 4.0
    loss = L.SoftLabelLoss(hierarchy, beta=beta)
    d = torch.as_tensor(hierarchy.distance_matrix()).double()
    q = torch.exp(-beta * d / d.max())
    q = q / q.sum(dim=1, keepdim=True)
    h, y1, y2, lam = batch(4)
    logits = h * 3
    target = lam.double()[:, None] * q[y1] + (1 - lam.double()[:, None]) * q[y2]
    log_p = torch.log_softmax(logits.double(), dim=1)
    expected = (target * (target.log() - log_p)).sum(dim=1).mean()
    got = mixed_loss(loss, logits, h, mixed(y1, y2, lam))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mix_rows_equals_dense_product_for_dense_targets(frame):
    g = torch.Generator().manual_seed(5)
    t = torch.softmax(torch.randn(5, K, generator=g), dim=1)  # every entry non-zero
    s = frame.similarity.float()
    torch.testing.assert_close(mix_rows(t, lambda c: s[c]), t @ s, rtol=1e-5, atol=1e-6)
    y = torch.tensor([0, 3, 7])
    assert torch.equal(mix_rows(one_hot_targets(y, K), lambda c: s[c]), s[y])  # exact


@pytest.mark.parametrize("kwargs", [dict(mixup_alpha=1.0), dict(cutmix_alpha=1.0),
                                    dict(mixup_alpha=0.4, cutmix_alpha=1.0, mode="elem"),
                                    dict(mixup_alpha=0.4, mode="pair")])
def test_timm_mixup_targets_sum_to_one_and_mix_two_labels(kwargs):
    torch.manual_seed(0)
    mixup = build_mixup(K, **kwargs)
    images = torch.rand(8, 3, 16, 16)
    y = torch.arange(8) % K
    out, t = mix_batch(mixup, images.clone(), y, K)
    assert out.shape == images.shape and t.shape == (8, K)
    torch.testing.assert_close(t.sum(dim=1), torch.ones(8))
    assert ((t > 0).sum(dim=1) <= 2).all() and (t >= 0).all()
    # the mass sits on the sample's own label and its partner's (timm pairs i with B−1−i)
    assert torch.allclose(t[torch.arange(8), y] + t[torch.arange(8), y.flip(0)], torch.ones(8))
    check_soft_targets(t, K)


def test_mix_batch_odd_batch_and_no_mixup():
    torch.manual_seed(1)
    mixup = build_mixup(K, mixup_alpha=1.0)
    y = torch.tensor([0, 1, 2, 3, 4])
    images = torch.rand(5, 3, 8, 8)
    out, t = mix_batch(mixup, images.clone(), y, K)
    assert out.shape[0] == 5 and torch.equal(out[4], images[4])
    assert torch.equal(t[4], one_hot_targets(y[4:], K)[0])
    torch.testing.assert_close(t.sum(dim=1), torch.ones(5))
    assert build_mixup(K) is None
    out, t = mix_batch(None, images, y, K)
    assert out is images and torch.equal(t, one_hot_targets(y, K))


def test_etf_and_hug_refuse_mixed_targets_naming_the_method():
    dr = L.DotRegressionLoss(torch.eye(K))
    hug = L.HUGLoss(torch.randn(K, K))
    assert not supports_mixed_targets(dr) and not supports_mixed_targets(hug)
    assert supports_mixed_targets(L.CrossEntropyLoss())
    for loss, name in ((dr, "etf-dr"), (hug, "hug-mhe")):
        with pytest.raises(HafclsError, match=f"{name}.*--mixup/--cutmix"):
            require_mixed_targets(loss, name)
        with pytest.raises(HafclsError, match="mixup"):
            mixed_loss(loss, torch.zeros(2, K), torch.zeros(2, K), one_hot_targets(
                torch.tensor([0, 1]), K))


def test_bad_soft_targets_raise():
    good = one_hot_targets(torch.tensor([0, 1]), K)
    for bad in (good * 0.5, -good, good[:, :3], torch.full((2, K), float("nan"))):
        with pytest.raises(HafclsError):
            check_soft_targets(bad, K)
    with pytest.raises(HafclsError):
        mixed_loss(L.CrossEntropyLoss(), torch.zeros(3, K), None, good)
    with pytest.raises(HafclsError):
        build_mixup(K, mixup_alpha=-1)
    assert np.isclose(float(F.cross_entropy(torch.zeros(1, K), good[:1])), np.log(K))
