"""HAFrame (Liang & Davis, ICCV 2023): a fixed Hierarchy-Aware Frame head trained with
``(1 − α)·CE + α·L_cos``. The paper's γ and α per dataset are the presets below.

See ``docs/haframe.md``.
"""

from __future__ import annotations

import numpy as np

from hafcls.losses import HAFrameLoss
from hafcls.methods.base import Method, frame_metadata, number, register_method
from hafcls.validation import Option

# (gamma, alpha) of the HAFrame paper per dataset, and the default for any other dataset
PRESETS: dict[str, tuple[float, float]] = {
    "cifar100": (2.0, 0.4),
    "fgvc-aircraft": (1.0, 0.5),
    "inat2019": (5.0, 0.4),
    "tiered-imagenet": (3.0, 0.5),
}
DEFAULT = (2.0, 0.4)  # the small-data CIFAR-100 setting
ALPHA = Option("alpha", float, 0.0, 1.0, default=0.4, help="Weight of the cosine term.")


def build_haframe_loss(method: Method, head, hierarchy) -> HAFrameLoss:
    """Targets from the hierarchy and the frame's (γ, s_min) when both are known (the frame's
    own S to the last bit, from uint8 distances filled from the tree: no K x K float matrix, so
    a frame built without S, the default above 8,192 classes, trains the same); otherwise the
    frame's own Gram matrix of unit columns."""
    alpha = method.loss_kwargs["alpha"]
    frame = head.class_vectors()
    meta = frame_metadata(head)
    gamma, s_min = number(meta.get("gamma")), number(meta.get("s_min"))
    kind = (meta.get("info") or {}).get("distance", "published")
    if hierarchy is not None and gamma is not None and s_min is not None and kind in (
        "published", "lca_height"
    ):
        return HAFrameLoss.from_distance(hierarchy, gamma, s_min, alpha, frame_weight=frame,
                                         distance=kind)
    unit = frame.detach().float()
    unit = unit / unit.norm(dim=0, keepdim=True).clamp_min(1e-12)
    return HAFrameLoss(unit.t() @ unit, alpha, frame_weight=frame)


def preset(dataset: str | None) -> tuple[float, float]:
    """``(gamma, alpha)`` of the paper for ``dataset`` (canonical name), else the default."""
    return PRESETS.get(dataset, DEFAULT)


def similarity_target(model, hierarchy, dataset: str | None) -> np.ndarray:
    """The cosines a HAFrame model was trained towards (its frame's Gram matrix), or for any
    other model the HAFrame target S of the dataset's preset γ (paper rule for s_min): what the
    comparison's similarity figure draws the realised cosines against."""
    head = getattr(model, "head", None)
    if getattr(head, "frame_is_target", False):
        w = head.class_vectors().detach().double().cpu()
        w = w / w.norm(dim=0, keepdim=True).clamp_min(1e-12)
        return (w.T @ w).numpy()
    from hafcls.frames import target_similarity
    from hafcls.methods.base import canonical_dataset

    gamma, _ = preset(canonical_dataset(dataset))
    return target_similarity(hierarchy, gamma=gamma, s_min="paper")


@register_method("haframe")
def haframe(dataset: str | None = None) -> Method:
    gamma, alpha = preset(dataset)
    return Method(
        name="haframe", head="haframe", head_kwargs={"s_min": "paper", "gamma": gamma},
        loss="haframe", loss_kwargs={"alpha": alpha}, build=build_haframe_loss,
        loss_options=(ALPHA,), needs_head=True,
        description="Fixed Hierarchy-Aware Frame, CE + cosine regression (Liang & Davis 2023).",
    )
