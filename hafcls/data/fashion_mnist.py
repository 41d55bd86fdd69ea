"""Fashion-MNIST from the official IDX files, decoded once into memory (docs/datasets.md).

Where the files are looked for, in order: ``data_dir`` itself and torchvision's
``data_dir/FashionMNIST/raw``; without ``data_dir``, Debian's ``/usr/share/datasets/fashion-mnist``
(``apt-get install dataset-fashion-mnist``) and then ``~/.cache/hafcls/FashionMNIST/raw``. Each of
the four files may be gzipped or not. ``download=True`` (``--download``) fetches them through
torchvision's ``FashionMNIST``; nothing is downloaded otherwise.

Splits: the last :data:`VAL_PER_CLASS` (500) training images of each class in file order are the
validation set (5,000), the other 55,000 the training set; the official 10,000 test images the
test set. ``per_class`` keeps only the first ``n`` images of each class of a split, for quick runs.
Images are ``uint8`` tensors in memory, augmented in batches by
:class:`~hafcls.data.memory.TensorAugment` (random crop with 2 pixels of zero padding and a
horizontal flip for training, then normalisation with the training set's mean and std).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hafcls.data.base import (
    check_split,
    last_per_class,
    map_labels,
    rank_in_class,
    resolve_hierarchy,
)
from hafcls.data.idx import read_idx
from hafcls.data.memory import InMemoryImageDataset, TensorAugment
from hafcls.data.registry import DatasetRequest, register_dataset
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.validation import Option

#: Class ids in label order (torchvision's ``FashionMNIST.classes``).
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
#: Pixel mean / std of the 60,000 training images in [0, 1] (replicated for RGB models).
FASHION_MNIST_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_MNIST_STD = (0.3530, 0.3530, 0.3530)
VAL_PER_CLASS = 500
IMAGE_SIDE = 28
INSTALL_FIX = ("install them with `apt-get install dataset-fashion-mnist` (prefix sudo when not "
               "root), or pass --download (download=True in Python) to fetch them with "
               "torchvision into --data-dir.")
TORCHVISION_LAYOUT = Path("FashionMNIST") / "raw"


# ---------------------------------------------------------------------- hierarchy
_TREE = {  # parent -> children; the classes are leaves (see _REASONS)
    "fashion": ["clothing", "footwear", "accessories"],
    "clothing": ["upper-body", "Trouser", "Dress"],
    "upper-body": ["tops", "outer-layers"],
    "tops": ["T-shirt/top", "Shirt"],
    "outer-layers": ["Pullover", "Coat"],
    "footwear": ["shoes", "Ankle boot"],
    "shoes": ["Sandal", "Sneaker"],
    "accessories": ["Bag"],
}
_NAMES = {"fashion": "fashion product", "upper-body": "upper-body garments",
          "tops": "tops worn next to the skin", "outer-layers": "layers worn over a top",
          "shoes": "low-cut shoes", "accessories": "accessories"}
_REASONS = [
    "Products are grouped first by kind (clothing, footwear, accessories), the split every "
    "retail catalogue starts with; a mistake across these groups is the most severe (4).",
    "Clothing is split by where it is worn: upper body (the four tops), lower body (Trouser) "
    "and the one full-body garment (Dress), which sit directly under clothing.",
    "The upper-body garments are split by layer: tops worn next to the skin (T-shirt/top, "
    "Shirt) and layers worn over them (Pullover, Coat). Four of the ten classes are tops and "
    "they take most of cross-entropy's errors, so this is where a finer level can matter.",
    "Footwear: low-cut shoes (Sandal, Sneaker) versus the boot (Ankle boot).",
    "Bag is the only accessory. Classes sit at depths 2-4 (the tree is unbalanced, H = 4); "
    "with the published distance H - depth(LCA), T-shirt/top-Shirt and Pullover-Coat are at "
    "distance 1, T-shirt/top-Pullover and Sandal-Sneaker at 2, Trouser-Dress, Shirt-Trouser "
    "and Sneaker-Ankle boot at 3, and clothing-footwear or anything-Bag at 4.",
    "The tree follows the products, not the pixels: Shirt also looks like Pullover and Coat "
    "(long sleeves), which this tree places at distance 2; the random-hierarchy control "
    "(hafcls.hierarchy.permute) tells whether the tree itself helps.",
]


def fashion_mnist_hierarchy() -> Hierarchy:
    """The shipped ``fashion-mnist`` hierarchy (``hierarchies/fashion-mnist.json``), built here
    so the file can be regenerated: ``python -m hafcls.data.fashion_mnist OUT.json``."""
    edges = [(p, c) for p, children in _TREE.items() for c in children]
    meta = {"name": "fashion-mnist", "source": "hand-designed (hafcls.data.fashion_mnist)",
            "description": "Fashion-MNIST's 10 products grouped by kind, body part and layer.",
            "reasons": _REASONS, "class_order": "Fashion-MNIST label order (0-9)"}
    return Hierarchy.from_edges(edges, CLASSES, names=_NAMES, meta=meta)


# ---------------------------------------------------------------------- files
def default_download_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "hafcls"


def candidate_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    """The folders searched for the four files, in order."""
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / TORCHVISION_LAYOUT]
    return [DEBIAN_DIR, default_download_root() / TORCHVISION_LAYOUT]


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):  # torchvision keeps both; the unpacked one reads faster
        if (folder / name).is_file():
            return folder / name
    return None


def find_files(dirs: list[Path]) -> dict[str, tuple[Path, Path]]:
    """``{split: (images file, labels file)}`` from the first folder holding all four files."""
    stems = [s for pair in FILES.values() for s in pair]
    for folder in dirs:
        found = {s: _find(folder, s) for s in stems}
        if all(found.values()):
            return {split: (found[i], found[lb]) for split, (i, lb) in FILES.items()}
        present = [s for s, p in found.items() if p is not None]
        if present:  # a half-installed copy: name what is missing rather than look further
            missing = [s + "[.gz]" for s, p in found.items() if p is None]
            raise HafclsError(f"Fashion-MNIST in {folder} is incomplete: {', '.join(missing)} "
                              "missing.", INSTALL_FIX)
    raise HafclsError(
        "Fashion-MNIST's IDX files (train-images-idx3-ubyte.gz, ...) are not in "
        + " or ".join(str(d) for d in dirs) + ".", INSTALL_FIX)


def locate_fashion_mnist(data_dir: str | os.PathLike | None = None,
                         download: bool = False) -> dict[str, tuple[Path, Path]]:
    """The four files; with ``download`` (and only then) fetched first when missing."""
    dirs = candidate_dirs(data_dir)
    try:
        return find_files(dirs)
    except HafclsError:
        if not download:
            raise
    root = Path(data_dir) if data_dir is not None else default_download_root()
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise HafclsError(f"Downloading Fashion-MNIST into {root} failed ({err}).",
                          "check the network, or install `dataset-fashion-mnist` with apt-get "
                          "(sudo when not root).") from None
    return find_files([root / TORCHVISION_LAYOUT])


_CACHE: dict[tuple, tuple[torch.Tensor, np.ndarray]] = {}


def read_split_files(images_file: Path, labels_file: Path) -> tuple[torch.Tensor, np.ndarray]:
    """``(uint8 N x 1 x 28 x 28 tensor, int64 labels)`` checked against each other.

    Decoded arrays are cached per process (keyed by path, size and mtime), so many runs in one
    process (a comparison) decode the files once. Treat the returned tensor as read-only.
    """
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                for p in (images_file, labels_file))
    if key in _CACHE:
        return _CACHE[key]
    fix = ("re-install them with `apt-get install --reinstall dataset-fashion-mnist` (prefix sudo "
           "when not root), or delete them and pass --download to fetch fresh copies.")
    images = read_idx(images_file, 3, fix)
    labels = read_idx(labels_file, 1, fix)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise HafclsError(f"{images_file} / {labels_file} do not hold unsigned bytes.", fix)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise HafclsError(f"{images_file} holds {images.shape[1]}x{images.shape[2]} images; "
                          f"Fashion-MNIST's are {IMAGE_SIDE}x{IMAGE_SIDE}.", fix)
    if len(images) != len(labels):
        raise HafclsError(f"{images_file} holds {len(images):,} images but {labels_file} "
                          f"{len(labels):,} labels.", fix)
    if labels.size and labels.max() >= len(CLASSES):
        raise HafclsError(f"{labels_file} holds label {int(labels.max())}; Fashion-MNIST's "
                          f"labels are 0-{len(CLASSES) - 1}.", fix)
    out = torch.from_numpy(images[:, None]), labels.astype(np.int64)
    _CACHE[key] = out
    return out


# ---------------------------------------------------------------------- splits
def first_per_class(labels: np.ndarray, n: int | None) -> np.ndarray:
    """Boolean mask of the first ``n`` samples of every class (all when ``n`` is None)."""
    labels = np.asarray(labels, dtype=np.int64)
    if n is None or labels.size == 0:
        return np.ones(labels.size, dtype=bool)
    return rank_in_class(labels) < n


def _per_class(value) -> dict[str, int | None]:
    splits = ("train", "val", "test")
    if value is None:
        out = dict.fromkeys(splits)
    elif isinstance(value, Mapping):
        out = {**dict.fromkeys(splits), **value}
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = dict.fromkeys(splits, int(value))
    else:
        try:
            out = dict(zip(splits, value, strict=True))
        except (TypeError, ValueError):
            out = {"?": value}
    ok = set(out) <= set(splits) and all(
        v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1)
        for v in out.values())
    if not ok:
        raise HafclsError(f"per_class must be an int >= 1, 3 ints or a dict of them by split, "
                          f"got {value!r}.", "pass e.g. per_class=(200, 50, 100).")
    return out


def fashion_mnist_splits(
    data_dir: str | os.PathLike | None = None,
    hierarchy: Hierarchy | str | os.PathLike | None = None,
    download: bool = False,
    val_per_class: int = VAL_PER_CLASS,
    per_class=None,
    train_transform=None,
    eval_transform=None,
    image_size: int = IMAGE_SIDE,
    channels: int = 3,
    mean=FASHION_MNIST_MEAN,
    std=FASHION_MNIST_STD,
    hflip: float = 0.5,
    padding: int = 2,
) -> tuple[Hierarchy, InMemoryImageDataset, InMemoryImageDataset, InMemoryImageDataset]:
    """``(hierarchy, train, val, test)``; transforms left ``None`` become :class:`TensorAugment`."""
    if isinstance(val_per_class, bool) or not isinstance(val_per_class, (int, np.integer)) \
            or not 0 <= val_per_class < 6000:
        raise HafclsError(f"val_per_class must be an int in 0..5999, got {val_per_class!r}.",
                          "pass e.g. val_per_class=500.")
    limits = _per_class(per_class)
    files = locate_fashion_mnist(data_dir, download)
    h = fashion_mnist_hierarchy() if hierarchy is None else resolve_hierarchy(hierarchy)
    table = map_labels(list(CLASSES), h, "Fashion-MNIST")  # label -> class index in h
    if train_transform is None:
        train_transform = TensorAugment(image_size, True, mean, std, channels, padding, hflip)
    if eval_transform is None:
        eval_transform = TensorAugment(image_size, False, mean, std, channels)
    train_x, train_y = read_split_files(*files["train"])
    test_x, test_y = read_split_files(*files["test"])
    counts = np.bincount(train_y, minlength=len(CLASSES))
    if counts.min() <= val_per_class:
        raise HafclsError(
            f"Class {CLASSES[int(counts.argmin())]!r} has {int(counts.min())} training images, "
            f"not more than the {val_per_class} held out for validation.",
            "lower val_per_class.")
    held = last_per_class(train_y, val_per_class)
    sources = {"train": (train_x, train_y, ~held), "val": (train_x, train_y, held),
               "test": (test_x, test_y, np.ones(len(test_y), dtype=bool))}
    out = []
    for split, (x, y, keep) in sources.items():
        check_split(split)
        idx = np.flatnonzero(keep)
        idx = idx[first_per_class(y[idx], limits[split])]
        tf = train_transform if split == "train" else eval_transform
        ds = InMemoryImageDataset(x[torch.from_numpy(idx)], table[y[idx]], h, tf, split)
        ds.source_indices = idx  # positions in the official file (for checks and analyses)
        out.append(ds)
    return h, out[0], out[1], out[2]


@register_dataset(
    "fashion-mnist", image_size=IMAGE_SIDE, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD,
    hflip=0.5, aliases=("fmnist", "fashionmnist"), skip_corrupt=False,
    options=(Option("per_class", (int, dict, list, tuple), nullable=True),
             Option("val_per_class", int, 0, 5999), Option("channels", int, 1, 3),
             Option("padding", int, 0, None)),
    help="Fashion-MNIST from its IDX files (Debian's dataset-fashion-mnist), 55k/5k/10k, "
         "in memory.")
def build_fashion_mnist(req: DatasetRequest):
    """Registry builder. The user's transforms are used as given (per item, on PIL images);
    the default ones are replaced by the batched :class:`TensorAugment` at the same size,
    mean, std and flip probability (``--data-dir`` defaults to Debian's folder)."""
    opts = dict(req.options)
    tf: list = [req.train_transform, req.eval_transform]
    for i, split in enumerate(("train", "eval")):
        stats = req.default_pipelines.get(split)
        if stats is not None:  # build_datasets' own pipeline -> the batched tensor path
            tf[i] = None
            opts.setdefault("mean", stats["mean"])
            opts.setdefault("std", stats["std"])
            if split == "train":
                opts.setdefault("hflip", stats["hflip"])
    h, train, val, test = fashion_mnist_splits(
        req.data_dir, req.hierarchy, req.download, train_transform=tf[0], eval_transform=tf[1],
        image_size=req.image_size, **opts)
    files = locate_fashion_mnist(req.data_dir)
    info = {"files": str(files["train"][0].parent), "val_per_class":
            opts.get("val_per_class", VAL_PER_CLASS), "per_class": opts.get("per_class"),
            "train_transform": repr(train.transform)}
    return h, train, val, test, info


if __name__ == "__main__":  # regenerate the shipped hierarchy file
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "hierarchies/fashion-mnist.json"
    print(fashion_mnist_hierarchy().to_json(target))
