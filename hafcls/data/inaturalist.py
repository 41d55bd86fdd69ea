"""iNaturalist 2019 from the competition's COCO-style json files.

Layout (as released; no download, see :data:`WHERE`)::

    root/train2019.json   root/val2019.json   root/test2019.json   [root/categories.json]
    root/train_val2019/<super category>/<category id>/<image>.jpg   root/test2019/<image>.jpg

Each json has ``images`` (``id``, ``file_name`` relative to ``root``), ``annotations``
(``image_id``, ``category_id``) and ``categories`` with the taxonomy (``kingdom`` ... ``genus``);
the categories may instead sit in a separate ``categories.json``. Classes are ordered by category
id, class ids are ``str(category id)`` (the hierarchy from
:func:`hafcls.hierarchy.sources.inaturalist.inaturalist`).

The competition never released labels for ``test2019.json``; when the test json has no
annotations, :func:`inat2019_splits` evaluates on the official validation set and holds out the
last ``val_per_class`` training images of each class for validation (the protocol is recorded).

The papers' protocol is making-better-mistakes' re-split of train+val (``splits_inat19.zip``):
pass it as the data option ``splits=PATH`` (:func:`inat2019_from_listing`); images are then read
from ``root/<split>/nat<category id, 4 digits>/<file name>`` and the taxonomy from
``categories``, ``root/categories.json`` or ``root/train2019.json`` (or ``--hierarchy``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from hafcls.data.base import ImageFileDataset, last_per_class, map_labels, resolve_hierarchy
from hafcls.data.registry import DatasetRequest, register_dataset
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.hierarchy.sources.inaturalist import inaturalist
from hafcls.validation import Option, read_user_json

SPLIT_FILES = {"train": "train2019.json", "val": "val2019.json", "test": "test2019.json"}
WHERE = (
    "iNaturalist 2019 is not downloaded automatically: get train_val2019.tar.gz, test2019.tar.gz "
    "and the json files (train2019.json, val2019.json, test2019.json) from the competition page "
    "https://github.com/visipedia/inat_comp/tree/master/2019 (or the Kaggle competition "
    "'inaturalist-2019-fgvc6') and extract them into one folder"
)
LISTING_LAYOUT = ("data_dir/{train,val,test}/nat<category id, 4 digits>/<image files>, as the "
                  "split listing names them")
LAYOUT = ("a folder holding train2019.json, val2019.json, test2019.json and the image folders "
          "they name (train_val2019/, test2019/)")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise HafclsError(f"Missing iNaturalist file {path}.", f"{WHERE}.")
    data = read_user_json(path, fix="re-download it.")
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
        raise HafclsError(f"{path} has no 'images' list.", f"expected {LAYOUT}.")
    return dict(data)


def has_labels(data: Mapping) -> bool:
    return bool(data.get("annotations"))


def _split_path(root: Path, split: str, split_files: Mapping[str, str | os.PathLike] | None):
    files = {**SPLIT_FILES, **(split_files or {})}
    if split not in files:
        raise HafclsError(f"Unknown split {split!r}.",
                          f"use one of {', '.join(map(repr, files))}, or add it to split_files.")
    path = Path(files[split])
    return path if path.is_absolute() else root / path


def category_source(root: Path, categories: str | os.PathLike | None, train: Mapping):
    """Where the taxonomy comes from: an explicit file, root/categories.json, or train json."""
    if categories is not None:
        return Path(categories)
    if (root / "categories.json").is_file():
        return root / "categories.json"
    return train


def image_labels(data: Mapping, source: str) -> tuple[list[str], np.ndarray]:
    """``(file names, category ids)`` of a labelled json, in its ``images`` order."""
    try:
        ids = np.array([int(im["id"]) for im in data["images"]], dtype=np.int64)
        files = [str(im["file_name"]) for im in data["images"]]
        ann_img = np.array([int(a["image_id"]) for a in data["annotations"]], dtype=np.int64)
        ann_cat = np.array([int(a["category_id"]) for a in data["annotations"]], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise HafclsError(
            f"{source} has a malformed image or annotation record ({type(err).__name__}: {err}).",
            "images need 'id' and 'file_name', annotations 'image_id' and 'category_id'.",
        ) from None
    # one label per image: match annotations to images by id (sorted search, no per-pair loop)
    uniq, counts = np.unique(ann_img, return_counts=True)
    if (counts > 1).any():
        raise HafclsError(
            f"{source}: image {int(uniq[counts > 1][0])} has {int(counts.max())} annotations.",
            "keep one annotation per image.",
        )
    order = np.argsort(ann_img)
    pos = np.searchsorted(ann_img[order], ids)
    found = (pos < len(ann_img)) & (ann_img[order][np.minimum(pos, len(ann_img) - 1)] == ids)
    if not found.all():
        raise HafclsError(
            f"{source}: {int((~found).sum())} image(s) have no annotation, e.g. image id "
            f"{int(ids[~found][0])}.",
            "give every image one annotation, or remove the unlabelled images.",
        )
    return files, ann_cat[order][pos]


class INaturalist2019(ImageFileDataset):
    """One split of iNaturalist 2019 (``"train"``, ``"val"``, ``"test"`` or a name in
    ``split_files``), yielding ``(transform(image), class index)``.

    Parameters
    ----------
    root:
        The folder holding the json files and the image folders they name.
    hierarchy:
        A user tree whose classes include ``str(category id)`` of every image; default the
        7-rank taxonomy of the categories.
    split_files:
        Override the json of a split (relative to ``root`` or absolute), e.g. your own labelled
        re-split in the same format.
    categories:
        A json with the category taxonomy (default ``root/categories.json`` if present, else the
        train json's categories).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        hierarchy: Hierarchy | None = None,
        transform: Callable | None = None,
        split_files: Mapping[str, str | os.PathLike] | None = None,
        categories: str | os.PathLike | None = None,
        skip_corrupt: bool = False,
        _data: Mapping | None = None,
    ):
        root = Path(root)
        if not root.is_dir():
            raise HafclsError(f"No iNaturalist 2019 folder at {root}.",
                              f"expected {LAYOUT}. {WHERE}.")
        path = _split_path(root, split, split_files)
        data = read_json(path) if _data is None else _data
        if not has_labels(data):
            raise HafclsError(
                f"{path} has no annotations (the competition never released test labels).",
                "evaluate on the validation split, or pass a labelled json for this split "
                "through split_files.",
            )
        if hierarchy is None:
            train = data if split == "train" else read_json(_split_path(root, "train",
                                                                        split_files))
            hierarchy = inaturalist(category_source(root, categories, train))
        files, cats = image_labels(data, str(path))
        parts = Path(files[0]).parts if files else ()
        top = root / parts[0] if len(parts) > 1 else root
        if not top.is_dir():  # a folder not extracted: say so once, not per image
            raise HafclsError(f"{path.name} names images under {top}, which does not exist.",
                              f"extract the image archives into {root}. {WHERE}.")
        uniq, inverse = np.unique(cats, return_inverse=True)
        table = map_labels([str(c) for c in uniq], hierarchy, f"iNaturalist {path.name}")
        super().__init__([root / f for f in files], table[inverse.reshape(-1)], hierarchy,
                         transform, skip_corrupt)
        self.split = split
        self.root = root
        self.json_path = path


def inat2019_splits(
    root: str | os.PathLike,
    hierarchy: Hierarchy | None = None,
    split_files: Mapping[str, str | os.PathLike] | None = None,
    categories: str | os.PathLike | None = None,
    val_per_class: int = 3,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    skip_corrupt: bool = False,
) -> tuple[Hierarchy, INaturalist2019, INaturalist2019, INaturalist2019, str]:
    """``(hierarchy, train, val, test, protocol)``.

    ``protocol`` is ``"official"`` when the test json is labelled; otherwise
    ``"val-as-test"``: test = the official validation set, val = the last ``val_per_class``
    images of each class of the training json, train = the remaining training images.
    """
    root = Path(root)
    if not root.is_dir():
        raise HafclsError(f"No iNaturalist 2019 folder at {root}.", f"expected {LAYOUT}. {WHERE}.")
    train_data = read_json(_split_path(root, "train", split_files))
    if hierarchy is None:
        hierarchy = inaturalist(category_source(root, categories, train_data))
    test_path = _split_path(root, "test", split_files)
    test_labelled = test_path.is_file() and has_labels(read_json(test_path))
    common = dict(hierarchy=hierarchy, split_files=split_files, skip_corrupt=skip_corrupt)
    train = INaturalist2019(root, "train", transform=train_transform, _data=train_data, **common)
    if test_labelled:
        val = INaturalist2019(root, "val", transform=eval_transform, **common)
        test = INaturalist2019(root, "test", transform=eval_transform, **common)
        return hierarchy, train, val, test, "official"

    warnings.warn(
        f"{test_path.name} has no labels: testing on the official validation set and holding "
        f"out the last {val_per_class} training images of each class for validation.",
        stacklevel=2,
    )
    held = last_per_class(train.targets, val_per_class)
    counts = np.bincount(train.targets)
    if ((counts > 0) & (counts <= val_per_class)).any():
        cls = hierarchy.classes[int(np.flatnonzero((counts > 0) & (counts <= val_per_class))[0])]
        raise HafclsError(
            f"Class {cls!r} has no more than {val_per_class} training images to hold out.",
            "lower val_per_class.",
        )
    val = train.subset(np.flatnonzero(held), transform=eval_transform)
    train = train.subset(np.flatnonzero(~held))
    test = INaturalist2019(root, "val", transform=eval_transform, **common)
    return hierarchy, train, val, test, "val-as-test"


def inat2019_from_listing(req: DatasetRequest, root: Path, hierarchy: Hierarchy | None):
    """The papers' splits: making-better-mistakes' listing ``req.options["splits"]``."""
    from hafcls.data.split_listings import datasets_from_listing, inat2019_listing, listing_info

    source = req.options["splits"]
    if hierarchy is None:
        categories = req.options.get("categories")
        train_json = root / SPLIT_FILES["train"]
        if categories is None and not (root / "categories.json").is_file() \
                and not train_json.is_file():
            raise HafclsError(
                f"No iNaturalist taxonomy found in {root} for the split listing.",
                "put categories.json (or train2019.json) there, pass data option categories=, "
                "or --hierarchy.")
        train = {} if categories or (root / "categories.json").is_file() else read_json(
            train_json)
        hierarchy = inaturalist(category_source(root, categories, train))
    listing = inat2019_listing(source, hierarchy)
    train, val, test = datasets_from_listing(listing, root, hierarchy, req, LISTING_LAYOUT,
                                             bool(req.options.get("skip_corrupt", False)))
    return hierarchy, train, val, test, listing_info(listing, source)


@register_dataset("inat2019", image_size=224,
                  aliases=("inat", "inat-2019", "inaturalist2019", "inaturalist-2019"),
                  options=(Option("split_files", dict), Option("categories", (str, os.PathLike)),
                           Option("val_per_class", int, 0, None),
                           Option("splits", (str, os.PathLike),
                                  help="making-better-mistakes' split listing (the papers' "
                                       "splits; zip or folder).")),
                  help="iNaturalist 2019, 1,010 species in 7 ranks: the papers' split listing "
                       "(data option splits=PATH) or the competition files.")
def build_inat2019(req: DatasetRequest):
    if req.download:
        raise HafclsError("iNaturalist 2019 cannot be downloaded automatically.", f"{WHERE}.")
    root = req.need_dir("inat2019", LAYOUT)
    hierarchy = None if req.hierarchy is None else resolve_hierarchy(req.hierarchy)
    if req.options.get("splits") is not None:
        return inat2019_from_listing(req, root, hierarchy)
    h, train, val, test, protocol = inat2019_splits(
        root, hierarchy, train_transform=req.train_transform,
        eval_transform=req.eval_transform, **req.options)
    return h, train, val, test, {"protocol": protocol}
