"""Models: a timm backbone plus a hierarchy-aware head (HAFrame, linear, ETF, HUG, EBV).

Heads register themselves in :data:`hafcls.registry.HEADS` (see :mod:`hafcls.models.heads`).

>>> model = create("resnet50", hierarchy, head="haframe", gamma=2.0,
...                pretrained_file="resnet50.safetensors")          # doctest: +SKIP
>>> logits, features = model(images, return_features=True)       # doctest: +SKIP
"""

from hafcls.models import (
    hiercos_head,  # noqa: F401  (registers the "subspace" head)
    wide_resnet,  # noqa: F401  (registers wide_resnet28_8/28_10 with timm)
)
from hafcls.models.backbone import create_backbone, detect_feature_input, feature_width
from hafcls.models.classifier import HierarchyClassifier
from hafcls.models.factory import create, head_options
from hafcls.models.head_base import HeadContext, register_head
from hafcls.models.heads import (
    EBVHead,
    ETFHead,
    FixedFrameHead,
    HAFrameHead,
    Head,
    HUGHead,
    LinearHead,
    MapProjection,
)
from hafcls.models.transformation_module import PReLUBlock, PReLUTransform, build_transform

__all__ = [
    "EBVHead",
    "ETFHead",
    "FixedFrameHead",
    "HAFrameHead",
    "HUGHead",
    "Head",
    "HeadContext",
    "HierarchyClassifier",
    "LinearHead",
    "MapProjection",
    "PReLUBlock",
    "PReLUTransform",
    "build_transform",
    "create",
    "create_backbone",
    "detect_feature_input",
    "feature_width",
    "head_options",
    "register_head",
]
