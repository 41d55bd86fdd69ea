"""Top-k, mistake severity, HierDist@k and per-depth accuracy: hand-worked cases, ties, streaming,
merging, distance-matrix input and input validation."""

import math

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics import SeverityMeter, as_distance_matrix, evaluate, topk_indices


@pytest.fixture(scope="module")
def tree():
    # root -> A -> a1, a2 ; root -> B -> b1, b2   (H = 2; siblings at distance 1, others 2)
    return Hierarchy.from_paths({
        "a1": ["root", "A", "a1"], "a2": ["root", "A", "a2"],
        "b1": ["root", "B", "b1"], "b2": ["root", "B", "b2"],
    })


@pytest.fixture(scope="module")
def uneven():
    """Classes at several depths, one of them internal (c sits above c1 and c2)."""
    edges = [("r", "a"), ("a", "a1"), ("a", "a2"), ("a2", "a2x"), ("a2", "a2y"), ("r", "c"),
             ("c", "c1"), ("c", "c2"), ("r", "z"), ("a1", "a1p"), ("a1p", "a1q")]
    classes = ["a1q", "a2x", "a2y", "c", "c1", "c2", "z", "a2"]
    return Hierarchy.from_edges(edges, classes)


# four samples worked by hand on `tree` (class order a1, a2, b1, b2)
SCORES = np.array([
    [4.0, 3.0, 2.0, 1.0],  # label a1: ranked a1, a2          -> correct
    [3.0, 4.0, 1.0, 2.0],  # label a1: ranked a2, a1          -> mistake at distance 1
    [4.0, 1.0, 3.0, 2.0],  # label b1: ranked a1, b1          -> mistake at distance 2
    [1.0, 2.0, 3.0, 4.0],  # label b2: ranked b2, b1          -> correct
])
TARGETS = np.array([0, 0, 2, 3])


def test_distance_of_the_hand_tree(tree):
    np.testing.assert_array_equal(as_distance_matrix(tree),
                                  [[0, 1, 2, 2], [1, 0, 2, 2], [2, 2, 0, 1], [2, 2, 1, 0]])


def test_hand_worked_metrics(tree):
    out = evaluate(SCORES, TARGETS, tree, ks=(1, 2, 4, 20))
    assert out["top1"] == 0.5
    assert out["top5"] == 1.0  # k = 5 > K = 4 is clipped: every label is in the top 4
    # severity averages over the 2 mistakes only (1 and 2), not over all 4 samples
    assert out["mistake_severity"] == 1.5
    assert out["hierdist@1"] == 0.75
    # top-2 distances per sample: (0,1) (1,0) (2,0) (0,1) -> means .5 .5 1 .5
    assert out["hierdist@2"] == 0.625
    # all 4 classes: every row of D sums to 5
    assert out["hierdist@4"] == 1.25
    assert out["hierdist@20"] == 1.25  # clipped to K
    assert out["acc@depth1"] == 0.75  # only the b1 -> a1 mistake leaves the right branch
    assert out["acc@depth2"] == 0.5
    assert out["n"] == 4
    assert set(out) == {"top1", "top5", "mistake_severity", "hierdist@1", "hierdist@2",
                        "hierdist@4", "hierdist@20", "acc@depth1", "acc@depth2", "n",
                        "hops@1", "hops@2", "hops@4", "hops@20", "hops"}
    assert out["hops@1"] == out["top1"]
    assert out["hops@4"] == out["hops@20"] == out["hops"]  # k clipped to K = 4


def test_hierdist1_is_error_times_severity(uneven):
    rng = np.random.default_rng(0)
    k = uneven.num_classes
    targets = rng.integers(0, k, 500)
    scores = rng.normal(size=(500, k))
    scores[np.arange(500), targets] += 1.0
    out = evaluate(scores, targets, uneven)
    assert 0 < out["top1"] < 1
    assert out["hierdist@1"] == pytest.approx((1 - out["top1"]) * out["mistake_severity"],
                                              rel=1e-12)


def test_no_mistake_gives_nan_severity(tree):
    out = evaluate(np.eye(4), np.arange(4), tree)
    assert out["top1"] == 1.0
    assert math.isnan(out["mistake_severity"])
    assert out["hierdist@1"] == 0.0


def test_ties_rank_the_lower_index_first(tree):
    # all equal: class 0 is the top-1
    out = evaluate(np.zeros((2, 4)), np.array([0, 1]), tree, ks=(1,))
    assert out["top1"] == 0.5
    assert out["mistake_severity"] == 1.0  # label a2, predicted a1
    scores = torch.tensor([[1.0, 2.0, 2.0, 0.0], [5.0, 1.0, 1.0, 1.0], [-0.0, 0.0, -1.0, 0.0]])
    assert topk_indices(scores, 4).tolist() == [[1, 2, 0, 3], [0, 1, 2, 3], [0, 1, 3, 2]]
    assert topk_indices(scores, 2).tolist() == [[1, 2], [0, 1], [0, 1]]


def test_topk_equals_stable_argsort_with_many_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(300, 37))  # heavy ties everywhere
    for k in (1, 3, 20, 37, 50):
        got = topk_indices(torch.from_numpy(scores), k).numpy()
        want = np.argsort(-scores, axis=1, kind="stable")[:, :min(k, 37)]
        np.testing.assert_array_equal(got, want)
    floats = rng.normal(size=(200, 50)).astype(np.float32)
    floats[:, 10] = floats[:, 3]  # exact ties between two columns
    got = topk_indices(floats, 5).numpy()
    np.testing.assert_array_equal(got, np.argsort(-floats, axis=1, kind="stable")[:, :5])



def test_topk_block_prefilter_equals_stable_argsort():
    # K = 1010, k = 20 takes the block pre-filter (K >= 16 (k + 1), (k + 1) * 64 > K): exact
    # values, and ties (inside the top k, at its boundary, between block maxima) re-ranked
    from hafcls.metrics.ranking import _topk

    rng = np.random.default_rng(3)
    floats = rng.normal(size=(400, 1010)).astype(np.float32)
    floats[:50] = np.round(floats[:50] * 4) / 4  # coarse values: ties everywhere
    floats[50:100, 700] = floats[50:100, 3]  # a duplicated column: ties across blocks
    scores = torch.from_numpy(floats)
    for k in (20, 40):
        vals, _ = _topk(scores, k + 1)
        torch.testing.assert_close(vals, torch.topk(scores, k + 1, dim=1).values, rtol=0, atol=0)
        want = np.argsort(-floats, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(topk_indices(scores, k).numpy(), want)
    for k, col in ((20, 500), (40, 1009)):  # a NaN inside a block, in the partial last block
        bad = scores.clone()
        bad[7, col] = float("nan")
        with pytest.raises(HafclsError, match="NaN"):
            topk_indices(bad, k)

def _reference(scores, targets, h, ks):
    """Per-sample pure-Python metrics from root paths (independent of the vectorised code)."""
    paths = [h.path(c) for c in h.classes]

    def dist(a, b):
        if a == b:
            return 0
        shared = sum(1 for x, y in zip(paths[a], paths[b]) if x == y)
        return h.height - (shared - 1)

    def at_depth(c, t):
        return paths[c][t] if t < len(paths[c]) else paths[c][-1]

    k_all = scores.shape[1]
    n = len(targets)
    hits1 = hits5 = wrong = sev = 0
    sums = dict.fromkeys(ks, 0.0)
    depth_hits = [0] * h.height
    for row, y in zip(scores.tolist(), targets.tolist()):
        order = sorted(range(k_all), key=lambda j: (-row[j], j))
        hits1 += order[0] == y
        hits5 += y in order[:5]
        if order[0] != y:
            wrong += 1
            sev += dist(y, order[0])
        for k in ks:
            top = order[:min(k, k_all)]
            sums[k] += sum(dist(y, c) for c in top) / len(top)
        for t in range(1, h.height + 1):
            depth_hits[t - 1] += at_depth(order[0], t) == at_depth(y, t)
    out = {"top1": hits1 / n, "top5": hits5 / n,
           "mistake_severity": sev / wrong if wrong else float("nan")}
    out.update({f"hierdist@{k}": sums[k] / n for k in ks})
    out.update({f"acc@depth{t}": depth_hits[t - 1] / n for t in range(1, h.height + 1)})
    out["n"] = n
    return out


@pytest.mark.parametrize("integer_scores", [False, True])
def test_matches_pure_python_reference_on_uneven_tree(uneven, integer_scores):
    rng = np.random.default_rng(2)
    k = uneven.num_classes
    targets = rng.integers(0, k, 400)
    scores = rng.integers(0, 3, (400, k)) if integer_scores else rng.normal(size=(400, k))
    ks = (1, 3, 5, 20)
    out = evaluate(scores, targets, uneven, ks=ks)
    ref = _reference(scores, targets, uneven, ks)
    assert {k for k in out if not k.startswith("hops")} == ref.keys()
    for key in ref:
        assert out[key] == pytest.approx(ref[key], rel=1e-12), key
    assert out[f"acc@depth{uneven.height}"] == out["top1"]


def test_distance_matrix_input_equals_hierarchy_input(uneven):
    rng = np.random.default_rng(3)
    scores = torch.randn(300, uneven.num_classes, generator=torch.Generator().manual_seed(0))
    targets = rng.integers(0, uneven.num_classes, 300)
    with_tree = evaluate(scores, targets, uneven)
    d = uneven.distance_matrix()
    for matrix in (d, torch.from_numpy(d.astype(np.int64)), d.astype(np.float64)):
        plain = evaluate(scores.numpy(), torch.from_numpy(targets), matrix)
        assert not any(key.startswith("acc@depth") for key in plain)
        assert plain == {k: v for k, v in with_tree.items() if not k.startswith("acc@depth")}


def test_streaming_equals_one_shot(uneven):
    rng = np.random.default_rng(4)
    k = uneven.num_classes
    scores = rng.normal(size=(257, k)).astype(np.float32)
    targets = rng.integers(0, k, 257)
    one_shot = evaluate(scores, targets, uneven)
    meter = SeverityMeter(uneven)
    for part in np.split(np.arange(257), [1, 50, 51, 200]):  # uneven batches, one of size 1
        meter.update(torch.from_numpy(scores[part]), torch.from_numpy(targets[part]))
    assert _same(meter.compute(), one_shot)
    meter.reset()
    with pytest.raises(HafclsError, match="No samples"):
        meter.compute()


def test_merged_meters_equal_one_meter(uneven):
    rng = np.random.default_rng(5)
    k = uneven.num_classes
    scores = rng.normal(size=(300, k))
    targets = rng.integers(0, k, 300)
    whole = SeverityMeter(uneven)
    whole.update(scores, targets)
    first, second = SeverityMeter(uneven), SeverityMeter(uneven)
    first.update(scores[:120], targets[:120])
    second.update(scores[120:], targets[120:])
    # as an all_reduce would: sum the state tensors and load the sum
    summed = first.state_tensor() + second.state_tensor()
    assert summed.dtype == torch.float64 and summed.ndim == 1
    gathered = SeverityMeter(uneven)
    gathered.load_state_tensor(summed)
    assert _same(gathered.compute(), whole.compute())
    assert _same(first.merge(second).compute(), whole.compute())
    with pytest.raises(HafclsError, match="entries"):
        gathered.load_state_tensor(summed[:-1])
    with pytest.raises(HafclsError, match="same distances"):
        first.merge(SeverityMeter(uneven, ks=(1, 2)))


def test_all_reduce_in_a_one_process_group(tmp_path, uneven):
    import torch.distributed as dist

    rng = np.random.default_rng(6)
    scores = rng.normal(size=(50, uneven.num_classes))
    targets = rng.integers(0, uneven.num_classes, 50)
    meter = SeverityMeter(uneven)
    meter.update(scores, targets)
    before = meter.compute()
    meter.all_reduce()  # no process group: a no-op
    assert meter.compute() == before
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        meter.all_reduce()
    finally:
        dist.destroy_process_group()
    assert meter.compute() == before


def test_input_validation(tree):
    with pytest.raises(HafclsError, match="outside the 4 classes"):
        evaluate(SCORES, np.array([0, 0, 2, 4]), tree)
    with pytest.raises(HafclsError, match="outside the 4 classes"):
        evaluate(SCORES, np.array([0, -1, 2, 3]), tree)
    with pytest.raises(HafclsError, match="integer class indices"):
        evaluate(SCORES, TARGETS.astype(float), tree)
    with pytest.raises(HafclsError, match="1-D array of 4"):
        evaluate(SCORES, TARGETS[:3], tree)
    with pytest.raises(HafclsError, match="3 columns but there are 4 classes"):
        evaluate(SCORES[:, :3], TARGETS, tree)
    with pytest.raises(HafclsError, match="2-D"):
        evaluate(SCORES[0], TARGETS[:1], tree)
    bad = SCORES.copy()
    bad[1, 2] = np.nan
    with pytest.raises(HafclsError, match="NaN"):
        evaluate(bad, TARGETS, tree)
    with pytest.raises(HafclsError, match="square"):
        evaluate(SCORES, TARGETS, np.zeros((4, 3)))
    with pytest.raises(HafclsError, match="diagonal"):
        evaluate(SCORES, TARGETS, np.ones((4, 4)))
    with pytest.raises(HafclsError, match="negative"):
        evaluate(SCORES, TARGETS, -as_distance_matrix(tree).astype(int))
    with pytest.raises(HafclsError, match="positive integers"):
        evaluate(SCORES, TARGETS, tree, ks=(0, 5))
    with pytest.raises(HafclsError, match="Hierarchy or a K x K"):
        evaluate(SCORES, TARGETS, "imagenet")
    with pytest.raises(HafclsError, match="No samples"):
        evaluate(np.zeros((0, 4)), np.zeros(0, dtype=int), tree)


def test_infinite_scores_rank_normally(tree):
    scores = np.array([[-np.inf, np.inf, 0.0, np.inf]])
    assert topk_indices(scores, 4).tolist() == [[1, 3, 2, 0]]
    assert evaluate(scores, np.array([1]), tree)["top1"] == 1.0


def test_distance_cache_lives_with_the_hierarchy():
    import gc

    from hafcls.metrics import severity

    h = Hierarchy.from_paths({"x": ["r", "x"], "y": ["r", "y"]})
    d = as_distance_matrix(h)
    assert as_distance_matrix(h) is d  # computed once per hierarchy object
    assert not d.flags.writeable
    key = id(h)
    assert key in severity._derived
    del h
    gc.collect()
    assert key not in severity._derived


def _same(a: dict, b: dict) -> bool:
    """Equal dicts, except that HOPS (float sums) may differ by rounding."""
    return a.keys() == b.keys() and all(
        (a[k] == pytest.approx(b[k], rel=1e-12)) if k.startswith("hops") else
        (a[k] == b[k] or (a[k] != a[k] and b[k] != b[k])) for k in a)
