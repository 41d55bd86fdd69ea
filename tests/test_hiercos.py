"""Orthogonal node subspaces (Hier-COS): basis, class subspaces, scores, loss, training, state."""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hafcls.errors import HafclsError
from hafcls.frames.hiercos import SELF_SUFFIX, node_subspaces, random_rotation
from hafcls.hierarchy import Hierarchy
from hafcls.losses.hiercos import SubspacePathLoss, path_weights
from hafcls.methods.hiercos import ALPHA_PRESETS
from hafcls.models.hiercos_head import SubspaceHead

# root -> A{a1, a2, a3}, B{b1, b2}, C{c1}: six leaf classes, height 2
EDGES = [("root", "A"), ("A", "a1"), ("A", "a2"), ("A", "a3"), ("root", "B"), ("B", "b1"),
         ("B", "b2"), ("root", "C"), ("C", "c1")]
# unbalanced, with an internal class b1 (parent of class x) and a shallow class c
MIXED = [("r", "A"), ("A", "a1"), ("A", "a2"), ("r", "B"), ("B", "b1"), ("b1", "x"), ("r", "c")]
MIXED_CLASSES = ["a1", "a2", "b1", "x", "c"]


@pytest.fixture(scope="module")
def tree():
    return Hierarchy.from_edges(EDGES)


@pytest.fixture(scope="module")
def mixed():
    return Hierarchy.from_edges(MIXED, classes=MIXED_CLASSES)


def names(sub, coords):
    return {sub.coordinates[i] for i in coords}


def head_for(hierarchy, seed=0, in_features=6):
    torch.manual_seed(seed)
    return SubspaceHead.from_hierarchy(in_features, hierarchy, seed=seed)


# ---------------------------------------------------------------------- basis and index sets
def test_rotation_is_orthonormal_and_seeded():
    r = random_rotation(9, seed=3).double()
    assert torch.allclose(r.t() @ r, torch.eye(9, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(r @ r.t(), torch.eye(9, dtype=torch.float64), atol=1e-6)
    assert torch.equal(random_rotation(9, seed=3), random_rotation(9, seed=3))
    assert not torch.allclose(random_rotation(9, seed=3), random_rotation(9, seed=4))


def test_class_subspaces_on_a_leaf_tree(tree):
    sub = node_subspaces(tree)
    assert sub.dim == tree.num_nodes - 1 == 9  # one coordinate per non-root node
    assert sub.coordinates == tuple(tree.nodes[1:])
    expected = {"a1": {"A", "a1"}, "a2": {"A", "a2"}, "a3": {"A", "a3"}, "b1": {"B", "b1"},
                "b2": {"B", "b2"}, "c1": {"C", "c1"}}
    for c, cls in enumerate(tree.classes):
        assert names(sub, sub.subspace(c)) == expected[cls]
    assert names(sub, sub.level(1)) == {"A", "B", "C"}
    assert names(sub, sub.level(2)) == set(tree.classes)
    # level targets: position of each class's depth-1 ancestor among level(1)
    level1 = [sub.coordinates[i] for i in sub.level(1)]
    got = [level1[i] for i in sub.level_targets(1)]
    assert got == [tree.path(c)[1] for c in tree.classes]
    m = sub.membership_matrix()
    assert m.shape == (6, 9) and m.sum() == 12 and set(np.unique(m)) == {0, 1}


def test_internal_and_shallow_classes_get_their_own_path(mixed):
    sub = node_subspaces(mixed)
    # one pseudo-leaf for the internal class b1; every other node keeps its coordinate
    assert sub.dim == mixed.num_nodes - 1 + 1
    assert sub.coordinates[-1] == "b1" + SELF_SUFFIX and sub.nodes[-1] == "b1"
    expected = {"a1": {"A", "a1"}, "a2": {"A", "a2"}, "b1": {"B", "b1", "b1::self"},
                "x": {"B", "b1", "x"}, "c": {"c"}}
    for c, cls in enumerate(MIXED_CLASSES):
        assert names(sub, sub.subspace(c)) == expected[cls]
    assert list(sub.path_lengths) == [2, 2, 3, 3, 1]
    assert names(sub, sub.level(3)) == {"x", "b1::self"}
    assert list(sub.level_targets(3)[[0, 1, 4]]) == [-1, -1, -1]  # paths too short
    # no class subspace contains another one: every class can be the strict top-1
    sets = [set(sub.subspace(c)) for c in range(sub.num_classes)]
    assert not any(a < b for a in sets for b in sets)


# ---------------------------------------------------------------------- scores
def test_scores_equal_explicit_projections(mixed):
    head = head_for(mixed).eval()
    sub = node_subspaces(mixed)
    r = head.rotation.double()
    h = torch.randn(7, sub.dim, dtype=torch.float64)
    z = h @ r
    expected = torch.empty(7, sub.num_classes, dtype=torch.float64)
    for c in range(sub.num_classes):
        b_c = r[:, torch.from_numpy(sub.subspace(c))]  # orthonormal basis of V_c in h-space
        p_c = b_c @ b_c.t()
        assert torch.allclose(p_c @ p_c, p_c, atol=1e-10)  # a projection
        expected[:, c] = (h @ p_c).norm(dim=1)
    assert torch.allclose(head.scores(z.float()).double(), expected, atol=1e-5)
    # the sparse (gather + index_add) path gives the same numbers as the dense matmul
    dense = head.scores(z.float())
    head.membership = None
    assert torch.allclose(head.scores(z.float()), dense, atol=1e-5)


def test_scores_respect_the_tree(tree, mixed):
    for hierarchy in (tree, mixed):
        head = head_for(hierarchy)
        sub = node_subspaces(hierarchy)
        w = torch.from_numpy(sub.class_vectors())  # d x K unit path vectors
        gen = torch.Generator().manual_seed(0)
        z = w.t() * (0.5 + torch.rand(w.shape[1], 1, generator=gen))  # positive path weights
        assert torch.equal(head.scores(z).argmax(dim=1), torch.arange(sub.num_classes))
    # uniform weights on a path: the score of c' grows with depth(LCA) = shared path length
    sub = node_subspaces(tree)
    s = head_for(tree).scores(torch.from_numpy(sub.class_vectors()).t()) ** 2 * 2
    lca_depth = 2 - tree.distance_matrix()
    assert torch.allclose(s, torch.from_numpy(lca_depth).float(), atol=1e-5)


def test_level_predictions_follow_the_path(mixed):
    head = head_for(mixed)
    sub = node_subspaces(mixed)
    z = torch.from_numpy(sub.class_vectors()).t() * torch.linspace(1, 2, 3).repeat(2)[:5, None]
    pred = head.level_predictions(z)
    assert pred.shape == (5, 3)
    for c in range(5):
        path = sub.paths[c][sub.paths[c] >= 0]
        assert pred[c, : len(path)].tolist() == path.tolist()
    assert head.level_nodes(1) == ["A", "B", "c"]
    assert head.level_scores(z, 2).shape == (5, 3)


# ---------------------------------------------------------------------- loss
def test_path_targets_match_the_formula(mixed):
    sub = node_subspaces(mixed)
    loss = SubspacePathLoss.from_subspaces(sub)
    x = MIXED_CLASSES.index("x")  # path B, b1, x: r = 3, 2, 1
    e = torch.tensor([math.exp(1 / 3), math.exp(1 / 2), math.e], dtype=torch.float64)
    q = (e / e.sum()) ** 2
    dense = loss.target_distribution(torch.tensor([x]))[0].double()
    coords = [sub.coordinates.index(n) for n in ("B", "b1", "x")]
    assert torch.allclose(dense[coords], q, atol=1e-6)
    assert dense.sum().item() == pytest.approx(q.sum().item(), abs=1e-6) and q.sum() < 1
    assert q[2] > q[1] > q[0]  # grows towards the leaf
    c = MIXED_CLASSES.index("c")  # a one-node path: the whole (squared) weight 1 on it
    assert loss.target_distribution(torch.tensor([c]))[0].sum().item() == pytest.approx(1.0)
    renorm = path_weights(torch.from_numpy(sub.paths), renormalise=True)[x]
    assert torch.allclose(renorm, torch.softmax(2 / torch.tensor([3.0, 2, 1]), 0).double())


def test_vectorised_terms_equal_textbook_forms(mixed):
    sub = node_subspaces(mixed)
    loss = SubspacePathLoss.from_subspaces(sub, alpha=0.3)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(10, sub.dim, generator=gen)
    y = torch.randint(0, 5, (10,), generator=gen)
    target = loss.target_distribution(y)
    kl = F.kl_div(torch.log_softmax(z.abs(), 1), target, reduction="none").sum(1)
    assert torch.allclose(loss.kl_term(z, y), kl, atol=1e-5)
    level = torch.zeros(10)
    for b in range(10):  # one-hot vs L1-normalised |z| at each depth of the path
        for depth in range(1, sub.height + 1):
            t = sub.level_targets(depth)[y[b]]
            if t < 0:
                continue
            u = z[b, torch.from_numpy(sub.level(depth))].abs()
            level[b] += (F.one_hot(torch.tensor(t), len(u)) - u / u.sum()).abs().sum()
    assert torch.allclose(loss.level_term(z, y), level, atol=1e-5)
    scores = torch.zeros(10, 5)
    assert loss(scores, z, y).item() == pytest.approx((kl.mean() + 0.3 * level.mean()).item(),
                                                      rel=1e-5)


@pytest.mark.parametrize("renormalise", [False, True])
def test_loss_is_minimal_at_the_ideal_coordinates(tree, renormalise):
    sub = node_subspaces(tree)
    loss = SubspacePathLoss.from_subspaces(sub, alpha=0.0, renormalise=renormalise)
    y = torch.arange(6)
    q = loss.target_distribution(y)
    total = q.sum(dim=1)
    infimum = (total * total.log()).mean().item()  # Σq·log Σq: 0 for a proper distribution

    def ideal(scale):  # |z| = scale + log q on the path, 0 elsewhere
        on = q > 0
        return torch.where(on, scale + q.clamp_min(1e-30).log(), torch.zeros(()))

    values = [loss(torch.zeros(6, 6), ideal(s), y).item() for s in (5.0, 10.0, 20.0, 30.0)]
    assert values == sorted(values, reverse=True)  # decreasing towards the infimum
    assert values[-1] == pytest.approx(infimum, abs=1e-5)
    z = ideal(30.0).requires_grad_(True)
    loss(torch.zeros(6, 6), z, y).backward()
    assert z.grad.abs().max().item() < 1e-6  # stationary
    # moving mass between path nodes at the same scale costs
    worse = ideal(30.0)
    gen = torch.Generator().manual_seed(0)
    worse[q > 0] += 0.3 * torch.randn(int((q > 0).sum()), generator=gen)
    assert loss(torch.zeros(6, 6), worse, y).item() > values[-1] + 1e-4
    # the level term is 0 exactly when each level's mass sits on the true node
    assert SubspacePathLoss.from_subspaces(sub).level_term(ideal(5.0), y).abs().max() < 1e-6


def test_alpha_presets_and_bad_inputs(tree):
    assert ALPHA_PRESETS == {"cifar100": 0.05, "fgvc-aircraft": 0.1, "inat2019": 0.001,
                             "tiered-imagenet": 1e-5}
    sub = node_subspaces(tree)
    with pytest.raises(HafclsError):
        SubspacePathLoss.from_subspaces(sub, alpha=-1)
    loss = SubspacePathLoss.from_subspaces(sub)
    with pytest.raises(HafclsError):
        loss(torch.zeros(2, 5), torch.zeros(2, 9), torch.tensor([0, 1]))
    with pytest.raises(HafclsError):
        SubspacePathLoss.from_head(torch.nn.Linear(2, 2))
    with pytest.raises(HafclsError):
        SubspaceHead(4, sub, rotation=torch.ones(9, 9))
    with pytest.raises(HafclsError):
        SubspaceHead(4, sub, rotation=torch.eye(8))
    with pytest.raises(HafclsError):
        node_subspaces("not a tree")


# ---------------------------------------------------------------------- training and state
def test_head_and_loss_train_on_a_tiny_problem(mixed):
    torch.manual_seed(0)
    k, n, c_in = 5, 200, 6
    centres = torch.randn(k, c_in) * 3
    y = torch.arange(n) % k
    x = centres[y] + 0.3 * torch.randn(n, c_in)
    head = SubspaceHead.from_hierarchy(c_in, mixed, seed=0)
    loss_fn = SubspacePathLoss.from_head(head, alpha=0.05)
    opt = torch.optim.Adam(head.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        scores, z = head(x)
        loss = loss_fn(scores, z, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.6 * losses[0]
    head.eval()
    with torch.no_grad():
        scores, z = head(x)
    assert (scores.argmax(1) == y).float().mean().item() > 0.9
    assert head.rotation.grad is None and not head.rotation.requires_grad


def test_head_on_a_timm_feature_map(tree):
    timm = pytest.importorskip("timm")
    backbone = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    head = SubspaceHead.from_hierarchy(backbone.num_features, tree, input_kind="map")
    with torch.no_grad():
        fmap = backbone.forward_features(torch.randn(2, 3, 32, 32))
        scores, z = head.eval()(fmap)
    assert scores.shape == (2, 6) and z.shape == (2, 9)
    assert head.projection.conv.weight.shape[:2] == (9, backbone.num_features)


def test_state_dict_round_trips_the_fixed_buffers(tree):
    a = head_for(tree, seed=0).eval()
    b = head_for(tree, seed=1).eval()
    assert not torch.allclose(a.rotation, b.rotation)
    state = a.state_dict()
    assert "rotation" in state and "frame" in state and "paths" not in state
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(a.rotation, b.rotation)
    x = torch.randn(3, 6)
    with torch.no_grad():
        assert torch.allclose(a(x)[0], b(x)[0]) and torch.allclose(a(x)[1], b(x)[1])
    assert b.frame_meta["seed"] == 0 and b.frame_meta["fingerprint"] == tree.fingerprint()
    other = Hierarchy.from_edges([("root", "A"), ("A", "a1"), ("A", "a2"), ("root", "B"),
                                  ("B", "a3"), ("B", "b1"), ("root", "C"), ("C", "b2"),
                                  ("C", "c1")], classes=tree.classes)
    c = head_for(other)
    assert c.feature_dim == 9
    with pytest.raises(HafclsError):
        c.load_state_dict(state)


# ---------------------------------------------------------------------- the registered method
@pytest.mark.parametrize("dataset,alpha", [("cifar100", 0.05), ("FGVC", 0.1),
                                           ("inat2019", 0.001), ("tieredImageNet-H", 1e-5),
                                           ("synthetic", 0.05)])
def test_hier_cos_method_presets(dataset, alpha):
    import hafcls

    method = hafcls.get_method("hier-cos", dataset)
    assert method.head == "subspace" and method.score_temperature == 1.0
    assert method.loss_kwargs == {"alpha": alpha, "renormalise": False}


def test_hier_cos_trains_in_the_engine_with_the_run_seed(tree, tmp_path):
    from hafcls.engine import TrainConfig
    from hafcls.engine.builders import build_method_and_model
    from hafcls.engine.train import train

    cfg = TrainConfig.from_dict({"data": "synthetic", "method": "hier-cos", "model":
                                 "test_resnet", "seed": 7})
    method, model = build_method_and_model(cfg, tree)
    assert model.head.kind == "subspace" and model.head.frame_meta["seed"] == 7
    assert torch.equal(model.head.rotation, random_rotation(model.head.feature_dim, 7))
    assert isinstance(method.build_loss(model, tree), SubspacePathLoss)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train({"data": "synthetic", "image_size": 16, "method": "hier-cos",
                        "data_options": {"branching": [2, 2],
                                         "per_class": {"train": 8, "val": 3, "test": 3}},
                        "model": "test_resnet", "epochs": 2, "batch_size": 8, "workers": 0,
                        "progress": False, "lr": 0.05, "seed": 3,
                        "output": str(tmp_path / "run")}, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    assert result["test"]["n"] == 12 and math.isfinite(result["test"]["hierdist@1"])
    assert result["temperature"]["temperature"] > 0
    # neural collapse of the trained run: the training split by default, NC4 from the scores
    from hafcls.engine.evaluate import collapse_checkpoint

    nc = collapse_checkpoint(tmp_path / "run", device="cpu", workers=0)
    assert nc["split"] == "train" and nc["n"] == 32 and nc["num_classes"] == 4
    assert 0.0 <= nc["nc4"] <= 1.0 and "self_duality" in nc
