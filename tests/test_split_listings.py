"""making-better-mistakes' split listings (iNat-2019, tieredImageNet-H) from folders and zips."""

import zipfile

import pytest

from hafcls.data.split_listings import (
    inat2019_listing,
    read_listing_files,
    tiered_listing,
)
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

INAT = {  # split -> class folder -> file names
    "train": {"nat0000": ["a1.jpg", "a2.jpg", "a3.jpg"], "nat0001": ["b1.jpg", "b2.jpg"],
              "nat0002": ["c1.jpg"]},
    "val": {"nat0000": ["a4.jpg"], "nat0002": ["c2.jpg", "c3.jpg"]},
    "test": {"nat0001": ["b3.jpg"], "nat0002": ["c4.jpg"]},
}
TIERED = {
    "train": {"n01440764": ["n01440764_10026.JPEG", "n01440764_10027.JPEG"],
              "n02102040": ["n02102040_1.JPEG"]},
    "val": {"n01440764": ["ILSVRC2012_val_00000293.JPEG"],
            "n02102040": ["ILSVRC2012_val_00000009.JPEG"]},
    "test": {"n01440764": ["ILSVRC2012_val_00002138.JPEG"],
             "n02102040": ["ILSVRC2012_val_00000011.JPEG", "ILSVRC2012_val_00000012.JPEG"]},
}


def write_folder(root, listing, prefix=""):
    for split, per in listing.items():
        folder = root / prefix / split
        folder.mkdir(parents=True, exist_ok=True)
        for cls, names in per.items():
            # blank lines and a missing final newline, as hand-made listings have
            (folder / f"{cls}.txt").write_text("\n".join(names) + "\n\n")
    return root


def write_zip(path, listing, prefix=""):
    with zipfile.ZipFile(path, "w") as zf:
        for split, per in listing.items():
            zf.writestr(f"{prefix}{split}/", "")
            for cls, names in per.items():
                zf.writestr(f"{prefix}{split}/{cls}.txt", "\n".join(names))
    return path


def inat_tree():
    # class order of the iNaturalist source: category id order; "2" first here on purpose
    return Hierarchy.from_edges([("life", "g"), ("g", "0"), ("g", "1"), ("life", "2")],
                                classes=["2", "0", "1"])


def expected(listing, classes, class_of):
    return {split: sorted((f"{cls}/{n}", classes.index(class_of(cls)))
                          for cls, names in per.items() for n in names)
            for split, per in listing.items()}


@pytest.mark.parametrize("kind", ["folder", "zip", "zip-enclosed", "folder-enclosed"])
def test_inat_listing(tmp_path, kind):
    if kind == "folder":
        src = write_folder(tmp_path, INAT)
    elif kind == "folder-enclosed":
        src = write_folder(tmp_path, INAT, "splits_inat19")
    else:
        src = write_zip(tmp_path / "splits_inat19.zip", INAT,
                        "splits_inat19/" if kind == "zip-enclosed" else "")
    h = inat_tree()
    got = inat2019_listing(src, h)
    want = expected(INAT, h.classes, lambda f: str(int(f[3:])))
    assert {s: sorted(v) for s, v in got.samples.items()} == want
    assert got.sizes() == {"train": 6, "val": 3, "test": 2}
    assert got.samples["test"] == [("nat0001/b3.jpg", 2), ("nat0002/c4.jpg", 0)]
    assert "test 2 images (2 classes)" in got.summary()
    assert got.paths(tmp_path / "img", "val")[0] == (tmp_path / "img/val/nat0000/a4.jpg", 1)
    # without a hierarchy, the listing's own classes in category-id order
    assert inat2019_listing(src).classes == ["0", "1", "2"]


def test_tiered_listing(tmp_path):
    src = write_zip(tmp_path / "splits_tiered.zip", TIERED)
    h = Hierarchy.from_edges([("n00001740", "n02102040"), ("n00001740", "n01440764"),
                              ("n00001740", "n09999999")])  # a class with no images is fine
    got = tiered_listing(src, h)
    assert got.classes == ["n01440764", "n02102040", "n09999999"]
    assert sorted(got.samples["train"]) == [("n01440764/n01440764_10026.JPEG", 0),
                                            ("n01440764/n01440764_10027.JPEG", 0),
                                            ("n02102040/n02102040_1.JPEG", 1)]
    assert got.sizes() == {"train": 3, "val": 2, "test": 3}
    assert read_listing_files(write_folder(tmp_path / "f", TIERED)) == {
        s: {c: list(v) for c, v in per.items()} for s, per in TIERED.items()}


def test_listing_errors(tmp_path):
    h = inat_tree()
    with pytest.raises(HafclsError, match="No split listing"):
        inat2019_listing(tmp_path / "nowhere", h)
    no_test = {k: v for k, v in INAT.items() if k != "test"}
    with pytest.raises(HafclsError, match="no test/ class files"):
        inat2019_listing(write_zip(tmp_path / "a.zip", no_test), h)
    extra = {**INAT, "train": {**INAT["train"], "nat0007": ["x.jpg"]}}
    with pytest.raises(HafclsError, match="'nat0007' \\(class id '7'\\)"):
        inat2019_listing(write_folder(tmp_path / "b", extra), h)
    with pytest.raises(HafclsError, match="not an iNat-2019 class folder"):
        inat2019_listing(write_folder(tmp_path / "c", TIERED), h)
    with pytest.raises(HafclsError, match="not a WordNet id"):
        tiered_listing(write_folder(tmp_path / "d", INAT))
    evil = {**INAT, "val": {"nat0000": ["../../etc/passwd"]}}
    with pytest.raises(HafclsError, match="not a file name inside the split"):
        inat2019_listing(write_folder(tmp_path / "e", evil), h)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(HafclsError, match="not a valid zip"):
        inat2019_listing(tmp_path / "bad.zip", h)
    write_folder(tmp_path / "g", INAT, "one")
    write_folder(tmp_path / "g", INAT, "two")
    with pytest.raises(HafclsError, match="several listings"):
        inat2019_listing(tmp_path / "g", h)
