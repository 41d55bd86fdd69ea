"""The record a hierarchy source registers: how to build a tree from the source's own files."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hafcls.errors import HafclsError
from hafcls.validation import read_user_text


@dataclass(frozen=True)
class HierarchySource:
    """``build(path, **options)`` returns a :class:`~hafcls.hierarchy.Hierarchy`; ``path_help``
    says what PATH is; ``options`` names the ``hafcls hierarchy build`` options it takes."""

    name: str
    build: Callable
    path_help: str
    options: tuple[str, ...] = ()

    def __call__(self, path: str | os.PathLike, **options):
        return self.build(path, **{k: v for k, v in options.items() if k in self.options})


def read_wnid_file(path: str | os.PathLike) -> list[str]:
    """WordNet ids, one per line (the first word of each non-blank line)."""
    path = Path(path)
    ids = [line.split()[0] for line in read_user_text(path).splitlines() if line.strip()]
    if not ids:
        raise HafclsError(f"{path} lists no WordNet ids.", "write one id (n01440764) per line.")
    return ids
