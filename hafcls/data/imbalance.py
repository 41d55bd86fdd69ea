"""Long-tailed training subsets and shot-group accuracy (docs/mixup_and_imbalance.md).

Profiles (class rank r = 0 … K−1, rank 0 the most frequent; ρ ≥ 1 the imbalance ratio):

- ``"exponential"``: ``n_r = int(n_max · (1/ρ)^(r/(K−1)))``, the CIFAR-10/100-LT convention
  (Cao et al. 2019): the fraction is *truncated* by ``int()``, not rounded, which gives the
  published totals (CIFAR-100-LT, ρ = 100: 10,847 images; CIFAR-10-LT, ρ = 100: 12,406).
- ``"step"``: the first ⌈K/2⌉ ranks keep ``n_max``, the other ⌊K/2⌋ get ``int(n_max/ρ)``.

Which classes are rare (``rare``): ``"last"`` (class index c has rank c, so the highest indices
are rarest, the LT benchmarks' convention), ``"first"`` (rank K−1−c) or ``"random"`` (a seeded
permutation of the ranks).

The subset keeps, for every class c, the first ``n_c`` of its samples in a seeded random order
of the whole split, so different seeds draw different images and the same seed the same ones.
Only the training split is subsampled; validation and test stay as they are.

Shot groups and shot accuracy live in :mod:`hafcls.metrics.minority` (re-exported here):
*many* > 100 training images, *medium* 20–100, *few* < 20.
"""

from __future__ import annotations

import numpy as np

from hafcls.data.base import rank_in_class
from hafcls.errors import HafclsError

# the shot groups are evaluation metrics (metrics layer); re-exported for the data side
from hafcls.metrics.minority import (  # noqa: F401
    FEW_SHOT_BELOW,
    MANY_SHOT_ABOVE,
    shot_accuracy,
    shot_accuracy_from_counts,
    shot_group_sizes,
    shot_groups,
)

PROFILES = ("exponential", "step")
RARE_ORDERS = ("last", "first", "random")


def _check_options(ratio: float, profile: str, rare: str) -> float:
    if profile not in PROFILES:
        raise HafclsError(f"Unknown imbalance profile {profile!r}.", f"use one of {PROFILES}.")
    if rare not in RARE_ORDERS:
        raise HafclsError(f"Unknown rare-class order {rare!r}.", f"use one of {RARE_ORDERS}.")
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not (ratio >= 1.0 and np.isfinite(ratio)):
        raise HafclsError(
            f"The imbalance ratio must be a finite number >= 1, got {ratio!r}.",
            "use e.g. --imbalance 100 (1 keeps the classes balanced).",
        )
    return ratio


def class_ranks(num_classes: int, rare: str = "last", seed: int = 0) -> np.ndarray:
    """Frequency rank of every class (0 = most frequent), indexed by class."""
    if rare == "last":
        return np.arange(num_classes)
    if rare == "first":
        return np.arange(num_classes)[::-1].copy()
    if rare == "random":
        return np.random.default_rng(seed).permutation(num_classes)
    raise HafclsError(f"Unknown rare-class order {rare!r}.", f"use one of {RARE_ORDERS}.")


def class_counts(n_max: int, num_classes: int, ratio: float, profile: str = "exponential",
                 rare: str = "last", seed: int = 0) -> np.ndarray:
    """Training images per class (int64, indexed by class) for the long-tailed profile."""
    ratio = _check_options(ratio, profile, rare)
    if int(num_classes) < 2 or int(n_max) < 1:
        raise HafclsError(
            f"An imbalance profile needs >= 2 classes and n_max >= 1, got K={num_classes}, "
            f"n_max={n_max}.", "check the dataset's training split.",
        )
    k, n_max = int(num_classes), int(n_max)
    r = np.arange(k, dtype=np.float64)
    if profile == "exponential":
        # written (1/ρ)^(r/(K−1)) as in the LT benchmarks' code; int() truncates, so a value one
        # ulp below a whole number would lose an image: keep the reference's exact expression
        by_rank = np.array([int(n_max * (1.0 / ratio) ** (x / (k - 1.0))) for x in r])
    else:
        by_rank = np.where(r < k - k // 2, n_max, int(n_max / ratio))
    if by_rank.min() < 1:
        raise HafclsError(
            f"Imbalance ratio {ratio:g} leaves the rarest classes with no image (n_max = "
            f"{n_max}).", f"use a ratio of at most {n_max} for this dataset.",
        )
    return by_rank.astype(np.int64)[class_ranks(k, rare, seed)]


def imbalanced_indices(labels, ratio: float, profile: str = "exponential", rare: str = "last",
                       seed: int = 0, n_max: int | None = None,
                       num_classes: int | None = None) -> np.ndarray:
    """Sorted indices into ``labels`` of the long-tailed training subset.

    ``n_max`` defaults to the smallest class size present, so every class can supply its
    quota (the benchmarks start from a balanced split); a larger ``n_max`` that some class
    cannot supply raises an error. Classes without any sample raise too.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise HafclsError("labels must be a non-empty 1-D array of class indices.",
                          "pass the training split's targets.")
    if labels.min() < 0:
        raise HafclsError("labels hold a negative class index.", "use indices 0..K-1.")
    k = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    if labels.max() >= k:
        raise HafclsError(f"labels hold class {int(labels.max())} but num_classes is {k}.",
                          "pass the hierarchy's number of classes.")
    available = np.bincount(labels, minlength=k)
    if (available == 0).any():
        missing = np.flatnonzero(available == 0)[:5].tolist()
        raise HafclsError(f"Classes {missing} have no training image; an imbalance profile "
                          "needs every class.", "check the dataset's training split.")
    n_max = int(available.min()) if n_max is None else int(n_max)
    counts = class_counts(n_max, k, ratio, profile, rare, seed)
    short = np.flatnonzero(counts > available)
    if short.size:
        c = int(short[0])
        raise HafclsError(
            f"Class {c} has {int(available[c])} training images but the profile asks for "
            f"{int(counts[c])}.", f"use n_max <= {int(available.min())}.",
        )
    # a seeded shuffle, then each class's first n_c samples in that order
    shuffle = np.random.default_rng(seed).permutation(labels.size)
    rank = np.empty(labels.size, dtype=np.int64)
    rank[shuffle] = rank_in_class(labels[shuffle])
    return np.flatnonzero(rank < counts[labels])


class LabelledSubset:
    """A subset of a dataset with ``targets``; everything else is read from the full dataset.

    Setting ``transform`` sets it on the full dataset (the subset has no copy of its own), so
    :meth:`DataBundle.set_transforms` works unchanged on an imbalanced training split.
    """

    def __init__(self, dataset, indices):
        self.__dict__["base"] = dataset
        self.__dict__["indices"] = np.asarray(indices, dtype=np.int64)
        self.__dict__["targets"] = np.asarray(dataset.targets)[self.indices]

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, index: int):
        return self.base[int(self.indices[index])]

    def class_counts(self) -> np.ndarray:
        k = getattr(getattr(self.base, "hierarchy", None), "num_classes", None)
        return np.bincount(self.targets, minlength=k or 0)

    def __getattr__(self, name: str):
        if name in ("base", "indices", "targets"):  # during unpickling: no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __setattr__(self, name: str, value) -> None:
        if name in ("base", "indices", "targets"):
            self.__dict__[name] = value
        else:
            setattr(self.base, name, value)

    def __repr__(self) -> str:
        return f"LabelledSubset({self.base!r}, n={len(self)})"


def imbalanced_subset(dataset, ratio: float, profile: str = "exponential", rare: str = "last",
                      seed: int = 0, n_max: int | None = None):
    """The long-tailed subset of a training ``dataset`` that has ``targets``.

    Uses the dataset's own ``subset(indices)`` when it has one (image-file datasets), else
    wraps it in :class:`LabelledSubset`.
    """
    if not hasattr(dataset, "targets"):
        raise HafclsError(f"{type(dataset).__name__} exposes no targets, so it cannot be "
                          "subsampled per class.", "give the dataset a `targets` array.")
    k = getattr(getattr(dataset, "hierarchy", None), "num_classes", None)
    idx = imbalanced_indices(np.asarray(dataset.targets), ratio, profile, rare, seed, n_max, k)
    if hasattr(dataset, "subset"):
        return dataset.subset(idx)
    return LabelledSubset(dataset, idx)
