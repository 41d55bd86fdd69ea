"""The papers' transform presets, the CIFAR-100 seeded split and the split listings through the
dataset builders (fixtures in the upstream formats)."""

import numpy as np
import pytest
import torch
from data_fixtures import CIFAR_FINE, write_cifar100, write_inat2019
from PIL import Image
from torchvision.transforms import v2

from hafcls.data import build_datasets
from hafcls.data.transforms import preset_transforms
from hafcls.engine import TrainConfig
from hafcls.engine.builders import build_data, match_backbone_transforms
from hafcls.hierarchy import Hierarchy

UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # outputs are the pixels / 255


def ramp(width, height):
    """An RGB image whose every pixel is >= 60 (never the zero of constant padding)."""
    x = np.arange(width, dtype=np.uint8)[None, :, None] * 3 + 60
    return Image.fromarray(np.broadcast_to(x, (height, width, 3)).copy())


def pixels(t):
    return torch.round(t * 255).to(torch.int64)


def test_cifar_preset_pads_by_reflection():
    img = ramp(32, 32)
    tf = preset_transforms("cifar", 32, True, hflip=0.0, **UNIT)
    crop = next(s for s in tf.transforms if isinstance(s, v2.RandomCrop))
    assert crop.padding == [4, 4, 4, 4] and crop.padding_mode == "reflect"
    torch.manual_seed(0)
    outs = [pixels(tf(img)) for _ in range(30)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert all(o.min() >= 60 for o in outs)  # reflection: no zero border ever
    # a crop shifted left shows the mirrored columns 4..1 of the image at its left edge
    shifted = [o for o in outs if o[0, 0, 0] > 60 and o[0, 0, 0] == o[0, 0, 2] + 6]
    assert shifted, "some crop must start inside the reflected border"
    assert torch.equal(pixels(preset_transforms("cifar", 32, False, **UNIT)(img)),
                       pixels(v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, True)])(img)))


def test_fgvc_preset_stretches_then_pad_crops_and_tests_on_the_whole_stretched_image():
    img = ramp(300, 120)  # a wide aircraft photo: a stretch keeps the wingtips
    train = preset_transforms("fgvc", 224, True, hflip=0.0, **UNIT)
    names = [type(s).__name__ for s in train.transforms]
    assert names == ["ArrayToPIL", "Resize", "RandomCrop", "ToNormalizedTensor"]
    assert train.transforms[1].size == [224, 224]
    assert train.transforms[2].padding == [4, 4, 4, 4]
    assert train.transforms[2].padding_mode == "constant"
    torch.manual_seed(0)
    outs = [pixels(train(img)) for _ in range(20)]
    assert all(o.shape == (3, 224, 224) for o in outs)
    assert any(o.min() == 0 for o in outs)  # zero padding shows up
    test = preset_transforms("fgvc", 224, False, **UNIT)
    want = np.asarray(img.resize((224, 224), Image.BILINEAR), dtype=np.int64)
    got = pixels(test(img)).permute(1, 2, 0).numpy()
    assert got.shape == (224, 224, 3) and np.abs(got - want).max() <= 1  # no centre crop


def test_stretch_preset_tests_without_a_crop():
    img = ramp(448, 224)
    test = preset_transforms("stretch", 224, False, **UNIT)
    assert [type(s).__name__ for s in test.transforms] == ["ArrayToPIL", "Resize",
                                                           "ToNormalizedTensor"]
    want = np.asarray(img.resize((224, 224), Image.BILINEAR), dtype=np.int64)
    got = pixels(test(img)).permute(1, 2, 0).numpy()
    assert got.shape == (224, 224, 3) and np.abs(got - want).max() <= 1  # the whole image
    train = preset_transforms("stretch", 224, True)
    assert type(train.transforms[1]).__name__ == "RandomResizedCrop"


def test_presets_through_the_run_builder_keep_geometry_and_take_backbone_statistics(tmp_path):
    import timm

    cfg = TrainConfig.from_dict({"data": "synthetic", "image_size": 40,
                                 "transform_preset": "fgvc",
                                 "data_options": {"per_class": 2, "branching": [2, 2]}})
    bundle = build_data(cfg)
    steps = bundle.train.transform.transforms
    assert isinstance(steps[2], v2.RandomCrop) and steps[2].padding == [4, 4, 4, 4]
    cfg.update({"pretrained_file": str(tmp_path / "w.pth")})
    model = timm.create_model("test_resnet")
    match_backbone_transforms(bundle, model, cfg)
    steps = bundle.val.transform.transforms
    assert [type(s).__name__ for s in steps] == ["ArrayToPIL", "Resize", "ToNormalizedTensor"]
    mean = timm.data.resolve_data_config(model=model)["mean"]
    assert steps[-1].mean == pytest.approx(mean) and bundle.mean == pytest.approx(mean)


# ----------------------------------------------------------------------------- CIFAR-100
def held_out_pairs(bundle):
    """(fine index, rank within its class in file order) of each validation image; the
    fixture's green channel is that rank."""
    names = bundle.hierarchy.classes
    return sorted((CIFAR_FINE.index(names[label]), int(bundle.val.images[i][0, 0, 1]))
                  for i, label in enumerate(bundle.val.targets))


def test_cifar100_split_holds_out_the_last_50_per_class_after_a_seeded_shuffle(tmp_path):
    from hafcls.hierarchy.sources.cifar100 import read_cifar_pickle

    write_cifar100(tmp_path, n_train=60, n_test=2)
    b = build_datasets("cifar100", data_dir=tmp_path, split_seed=0)
    assert b.sizes() == {"train": 40, "val": 200, "test": 8} and b.info["split_seed"] == 0
    # brute force: permute the train file by the seed, keep the last 50 of each class
    fine = np.asarray(read_cifar_pickle(tmp_path / "cifar-100-python" / "train")["fine_labels"])
    rank = np.zeros(len(fine), dtype=int)
    for c in range(len(CIFAR_FINE)):
        rank[fine == c] = np.arange((fine == c).sum())
    order = np.random.default_rng(0).permutation(len(fine))
    want = sorted((c, int(rank[i])) for c in range(len(CIFAR_FINE))
                  for i in order[fine[order] == c][-50:])
    assert held_out_pairs(b) == want
    assert want != sorted((c, r) for c in range(4) for r in range(10, 60))  # not file order
    assert held_out_pairs(build_datasets("cifar100", data_dir=tmp_path, split_seed=0)) == want
    assert held_out_pairs(build_datasets("cifar100", data_dir=tmp_path, split_seed=1)) != want


def test_cifar100_levels_option(tmp_path):
    write_cifar100(tmp_path, n_train=3, n_test=1)
    five = build_datasets("cifar100", data_dir=tmp_path, val_per_class=1).hierarchy
    two = build_datasets("cifar100", data_dir=tmp_path, val_per_class=1, levels=2).hierarchy
    assert two.num_classes == five.num_classes
    assert max(two.depth(c) for c in two.classes) == 2
    assert max(five.depth(c) for c in five.classes) > 2


# ----------------------------------------------------------------------------- split listings
def write_listing(root, listing):
    for split, per in listing.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for cls, names in per.items():
            (root / split / f"{cls}.txt").write_text("\n".join(names) + "\n")


def write_images(root, listing, colour):
    for split, per in listing.items():
        for cls, names in per.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                Image.new("RGB", (20, 20), colour(cls)).save(folder / name)


def test_inat_listing_through_the_builder(tmp_path, capsys):
    root = write_inat2019(tmp_path / "inat", separate_categories=True)
    listing = {"train": {"nat0000": ["a.jpg", "b.jpg"], "nat0003": ["c.jpg"]},
               "val": {"nat0001": ["d.jpg"]},
               "test": {"nat0002": ["e.jpg"], "nat0003": ["f.jpg", "g.jpg"]}}
    write_listing(tmp_path / "splits_inat19", listing)
    write_images(root, listing, lambda cls: (40 * int(cls[3:]) + 25, 0, 0))
    b = build_datasets("inat2019", data_dir=root, splits=str(tmp_path / "splits_inat19"))
    assert b.sizes() == {"train": 3, "val": 1, "test": 3} and b.num_classes == 4
    assert b.info["protocol"] == "split-listing"
    assert "test 3 images (2 classes)" in b.info["listing"]
    assert "test 3 images" in capsys.readouterr().err  # printed for the run's log
    for ds in (b.train, b.val, b.test):
        for i in range(len(ds)):
            x, label = ds[i]
            red = round(float(x[0, 0, 0] * 0.229 + 0.485) * 255)  # ImageNet normalisation
            assert b.hierarchy.classes[label] == str(round((red - 25) / 40))


def test_tiered_listing_through_the_builder(tmp_path):
    h = Hierarchy.from_edges([("entity", "fish"), ("fish", "n01440764"),
                              ("entity", "dog"), ("dog", "n02102040")],
                             classes=["n02102040", "n01440764"])
    listing = {"train": {"n01440764": ["t1.JPEG", "t2.JPEG"], "n02102040": ["t3.JPEG"]},
               "val": {"n01440764": ["v1.JPEG"], "n02102040": ["v2.JPEG"]},
               "test": {"n02102040": ["x1.JPEG", "x2.JPEG"]}}
    write_listing(tmp_path / "splits_tiered", listing)
    write_images(tmp_path / "img", listing, lambda c: (200, 0, 0) if c == "n02102040" else
                 (0, 0, 200))
    b = build_datasets("tiered", data_dir=tmp_path / "img", hierarchy=h,
                       splits=str(tmp_path / "splits_tiered"))
    assert b.name == "tiered-imagenet" and b.sizes() == {"train": 3, "val": 2, "test": 2}
    assert b.info["listing_sizes"] == {"train": 3, "val": 2, "test": 2}
    assert sorted(b.train.targets.tolist()) == [0, 1, 1]
    assert b.test.targets.tolist() == [0, 0]
    from hafcls.errors import HafclsError

    with pytest.raises(HafclsError, match="split listing"):
        build_datasets("tiered-imagenet", data_dir=tmp_path / "img", hierarchy=h)
    with pytest.raises(HafclsError, match="--hierarchy"):
        build_datasets("tiered-imagenet", data_dir=tmp_path / "img",
                       splits=str(tmp_path / "splits_tiered"))
