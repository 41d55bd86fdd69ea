"""Per-epoch training curves from ``metrics.jsonl`` records."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from hafcls.plots.base import _check_series, _colours, _method_legend, new_figure

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
