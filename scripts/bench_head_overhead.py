"""Per-step cost of the HAFrame head + loss against a plain linear head with cross-entropy.

One step = forward + backward + SGD step on a fixed random batch, same backbone and inputs.
Stable under machine load: the two models' steps run in adjacent pairs (order alternating
AB, BA, ...), so a drift in load hits both alike, and the figure is the median over pairs of the
per-pair ratio, with its interquartile range (IQR); median step times and their IQR are printed
too, and the head + loss alone on fixed backbone features (the part the two do not share).

    nice python scripts/bench_head_overhead.py                 # resnet18, 32 px, batch 32, K=100
    nice python scripts/bench_head_overhead.py --backbone resnet50 --classes 1010 \\
        --image-size 96 --batch-size 8 --steps 20 --json out.json

Only the public entry points ``hafcls.create_model`` and ``hafcls.get_method`` build the models.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from bench_common import bench_parser, pin_threads, write_json

import hafcls


def balanced_tree(num_classes: int, branching: tuple[int, ...] = (4, 5)) -> hafcls.Hierarchy:
    """root -> b0 groups -> b1 subgroups -> classes, classes split evenly (K=100: 4 x 5 x 5)."""
    edges, groups = [], ["root"]
    for level, b in enumerate(branching):
        nxt = [f"{g}.{level}{i}" for g in groups for i in range(b)]
        edges += [(g, c) for g, c in zip([g for g in groups for _ in range(b)], nxt)]
        groups = nxt
    edges += [(groups[i % len(groups)], f"class{i:04d}") for i in range(num_classes)]
    return hafcls.Hierarchy.from_edges(edges)


def build(name: str, backbone: str, tree):
    """(model, loss) for ``"haframe"`` (the method's defaults) or ``"linear-ce"``."""
    if name == "haframe":
        method = hafcls.get_method("haframe", "cifar100")
        model = method.create_model(backbone, tree)
    else:
        method = hafcls.get_method("ce")
        model = hafcls.create_model(backbone, tree, head="linear", shape="plain")
    return model.train(), method.build_loss(model, tree)


def step_fn(model, loss_fn, x, y, opt):
    def step():
        opt.zero_grad(set_to_none=True)
        logits, features = model(x, return_features=True)
        loss_fn(logits, features, y).backward()
        opt.step()

    return step


def timed(step) -> float:
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


def head_alone(model, loss_fn, x, y, steps: int) -> float | None:
    """Median seconds of head forward + loss + backward on fixed backbone features, or None when
    the model does not expose ``head_input``/``head`` (internals, used only for this figure)."""
    if not (hasattr(model, "head_input") and hasattr(model, "head")):
        return None
    with torch.no_grad():
        z = model.head_input(x)
    params = [p for p in model.head.parameters() if p.requires_grad]

    def step():
        logits, features = model.head(z)
        grads = torch.autograd.grad(loss_fn(logits, features, y), params)
        with torch.no_grad():
            for p_, g in zip(params, grads):
                p_.sub_(1e-3 * g)

    for _ in range(2):
        step()
    return statistics.median(timed(step) for _ in range(steps))


def main(argv=None) -> dict:
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--steps", type=int, default=30, help="timed step pairs")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    load_start = pin_threads(args.threads)

    torch.manual_seed(0)
    tree = balanced_tree(args.classes)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.classes, (args.batch_size,))
    names = ("haframe", "linear-ce")
    setups, steps = {}, {}
    for name in names:
        model, loss_fn = build(name, args.backbone, tree)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        setups[name] = (model, loss_fn)
        steps[name] = step_fn(model, loss_fn, x, y, opt)
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in names}
    ratios = []
    for i in range(args.steps):
        order = names if i % 2 == 0 else names[::-1]
        pair = {name: timed(steps[name]) for name in order}
        for name in names:
            times[name].append(pair[name])
        ratios.append(pair["haframe"] / pair["linear-ce"])

    q = {name: quartiles(t) for name, t in times.items()}
    rq = quartiles(ratios)
    head = {name: head_alone(*setups[name], x, y, args.steps) for name in names}
    result = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "classes": args.classes,
        "threads": torch.get_num_threads(),
        "pairs": args.steps,
        "step_seconds": {name: q[name][1] for name in names},
        "step_seconds_iqr": {name: [q[name][0], q[name][2]] for name in names},
        "ratio_haframe_over_linear": rq[1],
        "ratio_iqr": [rq[0], rq[2]],
        "ratio_of_medians": q["haframe"][1] / q["linear-ce"][1],
        "head_and_loss_seconds": head,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
    }
    print(f"{args.backbone}, {args.image_size} px, batch {args.batch_size}, K={args.classes}, "
          f"{result['threads']} threads, {args.steps} interleaved pairs, load average "
          f"{load_start[0]:.1f} -> {result['loadavg_end'][0]:.1f}")
    for name in names:
        h = head[name]
        head_txt = f"   head+loss alone {h * 1e3:7.2f} ms" if h is not None else ""
        print(f"  {name:10s} step median {q[name][1] * 1e3:8.1f} ms "
              f"(IQR {q[name][0] * 1e3:.1f}-{q[name][2] * 1e3:.1f}){head_txt}")
    print(f"  ratio haframe / linear-ce: median over pairs {rq[1]:.3f} "
          f"(IQR {rq[0]:.3f}-{rq[2]:.3f}); ratio of medians {result['ratio_of_medians']:.3f}")
    if head["haframe"] is not None:
        extra = (head["haframe"] - head["linear-ce"]) / q["linear-ce"][1]
        print(f"  head+loss difference as a share of the linear step: {100 * extra:.1f}%")
    return write_json(result, args.json)


if __name__ == "__main__":
    main()
