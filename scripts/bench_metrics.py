"""Benchmark hafcls.metrics / hafcls.inference against a per-sample pure-Python reference.

N = 50,000 samples, K = 1,010 classes, all leaves at depth 7 of a random tree built with
Hierarchy.from_paths. Times the vectorised evaluate() (top-1/5, mistake severity, HierDist@1/5/20,
per-depth accuracy) and CRM (tree path and dense matmul), then runs a pure-Python reference
(sorted() per sample, distances from root paths, risk as a double loop) on a subset of the same
samples, scales its time to N, and checks that both give the same numbers on that subset.

    python scripts/bench_metrics.py [--n 50000] [--threads 2] [--ref-n 2000] [--ref-crm-n 10]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from hafcls.hierarchy import Hierarchy
from hafcls.inference import conditional_risk, crm
from hafcls.metrics import evaluate

LEVEL_SIZES = (3, 8, 20, 60, 180, 500, 1010)  # nodes per depth 1..7; the last are the classes


def random_tree(sizes=LEVEL_SIZES, seed: int = 0) -> Hierarchy:
    """A random tree with ``sizes[t-1]`` nodes at depth t; every node has at least one child."""
    rng = np.random.default_rng(seed)
    parent_of, previous = [], 1
    for size in sizes:
        parents = np.concatenate([np.arange(previous), rng.integers(0, previous, size - previous)])
        rng.shuffle(parents)
        parent_of.append(parents)
        previous = size
    paths = {}
    for leaf in range(sizes[-1]):
        path, i = [], leaf
        for t in range(len(sizes) - 1, -1, -1):
            path.append(f"d{t + 1}_{i}")
            i = parent_of[t][i]
        paths[path[0]] = ["root", *path[::-1]]
    return Hierarchy.from_paths(paths)


def timed(fn, repeats: int):
    """(result, best wall seconds, median wall seconds, best CPU seconds) over ``repeats`` calls.

    CPU seconds (all threads of this process) tell what the code costs when the machine is
    shared and wall time is inflated by other processes.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        cpu, start = time.process_time(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return result, min(walls), statistics.median(walls), min(cpus)


# ---------------------------------------------------------------------- pure-Python reference
def reference_distance(paths: list[list[str]], height: int):
    """d(a, b) = H - depth(LCA) from root paths, with d(a, a) = 0 (no numpy)."""

    def distance(a: int, b: int) -> int:
        if a == b:
            return 0
        pa, pb = paths[a], paths[b]
        shared = 0
        while shared < min(len(pa), len(pb)) and pa[shared] == pb[shared]:
            shared += 1
        return height - (shared - 1)

    return distance


def reference_metrics(scores: list[list[float]], targets: list[int], distance, height: int,
                      ancestors_at, ks=(1, 5, 20)) -> dict:
    num_classes = len(scores[0])
    sums = dict.fromkeys(ks, 0)
    hits1 = hits5 = mistakes = severity = 0
    depth_hits = [0] * height
    for row, y in zip(scores, targets):
        ranking = sorted(range(num_classes), key=lambda j: (-row[j], j))
        top = ranking[0]
        hits1 += top == y
        hits5 += y in ranking[:5]
        if top != y:
            mistakes += 1
            severity += distance(y, top)
        for k in ks:
            sums[k] += sum(distance(y, c) for c in ranking[:k])
        for t in range(1, height + 1):
            depth_hits[t - 1] += ancestors_at(top, t) == ancestors_at(y, t)
    n = len(targets)
    out = {"top1": hits1 / n, "top5": hits5 / n,
           "mistake_severity": severity / mistakes if mistakes else float("nan")}
    out.update({f"hierdist@{k}": sums[k] / (k * n) for k in ks})
    out.update({f"acc@depth{t}": depth_hits[t - 1] / n for t in range(1, height + 1)})
    out["n"] = n
    return out


def reference_risk(probs: list[list[float]], distance) -> list[list[float]]:
    num_classes = len(probs[0])
    return [[sum(p[i] * distance(i, j) for i in range(num_classes)) for j in range(num_classes)]
            for p in probs]


def same_numbers(a: dict, b: dict, tol: float = 1e-12) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or abs(a[k] - b[k]) <= tol * max(1, abs(b[k]))
        for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ref-n", type=int, default=2_000, help="samples for the metrics ref")
    parser.add_argument("--ref-crm-n", type=int, default=10, help="samples for the CRM ref")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-n", type=int, default=20_000,
                        help="samples for the issue-16 ratios of bench_eval_speed.py (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    h = random_tree(seed=args.seed)
    k = h.num_classes
    gen = torch.Generator().manual_seed(args.seed)
    targets = torch.randint(0, k, (args.n,), generator=gen)
    scores = torch.randn(args.n, k, generator=gen)
    scores[torch.arange(args.n), targets] += 3.0  # a classifier that is right some of the time
    print(f"hierarchy: {h}   N = {args.n:,}   torch threads = {torch.get_num_threads()}")

    rows = {}
    _, *rows["distance matrix (once per hierarchy, cached)"] = timed(h.distance_matrix, 1)
    evaluate(scores[:10], targets[:10], h)  # warm the per-hierarchy distance cache
    metrics, *rows["evaluate: top1/5, severity, HierDist@1/5/20, depth"] = timed(
        lambda: evaluate(scores, targets, h), args.repeats)
    probs, *rows["softmax"] = timed(lambda: scores.softmax(dim=1), args.repeats)
    crm_scores, *rows["CRM, tree path (Hierarchy input)"] = timed(lambda: crm(probs, h),
                                                                  args.repeats)
    crm_metrics, *rows["evaluate of the CRM scores"] = timed(
        lambda: evaluate(crm_scores, targets, h), args.repeats)
    dist = h.distance_matrix()
    _, *rows["CRM, dense matmul (matrix input, for comparison)"] = timed(
        lambda: crm(probs, dist), max(1, args.repeats // 2))

    print("\nvectorised, seconds: wall best / wall median / CPU best (all threads)")
    for name, (best, median, cpu) in rows.items():
        print(f"  {name:50s} {best:7.3f} / {median:7.3f} / {cpu:7.3f}")
    parts = ("evaluate: top1/5, severity, HierDist@1/5/20, depth",
             "CRM, tree path (Hierarchy input)", "evaluate of the CRM scores")
    print(f"  {'evaluate + CRM + evaluate(CRM)':50s} {sum(rows[p][0] for p in parts):7.3f} / "
          f"{sum(rows[p][1] for p in parts):7.3f} / {sum(rows[p][2] for p in parts):7.3f}")
    t_eval, t_crm = rows[parts[0]], rows[parts[1]]
    print("\nmetrics (fractions):  plain -> CRM")
    for key in metrics:
        fmt = "10d" if key == "n" else "10.4f"
        print(f"  {key:18s} {metrics[key]:{fmt}} {crm_metrics[key]:{fmt}}")

    # ---------------------------------------------------------------- reference on subsets
    paths = [[str(n) for n in h.path(c)] for c in h.classes]
    distance = reference_distance(paths, h.height)

    def ancestors_at(c: int, t: int) -> str:
        return paths[c][t] if t < len(paths[c]) else paths[c][-1]

    m = min(args.ref_n, args.n)
    sub_scores, sub_targets = scores[:m], targets[:m]
    ref, t_ref, _, c_ref = timed(lambda: reference_metrics(
        sub_scores.tolist(), sub_targets.tolist(), distance, h.height, ancestors_at), 1)
    vec_sub = evaluate(sub_scores, sub_targets, h)
    ok_metrics = same_numbers(vec_sub, ref)
    print(f"\npure-Python reference, metrics, {m:,} samples: {t_ref:.2f} s wall, {c_ref:.2f} s "
          f"CPU; scaled linearly to N = {args.n:,}: {t_ref * args.n / m:.1f} s wall, "
          f"{c_ref * args.n / m:.1f} s CPU")
    print(f"  evaluate is {t_ref * args.n / m / t_eval[0]:,.0f}x faster in wall time, "
          f"{c_ref * args.n / m / t_eval[2]:,.0f}x in CPU time; "
          f"same numbers on the {m:,}-sample subset: {ok_metrics}")

    c = min(args.ref_crm_n, args.n)
    sub_probs = probs[:c].double()
    ref_risk, t_ref_crm, _, c_ref_crm = timed(
        lambda: reference_risk(sub_probs.tolist(), distance), 1)
    ref_risk = torch.tensor(ref_risk, dtype=torch.float64)
    vec_risk = conditional_risk(sub_probs, h)
    err = float((vec_risk - ref_risk).abs().max())
    rank_ok = bool(torch.equal(torch.argsort(vec_risk, dim=1, stable=True)[:, :20],
                               torch.argsort(ref_risk, dim=1, stable=True)[:, :20]))
    err32 = float((-crm_scores[:c].double() - ref_risk).abs().max())
    print(f"pure-Python reference, CRM, {c} samples: {t_ref_crm:.2f} s wall, {c_ref_crm:.2f} s "
          f"CPU; scaled linearly to N = {args.n:,}: {t_ref_crm * args.n / c / 60:.1f} min wall, "
          f"{c_ref_crm * args.n / c / 60:.1f} min CPU")
    print(f"  CRM is {t_ref_crm * args.n / c / t_crm[0]:,.0f}x faster in wall time, "
          f"{c_ref_crm * args.n / c / t_crm[2]:,.0f}x in CPU time; max |risk difference| "
          f"float64 {err:.1e}, float32 {err32:.1e}; same 20 lowest risks: {rank_ok}")
    if not (ok_metrics and rank_ok and err < 1e-9 and err32 < 1e-4):
        raise SystemExit("MISMATCH between the vectorised code and the reference")
    if args.speed_n:
        from bench_eval_speed import run_speed  # sibling script: scripts/ is on sys.path

        run_speed(h, args.speed_n, repeats=3, seed=args.seed)


if __name__ == "__main__":
    main()
