"""``build_datasets(name, ...)``: train / val / test datasets, their hierarchy and transforms."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from hafcls.data.base import resolve_hierarchy
from hafcls.data.images import collate_skip_corrupt
from hafcls.data.synthetic import SYNTHETIC_MEAN, SYNTHETIC_STD
from hafcls.data.transforms import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_transforms,
)
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy


@dataclass
class DataBundle:
    """Everything a run needs from the data side.

    ``train`` / ``val`` / ``test`` yield ``(image tensor, class index)`` with class indices in
    ``hierarchy.classes`` order. ``info`` records dataset-specific choices (split protocol,
    sizes, ...). With ``skip_corrupt`` (the default of :func:`build_datasets`) the datasets
    yield ``None`` for unreadable images: use :attr:`collate_fn` in the DataLoader, skip ``None``
    batches, and read the count from ``dataset.num_skipped`` / :attr:`num_skipped`.
    """

    hierarchy: Hierarchy
    train: Dataset
    val: Dataset
    test: Dataset
    image_size: int
    name: str
    num_classes: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    skip_corrupt: bool = False
    info: dict = field(default_factory=dict)

    @property
    def splits(self) -> dict[str, Dataset]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def set_transforms(self, train: Callable | None = None, eval: Callable | None = None) -> None:
        """Replace the train transform and/or the val/test transform (e.g. with
        :func:`~hafcls.data.transforms.transforms_for_model`)."""
        if train is not None:
            self.train.transform = train
        if eval is not None:
            self.val.transform = eval
            self.test.transform = eval

    def use_model_transforms(self, model) -> None:
        """Feed a pretrained backbone the pipeline it was trained with: its mean, std,
        interpolation and crop from timm's ``resolve_data_config``, at this dataset's size."""
        from hafcls.data.transforms import _data_config, transforms_for_model

        cfg = _data_config(model)
        self.set_transforms(transforms_for_model(model, True, self.image_size),
                            transforms_for_model(model, False, self.image_size))
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])

    @property
    def collate_fn(self) -> Callable | None:
        """:func:`collate_skip_corrupt` when unreadable images are skipped, else ``None``."""
        return collate_skip_corrupt if self.skip_corrupt else None

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far over the three splits (this process's workers;
        under DDP all-reduce it over ranks)."""
        return sum(int(getattr(d, "num_skipped", 0)) for d in self.splits.values())

    def reset_skipped(self) -> None:
        """Zero the skip counters of the three splits (e.g. at the start of an epoch)."""
        for d in self.splits.values():
            if hasattr(d, "reset_skipped"):
                d.reset_skipped()

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


# ---------------------------------------------------------------------- per-dataset builders
_COMMON_KW = ("mean", "std", "interpolation", "crop_pct", "hflip", "scale", "train_transform",
              "eval_transform", "skip_corrupt")
_SYNTHETIC_KW = ("branching", "per_class", "depth_decay", "weight_jitter", "max_shift",
                 "contrast_jitter", "brightness_jitter", "distractor", "noise", "gratings",
                 "max_freq")


def _need_dir(name: str, data_dir, layout: str) -> Path:
    if data_dir is None:
        raise HafclsError(f"The {name} dataset needs data_dir (--data-dir).",
                          f"point it at {layout}.")
    return Path(data_dir)


def _build_synthetic(data_dir, hierarchy, download, seed, tf, kw):
    from hafcls.data.synthetic import (
        SYNTHETIC_SIZES,
        SyntheticHierarchyDataset,
        synthetic_hierarchy,
    )

    branching = kw.pop("branching", None)
    if hierarchy is None:
        hierarchy = synthetic_hierarchy(**({} if branching is None else
                                           {"branching": branching}), seed=seed)
    elif branching is not None:
        raise HafclsError("Pass either hierarchy or branching to the synthetic dataset, not both.",
                          "drop one of them.")
    else:
        hierarchy = resolve_hierarchy(hierarchy)
    per_class = kw.pop("per_class", None)
    if per_class is None:
        per_class = dict(SYNTHETIC_SIZES)
    elif isinstance(per_class, Mapping):
        per_class = {**SYNTHETIC_SIZES, **per_class}
    elif isinstance(per_class, (int, np.integer)):
        per_class = dict.fromkeys(SYNTHETIC_SIZES, int(per_class))
    else:
        try:
            per_class = dict(zip(("train", "val", "test"), per_class, strict=True))
        except (TypeError, ValueError):
            raise HafclsError(f"per_class must be an int, a dict or 3 ints, got {per_class!r}.",
                              "pass e.g. per_class=(200, 40, 40).") from None
    size = kw.pop("image_size")
    sets = {
        split: SyntheticHierarchyDataset(hierarchy, split, per_class[split], image_size=size,
                                         seed=seed, transform=tf[split != "train"], **kw)
        for split in ("train", "val", "test")
    }
    info = {"per_class": per_class, "seed": seed, **kw}
    return hierarchy, sets["train"], sets["val"], sets["test"], info


def _build_cifar100(data_dir, hierarchy, download, seed, tf, kw):
    from hafcls.data.cifar100 import VAL_PER_CLASS, cifar100_splits
    from hafcls.hierarchy.sources.cifar100 import LAYOUT

    root = _need_dir("cifar100", data_dir, LAYOUT)
    val_per_class = kw.pop("val_per_class", VAL_PER_CLASS)
    h, train, val, test = cifar100_splits(
        root, None if hierarchy is None else resolve_hierarchy(hierarchy), val_per_class,
        download, tf[0], tf[1])
    return h, train, val, test, {"val_per_class": val_per_class}


def _build_fgvc(data_dir, hierarchy, download, seed, tf, kw):
    from hafcls.data.fgvc_aircraft import BANNER_PIXELS, FGVCAircraft, locate_fgvc
    from hafcls.hierarchy.sources.fgvc_aircraft import LAYOUT, fgvc_aircraft

    root = _need_dir("fgvc-aircraft", data_dir, LAYOUT)
    data = locate_fgvc(root, download)
    h = fgvc_aircraft(data) if hierarchy is None else resolve_hierarchy(hierarchy)
    opts = {"crop_banner": kw.pop("crop_banner", BANNER_PIXELS),
            "skip_corrupt": kw.pop("skip_corrupt", False)}
    train, val, test = (FGVCAircraft(data, split, h, tf[split != "train"], **opts)
                        for split in ("train", "val", "test"))
    return h, train, val, test, {"crop_banner": opts["crop_banner"]}


def _build_inat2019(data_dir, hierarchy, download, seed, tf, kw):
    from hafcls.data.inaturalist import LAYOUT, WHERE, inat2019_splits

    if download:
        raise HafclsError("iNaturalist 2019 cannot be downloaded automatically.", f"{WHERE}.")
    root = _need_dir("inat2019", data_dir, LAYOUT)
    opts = {k: kw.pop(k) for k in ("split_files", "categories", "val_per_class", "skip_corrupt")
            if k in kw}
    h, train, val, test, protocol = inat2019_splits(
        root, None if hierarchy is None else resolve_hierarchy(hierarchy),
        train_transform=tf[0], eval_transform=tf[1], **opts)
    return h, train, val, test, {"protocol": protocol}


def _build_folder(data_dir, hierarchy, download, seed, tf, kw):
    from hafcls.data.folder import LAYOUT, HierarchyImageFolder
    from hafcls.data.images import IMG_EXTENSIONS

    if download:
        raise HafclsError("The folder dataset cannot be downloaded.",
                          f"arrange your images as {LAYOUT}.")
    root = _need_dir("folder", data_dir, LAYOUT)
    if hierarchy is None:
        raise HafclsError(
            "The folder dataset needs a hierarchy.",
            "pass hierarchy= a Hierarchy, a shipped name (e.g. 'imagenet-1k') or a hierarchy "
            "file (--hierarchy).",
        )
    h = resolve_hierarchy(hierarchy)
    opts = {"extensions": tuple(kw.pop("extensions", IMG_EXTENSIONS)),
            "skip_corrupt": kw.pop("skip_corrupt", False)}
    splits = {s: kw.pop(f"{s}_split", s) for s in ("train", "val", "test")}
    sets = {s: HierarchyImageFolder(root, folder, h, tf[s != "train"], **opts)
            for s, folder in splits.items()}
    missing = {s: len(d.missing_classes) for s, d in sets.items()}
    return h, sets["train"], sets["val"], sets["test"], {"split_folders": splits,
                                                         "classes_without_images": missing}


@dataclass(frozen=True)
class _Spec:
    build: Callable
    image_size: int
    mean: tuple
    std: tuple
    hflip: float
    extra_kw: tuple


_DATASETS = {
    # no flips for synthetic data: the generator never mirrors, so flips add unseen variation
    "synthetic": _Spec(_build_synthetic, 32, SYNTHETIC_MEAN, SYNTHETIC_STD, 0.0, _SYNTHETIC_KW),
    "cifar100": _Spec(_build_cifar100, 32, CIFAR100_MEAN, CIFAR100_STD, 0.5, ("val_per_class",)),
    "fgvc-aircraft": _Spec(_build_fgvc, 224, IMAGENET_MEAN, IMAGENET_STD, 0.5, ("crop_banner",)),
    "inat2019": _Spec(_build_inat2019, 224, IMAGENET_MEAN, IMAGENET_STD, 0.5,
                      ("split_files", "categories", "val_per_class")),
    "folder": _Spec(_build_folder, 224, IMAGENET_MEAN, IMAGENET_STD, 0.5,
                    ("extensions", "train_split", "val_split", "test_split")),
}
_ALIASES = {
    "cifar-100": "cifar100", "fgvc": "fgvc-aircraft", "aircraft": "fgvc-aircraft",
    "inat": "inat2019", "inat-2019": "inat2019", "inaturalist2019": "inat2019",
    "inaturalist-2019": "inat2019", "imagefolder": "folder", "image-folder": "folder",
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`build_datasets`."""
    return list(_DATASETS)


def canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        raise HafclsError(f"Unknown dataset {name!r}.",
                          f"use one of {', '.join(available_datasets())}.")
    return key


def build_datasets(
    name: str,
    data_dir: str | os.PathLike | None = None,
    hierarchy: Hierarchy | str | os.PathLike | None = None,
    image_size: int | None = None,
    download: bool = False,
    seed: int = 0,
    **kw,
) -> DataBundle:
    """Train / val / test datasets of ``name`` with their hierarchy and default transforms.

    Parameters
    ----------
    name:
        One of :func:`available_datasets` (``synthetic``, ``cifar100``, ``fgvc-aircraft``,
        ``inat2019``, ``folder``).
    data_dir:
        Where the data lives (not needed for ``synthetic``).
    hierarchy:
        Override the dataset's own tree (a Hierarchy, shipped name or file); required for
        ``folder``. Every label of the data must be one of its classes.
    image_size:
        Model input side; default 32 for synthetic / CIFAR-100, 224 otherwise.
    download:
        Fetch CIFAR-100 / FGVC-Aircraft into ``data_dir`` when missing.
    seed:
        Seed of the synthetic dataset (real datasets have fixed splits).
    **kw:
        Transform options (``mean``, ``std``, ``interpolation``, ``crop_pct``, ``hflip``,
        ``scale``, or whole ``train_transform`` / ``eval_transform``), ``skip_corrupt``
        (default True: unreadable images are skipped and counted; False raises naming the
        file) and
        dataset options (synthetic: ``branching``, ``per_class`` and the generator knobs;
        cifar100: ``val_per_class``; fgvc-aircraft: ``crop_banner``; inat2019:
        ``split_files``, ``categories``, ``val_per_class``; folder: ``extensions``,
        ``<split>_split`` folder names).
    """
    key = canonical_name(name)
    spec = _DATASETS[key]
    allowed = set(_COMMON_KW) | set(spec.extra_kw)
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise HafclsError(
            f"Unknown option(s) for the {key} dataset: {', '.join(unknown)}.",
            f"use some of {', '.join(sorted(allowed))}.",
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HafclsError(f"seed must be an int >= 0, got {seed!r}.", "pass e.g. seed=0.")
    size = spec.image_size if image_size is None else image_size
    mean, std = kw.pop("mean", spec.mean), kw.pop("std", spec.std)
    tf_opts = {k: kw.pop(k) for k in ("interpolation", "crop_pct", "scale") if k in kw}
    tf_opts["hflip"] = kw.pop("hflip", spec.hflip)
    train_tf = kw.pop("train_transform", None)
    eval_tf = kw.pop("eval_transform", None)
    if train_tf is None:
        train_tf = build_transforms(size, True, mean, std, **tf_opts)
    if eval_tf is None:
        eval_tf = build_transforms(size, False, mean, std,
                                   **{k: v for k, v in tf_opts.items() if k != "hflip"})
    # training runs skip (and count) unreadable images unless told to be strict
    kw.setdefault("skip_corrupt", True)
    skip = bool(kw["skip_corrupt"])
    if key == "synthetic":
        kw.pop("skip_corrupt", None)
        kw["image_size"] = size
    elif key == "cifar100":
        kw.pop("skip_corrupt", None)
    h, train, val, test, info = spec.build(data_dir, hierarchy, bool(download), int(seed),
                                           (train_tf, eval_tf), kw)
    info = {"sizes": {"train": len(train), "val": len(val), "test": len(test)}, **info}
    return DataBundle(
        hierarchy=h, train=train, val=val, test=test, image_size=int(size), name=key,
        num_classes=h.num_classes, mean=tuple(mean), std=tuple(std), skip_corrupt=skip,
        info=info,
    )
