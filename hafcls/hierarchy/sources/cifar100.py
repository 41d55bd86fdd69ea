"""CIFAR-100's label trees from the official files: the papers' 5-level tree or the 2-level one.

``levels=5`` (default) gives the 5-level tree of HAF/HAFrame/Hier-COS (root -> 2 -> 4 -> 8 -> the
20 superclasses -> 100 classes, shipped as ``hafcls.hierarchy.load("cifar100")``), after checking
that every fine label of the files sits under the same superclass there. ``levels=2`` gives the
dataset's own tree (root -> 20 superclasses -> 100 classes, shipped as ``cifar100-coarse``) built
from the files' labels alone.

Read from the official python pickles (``cifar-100-python/{train,test,meta}``) through a restricted
unpickler that accepts only what those files hold (dicts, lists, strings, bytes, ints and numpy
arrays), so a tampered file cannot run code. Classes follow torchvision's fine-label order (the
order of ``fine_label_names`` in ``meta``); class ids are the fine label names, superclass nodes
are ``superclass:<name>``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy
from hafcls.hierarchy.sources.cifar100_tree import (
    SHIPPED,
    _check_levels,
    _readable,
    superclass_node,
)

LAYOUT = (
    "the official CIFAR-100 python version: a folder 'cifar-100-python' holding 'train', 'test' "
    "and 'meta' (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz)"
)
ROOT = "cifar100"

# The only globals the official files reference (numpy arrays inside the dict).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def read_cifar_pickle(path: str | os.PathLike) -> dict:
    """Load one official CIFAR pickle safely; keys are decoded to ``str``, names too."""
    path = Path(path)
    if not path.is_file():
        raise HafclsError(f"Missing CIFAR-100 file {path}.", f"expected {LAYOUT}.")
    try:
        raw = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means a damaged or foreign file
        raise HafclsError(
            f"{path} is not a valid CIFAR-100 pickle ({err}).",
            "re-download and extract the official archive.",
        ) from None
    if not isinstance(raw, dict):
        raise HafclsError(f"{path} does not hold a CIFAR-100 dict.", f"expected {LAYOUT}.")
    out = {}
    for key, value in raw.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("latin1") for v in value]
        out[key] = value
    if "data" in out:
        out["data"] = np.asarray(out["data"], dtype=np.uint8)
    return out


def find_cifar100_dir(root: str | os.PathLike) -> Path:
    """The folder with ``train``/``test``/``meta``: ``root`` or ``root/cifar-100-python``."""
    root = Path(root)
    for cand in (root, root / "cifar-100-python"):
        if (cand / "meta").is_file() and (cand / "train").is_file():
            return cand
    raise HafclsError(f"No CIFAR-100 data under {root}.", f"expected {LAYOUT}.")


def cifar100(root: str | os.PathLike, levels: int = 5) -> Hierarchy:
    """The CIFAR-100 tree of the files under ``root``: 5 levels (the papers') or 2 (superclasses).

    Classes are the files' fine labels in their order. With ``levels=5`` each must be a class of
    the shipped 5-level tree under the same superclass as in the files (the official files give
    exactly ``hafcls.hierarchy.load("cifar100")``).
    """
    levels = _check_levels(levels)
    folder = find_cifar100_dir(root)
    meta = read_cifar_pickle(folder / "meta")
    train = read_cifar_pickle(folder / "train")
    fine_names, coarse_names = meta.get("fine_label_names"), meta.get("coarse_label_names")
    if not fine_names or not coarse_names:
        raise HafclsError(f"{folder / 'meta'} lacks the label names.", f"expected {LAYOUT}.")
    fine = np.asarray(train["fine_labels"], dtype=np.int64)
    coarse = np.asarray(train["coarse_labels"], dtype=np.int64)
    pairs = np.unique(np.stack([fine, coarse], 1), axis=0)
    counts = np.bincount(pairs[:, 0])
    if counts.max() > 1:
        f = int(np.argmax(counts))
        supers = ", ".join(coarse_names[c] for c in pairs[pairs[:, 0] == f, 1])
        raise HafclsError(
            f"Fine class {fine_names[f]!r} appears under several superclasses ({supers}).",
            "the files are damaged; re-download the official archive.",
        )
    parent = dict(pairs.tolist())
    missing = [n for i, n in enumerate(fine_names) if i not in parent]
    if missing:
        raise HafclsError(
            f"{len(missing)} fine class(es) have no training image, e.g. {missing[0]!r}.",
            "the training file is incomplete; re-download the official archive.",
        )
    if levels == 5:
        return _papers_tree(fine_names, [coarse_names[parent[i]] for i in range(len(fine_names))])
    edges = [(ROOT, superclass_node(c)) for c in coarse_names]
    edges += [(superclass_node(coarse_names[parent[i]]), n) for i, n in enumerate(fine_names)]
    names = {superclass_node(c): _readable(c) for c in coarse_names}
    names.update({n: _readable(n) for n in fine_names})
    names[ROOT] = "CIFAR-100"
    return Hierarchy.from_edges(edges, fine_names, names=names,
                                meta={"source": "cifar100", "name": SHIPPED[2], "levels": 2})


def _papers_tree(fine_names: list[str], superclasses: list[str]) -> Hierarchy:
    """The shipped 5-level tree over ``fine_names``, after checking the files' superclasses."""
    from hafcls.hierarchy.shipped import load

    shipped = load(SHIPPED[5])
    known = set(shipped.classes)
    unknown = [n for n in fine_names if n not in known]
    if unknown:
        raise HafclsError(
            f"{len(unknown)} fine label name(s) of the files are not CIFAR-100 classes of the "
            f"5-level tree, e.g. {unknown[0]!r}.",
            "use the official CIFAR-100 files, or levels=2 for the files' own superclass tree.",
        )
    wrong = [(n, s) for n, s in zip(fine_names, superclasses)
             if shipped.parent(n) != superclass_node(s)]
    if wrong:
        n, s = wrong[0]
        raise HafclsError(
            f"The files put {n!r} under superclass {s!r}, the 5-level tree under "
            f"{shipped.name(shipped.parent(n))!r} ({len(wrong)} such class(es)).",
            "use the official CIFAR-100 files, or levels=2 for the files' own superclass tree.",
        )
    if list(fine_names) == shipped.classes:
        return shipped
    return Hierarchy(shipped.graph, fine_names, names=shipped.names, meta=shipped.meta)
