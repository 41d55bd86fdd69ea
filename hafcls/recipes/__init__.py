"""Published training recipes as data: one YAML file per recipe, registered by its file name.

A recipe file holds ``description`` (one line), ``source`` (where the numbers come from) and
``config``: :class:`~hafcls.engine.TrainConfig` keys. ``hafcls train --recipe NAME`` starts from
it (a config file and flags override it). Adding a recipe is one new ``<name>.yaml`` here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

from hafcls.errors import HafclsError
from hafcls.registry import RECIPES
from hafcls.validation import read_user_file


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    source: str
    config: dict = field(default_factory=dict)


def read_recipe(path, name: str | None = None) -> Recipe:
    """A :class:`Recipe` from a YAML file (checked for its three keys)."""
    data = read_user_file(path, "recipe file")
    unknown = sorted(set(data) - {"description", "source", "config"})
    if unknown or not isinstance(data.get("config"), dict):
        raise HafclsError(f"The recipe {path} must hold description, source and a config "
                          f"mapping{'; unknown ' + ', '.join(unknown) if unknown else ''}.",
                          "write the training options under 'config:'.")
    return Recipe(name or path.stem, str(data.get("description", "")),
                  str(data.get("source", "")), dict(data["config"]))


def get_recipe(name: str) -> Recipe:
    """The registered recipe ``name`` (see :func:`hafcls.list_recipes`)."""
    return RECIPES.get(name)


def _register_shipped() -> None:
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            with resources.as_file(entry) as path:
                RECIPES.add(path.stem, read_recipe(path))


_register_shipped()
