"""Datasets for hierarchy-aware classification: real loaders, a synthetic tree dataset, transforms.

``build_datasets(name, ...)`` returns a :class:`DataBundle` (hierarchy + train/val/test); the
dataset classes can also be used directly. Every dataset yields ``(image, class index)`` with
class indices in its hierarchy's class order.

Each dataset module registers itself (``@register_dataset`` in :mod:`hafcls.data.registry`);
:mod:`hafcls.data.catalog` imports them in the order ``--data`` lists them. Adding a dataset =
one new module + one entry in ``catalog.MODULES``.
"""

# imported first: registers every dataset in the listing order of hafcls/data/catalog.py
from hafcls.data import catalog  # noqa: F401
from hafcls.data.base import ImageFileDataset, map_labels
from hafcls.data.cifar100 import CIFAR100, cifar100_splits
from hafcls.data.fgvc_aircraft import FGVCAircraft
from hafcls.data.folder import HierarchyImageFolder
from hafcls.data.images import (
    SKIPPED,
    CorruptImageError,
    SafeImageLoader,
    collate_skip_corrupt,
    load_rgb,
)
from hafcls.data.inaturalist import INaturalist2019, inat2019_splits
from hafcls.data.registry import (
    DataBundle,
    DatasetRequest,
    DatasetSpec,
    available_datasets,
    build_datasets,
    register_dataset,
)
from hafcls.data.synthetic import (
    SyntheticHierarchy,
    SyntheticHierarchyDataset,
    synthetic_hierarchy,
)
from hafcls.data.transforms import build_transforms, transforms_for_model

__all__ = [
    "CIFAR100",
    "SKIPPED",
    "CorruptImageError",
    "DataBundle",
    "DatasetRequest",
    "DatasetSpec",
    "FGVCAircraft",
    "HierarchyImageFolder",
    "INaturalist2019",
    "ImageFileDataset",
    "SafeImageLoader",
    "SyntheticHierarchy",
    "SyntheticHierarchyDataset",
    "available_datasets",
    "build_datasets",
    "build_transforms",
    "cifar100_splits",
    "collate_skip_corrupt",
    "inat2019_splits",
    "load_rgb",
    "map_labels",
    "register_dataset",
    "synthetic_hierarchy",
    "transforms_for_model",
]
