"""Walk every registry: each registered entry is exercised, so a new entry is tested by being
registered.

- methods: the model builds on a tiny tree with timm's ``test_resnet``, one SGD step lowers
  nothing to NaN and changes the weights, and a checkpoint round trip gives the same logits;
- heads: each head builds, runs, and round-trips through ``model.config`` + state dict;
- datasets, hierarchy sources, recipes: each entry resolves, and a missing input is a clear
  HafclsError (never another exception);
- the Registry itself: unknown names list the known ones, duplicates are refused.
"""

from __future__ import annotations

import pytest
import torch

import hafcls
from hafcls.engine.builders import model_from_checkpoint
from hafcls.engine.checkpoint import load_checkpoint, save_checkpoint
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.registry import DATASETS, HEADS, HIERARCHY_SOURCES, METHODS, RECIPES, Registry
from hafcls.validation import Option

EDGES = [("root", "A"), ("A", "a1"), ("A", "a2"), ("root", "B"), ("B", "b1"), ("B", "b2"),
         ("B", "b3")]
SIZE = 32  # test_resnet's smallest comfortable input


@pytest.fixture(scope="module")
def tree():
    return Hierarchy.from_edges(EDGES)


def _batch(k: int):
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, SIZE, SIZE, generator=g), torch.arange(6) % k


def _round_trip(model, tree, tmp_path, score_temperature=1.0):
    """Save the model as the engine does and rebuild it from the file alone."""
    meta = {"model_config": model.config, "hierarchy": tree.to_dict(),
            "method": {"score_temperature": score_temperature}}
    path = save_checkpoint(tmp_path / "model.pt", {"model": model.state_dict()}, meta)
    restored, hierarchy, score = model_from_checkpoint(load_checkpoint(path), path=path)
    assert hierarchy == tree
    return restored, score


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_a_step_and_round_trips(tree, name, tmp_path):
    torch.manual_seed(0)
    method = hafcls.get_method(name, "synthetic")
    assert method.name == name and method.head in HEADS
    model = method.create_model("test_resnet", tree)
    loss_fn = method.build_loss(model, tree)
    params = [p for p in (*model.parameters(), *loss_fn.parameters()) if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=0.05)
    x, y = _batch(tree.num_classes)
    model.train()
    logits, features = model(x, return_features=True)
    loss = loss_fn(logits, features, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(a, p) for a, p in zip(before, params))  # the step moved weights

    model.eval()
    with torch.no_grad():
        expected = model(x)
        restored, score = _round_trip(model, tree, tmp_path, method.score_temperature)
        torch.testing.assert_close(restored(x), expected)
        torch.testing.assert_close(score(expected), method.score(expected))
    # the restored model trains on with the same loss
    assert torch.isfinite(method.build_loss(restored, tree)(*restored(x, True), y))


@pytest.mark.parametrize("name", HEADS.names())
def test_every_head_builds_and_round_trips(tree, name, tmp_path):
    torch.manual_seed(0)
    model = hafcls.create_model("test_resnet", tree, head=name)
    assert model.head.kind == name
    assert all(isinstance(o, Option) for o in HEADS.get(name).options)
    x, _ = _batch(tree.num_classes)
    model.eval()
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        assert logits.shape == (6, tree.num_classes) and features.shape[0] == 6
        assert model.class_vectors().shape == (features.shape[1], tree.num_classes)
        restored, _ = _round_trip(model, tree, tmp_path)
        torch.testing.assert_close(restored(x), logits)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_resolves(name, tmp_path):
    from hafcls.data import DataBundle, build_datasets

    spec = DATASETS.get(name)
    assert spec.name == name and callable(spec.build) and spec.image_size > 0
    assert len(spec.mean) == len(spec.std) and 0 <= spec.hflip <= 1
    assert all(isinstance(o, Option) for o in spec.options)
    options = {"per_class": 2} if "per_class" in {o.name for o in spec.options} else {}
    try:  # an empty folder: generated data builds, real data is a clear error
        bundle = build_datasets(name, data_dir=tmp_path, image_size=16, **options)
    except HafclsError as err:
        assert err.fix
        return
    assert isinstance(bundle, DataBundle) and bundle.name == name
    image, label = bundle.train[0]
    assert image.shape[-2:] == (16, 16) and 0 <= label < bundle.num_classes


@pytest.mark.parametrize("name", HIERARCHY_SOURCES.names())
def test_every_hierarchy_source_resolves(name, tmp_path):
    source = HIERARCHY_SOURCES.get(name)
    assert source.name == name and callable(source.build) and source.path_help
    with pytest.raises(HafclsError):
        source(tmp_path / "missing")


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_resolves(name):
    import timm

    from hafcls.engine import TrainConfig

    recipe = RECIPES.get(name)
    assert recipe.name == name and recipe.description and recipe.source
    cfg = TrainConfig.from_dict(recipe.config, source=f"recipe {name}")
    assert cfg.data in DATASETS
    if cfg.method is not None:
        hafcls.get_method(cfg.method, cfg.data)
    if cfg.model is not None:
        assert timm.is_model(cfg.model), cfg.model


def test_list_functions_read_the_registries():
    assert hafcls.list_methods() == METHODS.names()
    assert hafcls.list_heads() == ["ebv", "etf", "haframe", "hug", "linear", "subspace"]
    assert hafcls.list_datasets()[0] == "synthetic"
    assert "wordnet" in hafcls.list_hierarchy_sources()
    assert hafcls.list_recipes() == RECIPES.names()


def test_registry_errors_and_registration():
    reg = Registry("widget")
    reg.add("b", 2, aliases=("bee",))

    @reg.register("a")
    def a():
        return 1

    assert reg.names() == ["a", "b"] and reg.get("bee") == 2 and "bee" in reg
    with pytest.raises(HafclsError, match=r"Unknown widget 'c'.*a, b"):
        reg.get("c")
    with pytest.raises(HafclsError, match="registered twice"):
        reg.add("a", 3)
    reg.remove("b")
    assert "bee" not in reg


def test_unknown_names_raise_instead_of_a_default(tree):
    with pytest.raises(HafclsError, match="Unknown head"):
        hafcls.create_model("test_resnet", tree, head="haframe2")
    with pytest.raises(HafclsError, match="Unknown method"):
        hafcls.get_method("hxe2")
    with pytest.raises(HafclsError, match="Unknown dataset"):
        from hafcls.data import build_datasets

        build_datasets("cifar10")


def test_a_registered_method_is_walked(tree, tmp_path):
    """Registering a method is all it takes for get_method, the CLI choices and this walk."""
    from hafcls.methods import register_method
    from hafcls.methods.ce import ce

    @register_method("ce-smoothed")
    def ce_smoothed(dataset=None):
        return ce(dataset).with_options(label_smoothing=0.1)

    try:
        assert "ce-smoothed" in hafcls.list_methods()
        assert hafcls.get_method("ce-smoothed").loss_kwargs == {"label_smoothing": 0.1}
        test_every_method_trains_a_step_and_round_trips(tree, "ce-smoothed", tmp_path)
    finally:
        METHODS.remove("ce-smoothed")


def test_method_options_are_checked_against_their_declarations():
    with pytest.raises(HafclsError, match=r"'alpha'.*in \[0, 1\]"):
        hafcls.get_method("haframe").with_options(alpha=1.5)
    with pytest.raises(HafclsError, match="'variant'.*mhe, mhs, mgd"):
        hafcls.get_method("hug-mhe").with_options(variant="mmm")
    with pytest.raises(HafclsError, match="'gamma'.*> 0"):
        hafcls.get_method("haframe").with_options(gamma=0)
    assert hafcls.get_method("hxe").with_options(alpha=1).loss_kwargs["alpha"] == 1.0
