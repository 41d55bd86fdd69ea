"""The random-hierarchy control of a comparison: ``METHOD@permuted`` entries.

``haframe@permuted`` trains HAFrame exactly as ``haframe`` (same data, options and seeds) but on
the comparison's tree with its classes permuted (:func:`hafcls.hierarchy.permute.permute_classes`:
same shape, depths and multiset of distances, meaningless grouping). Everything at test time
uses the TRUE tree for every run, the control included: the severity metrics, CRM and the hedged
(hF1-optimal) decoding. So the control differs from its method only in the tree seen during
training, and a gain of ``haframe`` over ``haframe@permuted`` is what the tree's grouping
contributes through training; a gain that the control shares is due to the method itself (its
fixed frame, loss shape, ...), not to the hierarchy. Decoders at test time (CRM, hF1) are
evaluation choices applied equally to every model with the true tree.

Run ``s`` of the control uses the permutation seed ``permute_seed + s``: each seed draws another
random tree, so the control's interval covers the spread over random trees, not one lucky or
unlucky draw. The permuted trees are written to ``OUTPUT/control/`` and named in the runs'
configs (``hierarchy``), so a control run is an ordinary run folder that can be re-evaluated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hafcls.engine.config import TrainConfig
from hafcls.errors import HafclsError

CONTROL_SUFFIX = "@permuted"


def split_entry(entry: str) -> tuple[str, bool]:
    """``("haframe", True)`` for ``"haframe@permuted"``, ``(entry, False)`` otherwise."""
    if "@" not in entry:
        return entry, False
    base, _, tag = entry.partition("@")
    if "@" + tag != CONTROL_SUFFIX or not base:
        raise HafclsError(f"Unknown method variant {entry!r}.",
                          f"write METHOD{CONTROL_SUFFIX} (e.g. haframe{CONTROL_SUFFIX}) for the "
                          "random-hierarchy control.")
    return base, True


def true_hierarchy(config: TrainConfig):
    """The comparison's tree: ``config.hierarchy``, else the shipped tree named like the
    dataset, else the dataset's own (built once)."""
    from hafcls.engine.builders import build_data
    from hafcls.hierarchy import load
    from hafcls.registry import DATASETS

    if config.hierarchy:
        return load(config.hierarchy)
    try:
        return load(DATASETS.canonical(config.data))
    except HafclsError:
        return build_data(config).hierarchy


def permutation_seed(base: int, seed: int) -> int:
    return int(base) + int(seed)


def control_hierarchy_file(output: str | Path, true_tree, base: int, seed: int) -> Path:
    """Write (once) the permuted tree of run ``seed``; its path."""
    from hafcls.hierarchy.permute import permute_classes

    pseed = permutation_seed(base, seed)
    path = Path(output) / "control" / f"permuted-seed{pseed}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        permute_classes(true_tree, pseed).to_json(path)
    return path


def distance_agreement(true_tree, permuted) -> dict:
    """How much of the true tree survives a permutation: the Spearman correlation of the two
    distance matrices over class pairs and the share of pairs at an unchanged distance."""
    from scipy.stats import spearmanr

    a = np.asarray(true_tree.distance_matrix(), dtype=np.float64)
    b = np.asarray(permuted.distance_matrix(), dtype=np.float64)
    iu = np.triu_indices(a.shape[0], 1)
    rho = spearmanr(a[iu], b[iu]).statistic
    return {"spearman": float(rho), "same_distance": float(np.mean(a[iu] == b[iu]))}


def unpermuted(hierarchy):
    """The tree a :func:`~hafcls.hierarchy.permute.permute_classes` result was drawn from
    (rebuilt from its ``class_positions`` and checked against the recorded fingerprint), or
    None for a tree that is not a permuted control. Lets a control run be scored with the true
    tree from its run folder alone (e.g. by ``hafcls plot``)."""
    import networkx as nx

    from hafcls.hierarchy import Hierarchy

    meta = hierarchy.meta
    if meta.get("source") != "permute_classes" or "class_positions" not in meta:
        return None
    classes = hierarchy.classes
    positions = [int(p) for p in meta["class_positions"]]
    # permuting moved the node of class p[i] to id i; move every id i back to p[i]
    graph = nx.relabel_nodes(hierarchy.graph, {classes[i]: classes[p]
                                               for i, p in enumerate(positions)}, copy=True)
    source = meta.get("permuted_from", {})
    tree = Hierarchy(graph, classes, names=hierarchy.names, meta=dict(source.get("meta", {})))
    if tree.fingerprint() != source.get("fingerprint"):
        raise HafclsError("A permuted hierarchy's record does not rebuild its source tree.",
                          "regenerate it with `hafcls hierarchy permute`.")
    return tree
