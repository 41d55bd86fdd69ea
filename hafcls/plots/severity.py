"""Mistake-distance histograms and HierDist@k curves per method (with and without CRM)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hafcls.errors import HafclsError
from hafcls.plots.base import _as_seed_rows, _check_series, _colours, _method_legend, new_figure


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
