"""The synthetic hierarchical image dataset: tree, determinism, labels, visual structure."""

import numpy as np
import pytest
import torch

from hafcls.data import SyntheticHierarchyDataset, build_datasets, synthetic_hierarchy
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy


def test_default_tree_is_4_3_3():
    h = synthetic_hierarchy()
    assert h.num_classes == 36 and h.height == 3
    assert h.classes[:4] == ["s0.0.0", "s0.0.1", "s0.0.2", "s0.1.0"]
    assert h.parent("s2.1.0") == "s2.1" and h.parent("s2.1") == "s2"
    assert len(h.level_nodes(1)) == 4 and len(h.level_nodes(2)) == 12
    # distances: sibling 1, cousin 2, other branch 3
    d = h.distance_matrix()
    i = h.class_index
    assert d[i("s0.0.0"), i("s0.0.1")] == 1
    assert d[i("s0.0.0"), i("s0.1.0")] == 2
    assert d[i("s0.0.0"), i("s1.0.0")] == 3


def test_tree_with_ranges_is_seeded():
    a = synthetic_hierarchy(((2, 4), (1, 3)), seed=1)
    b = synthetic_hierarchy(((2, 4), (1, 3)), seed=1)
    assert a == b
    assert 2 <= len(a.level_nodes(1)) <= 4
    sizes = {synthetic_hierarchy(((2, 6), (1, 5)), seed=s).num_classes for s in range(6)}
    assert len(sizes) > 1  # the seed changes the drawn branching
    with pytest.raises(HafclsError, match="branching"):
        synthetic_hierarchy((3, 0))
    with pytest.raises(HafclsError, match="branching"):
        synthetic_hierarchy(5)


def test_samples_are_deterministic_and_splits_differ():
    a = SyntheticHierarchyDataset(split="train", per_class=2)
    b = SyntheticHierarchyDataset(split="train", per_class=2)
    # access order does not matter: each sample has its own stream
    later = [b.generate(i)[0] for i in (7, 3)]
    np.testing.assert_array_equal(a.generate(3)[0], later[1])
    np.testing.assert_array_equal(a.generate(7)[0], later[0])
    np.testing.assert_array_equal(a.generate(-1)[0], a.generate(len(a) - 1)[0])
    val = SyntheticHierarchyDataset(split="val", per_class=2)
    other_seed = SyntheticHierarchyDataset(split="train", per_class=2, seed=1)
    assert not np.array_equal(a.generate(3)[0], val.generate(3)[0])
    assert not np.array_equal(a.generate(3)[0], other_seed.generate(3)[0])
    # same class, different samples: different images
    k = a.hierarchy.num_classes
    assert not np.array_equal(a.generate(0)[0], a.generate(k)[0])
    with pytest.raises(IndexError):
        a.generate(len(a))


def test_labels_are_balanced_and_interleaved():
    ds = SyntheticHierarchyDataset(split="test", per_class=3)
    k = ds.hierarchy.num_classes
    assert len(ds) == 3 * k
    np.testing.assert_array_equal(ds.targets, np.arange(3 * k) % k)
    labels = [ds[i][1] for i in range(len(ds))]
    assert np.bincount(labels, minlength=k).tolist() == [3] * k
    img, label = ds[5]
    assert label == 5 and img.size == (32, 32) and img.mode == "RGB"


def test_any_user_tree_including_internal_classes():
    # "a" is a class and also the parent of class "x": different depths, unbalanced
    h = Hierarchy.from_edges([("r", "a"), ("a", "x"), ("a", "y"), ("r", "b"), ("b", "z"),
                              ("z", "w")], classes=["a", "x", "y", "w"])
    ds = SyntheticHierarchyDataset(h, per_class=2, image_size=16)
    arr, label = ds.generate(0)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8 and label == 0
    assert len(ds) == 8
    # the internal class "a" is drawn from its own pattern only: weights below its depth are 0
    assert ds._path_weights[0].tolist()[1:] == [0.0, 0.0]


def _clean(ds, label):
    """The nuisance-free image of a class (all jitter and noise off)."""
    return ds.generate(label)[0].astype(np.float64)


def test_clean_class_images_follow_the_tree():
    h = synthetic_hierarchy()
    ds = SyntheticHierarchyDataset(h, per_class=1, weight_jitter=0, max_shift=0,
                                   contrast_jitter=0, brightness_jitter=0, distractor=0, noise=0)
    imgs = np.stack([_clean(ds, k) for k in range(h.num_classes)]).reshape(h.num_classes, -1)
    sq = (imgs**2).sum(1)
    dist = sq[:, None] + sq[None] - 2 * imgs @ imgs.T
    tree = h.distance_matrix()
    mean_by_tree = [dist[tree == t].mean() for t in (1, 2, 3)]
    # images of classes further apart in the tree are further apart in pixel space
    assert mean_by_tree[0] < mean_by_tree[1] < mean_by_tree[2]
    # and the clean image of "s0.0.0" is the weighted sum of its path patterns
    path = [h.node_index(n) for n in h.path("s0.0.0")[1:]]
    field = sum(0.6**t * ds._patterns[i] for t, i in enumerate(path))
    expect = np.clip(127.5 + 40.0 * field, 0, 255).transpose(1, 2, 0)
    # float32 vs float64 sums may round to neighbouring grey levels
    assert np.abs(ds.generate(0)[0] - expect).max() <= 1.0


def test_nearest_class_mean_confuses_siblings_most():
    """Raw-pixel nearest class mean: above chance, and most mistakes stay inside the parent."""
    h = synthetic_hierarchy()
    train = SyntheticHierarchyDataset(h, "train", per_class=30)
    test = SyntheticHierarchyDataset(h, "test", per_class=10)
    x, y = train.arrays()
    xt, yt = test.arrays()
    x = x.reshape(len(x), -1).astype(np.float32)
    xt = xt.reshape(len(xt), -1).astype(np.float32)
    means = np.stack([x[y == k].mean(0) for k in range(h.num_classes)])
    d = (xt**2).sum(1)[:, None] - 2 * xt @ means.T + (means**2).sum(1)[None]
    pred = d.argmin(1)
    acc = (pred == yt).mean()
    wrong = pred != yt
    parent = h.level(2)
    within = (parent[pred] == parent[yt])[wrong].mean()
    # chance: 1/36 accuracy; 2 of the 35 wrong classes share the parent (5.7%)
    assert 0.2 < acc < 0.95
    assert within > 0.35
    severity = h.distance_matrix()[yt[wrong], pred[wrong]].mean()
    assert severity < 2.0  # random mistakes would average (2*1 + 6*2 + 27*3) / 35 = 2.71


def test_bundle_yields_normalised_tensors():
    b = build_datasets("synthetic", per_class=(4, 2, 2), seed=3)
    assert b.num_classes == 36 and b.image_size == 32 and b.name == "synthetic"
    assert b.sizes() == {"train": 144, "val": 72, "test": 72}
    x, y = b.val[7]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (3, 32, 32)
    raw = torch.from_numpy(b.val.generate(7)[0]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(x, (raw - 0.5) / 0.21)
    assert y == 7
    # training images are augmented (pad-and-crop), evaluation images are not
    x_train = torch.stack([b.train[0][0] for _ in range(6)])
    assert (x_train - x_train[0]).abs().amax() > 0
    # the tree and sizes can be changed; an explicit hierarchy is accepted
    small = build_datasets("synthetic", branching=(2, 2), per_class={"train": 1}, image_size=16)
    assert small.num_classes == 4 and len(small.train) == 4 and len(small.test) == 4 * 40
    assert small.train[0][0].shape == (3, 16, 16)
    h = synthetic_hierarchy((3, 2))
    assert build_datasets("synthetic", hierarchy=h, per_class=1).hierarchy is h
    with pytest.raises(HafclsError, match="either hierarchy or branching"):
        build_datasets("synthetic", hierarchy=h, branching=(2, 2))


def test_invalid_arguments():
    with pytest.raises(HafclsError, match="per_class"):
        SyntheticHierarchyDataset(per_class=0)
    with pytest.raises(HafclsError, match="split"):
        SyntheticHierarchyDataset(split="dev")
    with pytest.raises(HafclsError, match="image_size"):
        SyntheticHierarchyDataset(image_size=4)
    with pytest.raises(HafclsError, match="noise"):
        SyntheticHierarchyDataset(noise=-1)
    with pytest.raises(HafclsError, match="seed"):
        build_datasets("synthetic", seed=-1)
