"""The exact tree frame in factored form (:class:`TreeFactor`) and the allocator of the big
dense frame arrays (:func:`empty`); built by :meth:`hafcls.frames.tree.TreeSimilarity.factor`."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator

_THREADS = min(8, os.cpu_count() or 1)


def empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised numpy array whose memory torch allocates (the frame keeps it as a tensor).

    numpy asks the kernel for transparent huge pages on large arrays (``madvise``); on a loaded
    machine with fragmented memory the first touch then stalls in page compaction: 3-12 s for the
    1.3 GB of the 11,821-class frame, against 0.7-2.4 s with torch's ordinary pages.
    """
    return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype=dtype)).dtype).numpy()


@dataclass
class TreeFactor:
    """The exact frame in factored form: ``W = W' - kappa * y 1^T`` (d x K).

    ``matrix`` is ``W'`` (scipy CSR, float64, ``depth + 1`` non-zeros per column); ``shift`` is
    ``y`` (length d) or ``None`` when ``g(top) >= 0`` (then ``W = W'``). Logits for features ``h``
    stay sparse: ``W^T h = W'^T h - kappa (y^T h) 1``.
    """

    matrix: sp.csr_matrix
    shift: np.ndarray | None
    kappa: float
    num_internal: int
    has_top: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``W x`` for a K-vector or a K x m matrix."""
        out = self.matrix @ x
        if self.shift is not None:
            total = x.sum(axis=0)
            out = out - self.kappa * np.multiply.outer(self.shift, total)
        return out

    def rmatvec(self, z: np.ndarray) -> np.ndarray:
        """``W^T z`` for a d-vector or a d x m matrix."""
        out = self.matrix.T @ z
        if self.shift is not None:
            out = out - self.kappa * (self.shift @ z)
        return out

    def gram_operator(self) -> LinearOperator:
        """``S x = W^T (W x)`` as a scipy ``LinearOperator`` (for Lanczos)."""
        k = self.shape[1]
        return LinearOperator(
            (k, k),
            matvec=lambda x: self.rmatvec(self.matvec(x)),
            matmat=lambda x: self.rmatvec(self.matvec(x)),
            dtype=np.float64,
        )

    def to_dense(self, dtype=np.float32) -> np.ndarray:
        """The dense ``d x K`` weight, written once in ``dtype`` (no float64 ``d x K`` copy).

        Every entry off the sparse pattern is ``-kappa y_r`` (row r), so the array is filled row by
        row with that value, then the ``depth + 1`` pattern entries per column are set, each
        computed in float64 before the cast.
        """
        d, k = self.shape
        coo = self.matrix.tocoo()
        if self.shift is None:
            out = empty((d, k), dtype)
            out.fill(0)
            out[coo.row, coo.col] = coo.data
            return out
        out = empty((d, k), dtype)
        fill = (-self.kappa * self.shift).astype(dtype)[:, None]

        def write(rows: slice) -> None:  # memory-bound; threads share the page-fault work
            out[rows] = fill[rows]

        step = max(1, -(-d // (4 * _THREADS)))
        chunks = [slice(a, a + step) for a in range(0, d, step)]
        if _THREADS > 1 and d * k > 1 << 22:
            with ThreadPoolExecutor(_THREADS) as pool:
                list(pool.map(write, chunks))
        else:
            out[...] = fill
        out[coo.row, coo.col] = coo.data - self.kappa * self.shift[coo.row]
        return out
