"""Figures for comparing methods: target vs realised cosines, the tree-ordered confusion matrix,
mistake distances, HierDist@k, risk-coverage and training curves.

Every ``plot_*`` function takes plain arrays and dicts (no model, no files) and returns a
:class:`matplotlib.figure.Figure`; :func:`save_figure` writes it as a PNG atomically. Figures are
drawn on the Agg canvas without :mod:`matplotlib.pyplot`, so nothing global is touched and no
display is needed.

matplotlib is an optional dependency (``pip install hafcls[plots]``): it is imported only when a
figure is drawn, and a missing install raises :class:`~hafcls.errors.HafclsError` saying so.

Series are keyed by a label (usually the method name) and drawn in the order given, each label
with the same colour in every figure. Where several seeds are given, lines and bars show the mean
over seeds and the shaded band or error bar spans the lowest to the highest seed.

Modules: :mod:`~hafcls.plots.base` (canvas, colours, PNG), :mod:`~hafcls.plots.geometry`
(class order, cosines), :mod:`~hafcls.plots.confusion`, :mod:`~hafcls.plots.severity`
(mistake distances, HierDist@k), :mod:`~hafcls.plots.selective` (risk-coverage) and
:mod:`~hafcls.plots.training`.
"""

from hafcls.plots.base import (
    COLORBAR_LABEL,
    DPI,
    _matplotlib,
    new_figure,
    panels,
    save_figure,
)
from hafcls.plots.confusion import (
    confusion_matrix,
    group_boundaries,
    plot_confusion,
    tree_blocks,
    within_group_share,
)
from hafcls.plots.geometry import class_mean_cosines, class_order, plot_similarity
from hafcls.plots.selective import plot_risk_coverage, risk_on_grid
from hafcls.plots.severity import mistake_histogram, plot_hierdist_curves, plot_mistake_histograms
from hafcls.plots.training import plot_training_curves

__all__ = [
    "COLORBAR_LABEL",
    "DPI",
    "_matplotlib",
    "class_mean_cosines",
    "class_order",
    "confusion_matrix",
    "group_boundaries",
    "mistake_histogram",
    "new_figure",
    "panels",
    "plot_confusion",
    "plot_hierdist_curves",
    "plot_mistake_histograms",
    "plot_risk_coverage",
    "plot_similarity",
    "plot_training_curves",
    "risk_on_grid",
    "save_figure",
    "tree_blocks",
    "within_group_share",
]
