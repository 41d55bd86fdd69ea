"""CIFAR-100 from the official python pickles, with the papers' 45k / 5k / 10k split.

The files are read through :func:`hafcls.hierarchy.sources.cifar100.read_cifar_pickle` (a
restricted unpickler; torchvision's ``CIFAR100`` uses an unrestricted ``pickle.load``). Each row of
``data`` is a 32x32 RGB image stored channel-major (1024 red, 1024 green, 1024 blue values).
Validation is the last ``val_per_class`` (default 50) training images of each class, training the
rest (45,000 / 5,000); test is the official test file (10,000). With ``split_seed`` (the papers'
protocol; the recipes set 0, the same split for every run) the training images are shuffled by
that seed first; by default (None) the last images of each class in file order are held out.

The hierarchy is the papers' 5-level tree (``hafcls.hierarchy.load("cifar100")``); ``levels=2``
(or ``--hierarchy cifar100-coarse``) gives the files' own 2-level superclass tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from hafcls.data.base import (
    check_split,
    last_per_class,
    locate_or_download,
    map_labels,
    resolve_hierarchy,
)
from hafcls.data.registry import DatasetRequest, register_dataset
from hafcls.data.transforms import CIFAR100_MEAN, CIFAR100_STD
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.hierarchy.sources.cifar100 import (
    LAYOUT,
    cifar100,
    find_cifar100_dir,
    read_cifar_pickle,
)
from hafcls.validation import Option

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
VAL_PER_CLASS = 50
SPLIT_SEED = None  # file order; the recipes use 0 (a seeded shuffle)


def held_out(fine: np.ndarray, val_per_class: int, split_seed: int | None) -> np.ndarray:
    """Mask of the validation images: the last ``val_per_class`` of each class after a
    permutation drawn from ``split_seed`` (file order when it is None)."""
    if split_seed is None:
        return last_per_class(fine, val_per_class)
    order = np.random.default_rng(split_seed).permutation(len(fine))
    mask = np.empty(len(fine), dtype=bool)
    mask[order] = last_per_class(fine[order], val_per_class)
    return mask


def locate_cifar100(root: str | os.PathLike, download: bool = False) -> Path:
    """The ``cifar-100-python`` folder under ``root``; fetched first when ``download``."""
    return locate_or_download(root, find_cifar100_dir, name="CIFAR-100", layout=LAYOUT,
                              url=URL, md5=MD5, download=download)


def read_cifar_file(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images N x 32 x 32 x 3 uint8, fine labels int64)`` of the ``train`` or ``test`` file."""
    raw = read_cifar_pickle(folder / name)
    data, fine = raw.get("data"), raw.get("fine_labels")
    if data is None or fine is None:
        raise HafclsError(
            f"{folder / name} lacks 'data' or 'fine_labels'.", f"expected {LAYOUT}."
        )
    data = np.asarray(data, dtype=np.uint8)
    fine = np.asarray(fine, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(fine):
        raise HafclsError(
            f"{folder / name} holds data of shape {data.shape} for {len(fine)} labels; "
            "expected N x 3072.",
            "re-download the official archive.",
        )
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, fine


def fine_label_names(folder: Path) -> list[str]:
    names = read_cifar_pickle(folder / "meta").get("fine_label_names")
    if not names:
        raise HafclsError(f"{folder / 'meta'} lacks 'fine_label_names'.", f"expected {LAYOUT}.")
    return list(names)


class CIFAR100(Dataset):
    """CIFAR-100 split ``"train"`` (45k), ``"val"`` (5k), ``"test"`` (10k) or ``"trainval"``.

    Yields ``(transform(PIL image), class index)`` with class indices in ``hierarchy``'s order
    (default: the dataset's own two-level tree, classes in fine-label order).

    Parameters
    ----------
    root:
        Folder holding ``cifar-100-python/`` (or that folder itself).
    hierarchy:
        A user tree whose classes include every fine label name; default
        :func:`hafcls.hierarchy.sources.cifar100.cifar100`.
    val_per_class:
        Training images per class held out for validation.
    split_seed:
        Seed of the shuffle before the last ``val_per_class`` images of each class are held out
        (``None``: file order).
    download:
        Fetch and extract the official archive into ``root`` when it is missing.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        hierarchy: Hierarchy | None = None,
        transform: Callable | None = None,
        val_per_class: int = VAL_PER_CLASS,
        download: bool = False,
        _source: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
        split_seed: int | None = SPLIT_SEED,
    ):
        check_split(split, ("train", "val", "test", "trainval"))
        if isinstance(val_per_class, bool) or not isinstance(val_per_class, (int, np.integer)) \
                or val_per_class < 0:
            raise HafclsError(f"val_per_class must be an int >= 0, got {val_per_class!r}.",
                              "pass e.g. val_per_class=50.")
        self.folder = locate_cifar100(root, download)
        self.hierarchy = cifar100(self.folder) if hierarchy is None else hierarchy
        self.split = split
        self.transform = transform
        if _source is None:
            images, fine = read_cifar_file(self.folder, "test" if split == "test" else "train")
            names = fine_label_names(self.folder)
        else:
            images, fine, names = _source
        if fine.size and (fine.min() < 0 or fine.max() >= len(names)):
            raise HafclsError(
                f"CIFAR-100 fine label {int(fine.max())} has no name in meta.",
                "re-download the official archive.",
            )
        if split in ("train", "val"):
            held = held_out(fine, val_per_class, split_seed)
            counts = np.bincount(fine, minlength=len(names))
            short = np.flatnonzero((counts > 0) & (counts <= val_per_class))
            if short.size:
                raise HafclsError(
                    f"Class {names[short[0]]!r} has {counts[short[0]]} training images, not more "
                    f"than the {val_per_class} held out for validation.",
                    "lower val_per_class.",
                )
            keep = held if split == "val" else ~held
            images, fine = images[keep], fine[keep]
        # map the distinct fine labels once, then index per sample
        present = np.unique(fine)
        table = np.full(len(names), -1, dtype=np.int64)
        table[present] = map_labels([names[i] for i in present], self.hierarchy,
                                    f"CIFAR-100 ({self.folder})")
        self.images = images
        self.targets = table[fine]

    @property
    def classes(self) -> list[str]:
        return self.hierarchy.classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        img = Image.fromarray(self.images[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])

    def __repr__(self) -> str:
        return f"CIFAR100(split={self.split!r}, n={len(self)}, folder={str(self.folder)!r})"


def cifar100_splits(
    root: str | os.PathLike,
    hierarchy: Hierarchy | None = None,
    val_per_class: int = VAL_PER_CLASS,
    download: bool = False,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    split_seed: int | None = SPLIT_SEED,
    levels: int = 5,
) -> tuple[Hierarchy, CIFAR100, CIFAR100, CIFAR100]:
    """``(hierarchy, train, val, test)`` reading each official file once; the hierarchy is the
    ``levels``-level tree of the files unless one is given."""
    folder = locate_cifar100(root, download)
    h = cifar100(folder, levels=levels) if hierarchy is None else hierarchy
    names = fine_label_names(folder)
    train_src = (*read_cifar_file(folder, "train"), names)
    test_src = (*read_cifar_file(folder, "test"), names)
    common = dict(hierarchy=h, val_per_class=val_per_class, split_seed=split_seed)
    train = CIFAR100(folder, "train", transform=train_transform, _source=train_src, **common)
    val = CIFAR100(folder, "val", transform=eval_transform, _source=train_src, **common)
    test = CIFAR100(folder, "test", transform=eval_transform, _source=test_src, **common)
    return h, train, val, test


@register_dataset("cifar100", image_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD,
                  aliases=("cifar-100",), skip_corrupt=False,
                  options=(Option("val_per_class", int, 0, 499),
                           Option("split_seed", int, 0, None, nullable=True,
                                  help="Shuffle before holding out validation (None: file "
                                       "order)."),
                           Option("levels", int, 2, 5,
                                  help="5: the papers' tree (default); 2: the superclasses.")),
                  help="CIFAR-100 (python pickles), 45k/5k/10k split, the papers' 5-level tree "
                       "(levels=2 or --hierarchy cifar100-coarse: the 2-level superclasses).")
def build_cifar100(req: DatasetRequest):
    from hafcls.hierarchy.sources.cifar100 import LAYOUT

    root = req.need_dir("cifar100", LAYOUT)
    val_per_class = req.options.get("val_per_class", VAL_PER_CLASS)
    split_seed = req.options.get("split_seed", SPLIT_SEED)
    levels = req.options.get("levels", 5)
    hierarchy = None if req.hierarchy is None else resolve_hierarchy(req.hierarchy)
    h, train, val, test = cifar100_splits(root, hierarchy, val_per_class, req.download,
                                          req.train_transform, req.eval_transform, split_seed,
                                          levels)
    return h, train, val, test, {"val_per_class": val_per_class, "split_seed": split_seed,
                                 "hierarchy": h.meta.get("name")}
