"""Real-dataset loaders on tiny fixtures in the upstream formats, corrupt images, transforms."""

import warnings

import numpy as np
import pytest
import timm
import torch
from data_fixtures import (
    CIFAR_FINE,
    FGVC_BANNER,
    FGVC_TABLE,
    INAT_CATEGORIES,
    cifar_pixel,
    fgvc_colour,
    folder_colour,
    inat_colour,
    write_cifar100,
    write_corrupt_images,
    write_fgvc,
    write_image_folder,
    write_inat2019,
)
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from hafcls.data import (
    CIFAR100,
    CorruptImageError,
    FGVCAircraft,
    HierarchyImageFolder,
    INaturalist2019,
    available_datasets,
    build_datasets,
    build_transforms,
    collate_skip_corrupt,
    load_rgb,
    transforms_for_model,
)
from hafcls.data import base as data_base
from hafcls.data.transforms import ToNormalizedTensor
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy


def raw(dataset):
    """The same dataset yielding PIL images (no transform)."""
    dataset.transform = None
    return dataset


# ----------------------------------------------------------------------------- CIFAR-100


def test_cifar100_split_rule_layout_and_labels(tmp_path):
    write_cifar100(tmp_path, n_train=60, n_test=10)
    b = build_datasets("cifar100", data_dir=tmp_path)
    h = b.hierarchy
    assert h.classes == CIFAR_FINE and b.num_classes == 4 and b.image_size == 32
    assert h.parent("bus") == h.parent("train") != h.parent("apple")
    assert b.sizes() == {"train": 40, "val": 200, "test": 40}
    for split, ranks in (("train", range(0, 10)), ("val", range(10, 60)), ("test", range(10))):
        ds = raw(b.splits[split])
        seen = {k: [] for k in range(4)}
        for i in range(len(ds)):
            img, label = ds[i]
            assert img.size == (32, 32)
            r, g, bl = img.getpixel((31, 0))  # channel-major rows decoded to RGB
            assert (r, bl) == cifar_pixel(label, 0)[::2]  # the pixel encodes the fine label
            seen[label].append(g)
        # validation = the last 50 of each class in file order, train the rest
        assert all(sorted(v) == list(ranks) for v in seen.values())
    x, y = build_datasets("cifar100", data_dir=tmp_path).test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_cifar100_val_count_parameter_and_folder_root(tmp_path):
    folder = write_cifar100(tmp_path, n_train=30, n_test=2)
    ds = CIFAR100(folder, "val", val_per_class=5)  # the cifar-100-python folder itself
    assert len(ds) == 20 and np.bincount(ds.targets).tolist() == [5] * 4
    assert len(CIFAR100(tmp_path, "train", val_per_class=5)) == 100
    assert len(CIFAR100(tmp_path, "trainval")) == 120
    with pytest.raises(HafclsError, match="lower val_per_class"):
        CIFAR100(tmp_path, "train", val_per_class=30)


def test_cifar100_user_hierarchy(tmp_path):
    write_cifar100(tmp_path, n_train=3, n_test=1)
    # another class order and an extra class without images
    h = Hierarchy.from_edges([("r", "v"), ("v", "train"), ("v", "bus"), ("r", "f"),
                              ("f", "pear"), ("f", "apple"), ("f", "plum")],
                             classes=["train", "plum", "pear", "bus", "apple"])
    b = build_datasets("cifar100", data_dir=tmp_path, hierarchy=h, val_per_class=1)
    assert b.hierarchy is h and b.num_classes == 5
    ds = raw(b.test)
    for i in range(len(ds)):
        img, label = ds[i]
        fine = (img.getpixel((0, 0))[0] - 5) // 10
        assert h.classes[label] == CIFAR_FINE[fine]
    small = Hierarchy.from_edges([("r", "apple"), ("r", "pear"), ("r", "bus")])
    with pytest.raises(HafclsError, match="'train'"):
        build_datasets("cifar100", data_dir=tmp_path, hierarchy=small, val_per_class=1)


def test_cifar100_missing_and_download(tmp_path, monkeypatch):
    with pytest.raises(HafclsError, match="cifar-100-python.*download=True"):
        build_datasets("cifar100", data_dir=tmp_path / "nothing")
    with pytest.raises(HafclsError, match="needs data_dir"):
        build_datasets("cifar100")
    calls = []

    def fake_download(url, download_root, md5=None, **kw):
        calls.append((url, md5))
        write_cifar100(download_root, n_train=2, n_test=1)

    monkeypatch.setattr(data_base, "download_and_extract_archive", fake_download)
    b = build_datasets("cifar100", data_dir=tmp_path / "new", download=True, val_per_class=1)
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      "eb9058c3a382ffc7106e4002c42a8d85")]
    assert b.sizes() == {"train": 4, "val": 4, "test": 4}
    build_datasets("cifar100", data_dir=tmp_path / "new", download=True, val_per_class=1)
    assert len(calls) == 1  # present data is not fetched again


# ----------------------------------------------------------------------------- FGVC-Aircraft


def test_fgvc_splits_labels_and_banner(tmp_path):
    write_fgvc(tmp_path, size=(40, 52))
    b = build_datasets("fgvc-aircraft", data_dir=tmp_path, image_size=24)
    h = b.hierarchy
    assert h.classes == [v for v, _, _ in FGVC_TABLE] and h.height == 3
    assert b.sizes() == {"train": 12, "val": 6, "test": 6}
    ds = raw(b.train)
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.size == (40, 32)  # the 20-pixel banner is gone
        arr = np.asarray(img, dtype=np.int64)
        assert np.abs(arr - fgvc_colour(label)).max() < 12  # no banner blue left
    assert ds.image_ids[0] == "0034309"
    assert b.test[0][0].shape == (3, 24, 24)
    kept = FGVCAircraft(tmp_path, "val", crop_banner=0)
    img, _ = kept[0]
    assert img.size == (40, 52)
    assert np.abs(np.asarray(img)[-1].astype(int) - FGVC_BANNER).max() < 12
    assert len(FGVCAircraft(tmp_path / "fgvc-aircraft-2013b", "trainval")) == 18


def test_fgvc_user_hierarchy_missing_and_download(tmp_path, monkeypatch):
    write_fgvc(tmp_path)
    h = Hierarchy.from_edges([("r", v) for v, _, _ in FGVC_TABLE if v != "F-16A/B"])
    with pytest.raises(HafclsError, match="F-16A/B"):
        FGVCAircraft(tmp_path, "test", hierarchy=h)
    with pytest.raises(HafclsError, match="fgvc-aircraft-2013b.*download=True"):
        build_datasets("fgvc", data_dir=tmp_path / "none")
    (tmp_path / "fgvc-aircraft-2013b" / "data" / "images").rename(tmp_path / "elsewhere")
    with pytest.raises(HafclsError, match="images folder"):
        FGVCAircraft(tmp_path, "train")
    urls = []

    def fake_download(url, download_root, md5=None, **kw):
        urls.append(url)
        write_fgvc(download_root)

    monkeypatch.setattr(data_base, "download_and_extract_archive", fake_download)
    ds = FGVCAircraft(tmp_path / "fresh", "val", download=True)
    assert len(ds) == 6
    assert urls == ["https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
                    "fgvc-aircraft-2013b.tar.gz"]


# ----------------------------------------------------------------------------- iNaturalist


def _label_of_colour(img):
    r = img.getpixel((0, 0))[0]
    return int(round((r - 30) / 50))


def test_inat2019_default_protocol_and_class_order(tmp_path):
    write_inat2019(tmp_path, per_class={"train": 5, "val": 2})
    with pytest.warns(UserWarning, match="no labels"):
        b = build_datasets("inat2019", data_dir=tmp_path, image_size=16)
    h = b.hierarchy
    assert h.classes == ["0", "1", "2", "3"]  # category-id order, not json order
    assert h.height == 7 and h.lca("0", "3") != h.root and h.lca("0", "1") == h.root
    assert b.info["protocol"] == "val-as-test"
    assert b.sizes() == {"train": 8, "val": 12, "test": 8}
    assert b.val.transform is b.test.transform is not b.train.transform
    for split in ("train", "val", "test"):
        ds = raw(b.splits[split])
        for i in range(len(ds)):
            img, label = ds[i]
            assert h.classes[label] == str(_label_of_colour(img))
    # the held-out validation images are the last 3 of each class in the train json
    assert all("train_2_" in p or "train_3_" in p or "train_4_" in p for p in b.val.paths)
    with pytest.raises(HafclsError, match="never released"):
        INaturalist2019(tmp_path, "test")
    with pytest.raises(HafclsError, match="inat_comp"):
        build_datasets("inat2019", data_dir=tmp_path, download=True)


def test_inat2019_official_protocol_separate_categories_and_user_tree(tmp_path):
    write_inat2019(tmp_path, per_class={"train": 2, "val": 1, "test": 1},
                   separate_categories=True)
    b = build_datasets("inat2019", data_dir=tmp_path)  # test2019.json is labelled here
    assert b.info["protocol"] == "official"
    assert b.sizes() == {"train": 8, "val": 4, "test": 4}
    assert b.hierarchy.name("2") == "Abies alba"
    ds = raw(b.test)
    assert [b.hierarchy.classes[ds[i][1]] for i in range(4)] == \
        [str(c["id"]) for c in INAT_CATEGORIES]
    assert np.abs(np.asarray(ds[0][0], dtype=int) - inat_colour(3)).max() < 12
    user = Hierarchy.from_edges([("r", "0"), ("r", "1"), ("r", "2")])
    with pytest.raises(HafclsError, match="'3'"):
        build_datasets("inat2019", data_dir=tmp_path, hierarchy=user)
    with pytest.raises(HafclsError, match="No iNaturalist 2019 folder"):
        build_datasets("inat2019", data_dir=tmp_path / "nope")
    (tmp_path / "train_val2019").rename(tmp_path / "moved")
    with pytest.raises(HafclsError, match="train_val2019, which does not exist"):
        build_datasets("inat2019", data_dir=tmp_path)


# ----------------------------------------------------------------------------- class folders

TREE = Hierarchy.from_edges([("root", "animal"), ("animal", "n01"), ("animal", "n02"),
                             ("root", "plant"), ("plant", "n03"), ("plant", "n04")])


def test_folder_dataset_labels_and_missing_classes(tmp_path):
    write_image_folder(tmp_path, ["n04", "n01", "n02"])  # n03 has no folder
    with pytest.warns(UserWarning, match="1 of the hierarchy's 4 classes"):
        b = build_datasets("folder", data_dir=tmp_path, hierarchy=TREE, image_size=16)
    assert b.sizes() == {"train": 9, "val": 3, "test": 3}
    assert b.train.missing_classes == ["n03"]
    assert b.info["classes_without_images"] == {"train": 1, "val": 1, "test": 1}
    ds = raw(b.train)
    written = ["n04", "n01", "n02"]
    for i in range(len(ds)):
        img, label = ds[i]
        colour = np.asarray(img, dtype=int)[0, 0]
        ci = int(np.argmin([np.abs(colour - folder_colour(k)).sum() for k in range(3)]))
        assert TREE.classes[label] == written[ci]
    assert {p.rsplit(".", 1)[1] for p in ds.paths} == {"png", "jpg"}
    # the hierarchy can also be a file
    TREE.to_json(tmp_path / "tree.json")
    with pytest.warns(UserWarning):
        ds = HierarchyImageFolder(tmp_path, "val", str(tmp_path / "tree.json"))
    assert len(ds) == 3


def test_folder_dataset_errors(tmp_path):
    write_image_folder(tmp_path, ["n01", "n02", "n03", "n04", "n99"])
    with pytest.raises(HafclsError, match="'n99'"):
        build_datasets("folder", data_dir=tmp_path, hierarchy=TREE)
    with pytest.raises(HafclsError, match="needs a hierarchy"):
        build_datasets("folder", data_dir=tmp_path)
    with pytest.raises(HafclsError, match="No 'dev' folder"):
        HierarchyImageFolder(tmp_path, "dev", TREE)


# ----------------------------------------------------------------------------- corrupt images


def test_load_rgb_names_the_damaged_file(tmp_path):
    empty, truncated = write_corrupt_images(tmp_path)
    with pytest.raises(CorruptImageError, match="empty.jpg.*empty"):
        load_rgb(empty)
    with pytest.raises(CorruptImageError, match="truncated.jpg") as err:
        load_rgb(truncated)
    assert isinstance(err.value, HafclsError) and err.value.path == str(truncated)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(CorruptImageError, match="text.png"):
        load_rgb(tmp_path / "text.png")


def test_corrupt_error_from_a_worker_keeps_its_message(tmp_path):
    write_image_folder(tmp_path, ["n01"], per_class={"train": 1})
    _, truncated = write_corrupt_images(tmp_path / "train" / "n01")
    truncated.rename(tmp_path / "train" / "n01" / "a truncated.jpg")  # a space in the name
    (tmp_path / "train" / "n01" / "empty.jpg").unlink()
    ds = HierarchyImageFolder(tmp_path, "train", Hierarchy.from_edges([("r", "n01")]))
    with pytest.raises(CorruptImageError) as err:
        list(DataLoader(ds, batch_size=2, num_workers=1, collate_fn=lambda b: b))
    assert "Traceback" not in str(err.value)
    assert err.value.problem.startswith("Image file ") and "cannot be decoded" in str(err.value)
    assert err.value.path.endswith("a truncated.jpg") and "skip_corrupt" in err.value.fix


def _folder_with_corrupt(tmp_path):
    write_image_folder(tmp_path, ["n01", "n02", "n03", "n04"], per_class={"train": 2})
    write_corrupt_images(tmp_path / "train" / "n02")
    return tmp_path


def test_corrupt_images_strict_and_skipped(tmp_path):
    root = _folder_with_corrupt(tmp_path)
    strict = HierarchyImageFolder(root, "train", TREE)
    assert len(strict) == 10
    bad = [i for i, p in enumerate(strict.paths) if "empty" in p or "truncated" in p]
    assert len(bad) == 2
    with pytest.raises(HafclsError, match="truncated.jpg"):
        strict[bad[1]]
    tf = build_transforms(16, train=False)
    skip = HierarchyImageFolder(root, "train", TREE, transform=tf, skip_corrupt=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert skip[bad[0]] is None and skip[bad[1]] is None
        assert skip.num_skipped == 2 and len(caught) == 2
        batch = collate_skip_corrupt([skip[i] for i in range(len(skip))])
    assert skip.num_skipped == 4  # counted again on the second pass
    assert batch[0].shape == (8, 3, 16, 16) and batch[1].tolist() == [0] * 2 + [1] * 2 + [
        2] * 2 + [3] * 2
    assert collate_skip_corrupt([None, None]) is None


def test_corrupt_counter_sums_over_workers(tmp_path):
    root = _folder_with_corrupt(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = build_datasets("folder", data_dir=root, hierarchy=TREE, image_size=16,
                           skip_corrupt=True, val_split="train", test_split="train")
    loader = DataLoader(b.train, batch_size=3, num_workers=2, collate_fn=b.collate_fn)
    n = sum(len(y) for x, y in (batch for batch in loader if batch is not None))
    assert n == 8
    assert b.train.num_skipped == 2 and b.num_skipped == 2
    b.reset_skipped()
    assert b.num_skipped == 0


def test_build_datasets_skips_by_default_and_strict_on_request(tmp_path):
    root = _folder_with_corrupt(tmp_path)
    opts = dict(data_dir=root, hierarchy=TREE, image_size=16, val_split="train",
                test_split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = build_datasets("folder", **opts)
        strict = build_datasets("folder", skip_corrupt=False, **opts)
    assert default.skip_corrupt and default.collate_fn is collate_skip_corrupt
    bad = next(i for i, p in enumerate(default.train.paths) if "empty" in p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert default.train[bad] is None and default.num_skipped == 1
    assert not strict.skip_corrupt and strict.collate_fn is None
    with pytest.raises(CorruptImageError, match="empty.jpg"):
        strict.test[bad]
    with pytest.raises(HafclsError, match="Unknown option"):
        build_datasets("folder", data_dir=root, hierarchy=TREE, skip=True)


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_errors():
    assert available_datasets() == ["synthetic", "cifar100", "fgvc-aircraft", "inat2019",
                                    "tiered-imagenet", "fashion-mnist", "folder"]
    with pytest.raises(HafclsError, match="synthetic, cifar100, fgvc-aircraft, inat2019"):
        build_datasets("imagenet")
    with pytest.raises(HafclsError, match="needs data_dir"):
        build_datasets("FGVC_Aircraft")
    with pytest.raises(HafclsError, match="val_per_class"):
        build_datasets("synthetic", val_per_class=3)


# ----------------------------------------------------------------------------- transforms


def _steps(tf):
    return [type(t).__name__ for t in tf.transforms]


def test_build_transforms_recipes():
    small_train = build_transforms(32, train=True)
    assert _steps(small_train)[1:4] == ["Resize", "RandomCrop", "RandomHorizontalFlip"]
    assert small_train.transforms[2].padding == [4, 4, 4, 4]
    big_train = build_transforms(224, train=True, interpolation="bicubic")
    assert _steps(big_train)[1:3] == ["RandomResizedCrop", "RandomHorizontalFlip"]
    big_eval = build_transforms(224, train=False)
    assert _steps(big_eval)[1:3] == ["Resize", "CenterCrop"]
    assert big_eval.transforms[1].size == [256]  # floor(224 / 0.875)
    assert build_transforms(224, train=False, crop_pct=1.0).transforms[1].size == [224]
    img = Image.new("RGB", (300, 200), (51, 102, 153))
    out = big_eval(img)
    assert out.shape == (3, 224, 224) and type(out) is torch.Tensor
    expect = (torch.tensor([51, 102, 153]) / 255 - torch.tensor([0.485, 0.456, 0.406])) \
        / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out[:, 100, 100], expect)
    # numpy HWC and tensor CHW inputs give the same result as PIL
    arr = np.array(img)
    torch.testing.assert_close(big_eval(arr), out)
    torch.testing.assert_close(big_eval(torch.from_numpy(arr).permute(2, 0, 1)), out)
    # the fused conversion equals torchvision's ToImage + ToDtype + Normalize
    small_img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8))
    fused = ToNormalizedTensor((0.2, 0.3, 0.4), (0.5, 0.6, 0.7))
    reference = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize([0.2, 0.3, 0.4], [0.5, 0.6, 0.7])])
    torch.testing.assert_close(fused(small_img), reference(small_img).as_subclass(torch.Tensor))
    as_float = v2.functional.pil_to_tensor(small_img).float() / 255
    before = as_float.clone()
    torch.testing.assert_close(fused(as_float), fused(small_img))
    assert torch.equal(as_float, before)  # the caller's tensor is not modified
    # numpy input is augmented too (v2 alone would pass arrays through untouched)
    crops = torch.stack([small_train(np.array(img.resize((32, 32)))) for _ in range(8)])
    assert (crops - crops[0]).abs().amax() > 0
    for bad in ({"image_size": 0}, {"image_size": (3, 32, 16)}, {"image_size": 32, "std": 0},
                {"image_size": 32, "interpolation": "cubic"}, {"image_size": 32, "crop_pct": 2}):
        with pytest.raises(HafclsError):
            build_transforms(train=False, **bad)


def test_transforms_for_model_uses_timm_config():
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    cfg = timm.data.resolve_data_config({}, model=model)
    tf = transforms_for_model(model, train=False)
    norm = tf.transforms[-1]
    assert isinstance(norm, ToNormalizedTensor)
    assert tuple(norm.mean) == cfg["mean"] and tuple(norm.std) == cfg["std"]
    size = cfg["input_size"][-1]
    assert tuple(tf.transforms[2].size) == (size, size)  # CenterCrop at the config's size
    assert tf.transforms[1].interpolation == v2.InterpolationMode.BICUBIC
    assert tf.transforms[1].size == [int(size / cfg["crop_pct"])]

    class Wrapped(torch.nn.Module):  # a hafcls model exposes its timm model as .backbone
        def __init__(self):
            super().__init__()
            self.backbone = timm.create_model("test_resnet", pretrained=False)

    small = transforms_for_model(Wrapped(), train=True, image_size=32)
    assert _steps(small)[2] == "RandomCrop"
    assert tuple(small.transforms[-1].mean) == (0.5, 0.5, 0.5)
    from_cfg = transforms_for_model({"input_size": (3, 64, 64), "mean": (0.1, 0.2, 0.3),
                                     "std": (1, 1, 1), "interpolation": "bilinear",
                                     "crop_pct": 1.0}, train=False)
    assert tuple(from_cfg.transforms[-1].mean) == (0.1, 0.2, 0.3)
    assert from_cfg(Image.new("RGB", (80, 64))).shape == (3, 64, 64)
