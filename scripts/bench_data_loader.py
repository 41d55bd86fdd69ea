"""Fashion-MNIST loader throughput (images/s, no model) against the folder-of-PNGs path.

Both sides load and augment training batches of the same size in this process, with the same
number of torch threads and DataLoader workers:

* in-memory: ``fashion_mnist_splits()`` (uint8 tensor in memory, :class:`TensorAugment` on whole
  batches through ``__getitems__``): one full 55,000-image training epoch, shuffled; and the same
  epoch fed ``(index, seed)`` items by the engine's ``EpochShardSampler`` (exact-resume seeding);
* the engine's path: ``SeededDataset`` (whose ``__getitems__`` hands whole batches of
  ``(index, seed)`` items to the dataset) + ``EpochShardSampler``, a full epoch;
* per item: the dataset's own single-image path, and ``SeededDataset`` forced item by item, on
  the first ``--per-item`` images of the epoch;
* PNG folders: ``--png`` training images written as PNG class folders to a temporary directory,
  read by ``HierarchyImageFolder`` with the registry's default small-image transform (resize,
  random crop with padding, flip, normalise).

    python scripts/bench_data_loader.py [--batch-size 256] [--png 5000] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hafcls.data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist_splits
from hafcls.data.folder import HierarchyImageFolder
from hafcls.data.images import collate_skip_corrupt
from hafcls.data.transforms import build_transforms
from hafcls.engine.distributed import EpochShardSampler, SeededDataset
from hafcls.hierarchy import Hierarchy


class _PerItem(torch.utils.data.Dataset):
    """The dataset without ``__getitems__``: the DataLoader fetches item by item."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        return self.dataset[item]


def images_per_second(loader, limit: int | None = None) -> tuple[float, int]:
    n, t0 = 0, time.perf_counter()
    for batch in loader:
        n += len(batch[1])
        if limit is not None and n >= limit:
            break
    return n / (time.perf_counter() - t0), n


def folder_safe(h: Hierarchy) -> Hierarchy:
    """The same tree with class ids usable as folder names ('T-shirt/top' -> 'T-shirt_top')."""
    fix = {c: c.replace("/", "_") for c in h.classes}
    edges = [(fix.get(p, p), fix.get(c, c)) for p, c in h.graph.edges]
    return Hierarchy.from_edges(edges, [fix[c] for c in h.classes])


def write_pngs(dataset, h: Hierarchy, root: Path, n: int) -> None:
    order = np.random.default_rng(0).permutation(len(dataset))[:n]
    for k, i in enumerate(order.tolist()):
        folder = root / "train" / h.classes[int(dataset.targets[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(dataset.images[i, 0].numpy()).save(folder / f"{k:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--png", type=int, default=5000, help="PNG images to write and read")
    ap.add_argument("--per-item", type=int, default=10000,
                    help="images timed on the per-item SeededDataset path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    common = dict(batch_size=args.batch_size, num_workers=args.workers,
                  collate_fn=collate_skip_corrupt)

    t0 = time.perf_counter()
    h, train, _, _ = fashion_mnist_splits(args.data_dir)
    print(f"decoded {len(train):,} training images (+ val/test) in "
          f"{time.perf_counter() - t0:.2f} s; transform {train.transform!r}")
    batched, n = images_per_second(DataLoader(train, shuffle=True, **common))
    print(f"in-memory, batched, shuffled           : {batched:9,.0f} images/s ({n:,} images)")
    sampler = EpochShardSampler(len(train), seed=0)
    seeded, n = images_per_second(DataLoader(train, sampler=sampler, **common))
    print(f"in-memory, batched, (index, seed) items: {seeded:9,.0f} images/s ({n:,} images)")
    plain = _PerItem(train)
    raw_item, n = images_per_second(DataLoader(plain, sampler=sampler, **common), args.per_item)
    print(f"in-memory, per item, (index, seed) items: {raw_item:8,.0f} images/s ({n:,} images)")
    engine, n = images_per_second(DataLoader(SeededDataset(train), sampler=sampler, **common))
    print(f"engine: SeededDataset, batched         : {engine:9,.0f} images/s ({n:,} images)")
    per_item, n = images_per_second(
        DataLoader(_PerItem(SeededDataset(train)), sampler=sampler, **common), args.per_item)
    print(f"in-memory, per item via SeededDataset  : {per_item:9,.0f} images/s ({n:,} images)")

    hs = folder_safe(h)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_pngs(train, hs, Path(tmp), args.png)
        print(f"wrote {args.png:,} PNGs in {time.perf_counter() - t0:.1f} s")
        tf = build_transforms(28, True, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
        folder = HierarchyImageFolder(tmp, "train", hs, tf)
        png, n = images_per_second(DataLoader(folder, shuffle=True, **common))
    print(f"PNG folders ({tf.transforms[1]!r} ...)")
    print(f"PNG folders, per item                  : {png:9,.0f} images/s ({n:,} images)")
    print(f"ratio in-memory batched / PNG folders  : {batched / png:9.1f}x")
    print(f"ratio engine (SeededDataset) / PNG     : {engine / png:9.1f}x")
    print(f"ratio per item SeededDataset / PNG     : {per_item / png:9.1f}x")


if __name__ == "__main__":
    main()
