"""Every loss on mixed (soft) targets, for mixup and CutMix through timm's ``Mixup``.

timm's ``Mixup(..., label_smoothing=0)`` returns mixed images and a B x K target matrix
``T = λ·onehot(y1) + (1 − λ)·onehot(y2)`` (λ per batch, per pair or per sample; CutMix's λ is
the pasted area's complement). :func:`mixed_loss` evaluates a project loss on ``T``:

==========================  =================================================================
loss                        soft form (T one-hot gives the plain loss)
==========================  =================================================================
CrossEntropyLoss (ce, ebv)  ``−mean_b Σ_c T'_bc log softmax(z_b)_c``, T' = T smoothed as usual
HAFrameLoss                 ``(1 − α)·soft CE + α·mean_b Σ_c (cos(w_c, h_b) − (T S)_bc)²``:
                            the target row ``λ·S[:, y1] + (1 − λ)·S[:, y2]``
                            (docs/mixup_and_imbalance.md)
SoftLabelLoss               ``KL(T Q ‖ softmax(z))``, Q's rows the classes' soft labels: the
                            target is the same mix of the two soft labels
HierarchicalCrossEntropy    ``mean_b Σ_y T_by·HXE_b(y)`` = λ·HXE(y1) + (1 − λ)·HXE(y2), the
                            mixup loss of Zhang et al. applied to HXE (linear in the target)
DotRegressionLoss, HUGLoss  refused (see below)
==========================  =================================================================

Refused losses. Dot regression (Yang et al. 2022) is defined through one true class vector
``w_y`` and its stated optimum is ``h ∥ w_y``; the paper gives no target for a feature of two
classes, and any blend of the two regressions would be our invention, not the method. HUG
(Liu et al. 2023) pulls each feature to its class proxy with an *unsquared* distance, averaged
per class: a λ-weighted sum ``λ‖x̂ − ŵ_a‖ + (1 − λ)‖x̂ − ŵ_b‖`` is minimised at the dominant
class's proxy, so a mixed target would act as the hard label of the larger part, not a mix.
Both raise :class:`HafclsError` naming the method and saying to train without mixup/CutMix.

No K x K matrix is formed: ``T S`` and ``T Q`` are sums over the non-zero entries of T (two per
row for mixup) of the loss's own target rows, in chunks, so the memory is that of a few B x K
blocks even for ImageNet-21k-sized hierarchies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.losses.cross_entropy import CrossEntropyLoss
from hafcls.losses.etf import DotRegressionLoss
from hafcls.losses.haframe import HAFrameLoss
from hafcls.losses.hierarchical import HierarchicalCrossEntropy, SoftLabelLoss
from hafcls.losses.hug import HUGLoss

_REFUSED = {
    DotRegressionLoss: "the ETF dot-regression loss regresses onto the single true class "
                       "vector; its paper defines no target for a mix of two classes",
    HUGLoss: "HUG's unsquared proxy distance turns a mixed target into the hard label of the "
             "larger part",
}
_ROW_BUDGET = 1 << 22  # elements of the (non-zeros x K) block built per chunk
_SUM_TOL = 1e-4


# ---------------------------------------------------------------------- targets
def one_hot_targets(targets: Tensor, num_classes: int) -> Tensor:
    """B x K float32 one-hot rows (the λ = 1 mixed target)."""
    return F.one_hot(targets.long(), num_classes).float()


def check_soft_targets(soft_targets: Tensor, num_classes: int) -> Tensor:
    """``soft_targets`` as float32 after checking shape, sign and that each row sums to one."""
    t = soft_targets
    if not isinstance(t, Tensor) or t.ndim != 2 or t.shape[1] != num_classes:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise HafclsError(
            f"Mixed targets must be a B x {num_classes} tensor, got {shape}.",
            f"build timm's Mixup with num_classes={num_classes}.",
        )
    t = t.float()
    if not torch.isfinite(t).all() or (t < 0).any():
        raise HafclsError("Mixed targets hold negative or non-finite values.",
                          "pass timm Mixup's targets unchanged.")
    if ((t.sum(dim=1) - 1.0).abs() > _SUM_TOL).any():
        raise HafclsError(
            "Mixed target rows must sum to one.",
            "build timm's Mixup with label_smoothing=0 (smoothing belongs to the loss).",
        )
    return t


def supports_mixed_targets(loss: nn.Module) -> bool:
    """Whether :func:`mixed_loss` can train ``loss`` on mixed targets."""
    return _handler(loss) is not None


def require_mixed_targets(loss: nn.Module, method: str | None = None) -> None:
    """Raise a :class:`HafclsError` naming ``method`` when its loss cannot take mixed targets
    (call it once when the run is set up, before any training step)."""
    if supports_mixed_targets(loss):
        return
    name = method or type(loss).__name__
    reason = next((why for cls, why in _REFUSED.items() if isinstance(loss, cls)),
                  f"{type(loss).__name__} has no mixed-target form")
    raise HafclsError(
        f"Method {name!r} cannot train with mixup or CutMix: {reason}.",
        "run it without --mixup/--cutmix.",
    )


def mixed_loss(loss: nn.Module, logits: Tensor, features: Tensor | None,
               soft_targets: Tensor) -> Tensor:
    """``loss`` evaluated on B x K mixed targets; equal to ``loss(logits, features, y)`` when
    ``soft_targets`` is ``onehot(y)``."""
    handler = _handler(loss)
    if handler is None:
        require_mixed_targets(loss)
    t = check_soft_targets(soft_targets, logits.shape[1])
    if t.shape[0] != logits.shape[0]:
        raise HafclsError(
            f"{t.shape[0]} mixed target rows for {logits.shape[0]} logits rows.",
            "pass the targets that Mixup returned with these images.",
        )
    return handler(loss, logits, features, t.to(logits.device))


# ---------------------------------------------------------------------- per-loss forms
def soft_cross_entropy(logits: Tensor, soft_targets: Tensor,
                       label_smoothing: float = 0.0) -> Tensor:
    """``−mean_b Σ_c T_bc log softmax(z_b)_c`` (with the usual smoothing of T)."""
    return F.cross_entropy(logits.float(), soft_targets, label_smoothing=label_smoothing)


def _ce(loss: CrossEntropyLoss, logits, features, t) -> Tensor:
    return soft_cross_entropy(logits, t, loss.label_smoothing)


def mix_rows(soft_targets: Tensor, rows: Callable[[Tensor], Tensor]) -> Tensor:
    """``T R`` where ``rows(classes)`` returns the rows R[classes] (n x K): a sum over T's
    non-zero entries, so R (K x K) is never formed. One-hot T gives exactly R[y]."""
    t = soft_targets
    b, k = t.shape
    row_idx, cls_idx = torch.nonzero(t, as_tuple=True)
    weights = t[row_idx, cls_idx]
    out = torch.zeros(b, k, dtype=torch.float32, device=t.device)
    step = max(1, _ROW_BUDGET // max(k, 1))
    for start in range(0, row_idx.numel(), step):
        sl = slice(start, start + step)
        out.index_add_(0, row_idx[sl], weights[sl, None] * rows(cls_idx[sl]).float())
    return out


def _haframe(loss: HAFrameLoss, logits, features, t) -> Tensor:
    if logits.shape[1] != loss.num_classes:
        raise HafclsError(
            f"The logits have {logits.shape[1]} classes, the loss's targets {loss.num_classes}.",
            "build the loss from the model's own frame and hierarchy.",
        )
    ce = soft_cross_entropy(logits, t)
    if loss.alpha == 0.0:
        return ce
    # S is symmetric, so the mixed row λ·S[:, y1] + (1−λ)·S[:, y2] is row b of T S
    target_cos = mix_rows(t, loss.target_cosines)
    cos_term = (loss.cosines(logits, features) - target_cos).pow(2).sum(dim=1).mean()
    return (1.0 - loss.alpha) * ce + loss.alpha * cos_term


def _soft_labels(loss: SoftLabelLoss, logits, features, t) -> Tensor:
    q = mix_rows(t, loss.target_distribution)
    return F.kl_div(F.log_softmax(logits.float(), dim=1), q, reduction="batchmean")


def hxe_per_target(loss: HierarchicalCrossEntropy, logits: Tensor, rows: Tensor,
                   classes: Tensor) -> Tensor:
    """``HXE_{rows[i]}(classes[i])`` for each pair: the hierarchical CE of sample ``rows[i]``
    were its label ``classes[i]`` (one gather along each class's path, no per-class loop)."""
    lse = loss.node_log_mass(logits)  # B x N, shared by every candidate label
    child = lse[rows[:, None], loss.edge_child[classes]]
    parent = lse[rows[:, None], loss.edge_parent[classes]]
    return -(loss.edge_weight[classes] * (child - parent)).sum(dim=1)


def _hxe(loss: HierarchicalCrossEntropy, logits, features, t) -> Tensor:
    rows, classes = torch.nonzero(t, as_tuple=True)
    per = hxe_per_target(loss, logits, rows, classes)
    return (t[rows, classes] * per).sum() / t.shape[0]


_HANDLERS: dict[type, Callable] = {
    CrossEntropyLoss: _ce,
    HAFrameLoss: _haframe,
    SoftLabelLoss: _soft_labels,
    HierarchicalCrossEntropy: _hxe,
}


def _handler(loss: nn.Module) -> Callable | None:
    for cls in type(loss).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
    return None


# ---------------------------------------------------------------------- timm Mixup
def build_mixup(num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                prob: float = 1.0, switch_prob: float = 0.5, mode: str = "batch"):
    """timm's ``Mixup`` with unsmoothed targets, or ``None`` when both alphas are 0."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise HafclsError("--mixup and --cutmix take alpha >= 0.", "use e.g. --mixup 0.2.")
    if not 0.0 <= prob <= 1.0 or not 0.0 <= switch_prob <= 1.0:
        raise HafclsError("The mixup probabilities must lie in [0, 1].",
                          "use e.g. --mixup-prob 1 --mixup-switch-prob 0.5.")
    if mode not in ("batch", "pair", "elem"):
        raise HafclsError(f"Unknown mixup mode {mode!r}.", "use batch, pair or elem.")
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                 switch_prob=switch_prob, mode=mode, label_smoothing=0.0,
                 num_classes=num_classes)


def mix_batch(mixup, images: Tensor, targets: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(images, B x K targets)`` after ``mixup``; timm needs an even batch, so a last odd
    sample passes through unmixed with its one-hot target (no sample is dropped)."""
    if mixup is None:
        return images, one_hot_targets(targets, num_classes)
    n = images.shape[0] - images.shape[0] % 2
    if n == images.shape[0]:
        return mixup(images, targets)
    if n == 0:
        return images, one_hot_targets(targets, num_classes)
    mixed, soft = mixup(images[:n], targets[:n])
    return (torch.cat([mixed, images[n:]]),
            torch.cat([soft, one_hot_targets(targets[n:], num_classes).to(soft.device)]))
