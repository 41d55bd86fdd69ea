"""Mixup geometry: cosines of mixed features to the two classes, on a hand-made geometry."""

import math

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.metrics.mixup_geometry import (
    collect_mixup_features,
    geometry_curves,
    geometry_summary,
    mix_inputs,
    mixup_geometry,
    sample_mix_pairs,
)

LAMBDAS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def test_hand_made_geometry_same_aligns_cross_on_boundary():
    # classifier = the axes of R^3 (K = 3); an idealised mixup network maps a same-class mix
    # to a multiple of its class vector and a cross-class mix to λ·e_a + (1−λ)·e_b
    w = np.eye(3)
    pairs = np.array([[0, 0], [2, 2], [0, 1], [2, 0]])
    lam = LAMBDAS
    feats = np.zeros((4, lam.size, 3))
    feats[0, :, 0] = 1 + lam  # any positive multiple
    feats[1, :, 2] = 3.0
    for p, (a, b) in enumerate(pairs[2:], start=2):
        feats[p, :, a] += lam
        feats[p, :, b] += 1 - lam
    r = mixup_geometry(feats, pairs, lam, w)
    assert r["same"].tolist() == [True, True, False, False]
    np.testing.assert_allclose(r["cos_a"][:2], 1.0)
    assert np.isnan(r["boundary"][:2]).all()
    norm = np.sqrt(lam ** 2 + (1 - lam) ** 2)
    np.testing.assert_allclose(r["cos_a"][2], lam / norm)
    np.testing.assert_allclose(r["cos_b"][3], (1 - lam) / norm)
    # boundary normal e_a − e_b: cos = (λ − (1 − λ)) / (√2·‖h‖); zero at λ = 1/2
    np.testing.assert_allclose(r["boundary"][2], (2 * lam - 1) / (math.sqrt(2) * norm))
    assert r["boundary"][2, 2] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(r["cos_other"][2:], 0.0, atol=1e-12)  # nothing on the 3rd axis
    s = geometry_summary(r)
    assert s["mixup_same_class_cos"] == pytest.approx(1.0)
    assert s["mixup_cross_boundary_abs"] == pytest.approx(0.0, abs=1e-12)
    assert s["mixup_cross_cos"] == pytest.approx(1 / math.sqrt(2))
    c = geometry_curves(r)
    np.testing.assert_allclose(c["same_cos"], 1.0)
    np.testing.assert_allclose(c["cross_cos_a"], lam / norm)


def test_off_boundary_feature_is_seen():
    # a cross mix stuck at class a's vector is far from the boundary: |boundary| = 1/√2
    w = np.eye(3)
    feats = np.tile([1.0, 0.0, 0.0], (1, 3, 1))
    r = mixup_geometry(feats, np.array([[0, 1]]), [0.2, 0.5, 0.8], w)
    assert geometry_summary(r)["mixup_cross_boundary_abs"] == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(HafclsError):
        mixup_geometry(feats, np.array([[0, 3]]), [0.2, 0.5, 0.8], w)  # class 3 of 3
    with pytest.raises(HafclsError):
        mixup_geometry(feats, np.array([[0, 1]]), [0.5], w)  # L mismatch


def test_sample_pairs_and_feature_collection():
    labels = np.repeat(np.arange(4), 5)
    pairs = sample_mix_pairs(labels, 30, 40, seed=3)
    assert pairs.shape == (70, 2)
    assert (labels[pairs[:30, 0]] == labels[pairs[:30, 1]]).all()
    assert (pairs[:30, 0] != pairs[:30, 1]).all()
    assert (labels[pairs[30:, 0]] != labels[pairs[30:, 1]]).all()
    assert np.array_equal(pairs, sample_mix_pairs(labels, 30, 40, seed=3))
    # a linear "network": features are the flattened mixed inputs
    images = torch.randn(20, 2, 3)
    feats = collect_mixup_features(lambda x: x.flatten(1), images, pairs[:7], LAMBDAS,
                                   batch_size=10)
    assert feats.shape == (7, LAMBDAS.size, 6)
    a, b = images[pairs[3, 0]].flatten(), images[pairs[3, 1]].flatten()
    torch.testing.assert_close(feats[3, 1], 0.25 * a + 0.75 * b)
    mixes = mix_inputs(images[:2], images[2:4], [1.0, 0.0])
    torch.testing.assert_close(mixes[:, 0], images[:2])
    torch.testing.assert_close(mixes[:, 1], images[2:4])
    # a dataset of (image, label) works the same way
    dataset = [(images[i], int(labels[i])) for i in range(20)]
    torch.testing.assert_close(collect_mixup_features(lambda x: x.flatten(1), dataset,
                                                      pairs[:7], LAMBDAS), feats)
