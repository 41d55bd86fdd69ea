"""Validated inputs shared by the metrics and the decoders: distance matrices, scores, targets.

Also :func:`derived_tables`, a per-hierarchy cache of tables derived from a :class:`Hierarchy`
(distance matrix, HOPS rank tables, tree index tensors), so per-batch calls stay cheap.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

_BLOCK_ELEMENTS = 1 << 21  # scores per row block (8 MB of float32): bounds the temporaries

_derived: dict[int, tuple[weakref.ref, dict]] = {}


def derived_tables(hierarchy: Hierarchy) -> dict:
    """A dict for tables derived from ``hierarchy``, kept as long as that object lives.

    Keyed by object identity: looking a Hierarchy up by equality would hash its fingerprint on
    every call (tens of ms for ImageNet-12k), too slow for a per-batch call.
    """
    key = id(hierarchy)
    entry = _derived.get(key)
    if entry is None or entry[0]() is not hierarchy:
        entry = (weakref.ref(hierarchy), {})
        _derived[key] = entry
        weakref.finalize(hierarchy, _derived.pop, key, None)
    return entry[1]


# ---------------------------------------------------------------------- inputs
def as_distance_matrix(hierarchy_or_distance) -> np.ndarray:
    """The K x K class distance matrix of a :class:`Hierarchy` (published distance) or a matrix.

    A matrix (numpy array or torch tensor) must be square, finite, non-negative and have a zero
    diagonal. Integer matrices are returned as they are (small ints); hierarchies' matrices are
    cached per hierarchy and returned read-only.
    """
    if isinstance(hierarchy_or_distance, Hierarchy):
        tables = derived_tables(hierarchy_or_distance)
        if "distance" not in tables:
            d = hierarchy_or_distance.distance_matrix()
            d.setflags(write=False)
            tables["distance"] = d
        return tables["distance"]
    if isinstance(hierarchy_or_distance, torch.Tensor):
        d = hierarchy_or_distance.detach().cpu().numpy()
    elif isinstance(hierarchy_or_distance, np.ndarray):
        d = hierarchy_or_distance
    else:
        raise HafclsError(
            f"Expected a Hierarchy or a K x K distance matrix, got "
            f"{type(hierarchy_or_distance).__name__}.",
            "pass a hafcls Hierarchy, or hierarchy.distance_matrix() as a numpy array.",
        )
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] == 0:
        raise HafclsError(
            f"A distance matrix must be square K x K, got shape {tuple(d.shape)}.",
            "pass the K x K matrix of distances between the K classes.",
        )
    if d.dtype == bool or not (np.issubdtype(d.dtype, np.integer)
                               or np.issubdtype(d.dtype, np.floating)):
        raise HafclsError(
            f"A distance matrix must hold integers or floats, got dtype {d.dtype}.",
            "convert it with .astype(np.int16) or .astype(np.float64).",
        )
    if np.issubdtype(d.dtype, np.floating) and not np.isfinite(d).all():
        raise HafclsError("The distance matrix holds NaN or infinite values.",
                          "give finite distances between all class pairs.")
    if (d < 0).any():
        raise HafclsError("The distance matrix holds negative distances.",
                          "distances between classes must be >= 0.")
    if np.diagonal(d).any():
        raise HafclsError(
            "The distance matrix has a non-zero diagonal: a correct prediction must cost 0.",
            "set D[i, i] = 0 for every class i.",
        )
    return d


def _hierarchy_of(hierarchy_or_distance) -> Hierarchy | None:
    return hierarchy_or_distance if isinstance(hierarchy_or_distance, Hierarchy) else None


def as_scores(scores, num_classes: int | None = None, name: str = "scores") -> torch.Tensor:
    """``scores`` as an N x K torch tensor (numpy arrays are wrapped without a copy)."""
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(scores)
    elif not isinstance(scores, torch.Tensor):
        raise HafclsError(
            f"{name} must be a torch tensor or numpy array, got {type(scores).__name__}.",
            f"pass {name} as an N x K array (one row per sample, one column per class).",
        )
    scores = scores.detach()
    if scores.ndim != 2:
        raise HafclsError(
            f"{name} must be 2-D (N samples x K classes), got shape {tuple(scores.shape)}.",
            "stack the per-sample score vectors into one N x K array.",
        )
    if num_classes is not None and scores.shape[1] != num_classes:
        raise HafclsError(
            f"{name} have {scores.shape[1]} columns but there are {num_classes} classes.",
            "give one column per class, in the hierarchy's class order.",
        )
    if scores.dtype == torch.bool:
        scores = scores.to(torch.uint8)
    if scores.is_complex():
        raise HafclsError(f"{name} must be real numbers, got {scores.dtype}.",
                          "pass real-valued scores (logits or probabilities).")
    if scores.dtype in (torch.bfloat16, torch.float16):
        # exact: every bf16/fp16 value is a float32 value, so the ranking is unchanged, and
        # float32 kernels (topk, sort, cumsum) avoid the low-precision accumulations
        scores = scores.float()
    return scores


def as_targets(targets, n: int, num_classes: int, device=None) -> torch.Tensor:
    """Validate class indices: 1-D integers in ``[0, num_classes)`` of length ``n``."""
    if isinstance(targets, np.ndarray):
        targets = torch.from_numpy(targets)
    elif not isinstance(targets, torch.Tensor):
        targets = torch.as_tensor(np.asarray(targets))
    targets = targets.detach()
    if targets.ndim != 1 or targets.shape[0] != n:
        raise HafclsError(
            f"targets must be a 1-D array of {n} class indices, got shape "
            f"{tuple(targets.shape)}.",
            "pass one integer class index per row of the scores.",
        )
    if targets.dtype.is_floating_point or targets.dtype in (torch.bool, torch.complex64,
                                                            torch.complex128):
        raise HafclsError(f"targets must be integer class indices, got {targets.dtype}.",
                          "convert them with .long() / .astype(np.int64).")
    targets = targets.to(device=device, dtype=torch.long)
    if n and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        bad = targets[(targets < 0) | (targets >= num_classes)][0].item()
        raise HafclsError(
            f"Target {bad} is outside the {num_classes} classes (valid indices 0.."
            f"{num_classes - 1}).",
            "check that labels use the hierarchy's class order and the right hierarchy.",
        )
    return targets


def as_float64(x, name: str) -> torch.Tensor:
    """A detached CPU float64 copy of a tensor or numpy array (geometry metrics sum cosines)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x).double()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    raise HafclsError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}.",
                      f"pass {name} as an array.")


def _check_finite(block: torch.Tensor, name: str = "scores") -> None:
    # a NaN anywhere makes the sum NaN: one cheap reduction instead of an N x K mask
    if block.dtype.is_floating_point and torch.isnan(block.sum()) and torch.isnan(block).any():
        raise HafclsError(f"{name} contain NaN, so the classes cannot be ranked.",
                          "fix the model or data that produced them (NaN logits).")


def _block_rows(num_classes: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(num_classes, 1))


