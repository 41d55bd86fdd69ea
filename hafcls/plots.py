"""Figures for comparing methods: target vs realised cosines, mistake distances, HierDist@k and
training curves.

Every ``plot_*`` function takes plain arrays and dicts (no model, no files) and returns a
:class:`matplotlib.figure.Figure`; :func:`save_figure` writes it as a PNG atomically. Figures are
drawn on the Agg canvas without :mod:`matplotlib.pyplot`, so nothing global is touched and no
display is needed.

matplotlib is an optional dependency (``pip install hafcls[plots]``): it is imported only when a
figure is drawn, and a missing install raises :class:`~hafcls.errors.HafclsError` saying so.

Series are keyed by a label (usually the method name) and drawn in the order given, each label
with the same colour in every figure. Where several seeds are given, lines and bars show the mean
over seeds and the shaded band or error bar spans the lowest to the highest seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hafcls.errors import HafclsError
from hafcls.io import atomic_write

COLORBAR_LABEL = "<colorbar>"  # matplotlib's own label of colorbar axes
DPI = 120  # resolution of saved PNGs


# ---------------------------------------------------------------------- matplotlib access
def _matplotlib():
    """Import matplotlib lazily with the Agg backend, or explain how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise HafclsError("Plotting needs matplotlib, which is not installed.",
                          "run `pip install hafcls[plots]` (or pip install matplotlib).") from None
    # figures are drawn on an explicit Agg canvas (new_figure), so pyplot's backend is left alone
    return matplotlib


def new_figure(ncols: int, nrows: int = 1, panel_size: tuple[float, float] = (4.6, 3.6)):
    """A figure on an Agg canvas with ``nrows x ncols`` panels; returns ``(fig, axes_list)``."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def panels(fig) -> list:
    """The data panels of ``fig`` (its axes without colorbars)."""
    return [ax for ax in fig.axes if ax.get_label() != COLORBAR_LABEL]


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` as a PNG (atomically) and return the path."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def _colours(labels: Sequence[str]) -> dict[str, tuple]:
    matplotlib = _matplotlib()
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _method_legend(fig, colours: Mapping[str, tuple]) -> None:
    """One legend for the whole figure, a coloured line per label, outside the panels."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=6) for c in colours.values()]
    fig.legend(handles, list(colours), loc="outside right upper", fontsize=8, frameon=False)


def _check_series(name: str, series: Mapping) -> None:
    if not isinstance(series, Mapping) or not series:
        raise HafclsError(f"{name} must be a non-empty mapping of label to values.",
                          f"pass e.g. {{'haframe': ...}} as {name}.")


def _as_seed_rows(label: str, values, name: str) -> np.ndarray:
    """``values`` as a float 2-D array, one row per seed (a 1-D array is one seed)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.size == 0:
        raise HafclsError(f"{name}[{label!r}] must be a 1-D array or a seeds x values array, got "
                          f"shape {arr.shape}.", "give one row of values per seed.")
    return arr


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


# ---------------------------------------------------------------------- (2) mistake distances
def _crm_panels(name: str, series: dict, crm_series: dict | None):
    """One panel for ``series`` and, when given, one for its CRM re-ranked counterpart; each
    method keeps one colour across panels. Returns ``(groups, colours, fig, axes)``."""
    groups = {name: series}
    if crm_series is not None:
        groups[f"{name} with CRM"] = crm_series
    for title, group in groups.items():
        _check_series(title, group)
    labels = list(dict.fromkeys(lbl for group in groups.values() for lbl in group))
    fig, axes = new_figure(len(groups))
    return groups, _colours(labels), fig, axes


def plot_mistake_histograms(histograms: Mapping[str, np.ndarray],
                            crm_histograms: Mapping[str, np.ndarray] | None = None,
                            title: str | None = None):
    """Grouped bars of the top-1 mistake distances per method.

    ``histograms[label]`` holds counts of test samples by the distance of their top-1
    prediction, index d = 0, 1, ..., d_max (index 0: correct), one row per seed or a single row.
    Bars show the share of all test samples whose top-1 prediction is a mistake at distance d
    (d >= 1), mean over seeds, with a min-max error bar over seeds. With ``crm_histograms`` a
    second panel shows the same after CRM re-ranking.
    """
    groups, colours, fig, axes = _crm_panels("top-1 mistakes", histograms, crm_histograms)
    labels = list(colours)  # methods in first-seen order
    d_max = max(_as_seed_rows(lbl, h, "histograms").shape[1] - 1
                for series in groups.values() for lbl, h in series.items())
    dist = np.arange(1, max(d_max, 1) + 1)
    width = 0.8 / max(len(labels), 1)
    for ax, (name, series) in zip(axes, groups.items()):
        for i, label in enumerate(labels):
            if label not in series:
                continue
            rows = _as_seed_rows(label, series[label], "histograms")
            totals = rows.sum(axis=1, keepdims=True)
            if (totals <= 0).any():
                raise HafclsError(f"histograms[{label!r}] has a seed with no samples.",
                                  "give per-distance sample counts (index 0 = correct).")
            pct = np.zeros((rows.shape[0], dist.size))
            cols = min(rows.shape[1] - 1, dist.size)
            pct[:, :cols] = 100.0 * rows[:, 1:cols + 1] / totals
            mean = pct.mean(axis=0)
            err = None
            if rows.shape[0] > 1:
                err = np.stack([mean - pct.min(axis=0), pct.max(axis=0) - mean])
            x = dist + (i - (len(labels) - 1) / 2) * width
            ax.bar(x, mean, width=width, color=colours[label], label=label, yerr=err,
                   capsize=2, error_kw={"elinewidth": 0.8})
        ax.set_xticks(dist)
        ax.set_xlabel("hierarchical distance of the top-1 mistake")
        ax.set_ylabel("% of test samples")
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    _method_legend(fig, colours)
    if title:
        fig.suptitle(title)
    return fig


def mistake_histogram(predictions, targets, distance, d_max: int | None = None) -> np.ndarray:
    """Counts of samples by ``distance[target, prediction]``: index 0 correct, d = 1..d_max."""
    d = np.asarray(distance)
    pred = np.asarray(predictions, dtype=np.int64)
    true = np.asarray(targets, dtype=np.int64)
    if pred.shape != true.shape or pred.ndim != 1:
        raise HafclsError("predictions and targets must be 1-D arrays of the same length.",
                          "pass one predicted and one true class index per sample.")
    d_max = int(d.max()) if d_max is None else int(d_max)
    return np.bincount(d[true, pred].astype(np.int64), minlength=d_max + 1)[: d_max + 1]


# ---------------------------------------------------------------------- (3) HierDist@k
def plot_hierdist_curves(curves: Mapping[str, np.ndarray],
                         crm_curves: Mapping[str, np.ndarray] | None = None,
                         title: str | None = None):
    """HierDist@k against k per method (value at index k-1), one row per seed or one row.

    Lines are the mean over seeds, the band spans the lowest to the highest seed. With
    ``crm_curves`` a second panel shows the curves after CRM re-ranking. A log k axis is used
    when k goes beyond 50.
    """
    groups, colours, fig, axes = _crm_panels("HierDist@k", curves, crm_curves)
    labels = list(colours)  # methods in first-seen order
    for ax, (name, series) in zip(axes, groups.items()):
        k_max = 1
        for label in labels:
            if label not in series:
                continue
            rows = _as_seed_rows(label, series[label], "curves")
            k = np.arange(1, rows.shape[1] + 1)
            k_max = max(k_max, k[-1])
            mean = rows.mean(axis=0)
            ax.plot(k, mean, color=colours[label], label=label, lw=1.6,
                    marker="o" if k.size <= 25 else None, ms=3)
            if rows.shape[0] > 1:
                ax.fill_between(k, rows.min(axis=0), rows.max(axis=0), color=colours[label],
                                alpha=0.18, lw=0)
        if k_max > 50:
            ax.set_xscale("log")
        ax.set_xlabel("k (number of top-ranked classes)")
        ax.set_ylabel("HierDist@k (mean distance of the top k)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    _method_legend(fig, colours)
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------- (4) training curves
# (panel title, ((record section, key, line style), ...))
_CURVE_PANELS = (
    ("loss, each method's own (solid: train, dashed: val)",
     (("train", "loss", "-"), ("val", "loss", "--"))),
    ("top-1 accuracy % (solid: train, dashed: val)",
     (("train", "top1", "-"), ("val", "top1", "--"))),
    ("val mistake severity", (("val", "mistake_severity", "-"),)),
    ("val HierDist@1 (solid) and @5 (dashed)",
     (("val", "hierdist@1", "-"), ("val", "hierdist@5", "--"))),
)


def _epoch_series(runs: Sequence[Sequence[Mapping]], split: str, key: str):
    """Epochs and the mean / min / max over runs of ``record[split][key]`` at each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for records in runs:
        for rec in records:
            value = (rec.get(split) or {}).get(key) if isinstance(rec, Mapping) else None
            if value is None or "epoch" not in rec:
                continue
            value = float(value)
            if math.isfinite(value):
                by_epoch.setdefault(int(rec["epoch"]), []).append(value)
    if not by_epoch:
        return None
    epochs = np.array(sorted(by_epoch))
    vals = [np.asarray(by_epoch[e]) for e in epochs]
    return (epochs, np.array([v.mean() for v in vals]), np.array([v.min() for v in vals]),
            np.array([v.max() for v in vals]))


def plot_training_curves(logs: Mapping[str, Sequence[Sequence[Mapping]]],
                         title: str | None = None):
    """Per-epoch training curves from ``metrics.jsonl`` records: four panels.

    ``logs[label]`` is a list of runs (seeds), each the list of epoch records (``{"epoch": e,
    "train": {"loss", "top1"}, "val": {"loss"?, "top1", "mistake_severity", "hierdist@1",
    "hierdist@5", ...}}``). Panels: loss (train solid, validation dashed when logged), top-1
    accuracy (train solid, validation dashed), validation mistake severity, and validation
    HierDist@1 (solid) / @5 (dashed). Lines are means over runs, bands span min to max.
    """
    _check_series("logs", logs)
    from matplotlib.ticker import MaxNLocator

    colours = _colours(list(logs))
    fig, axes = new_figure(2, nrows=2, panel_size=(5.0, 3.5))
    for ax, (name, series) in zip(axes, _CURVE_PANELS):
        drawn = False
        for label, runs in logs.items():
            if runs and isinstance(runs[0], Mapping):
                runs = [runs]  # a single run's records
            for split, key, style in series:
                found = _epoch_series(runs, split, key)
                if found is None:
                    continue
                epochs, mean, low, high = found
                scale = 100.0 if key == "top1" else 1.0
                ax.plot(epochs, scale * mean, style, color=colours[label], lw=1.5,
                        marker=("o" if style == "-" else "s") if epochs.size <= 20 else None,
                        ms=3)
                if len(runs) > 1:
                    ax.fill_between(epochs, scale * low, scale * high, color=colours[label],
                                    alpha=0.15, lw=0)
                drawn = True
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    _method_legend(fig, colours)
    if title:
        fig.suptitle(title)
    return fig
