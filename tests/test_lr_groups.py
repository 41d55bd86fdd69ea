"""Learning-rate groups as a model rule: which parameter gets which peak LR, per recipe.

The expected tables are written out by hand from docs/fidelity.md (the authors' code): the
type-II head's 1x1 conv trains with the backbone; FGVC: backbone + conv 0.01, BN +
transformation 0.1; iNat / tiered: everything 0.01; CIFAR-100: the whole network 0.01 and only a
learnable classifier (the CE baseline's) 0.1. Fixed frames are buffers: in no group at all.
"""

import pytest
import torch

from hafcls.data import synthetic_hierarchy
from hafcls.engine import TrainConfig
from hafcls.engine.builders import build_method_and_model
from hafcls.engine.optimization import build_optimizer, parameter_roles
from hafcls.models import create
from hafcls.recipes import get_recipe

# stand-ins small enough for a test, with the same head; the real backbones are checked in
# test_recipes.py (WRN-28-8 built for real, resnet50 by name)
STAND_IN = {"wide_resnet28_8": "test_resnet", "resnet50.tv_in1k": "test_resnet",
            "resnet50": "test_resnet"}

# recipe -> {role: (peak LR, head parameter names in that role)}; "*" = every backbone parameter
HAFRAME_HEAD = {"projection": ["head.projection.conv.weight"],
                "neck": ["head.bn.weight", "head.bn.bias"]}  # + the transformation module
TYPE1 = {"neck": ["head.neck.0.weight", "head.neck.0.bias", "head.neck.1.weight",
                  "head.neck.1.bias", "head.neck.2.weight", "head.neck.2.bias"],
         "classifier": ["head.classifier.weight", "head.classifier.bias"]}
EXPECTED = {
    "haframe-cifar100": ({"backbone": 0.01, "projection": 0.01, "neck": 0.01}, HAFRAME_HEAD),
    "ce-cifar100": ({"backbone": 0.01, "classifier": 0.1},
                    {"classifier": ["head.classifier.weight", "head.classifier.bias"]}),
    "haframe-fgvc-aircraft": ({"backbone": 0.01, "projection": 0.01, "neck": 0.1},
                              HAFRAME_HEAD),
    "ce-fgvc-aircraft": ({"backbone": 0.01, "neck": 0.1, "classifier": 0.1}, TYPE1),
    "haframe-inat2019": ({"backbone": 0.01, "projection": 0.01, "neck": 0.01}, HAFRAME_HEAD),
    "ce-inat2019": ({"backbone": 0.01, "neck": 0.01, "classifier": 0.01}, TYPE1),
    "haframe-tiered-imagenet": ({"backbone": 0.01, "projection": 0.01, "neck": 0.01},
                                HAFRAME_HEAD),
    "ce-tiered-imagenet": ({"backbone": 0.01, "neck": 0.01, "classifier": 0.01}, TYPE1),
}


@pytest.fixture(scope="module")
def tree():
    return synthetic_hierarchy((3, 4))


def recipe_model(name, tree):
    cfg = TrainConfig.from_dict(get_recipe(name).config)
    cfg.update({"model": STAND_IN[cfg.model], "pretrained": False})
    method, model = build_method_and_model(cfg, tree)
    return cfg, method, model


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_recipe_gives_each_parameter_the_papers_rate(name, tree):
    lrs, head_names = EXPECTED[name]
    cfg, method, model = recipe_model(name, tree)
    opt = build_optimizer(model, method.build_loss(model, tree), cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert {k: g["lr"] for k, g in groups.items()} == lrs
    assert all(g["weight_decay"] == 5e-4 and g["momentum"] == 0.9 for g in groups.values())
    names = {id(p): n for n, p in model.named_parameters()}
    got = {k: {names[id(p)] for p in g["params"]} for k, g in groups.items()}
    assert got["backbone"] == {n for n in names.values() if n.startswith("backbone.")}
    for role, expected in head_names.items():
        assert set(expected) <= got[role], role
    if method.head == "haframe":  # the transformation module trains with the BN
        assert any(n.startswith("head.transform.") for n in got["neck"])
        assert "frame" in dict(model.head.named_buffers())  # fixed: a buffer, no group
    # every trainable parameter in exactly one group
    every = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_the_cifar_ce_head_is_a_plain_linear_and_haframe_cifar_has_no_head_above_001(tree):
    _, _, ce = recipe_model("ce-cifar100", tree)
    assert isinstance(ce.head.neck, torch.nn.Identity)
    assert isinstance(ce.head.classifier, torch.nn.Linear)
    _, method, hf = recipe_model("haframe-cifar100", tree)
    opt = build_optimizer(hf, method.build_loss(hf, tree),
                          TrainConfig.from_dict(get_recipe("haframe-cifar100").config))
    assert max(g["lr"] for g in opt.param_groups) == 0.01


def test_default_rule_keeps_two_groups_and_roles_by_head(tree):
    cfg = TrainConfig(method="haframe", model="test_resnet", lr=0.1, lr_backbone=0.01)
    method, model = build_method_and_model(cfg, tree)
    opt = build_optimizer(model, method.build_loss(model, tree), cfg)
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [("backbone", 0.01),
                                                                ("head", 0.1)]
    # with lr_groups, a role left out takes backbone_lr (backbone, projection) or lr (rest)
    cfg.update({"lr_groups": {"neck": 0.05}})
    opt = build_optimizer(model, method.build_loss(model, tree), cfg)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {
        "backbone": 0.01, "projection": 0.01, "neck": 0.05}
    # the type-II linear head's first trunk layer is its projection (the 1x1 conv)
    type2 = create("test_resnet", tree, head="linear", shape="type2")
    roles = {r: [n for n, _ in ps] for r, ps in parameter_roles(type2).items()}
    assert roles["projection"] == ["head.neck.0.conv.weight"]
    assert roles["classifier"] == ["head.classifier.weight", "head.classifier.bias"]
    hug = create("test_resnet", tree, head="hug")
    assert [n for n, _ in parameter_roles(hug)["classifier"]] == ["head.proxies"]


def test_bad_lr_groups_are_refused():
    from hafcls.errors import HafclsError

    with pytest.raises(HafclsError, match="Unknown parameter role.*backbone, projection"):
        TrainConfig.from_dict({"lr_groups": {"head": 0.1}})
    with pytest.raises(HafclsError, match="lr_groups.neck"):
        TrainConfig.from_dict({"lr_groups": {"neck": 0}})
