"""Time Hierarchy.distance_matrix() on the shipped WordNet trees against a reference.

The reference counts, depth by depth, where two classes' ancestors agree (one K x K comparison
per depth). Both run in this process on the same tree and must give the same matrix.

    python scripts/bench_hierarchy.py [imagenet-1k imagenet-12k]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from hafcls.hierarchy import load


def reference_distances(h) -> np.ndarray:
    anc = h.ancestor_matrix
    k = h.num_classes
    lca = np.zeros((k, k), dtype=np.int16)
    block = max(1, (1 << 25) // k)
    for start in range(0, k, block):
        rows = anc[start : start + block]
        for t in range(1, anc.shape[1]):
            lca[start : start + block] += rows[:, t, None] == anc[None, :, t]
    d = h.height - lca
    np.fill_diagonal(d, 0)
    return d


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main(names: list[str]) -> None:
    for name in names:
        h = load(name)
        ours, t_ours = timed(h.distance_matrix)
        ref, t_ref = timed(reference_distances, h)
        assert np.array_equal(ours, ref), "distance matrices differ"
        print(f"{name}: K={h.num_classes} H={h.height}  distance_matrix {t_ours:.2f}s  "
              f"reference {t_ref:.2f}s  ratio {t_ref / t_ours:.1f}x  (identical: yes)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["imagenet-1k", "imagenet-12k"])
