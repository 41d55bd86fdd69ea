"""Label hierarchies: the :class:`Hierarchy` tree, class distances and loaders for each source."""

from hafcls.hierarchy.distances import distance_matrix, lca_depth_matrix
from hafcls.hierarchy.shipped import available, load
from hafcls.hierarchy.sources.cifar100 import cifar100
from hafcls.hierarchy.sources.fgvc_aircraft import fgvc_aircraft
from hafcls.hierarchy.sources.inaturalist import inaturalist
from hafcls.hierarchy.sources.nltk_pickle import from_nltk_tree, from_nltk_tree_pickle
from hafcls.hierarchy.sources.wordnet import prune_unary_chains, wordnet
from hafcls.hierarchy.tree import Hierarchy

__all__ = [
    "Hierarchy",
    "available",
    "cifar100",
    "distance_matrix",
    "fgvc_aircraft",
    "from_nltk_tree",
    "from_nltk_tree_pickle",
    "inaturalist",
    "lca_depth_matrix",
    "load",
    "prune_unary_chains",
    "wordnet",
]
