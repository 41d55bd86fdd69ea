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
