"""The hierarchical risk-coverage curve per method (selective classification by backing off).

Each curve is :func:`hafcls.inference.risk_coverage` of one run: as the confidence threshold
rises, predictions climb from the top-1 class towards the root, trading coverage (how specific
the answers are) for risk (how often the answer is off the true path). Lower is better; the
legend gives the area under the curve (AURC, mean over seeds).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hafcls.errors import HafclsError
from hafcls.plots.base import _check_series, _colours, new_figure

GRID = np.linspace(0.0, 1.0, 201)  # common coverage grid to average seeds on


def _as_runs(label: str, value) -> list[Mapping]:
    runs = [value] if isinstance(value, Mapping) else list(value)
    for run in runs:
        if not isinstance(run, Mapping) or not {"coverage", "risk", "aurc"} <= set(run):
            raise HafclsError(f"curves[{label!r}] must be a risk_coverage result (or a list of "
                              "them, one per seed).",
                              "pass hafcls.inference.risk_coverage(probs, targets, hierarchy).")
    return runs


def risk_on_grid(coverage, risk, grid=GRID) -> np.ndarray:
    """Risk interpolated at ``grid`` coverages (nan beyond the curve's largest coverage)."""
    cov = np.asarray(coverage, dtype=np.float64)
    r = np.asarray(risk, dtype=np.float64)
    order = np.argsort(cov, kind="stable")
    out = np.interp(grid, cov[order], r[order])
    out[grid > cov.max() + 1e-12] = np.nan
    return out


def plot_risk_coverage(curves: Mapping[str, object], title: str | None = None):
    """Risk against coverage per label, one line per method (mean over seeds on a common grid,
    band from the lowest to the highest seed), AURC in the legend."""
    _check_series("curves", curves)
    colours = _colours(list(curves))
    fig, (ax,) = new_figure(1, panel_size=(6.0, 4.4))
    for label, value in curves.items():
        runs = _as_runs(label, value)
        aurc = float(np.mean([float(r["aurc"]) for r in runs]))
        name = f"{label} (AURC {aurc:.3f})"
        if len(runs) == 1:
            cov = np.asarray(runs[0]["coverage"], dtype=np.float64)
            order = np.argsort(cov, kind="stable")
            ax.plot(cov[order], np.asarray(runs[0]["risk"], dtype=np.float64)[order],
                    color=colours[label], lw=1.6, label=name)
            continue
        rows = np.stack([risk_on_grid(r["coverage"], r["risk"]) for r in runs])
        ok = ~np.isnan(rows).any(axis=0)
        ax.plot(GRID[ok], rows[:, ok].mean(axis=0), color=colours[label], lw=1.6, label=name)
        ax.fill_between(GRID[ok], rows[:, ok].min(axis=0), rows[:, ok].max(axis=0),
                        color=colours[label], alpha=0.18, lw=0)
    ax.set_xlabel("coverage (1 = every answer a class, 0 = the root)")
    ax.set_ylabel("hierarchical risk (answer off the true path)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("risk-coverage (backing off to ancestors)")
    if title:
        fig.suptitle(title)
    return fig
