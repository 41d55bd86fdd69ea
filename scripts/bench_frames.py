"""Benchmark HAFrame construction: dense ``eigh`` (the paper) versus the exact tree method.

Builds the frame for the shipped ``imagenet-1k`` and ``imagenet-12k`` hierarchies with both methods
in one process and prints build times and their ratio (the tree frame is built twice: the first
build in a process also pays for mapping fresh memory pages, which on a VM with transparent huge
pages can dominate; the ratio uses the second), then the tree frame for the 21,841-class
WordNet tree of ImageNet-21k (timm's class list, WordNet from nltk or the system) with its time and
peak traced memory, optionally a low-dimensional Lanczos frame there too.

    python scripts/bench_frames.py                       # everything (eigh at 11,821 takes minutes)
    python scripts/bench_frames.py --eigh-max-classes 2000   # skip eigh at 12k, extrapolate
    python scripts/bench_frames.py --skip-21k --lowdim 0
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
import tracemalloc
from importlib import resources

import numpy as np

from hafcls.frames import haframe
from hafcls.hierarchy import load, wordnet


def _build(h, method, args, **kw):
    """Build a frame; returns it with wall-clock seconds (CPU seconds, all threads, in info)."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    frame = haframe(h, gamma=args.gamma, s_min=args.s_min, method=method, seed=0, **kw)
    frame.info["cpu_seconds"] = time.process_time() - cpu
    return frame, time.perf_counter() - start


def _row(name, k, method, frame, seconds):
    print(f"{name:<13} {k:>6} {method:<6} {frame.dim:>6} {frame.s_min:>10.6f} "
          f"{frame.max_error:>10.2e} {seconds:>10.2f} {frame.info['cpu_seconds']:>10.2f}",
          flush=True)


def bench_shipped(args) -> None:
    print(f"{'hierarchy':<13} {'K':>6} {'method':<6} {'d':>6} {'s_min':>10} {'max err':>10} "
          f"{'seconds':>10} {'cpu s':>10}")
    print(f"(load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "timings are wall clock, cpu s sums all threads)")
    eigh_1k = None
    for name in ("imagenet-1k", "imagenet-12k"):
        h = load(name)
        k = h.num_classes
        tree, t_cold = _build(h, "tree", args)
        _row(name, k, "tree", tree, t_cold)
        del tree
        tree, t_tree = _build(h, "tree", args)  # again: memory pages already mapped
        _row(name, k, "tree", tree, t_tree)
        if k > args.eigh_max_classes:
            if eigh_1k is not None:
                k1, t1 = eigh_1k
                est = t1 * (k / k1) ** 3
                print(f"{name:<13} {k:>6} eigh   skipped (> --eigh-max-classes); O(K^3) "
                      f"extrapolation from {k1} classes: ~{est:.0f} s, ratio ~{est / t_tree:.0f}x")
            continue
        dense, t_eigh = _build(h, "eigh", args)
        _row(name, k, "eigh", dense, t_eigh)
        if k <= 4000:
            a, b = tree.cosines(), dense.cosines()
            agree = float((a - b).abs().max())
            print(f"{'':<13} {'':>6} float32 frames' cosines agree to {agree:.1e}")
        assert tree.s_min == dense.s_min
        cpu = dense.info["cpu_seconds"] / tree.info["cpu_seconds"]
        print(f"{'':<13} {'':>6} eigh / tree ratio: {t_eigh / t_tree:.0f}x wall, {cpu:.0f}x cpu",
              flush=True)
        eigh_1k = (k, t_eigh) if eigh_1k is None else eigh_1k
        del dense, tree
        gc.collect()


def bench_21k(args) -> None:
    wnids = (resources.files("timm.data") / "_info" / "imagenet22k_synsets.txt").read_text().split()
    start = time.perf_counter()
    h = wordnet(wnids)
    print(f"\nWordNet tree of {len(wnids)} ImageNet-21k classes built in "
          f"{time.perf_counter() - start:.1f} s: {h}")
    frame, seconds = _build(h, "tree", args)
    print(f"tree frame (first build): K={frame.num_classes} d={frame.dim} s_min={frame.s_min:.6f} "
          f"max error={frame.max_error:.2e} time={seconds:.2f} s "
          f"(cpu {frame.info['cpu_seconds']:.2f} s) "
          f"(weight {frame.weight.numel() * 4 / 2**30:.2f} GiB, "
          f"similarity {frame.similarity.numel() * 4 / 2**30:.2f} GiB, float32)", flush=True)
    del frame
    gc.collect()
    tracemalloc.start()
    frame, traced_seconds = _build(h, "tree", args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  second build (under tracemalloc): {traced_seconds:.2f} s, "
          f"peak traced memory {peak / 2**30:.2f} GiB")
    del frame
    gc.collect()
    if args.lowdim:
        low, seconds = _build(h, "tree", args, dim=args.lowdim)
        print(f"low-dim tree frame ({low.info['solver']}): d={low.dim} time={seconds:.2f} s "
              f"max |cos - S|={low.max_error:.3f} (mean {low.info['mean_error']:.3f}) "
              f"lambda_{low.dim + 1}="
              f"{low.info['lambda_next']:.3f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"process peak RSS (whole run): {rss:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--s-min", default="paper")
    parser.add_argument("--eigh-max-classes", type=int, default=20000,
                        help="skip the dense method above this many classes (and extrapolate)")
    parser.add_argument("--skip-21k", action="store_true", help="skip the ImageNet-21k tree")
    parser.add_argument("--lowdim", type=int, default=128,
                        help="also build a Lanczos frame of this dim at 21k (0: skip)")
    args = parser.parse_args()
    if args.s_min not in ("paper", "exact"):
        args.s_min = float(args.s_min)
    np.set_printoptions(precision=4)
    bench_shipped(args)
    if not args.skip_21k:
        bench_21k(args)


if __name__ == "__main__":
    main()
