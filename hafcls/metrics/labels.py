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
- hierarchical precision / recall / F (Kiritchenko et al.; METHODS.md §8, what hiclass
  computes), with α = predicted node and its ancestors, β = true class and its ancestors, the
  root excluded from both:

  * micro: ``hP = Σ|α∩β| / Σ|α|``, ``hR = Σ|α∩β| / Σ|β|``, ``hF = (1+b²)hP·hR / (b²hP + hR)``;
  * macro: the per-sample ``hP_i``, ``hR_i``, ``hF_i`` averaged over samples. A sample predicted
    at the root has ``|α| = 0``: its ``hP_i`` is 0 (scikit-learn's ``zero_division=0``), and it
    adds nothing to the micro sums.

In a tree ``|α∩β|`` is the depth of the LCA of the two nodes and ``|α|``, ``|β|`` their depths,
so everything comes from one comparison of the two nodes' ancestors at every depth: an
``n x (H+1)`` array, no loop over samples or nodes.

Labels map to ids with ``str``: ``3`` and ``"3"`` are the same class; integral floats
(``3.0``, as numpy produces from integer labels) are read as integers first.
"""

from __future__ import annotations

import numpy as np

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics.severity import derived_tables

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
    if "node_of_id" not in tables:
        tables["class_of_id"] = {c: i for i, c in enumerate(hierarchy.classes)}
        tables["node_of_id"] = {n: i for i, n in enumerate(hierarchy.nodes)}
        tables["node_ancestors"] = node_ancestor_matrix(hierarchy)
    return tables


def node_ancestor_matrix(hierarchy: Hierarchy) -> np.ndarray:
    """``nodes x (H+1)``: every node's ancestor at depth t (itself at its depth), -1 below it."""
    parents, depths = hierarchy.parents, hierarchy.node_depths
    height = int(depths.max())
    out = np.full((hierarchy.num_nodes, height + 1), -1, dtype=np.int64)
    cur = np.arange(hierarchy.num_nodes)
    for t in range(height, -1, -1):  # one pass per depth level, climbing one step at a time
        cur = np.where(depths[cur] > t, parents[cur], cur)
        out[:, t] = np.where(depths >= t, cur, -1)
    return out


# ---------------------------------------------------------------------- metrics
def evaluate_labels(y_true, y_pred, hierarchy: Hierarchy, beta: float = 1.0) -> dict[str, float]:
    """Top-1, mistake severity, hedged accuracy and hierarchical P/R/F of label predictions.

    ``y_true`` are class ids, ``y_pred`` node ids (classes or internal nodes, e.g. the output of
    ``HierarchyAwareClassifier.predict_node``). Returns a dict with ``top1``,
    ``mistake_severity``, ``node_accuracy``, ``hP_micro``, ``hR_micro``, ``hF_micro``,
    ``hP_macro``, ``hR_macro``, ``hF_macro`` and ``n`` (see the module docstring).
    """
    parts = _overlap(y_true, y_pred, hierarchy)
    beta = _check_beta(beta)
    common, size_pred, size_true, exact = parts
    n = len(common)
    mistakes = ~exact
    severity = hierarchy.height - common[mistakes]
    b2 = beta * beta
    sum_c, sum_p, sum_t = (float(a.sum()) for a in (common, size_pred, size_true))
    hp = sum_c / sum_p if sum_p else 0.0
    hr = sum_c / sum_t if sum_t else 0.0
    p_i = np.divide(common, size_pred, out=np.zeros(n), where=size_pred > 0)
    r_i = np.divide(common, size_true, out=np.zeros(n), where=size_true > 0)
    return {
        "top1": float(exact.mean()),
        "mistake_severity": float(severity.mean()) if mistakes.any() else float("nan"),
        "node_accuracy": float((common == size_pred).mean()),
        "hP_micro": hp,
        "hR_micro": hr,
        "hF_micro": _f_beta(hp, hr, b2),
        "hP_macro": float(p_i.mean()),
        "hR_macro": float(r_i.mean()),
        "hF_macro": float(_f_beta(p_i, r_i, b2).mean()),
        "n": n,
    }


def hierarchical_prf(y_true, y_pred, hierarchy: Hierarchy, average: str = "micro",
                     beta: float = 1.0) -> tuple[float, float, float]:
    """``(hP, hR, hF_beta)`` with ``average="micro"`` or ``"macro"`` (see the module docstring)."""
    if average not in ("micro", "macro"):
        raise HafclsError(f"average must be 'micro' or 'macro', got {average!r}.",
                          "pass average='micro' or average='macro'.")
    out = evaluate_labels(y_true, y_pred, hierarchy, beta)
    return out[f"hP_{average}"], out[f"hR_{average}"], out[f"hF_{average}"]


def _overlap(y_true, y_pred, hierarchy):
    """Per sample: ``|α∩β|`` (LCA depth), ``|α|``, ``|β|`` (root excluded) and exact match."""
    true_cls = class_indices(y_true, hierarchy, "y_true")
    pred_node = node_indices(y_pred, hierarchy, "y_pred")
    if len(true_cls) != len(pred_node):
        raise HafclsError(
            f"y_true has {len(true_cls)} labels but y_pred has {len(pred_node)}.",
            "pass one prediction per sample.",
        )
    if len(true_cls) == 0:
        raise HafclsError("No samples to evaluate.", "pass at least one label.")
    anc = _tables(hierarchy)["node_ancestors"]
    true_node = hierarchy.class_nodes[true_cls]
    a_true, a_pred = anc[true_node], anc[pred_node]
    # ancestors agree on a prefix of depths (a tree): the agreeing non-root depths count the LCA
    common = ((a_true[:, 1:] == a_pred[:, 1:]) & (a_true[:, 1:] >= 0)).sum(axis=1)
    depths = hierarchy.node_depths
    return common, depths[pred_node], depths[true_node], pred_node == true_node


def _f_beta(p, r, b2):
    p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
    den = b2 * p + r
    out = np.divide((1 + b2) * p * r, den, out=np.zeros_like(den), where=den > 0)
    return float(out) if out.ndim == 0 else out


def _check_beta(beta) -> float:
    try:
        value = float(beta)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise HafclsError(f"beta must be a positive number, got {beta!r}.",
                          "pass e.g. beta=1 for hF1.")
    return value
