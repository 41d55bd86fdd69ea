"""Neural collapse measures on constructed configurations with known values."""

import math

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.metrics import neural_collapse


def _simplex_etf(num_classes, dim, seed=0):
    """d x C simplex ETF: unit columns with pairwise cosine -1/(C-1), columns summing to 0."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(dim, num_classes)))
    return math.sqrt(num_classes / (num_classes - 1)) * u @ (
        np.eye(num_classes) - np.ones((num_classes, num_classes)) / num_classes)


@pytest.fixture(scope="module")
def collapsed():
    """Every feature equals its class mean; the centred means form a simplex ETF in d = 7."""
    c, dim = 5, 7
    etf = _simplex_etf(c, dim)                     # d x C
    labels = np.repeat(np.arange(c), 3)
    return etf, labels


def test_collapsed_etf_configuration(collapsed):
    etf, labels = collapsed
    features = etf.T[labels]
    w = 2.5 * etf                                  # the classifier equals the means up to scale
    cos = np.full((5, 5), -1 / 4)
    np.fill_diagonal(cos, 1.0)
    out = neural_collapse(features, labels, classifier=w, frame_similarity=cos)
    assert out["nc1"] == pytest.approx(0.0, abs=1e-20)
    assert out["equinorm"] == pytest.approx(0.0, abs=1e-12)
    assert out["equiangularity"] == pytest.approx(0.0, abs=1e-12)
    assert out["max_angle"] == pytest.approx(0.0, abs=1e-12)
    assert out["self_duality"] == pytest.approx(0.0, abs=1e-12)
    assert out["self_duality_uncentred"] == pytest.approx(0.0, abs=1e-12)
    assert out["nc4"] == 0.0
    assert out["angular_collapse_mean"] == pytest.approx(0.0, abs=1e-12)
    assert out["angular_collapse_std"] == pytest.approx(0.0, abs=1e-12)
    assert out["num_classes"] == 5 and out["n"] == 15


def test_global_offset_separates_centred_and_uncentred_duality(collapsed):
    etf, labels = collapsed
    rng = np.random.default_rng(1)
    offset = rng.normal(size=7)
    features = (etf.T + offset)[labels]
    centred = neural_collapse(features, labels, classifier=3.0 * etf)
    # centred measures do not see a shift of every feature
    assert centred["nc1"] == pytest.approx(0.0, abs=1e-18)
    assert centred["equiangularity"] == pytest.approx(0.0, abs=1e-12)
    assert centred["self_duality"] == pytest.approx(0.0, abs=1e-12)
    assert centred["self_duality_uncentred"] > 1e-3
    uncentred = neural_collapse(features, labels, classifier=3.0 * (etf.T + offset).T)
    assert uncentred["self_duality_uncentred"] == pytest.approx(0.0, abs=1e-12)


def test_nc1_hand_worked_one_dimension():
    # class means -1 and +1; within-class deviations +-0.5: Σ_W = 0.25, Σ_B = 1, NC1 = 0.25/2
    features = np.array([[-1.5], [-0.5], [0.5], [1.5]])
    labels = np.array([0, 0, 1, 1])
    assert neural_collapse(features, labels)["nc1"] == pytest.approx(0.125, rel=1e-12)


def test_nc1_ignores_variation_outside_the_span_of_the_means():
    # means (-1, 0) and (1, 0): Σ_B† only acts along x
    along_y = np.array([[-1, 1], [-1, -1], [1, 1], [1, -1]], dtype=float)
    labels = np.array([0, 0, 1, 1])
    assert neural_collapse(along_y, labels)["nc1"] == pytest.approx(0.0, abs=1e-20)
    along_x = np.array([[-1.5, 0], [-0.5, 0], [0.5, 0], [1.5, 0]])
    assert neural_collapse(along_x, labels)["nc1"] == pytest.approx(0.125, rel=1e-12)


def test_equinorm_and_angles_hand_worked():
    # means (0,0), (3,0), (0,3); their mean (1,1); centred (-1,-1), (2,-1), (-1,2)
    features = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    out = neural_collapse(features, np.array([0, 1, 2]))
    norms = np.array([math.sqrt(2), math.sqrt(5), math.sqrt(5)])
    assert out["equinorm"] == pytest.approx(norms.std() / norms.mean(), rel=1e-12)
    cosines = np.array([-1 / math.sqrt(10), -1 / math.sqrt(10), -0.8])
    assert out["equiangularity"] == pytest.approx(cosines.std(), rel=1e-12)
    assert out["max_angle"] == pytest.approx(np.abs(cosines + 0.5).mean(), rel=1e-12)
    assert out["nc1"] == pytest.approx(0.0, abs=1e-20)  # one sample per class
    assert set(out) == {"nc1", "equinorm", "equiangularity", "max_angle", "num_classes", "n"}


def test_nc4_counts_disagreements_with_the_nearest_class_mean():
    features = np.array([[0.1], [0.3], [2.0], [2.2]])   # means 0.2 and 2.1
    labels = np.array([0, 0, 1, 1])
    out = neural_collapse(features, labels, predictions=np.array([0, 1, 1, 1]))
    assert out["nc4"] == 0.25
    # classifier logits: w = [-1, 1] makes every feature > 0 predict class 1
    out = neural_collapse(features, labels, classifier=np.array([[-1.0, 1.0]]))
    assert out["nc4"] == 0.5
    # a logit tie goes to the lower class index, as in the metrics' ranking
    out = neural_collapse(np.array([[0.0], [0.0], [1.0]]), np.array([0, 0, 1]),
                          classifier=np.array([[-1.0, 1.0]]))
    assert out["nc4"] == 0.0


def test_angular_collapse_against_a_target_matrix():
    # uncentred means e1, e2: cosine 0; target 0.5 -> gap 0.5 on the only pair
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.2], [0.2, 0.2, 1.0]])  # a third class absent
    out = neural_collapse(features, np.array([0, 1]), frame_similarity=target)
    assert out["angular_collapse_mean"] == pytest.approx(0.5)
    assert out["angular_collapse_std"] == 0.0
    assert out["num_classes"] == 2


def test_validation():
    features = np.zeros((4, 3))
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(HafclsError, match="transposed"):
        neural_collapse(features + np.arange(3), labels, classifier=np.zeros((2, 3)))
    with pytest.raises(HafclsError, match="at least two classes"):
        neural_collapse(features, np.zeros(4, dtype=int))
    with pytest.raises(HafclsError, match="outside the 2 classes"):
        neural_collapse(features, np.array([0, 0, 1, 2]), classifier=np.zeros((3, 2)))
    with pytest.raises(HafclsError, match="one entry per feature row"):
        neural_collapse(features, labels[:3])
    with pytest.raises(HafclsError, match="NaN"):
        neural_collapse(np.full((4, 3), np.nan), labels)
