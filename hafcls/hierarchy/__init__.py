"""Label hierarchies: the :class:`Hierarchy` tree, class distances and loaders for each source.

The sources ``hafcls hierarchy build`` accepts are registered in
:data:`hafcls.registry.HIERARCHY_SOURCES` by the one table below (``SOURCE_TABLE``): adding a
source is a module under ``hierarchy/sources/`` plus one line there.
"""

from hafcls.hierarchy.distances import distance_matrix, lca_depth_matrix
from hafcls.hierarchy.label_tree import Hierarchy
from hafcls.hierarchy.shipped import available, load
from hafcls.hierarchy.source_table import HierarchySource, read_wnid_file
from hafcls.hierarchy.sources.cifar100 import cifar100
from hafcls.hierarchy.sources.fgvc_aircraft import fgvc_aircraft
from hafcls.hierarchy.sources.inaturalist import inaturalist
from hafcls.hierarchy.sources.nltk_pickle import from_nltk_tree, from_nltk_tree_pickle
from hafcls.hierarchy.sources.wordnet import prune_unary_chains, wordnet
from hafcls.registry import HIERARCHY_SOURCES

# name, builder(path, **options), what PATH is, the CLI options the builder takes
SOURCE_TABLE = (
    HierarchySource("wordnet", lambda path, rule="shortest", prune_chains=False, name=None:
                    wordnet(read_wnid_file(path), rule=rule, prune_chains=prune_chains,
                            name=name),
                    "text file, one ImageNet id (n01440764) per line = the classes in order",
                    ("rule", "prune_chains", "name")),
    HierarchySource("inaturalist", inaturalist,
                    "train2019.json / categories.json of the competition"),
    HierarchySource("fgvc-aircraft", fgvc_aircraft,
                    "the fgvc-aircraft-2013b folder (or its data/)"),
    HierarchySource("cifar100", cifar100, "the folder holding cifar-100-python/"),
    HierarchySource("isa", Hierarchy.from_isa_file,
                    "text file, one 'parent child' pair per line"),
    HierarchySource("nltk-pickle", from_nltk_tree_pickle,
                    "a pickled nltk.Tree (needs --trust)", ("trust",)),
)
for _source in SOURCE_TABLE:
    HIERARCHY_SOURCES.add(_source.name, _source)

__all__ = [
    "Hierarchy",
    "HierarchySource",
    "SOURCE_TABLE",
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
