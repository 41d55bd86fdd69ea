"""Convert a pickled ``nltk.Tree`` (how earlier papers ship tieredImageNet-H and iNat-2019 trees).

Unpickling runs whatever code the file names, so it happens only when the caller states that the
file is trusted (``trust=True``); the result should be saved once as hafcls JSON and used from then
on. Internal nodes are the tree labels, leaves the leaf strings; classes are the leaves in tree
order unless given.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy


def from_nltk_tree(tree, classes: Sequence[str] | None = None, meta: dict | None = None
                   ) -> Hierarchy:
    """A Hierarchy from an in-memory ``nltk.Tree`` (labels must be unique node ids)."""
    from nltk import Tree

    if not isinstance(tree, Tree):
        raise HafclsError(
            f"Expected an nltk.Tree, got {type(tree).__name__}.",
            "pass the tree object (or a pickle of one) that the dataset ships.",
        )
    edges = [
        (str(sub.label()), str(child.label() if isinstance(child, Tree) else child))
        for sub in tree.subtrees()
        for child in sub
    ]
    leaves = [str(leaf) for leaf in tree.leaves()]  # left to right
    return Hierarchy.from_edges(edges, classes or leaves, meta=meta or {})


def from_nltk_tree_pickle(path: str | os.PathLike, trust: bool = False,
                          classes: Sequence[str] | None = None) -> Hierarchy:
    """Load a pickled ``nltk.Tree`` — only with ``trust=True`` (pickles can run code)."""
    path = Path(path)
    if not trust:
        raise HafclsError(
            f"Refusing to unpickle {path}: loading a pickle can run arbitrary code.",
            "if you trust where the file came from, pass trust=True (CLI: --trust) once and "
            "save the result as hafcls JSON (-o tree.json), then use the JSON.",
        )
    if not path.is_file():
        raise HafclsError(f"No such file: {path}.", "check the path.")
    try:
        with open(path, "rb") as f:
            tree = pickle.load(f)  # noqa: S301 -- the caller declared the file trusted
    except Exception as err:
        raise HafclsError(f"{path} could not be unpickled ({err}).", "check the file.") from None
    return from_nltk_tree(tree, classes, meta={"source": "nltk-pickle", "file": path.name})
