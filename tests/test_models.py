"""Models: every head on three timm families, fixed frames, state round trips, options."""

import io
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.models import (
    EBVHead,
    HAFrameHead,
    MapProjection,
    PReLUTransform,
    build_transform,
    create,
)

EDGES = [("root", "A"), ("A", "a1"), ("A", "a2"), ("A", "a3"), ("root", "B"), ("B", "b1"),
         ("B", "b2"), ("root", "C"), ("C", "c1")]
OTHER = [("root", "A"), ("A", "a1"), ("A", "a2"), ("root", "B"), ("B", "a3"), ("B", "b1"),
         ("B", "b2"), ("B", "c1")]  # the same six classes, grouped differently
BACKBONES = ["test_resnet", "test_convnext", "test_vit"]
HEADS = [
    ("haframe", {}),
    ("linear", {"shape": "plain"}),
    ("linear", {"shape": "type1"}),
    ("linear", {"shape": "type2"}),
    ("etf", {}),
    ("hug", {}),
    ("ebv", {"dim": 8}),
]


@pytest.fixture(scope="module")
def tree():
    return Hierarchy.from_edges(EDGES)


def images(n=4, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def expected_logits(model, features):
    """Each head's logits from its features and class vectors, written out."""
    head = model.head
    w = head.class_vectors()
    if head.kind == "linear":
        return features @ w + head.classifier.bias
    if head.kind == "ebv":
        return features @ w / head.temperature
    return features @ w


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head,options", HEADS, ids=[f"{h}-{o}" for h, o in HEADS])
def test_head_forward_backward_and_fixed_frame(tree, backbone, head, options):
    torch.manual_seed(0)
    model = create(backbone, tree, head=head, **options)
    x, y = images(), torch.tensor([0, 1, 2, 5])
    logits, features = model(x, return_features=True)
    assert logits.shape == (4, tree.num_classes)
    assert features.shape == (4, model.head.feature_dim)
    torch.testing.assert_close(logits, expected_logits(model, features), rtol=1e-5, atol=1e-5)
    if head in ("etf", "hug", "ebv"):  # cosine heads: unit features
        torch.testing.assert_close(features.norm(dim=1), torch.ones(4), rtol=1e-5, atol=1e-5)

    frame = getattr(model.head, "frame", None)
    before = frame.clone() if frame is not None else None
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    F.cross_entropy(logits, y).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(torch.count_nonzero(g) for g in grads)
    opt.step()
    if frame is not None:
        assert not frame.requires_grad and frame.grad is None
        assert all(p is not frame for p in model.parameters())
        assert torch.equal(model.head.frame, before)
        # class vectors of fixed frames are unit length
        torch.testing.assert_close(frame.norm(dim=0), torch.ones(tree.num_classes))


def test_haframe_head_on_cnn_uses_1x1_conv_and_on_vit_a_linear_map(tree):
    cnn = create("test_resnet", tree)
    vit = create("test_vit", tree)
    k = tree.num_classes
    assert cnn.head.input_kind == "map" and isinstance(cnn.head.projection, MapProjection)
    assert cnn.head.projection.conv.weight.shape == (k, cnn.backbone.num_features, 1, 1)
    assert cnn.head.projection.conv.bias is None
    assert vit.head.input_kind == "pooled" and isinstance(vit.head.projection, nn.Linear)
    assert vit.head.projection.bias is None
    assert cnn.config["head_kwargs"]["feature_input"] == "map"
    # the frame's logits carry no bias: zero features give zero logits
    head = cnn.head.eval()
    assert torch.count_nonzero(torch.zeros(2, k) @ head.frame) == 0
    # forcing the pooled path on a CNN is allowed
    pooled = create("test_resnet", tree, feature_input="pooled")
    assert isinstance(pooled.head.projection, nn.Linear)


def test_map_projection_equals_conv_then_average_pool():
    proj = MapProjection(5, 3)
    x = torch.randn(2, 5, 4, 6)
    expected = F.conv2d(x, proj.conv.weight).mean(dim=(2, 3))
    torch.testing.assert_close(proj(x), expected)
    with pytest.raises(HafclsError):
        proj(torch.randn(2, 5))


def test_prelu_transform_structure_and_residual_identity():
    t = PReLUTransform(4)
    assert len(t) == 2
    kinds = [type(m) for m in t[0].children()]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.PReLU] * 2
    assert all(m.bias is None for m in t.modules() if isinstance(m, nn.Linear))
    assert t[0].act1.weight.shape == (4,)  # one slope per channel
    # with zero linear weights each block adds PReLU(BN(0)) = 0: the module is the identity
    for m in t.modules():
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
    x = torch.randn(3, 4)
    torch.testing.assert_close(t.eval()(x), x)
    assert isinstance(build_transform("none", 4), nn.Identity)
    with pytest.raises(HafclsError):
        build_transform("gelu", 4)


def test_transform_none_ablation(tree):
    model = create("test_resnet", tree, transform="none")
    assert isinstance(model.head.transform, nn.Identity)
    assert model.config["transform"] == "none"


def save_and_load(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("head", ["haframe", "etf", "linear"])
def test_state_dict_round_trip_through_config(tree, head):
    torch.manual_seed(0)
    model = create("test_resnet", tree, head=head, gamma=2.0) if head == "haframe" else \
        create("test_resnet", tree, head=head)
    model(images(8))  # move the BN statistics away from their initial values
    config = json.loads(json.dumps(model.config))
    state = save_and_load(model.state_dict())
    torch.manual_seed(123)  # a different initialisation, overwritten by the state dict
    again = create(**config, hierarchy=tree)
    again.load_state_dict(state)
    model.eval(), again.eval()
    torch.testing.assert_close(again(images()), model(images()))
    if head == "haframe":
        assert again.head.frame_meta["gamma"] == 2.0
        assert again.head.frame_meta["fingerprint"] == tree.fingerprint()
    # the placeholder frame skips the build and is filled by the state dict
    if head != "linear":
        empty = create(**{**config, "frame": "state_dict"}, hierarchy=tree)
        with pytest.raises(HafclsError, match="state dict"):
            empty(images())
        empty.load_state_dict(state)
        torch.testing.assert_close(empty.eval()(images()), model(images()))


def test_state_dict_from_another_hierarchy_is_refused(tree):
    other = Hierarchy.from_edges(OTHER, classes=tree.classes)
    assert other.num_classes == tree.num_classes and other.fingerprint() != tree.fingerprint()
    for head in ("haframe", "linear"):
        a = create("test_resnet", tree, head=head)
        b = create("test_resnet", other, head=head)
        with pytest.raises(HafclsError, match="hierarchy"):
            b.load_state_dict(a.state_dict())
    with pytest.raises(HafclsError, match="hierarchy"):
        create(**a.config, hierarchy=other)
    # a different head is refused too, before any shape error
    c = create("test_resnet", tree, head="etf")
    with pytest.raises(HafclsError, match="head"):
        c.load_state_dict(a.state_dict())


def test_frame_head_refuses_frame_meta_of_another_hierarchy():
    head = HAFrameHead(4, torch.eye(3), {"kind": "haframe", "fingerprint": "aaaa"})
    state = head.state_dict()
    state["_extra_state"] = {"frame": {"kind": "haframe", "fingerprint": "bbbb"}}
    with pytest.raises(HafclsError):
        head.load_state_dict(state)


def test_raw_tensor_frame_and_frame_object(tree):
    from hafcls.frames import haframe

    frame = haframe(tree, gamma=1.0)
    model = create("test_vit", tree, frame=frame)
    assert torch.equal(model.head.frame, frame.weight.float())
    raw = create("test_vit", frame=frame.weight)  # no hierarchy: K from the frame
    assert raw.num_classes == tree.num_classes and raw.config["frame"] == "state_dict"
    other = Hierarchy.from_edges(OTHER, classes=tree.classes)
    with pytest.raises(HafclsError, match="hierarchy"):
        create("test_vit", other, frame=frame)
    with pytest.raises(HafclsError, match="disagree"):
        create("test_vit", tree, frame=torch.eye(4))


def test_ebv_head_dimension_below_class_count(tree):
    model = create("test_vit", tree, head="ebv", dim=4, temperature=0.1)
    assert isinstance(model.head, EBVHead)
    assert model.head.frame.shape == (4, tree.num_classes) and model.head.temperature == 0.1


def test_pretrained_weights_from_local_file_only(tree, tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", num_classes=0)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create("test_resnet", tree, head="linear", pretrained_file=path)
    for name, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], value), name
    assert "pretrained" not in model.config  # the weights travel in the state dict
    with pytest.raises(HafclsError, match="does not exist"):
        create("test_resnet", tree, pretrained_file=tmp_path / "missing.pth")


def test_param_groups_split_backbone_and_head(tree):
    model = create("test_resnet", tree)
    groups = model.param_groups(lr_backbone=0.01, lr_head=0.1, weight_decay=5e-4)
    assert [g["name"] for g in groups] == ["backbone", "head"]
    assert [g["lr"] for g in groups] == [0.01, 0.1]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.backbone.parameters()}
    split = model.param_groups(0.01, 0.1, 5e-4, no_decay_norm_bias=True)
    by_name = {g["name"]: g for g in split}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert by_name["head_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in by_name["head_no_decay"]["params"])
    prelu = model.head.transform[0].act1.weight
    assert any(p is prelu for p in by_name["head_no_decay"]["params"])
    torch.optim.SGD(split, lr=0.1)  # accepted as optimizer groups


def test_create_rejects_bad_arguments(tree):
    with pytest.raises(HafclsError, match="head"):
        create("test_resnet", tree, head="softmax")
    with pytest.raises(HafclsError, match="timm model"):
        create("resnet_does_not_exist", tree)
    with pytest.raises(HafclsError, match="do not apply"):
        create("test_resnet", tree, head="linear", gamma=2.0)
    with pytest.raises(HafclsError, match="takes no frame"):
        create("test_resnet", tree, head="linear", frame=torch.eye(6))
    with pytest.raises(HafclsError, match="needs a hierarchy"):
        create("test_resnet", num_classes=6)
    with pytest.raises(HafclsError, match="disagree"):
        create("test_resnet", tree, head="linear", num_classes=5)
    with pytest.raises(HafclsError, match="unknown"):
        create("test_resnet", head="linear")
    with pytest.raises(HafclsError, match="JSON"):
        create("test_resnet", tree, head="linear", act_layer=nn.ReLU)
    with pytest.raises(HafclsError, match="do not apply"):
        create("test_resnet", tree, head="etf", feature_input="map")
    with pytest.raises(HafclsError, match="pooled"):
        create("test_resnet", tree, head="linear", shape="type1", feature_input="map")


def test_timm_kwargs_pass_through_and_into_config(tree):
    model = create("test_resnet", tree, head="linear", drop_rate=0.25)
    assert model.config["timm_kwargs"] == {"drop_rate": 0.25}
    assert model.backbone.drop_rate == 0.25


def test_frame_metadata_is_plain_json():
    import numpy as np

    head = HAFrameHead(4, torch.eye(3), {"kind": "haframe", "gamma": np.float64(2.0),
                                         "info": {"n": np.int64(3)}})
    assert head.frame_meta == {"kind": "haframe", "gamma": 2.0, "info": {"n": 3}}
    assert type(head.frame_meta["gamma"]) is float
    json.dumps(head.get_extra_state())
