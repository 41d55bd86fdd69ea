"""The explicit package list in pyproject.toml names every subpackage, and layers import one way."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# hierarchy -> frames -> models/losses -> methods -> engine -> cli; metrics/inference sit on
# hierarchy only; errors, io, registry and validation are the ground floor every layer may use
LAYER = {"errors": 0, "io": 0, "registry": 0, "validation": 0, "hierarchy": 1, "metrics": 2,
         "inference": 2, "frames": 2, "models": 3, "losses": 3, "data": 3, "methods": 4,
         "recipes": 4, "plots": 2, "engine": 5, "cli": 6}


def test_every_subpackage_is_listed():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hafcls").rglob(
        "__init__.py")}
    assert found <= listed, f"add to pyproject.toml: {sorted(found - listed)}"


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "hafcls" or len(parts) < 2:
        return None
    return LAYER.get(parts[1].removesuffix(".py"))


def test_lower_layers_never_import_higher_ones():
    bad = []
    for path in (ROOT / "hafcls").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        own = _layer(".".join(rel.parts))
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                other = _layer(name)
                if other is not None and other > own:
                    bad.append(f"{rel} imports {name}")
    assert not bad, bad


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_methods_sit_between_models_losses_and_engine():
    assert LAYER["models"] == LAYER["losses"] < LAYER["methods"] < LAYER["engine"] < LAYER["cli"]
    # the engine reaches losses only through the methods layer
    engine = [n for p in (ROOT / "hafcls" / "engine").rglob("*.py") for n in _imports(p)]
    assert any(n.startswith("hafcls.methods") for n in engine)
    assert not [n for n in engine if n.startswith("hafcls.losses")]


def test_metrics_and_inference_depend_on_hierarchy_only():
    allowed = ("hafcls.errors", "hafcls.io", "hafcls.registry", "hafcls.validation",
               "hafcls.hierarchy", "hafcls.metrics", "hafcls.inference")
    paths = [*(ROOT / "hafcls" / "metrics").rglob("*.py"),
             *(ROOT / "hafcls" / "inference").rglob("*.py")]
    bad = [f"{p.relative_to(ROOT)} imports {n}" for p in paths for n in _imports(p)
           if n.startswith("hafcls.") and not n.startswith(allowed)]
    assert not bad, bad


def test_models_and_losses_name_no_method():
    """Method names (and their presets) live in hafcls/methods only."""
    import hafcls

    heads = set(hafcls.list_heads())
    methods = set(hafcls.list_methods()) - heads  # "haframe" is also a head's name
    found = []
    for folder in ("models", "losses"):
        for path in (ROOT / "hafcls" / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in methods:
                    found.append(f"{path.relative_to(ROOT)}: {node.value!r}")
    assert not found, found
