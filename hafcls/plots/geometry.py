"""Class order of the tree and the target-vs-realised cosine figure."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from hafcls.errors import HafclsError
from hafcls.plots.base import _check_series, new_figure


# ---------------------------------------------------------------------- class order
def class_order(hierarchy) -> np.ndarray:
    """Class indices in depth-first tree order, so that subtrees form blocks in a K x K image."""
    anc = np.asarray(hierarchy.ancestor_matrix)
    if anc.shape[1] <= 1:
        return np.arange(anc.shape[0])
    # lexsort's last key is the primary one: ancestor at depth 1 first, then depth 2, ...
    keys = tuple(anc[:, t] for t in range(anc.shape[1] - 1, 0, -1))
    return np.lexsort(keys)


def class_mean_cosines(class_means) -> np.ndarray:
    """Pairwise cosines of the rows of a K x d array of class means (zero rows give 0)."""
    means = np.asarray(class_means, dtype=np.float64)
    if means.ndim != 2:
        raise HafclsError(f"class_means must be K x d, got shape {means.shape}.",
                          "give one mean feature vector per class.")
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    unit = np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)
    return unit @ unit.T


# ---------------------------------------------------------------------- (1) similarity
def plot_similarity(target, realised: Mapping[str, np.ndarray], order=None,
                    title: str | None = None):
    """The target cosine matrix S beside the realised cosines of class means, one panel each.

    Parameters
    ----------
    target:
        K x K target cosines S (e.g. :func:`hafcls.frames.target_similarity`).
    realised:
        label -> K x K realised cosines (e.g. :func:`class_mean_cosines` of a model's features).
    order:
        Optional permutation of the K classes (e.g. :func:`class_order`) applied to every matrix.

    Returns a figure with ``1 + len(realised)`` panels (at most four per row) and one shared
    colorbar over [-1, 1]; each realised panel's title gives the mean and max ``|cos - S|`` over
    pairs of distinct classes.
    """
    _check_series("realised", realised)
    s = np.asarray(target, dtype=np.float64)
    k = s.shape[0]
    if s.ndim != 2 or s.shape != (k, k):
        raise HafclsError(f"target must be a square K x K matrix, got shape {s.shape}.",
                          "pass the K x K target cosine matrix S.")
    mats = {}
    for label, m in realised.items():
        m = np.asarray(m, dtype=np.float64)
        if m.shape != s.shape:
            raise HafclsError(f"realised[{label!r}] has shape {m.shape}, target has {s.shape}.",
                              "give realised cosines over the same classes as the target.")
        mats[label] = m
    perm = np.arange(k) if order is None else np.asarray(order)
    if sorted(perm.tolist()) != list(range(k)):
        raise HafclsError("order must be a permutation of the class indices.",
                          "pass e.g. hafcls.plots.class_order(hierarchy).")
    ix = np.ix_(perm, perm)
    count = 1 + len(mats)
    ncols = min(count, 4)
    fig, axes = new_figure(ncols, nrows=math.ceil(count / ncols), panel_size=(4.2, 4.4))
    for ax in axes[count:]:  # unused cells of the last row
        fig.delaxes(ax)
    axes = axes[:count]
    off = ~np.eye(k, dtype=bool)
    image = axes[0].imshow(s[ix], vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
    axes[0].set_title("target S")
    for ax, (label, m) in zip(axes[1:], mats.items()):
        ax.imshow(m[ix], vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        err = np.abs(m - s)[off] if k > 1 else np.zeros(1)
        ax.set_title(f"{label}: cos of class means\n|cos − S| mean {err.mean():.3f}, "
                     f"max {err.max():.3f}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("class (tree order)")
        ax.set_ylabel("class (tree order)")
    fig.colorbar(image, ax=axes, shrink=0.85, label="cosine")
    if title:
        fig.suptitle(title)
    return fig
