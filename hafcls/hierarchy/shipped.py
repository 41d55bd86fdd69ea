"""Hierarchies shipped with the package (``hierarchies/*.json``), loadable by name."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy


def _shipped_dir():
    return resources.files("hafcls._hierarchies")


def available() -> list[str]:
    """Names of the shipped hierarchies."""
    return sorted(p.name[: -len(".json")] for p in _shipped_dir().iterdir()
                  if p.name.endswith(".json"))


def load(name_or_path: str | os.PathLike) -> Hierarchy:
    """A shipped hierarchy by name (``"imagenet-1k"``), or a hierarchy file by path.

    A path may be our JSON format (``.json``) or an is-a edge list (anything else).
    """
    text = str(name_or_path)
    if text in available():
        with resources.as_file(_shipped_dir() / f"{text}.json") as path:
            return Hierarchy.from_json(path)
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return Hierarchy.from_json(path)
        return Hierarchy.from_isa_file(path)
    raise HafclsError(
        f"{text!r} is neither a shipped hierarchy nor an existing file.",
        f"use one of {', '.join(available())}, or the path of a hierarchy JSON or is-a file.",
    )
