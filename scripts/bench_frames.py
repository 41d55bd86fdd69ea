"""Benchmark HAFrame construction: the exact tree method at 1k, 12k and 21k classes.

Every measurement runs in a fresh child process, because the first build in a process pays for
mapping fresh memory (the figure a user sees) and peak memory is only meaningful per process.
For each shipped WordNet hierarchy (``imagenet-1k``, ``imagenet-12k``, ``imagenet-21k``) the child
builds the tree frame twice and reports the cold and warm wall time, CPU seconds and the process's
peak resident memory (``ru_maxrss``, which also counts torch-allocated arrays that tracemalloc
misses) above its footprint before the build. The dense ``eigh`` frame (the paper) is the
reference at 1k (and at any K up to ``--eigh-max-classes``); its ratio to the tree frame is printed.
Each hierarchy is built with the defaults (``with_similarity="auto"``: the K x K target S is kept
only up to 8,192 classes); where the default drops S, the frame is built again with
``with_similarity=True`` (the former default) as the reference, and the default's time and peak
memory are printed as ratios to it, beside the issue's budget for 21k (30 s, 4 GB = 4e9 bytes).

    nice python scripts/bench_frames.py                  # all, a minute or two
    nice python scripts/bench_frames.py --only imagenet-12k --json out.json
    PYTHONPATH=/path/to/old/checkout python scripts/bench_frames.py   # "before" numbers
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

NAMES = ("imagenet-1k", "imagenet-12k", "imagenet-21k")


def child(name: str, method: str, with_similarity: str, gamma: float) -> dict:
    """One cold and one warm build in this process; the numbers as a dict."""
    import gc
    import resource
    import time

    from hafcls.frames import haframe
    from hafcls.hierarchy import load

    def rss_gib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    t0 = time.perf_counter()
    shipped = Path(__file__).resolve().parents[1] / "hierarchies" / f"{name}.json"
    h = load(shipped if shipped.is_file() else name)  # the file: also for an older hafcls
    out = {"name": name, "method": method, "mode": with_similarity, "classes": h.num_classes,
           "nodes": h.num_nodes, "height": h.height, "load_s": time.perf_counter() - t0,
           "rss_before_gib": rss_gib()}
    # "auto": the defaults (an older hafcls without the option still runs)
    kw = {} if with_similarity == "auto" else {"with_similarity": with_similarity == "1"}
    for label in ("cold", "warm"):
        gc.collect()
        t, cpu = time.perf_counter(), time.process_time()
        frame = haframe(h, gamma=gamma, s_min="paper", method=method, **kw)
        out[f"{label}_s"] = time.perf_counter() - t
        out[f"{label}_cpu_s"] = time.process_time() - cpu
        if label == "cold":
            out["peak_rss_gib"] = rss_gib()
        out.update(dim=frame.dim, s_min=frame.s_min, max_error=frame.max_error,
                   with_similarity=frame.similarity is not None)
        del frame
    return out


def run_child(name, method, with_similarity, gamma) -> dict | None:
    cmd = [sys.executable, __file__, "--child", name, method, with_similarity,
           "--gamma", str(gamma)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"{name} {method} failed: {proc.stderr.strip().splitlines()[-1]}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def show(r: dict, mode: str) -> None:
    extra = r["peak_rss_gib"] - r["rss_before_gib"]
    kept = ("S" if r["with_similarity"] else "-") + ("=" if mode == "1" else " ")
    print(f"{r['name']:<13} {r['classes']:>6} {r['method']:<5} {kept} {r['dim']:>6} "
          f"{r['s_min']:>9.5f} {r['max_error']:>8.1e} {r['cold_s']:>7.2f} "
          f"{r['warm_s']:>7.2f} {r['cold_cpu_s']:>7.2f} {r['peak_rss_gib']:>7.2f} {extra:>7.2f}",
          flush=True)


def compare_to_full(default: dict, full: dict) -> None:
    """The default (no S) against the same build keeping S, as ratios."""
    extra = (default["peak_rss_gib"] - default["rss_before_gib"]) / max(
        full["peak_rss_gib"] - full["rss_before_gib"], 1e-9)
    print(f"{'':<13} default / with S: {default['peak_rss_gib'] / full['peak_rss_gib']:.2f}x "
          f"peak RSS ({extra:.2f}x of the build's own), {default['cold_s'] / full['cold_s']:.2f}x "
          f"cold wall, {default['warm_s'] / full['warm_s']:.2f}x warm wall", flush=True)


def budget(r: dict) -> None:
    """The issue's budget for the 21k frame: 30 s and 4 GB (4e9 bytes) peak resident memory."""
    peak_gb = r["peak_rss_gib"] * 2**30 / 1e9
    ok = r["cold_s"] < 30 and peak_gb < 4
    print(f"{'':<13} budget 30 s / 4 GB: cold {r['cold_s']:.1f} s ({r['cold_s'] / 30:.2f}x), "
          f"peak {peak_gb:.2f} GB ({peak_gb / 4:.2f}x): {'met' if ok else 'NOT met'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--only", choices=NAMES, action="append", help="hierarchies (default all)")
    ap.add_argument("--eigh-max-classes", type=int, default=2000,
                    help="also build the dense eigh reference up to this many classes")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, method, with_sim = args.child
        print(json.dumps(child(name, method, with_sim, args.gamma)))
        return
    import hafcls

    print(f"hafcls from {os.path.dirname(hafcls.__file__)}; load average at start "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'hierarchy':<13} {'K':>6} {'meth':<5} S  {'d':>6} {'s_min':>9} {'max err':>8} "
          f"{'cold s':>7} {'warm s':>7} {'cpu s':>7} {'RSS GiB':>7} {'+build':>7}")
    print("(S: the frame keeps the K x K target; '=' marks with_similarity=True forced)")
    results = []
    for name in args.only or NAMES:
        tree = run_child(name, "tree", "auto", args.gamma)
        if tree is None:
            continue
        show(tree, "auto")
        results.append(tree)
        if tree["classes"] <= args.eigh_max_classes:
            dense = run_child(name, "eigh", "auto", args.gamma)
            if dense is not None:
                show(dense, "auto")
                results.append(dense)
                print(f"{'':<13} eigh / tree: {dense['warm_s'] / tree['warm_s']:.0f}x warm wall, "
                      f"{dense['cold_cpu_s'] / tree['cold_cpu_s']:.0f}x cpu", flush=True)
        if not tree["with_similarity"]:
            full = run_child(name, "tree", "1", args.gamma)
            if full:
                show(full, "1")
                results.append(full)
                compare_to_full(tree, full)
        if tree["classes"] > 20000:
            budget(tree)
    load_end = os.getloadavg()
    print(f"load average at the end: {load_end[0]:.2f} (5 min {load_end[1]:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "loadavg_end": load_end}, f, indent=1)


if __name__ == "__main__":
    main()
