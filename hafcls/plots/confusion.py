"""The confusion matrix in tree order: subtrees are blocks, their boundaries are drawn.

Classes are put in depth-first order of the hierarchy (:func:`class_order`), so every internal
node's classes are one contiguous block of rows and of columns; mistakes inside a block are the
mild ones (shared ancestor), mistakes outside all blocks the severe ones. Lines mark the block
boundaries at depth 1 (solid) and depth 2 (dashed), and brackets above the matrix name the
depth-1 groups. Axes carry class names up to ``max_named`` classes, class indices beyond.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from hafcls.errors import HafclsError
from hafcls.plots.base import _check_series, new_figure
from hafcls.plots.geometry import class_order

MAX_NAMED = 40  # class names on the axes up to this many classes
MAX_GROUP_LABELS = 24  # depth-1 group names above the matrix up to this many groups
ANNOTATE_MAX = 12  # cell percentages written in the matrix up to this many classes


def confusion_matrix(predictions, targets, num_classes: int) -> np.ndarray:
    """K x K counts: row = true class, column = predicted class (int64)."""
    pred = np.asarray(predictions, dtype=np.int64).ravel()
    true = np.asarray(targets, dtype=np.int64).ravel()
    k = int(num_classes)
    if pred.shape != true.shape:
        raise HafclsError("predictions and targets must have the same length.",
                          "pass one predicted and one true class index per sample.")
    if pred.size and (min(pred.min(), true.min()) < 0 or max(pred.max(), true.max()) >= k):
        raise HafclsError(f"class indices must lie in 0..{k - 1}.",
                          "pass indices into hierarchy.classes.")
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def tree_blocks(hierarchy, order, depth: int) -> list[tuple[int, int, str]]:
    """``(start, stop, node)`` runs of the ordered classes that share their ancestor at
    ``depth`` (a class shallower than ``depth`` is a block of its own)."""
    anc = np.asarray(hierarchy.ancestor_matrix)[np.asarray(order), depth]
    starts = np.flatnonzero(np.r_[True, anc[1:] != anc[:-1]])
    stops = np.r_[starts[1:], anc.size]
    nodes = hierarchy.nodes
    return [(int(a), int(b), nodes[anc[a]]) for a, b in zip(starts, stops)]


def group_boundaries(hierarchy, order, depth: int) -> np.ndarray:
    """Positions p (1..K-1) in ``order`` where a new block of depth ``depth`` starts."""
    return np.array([a for a, _, _ in tree_blocks(hierarchy, order, depth)[1:]], dtype=np.int64)


def _boundary_depths(hierarchy, depths) -> tuple[int, ...]:
    if depths is None:  # the internal levels right below the root (depth H holds classes)
        return tuple(range(1, min(hierarchy.height, 3)))
    bad = [t for t in depths if not 1 <= int(t) <= hierarchy.height]
    if bad:
        raise HafclsError(f"depths {bad} are outside 1..{hierarchy.height}.",
                          "mark depths of the hierarchy's internal nodes, e.g. (1, 2).")
    return tuple(int(t) for t in depths)


def _as_counts(label: str, value, k: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr.sum(axis=0)  # seeds x K x K: pooled over seeds
    if arr.shape != (k, k):
        raise HafclsError(f"confusions[{label!r}] has shape {arr.shape}, the hierarchy has {k} "
                          "classes.", "give K x K counts (or seeds x K x K) over its classes.")
    return arr


def _label_axes(ax, hierarchy, order, max_named: int) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    k = len(order)
    if k <= max_named:
        names = [hierarchy.name(hierarchy.classes[i]) for i in order]
        ax.set_xticks(range(k), names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
    else:  # positions in tree order, labelled with the original class index
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=8, integer=True))
            axis.set_major_formatter(FuncFormatter(
                lambda pos, _, o=order: str(int(o[int(pos)])) if 0 <= pos < len(o) else ""))
    ax.set_xlabel("predicted class" + ("" if k <= max_named else " (index; tree order)"))
    ax.set_ylabel("true class" + ("" if k <= max_named else " (index; tree order)"))


def _mark_groups(ax, hierarchy, order, depths: tuple[int, ...]) -> None:
    """Lines at the block boundaries, and a top axis naming the depth-1 groups, its long ticks
    bracketing each group."""
    for t in depths:
        style = {"color": "black", "lw": 1.3} if t == min(depths) else \
            {"color": "0.3", "lw": 0.7, "ls": "--"}
        for p in group_boundaries(hierarchy, order, t):
            ax.axhline(p - 0.5, **style)
            ax.axvline(p - 0.5, **style)
    if not depths:
        return
    blocks = tree_blocks(hierarchy, order, min(depths))
    if len(blocks) > MAX_GROUP_LABELS:
        return
    top = ax.secondary_xaxis("top")  # a real axis, so the layout engine makes room for it
    top.set_xticks([(a + b - 1) / 2 for a, b, _ in blocks],
                   [hierarchy.name(node) for _, _, node in blocks], fontsize=7,
                   rotation=0 if len(blocks) <= 6 else 60)
    top.set_xticks([a - 0.5 for a, _, _ in blocks] + [len(order) - 0.5], minor=True)
    top.tick_params(which="major", length=0)
    top.tick_params(which="minor", length=14, width=1.0)


def within_group_share(counts: np.ndarray, hierarchy, depth: int = 1) -> float:
    """Share of the mistakes whose predicted class shares the true class's ancestor at
    ``depth`` (nan when there are no mistakes)."""
    anc = np.asarray(hierarchy.ancestor_matrix)[:, depth]
    off = counts * (1 - np.eye(counts.shape[0]))
    total = off.sum()
    return float((off * (anc[:, None] == anc[None, :])).sum() / total) if total else math.nan


def plot_confusion(confusions: Mapping[str, np.ndarray], hierarchy, *, normalise: bool = True,
                   log: bool = True, max_named: int = MAX_NAMED, depths=None,
                   title: str | None = None):
    """One tree-ordered confusion matrix per label (method), sharing one colour scale.

    ``confusions[label]``: K x K counts (row true, column predicted; seeds x K x K are summed).
    ``normalise``: each row divided by its count (share of the true class), else counts;
    ``log``: logarithmic colour scale (zero cells left blank), else linear. ``depths``: the
    depths whose block boundaries are drawn (default 1 and 2, below the class level). Panel
    titles give top-1 accuracy and the share of mistakes that stay inside their depth-1 group.
    """
    _check_series("confusions", confusions)
    from matplotlib.colors import LogNorm, Normalize

    k = hierarchy.num_classes
    order = class_order(hierarchy)
    depths = _boundary_depths(hierarchy, depths)
    ix = np.ix_(order, order)
    mats, titles = {}, {}
    for label, value in confusions.items():
        counts = _as_counts(label, value, k)
        if counts.sum() <= 0:
            raise HafclsError(f"confusions[{label!r}] holds no samples.",
                              "give the counts of at least one test sample.")
        shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalise \
            else counts
        mats[label] = shown[ix]
        acc = np.trace(counts) / counts.sum()
        inside = within_group_share(counts, hierarchy) if hierarchy.height > 1 else math.nan
        titles[label] = f"{label}: top-1 {100 * acc:.1f}%" + (
            "" if math.isnan(inside) else f"\nmistakes inside a depth-1 group: {100 * inside:.0f}%")
    vmax = 1.0 if normalise else max(float(m.max()) for m in mats.values())
    if log:  # shares from 0.1% (or the smallest one) up; counts from one sample
        smallest = min(float(m[m > 0].min()) for m in mats.values())
        vmin = min(max(smallest, 1e-3), vmax / 10) if normalise else min(1.0, vmax / 10)
        norm = LogNorm(vmin=vmin, vmax=vmax)
    else:
        norm = Normalize(vmin=0, vmax=vmax)
    named = k <= max_named
    count = len(mats)
    ncols = min(count, 3)
    fig, axes = new_figure(ncols, nrows=math.ceil(count / ncols),
                           panel_size=(5.4, 5.4) if named else (4.6, 4.4))
    for ax in axes[count:]:
        fig.delaxes(ax)
    axes = axes[:count]
    from hafcls.plots.base import _matplotlib

    cmap = _matplotlib().colormaps["viridis"].with_extremes(bad="white")
    image = None
    for ax, (label, m) in zip(axes, mats.items()):
        shown = np.ma.masked_less_equal(m, 0) if log else m
        image = ax.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest")
        if k <= ANNOTATE_MAX:
            for (i, j), v in np.ndenumerate(m):
                if v > 0 and (not normalise or v >= 0.005):
                    text = f"{100 * v:.0f}" if normalise else f"{int(v)}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6,
                            color="white" if norm(v) < 0.6 else "black")
        _label_axes(ax, hierarchy, order, max_named)
        _mark_groups(ax, hierarchy, order, depths)
        ax.set_title(titles[label], fontsize=9)
    what = "share of the true class" if normalise else "samples"
    fig.colorbar(image, ax=axes, shrink=0.8,
                 label=what + (" (log scale)" if log else ""))
    if title:
        fig.suptitle(title)
    return fig
