"""Time Hierarchy.distance_matrix() on the shipped WordNet trees against a per-pair reference.

The reference walks both root paths in Python for each class pair (the textbook LCA). It runs on
a random sample of pairs in the same process, is scaled to all K(K-1)/2 pairs, and must agree
with the vectorised matrix on every sampled pair.

    python scripts/bench_hierarchy.py [imagenet-1k imagenet-12k]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from hafcls.hierarchy import load

SAMPLE_PAIRS = 20_000


def reference_distance(paths: list[list[str]], height: int, i: int, j: int) -> int:
    if i == j:
        return 0
    a, b = paths[i], paths[j]
    depth = 0
    while depth + 1 < min(len(a), len(b)) and a[depth + 1] == b[depth + 1]:
        depth += 1
    return height - depth


def main(names: list[str]) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        h = load(name)
        k = h.num_classes
        h.distance_matrix()  # warm-up: first-touch page faults of the K x K buffers
        t0 = time.perf_counter()
        d = h.distance_matrix()
        t_ours = time.perf_counter() - t0
        paths = [h.path(c) for c in h.classes]
        pairs = rng.integers(0, k, size=(SAMPLE_PAIRS, 2))
        t0 = time.perf_counter()
        ref = [reference_distance(paths, h.height, i, j) for i, j in pairs]
        t_sample = time.perf_counter() - t0
        assert np.array_equal(d[pairs[:, 0], pairs[:, 1]], ref), "distances differ"
        t_ref = t_sample * (k * (k - 1) / 2) / SAMPLE_PAIRS
        print(f"{name}: K={k} H={h.height}  distance_matrix {t_ours:.2f}s  per-pair Python "
              f"reference ~{t_ref:.0f}s (scaled from {SAMPLE_PAIRS} pairs)  ratio "
              f"{t_ref / t_ours:.0f}x  (sampled pairs identical: yes)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["imagenet-1k", "imagenet-12k"])
