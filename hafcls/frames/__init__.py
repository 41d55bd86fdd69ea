"""Fixed classifiers: Hierarchy-Aware Frames (dense and exact tree constructions), the simplex
ETF and Equiangular Basis Vectors, all as :class:`Frame` records that save without pickle."""

from hafcls.frames.ebv import equiangular_basis
from hafcls.frames.etf import simplex_etf
from hafcls.frames.frame import Frame
from hafcls.frames.haframe import haframe
from hafcls.frames.similarity import (
    find_s_min,
    paper_grid,
    psd_bound,
    similarity_from_distance,
    target_similarity,
)
from hafcls.frames.tree import TreeFactor, TreeSimilarity

__all__ = [
    "Frame",
    "TreeFactor",
    "TreeSimilarity",
    "equiangular_basis",
    "find_s_min",
    "haframe",
    "paper_grid",
    "psd_bound",
    "similarity_from_distance",
    "simplex_etf",
    "target_similarity",
]
