"""Long-tailed evaluation: shot-group accuracy and minority collapse (docs/mixup_and_imbalance.md).

Shot groups (Liu et al. 2019, the long-tailed benchmarks' convention), from the number of
*training* images per class: ``many`` > 100, ``medium`` 20–100 (both ends included), ``few`` < 20.
Group accuracy is the mean of the per-class top-1 accuracies of the group's classes that occur
among the evaluated labels (the sample mean on a balanced test set). A group with no such class
gives NaN; the run files store it as ``null``.

Minority collapse (Fang et al., PNAS 2021): under imbalance a learnable classifier's vectors for
the rare classes drift towards one direction. ``minority_collapse`` is the mean over pairs
i < j of the rare classes of ``cos(w_i, w_j)``: −1/(R−1) for R vectors of a simplex, 1 at full
collapse. For a fixed frame the classifier cannot move, so the same number is taken over the
rare classes' mean features (:func:`minority_collapse_from_means`), the vectors the fixed frame
is meant to keep apart.

The rare classes (:func:`rarest_classes`): ``n_rare`` given, else the few-shot classes when
there are at least two of them, else the rarest ``max(2, ⌈K/10⌉)`` classes. Classes are ordered
by training count, ties by the lower class index, so the choice is deterministic.

Vectors are used as they are (no centring, and a linear head's bias is ignored) unless
``centre=True``, which subtracts the mean over all K vectors first (Papyan's global-mean
convention). A zero vector has cosine 0 with everything.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.metrics.collapse import _cosines
from hafcls.metrics.inputs import as_float64

MANY_SHOT_ABOVE = 100  # many-shot: more than 100 training images
FEW_SHOT_BELOW = 20  # few-shot: fewer than 20; medium is 20..100 inclusive


# ---------------------------------------------------------------------- shot groups
def _counts(train_counts) -> np.ndarray:
    counts = np.asarray(train_counts.detach().cpu() if hasattr(train_counts, "detach")
                        else train_counts)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise HafclsError("train_counts must be a non-empty 1-D array of image counts per class.",
                          "pass np.bincount(train_targets, minlength=K).")
    return counts


def shot_groups(train_counts) -> dict[str, np.ndarray]:
    """Boolean class masks ``{"many", "medium", "few"}`` from the training images per class."""
    counts = _counts(train_counts)
    return {
        "many": counts > MANY_SHOT_ABOVE,
        "medium": (counts >= FEW_SHOT_BELOW) & (counts <= MANY_SHOT_ABOVE),
        "few": counts < FEW_SHOT_BELOW,
    }


def shot_group_sizes(train_counts) -> dict[str, int]:
    """Number of classes in each shot group (for the run's metadata)."""
    return {f"{k}_shot_classes": int(v.sum()) for k, v in shot_groups(train_counts).items()}


def shot_accuracy(pred, target, train_counts) -> dict[str, float]:
    """``{"many_shot", "medium_shot", "few_shot"}``: mean per-class top-1 accuracy per group.

    ``pred`` and ``target`` are the class indices of the evaluated samples (numpy or torch).
    """
    pred, target = _as_index(pred, "pred"), _as_index(target, "target")
    counts = _counts(train_counts)
    if pred.shape != target.shape or pred.ndim != 1:
        raise HafclsError(f"pred and target must be 1-D of equal length, got {pred.shape} and "
                          f"{target.shape}.", "pass one predicted class per target.")
    k = counts.shape[0]
    if target.size and (target.max() >= k or target.min() < 0):
        raise HafclsError(f"target holds a class outside 0..{k - 1}.",
                          "pass train_counts with one entry per class.")
    seen = np.bincount(target, minlength=k)
    hits = np.bincount(target, weights=(pred == target).astype(np.float64), minlength=k)
    return shot_accuracy_from_counts(hits, seen, counts)


def shot_accuracy_from_counts(hits, seen, train_counts) -> dict[str, float]:
    """:func:`shot_accuracy` from per-class correct and evaluated counts (K each), e.g. summed
    over DDP ranks by an evaluation loop."""
    counts = _counts(train_counts)
    hits = np.asarray(hits, dtype=np.float64)
    seen = np.asarray(seen, dtype=np.float64)
    k = counts.shape[0]
    if hits.shape != (k,) or seen.shape != (k,):
        raise HafclsError(f"hits and seen must hold one count per class ({k}).",
                          "pass per-class K-vectors.")
    per_class = np.divide(hits, seen, out=np.full(k, np.nan), where=seen > 0)
    out = {}
    for name, mask in shot_groups(counts).items():
        present = mask & (seen > 0)
        out[f"{name}_shot"] = float(per_class[present].mean()) if present.any() else math.nan
    return out


def _as_index(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise HafclsError(f"{name} must hold integer class indices, got {x.dtype}.",
                          "pass argmax predictions and integer labels.")
    return x.astype(np.int64)


# ---------------------------------------------------------------------- minority collapse
def rarest_classes(train_counts, n_rare: int | None = None) -> np.ndarray:
    """Indices of the rare classes (see the module docstring), rarest first."""
    counts = _counts(train_counts)
    k = counts.size
    order = np.lexsort((np.arange(k), counts))  # by count, ties by the lower index
    if n_rare is None:
        few = int((counts < FEW_SHOT_BELOW).sum())
        n_rare = few if few >= 2 else max(2, math.ceil(k / 10))
    n_rare = int(n_rare)
    if not 2 <= n_rare <= k:
        raise HafclsError(f"n_rare must be between 2 and the number of classes ({k}), got "
                          f"{n_rare}.", "pick at least two rare classes.")
    return order[:n_rare]


def mean_pairwise_cosine(vectors) -> float:
    """Mean over pairs i < j of ``cos(v_i, v_j)`` for the rows of ``vectors`` (R x d)."""
    v = as_float64(vectors, "vectors")
    if v.ndim != 2 or v.shape[0] < 2:
        raise HafclsError(f"Need at least two vectors (rows), got shape {tuple(v.shape)}.",
                          "pass R x d vectors with R >= 2.")
    i, j = torch.triu_indices(v.shape[0], v.shape[0], offset=1)
    return float(_cosines(v)[i, j].mean())  # R x R Gram, not an R²/2 x d gather of pairs


def minority_collapse(classifier_vectors, train_counts, n_rare: int | None = None,
                      centre: bool = False) -> float:
    """Mean pairwise cosine of the rare classes' classifier vectors (``classifier_vectors``
    d x K, as ``head.class_vectors()`` returns them)."""
    w = as_float64(classifier_vectors, "classifier_vectors")
    counts = _counts(train_counts)
    if w.ndim != 2 or w.shape[1] != counts.size:
        raise HafclsError(
            f"classifier_vectors must be d x K with K = {counts.size} (one column per class), "
            f"got shape {tuple(w.shape)}.", "pass head.class_vectors() and the train counts.")
    vectors = w.t()
    if centre:
        vectors = vectors - vectors.mean(dim=0, keepdim=True)
    return mean_pairwise_cosine(vectors[torch.as_tensor(rarest_classes(counts, n_rare))])


def minority_collapse_from_means(features, labels, train_counts, n_rare: int | None = None,
                                 centre: bool = False) -> float:
    """Mean pairwise cosine of the rare classes' mean features (``features`` N x d with
    ``labels``): the minority-collapse measure for fixed classifiers."""
    h = as_float64(features, "features")
    counts = _counts(train_counts)
    y = torch.as_tensor(_as_index(labels, "labels"))
    if h.ndim != 2 or y.ndim != 1 or y.shape[0] != h.shape[0]:
        raise HafclsError(f"features ({tuple(h.shape)}) and labels ({tuple(y.shape)}) must "
                          "be N x d and N.", "pass one label per feature row.")
    k = counts.size
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
        raise HafclsError(f"labels hold a class outside 0..{k - 1}.",
                          "pass train_counts with one entry per class.")
    sums = torch.zeros(k, h.shape[1], dtype=torch.float64).index_add_(0, y, h)
    n = torch.bincount(y, minlength=k).double()
    rare = torch.as_tensor(rarest_classes(counts, n_rare))
    if centre:
        if (n == 0).any():
            raise HafclsError("Centring needs every class's mean, but some classes have no "
                              "feature.", "pass the training split's features, or centre=False.")
        means = sums / n[:, None]
        return mean_pairwise_cosine((means - means.mean(dim=0, keepdim=True))[rare])
    if (n[rare] == 0).any():
        missing = rare[n[rare] == 0][:5].tolist()
        raise HafclsError(f"Rare classes {missing} have no feature to average.",
                          "pass the training split's features.")
    return mean_pairwise_cosine(sums[rare] / n[rare, None])
