"""Figures of hafcls.plots: panel counts, the numbers drawn, PNG files and the optional import."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from hafcls import plots  # noqa: E402
from hafcls.errors import HafclsError  # noqa: E402
from hafcls.hierarchy import Hierarchy  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, fig):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    from matplotlib.image import imread

    image = imread(path)
    width, height = fig.get_size_inches() * plots.DPI
    assert image.shape[:2] == (round(height), round(width))
    assert image[..., :3].std() > 0  # something was drawn


def _tree():
    # classes sorted alphabetically: a1 b1 a2 b2 would interleave; tree order groups them
    return Hierarchy.from_edges([("root", "A"), ("root", "B"), ("A", "a2"), ("A", "b1"),
                                 ("B", "a1"), ("B", "b2")])


def test_class_order_groups_subtrees():
    h = _tree()
    assert h.classes == ["a1", "a2", "b1", "b2"]
    order = plots.class_order(h)
    ordered = [h.classes[i] for i in order]
    # a2, b1 sit under A; a1, b2 under B: each subtree is contiguous
    assert {frozenset(ordered[:2]), frozenset(ordered[2:])} == {frozenset({"a2", "b1"}),
                                                                frozenset({"a1", "b2"})}


def test_class_mean_cosines_hand_example():
    means = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    cos = plots.class_mean_cosines(means)
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(cos, [[1, r, 0], [r, 1, 0], [0, 0, 0]], atol=1e-12)


def test_mistake_histogram_counts():
    d = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]], dtype=np.uint8)
    hist = plots.mistake_histogram([0, 1, 2, 2, 0], [0, 0, 0, 1, 2], d)
    # distances: 0, 1, 2, 2, 2
    assert hist.tolist() == [1, 1, 3]


@pytest.mark.parametrize("methods", [1, 3])
def test_similarity_figure(tmp_path, methods):
    h = _tree()
    s = np.full((4, 4), -0.2) + 1.2 * np.eye(4)
    realised = {f"m{i}": s + 0.1 * i * (1 - np.eye(4)) for i in range(methods)}
    fig = plots.plot_similarity(s, realised, order=plots.class_order(h))
    assert len(plots.panels(fig)) == 1 + methods
    assert len(fig.axes) == 2 + methods  # one shared colorbar
    titles = [ax.get_title() for ax in plots.panels(fig)]
    assert titles[0] == "target S"
    if methods == 3:  # off-diagonal error of m2 is 0.2 everywhere
        assert "mean 0.200, max 0.200" in titles[3]
    # the permutation is applied to the drawn matrix
    drawn = plots.panels(fig)[0].get_images()[0].get_array()
    order = plots.class_order(h)
    np.testing.assert_allclose(drawn, s[np.ix_(order, order)])
    _check_png(plots.save_figure(fig, tmp_path / "s.png"), fig)


def test_similarity_rejects_mismatched_shapes():
    with pytest.raises(HafclsError, match="same classes"):
        plots.plot_similarity(np.eye(3), {"m": np.eye(4)})
    with pytest.raises(HafclsError, match="permutation"):
        plots.plot_similarity(np.eye(2), {"m": np.eye(2)}, order=[0, 0])


def test_mistake_histogram_figure_bar_heights(tmp_path):
    plain = {"ce": [[6, 3, 1], [4, 4, 2]], "haframe": [8, 2, 0]}
    crm = {"ce": [[6, 4, 0], [5, 5, 0]], "haframe": [8, 2, 0]}
    fig = plots.plot_mistake_histograms(plain, crm)
    assert len(plots.panels(fig)) == 2
    ax = plots.panels(fig)[0]
    heights = [p.get_height() for p in ax.patches]
    # ce: mean over seeds of 100 * count / total at d = 1, 2 ; haframe: one seed
    assert heights[:2] == pytest.approx([35.0, 15.0])
    assert heights[2:] == pytest.approx([20.0, 0.0])
    one = plots.plot_mistake_histograms(plain)
    assert len(plots.panels(one)) == 1
    _check_png(plots.save_figure(fig, tmp_path / "h.png"), fig)


def test_hierdist_curve_figure(tmp_path):
    rows = np.array([[0.5, 1.0, 1.5], [0.7, 1.2, 1.7]])
    fig = plots.plot_hierdist_curves({"a": rows, "b": [0.1, 0.2, 0.3]},
                                     {"a": rows - 0.1, "b": [0.1, 0.2, 0.3]})
    assert len(plots.panels(fig)) == 2
    line = plots.panels(fig)[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(line.get_ydata(), [0.6, 1.1, 1.6])
    assert len(plots.panels(plots.plot_hierdist_curves({"a": rows}))) == 1
    _check_png(plots.save_figure(fig, tmp_path / "c.png"), fig)


def _records(n, scale=1.0):
    return [{"epoch": e, "lr": 0.1, "train": {"loss": scale / e, "top1": 0.1 * e},
             "val": {"top1": 0.05 * e, "mistake_severity": 2.0 - 0.1 * e,
                     "hierdist@1": scale / e, "hierdist@5": 2 * scale / e}}
            for e in range(1, n + 1)]


def test_training_curves_figure(tmp_path):
    fig = plots.plot_training_curves({"a": [_records(3), _records(3, scale=3.0)],
                                      "b": _records(2)})
    found = plots.panels(fig)
    assert len(found) == 4
    loss = found[0].get_lines()[0]  # a, train loss: mean of 1/e and 3/e
    np.testing.assert_allclose(loss.get_ydata(), [2.0, 1.0, 2 / 3])
    top1 = found[1].get_lines()[0]  # percent
    np.testing.assert_allclose(top1.get_ydata(), [10.0, 20.0, 30.0])
    # no validation loss logged: only the train lines in the loss panel
    assert len(found[0].get_lines()) == 2
    _check_png(plots.save_figure(fig, tmp_path / "t.png"), fig)


def test_empty_series_rejected():
    with pytest.raises(HafclsError):
        plots.plot_hierdist_curves({})
    with pytest.raises(HafclsError, match="no samples"):
        plots.plot_mistake_histograms({"a": [0, 0, 0]})


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    with pytest.raises(HafclsError, match=r"pip install hafcls\[plots\]"):
        plots.plot_hierdist_curves({"a": [0.1, 0.2]})


# ---------------------------------------------------------------------- tree-ordered confusion
def _deep_tree():
    # alphabetical class order a..f interleaves the groups; the tree order must not
    return Hierarchy.from_edges([("root", "G1"), ("root", "G2"), ("G1", "g11"), ("G1", "g12"),
                                 ("G2", "g21"), ("g11", "c"), ("g11", "e"), ("g12", "a"),
                                 ("g21", "b"), ("g21", "d"), ("g21", "f")])


def _expected_order(h):
    # depth-first: G1 before G2 and g11 before g12 exactly when they come first in h.nodes
    first = {n: h.nodes.index(n) for n in h.nodes}
    g1 = sorted([sorted(["c", "e"], key=h.class_index), ["a"]],
                key=lambda grp: first["g11" if "c" in grp else "g12"])
    blocks = [[c for grp in g1 for c in grp], sorted(["b", "d", "f"], key=h.class_index)]
    blocks.sort(key=lambda grp: first["G1" if "a" in grp else "G2"])
    return [h.class_index(c) for grp in blocks for c in grp]


def test_tree_order_and_group_boundaries_on_a_hand_tree():
    h = _deep_tree()
    assert h.classes == ["a", "b", "c", "d", "e", "f"]
    order = plots.class_order(h)
    assert order.tolist() == _expected_order(h)
    g1_first = h.nodes.index("G1") < h.nodes.index("G2")
    assert plots.group_boundaries(h, order, 1).tolist() == [3]
    # depth 2: G1's block splits into g11 (2 classes) and g12 (1), G2 is one block (g21)
    g11_first = h.nodes.index("g11") < h.nodes.index("g12")
    inner = 2 if g11_first else 1
    expected = sorted({inner if g1_first else 3 + inner, 3})
    assert plots.group_boundaries(h, order, 2).tolist() == expected
    blocks = plots.tree_blocks(h, order, 1)
    assert [(a, b) for a, b, _ in blocks] == [(0, 3), (3, 6)]
    assert {n for _, _, n in blocks} == {"G1", "G2"}


def test_confusion_matrix_counts_and_within_group_share():
    h = _deep_tree()
    c = plots.confusion_matrix([0, 1, 2, 1, 3], [0, 0, 2, 3, 3], 6)
    assert c.dtype == np.int64 and c.sum() == 5
    assert (c[0, 0], c[0, 1], c[2, 2], c[3, 1], c[3, 3]) == (1, 1, 1, 1, 1)
    # mistakes: a->b (G1 vs G2, outside), d->b (both G2, inside)
    assert plots.within_group_share(c, h, depth=1) == pytest.approx(0.5)
    with pytest.raises(HafclsError, match="0..5"):
        plots.confusion_matrix([6], [0], 6)


def test_confusion_figure_permutes_rows_marks_groups_and_names_axes(tmp_path):
    h = _deep_tree()
    k = h.num_classes
    counts = np.arange(1, k * k + 1).reshape(k, k)  # every cell distinct
    fig = plots.plot_confusion({"ce": counts, "haframe": [counts, counts]}, h,
                               normalise=False, log=False)
    axes = plots.panels(fig)
    assert len(axes) == 2
    order = plots.class_order(h)
    drawn = np.asarray(axes[0].get_images()[0].get_array())
    np.testing.assert_array_equal(drawn, counts[np.ix_(order, order)])
    np.testing.assert_array_equal(np.asarray(axes[1].get_images()[0].get_array()),
                                  2 * counts[np.ix_(order, order)])  # seeds are summed
    names = [h.classes[i] for i in order]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == names
    assert [t.get_text() for t in axes[0].get_yticklabels()] == names
    # horizontal boundary lines at every depth-1 and depth-2 block start (between cells)
    ys = sorted({float(line.get_ydata()[0]) for line in axes[0].get_lines()
                 if len(line.get_xdata()) == 2 and line.get_transform() is not None
                 and list(line.get_xdata()) == [0, 1]})
    starts = sorted({*plots.group_boundaries(h, order, 1), *plots.group_boundaries(h, order, 2)})
    assert ys == [p - 0.5 for p in starts]
    # the top axis names the depth-1 groups, its long minor ticks bracket them
    top = axes[0].child_axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == \
        [n for _, _, n in plots.tree_blocks(h, order, 1)]
    assert {t.get_text() for t in top.get_xticklabels()} == {"G1", "G2"}
    np.testing.assert_allclose(top.get_xticks(minor=True), [-0.5, 2.5, 5.5])
    _check_png(plots.save_figure(fig, tmp_path / "confusion.png"), fig)


def test_confusion_figure_normalised_log_and_indices_for_many_classes(tmp_path):
    edges = [("root", f"g{i // 9}") for i in range(0, 45, 9)]
    edges += [(f"g{i // 9}", f"c{i:02d}") for i in range(45)]
    h = Hierarchy.from_edges(edges)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(45, 45)) + np.diag(np.full(45, 20))
    fig = plots.plot_confusion({"m": counts}, h)
    ax = plots.panels(fig)[0]
    order = plots.class_order(h)
    drawn = ax.get_images()[0].get_array()
    shares = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(drawn.filled(0), shares[np.ix_(order, order)])
    assert type(ax.get_images()[0].norm).__name__ == "LogNorm"
    fmt = ax.xaxis.get_major_formatter()
    assert fmt(0, 0) == str(order[0]) and fmt(44, 0) == str(order[44])  # indices, not names
    _check_png(plots.save_figure(fig, tmp_path / "many.png"), fig)


def test_risk_coverage_figure(tmp_path):
    from hafcls.inference import risk_coverage

    h = _deep_tree()
    rng = np.random.default_rng(1)
    curves = []
    for _ in range(2):
        probs = rng.dirichlet(np.ones(6), size=40)
        curves.append(risk_coverage(probs, rng.integers(0, 6, size=40), h))
    fig = plots.plot_risk_coverage({"one": curves[0], "two seeds": curves})
    ax = plots.panels(fig)[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"one (AURC {curves[0]['aurc']:.3f})"
    mean = (curves[0]["aurc"] + curves[1]["aurc"]) / 2
    assert legend[1] == f"two seeds (AURC {mean:.3f})"
    line = ax.get_lines()[0]
    order = np.argsort(curves[0]["coverage"], kind="stable")
    np.testing.assert_allclose(line.get_xdata(), curves[0]["coverage"][order])
    np.testing.assert_allclose(line.get_ydata(), curves[0]["risk"][order])
    assert len(ax.collections) == 1  # the band of the two seeds
    _check_png(plots.save_figure(fig, tmp_path / "rc.png"), fig)
    with pytest.raises(HafclsError, match="risk_coverage"):
        plots.plot_risk_coverage({"bad": {"risk": [0.1]}})
