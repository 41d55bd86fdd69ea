"""Models: a timm backbone plus a hierarchy-aware head (HAFrame, linear, ETF, HUG, EBV).

>>> model = create("resnet50", hierarchy, head="haframe", gamma=2.0,
...                pretrained_file="resnet50.safetensors")          # doctest: +SKIP
>>> logits, features = model(images, return_features=True)       # doctest: +SKIP
"""

from hafcls.models.backbone import create_backbone, detect_feature_input, feature_width
from hafcls.models.classifier import HierarchyClassifier
from hafcls.models.factory import HEAD_OPTIONS, create
from hafcls.models.heads import (
    HEADS,
    EBVHead,
    ETFHead,
    FixedFrameHead,
    HAFrameHead,
    Head,
    HUGHead,
    LinearHead,
    MapProjection,
)
from hafcls.models.transform import PReLUBlock, PReLUTransform, build_transform

__all__ = [
    "HEADS",
    "HEAD_OPTIONS",
    "EBVHead",
    "ETFHead",
    "FixedFrameHead",
    "HAFrameHead",
    "HUGHead",
    "Head",
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
]
