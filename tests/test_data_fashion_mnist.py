"""Fashion-MNIST: IDX reading, splits, batched tensor augmentation, hierarchy, real-data checks."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hafcls.data import fashion_mnist as fm
from hafcls.data.images import collate_skip_corrupt
from hafcls.data.memory import TensorAugment
from hafcls.data.transforms import build_transforms
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy, load

NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# ---------------------------------------------------------------------- fixtures
def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding written from the format description (not by the reader's module)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def fake_split(n_per_class: int, seed: int):
    """Labels in a shuffled order; image k carries k in pixel (0, 0) and k // 256 in (0, 1),
    and a class-dependent bar so that images differ by class."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), n_per_class)).astype(np.uint8)
    images = rng.integers(0, 50, size=(len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(len(labels)) % 256
    images[:, 0, 1] = np.arange(len(labels)) // 256
    images[np.arange(len(labels)), 5 + 2 * labels] = 255
    return images, labels


def write_fixture(folder: Path, gz: bool, n_train=8, n_test=3, files=("train", "test")):
    folder.mkdir(parents=True, exist_ok=True)
    data = {"train": fake_split(n_train, 1), "test": fake_split(n_test, 2)}
    for split in files:
        for stem, array in zip(NAMES[split], data[split]):
            raw = idx_bytes(array)
            if gz:
                (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / stem).write_bytes(raw)
    return data


def source_index(images: torch.Tensor) -> np.ndarray:
    """The position in the fixture file that each (untransformed) image came from."""
    return (images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).numpy()


def splits(root, **kw):
    """The fixture's splits: 8 training images per class, 2 of them held out for validation."""
    return fm.fashion_mnist_splits(root, **{"val_per_class": 2, **kw})


@pytest.fixture
def fixture_dir(tmp_path):
    return tmp_path, write_fixture(tmp_path, gz=True)


# ---------------------------------------------------------------------- IDX files and splits
@pytest.mark.parametrize("gz", [True, False])
def test_fixture_splits_follow_file_order(tmp_path, gz):
    data = write_fixture(tmp_path, gz)
    h, train, val, test = splits(tmp_path)
    labels = data["train"][1]
    # validation = the last 2 images of every class in file order (brute force)
    expect_val = sorted(i for c in range(10) for i in np.flatnonzero(labels == c)[-2:])
    for ds, expect in ((val, expect_val),
                       (train, sorted(set(range(len(labels))) - set(expect_val))),
                       (test, list(range(len(data["test"][1]))))):
        ds.transform = None
        x = ds.images
        np.testing.assert_array_equal(source_index(x), expect)
        np.testing.assert_array_equal(ds.source_indices, expect)
        src_images, src_labels = data["train" if ds is not test else "test"]
        np.testing.assert_array_equal(x[:, 0].numpy(), src_images[expect])
        np.testing.assert_array_equal(ds.targets, src_labels[expect])  # default tree: label order
    assert (len(train), len(val), len(test)) == (60, 20, 30)
    assert h.classes == list(fm.CLASSES)


def test_per_class_keeps_the_first_images_of_each_class(fixture_dir):
    root, data = fixture_dir
    _, train, val, test = splits(root, val_per_class=2, per_class=(3, 1, 2))
    labels = data["train"][1]
    for ds, n in ((train, 3), (val, 1), (test, 2)):
        assert ds.class_counts().tolist() == [n] * 10
    train_pos = [i for c in range(10) for i in np.flatnonzero(labels == c)[:3]]
    assert sorted(train.source_indices.tolist()) == sorted(train_pos)
    val_pos = [np.flatnonzero(labels == c)[-2] for c in range(10)]
    assert sorted(val.source_indices.tolist()) == sorted(val_pos)
    with pytest.raises(HafclsError, match="per_class"):
        splits(root, per_class=0)
    with pytest.raises(HafclsError, match="per_class"):
        splits(root, per_class=(1, 2))


def test_torchvision_layout_and_default_search_order(tmp_path, monkeypatch):
    write_fixture(tmp_path / "FashionMNIST" / "raw", gz=False)
    assert fm.locate_fashion_mnist(tmp_path)["train"][0].parent == tmp_path / "FashionMNIST/raw"
    # without data_dir: Debian's folder first, then the download cache's torchvision layout
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fm, "default_download_root", lambda: tmp_path)
    assert fm.locate_fashion_mnist()["test"][1].parent == tmp_path / "FashionMNIST/raw"
    write_fixture(tmp_path / "debian", gz=True)
    assert fm.locate_fashion_mnist()["test"][1] == tmp_path / "debian/t10k-labels-idx1-ubyte.gz"


def test_missing_files_say_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(HafclsError) as err:
        fm.locate_fashion_mnist(tmp_path / "nowhere")
    text = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in text and "sudo" in text
    assert "--download" in text and "nowhere" in text
    write_fixture(tmp_path / "half", gz=True, files=("train",))
    with pytest.raises(HafclsError, match=r"incomplete: t10k-images-idx3-ubyte\[.gz\]"):
        fm.locate_fashion_mnist(tmp_path / "half")


def test_download_only_on_request(tmp_path, monkeypatch):
    calls = []

    class FakeFashionMNIST:  # stands in for torchvision's: writes the files, no network
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_fixture(Path(root) / "FashionMNIST" / "raw", gz=False)

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    with pytest.raises(HafclsError, match="dataset-fashion-mnist"):
        fm.locate_fashion_mnist(tmp_path)
    assert calls == []
    files = fm.locate_fashion_mnist(tmp_path, download=True)
    assert [c[2] for c in calls] == [True, True]
    assert files["train"][0] == tmp_path / "FashionMNIST/raw/train-images-idx3-ubyte"


def _corrupt(folder: Path, stem: str, raw: bytes):
    for p in folder.glob(stem + "*"):
        p.unlink()
    (folder / stem).write_bytes(raw)


@pytest.mark.parametrize("case, match", [
    ("magic", "not an IDX file"),
    ("truncated", "truncated"),
    ("longer", "longer than its header"),
    ("ndim", "3-dimensional array; expected a 1-dimensional"),
    ("gzip", "damaged gzip"),
    ("count", "80 images but .* 79 labels"),
    ("label", "label 10"),
    ("size", "32x32 images"),
    ("empty", "too short"),
])
def test_corrupt_files_are_clear_errors(tmp_path, case, match):
    data = write_fixture(tmp_path, gz=True)
    images, labels = data["train"]
    img_stem, lbl_stem = NAMES["train"]
    good = idx_bytes(images)
    if case == "magic":
        _corrupt(tmp_path, img_stem, b"\x12\x34" + good[2:])
    elif case == "truncated":
        _corrupt(tmp_path, img_stem, good[:-100])
    elif case == "longer":
        _corrupt(tmp_path, img_stem, good + b"\0")
    elif case == "ndim":
        _corrupt(tmp_path, lbl_stem, idx_bytes(labels.reshape(-1, 1, 1)))
    elif case == "gzip":
        (tmp_path / (img_stem + ".gz")).write_bytes(gzip.compress(good)[:-500])
    elif case == "count":
        _corrupt(tmp_path, lbl_stem, idx_bytes(labels[:-1]))
    elif case == "label":
        _corrupt(tmp_path, lbl_stem, idx_bytes(np.where(labels == 3, 10, labels)))
    elif case == "size":
        _corrupt(tmp_path, img_stem, idx_bytes(np.zeros((80, 32, 32), np.uint8)))
    elif case == "empty":
        _corrupt(tmp_path, img_stem, b"")
    with pytest.raises(HafclsError, match=match) as err:
        splits(tmp_path)
    assert "dataset-fashion-mnist" in str(err.value)  # the fix says how to re-install


# ---------------------------------------------------------------------- tensors and transforms
def test_eval_transform_is_exact_normalisation(fixture_dir):
    root, _ = fixture_dir
    _, _, _, test = splits(root)
    raw = test.images.float() / 255
    x, y = test.batch(range(len(test)))
    assert x.shape == (30, 3, 28, 28) and x.dtype == torch.float32
    expect = (raw - 0.2860) / 0.3530
    for ch in range(3):
        torch.testing.assert_close(x[:, ch:ch + 1], expect, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(y.numpy(), test.targets)
    assert torch.equal(test[3][0], x[3])  # the per-item (numpy) path gives the same tensor
    _, _, _, gray = splits(root, channels=1, image_size=32)
    assert gray[0][0].shape == (1, 32, 32)


def test_train_augmentation_is_a_padded_crop_and_flip(fixture_dir):
    root, _ = fixture_dir
    _, train, _, _ = splits(root, mean=0.0, std=1 / 255)  # output = pixels
    tf = train.transform
    seeds = np.arange(1000, 1060, dtype=np.uint64)
    out, _ = train.batch(range(60), seeds)
    dy, dx, flip = tf.params(seeds)
    padded = np.pad(train.images[:, 0].numpy(), ((0, 0), (2, 2), (2, 2)))
    for k in range(60):  # brute force, image by image
        crop = padded[k, dy[k]:dy[k] + 28, dx[k]:dx[k] + 28]
        crop = crop[:, ::-1] if flip[k] else crop
        for ch in range(3):
            np.testing.assert_allclose(out[k, ch].numpy(), crop, atol=1e-3)
    again, _ = train.batch(range(60), seeds)
    assert torch.equal(out, again)
    # an (index, seed) item alone equals the same item inside a batch
    items = [(i, int(s)) for i, s in zip(range(60), seeds)]
    batch = train.__getitems__(items)
    assert torch.equal(train[items[7]][0], batch[7][0]) and torch.equal(batch[7][0], out[7])
    # the offsets and flips cover their range with the right rates
    dy, dx, flip = tf.params(np.arange(20000, dtype=np.uint64))
    assert set(dy.tolist()) == set(range(5)) == set(dx.tolist())
    assert 0.47 < flip.float().mean() < 0.53
    torch.manual_seed(0)
    a = train[3][0]
    torch.manual_seed(0)
    assert torch.equal(a, train[3][0])  # unseeded items follow torch's generator


def test_dataloader_and_foreign_transforms(fixture_dir):
    root, _ = fixture_dir
    _, train, val, _ = splits(root)
    loader = DataLoader(val, batch_size=7, collate_fn=collate_skip_corrupt)
    xs, ys = zip(*loader)
    assert torch.cat(xs).shape == (20, 3, 28, 28)
    np.testing.assert_array_equal(torch.cat(ys).numpy(), val.targets)
    assert val.num_skipped == 0
    # a PIL-style pipeline (what use_model_transforms installs) runs per item
    val.transform = build_transforms(32, False, fm.FASHION_MNIST_MEAN, fm.FASHION_MNIST_STD)
    batch = next(iter(DataLoader(val, batch_size=4, collate_fn=collate_skip_corrupt)))
    assert batch[0].shape == (4, 3, 32, 32)


def test_registered_dataset_builds_the_fast_path(fixture_dir):
    from hafcls.data import build_datasets
    from hafcls.registry import DATASETS

    root, _ = fixture_dir
    assert DATASETS.canonical("fmnist") == DATASETS.canonical("FashionMNIST") == "fashion-mnist"
    bundle = build_datasets("fmnist", data_dir=root, image_size=32, per_class=2, hflip=0.0,
                            val_per_class=2)
    assert bundle.name == "fashion-mnist"
    assert bundle.sizes() == {"train": 20, "val": 20, "test": 20}
    assert bundle.num_skipped == 0 and bundle.train[0][0].shape == (3, 32, 32)
    # build_datasets' default pipelines become the batched tensor path, same statistics
    for ds, train in ((bundle.train, True), (bundle.test, False)):
        assert isinstance(ds.transform, TensorAugment) and ds.transform.train is train
        assert ds.transform.mean == fm.FASHION_MNIST_MEAN and ds.transform.image_size == 32
    assert bundle.train.transform.hflip == 0.0
    # grayscale models: one channel
    gray = build_datasets("fashion-mnist", data_dir=root, per_class=2, val_per_class=2,
                          channels=1)
    assert gray.train[0][0].shape == (1, 28, 28)
    # a pipeline the user chose is kept (per item, on PIL images)
    mine = build_transforms(28, False, (0.5,) * 3, (0.5,) * 3, interpolation="bicubic")
    user = build_datasets("fashion-mnist", data_dir=root, per_class=2, val_per_class=2,
                          eval_transform=mine)
    assert user.test.transform is mine and isinstance(user.train.transform, TensorAugment)
    # a user hierarchy with another class order: targets follow it
    order = list(reversed(fm.CLASSES))
    other = Hierarchy.from_edges([("r", c) for c in order], order)
    b2 = build_datasets("fashion-mnist", data_dir=root, hierarchy=other, per_class=2,
                        val_per_class=2)
    np.testing.assert_array_equal(b2.train.targets, 9 - bundle.train.targets)
    wrong = Hierarchy.from_edges([("r", "cat"), ("r", "dog")])
    with pytest.raises(HafclsError, match="not classes of the hierarchy"):
        build_datasets("fashion-mnist", data_dir=root, hierarchy=wrong, val_per_class=2)
    with pytest.raises(HafclsError, match="lower val_per_class"):
        build_datasets("fashion-mnist", data_dir=root)  # 8 per class, 500 held out
    with pytest.raises(HafclsError, match="padding"):
        build_datasets("fashion-mnist", data_dir=root, val_per_class=2, padding=-1)


def test_seeded_batches_equal_seeded_items(fixture_dir):
    """SeededDataset hands whole batches to the in-memory dataset; each sample is still
    augmented from its own seed, so a batch equals its items loaded one by one."""
    from hafcls.engine.distributed import EpochShardSampler, SeededDataset

    root, _ = fixture_dir
    _, train, _, _ = splits(root)
    seeded = SeededDataset(train)
    items = EpochShardSampler(len(train), seed=3).pairs()[:16]
    batch = seeded.__getitems__(items)
    one_by_one = [seeded[i] for i in items]
    for (xb, yb), (xi, yi) in zip(batch, one_by_one):
        assert yb == yi and torch.equal(xb, xi)
    again = seeded.__getitems__(items)  # a function of the seeds only
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batch, again))
    # the DataLoader takes the batched path (one call per batch)
    calls = []
    original = train.__getitems__
    train.__getitems__ = lambda its: calls.append(len(its)) or original(its)
    loader = DataLoader(seeded, batch_size=8, sampler=items, collate_fn=collate_skip_corrupt)
    x, _ = next(iter(loader))
    assert calls == [8] and torch.equal(x, torch.stack([b[0] for b in batch[:8]]))


# ---------------------------------------------------------------------- hierarchy
def test_shipped_hierarchy():
    h = load("fashion-mnist")
    assert h.classes == list(fm.CLASSES)
    assert h == fm.fashion_mnist_hierarchy()  # the file is what the code builds
    assert h.meta["reasons"] and h.meta["description"] and h.height == 4
    d = h.distance_matrix()
    c = {name: i for i, name in enumerate(h.classes)}
    hand = {("T-shirt/top", "Shirt"): 1, ("Pullover", "Coat"): 1, ("T-shirt/top", "Pullover"): 2,
            ("Shirt", "Coat"): 2, ("Sandal", "Sneaker"): 2, ("Trouser", "Dress"): 3,
            ("Shirt", "Trouser"): 3, ("Coat", "Dress"): 3, ("Sneaker", "Ankle boot"): 3,
            ("Sandal", "Ankle boot"): 3, ("Coat", "Sandal"): 4, ("Bag", "Trouser"): 4,
            ("Bag", "Ankle boot"): 4, ("Dress", "Sneaker"): 4}
    for (a, b), v in hand.items():
        assert d[c[a], c[b]] == d[c[b], c[a]] == v, (a, b)
    assert d.diagonal().tolist() == [0] * 10


# ---------------------------------------------------------------------- the real files
@pytest.fixture(scope="module")
def real():
    try:
        files = fm.locate_fashion_mnist()
    except HafclsError:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return files, fm.fashion_mnist_splits()


def _header(path: Path) -> tuple[int, ...]:
    with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
        magic = f.read(4)
        return struct.unpack(f">{magic[3]}I", f.read(4 * magic[3]))


def test_real_counts_and_label_order(real):
    files, (h, train, val, test) = real
    assert (len(train), len(val), len(test)) == (55_000, 5_000, 10_000)
    assert _header(files["train"][0]) == (60_000, 28, 28)
    assert _header(files["train"][1]) == (60_000,)
    assert _header(files["test"][0]) == (10_000, 28, 28)
    labels = {s: fm.read_idx(files[s][1], 1) for s in ("train", "test")}
    np.testing.assert_array_equal(test.targets, labels["test"])  # label order = class order
    assert np.bincount(labels["train"]).tolist() == [6000] * 10
    assert train.class_counts().tolist() == [5500] * 10
    assert val.class_counts().tolist() == [500] * 10
    assert test.class_counts().tolist() == [1000] * 10
    # validation = the last 500 of each class in file order
    for c in range(10):
        pos = np.flatnonzero(labels["train"] == c)
        assert sorted(val.source_indices[val.targets == c]) == pos[-500:].tolist()
    np.testing.assert_array_equal(train.targets, labels["train"][train.source_indices])
    x = train.images.float().div_(255)
    assert abs(x.mean().item() - 0.2860) < 2e-3 and abs(x.std().item() - 0.3530) < 2e-3


def test_real_data_through_the_engine(real, tmp_path):
    """A short engine run on 500 real training images: well above chance on 1,000 test ones."""
    from hafcls.engine.config import TrainConfig
    from hafcls.engine.train import train

    cfg = TrainConfig.from_dict({
        "data": "fmnist", "method": "haframe", "model": "test_resnet", "epochs": 4,
        "batch_size": 32, "lr": 0.05, "workers": 0, "progress": False, "device": "cpu",
        "data_options": {"per_class": [50, 10, 100]}, "output": str(tmp_path / "run")})
    result = train(cfg, log=lambda msg: None)
    assert result["test"]["n"] == 1000
    assert result["test"]["top1"] > 0.45, result["test"]  # chance is 0.1


def test_real_data_learning_well_above_chance(real):
    torch.manual_seed(0)
    _, (_, train, _, test) = real
    train = train.subset(np.flatnonzero(fm.first_per_class(train.targets, 60)))
    test = test.subset(np.flatnonzero(fm.first_per_class(test.targets, 30)))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, stride=2), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(16 * 12 * 12, 10))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(train, batch_size=50, shuffle=True, collate_fn=collate_skip_corrupt)
    for _ in range(8):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x, y = test.batch(range(len(test)))
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    print(f"test accuracy {acc:.3f}")
    assert acc > 0.6, acc  # chance is 0.1


def test_engine_channels_follow_the_model(fixture_dir):
    from hafcls.engine.builders import build_data
    from hafcls.engine.config import TrainConfig

    root, _ = fixture_dir
    base = {"data": "fashion-mnist", "data_dir": str(root), "model": "test_resnet",
            "method": "ce", "data_options": {"per_class": 2, "val_per_class": 2}}
    for options, channels in (({"in_chans": 1}, 1), ({"in_chans": 3}, 3), ({}, 3)):
        bundle = build_data(TrainConfig.from_dict({**base, "model_options": options}))
        assert bundle.train[0][0].shape == (channels, 28, 28)
        assert bundle.test.transform.channels == channels
