"""Property-based tests (hypothesis) over random label trees, frames and scores.

Trees are random parent arrays (node i > 0 hangs under a node with a smaller index), classes a
random subset of the nodes that may include internal nodes and the root. The properties are the
ones that hold for every tree: the published distance is a symmetric, integer, zero-diagonal
ultrametric equal to ``H - depth(LCA)``; the dense and the exact tree HAFrame constructions give
the same Gram matrix; the severity metrics obey their identities and do not depend on how the
samples are ordered or batched.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hafcls.hierarchy import Hierarchy

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def trees(draw, max_nodes: int = 24, min_classes: int = 2, internal: bool = True):
    """A random Hierarchy: parent array over ``n`` nodes, classes a random node subset."""
    n = draw(st.integers(min_value=3, max_value=max_nodes))
    parents = [draw(st.integers(min_value=0, max_value=i - 1)) for i in range(1, n)]
    edges = [(f"n{p}", f"n{i}") for i, p in enumerate(parents, start=1)]
    has_child = set(parents)
    leaves = [i for i in range(n) if i not in has_child]
    pool = list(range(n)) if internal else leaves
    chosen = draw(st.lists(st.sampled_from(pool), min_size=min(min_classes, len(pool)),
                           max_size=len(pool), unique=True))
    assume(len(chosen) >= min_classes)
    return Hierarchy.from_edges(edges, classes=[f"n{i}" for i in chosen])


def brute_distance(h: Hierarchy) -> np.ndarray:
    """``H - depth(LCA)`` pair by pair from the tree's own paths (independent of distances.py)."""
    k = h.num_classes
    d = np.zeros((k, k), dtype=np.int64)
    paths = [h.path(c) for c in h.classes]
    for a in range(k):
        for b in range(k):
            if a != b:
                common = 0
                for x, y in zip(paths[a], paths[b]):
                    if x != y:
                        break
                    common += 1
                d[a, b] = h.height - (common - 1)
    return d


# ---------------------------------------------------------------------- distances
@SETTINGS
@given(trees())
def test_published_distance_is_an_integer_ultrametric(h):
    d = h.distance_matrix()
    k = h.num_classes
    assert np.issubdtype(d.dtype, np.integer) and d.dtype.itemsize <= 2
    assert d.shape == (k, k)
    assert np.array_equal(d, d.T)
    assert not d.diagonal().any()
    off = ~np.eye(k, dtype=bool)
    assert (d[off] >= 1).all() and (d <= h.height).all()
    # d(a, c) <= max(d(a, b), d(b, c)) for every triple
    d64 = d.astype(np.int64)
    bound = np.maximum(d64[:, :, None], d64[None, :, :])  # [a, b, c] = max(d(a,b), d(b,c))
    assert (d64[:, None, :] <= bound).all()
    assert np.array_equal(d64, brute_distance(h))


@SETTINGS
@given(trees())
def test_lca_height_distance_is_a_smaller_ultrametric(h):
    d = h.distance_matrix("lca_height").astype(np.int64)
    pub = h.distance_matrix().astype(np.int64)
    assert np.array_equal(d, d.T) and not d.diagonal().any()
    assert (d <= pub).all()
    bound = np.maximum(d[:, :, None], d[None, :, :])
    assert (d[:, None, :] <= bound).all()


@SETTINGS
@given(h=trees())
def test_json_round_trip_keeps_distances_and_fingerprint(h, tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / "h.json"
    h.to_json(path)
    back = Hierarchy.from_json(path)
    assert back.fingerprint() == h.fingerprint() and back.classes == h.classes
    assert np.array_equal(back.distance_matrix(), h.distance_matrix())


# ---------------------------------------------------------------------- frames
def _similarity64(h: Hierarchy, gamma: float, s_min: float) -> np.ndarray:
    """S from its definition (docs/haframe.md), in float64, from the distance matrix."""
    d = h.distance_matrix().astype(np.float64)
    s = (1 - s_min) * np.exp(-gamma * d / d.max()) + s_min
    np.fill_diagonal(s, 1.0)
    return s


@SETTINGS
@given(trees(max_nodes=18), st.floats(min_value=0.2, max_value=8.0),
       st.sampled_from(["exact", "inside"]))
def test_eigh_and_tree_frames_have_the_same_gram(h, gamma, rule):
    frames = pytest.importorskip("hafcls.frames")
    if rule == "inside":
        # a feasible value strictly inside the PSD interval, between the bound and 0.9
        bound = frames.psd_bound(h, gamma)
        s_min = bound + 0.5 * (0.9 - bound)
    else:
        s_min = "exact"
    eigh = frames.haframe(h, gamma=gamma, s_min=s_min, method="eigh")
    tree = frames.haframe(h, gamma=gamma, s_min=s_min, method="tree")
    assert eigh.s_min == tree.s_min
    target = _similarity64(h, gamma, eigh.s_min)
    # the tree frame's own float64 factor, checked here independently of its max_error
    w64 = tree.factor.to_dense(np.float64)
    assert np.abs(w64.T @ w64 - target).max() < 1e-8
    # the dense frame keeps float64 only inside its construction: its reported error there
    assert eigh.max_error is not None and eigh.max_error < 1e-8
    assert tree.max_error is not None and tree.max_error < 1e-8
    # the stored float32 class vectors: unit columns, Grams equal up to float32 rounding
    for frame in (eigh, tree):
        w = frame.weight.double().numpy()
        assert frame.weight.shape[1] == h.num_classes
        assert np.allclose(np.linalg.norm(w, axis=0), 1.0, atol=1e-6)
        assert np.abs(w.T @ w - target).max() < 1e-5
        assert np.abs(frame.similarity.double().numpy() - target).max() < 1e-6
    ge = eigh.weight.double().numpy()
    gt = tree.weight.double().numpy()
    assert np.abs(ge.T @ ge - gt.T @ gt).max() < 2e-5


# ---------------------------------------------------------------------- metrics
@st.composite
def scored_samples(draw):
    h = draw(trees(max_nodes=16))
    k = h.num_classes
    n = draw(st.integers(min_value=1, max_value=40))
    seed = draw(st.integers(min_value=0, max_value=2**31 - 1))
    rng = np.random.default_rng(seed)
    levels = draw(st.integers(min_value=2, max_value=6))  # few distinct values: many ties
    scores = rng.integers(0, levels, size=(n, k)).astype(np.float32)
    targets = rng.integers(0, k, size=n)
    return h, scores, targets, rng


def _reference(scores: np.ndarray, targets: np.ndarray, d: np.ndarray, ks) -> dict:
    """The docs/metrics.md definitions, sample by sample (ties: lower class index first)."""
    n, k = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    out = {"top1": float(np.mean(order[:, 0] == targets)),
           "top5": float(np.mean([t in row[:5] for t, row in zip(targets, order)]))}
    wrong = order[:, 0] != targets
    out["mistake_severity"] = (float(np.mean(d[targets[wrong], order[wrong, 0]]))
                               if wrong.any() else float("nan"))
    for kk in ks:
        m = min(kk, k)
        out[f"hierdist@{kk}"] = float(np.mean([d[t, row[:m]].mean()
                                               for t, row in zip(targets, order)]))
    return out


def _same(a: dict, b: dict, keys=None, tol: float = 1e-12) -> bool:
    for key in keys or a:
        x, y = a[key], b[key]
        if isinstance(x, float) and np.isnan(x):
            if not np.isnan(y):
                return False
        elif abs(x - y) > tol:
            return False
    return True


@SETTINGS
@given(scored_samples())
def test_metric_invariants(sample):
    metrics = pytest.importorskip("hafcls.metrics")
    h, scores, targets, rng = sample
    ks = (1, 5, 20)
    out = metrics.evaluate(scores, targets, h, ks=ks)
    d = h.distance_matrix().astype(np.int64)
    ref = _reference(scores, targets, d, ks)
    assert _same(out, ref, keys=list(ref), tol=1e-9), (out, ref)
    # HierDist@1 = (1 - top1) x mistake severity (0 when there is no mistake)
    if np.isnan(out["mistake_severity"]):
        assert out["top1"] == 1.0 and out["hierdist@1"] == 0.0
    else:
        assert abs(out["hierdist@1"] - (1 - out["top1"]) * out["mistake_severity"]) < 1e-12
    assert out["top1"] <= out["top5"] <= 1.0
    for k in ks:
        assert 0.0 <= out[f"hierdist@{k}"] <= h.height
    assert out[f"acc@depth{h.height}"] == out["top1"]
    assert out["n"] == len(targets)
    # any permutation of the samples gives the same numbers
    perm = rng.permutation(len(targets))
    assert _same(metrics.evaluate(scores[perm], targets[perm], h, ks=ks), out)
    # streaming over random batches = one shot
    meter = metrics.SeverityMeter(h, ks=ks)
    cuts = np.sort(rng.integers(0, len(targets) + 1, size=3))
    for part in np.split(np.arange(len(targets)), cuts):
        if len(part):
            meter.update(scores[part], targets[part])
    assert _same(meter.compute(), out)
    # a distance matrix instead of the hierarchy: the same numbers without the depth keys
    plain = metrics.evaluate(scores, targets, h.distance_matrix(), ks=ks)
    assert _same(plain, out, keys=list(plain))
