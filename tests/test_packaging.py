"""The explicit package list in pyproject.toml names every subpackage, and layers import one way."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# hierarchy -> frames -> models/losses -> engine -> cli; metrics/inference sit on hierarchy only
LAYER = {"errors": 0, "io": 0, "hierarchy": 1, "metrics": 2, "inference": 2, "frames": 2,
         "models": 3, "losses": 3, "data": 3, "engine": 4, "cli": 5}


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
