"""CIFAR-100 label trees as data: the dataset's 2-level superclass tree and the papers' 5-level.

The 5-level tree is the one HAF, HAFrame and Hier-COS evaluate on (docs/hierarchies.md):
root -> L1 (2) -> L2 (4) -> L3 (8) -> L4 (the 20 official superclasses) -> the 100 fine classes,
H = 5. Its upper levels follow "Fine-Grained or Not" (Chang et al., CVPR 2021), given below as
groups of official superclasses. Internal nodes get readable ids of our own; the papers' ids
(``L1-0``, ``L2-3``, ``L3-5``, ``L4-<official coarse index>``, ``L5-<fine index>``) are kept in
the hierarchy's ``meta["level_ids"]``.

Class ids are the fine label names in torchvision's order (the order of ``fine_label_names`` in
the official ``meta`` pickle: alphabetical). Superclass nodes are ``superclass:<name>`` in both
trees, so a class's official superclass is its parent in either.

Both shipped files (``hierarchies/cifar100.json`` and ``hierarchies/cifar100-coarse.json``) are
written by :func:`write_shipped` (``python -m hafcls.hierarchy.sources.cifar100_tree OUT_DIR``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy

ROOT = "cifar100"

# The official superclasses (``coarse_label_names``, in file order) and their five fine classes.
SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
COARSE_LABEL_NAMES: tuple[str, ...] = tuple(SUPERCLASSES)
# torchvision's fine-label order is the official meta order, which is alphabetical
FINE_LABEL_NAMES: tuple[str, ...] = tuple(sorted(n for v in SUPERCLASSES.values() for n in v))
SUPERCLASS_OF: dict[str, str] = {f: s for s, fs in SUPERCLASSES.items() for f in fs}

# The upper levels: (our node id, paper id, parent node id or None for the root's children).
UPPER_NODES: tuple[tuple[str, str, str | None], ...] = (
    ("living_things", "L1-0", None),
    ("non_living_things", "L1-1", None),
    ("animals", "L2-0", "living_things"),
    ("plants", "L2-3", "living_things"),
    ("artifacts", "L2-1", "non_living_things"),
    ("natural_world", "L2-2", "non_living_things"),
    ("land_mammals_and_people", "L3-3", "animals"),
    ("invertebrates_and_reptiles", "L3-4", "animals"),
    ("aquatic_animals", "L3-6", "animals"),
    ("plant_life", "L3-5", "plants"),
    ("household_objects", "L3-0", "artifacts"),
    ("outdoor_structures", "L3-1", "artifacts"),
    ("vehicles", "L3-7", "artifacts"),
    ("outdoor_scenes", "L3-2", "natural_world"),
)
# Which L3 node each official superclass hangs under (the table of docs/hierarchies.md).
L3_OF_SUPERCLASS: dict[str, str] = {
    "large_carnivores": "land_mammals_and_people",
    "large_omnivores_and_herbivores": "land_mammals_and_people",
    "medium_mammals": "land_mammals_and_people",
    "people": "land_mammals_and_people",
    "small_mammals": "land_mammals_and_people",
    "insects": "invertebrates_and_reptiles",
    "non-insect_invertebrates": "invertebrates_and_reptiles",
    "reptiles": "invertebrates_and_reptiles",
    "aquatic_mammals": "aquatic_animals",
    "fish": "aquatic_animals",
    "flowers": "plant_life",
    "fruit_and_vegetables": "plant_life",
    "trees": "plant_life",
    "food_containers": "household_objects",
    "household_electrical_devices": "household_objects",
    "household_furniture": "household_objects",
    "large_man-made_outdoor_things": "outdoor_structures",
    "vehicles_1": "vehicles",
    "vehicles_2": "vehicles",
    "large_natural_outdoor_scenes": "outdoor_scenes",
}
LEVELS = (2, 5)
SHIPPED = {5: "cifar100", 2: "cifar100-coarse"}


def superclass_node(name: str) -> str:
    return f"superclass:{name}"


def _readable(node: str) -> str:
    return node.replace("_", " ")


def _check_levels(levels) -> int:
    if levels not in LEVELS:
        raise HafclsError(
            f"CIFAR-100 has a 2-level and a 5-level tree, not levels={levels!r}.",
            "pass levels=5 (the papers' tree, the default) or levels=2 (the superclasses).",
        )
    return int(levels)


def level_ids() -> dict[str, str]:
    """The papers' id of every non-root node of the 5-level tree (``L1-0`` … ``L5-99``)."""
    ids = {node: pid for node, pid, _ in UPPER_NODES}
    ids.update({superclass_node(s): f"L4-{i}" for i, s in enumerate(COARSE_LABEL_NAMES)})
    ids.update({f: f"L5-{i}" for i, f in enumerate(FINE_LABEL_NAMES)})
    return ids


def cifar100_tree(levels: int = 5, classes=None) -> Hierarchy:
    """The CIFAR-100 tree with ``levels`` levels below the root (5: the papers', 2: the dataset's).

    ``classes`` (default: all 100 in torchvision's order) selects and orders the classes; every
    one must be a CIFAR-100 fine label name. Distances between the classes kept do not change.
    """
    levels = _check_levels(levels)
    classes = list(FINE_LABEL_NAMES if classes is None else classes)
    unknown = [c for c in classes if c not in SUPERCLASS_OF]
    if unknown:
        raise HafclsError(
            f"{len(unknown)} class name(s) are not CIFAR-100 fine labels, e.g. {unknown[0]!r}.",
            "use the official fine label names (apple, aquarium_fish, baby, ...).",
        )
    edges = [(superclass_node(SUPERCLASS_OF[f]), f) for f in FINE_LABEL_NAMES]
    names = {f: _readable(f) for f in FINE_LABEL_NAMES}
    names.update({superclass_node(s): _readable(s) for s in COARSE_LABEL_NAMES})
    names[ROOT] = "CIFAR-100"
    meta = {"source": "cifar100", "name": SHIPPED[levels], "levels": levels}
    if levels == 2:
        edges += [(ROOT, superclass_node(s)) for s in COARSE_LABEL_NAMES]
    else:
        edges += [(parent or ROOT, node) for node, _, parent in UPPER_NODES]
        edges += [(L3_OF_SUPERCLASS[s], superclass_node(s)) for s in COARSE_LABEL_NAMES]
        names.update({node: _readable(node) for node, _, _ in UPPER_NODES})
        meta["level_ids"] = level_ids()
        meta["upper_levels"] = "Chang et al., CVPR 2021 (Fine-Grained or Not), as in HAF/HAFrame"
    return Hierarchy.from_edges(edges, classes, names=names, meta=meta)


def write_shipped(out_dir: str | os.PathLike) -> list[Path]:
    """Write ``cifar100.json`` (5 levels) and ``cifar100-coarse.json`` (2 levels) to ``out_dir``."""
    out_dir = Path(out_dir)
    return [cifar100_tree(levels).to_json(out_dir / f"{SHIPPED[levels]}.json")
            for levels in sorted(SHIPPED, reverse=True)]


if __name__ == "__main__":  # python -m hafcls.hierarchy.sources.cifar100_tree hierarchies/
    for written in write_shipped(sys.argv[1] if len(sys.argv) > 1 else "hierarchies"):
        print(written)
