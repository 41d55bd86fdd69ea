"""``build_datasets(name, ...)``: train / val / test datasets, their hierarchy and transforms.

Each dataset module registers itself with :func:`register_dataset` (its builder, native image
size, normalisation, flip probability and declared options), so nothing here names a dataset.
Adding a dataset: a new module in ``hafcls/data/`` whose builder is decorated with
``@register_dataset(...)``, plus one entry in ``hafcls/data/catalog.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from hafcls.data.images import collate_skip_corrupt
from hafcls.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.registry import DATASETS
from hafcls.validation import Option, check_options, check_scalar


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


# ---------------------------------------------------------------------- registration
#: options every dataset takes (transforms; unreadable images)
COMMON_OPTIONS = (
    Option("mean", (list, tuple)), Option("std", (list, tuple)),
    Option("interpolation", str), Option("crop_pct", float, 0.0, 1.0, "right"),
    Option("hflip", float, 0.0, 1.0), Option("scale", (list, tuple)),
    Option("train_transform", object), Option("eval_transform", object),
    Option("skip_corrupt", bool),
)


@dataclass
class DatasetRequest:
    """What a dataset builder receives: where the data is, the hierarchy override, the seed,
    the two transforms, the image size and the dataset's own (checked) options."""

    data_dir: str | os.PathLike | None
    hierarchy: Hierarchy | str | os.PathLike | None
    download: bool
    seed: int
    train_transform: Callable
    eval_transform: Callable
    image_size: int
    options: dict
    #: ``{"train" | "eval": {"mean", "std", "hflip"}}`` for each pipeline build_datasets built
    #: itself from those statistics alone (an in-memory dataset may swap it for a batched
    #: equivalent); absent when the user passed the transform or another transform option
    default_pipelines: dict = field(default_factory=dict)

    def transform(self, split: str) -> Callable:
        return self.train_transform if split == "train" else self.eval_transform

    def need_dir(self, name: str, layout: str) -> Path:
        """``data_dir`` as a Path, or a clear error naming the expected layout."""
        if self.data_dir is None:
            raise HafclsError(f"The {name} dataset needs data_dir (--data-dir).",
                              f"point it at {layout}.")
        return Path(self.data_dir)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``build(request) -> (hierarchy, train, val, test, info)``."""

    name: str
    build: Callable[[DatasetRequest], tuple]
    image_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    hflip: float = 0.5
    options: tuple[Option, ...] = ()
    skip_corrupt: bool = True     # whether the dataset reads image files that can be corrupt
    help: str = ""


def register_dataset(name: str, *, image_size: int, mean: tuple = IMAGENET_MEAN,
                     std: tuple = IMAGENET_STD, hflip: float = 0.5,
                     options: tuple[Option, ...] = (), aliases: tuple[str, ...] = (),
                     skip_corrupt: bool = True, help: str = ""):
    """Decorator registering ``build(request: DatasetRequest) -> (hierarchy, train, val, test,
    info)`` as the dataset ``name`` (see :class:`DatasetSpec` for the other fields)."""

    def decorate(build: Callable) -> Callable:
        spec = DatasetSpec(name, build, image_size, tuple(mean), tuple(std), hflip,
                           tuple(options), skip_corrupt, help)
        DATASETS.add(name, spec, aliases=aliases)
        return build

    return decorate


def available_datasets() -> list[str]:
    """Names accepted by :func:`build_datasets`, in registration order."""
    return DATASETS.names()


def canonical_name(name: str) -> str:
    return DATASETS.canonical(name)


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
        One of :func:`available_datasets` (``hafcls.list_datasets()``).
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
    spec: DatasetSpec = DATASETS.get(key)
    declared = (*COMMON_OPTIONS, *spec.options)
    unknown = sorted(set(kw) - {o.name for o in declared})
    if unknown:
        raise HafclsError(
            f"Unknown option(s) for the {key} dataset: {', '.join(unknown)}.",
            f"use some of {', '.join(sorted(o.name for o in declared))}.",
        )
    kw = check_options(declared, kw, f"the {key} dataset")
    seed = check_scalar(seed, "seed", int, min_val=0, fix="pass e.g. seed=0.")
    size = spec.image_size if image_size is None else image_size
    mean, std = kw.pop("mean", spec.mean), kw.pop("std", spec.std)
    tf_opts = {k: kw.pop(k) for k in ("interpolation", "crop_pct", "scale") if k in kw}
    plain = not tf_opts  # only mean / std / hflip chosen
    tf_opts["hflip"] = kw.pop("hflip", spec.hflip)
    stats = {"mean": tuple(mean), "std": tuple(std), "hflip": float(tf_opts["hflip"])}
    defaults = {}
    train_tf = kw.pop("train_transform", None)
    eval_tf = kw.pop("eval_transform", None)
    if train_tf is None:
        train_tf = build_transforms(size, True, mean, std, **tf_opts)
        defaults["train"] = stats
    if eval_tf is None:
        eval_tf = build_transforms(size, False, mean, std,
                                   **{k: v for k, v in tf_opts.items() if k != "hflip"})
        defaults["eval"] = stats
    # training runs skip (and count) unreadable images unless told to be strict
    kw.setdefault("skip_corrupt", True)
    skip = bool(kw["skip_corrupt"])
    if not spec.skip_corrupt:  # generated or in-memory images cannot be unreadable
        kw.pop("skip_corrupt")
    request = DatasetRequest(data_dir, hierarchy, bool(download), int(seed), train_tf, eval_tf,
                             int(size), kw, defaults if plain else {})
    h, train, val, test, info = spec.build(request)
    info = {"sizes": {"train": len(train), "val": len(val), "test": len(test)}, **info}
    return DataBundle(
        hierarchy=h, train=train, val=val, test=test, image_size=int(size), name=key,
        num_classes=h.num_classes, mean=tuple(mean), std=tuple(std), skip_corrupt=skip,
        info=info,
    )
