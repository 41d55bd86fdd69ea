"""Frames without the K x K target S (the default above 8,192 classes) and the HAFrame loss that
takes the same targets from the class distances: identical numbers, identical training."""

import importlib

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.frames import haframe
from hafcls.hierarchy import Hierarchy
from hafcls.losses import HAFrameLoss

frames_haframe = importlib.import_module("hafcls.frames.haframe")  # the module, not the function

# unbalanced, classes at internal nodes ("A", "b1"), a leaf class right under the root ("c"):
# the published distance of a class to itself is not 0 there, d_max differs from the height, ...
EDGES = [("root", "A"), ("A", "a1"), ("A", "a2"), ("a1", "a1x"), ("a1", "a1y"), ("root", "B"),
         ("B", "b1"), ("b1", "b1p"), ("b1", "b1q"), ("b1", "b1r"), ("root", "c")]
CLASSES = ["A", "a2", "a1x", "a1y", "b1", "b1p", "b1q", "b1r", "c"]


@pytest.fixture(scope="module")
def tree():
    return Hierarchy.from_edges(EDGES, classes=CLASSES)


@pytest.fixture
def tiny_budget(monkeypatch):
    """Make "auto" drop S already at these few classes."""
    monkeypatch.setattr(frames_haframe, "SIMILARITY_MAX_BYTES", 4 * 3**2)


# ---------------------------------------------------------------------- the "auto" rule
def test_auto_rule_keeps_s_up_to_256_mib():
    keeps = frames_haframe.keeps_similarity
    assert frames_haframe.SIMILARITY_MAX_BYTES == 256 * 2**20
    assert keeps("auto", 8192) and not keeps("auto", 8193)
    assert not keeps("auto", 21841) and keeps("auto", 11) and keeps(True, 21841)
    assert not keeps(False, 2) and keeps(np.bool_(True), 10**6)
    for bad in ("yes", None, 1, "Auto"):
        with pytest.raises(HafclsError, match="with_similarity"):
            keeps(bad, 10)


def test_bad_with_similarity_fails_before_building(tree):
    with pytest.raises(HafclsError, match="'auto'"):
        haframe(tree, with_similarity="always")


@pytest.mark.parametrize("method", ["eigh", "tree"])
def test_default_at_small_k_is_the_former_default(tree, method):
    default = haframe(tree, gamma=2.0, method=method)
    full = haframe(tree, gamma=2.0, method=method, with_similarity=True)
    assert default.similarity is not None
    assert torch.equal(default.similarity, full.similarity)
    assert torch.equal(default.weight, full.weight) and default.max_error == full.max_error


@pytest.mark.parametrize("method,dim", [("tree", None), ("tree", 4), ("eigh", None)])
def test_auto_above_the_budget_drops_s_and_nothing_else(tree, tiny_budget, method, dim):
    bare = haframe(tree, gamma=2.0, method=method, dim=dim)
    full = haframe(tree, gamma=2.0, method=method, dim=dim, with_similarity=True)
    assert bare.similarity is None and full.similarity is not None
    assert torch.equal(bare.weight, full.weight) and bare.max_error == full.max_error
    assert bare.info.get("mean_error") == full.info.get("mean_error")
    assert bare.to_metadata()["has_similarity"] is False


# ---------------------------------------------------------------------- distances from the tree
@pytest.mark.parametrize("name", ["small", "imagenet-1k"])
@pytest.mark.parametrize("distance", ["published", "lca_height"])
def test_tree_distances_equal_the_distance_matrix(tree, name, distance):
    from hafcls.frames import TreeSimilarity
    from hafcls.hierarchy import load

    h = tree if name == "small" else load(name)
    got = TreeSimilarity(h, distance).distances()
    want = h.distance_matrix(distance)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    # the loss built from the hierarchy and from the matrix hold the same distances and table
    a = HAFrameLoss.from_distance(h, 2.0, -0.1, distance=distance)
    b = HAFrameLoss.from_distance(want, 2.0, -0.1)
    assert torch.equal(a.distance, b.distance) and torch.equal(a.lut, b.lut)


# ---------------------------------------------------------------------- loss: distances == S
def _inputs(frame, seed=0, batch=12):
    g = torch.Generator().manual_seed(seed)
    k = frame.num_classes
    features = torch.randn(batch, frame.dim, generator=g, dtype=torch.float32)
    y = torch.arange(batch) % k
    return features, y


def _value_and_grads(loss_fn, frame, features, y):
    h = features.clone().requires_grad_(True)
    logits = h @ frame.weight
    loss = loss_fn(logits, h, y)
    loss.backward()
    return loss.detach(), h.grad


@pytest.mark.parametrize("distance", ["published", "lca_height"])
@pytest.mark.parametrize("method", ["tree", "eigh"])
@pytest.mark.parametrize("s_min", ["paper", 0.1])
def test_loss_from_distances_equals_loss_from_s(tree, distance, method, s_min):
    full = haframe(tree, gamma=3.0, s_min=s_min, method=method, distance=distance,
                   with_similarity=True)
    bare = haframe(tree, gamma=3.0, s_min=s_min, method=method, distance=distance,
                   with_similarity=False)
    dense = HAFrameLoss(full.similarity, alpha=0.4, frame_weight=full.weight)
    lookup = HAFrameLoss.from_frame(bare, tree, alpha=0.4)
    assert lookup.similarity is None and lookup.distance.dtype == torch.uint8
    y = torch.arange(tree.num_classes)
    # the very float32 numbers of S, diagonal included
    assert torch.equal(lookup.target_cosines(y), full.similarity)
    features, yb = _inputs(full)
    v1, g1 = _value_and_grads(dense, full, features, yb)
    v2, g2 = _value_and_grads(lookup, bare, features, yb)
    assert torch.equal(v1, v2) and torch.equal(g1, g2)
    assert torch.count_nonzero(g1) > 0
    # a frame that kept S gives the dense form
    assert HAFrameLoss.from_frame(full, alpha=0.4).similarity is not None


def test_loss_from_a_distance_matrix_frame(tree):
    d = tree.distance_matrix()
    full = haframe(d, gamma=2.0, with_similarity=True)
    bare = haframe(d, gamma=2.0, with_similarity=False)
    lookup = HAFrameLoss.from_frame(bare, d, alpha=0.5)
    assert torch.equal(lookup.target_cosines(torch.arange(len(d))), full.similarity)
    with pytest.raises(HafclsError, match="distance matrix"):
        HAFrameLoss.from_frame(bare, tree)


def test_from_frame_refuses_what_it_cannot_use(tree):
    bare = haframe(tree, gamma=2.0, with_similarity=False)
    with pytest.raises(HafclsError, match="hierarchy"):
        HAFrameLoss.from_frame(bare)
    other = Hierarchy.from_edges([("root", c) for c in CLASSES])
    with pytest.raises(HafclsError, match="fingerprints"):
        HAFrameLoss.from_frame(bare, other)
    from hafcls.frames import equiangular_basis

    ebv = equiangular_basis(len(CLASSES), 4, steps=5)
    with pytest.raises(HafclsError, match="HAFrame"):
        HAFrameLoss.from_frame(ebv, tree)


# ---------------------------------------------------------------------- the method without S
def test_method_trains_a_step_with_a_frame_without_s(tree, tiny_budget):
    from hafcls.methods import get_method

    torch.manual_seed(0)
    method = get_method("haframe", "cifar100").with_options(frame_method="tree")
    model = method.create_model("test_resnet", tree)
    assert model.head.frame_meta["has_similarity"] is False  # built by default, S dropped
    loss_fn = method.build_loss(model, tree)
    assert loss_fn.similarity is None and loss_fn.distance.dtype == torch.uint8
    # the targets are those of the frame built with S
    full = haframe(tree, gamma=2.0, s_min="paper", method="tree", with_similarity=True)
    assert torch.equal(loss_fn.target_cosines(torch.arange(tree.num_classes)), full.similarity)

    x, y = torch.randn(9, 3, 32, 32), torch.arange(9)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    logits, features = model(x, return_features=True)
    loss = loss_fn(logits, features, y)
    dense = HAFrameLoss(full.similarity, 0.4, frame_weight=model.head.frame)
    assert torch.equal(loss, dense(logits, features, y))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, after))


def test_column_norms_match_torch():
    from hafcls.losses.haframe import column_norms

    g = torch.Generator().manual_seed(1)
    for shape in [(7, 5), (300, 1000), (2, 3000)]:
        w = torch.randn(*shape, generator=g) * 3
        torch.testing.assert_close(column_norms(w), w.norm(dim=0), rtol=1e-6, atol=0)
    assert column_norms(w.double()).dtype == torch.float32


def test_frame_command_stores_s_by_the_auto_rule_or_the_flag(tmp_path, tiny_budget):
    from cli_helpers import invoke
    from safetensors import safe_open

    for flags, stored in (((), False), (("--similarity",), True), (("--no-similarity",), False)):
        out = tmp_path / f"frame{len(flags)}{stored}.safetensors"
        result = invoke("frame", "fashion-mnist", "--method", "tree", *flags, "-o", out)
        assert result.exit_code == 0, result.output
        with safe_open(str(out), "pt") as f:
            assert ("similarity" in f.keys()) is stored, flags
