"""Fair baselines (issue 12, item 3): HXE on CE's scale, the published comparison points as
methods, EBV at τ = 0.002 with label smoothing, HUG's official proxy start without projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hafcls
from hafcls.hierarchy import Hierarchy
from hafcls.losses import HierarchicalCrossEntropy
from hafcls.losses.hierarchical import uniform_gradient_norm

INAT_WIDTHS = (3, 4, 9, 34, 57, 72, 1010)  # iNat-2019's level sizes: 7 levels, 1,010 classes


def level_tree(widths) -> Hierarchy:
    """A balanced-depth tree with the given number of nodes per level, children spread evenly."""
    edges, prev = [], ["root"]
    for depth, width in enumerate(widths, start=1):
        cur = [f"n{depth}_{i}" for i in range(width)]
        edges += [(prev[i * len(prev) // width], c) for i, c in enumerate(cur)]
        prev = cur
    return Hierarchy.from_edges(edges)


@pytest.fixture(scope="module")
def inat_like():
    return level_tree(INAT_WIDTHS)


def _logit_grad_norm(loss_fn, logits, y) -> float:
    z = logits.clone().requires_grad_(True)
    loss_fn(z, y).backward()
    return float(z.grad.norm())


# ---------------------------------------------------------------------- HXE
@pytest.mark.parametrize("normalisation", ["gradient", "height"])
def test_hxe_alpha_zero_is_cross_entropy(inat_like, normalisation):
    torch.manual_seed(0)
    logits, y = torch.randn(64, 1010) * 3, torch.randint(0, 1010, (64,))
    loss = HierarchicalCrossEntropy(inat_like, alpha=0.0, normalisation=normalisation)
    assert torch.equal(loss.edge_weight[loss.edge_weight > 0], torch.ones_like(
        loss.edge_weight[loss.edge_weight > 0]))  # weights exactly 1: the terms telescope
    torch.testing.assert_close(loss(logits, None, y), F.cross_entropy(logits, y),
                               rtol=1e-6, atol=1e-6)
    # and the limit is continuous: a tiny alpha is CE up to O(alpha)
    tiny = HierarchicalCrossEntropy(inat_like, alpha=1e-7, normalisation=normalisation)
    torch.testing.assert_close(tiny(logits, None, y), F.cross_entropy(logits, y),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.1, 0.6])
def test_hxe_gradient_on_cross_entropy_scale(inat_like, alpha):
    torch.manual_seed(1)
    logits, y = torch.randn(256, 1010) * 0.5, torch.randint(0, 1010, (256,))
    ce = _logit_grad_norm(lambda z, t: F.cross_entropy(z, t), logits, y)
    hxe = HierarchicalCrossEntropy(inat_like, alpha=alpha)
    ratio = _logit_grad_norm(lambda z, t: hxe(z, None, t), logits, y) / ce
    assert 0.3 <= ratio <= 3.0, ratio
    # the authors' all-node normalisation: three orders of magnitude below CE (the finding)
    paper = HierarchicalCrossEntropy(inat_like, alpha=alpha, normalisation="nodes")
    assert _logit_grad_norm(lambda z, t: paper(z, None, t), logits, y) / ce < 0.01
    # the normalisations differ by one constant factor only
    ratio_w = hxe.edge_weight[hxe.edge_weight > 0] / paper.edge_weight[paper.edge_weight > 0]
    torch.testing.assert_close(ratio_w, torch.full_like(ratio_w, float(ratio_w[0])), rtol=1e-5,
                               atol=0)


def test_uniform_gradient_norm_against_autograd():
    # a class at an internal node (A, above x and y) and paths of different lengths
    h = Hierarchy.from_edges([("r", "A"), ("A", "x"), ("A", "y"), ("r", "B"), ("B", "C"),
                              ("C", "z"), ("C", "w"), ("r", "v")], classes=["x", "y", "z", "w",
                                                                           "v", "A"])
    weight = np.random.default_rng(0).uniform(0.1, 2.0, h.num_nodes)
    loss = HierarchicalCrossEntropy(h, alpha=0.0, normalisation="nodes")
    edge_w = torch.as_tensor(weight, dtype=torch.float32)[loss.edge_child]
    loss.edge_weight.copy_(torch.where(loss.edge_weight > 0, edge_w, 0.0))
    norms = []
    for c in range(h.num_classes):
        z = torch.zeros(1, h.num_classes, requires_grad=True)
        loss(z, None, torch.tensor([c])).backward()
        norms.append(float(z.grad.norm()))
    assert uniform_gradient_norm(h, weight) == pytest.approx(np.mean(norms), rel=1e-6)


def test_hxe_normalisation_is_checked():
    with pytest.raises(hafcls.HafclsError, match="normalisation"):
        HierarchicalCrossEntropy(level_tree((2, 4)), normalisation="paths")


# ---------------------------------------------------------------------- published points
@pytest.mark.parametrize("name,key,value", [
    ("soft-labels-b4", "beta", 4.0), ("soft-labels-b30", "beta", 30.0),
    ("hxe-a0.1", "alpha", 0.1), ("hxe-a0.6", "alpha", 0.6)])
def test_published_comparison_points_are_methods(name, key, value):
    method = hafcls.get_method(name, "inat2019")
    assert method.name == name and method.loss_kwargs[key] == value
    assert method.head_kwargs == hafcls.get_method("ce").head_kwargs  # the CE baseline's head
    tree = level_tree((2, 4))
    loss = method.build_loss(method.create_model("test_resnet", tree), tree)
    assert getattr(loss, key) == value


# ---------------------------------------------------------------------- EBV
@pytest.mark.parametrize("k,d", [(10, 10), (6, 16)])
def test_ebv_is_exactly_orthonormal_when_d_at_least_k(k, d):
    from hafcls.frames import equiangular_basis

    frame = equiangular_basis(k, d, seed=3)
    w = frame.weight.double()
    assert w.shape == (d, k) and frame.info["tau"] == 0.002
    torch.testing.assert_close(w.T @ w, torch.eye(k, dtype=torch.float64), rtol=0, atol=1e-6)
    assert frame.info["max_abs_cos"] < 1e-6
    assert not torch.equal(frame.weight, equiangular_basis(k, d, seed=4).weight)


def test_ebv_below_k_dimensions_optimises_towards_tau():
    from hafcls.frames import equiangular_basis
    from hafcls.frames.ebv import max_abs_cosine, welch_bound

    start = torch.nn.functional.normalize(torch.randn(8, 20), dim=0)
    frame = equiangular_basis(20, 8, seed=0, steps=300)
    # 0.002 is below the Welch bound here: the Σ|cos| energy would clump vectors onto axes
    assert frame.info["tau"] == pytest.approx(1.5 * welch_bound(20, 8))
    assert welch_bound(20, 8) <= frame.info["max_abs_cos"] < 0.5 < max_abs_cosine(start)


def test_ebv_method_smooths_labels_by_a_tenth():
    method = hafcls.get_method("ebv")
    assert method.loss_kwargs == {"label_smoothing": 0.1}
    tree = level_tree((2, 4))
    loss = method.build_loss(method.create_model("test_resnet", tree), tree)
    logits, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(loss(logits, None, y),
                               F.cross_entropy(logits, y, label_smoothing=0.1))


# ---------------------------------------------------------------------- HUG
def test_hug_head_has_the_official_start_and_no_projection():
    tree = level_tree((2, 4))
    torch.manual_seed(0)
    model = hafcls.create_model("test_resnet", tree, head="hug")
    head, d = model.head, model.head.feature_dim
    assert isinstance(head.projection, torch.nn.Identity) and d == model.backbone.num_features
    bound, largest = 1 / np.sqrt(d), float(head.proxies.detach().abs().max())
    assert 0.8 * bound < largest <= bound  # uniform over the whole interval, not unit rows
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        pooled = model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)
    torch.testing.assert_close(features, F.normalize(pooled, dim=1))
    # a projection only when another width is asked for
    narrow = hafcls.create_model("test_resnet", tree, head="hug", dim=5)
    assert isinstance(narrow.head.projection, torch.nn.Linear)
    assert narrow.head.projection.bias is None and narrow.head.proxies.shape == (4, 5)
