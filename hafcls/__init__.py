"""hafcls: hierarchy-aware image classification.

The names a user needs are importable from here; heavy modules (torch, timm) load on first use::

    import hafcls
    h = hafcls.load_hierarchy("imagenet-1k")
    frame = hafcls.haframe(h, gamma=2.0, method="tree")
    model = hafcls.create_model("resnet18", hierarchy=h, head="haframe", frame=frame)
    hafcls.evaluate(scores, targets, h)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY = {
    "Hierarchy": ("hafcls.hierarchy", "Hierarchy"),
    "load_hierarchy": ("hafcls.hierarchy", "load"),
    "HafclsError": ("hafcls.errors", "HafclsError"),
    "Frame": ("hafcls.frames", "Frame"),
    "haframe": ("hafcls.frames", "haframe"),
    "simplex_etf": ("hafcls.frames", "simplex_etf"),
    "equiangular_basis": ("hafcls.frames", "equiangular_basis"),
    "create_model": ("hafcls.models", "create"),
    "get_method": ("hafcls.methods", "get_method"),
    "Method": ("hafcls.methods", "Method"),
    "list_methods": ("hafcls.registry", "list_methods"),
    "list_heads": ("hafcls.registry", "list_heads"),
    "list_datasets": ("hafcls.registry", "list_datasets"),
    "list_hierarchy_sources": ("hafcls.registry", "list_hierarchy_sources"),
    "list_recipes": ("hafcls.registry", "list_recipes"),
    "evaluate": ("hafcls.metrics", "evaluate"),
    "SeverityMeter": ("hafcls.metrics", "SeverityMeter"),
    "neural_collapse": ("hafcls.metrics", "neural_collapse"),
    "crm": ("hafcls.inference", "crm"),
    "hedge": ("hafcls.inference", "hedge"),
    "topk_with_severity": ("hafcls.inference", "topk_with_severity"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hafcls' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
