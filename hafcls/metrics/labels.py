"""Metrics on labels, as scikit-learn users hold them: class ids (strings or ints), not indices.

:func:`evaluate_labels` takes ``y_true`` (class ids of the hierarchy) and ``y_pred`` (node ids:
a class, or an internal node when the prediction was hedged) and returns

- ``top1``: fraction of samples whose prediction is exactly the true class.
- ``mistake_severity``: mean ``H - depth(LCA(true class, predicted node))`` over the samples whose
  prediction is not the true class (``nan`` when there is none). For class predictions this is
  the published distance ``D[y, ŷ]`` of :mod:`hafcls.metrics.severity`; a hedged prediction at an
  ancestor of the true class at depth t costs ``H - t``.
- ``node_accuracy``: fraction of samples whose predicted node is the true class or one of its
  ancestors (hedged correctness; equals ``top1`` when every prediction is a class at depth H).
- hierarchical precision / recall / F (Kiritchenko et al.; docs/ranking-and-decoding.md, what
  hiclass computes), with α = predicted node and its ancestors, β = true class and its
  ancestors, the root excluded from both:

  * micro: ``hP = Σ|α∩β| / Σ|α|``, ``hR = Σ|α∩β| / Σ|β|``, ``hF = (1+b²)hP·hR / (b²hP + hR)``;
  * macro: the per-sample ``hP_i``, ``hR_i``, ``hF_i`` averaged over samples. A sample predicted
    at the root has ``|α| = 0``: its ``hP_i`` is 0 (scikit-learn's ``zero_division=0``), and it
    adds nothing to the micro sums.

This module maps ids to indices (one dict look-up per distinct label) and scores the indices with
:mod:`hafcls.metrics.hierarchical`; the LCA depths come from one comparison of the two nodes'
ancestors at every depth (an ``n x (H+1)`` array), no loop over samples or nodes.

Labels map to ids with ``str``: ``3`` and ``"3"`` are the same class; integral floats
(``3.0``, as numpy produces from integer labels) are read as integers first.
"""

from __future__ import annotations

import numpy as np

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics.hierarchical import node_ancestors
from hafcls.metrics.inputs import derived_tables

_SHOWN = 5  # unknown labels named in an error message


# ---------------------------------------------------------------------- label -> index
def label_ids(labels, name: str = "labels") -> np.ndarray:
    """``labels`` (1-D: strings, ints, integral floats, or a mix as objects) as a str array."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise HafclsError(
            f"{name} must be 1-D (one label per sample), got shape {arr.shape}.",
            "pass a list or 1-D array of class ids.",
        )
    if arr.dtype.kind == "O":  # all numbers (e.g. a pandas object column): read as numbers
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise HafclsError(
                f"{name} holds non-integer numbers, which cannot be class ids.",
                "pass the hierarchy's class ids (strings or integers).",
            )
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "b":
        raise HafclsError(f"{name} holds booleans, not class ids.",
                          "pass the hierarchy's class ids (strings or integers).")
    return arr.astype(str)


def _lookup(labels, table: dict[str, int], name: str, what: str, fix: str) -> np.ndarray:
    ids = label_ids(labels, name)
    uniq, inverse = np.unique(ids, return_inverse=True)
    index = np.array([table.get(u, -1) for u in uniq.tolist()], dtype=np.int64)  # unique only
    unknown = uniq[index < 0]
    if len(unknown):
        shown = ", ".join(repr(u) for u in unknown[:_SHOWN].tolist())
        more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
        raise HafclsError(
            f"{name} holds {len(unknown)} label(s) that are not {what} of the hierarchy: "
            f"{shown}{more}.",
            fix,
        )
    return index[inverse.reshape(-1)]


def class_indices(labels, hierarchy: Hierarchy, name: str = "y") -> np.ndarray:
    """Indices into ``hierarchy.classes`` of class ids (strings or ints); unknown ids raise."""
    table = _tables(hierarchy)["class_of_id"]
    return _lookup(labels, table, name, "classes",
                   "use the hierarchy's class ids (Hierarchy.classes), or add these classes.")


def node_indices(labels, hierarchy: Hierarchy, name: str = "y_pred") -> np.ndarray:
    """Indices into ``hierarchy.nodes`` of node ids (classes or internal nodes)."""
    table = _tables(hierarchy)["node_of_id"]
    return _lookup(labels, table, name, "nodes",
                   "use node ids of the hierarchy (Hierarchy.nodes).")


def _tables(hierarchy: Hierarchy) -> dict:
    if not isinstance(hierarchy, Hierarchy):
        raise HafclsError(
            f"hierarchy must be a hafcls Hierarchy, got {type(hierarchy).__name__}.",
            "load one with hafcls.hierarchy.load(...) or build it with Hierarchy.from_edges.",
        )
    tables = derived_tables(hierarchy)
    if "node_of_id" not in tables:  # id -> index tables, built once per hierarchy
        tables["class_of_id"] = {c: i for i, c in enumerate(hierarchy.classes)}
        tables["node_of_id"] = {n: i for i, n in enumerate(hierarchy.nodes)}
    return tables


# ---------------------------------------------------------------------- metrics
def evaluate_labels(y_true, y_pred, hierarchy: Hierarchy, beta: float = 1.0) -> dict[str, float]:
    """Top-1, mistake severity, hedged accuracy and hierarchical P/R/F of label predictions.

    ``y_true`` are class ids, ``y_pred`` node ids (classes or internal nodes, e.g. the output of
    ``HierarchyAwareClassifier.predict_node``). Returns a dict with ``top1``,
    ``mistake_severity``, ``node_accuracy``, ``hP_micro``, ``hR_micro``, ``hF_micro``,
    ``hP_macro``, ``hR_macro``, ``hF_macro`` (hF with ``beta``) and ``n`` (see the module
    docstring). P/R/F are those of :func:`hafcls.metrics.hierarchical.hierarchical_prf` on
    the indices.
    """
    from hafcls.metrics.hierarchical import prf_average, prf_counts

    true_cls, pred_node = _indices(y_true, y_pred, hierarchy)
    true_node = hierarchy.class_nodes[true_cls]
    anc = node_ancestors(hierarchy)
    a_true, a_pred = anc[true_node][:, 1:], anc[pred_node][:, 1:]
    # ancestors agree on a prefix of depths (a tree): the agreeing non-root depths = LCA depth
    lca_depth = ((a_true == a_pred) & (a_true >= 0)).sum(axis=1)
    exact = pred_node == true_node
    on_path = lca_depth == hierarchy.node_depths[pred_node]  # the node is on the true path
    severity = hierarchy.height - lca_depth[~exact]
    out = {
        "top1": float(exact.mean()),
        "mistake_severity": float(severity.mean()) if len(severity) else float("nan"),
        "node_accuracy": float(on_path.mean()),
    }
    counts = prf_counts(true_cls, pred_node, hierarchy)  # one closure for both averages
    for average in ("micro", "macro"):
        prf = prf_average(*counts, average, _check_beta(beta))
        out[f"hP_{average}"] = prf["precision"]
        out[f"hR_{average}"] = prf["recall"]
        out[f"hF_{average}"] = prf["f_beta"]
    out["n"] = len(true_cls)
    return out


def _indices(y_true, y_pred, hierarchy) -> tuple[np.ndarray, np.ndarray]:
    true_cls = class_indices(y_true, hierarchy, "y_true")
    pred_node = node_indices(y_pred, hierarchy, "y_pred")
    if len(true_cls) != len(pred_node):
        raise HafclsError(
            f"y_true has {len(true_cls)} labels but y_pred has {len(pred_node)}.",
            "pass one prediction per sample.",
        )
    if len(true_cls) == 0:
        raise HafclsError("No samples to evaluate.", "pass at least one label.")
    return true_cls, pred_node


def _check_beta(beta) -> float:
    try:
        value = float(beta)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise HafclsError(f"beta must be a positive number, got {beta!r}.",
                          "pass e.g. beta=1 for hF1.")
    return value
