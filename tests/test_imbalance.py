"""Long-tailed profiles, the training subset and shot-group accuracy (hafcls.data.imbalance)."""

import math

import numpy as np
import pytest
import torch

from hafcls.data.imbalance import (
    LabelledSubset,
    class_counts,
    imbalanced_indices,
    imbalanced_subset,
    shot_accuracy,
    shot_group_sizes,
    shot_groups,
)
from hafcls.errors import HafclsError


def test_exponential_profile_matches_published_lt_benchmarks():
    # CIFAR-10-LT, ρ = 100: the per-class counts of Cao et al. (LDAM), total 12,406
    assert class_counts(5000, 10, 100).tolist() == [
        5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    # CIFAR-100-LT totals for ρ = 100, 50, 10
    assert [int(class_counts(500, 100, r).sum()) for r in (100, 50, 10)] == [10847, 12608, 19573]


def test_exponential_profile_closed_form_and_rounding():
    k, n_max, rho = 7, 1000, 20.0
    counts = class_counts(n_max, k, rho)
    expected = [math.floor(n_max * rho ** (-c / (k - 1))) for c in range(k)]
    assert counts.tolist() == expected
    assert counts[0] == n_max and counts[-1] == n_max // rho
    assert (np.diff(counts) <= 0).all()
    # ratio 1 is the balanced subset
    assert (class_counts(30, 5, 1) == 30).all()


def test_step_profile_and_rare_orders():
    assert class_counts(100, 6, 10, "step").tolist() == [100, 100, 100, 10, 10, 10]
    assert class_counts(100, 5, 10, "step").tolist() == [100, 100, 100, 10, 10]  # ⌈K/2⌉ many
    last = class_counts(100, 4, 10).tolist()
    assert class_counts(100, 4, 10, rare="first").tolist() == last[::-1]
    a = class_counts(100, 20, 10, rare="random", seed=3)
    b = class_counts(100, 20, 10, rare="random", seed=3)
    assert (a == b).all() and sorted(a.tolist()) == sorted(class_counts(100, 20, 10).tolist())
    assert not (a == class_counts(100, 20, 10)).all()


@pytest.mark.parametrize("kwargs", [dict(ratio=0.5), dict(ratio=float("nan")),
                                    dict(ratio=10, profile="linear"), dict(ratio=10, rare="mid"),
                                    dict(ratio=200)])
def test_bad_options_raise(kwargs):
    with pytest.raises(HafclsError):
        class_counts(100, 10, **kwargs)


def test_imbalanced_indices_take_each_class_quota_from_a_seeded_order():
    k, per = 5, 40
    labels = np.tile(np.arange(k), per)  # interleaved, like the synthetic dataset
    idx = imbalanced_indices(labels, 10, seed=1)
    counts = np.bincount(labels[idx], minlength=k)
    assert counts.tolist() == class_counts(per, k, 10).tolist()
    assert (np.diff(idx) > 0).all()  # sorted, no repeats
    assert (idx == imbalanced_indices(labels, 10, seed=1)).all()
    assert not np.array_equal(idx, imbalanced_indices(labels, 10, seed=2))
    # the smaller quota is drawn from the same seeded order: nested subsets
    assert set(imbalanced_indices(labels, 30, seed=1)) < set(imbalanced_indices(labels, 2, seed=1))
    # n_max defaults to the smallest class; a larger n_max some class cannot supply fails
    uneven = np.concatenate([labels, np.zeros(10, dtype=labels.dtype)])
    assert np.bincount(uneven[imbalanced_indices(uneven, 1)]).tolist() == [per] * k
    with pytest.raises(HafclsError):
        imbalanced_indices(labels, 10, n_max=per + 1)
    with pytest.raises(HafclsError):
        imbalanced_indices(labels, 10, num_classes=k + 1)  # an empty class


def test_imbalanced_subset_of_a_plain_dataset_forwards_transform():
    class Toy:
        def __init__(self):
            self.targets = np.repeat(np.arange(4), 25)
            self.transform = None

        def __len__(self):
            return 100

        def __getitem__(self, i):
            return (i if self.transform is None else self.transform(i)), int(self.targets[i])

    base = Toy()
    sub = imbalanced_subset(base, 5, seed=0)
    assert isinstance(sub, LabelledSubset)
    assert np.bincount(sub.targets).tolist() == [25, 14, 8, 5]
    assert all(sub[i][1] == sub.targets[i] for i in range(len(sub)))
    sub.transform = lambda x: -x
    assert base.transform is not None and sub[0][0] == -int(sub.indices[0])


def test_shot_groups_boundaries():
    groups = shot_groups([101, 100, 20, 19, 0])
    assert groups["many"].tolist() == [True, False, False, False, False]
    assert groups["medium"].tolist() == [False, True, True, False, False]
    assert groups["few"].tolist() == [False, False, False, True, True]
    assert shot_group_sizes([101, 100, 20, 19, 0]) == {
        "many_shot_classes": 1, "medium_shot_classes": 2, "few_shot_classes": 2}


def test_shot_accuracy_is_mean_per_class_accuracy_per_group():
    train_counts = np.array([500, 300, 50, 10])
    target = torch.tensor([0, 0, 1, 1, 1, 1, 2, 2, 3, 3])
    pred = torch.tensor([0, 1, 1, 1, 0, 0, 2, 2, 0, 3])
    out = shot_accuracy(pred, target, train_counts)
    assert out["many_shot"] == pytest.approx((0.5 + 0.5) / 2)  # class means, not the 3/6 pool
    assert out["medium_shot"] == 1.0 and out["few_shot"] == 0.5
    # a group without classes (or without test samples) is NaN, not 0
    out = shot_accuracy(np.array([0, 1]), np.array([0, 1]), np.array([500, 300, 50, 10]))
    assert out["many_shot"] == 1.0 and math.isnan(out["medium_shot"]) and math.isnan(
        out["few_shot"])
    with pytest.raises(HafclsError):
        shot_accuracy(np.array([0.5]), np.array([0]), train_counts)
