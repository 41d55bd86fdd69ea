"""Class-folder datasets with any hierarchy: ``root/<split>/<class id>/*.jpg|png|...``.

The layout of tieredImageNet-H (WordNet-id folders) and of a user's own data. Class folder names
must be class ids of the hierarchy (a folder outside it is an error); classes of the hierarchy
without a folder are allowed (they get no samples, are listed in ``missing_classes`` and warned
about), since a tree often covers more classes than one dataset split.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from hafcls.data.base import ImageFileDataset, map_labels, resolve_hierarchy
from hafcls.data.images import IMG_EXTENSIONS
from hafcls.data.registry import DatasetRequest, register_dataset
from hafcls.errors import HafclsError
from hafcls.validation import Option

LAYOUT = ("root/<split>/<class id>/<image files> with split in train, val, test and class ids "
          "as in the hierarchy (e.g. WordNet ids such as n01440764)")


def scan_class_folders(split_dir: Path, extensions: Sequence[str] = IMG_EXTENSIONS
                       ) -> dict[str, list[Path]]:
    """``{class folder: sorted image paths}``, searched recursively, hidden entries skipped."""
    exts = tuple(e.lower() for e in extensions)
    out: dict[str, list[Path]] = {}
    for entry in sorted(split_dir.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        files = []
        for dirpath, dirnames, filenames in os.walk(entry, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [Path(dirpath) / f for f in sorted(filenames)
                      if not f.startswith(".") and f.lower().endswith(exts)]
        out[entry.name] = files
    return out


class HierarchyImageFolder(ImageFileDataset):
    """Images in ``root/<split>/<class id>/`` labelled with ``hierarchy``'s class indices.

    Parameters
    ----------
    root:
        Dataset folder holding one folder per split.
    split:
        Sub-folder name (``"train"``, ``"val"``, ``"test"``, or any other).
    hierarchy:
        Required: a :class:`Hierarchy`, a shipped hierarchy name or a hierarchy file.
    extensions:
        File suffixes counted as images (case-insensitive).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        hierarchy,
        transform: Callable | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        skip_corrupt: bool = False,
    ):
        if hierarchy is None:
            raise HafclsError(
                "The folder dataset needs a hierarchy.",
                "pass hierarchy= a Hierarchy, a shipped name (e.g. 'imagenet-1k') or a "
                "hierarchy file (--hierarchy).",
            )
        h = resolve_hierarchy(hierarchy)
        root = Path(root)
        split_dir = root / split
        if not split_dir.is_dir():
            raise HafclsError(f"No {split!r} folder in {root}.", f"expected {LAYOUT}.")
        folders = scan_class_folders(split_dir, extensions)
        if not folders:
            raise HafclsError(f"{split_dir} holds no class folders.", f"expected {LAYOUT}.")
        known = set(h.classes)
        unknown = [name for name in folders if name not in known]
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise HafclsError(
                f"{len(unknown)} class folder(s) in {split_dir} are not classes of the "
                f"hierarchy: {shown}.",
                "name each folder by a class id of the hierarchy, or use a hierarchy that "
                "contains these classes.",
            )
        names = list(folders)
        paths = [p for name in names for p in folders[name]]
        if not paths:
            raise HafclsError(f"{split_dir} holds no images with suffixes {', '.join(extensions)}.",
                              f"expected {LAYOUT}.")
        sizes = np.array([len(folders[name]) for name in names], dtype=np.int64)
        targets = np.repeat(map_labels(names, h, str(split_dir)), sizes)
        super().__init__(paths, targets, h, transform, skip_corrupt)
        self.split = split
        self.root = root
        counts = np.bincount(self.targets, minlength=h.num_classes)
        self.missing_classes = [c for c, n in zip(h.classes, counts.tolist()) if n == 0]
        if self.missing_classes:
            warnings.warn(
                f"{len(self.missing_classes)} of the hierarchy's {h.num_classes} classes have no "
                f"images in {split_dir} (e.g. {self.missing_classes[0]!r}); they get no samples "
                "in this split.",
                stacklevel=2,
            )


class AbsentSplit(torch.utils.data.Dataset):
    """An empty split whose folder does not exist; :attr:`absent` names the folder."""

    def __init__(self, folder: Path, hierarchy):
        self.absent = folder
        self.hierarchy = hierarchy
        self.missing_classes: list[str] = []
        self.transform = None
        self.targets = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index):
        raise HafclsError(f"No {self.absent.name!r} folder in {self.absent.parent}.",
                          f"expected {LAYOUT}.")


@register_dataset("folder", image_size=224, aliases=("imagefolder", "image-folder"),
                  options=(Option("extensions", (list, tuple)), Option("train_split", str),
                           Option("val_split", str), Option("test_split", str)),
                  help="Your images as root/<split>/<class id>/..., with a given hierarchy.")
def build_folder(req: DatasetRequest):
    if req.download:
        raise HafclsError("The folder dataset cannot be downloaded.",
                          f"arrange your images as {LAYOUT}.")
    root = req.need_dir("folder", LAYOUT)
    if req.hierarchy is None:
        raise HafclsError(
            "The folder dataset needs a hierarchy.",
            "pass hierarchy= a Hierarchy, a shipped name (e.g. 'imagenet-1k') or a hierarchy "
            "file (--hierarchy).",
        )
    h = resolve_hierarchy(req.hierarchy)
    kw = req.options
    opts = {"extensions": tuple(kw.get("extensions", IMG_EXTENSIONS)),
            "skip_corrupt": kw.get("skip_corrupt", False)}
    splits = {s: kw.get(f"{s}_split", s) for s in ("train", "val", "test")}
    if not any((root / folder).is_dir() for folder in splits.values()):
        gone = " (the folder does not exist)" if not root.exists() else ""
        raise HafclsError(f"No {splits['train']!r} folder in {root}{gone}, nor any other split "
                          f"folder ({', '.join(splits.values())}).", f"expected {LAYOUT}.")
    # a split whose folder is absent stays empty (a copy holding only test/ can be evaluated);
    # training refuses it by name (hafcls.engine.preflight.check_splits_present)
    sets = {s: HierarchyImageFolder(root, folder, h, req.transform(s), **opts)
            if (root / folder).is_dir() else AbsentSplit(root / folder, h)
            for s, folder in splits.items()}
    missing = {s: len(d.missing_classes) for s, d in sets.items()}
    return h, sets["train"], sets["val"], sets["test"], {"split_folders": splits,
                                                         "classes_without_images": missing}
