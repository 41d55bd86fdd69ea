"""Registries: one place that knows every method, head, dataset, hierarchy source and recipe.

Each entry registers itself where it is defined, in timm's style::

    from hafcls.registry import METHODS

    @METHODS.register("my-method")
    def my_method(dataset=None):
        ...

or, for a table of entries, ``REGISTRY.add(name, obj)``. A registry knows the package whose
import registers its entries (``populate``), so ``names()`` and ``get()`` work without the caller
importing anything first. An unknown name raises one :class:`~hafcls.errors.HafclsError`
listing the known names. The ``list_*`` functions are re-exported as ``hafcls.list_methods()``
and so on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from hafcls.errors import HafclsError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects, with aliases; unknown names raise listing the known ones.

    Parameters
    ----------
    kind:
        What an entry is, for messages (``"method"``, ``"dataset"``, ...).
    populate:
        The module whose import registers every built-in entry (imported on first lookup).
    normalise:
        Maps a user's spelling to the key form (e.g. lower case, ``_`` -> ``-``).
    ordered:
        List names in registration order instead of sorted.
    """

    def __init__(self, kind: str, populate: str | None = None,
                 normalise: Callable[[str], str] | None = None, ordered: bool = False):
        self.kind = kind
        self.ordered = ordered
        self.populate = populate
        self._normalise = normalise or (lambda name: name)
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = populate is None

    # ------------------------------------------------------------------ registering
    def register(self, name: str | None = None, *, aliases: Iterable[str] = (),
                 replace: bool = False) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", aliases=("other",))`` on a function or class.

        Without ``name`` the object's ``name`` attribute or ``__name__`` is used.
        """

        def decorate(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__
            self.add(key, obj, aliases=aliases, replace=replace)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, aliases: Iterable[str] = (),
            replace: bool = False) -> T:
        """Register ``obj`` under ``name`` (and ``aliases``); a second entry of a name raises
        unless ``replace=True`` (so two modules cannot silently claim one name)."""
        key = self._normalise(str(name))
        if not key:
            raise HafclsError(f"A {self.kind} needs a non-empty name.", "pass a name.")
        if key in self._entries and not replace and self._entries[key] is not obj:
            raise HafclsError(f"The {self.kind} {key!r} is registered twice.",
                              "give the new entry another name, or pass replace=True.")
        self._entries[key] = obj
        for alias in aliases:
            self._aliases[self._normalise(str(alias))] = key
        return obj

    def remove(self, name: str) -> T:
        """Drop an entry (and its aliases); used by tests that register a throw-away entry."""
        key = self._normalise(str(name))
        self._aliases = {a: k for a, k in self._aliases.items() if k != key}
        return self._entries.pop(key)

    # ------------------------------------------------------------------ lookup
    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.populate)

    def canonical(self, name: Any) -> str:
        """The registered key of ``name`` (aliases and spelling resolved), or raise."""
        self._load()
        key = self._normalise(str(name))
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise HafclsError(f"Unknown {self.kind} {name!r}.",
                              f"use one of {', '.join(self.names())}.")
        return key

    def get(self, name: Any) -> T:
        """The entry registered as ``name`` (or one of its aliases)."""
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        """Registered names, sorted (in registration order for an ``ordered`` registry)."""
        self._load()
        return list(self._entries) if self.ordered else sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return [(name, self._entries[name]) for name in self.names()]

    def aliases(self) -> dict[str, str]:
        self._load()
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        self._load()
        key = self._normalise(str(name))
        return self._aliases.get(key, key) in self._entries

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def dataset_key(name: str) -> str:
    """Dataset names compare in lower case with ``-`` for ``_`` (``FGVC_Aircraft`` ->
    ``fgvc-aircraft``)."""
    return name.strip().lower().replace("_", "-")


METHODS: Registry = Registry("method", populate="hafcls.methods")
HEADS: Registry = Registry("head", populate="hafcls.models")
# datasets list in the order their modules are imported (hafcls/data/__init__.py), default first
DATASETS: Registry = Registry("dataset", populate="hafcls.data", normalise=dataset_key,
                              ordered=True)
HIERARCHY_SOURCES: Registry = Registry("hierarchy source", populate="hafcls.hierarchy")
RECIPES: Registry = Registry("recipe", populate="hafcls.recipes")


def list_methods() -> list[str]:
    """Names accepted by ``hafcls.get_method`` and ``--method``."""
    return METHODS.names()


def list_heads() -> list[str]:
    """Names accepted by ``hafcls.create_model(head=...)``."""
    return HEADS.names()


def list_datasets() -> list[str]:
    """Names accepted by ``hafcls.data.build_datasets`` and ``--data``."""
    return DATASETS.names()


def list_hierarchy_sources() -> list[str]:
    """Sources accepted by ``hafcls hierarchy build``."""
    return HIERARCHY_SOURCES.names()


def list_recipes() -> list[str]:
    """Published training recipes, usable as ``hafcls train --recipe NAME``."""
    return RECIPES.names()
