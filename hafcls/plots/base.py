"""Shared plumbing of the figures: lazy matplotlib on an Agg canvas, colours, legends, PNGs."""

from __future__ import annotations

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
