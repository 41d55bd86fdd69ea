"""Shared pieces of the datasets: label -> class-index mapping and the file-backed Dataset."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets.utils import download_and_extract_archive

from hafcls.data.images import SafeImageLoader
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

SPLITS = ("train", "val", "test")


def locate_or_download(
    root: str | os.PathLike,
    find: Callable[[Path], Path],
    *,
    name: str,
    layout: str,
    url: str,
    md5: str | None,
    download: bool,
) -> Path:
    """``find(root)``, or, only when ``download`` is set, fetch ``url`` into ``root`` first."""
    root = Path(root)
    try:
        return find(root)
    except HafclsError:
        if not download:
            raise HafclsError(
                f"No {name} data under {root}.",
                f"expected {layout}; pass download=True (--download) to fetch it there.",
            ) from None
    root.mkdir(parents=True, exist_ok=True)
    download_and_extract_archive(url, download_root=str(root), md5=md5)
    return find(root)


def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    if split not in allowed:
        raise HafclsError(
            f"Unknown split {split!r}.", f"use one of {', '.join(map(repr, allowed))}."
        )
    return split


def resolve_hierarchy(hierarchy) -> Hierarchy:
    """A :class:`Hierarchy`, a shipped hierarchy name or a hierarchy file path -> Hierarchy."""
    if isinstance(hierarchy, Hierarchy):
        return hierarchy
    if isinstance(hierarchy, (str, os.PathLike)):
        from hafcls.hierarchy import load

        return load(hierarchy)
    raise HafclsError(
        f"Expected a Hierarchy, a shipped hierarchy name or a file path, got "
        f"{type(hierarchy).__name__}.",
        "pass e.g. hierarchy='imagenet-1k' or hierarchy='my_tree.json'.",
    )


def map_labels(labels: Sequence, hierarchy: Hierarchy, source: str) -> np.ndarray:
    """Class indices (int64) of ``labels`` (class ids) in ``hierarchy``'s class order.

    Works on the distinct labels only, so the cost is one lookup per class, not per sample.
    A label that is not a class of the hierarchy raises :class:`HafclsError` naming it.
    """
    labels = np.asarray([str(x) for x in labels] if not isinstance(labels, np.ndarray)
                        else labels.astype(str))
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(labels, return_inverse=True)
    index = {c: i for i, c in enumerate(hierarchy.classes)}
    missing = [u for u in uniq.tolist() if u not in index]
    if missing:
        shown = ", ".join(map(repr, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise HafclsError(
            f"{len(missing)} label(s) of {source} are not classes of the hierarchy: {shown}.",
            "use the dataset's own hierarchy (leave hierarchy unset), or give a hierarchy whose "
            "classes include every label of the dataset.",
        )
    table = np.array([index[u] for u in uniq.tolist()], dtype=np.int64)
    return table[inverse.reshape(-1)]


def rank_in_class(labels: np.ndarray) -> np.ndarray:
    """Position of every sample among the samples of its class, in order of appearance."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")  # each class's samples in their original order
    counts = np.bincount(labels) if labels.size else np.zeros(0, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    rank = np.empty(labels.size, dtype=np.int64)
    rank[order] = np.arange(labels.size) - starts[labels[order]]
    return rank


def last_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the last ``n`` samples of every class (in order of appearance)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return np.zeros(0, dtype=bool)
    return rank_in_class(labels) >= np.bincount(labels)[labels] - n


class ImageFileDataset(Dataset):
    """A list of image files with class indices; yields ``(transform(image), class_index)``.

    Attributes follow torchvision: ``samples`` (list of ``(path, class_index)``), ``targets``
    (int64 numpy array), ``classes`` (class ids in output order), ``transform``.
    Unreadable images raise :class:`~hafcls.data.images.CorruptImageError`, or with
    ``skip_corrupt=True`` yield :data:`~hafcls.data.images.SKIPPED` and are counted in
    :attr:`num_skipped` (use :func:`~hafcls.data.images.collate_skip_corrupt`).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        targets: np.ndarray,
        hierarchy: Hierarchy,
        transform: Callable | None = None,
        skip_corrupt: bool = False,
        crop: Callable | None = None,
    ):
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.int64)
        if len(self.paths) != len(self.targets):
            raise ValueError("paths and targets differ in length")
        self.hierarchy = hierarchy
        self.transform = transform
        self.loader = SafeImageLoader(skip_corrupt)
        self._crop = crop

    @property
    def classes(self) -> list[str]:
        return self.hierarchy.classes

    @property
    def samples(self) -> list[tuple[str, int]]:
        return list(zip(self.paths, self.targets.tolist()))

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far (over all DataLoader workers)."""
        return self.loader.num_skipped

    def reset_skipped(self) -> None:
        """Set :attr:`num_skipped` back to 0 (e.g. at the start of every epoch)."""
        self.loader.counter.reset()

    @property
    def skip_corrupt(self) -> bool:
        return self.loader.skip_corrupt

    @skip_corrupt.setter
    def skip_corrupt(self, value: bool) -> None:
        self.loader.skip_corrupt = bool(value)

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int):
        """The PIL image of sample ``index`` (before the transform), or ``SKIPPED``."""
        img = self.loader(self.paths[index])
        if img is not None and self._crop is not None:
            img = self._crop(img)
        return img

    def __getitem__(self, index: int):
        img = self.load_image(index)
        if img is None:
            return None
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])

    def subset(self, indices, transform=...) -> ImageFileDataset:
        """A copy holding only ``indices`` (same class, own skip counter); optionally a new
        transform."""
        indices = np.asarray(indices, dtype=np.int64)
        out = copy.copy(self)
        out.paths = [self.paths[i] for i in indices.tolist()]
        out.targets = self.targets[indices]
        out.loader = SafeImageLoader(self.loader.skip_corrupt)
        if transform is not ...:
            out.transform = transform
        return out

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=self.hierarchy.num_classes)

    def __repr__(self) -> str:
        split = getattr(self, "split", None)
        return (f"{type(self).__name__}(split={split!r}, n={len(self)}, "
                f"classes={self.hierarchy.num_classes})")
