"""The random-hierarchy control: the same tree shape with its classes shuffled among the positions.

A gain from a hierarchy-aware method can come from the tree (which classes are grouped) or merely
from its shape (how many groups, how deep, how unbalanced). :func:`permute_classes` keeps every
node and edge of the tree but relabels the class positions by a seeded random permutation, so the
shape, the depth of every position and the multiset of distances stay the same while the grouping
becomes meaningless. Training on it with everything else equal isolates the tree's contribution.

With ``p = meta["class_positions"]`` (class ``i`` now sits where class ``p[i]`` sat) the new
distance matrix is ``D'[i, j] = D[p[i], p[j]]``. The class order (the model's output order and the
dataset's labels) is unchanged.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy
from hafcls.validation import check_int

_MAX_DRAWS = 100


def _check_seed(seed) -> int:
    return check_int(seed, 0, f"The permutation seed must be an int >= 0, got {seed!r}.",
                     "pass e.g. seed=0.")


def _relabelled(h: Hierarchy, positions: np.ndarray) -> Hierarchy:
    classes = h.classes
    # the node of class p[i] takes the id of class i (a permutation: relabel on a copy)
    mapping = {classes[int(p)]: classes[i] for i, p in enumerate(positions)}
    graph = nx.relabel_nodes(h.graph, mapping, copy=True)
    # names are keyed by node id and the ids move with their classes: they stay right as is
    return Hierarchy(graph, classes, names=h.names)


def permute_classes(hierarchy: Hierarchy, seed: int) -> Hierarchy:
    """``hierarchy`` with its class ids permuted among the class positions by ``seed``.

    The result has the same nodes, edges and class order; only which class sits at which
    position changes. A draw that only swaps interchangeable classes (e.g. two siblings) would
    give the very same tree, so draws are repeated (deterministically, from the same seeded
    generator) until the fingerprint differs. ``meta`` records ``seed``, the source's name,
    fingerprint and meta, and ``class_positions``.
    """
    if not isinstance(hierarchy, Hierarchy):
        raise HafclsError(f"Expected a Hierarchy, got {type(hierarchy).__name__}.",
                          "load one with hafcls.hierarchy.load(name_or_path).")
    seed = _check_seed(seed)
    if hierarchy.num_classes < 2:
        raise HafclsError("A hierarchy with one class cannot be permuted.",
                          "use a hierarchy with at least two classes.")
    rng = np.random.default_rng(seed)
    source = hierarchy.fingerprint()
    for _ in range(_MAX_DRAWS):
        positions = rng.permutation(hierarchy.num_classes)
        out = _relabelled(hierarchy, positions)
        if out.fingerprint() != source:
            break
    else:
        raise HafclsError(
            "Every permutation tried gives the same tree: all classes are interchangeable "
            "(e.g. a flat tree), so a permuted control is identical to the original.",
            "use a hierarchy with more than one level of groups.")
    name = hierarchy.meta.get("name", "hierarchy")
    out.meta = {
        "name": f"{name}-permuted-{seed}",
        "source": "permute_classes",
        "description": "random-hierarchy control: the tree shape of the source with its "
                       "classes permuted among the class positions",
        "seed": seed,
        "permuted_from": {"name": name, "fingerprint": source, "meta": dict(hierarchy.meta)},
        "class_positions": positions.tolist(),
    }
    return out
