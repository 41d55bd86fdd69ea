"""Minority collapse: rare classes, pairwise cosines of classifier vectors or class means."""

import itertools
import math

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.metrics.minority import (
    mean_pairwise_cosine,
    minority_collapse,
    minority_collapse_from_means,
    rarest_classes,
    shot_accuracy,
    shot_accuracy_from_counts,
)

COUNTS = np.array([500, 200, 50, 10, 5, 2])  # classes 3, 4, 5 are few-shot (< 20)


def direct(vectors):
    """Mean over pairs of cosines, one pair at a time."""
    cos = [float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
           for a, b in itertools.combinations(vectors, 2)]
    return sum(cos) / len(cos)


def test_minority_collapse_on_a_hand_made_classifier():
    # rare columns: w3 = e1, w4 at 60° from it in the e1-e2 plane, w5 = 2·e3 (norm ignored)
    w = np.zeros((3, 6))
    w[:, :3] = np.eye(3)  # the frequent classes: must not enter
    w[:, 3] = [1, 0, 0]
    w[:, 4] = [0.5, math.sqrt(3) / 2, 0]
    w[:, 5] = [0, 0, 2]
    assert minority_collapse(w, COUNTS) == pytest.approx((0.5 + 0 + 0) / 3)
    assert minority_collapse(torch.tensor(w), COUNTS) == pytest.approx(1 / 6)
    # collapsed rare vectors give 1; a simplex of the rare ones gives -1/(R-1)
    w[:, 3:] = [[1.0], [1.0], [0.0]] * np.array([1, 2, 3])
    assert minority_collapse(w, COUNTS) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 6))
    assert minority_collapse(w, COUNTS) == pytest.approx(direct(w[:, [5, 4, 3]].T))
    assert minority_collapse(w, COUNTS, n_rare=4) == pytest.approx(direct(w[:, 2:].T))
    centred = (w - w.mean(axis=1, keepdims=True))[:, 3:]
    assert minority_collapse(w, COUNTS, centre=True) == pytest.approx(direct(centred.T))


def test_rare_class_choice():
    assert rarest_classes(COUNTS).tolist() == [5, 4, 3]  # the few-shot group, rarest first
    balanced = np.full(25, 500)
    assert rarest_classes(balanced).tolist() == [0, 1, 2]  # ⌈25/10⌉, ties by lower index
    assert rarest_classes(np.array([30, 10, 40, 50])).tolist() == [1, 0]  # at least two
    with pytest.raises(HafclsError):
        rarest_classes(COUNTS, n_rare=1)
    with pytest.raises(HafclsError):
        minority_collapse(np.zeros((3, 5)), COUNTS)  # one column per class


def test_minority_collapse_from_class_means():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(6, 5))
    labels = np.repeat(np.arange(6), 4)
    noise = rng.normal(size=(24, 5))
    noise -= np.repeat(noise.reshape(6, 4, 5).mean(axis=1), 4, axis=0)  # exact class means
    features = means[labels] + noise
    got = minority_collapse_from_means(features, labels, COUNTS)
    assert got == pytest.approx(direct(means[[5, 4, 3]]))
    centred = means - means.mean(axis=0)
    assert minority_collapse_from_means(torch.tensor(features), torch.tensor(labels), COUNTS,
                                        centre=True) == pytest.approx(direct(centred[[5, 4, 3]]))
    with pytest.raises(HafclsError):
        minority_collapse_from_means(features[:20], labels[:20], COUNTS)  # class 5 missing


def test_mean_pairwise_cosine_simplex():
    k = 5
    etf = math.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k)
    assert mean_pairwise_cosine(etf) == pytest.approx(-1 / (k - 1))
    with pytest.raises(HafclsError):
        mean_pairwise_cosine(np.ones((1, 3)))


def test_shot_accuracy_from_reduced_counts_matches_samples():
    train_counts = np.array([500, 300, 50, 10])
    target = np.array([0, 0, 1, 1, 2, 3, 3])
    pred = np.array([0, 1, 1, 0, 2, 3, 0])
    hits = np.bincount(target, weights=pred == target, minlength=4)
    seen = np.bincount(target, minlength=4)
    assert shot_accuracy_from_counts(hits, seen, train_counts) == shot_accuracy(
        pred, target, train_counts)
    assert shot_accuracy(pred, target, train_counts)["many_shot"] == pytest.approx(0.5)
