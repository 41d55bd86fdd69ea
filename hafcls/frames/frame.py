"""The :class:`Frame` record (a fixed classifier) and its pickle-free file format.

A frame file is one safetensors file: tensor ``weight`` (float32, d x K), tensor ``similarity``
(float32, K x K) when the frame has target cosines and the caller keeps them, and the JSON string
:meth:`Frame.to_metadata` under the header metadata key ``"hafcls"`` (plus ``"format":
"hafcls-frame"``). Nothing is unpickled on load; writes are atomic (temp file, then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hafcls.errors import HafclsError
from hafcls.io import atomic_write

FORMAT = "hafcls-frame"
FORMAT_VERSION = 1
KINDS = ("haframe", "etf", "ebv")


@dataclass(eq=False)
class Frame:
    """A fixed classifier: ``weight`` columns are the class vectors (unit norm).

    Attributes
    ----------
    weight:
        ``d x K`` float32 tensor (float64 only when asked for), unit-norm columns. Logits are
        ``features @ weight``. Files always store float32.
    similarity:
        ``K x K`` float32 target cosines, or ``None`` for frames without one (EBV).
    kind:
        ``"haframe"``, ``"etf"`` or ``"ebv"``.
    gamma, s_min:
        HAFrame parameters (``s_min`` resolved to a float), ``None`` for other kinds.
    method:
        How it was built: ``"eigh"``/``"tree"`` (HAFrame), ``"closed_form"`` (ETF),
        ``"adam"`` (EBV).
    dim:
        ``d``, the number of rows of ``weight``.
    max_error:
        ``max |W^T W - S|`` over all class pairs of the float64 construction (before the float32
        cast, which adds up to about 1e-7); ``None`` when there is no target (EBV).
    seed:
        Seed of the random parts (rotation, EBV initialisation).
    fingerprint:
        :meth:`Hierarchy.fingerprint` of the hierarchy it was built for, or ``None``.
    info:
        JSON-able extras (``s_min_rule``, ``build_seconds``, ``lambda_next``, ...).
    factor:
        For ``method="tree"``, the sparse exact factor (:class:`~hafcls.frames.tree.TreeFactor`)
        for sparse logits; not saved.
    """

    weight: torch.Tensor
    similarity: torch.Tensor | None = None
    kind: str = "haframe"
    gamma: float | None = None
    s_min: float | None = None
    method: str | None = None
    dim: int | None = None
    max_error: float | None = None
    seed: int | None = 0
    fingerprint: str | None = None
    info: dict = field(default_factory=dict)
    factor: Any = field(default=None, repr=False)

    def __post_init__(self):
        if not isinstance(self.weight, torch.Tensor) or self.weight.ndim != 2:
            raise HafclsError(
                "A frame's weight must be a 2-d torch tensor (d x K).",
                "pass torch.as_tensor(matrix) with class vectors as columns.",
            )
        if self.kind not in KINDS:
            raise HafclsError(f"Unknown frame kind {self.kind!r}.", f"use one of {KINDS}.")
        k = self.weight.shape[1]
        if self.similarity is not None and tuple(self.similarity.shape) != (k, k):
            raise HafclsError(
                f"The similarity matrix has shape {tuple(self.similarity.shape)}, expected "
                f"({k}, {k}) for {k} classes.",
                "pass the K x K target cosines of the same classes, or None.",
            )
        if self.dim is None:
            self.dim = int(self.weight.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[1])

    def cosines(self) -> torch.Tensor:
        """``K x K`` realised cosines of the stored (float32) class vectors, in float64."""
        w = self.weight.double()
        w = w / w.norm(dim=0, keepdim=True)
        return w.T @ w

    def to_metadata(self) -> dict:
        """Everything except the tensors, as a JSON-able dict."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "dim": int(self.dim),
            "gamma": self.gamma,
            "s_min": self.s_min,
            "method": self.method,
            "max_error": self.max_error,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "has_similarity": self.similarity is not None,
            "info": self.info,
        }

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, include_similarity: bool = True) -> Path:
        """Write a safetensors file (atomic). ``include_similarity=False`` skips the K x K S."""
        from safetensors.torch import save_file

        tensors = {"weight": self.weight.detach().to(torch.float32).contiguous()}
        meta = self.to_metadata()
        if include_similarity and self.similarity is not None:
            tensors["similarity"] = self.similarity.detach().to(torch.float32).contiguous()
        else:
            meta["has_similarity"] = False
        header = {"format": FORMAT, "hafcls": json.dumps(meta)}
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))

    @classmethod
    def load(cls, path: str | os.PathLike, hierarchy=None) -> Frame:
        """Read a frame file; with ``hierarchy``, refuse a frame built for another hierarchy."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise HafclsError(f"No such frame file: {path}.", "check the path, or build one "
                              "with `hafcls frame HIERARCHY -o FILE`.")
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                names = set(f.keys())
                tensors = {name: f.get_tensor(name) for name in names}
        except (SafetensorError, OSError, ValueError) as err:
            raise HafclsError(
                f"{path} is not a readable safetensors frame file ({err}).",
                "rebuild it with `hafcls frame` or Frame.save().",
            ) from None
        if header.get("format") != FORMAT or "hafcls" not in header or "weight" not in names:
            raise HafclsError(
                f"{path} is a safetensors file but not a hafcls frame.",
                "rebuild it with `hafcls frame` or Frame.save().",
            )
        try:
            meta = json.loads(header["hafcls"])
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or "kind" not in meta:
            raise HafclsError(
                f"{path} has unreadable frame metadata.",
                "rebuild it with `hafcls frame` or Frame.save().",
            )
        if meta.get("version", 0) > FORMAT_VERSION:
            raise HafclsError(
                f"{path} uses frame format version {meta['version']}; this hafcls reads up to "
                f"{FORMAT_VERSION}.",
                "upgrade hafcls.",
            )
        frame = cls(
            weight=tensors["weight"],
            similarity=tensors.get("similarity"),
            kind=meta["kind"],
            gamma=meta.get("gamma"),
            s_min=meta.get("s_min"),
            method=meta.get("method"),
            dim=meta.get("dim"),
            max_error=meta.get("max_error"),
            seed=meta.get("seed"),
            fingerprint=meta.get("fingerprint"),
            info=meta.get("info") or {},
        )
        if hierarchy is not None:
            frame.check_hierarchy(hierarchy, source=str(path))
        return frame

    def check_hierarchy(self, hierarchy, source: str = "the frame") -> None:
        """Raise :class:`HafclsError` unless this frame fits ``hierarchy``."""
        theirs = hierarchy.fingerprint()
        if self.fingerprint is not None and self.fingerprint != theirs:
            raise HafclsError(
                f"{source} was built for the hierarchy with fingerprint {self.fingerprint}, but "
                f"the hierarchy given has fingerprint {theirs}.",
                "rebuild the frame for this hierarchy (`hafcls frame HIERARCHY -o FILE`), or "
                "load it with the hierarchy it was built for.",
            )
        if self.num_classes != hierarchy.num_classes:
            raise HafclsError(
                f"{source} has {self.num_classes} classes, the hierarchy has "
                f"{hierarchy.num_classes}.",
                "build a frame with as many classes as the hierarchy.",
            )
