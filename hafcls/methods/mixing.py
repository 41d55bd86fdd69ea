"""Mixup and CutMix for every method: the engine's way to the mixed-target forms of the losses.

The forms themselves live with the losses (:mod:`hafcls.losses.mixed_targets`); they are
re-exported here because the engine reaches losses only through the methods layer. A method
whose loss has no mixed-target form (ETF dot regression, HUG) is refused by
:func:`require_mixed_targets` with a message naming it (docs/mixup_and_imbalance.md §1).
"""

from hafcls.losses.mixed_targets import (
    build_mixup,
    mix_batch,
    mixed_loss,
    require_mixed_targets,
    supports_mixed_targets,
)

__all__ = ["build_mixup", "mix_batch", "mixed_loss", "require_mixed_targets",
           "supports_mixed_targets"]
