"""Label hierarchies: the :class:`Hierarchy` tree, class distances and loaders for each source."""

from hafcls.hierarchy.distances import distance_matrix, lca_depth_matrix
from hafcls.hierarchy.shipped import available, load
from hafcls.hierarchy.sources.wordnet import wordnet
from hafcls.hierarchy.tree import Hierarchy

__all__ = [
    "Hierarchy",
    "available",
    "distance_matrix",
    "lca_depth_matrix",
    "load",
    "wordnet",
]
