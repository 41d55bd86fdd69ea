"""Registry of methods: names, published presets, and every method trained end to end."""

import pytest
import torch

from hafcls import losses as L
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.losses.hiercos import SubspacePathLoss
from hafcls.methods import available_methods, get_method

NAMES = ["ce", "ebv", "etf-dr", "haframe", "hier-cos", "hug-mgd", "hug-mhe", "hug-mhs", "hxe",
         "hxe-a0.1", "hxe-a0.6", "soft-labels", "soft-labels-b30", "soft-labels-b4"]
EDGES = [("root", "A"), ("A", "a1"), ("A", "a2"), ("root", "B"), ("B", "b1"), ("B", "b2"),
         ("B", "b3")]
LOSS_TYPES = {
    "ce": L.CrossEntropyLoss, "ebv": L.CrossEntropyLoss, "etf-dr": L.DotRegressionLoss,
    "haframe": L.HAFrameLoss, "hug-mgd": L.HUGLoss, "hug-mhe": L.HUGLoss, "hug-mhs": L.HUGLoss,
    "hxe": L.HierarchicalCrossEntropy, "soft-labels": L.SoftLabelLoss,
    "hier-cos": SubspacePathLoss, "hxe-a0.1": L.HierarchicalCrossEntropy,
    "hxe-a0.6": L.HierarchicalCrossEntropy, "soft-labels-b4": L.SoftLabelLoss,
    "soft-labels-b30": L.SoftLabelLoss,
}


@pytest.fixture(scope="module")
def tree():
    return Hierarchy.from_edges(EDGES)


def test_available_methods_are_the_documented_names():
    assert available_methods() == NAMES


def test_unknown_method_lists_the_names():
    with pytest.raises(HafclsError) as err:
        get_method("haframe2")
    for name in NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "dataset,gamma,alpha",
    [("cifar100", 2.0, 0.4), ("fgvc-aircraft", 1.0, 0.5), ("inat2019", 5.0, 0.4),
     ("tiered-imagenet", 3.0, 0.5), ("CIFAR-100", 2.0, 0.4), ("tieredImageNet-H", 3.0, 0.5),
     ("synthetic", 2.0, 0.4), (None, 2.0, 0.4)],
)
def test_haframe_presets_per_dataset(dataset, gamma, alpha):
    m = get_method("haframe", dataset)
    assert m.head == "haframe" and m.head_kwargs["gamma"] == gamma
    assert m.head_kwargs["s_min"] == "paper"
    assert m.loss_kwargs == {"alpha": alpha}


def test_other_defaults_and_options():
    assert get_method("hug-mgd").loss_kwargs == {"variant": "mgd", "alpha": 1.0, "beta": 1.0}
    assert get_method("ce").head_kwargs == {"shape": "type1"}
    m = get_method("haframe", "cifar100").with_options(alpha=0.1, gamma=4.0, frame_method="tree")
    assert m.loss_kwargs["alpha"] == 0.1 and m.head_kwargs["gamma"] == 4.0
    assert m.head_kwargs["frame_method"] == "tree"
    assert get_method("haframe", "cifar100").loss_kwargs["alpha"] == 0.4  # a copy was changed
    with pytest.raises(HafclsError, match="no option"):
        get_method("ce").with_options(gamma=1.0)


def test_score_is_softmax_with_the_method_temperature():
    logits = torch.tensor([[0.5, -0.2, 0.1]])
    torch.testing.assert_close(get_method("ce").score(logits), torch.softmax(logits, 1))
    hug = get_method("hug-mhe")
    assert hug.score_temperature == pytest.approx(0.07)
    scores = hug.score(logits)
    torch.testing.assert_close(scores, torch.softmax(logits / 0.07, 1))
    assert torch.equal(scores.argsort(descending=True), logits.argsort(descending=True))


@pytest.mark.parametrize("name", NAMES)
def test_every_method_builds_and_backpropagates(tree, name):
    torch.manual_seed(0)
    method = get_method(name, "synthetic")
    model = method.create_model("test_resnet", tree)
    assert model.head.kind == method.head
    loss_fn = method.build_loss(model, tree)
    assert isinstance(loss_fn, LOSS_TYPES[name])
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    logits, features = model(x, return_features=True)
    loss = loss_fn(logits, features, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    head_grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in head_grads)
    assert any(torch.count_nonzero(g) for g in head_grads)
    stem = next(model.backbone.parameters())  # the gradient reaches the first layer
    assert stem.grad is not None and torch.count_nonzero(stem.grad) > 0


def test_haframe_loss_targets_follow_the_frame(tree):
    from hafcls.frames import haframe

    method = get_method("haframe", "cifar100")
    model = method.create_model("test_resnet", tree)
    loss_fn = method.build_loss(model, tree)
    frame = haframe(tree, gamma=2.0)
    y = torch.arange(tree.num_classes)
    # the targets equal the frame's own S, and (exact frame) its Gram matrix
    torch.testing.assert_close(loss_fn.target_cosines(y), frame.similarity.float())
    w = model.head.frame
    torch.testing.assert_close(loss_fn.target_cosines(y), w.t() @ w, atol=1e-5, rtol=0)
    # features on the class vectors: the cosine term vanishes
    h = w[:, y].t()
    assert loss_fn.cosine_loss(h @ w, h, y).item() == pytest.approx(0.0, abs=1e-8)


def test_build_loss_refuses_mismatches(tree):
    other = Hierarchy.from_edges([("root", c) for c in tree.classes])
    hx = get_method("hxe")
    model = hx.create_model("test_resnet", tree)
    with pytest.raises(HafclsError, match="hierarchy"):
        hx.build_loss(model, other)
    with pytest.raises(HafclsError, match="needs the hierarchy"):
        hx.build_loss(model, None)
    with pytest.raises(HafclsError, match="head"):
        get_method("haframe").build_loss(model, tree)


def test_loss_of_a_model_restored_from_its_checkpoint(tree):
    import io

    from hafcls.models import create

    method = get_method("haframe", "fgvc-aircraft")
    model = method.create_model("test_resnet", tree)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    restored = create(**{**model.config, "frame": "state_dict"}, hierarchy=tree)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    y = torch.tensor([0, 3, 4])
    a, b = method.build_loss(model, tree), method.build_loss(restored, tree)
    torch.testing.assert_close(a.target_cosines(y), b.target_cosines(y))
    assert restored.head.frame_meta["gamma"] == 1.0
