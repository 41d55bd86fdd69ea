"""Writers of tiny datasets in the exact upstream on-disk formats, for tests to share.

- :func:`write_cifar100`: ``cifar-100-python/{train,test,meta}`` pickled like the official
  python-2 files (protocol 2, bytes keys and strings, numpy arrays referencing
  ``numpy.core.multiarray._reconstruct``). Pixel values encode the sample (see the function).
- :func:`write_fgvc`: ``fgvc-aircraft-2013b/data`` with the label text files and JPEGs that carry
  a 20-pixel bottom banner.
- :func:`write_inat2019`: ``train2019.json`` / ``val2019.json`` / ``test2019.json`` (COCO-like) and
  the image folders they name.
- :func:`write_image_folder`: ``root/<split>/<class>/*.png|jpg``.
- :func:`write_corrupt_images`: a zero-byte and a truncated JPEG.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# ----------------------------------------------------------------------------- python-2 pickles


class _Py2Pickler(pickle._Pickler):
    """Writes what python 2's cPickle wrote for the CIFAR files: ``str`` values as BINSTRING
    opcodes (``bytes`` when read with ``encoding='bytes'``) and numpy arrays through
    ``numpy.core.multiarray._reconstruct`` with a python-2 dtype state."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            state = (1, obj.shape, obj.dtype, False, np.ascontiguousarray(obj).tobytes())
            return (_Reconstruct, (np.ndarray, (0,), b"b"), state)
        if isinstance(obj, np.dtype):
            return (np.dtype, (obj.str[1:].encode(), 0, 1),
                    (3, obj.str[:1].encode(), None, None, None, -1, -1, 0))
        return NotImplemented

    def save_global(self, obj, name=None):
        names = {_Reconstruct: b"numpy.core.multiarray\n_reconstruct\n",
                 np.ndarray: b"numpy\nndarray\n", np.dtype: b"numpy\ndtype\n"}
        if obj in names:
            self.write(pickle.GLOBAL + names[obj])
            self.memoize(obj)
            return
        super().save_global(obj, name)


class _Reconstruct:
    """Stands for numpy's ``_reconstruct`` in the stream (only its name is written)."""


def dump_py2_pickle(obj) -> bytes:
    """Bytes of ``obj`` pickled the way python 2 pickled the official CIFAR files."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


# ----------------------------------------------------------------------------- CIFAR-100

CIFAR_FINE = ["apple", "pear", "bus", "train"]
CIFAR_COARSE = ["fruit_and_vegetables", "vehicles_1"]
CIFAR_PARENT = [0, 0, 1, 1]


def cifar_pixel(fine: int, rank: int) -> tuple[int, int, int]:
    """The RGB colour of the ``rank``-th image (in file order) of class ``fine``."""
    return (10 * fine + 5, rank % 256, 200)


def write_cifar100(root, fine_names=CIFAR_FINE, coarse_names=CIFAR_COARSE,
                   parent=CIFAR_PARENT, n_train=60, n_test=10, seed=0) -> Path:
    """Write ``root/cifar-100-python/{train,test,meta}``; returns that folder.

    Each class gets ``n_train`` / ``n_test`` images, in a shuffled class order like the real
    files. Every pixel of the ``r``-th image of fine class ``f`` (in file order) has colour
    :func:`cifar_pixel` ``(f, r)``, stored channel-major (all red, then green, then blue).
    """
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.permutation(np.repeat(np.arange(len(fine_names)), n))
        rank = np.zeros_like(fine)
        for f in range(len(fine_names)):
            rank[fine == f] = np.arange(n)
        colours = np.array([cifar_pixel(f, r) for f, r in zip(fine, rank)], dtype=np.uint8)
        data = np.repeat(colours, 1024, axis=1)  # N x 3072: R plane, G plane, B plane
        obj = {
            b"filenames": [f"{fine_names[f]}_s_{i:06d}.png".encode() for i, f in enumerate(fine)],
            b"batch_label": f"{'training' if name == 'train' else 'testing'} batch 1 of 1"
            .encode(),
            b"fine_labels": [int(f) for f in fine],
            b"coarse_labels": [int(parent[f]) for f in fine],
            b"data": data,
        }
        (folder / name).write_bytes(dump_py2_pickle(obj))
    meta = {b"fine_label_names": [n.encode() for n in fine_names],
            b"coarse_label_names": [n.encode() for n in coarse_names]}
    (folder / "meta").write_bytes(dump_py2_pickle(meta))
    return folder


# ----------------------------------------------------------------------------- FGVC-Aircraft

# (variant, family, manufacturer): labels with spaces and slashes, a variant named like its family
FGVC_TABLE = [
    ("707-320", "Boeing 707", "Boeing"),
    ("727-200", "Boeing 727", "Boeing"),
    ("A300B4", "A300", "Airbus"),
    ("DHC-8-100", "DHC-8", "de Havilland"),
    ("F-16A/B", "F-16", "General Dynamics"),
    ("Cessna 172", "Cessna 172", "Cessna"),
]
FGVC_BANNER = (0, 0, 255)


def fgvc_colour(variant_index: int) -> tuple[int, int, int]:
    return (40 * variant_index + 20, 200 - 30 * variant_index, 60)


def write_fgvc(root, table=FGVC_TABLE, per_split=None, size=(48, 52)) -> Path:
    """Write ``root/fgvc-aircraft-2013b/data``; returns the ``data`` folder.

    ``per_split`` images per variant (default train 2, val 1, test 1), ids are 7-digit strings
    like the real ones. Images are ``size`` (w, h) JPEGs filled with :func:`fgvc_colour` of the
    variant except the bottom 20 rows, which are :data:`FGVC_BANNER` blue (the default 52 rows
    put the edge on a JPEG block border).
    """
    per_split = per_split or {"train": 2, "val": 1, "test": 1}
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(f"{v}\n" for v, _, _ in table))
    families = sorted({f for _, f, _ in table})
    makers = sorted({m for _, _, m in table})
    (data / "families.txt").write_text("".join(f"{f}\n" for f in families))
    (data / "manufacturers.txt").write_text("".join(f"{m}\n" for m in makers))
    next_id = 34309
    rows: dict[str, list[tuple[str, int]]] = {}
    for split, n in per_split.items():
        rows[split] = []
        for _ in range(n):
            for vi in range(len(table)):
                rows[split].append((f"{next_id:07d}", vi))
                next_id += 1037
    rows["trainval"] = rows.get("train", []) + rows.get("val", [])
    w, h = size
    for split, items in rows.items():
        for level, col in (("variant", 0), ("family", 1), ("manufacturer", 2)):
            (data / f"images_{level}_{split}.txt").write_text(
                "".join(f"{i} {table[vi][col]}\n" for i, vi in items))
        (data / f"images_{split}.txt").write_text("".join(f"{i}\n" for i, _ in items))
        if split == "trainval":
            continue
        for image_id, vi in items:
            arr = np.empty((h, w, 3), np.uint8)
            arr[:] = fgvc_colour(vi)
            arr[h - 20:] = FGVC_BANNER
            # no chroma subsampling, so JPEG blocks do not bleed the banner into the picture
            Image.fromarray(arr).save(data / "images" / f"{image_id}.jpg", quality=95,
                                      subsampling=0)
    return data


# ----------------------------------------------------------------------------- iNaturalist 2019

# category records as in the 2019 jsons; ids deliberately listed out of order
INAT_CATEGORIES = [
    {"id": 3, "name": "Pinus strobus", "kingdom": "Plantae", "phylum": "Tracheophyta",
     "class": "Pinopsida", "order": "Pinales", "family": "Pinaceae", "genus": "Pinus"},
    {"id": 0, "name": "Pinus nigra", "kingdom": "Plantae", "phylum": "Tracheophyta",
     "class": "Pinopsida", "order": "Pinales", "family": "Pinaceae", "genus": "Pinus"},
    {"id": 2, "name": "Abies alba", "kingdom": "Plantae", "phylum": "Tracheophyta",
     "class": "Pinopsida", "order": "Pinales", "family": "Pinaceae", "genus": "Abies"},
    {"id": 1, "name": "Bufo bufo", "kingdom": "Animalia", "phylum": "Chordata",
     "class": "Amphibia", "order": "Anura", "family": "Bufonidae", "genus": "Bufo"},
]


def inat_colour(category_id: int) -> tuple[int, int, int]:
    return (30 + 50 * category_id, 120, 250 - 50 * category_id)


def write_inat2019(root, categories=INAT_CATEGORIES, per_class=None, n_test=2,
                   separate_categories=False, size=24) -> Path:
    """Write the iNat-2019 jsons and images under ``root``; returns ``root``.

    ``per_class`` images per category for train / val (default 5 / 2). Images of category ``c``
    are filled with :func:`inat_colour` ``(c)``. ``test2019.json`` has ``n_test`` images but no
    annotations, as released, unless ``per_class`` names ``"test"`` (then it is labelled).
    With ``separate_categories`` the taxonomy goes to ``categories.json`` and the split jsons
    keep only ``id`` and ``name``.
    """
    root = Path(root)
    per_class = per_class or {"train": 5, "val": 2}
    next_image = 1000
    cats_full = [dict(c) for c in categories]
    cats_in_split = ([{"id": c["id"], "name": c["name"]} for c in cats_full]
                     if separate_categories else cats_full)
    for split, n in per_class.items():
        images, annotations = [], []
        for k in range(n):
            for cat in cats_full:
                cid = cat["id"]
                super_cat = cat["kingdom"]
                file_name = f"train_val2019/{super_cat}/{cid}/{split}_{k}_{next_image:x}.jpg"
                path = root / file_name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (size, size), inat_colour(cid)).save(path, quality=95)
                images.append({"id": next_image, "file_name": file_name, "width": size,
                               "height": size, "license": 1, "rights_holder": "tests"})
                annotations.append({"id": next_image + 7, "image_id": next_image,
                                    "category_id": cid})
                next_image += 1
        annotations.reverse()  # annotations need not follow the image order
        doc = {"info": {"year": 2019, "description": "fixture"}, "images": images,
               "annotations": annotations, "categories": cats_in_split,
               "licenses": [{"id": 1, "name": "CC BY"}]}
        (root / f"{split}2019.json").write_text(json.dumps(doc))
    if "test" in per_class:  # a labelled test json was asked for
        n_test = None
    test_images = []
    for _ in range(n_test or 0):
        file_name = f"test2019/{next_image:x}.jpg"
        (root / "test2019").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size, size), (9, 9, 9)).save(root / file_name)
        test_images.append({"id": next_image, "file_name": file_name, "width": size,
                            "height": size, "license": 1})
        next_image += 1
    if n_test is not None:
        (root / "test2019.json").write_text(json.dumps(
            {"info": {"year": 2019}, "images": test_images, "categories": [], "licenses": []}))
    if separate_categories:
        (root / "categories.json").write_text(json.dumps(cats_full))
    return root


# ----------------------------------------------------------------------------- class folders


def folder_colour(class_index: int) -> tuple[int, int, int]:
    return (25 * class_index + 10, 90, 180)


def write_image_folder(root, classes, per_class=None, size=16) -> Path:
    """Write ``root/<split>/<class>/img<k>.png|jpg`` (alternating formats); returns ``root``.

    ``per_class`` maps split -> images per class (default train 3, val 1, test 1). Images of
    the ``i``-th class of ``classes`` are filled with :func:`folder_colour` ``(i)``.
    """
    root = Path(root)
    per_class = per_class or {"train": 3, "val": 1, "test": 1}
    for split, n in per_class.items():
        for ci, cls in enumerate(classes):
            folder = root / split / str(cls)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                img = Image.new("RGB", (size, size), folder_colour(ci))
                if k % 2:
                    img.save(folder / f"img{k}.jpg", quality=95)
                else:
                    img.save(folder / f"img{k}.png")
    return root


def write_corrupt_images(folder, size=32) -> tuple[Path, Path]:
    """A zero-byte ``empty.jpg`` and a ``truncated.jpg`` cut to half its bytes, in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return empty, truncated
