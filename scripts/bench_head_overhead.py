"""Per-step cost of the HAFrame head + loss against a plain linear head with cross-entropy.

One step = forward + backward + SGD step on a fixed random batch, same backbone and inputs.
The two models' steps alternate (so drifts in machine load hit both alike); the median step
time of each is printed with their ratio, plus the head + loss alone on fixed backbone
features (the part the two set-ups do not share).

    python scripts/bench_head_overhead.py                       # resnet18, 32 px, batch 64, K=100
    python scripts/bench_head_overhead.py --backbone resnet50 --image-size 224 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hafcls.hierarchy import Hierarchy
from hafcls.losses import get_method
from hafcls.models import create


def balanced_tree(num_classes: int, branching: tuple[int, ...] = (4, 5)) -> Hierarchy:
    """root -> b0 groups -> b1 subgroups -> classes, classes split evenly (K=100: 4 x 5 x 5)."""
    edges, groups = [], ["root"]
    for level, b in enumerate(branching):
        nxt = [f"{g}.{level}{i}" for g in groups for i in range(b)]
        edges += [(g, c) for g, c in zip([g for g in groups for _ in range(b)], nxt)]
        groups = nxt
    edges += [(groups[i % len(groups)], f"class{i:04d}") for i in range(num_classes)]
    return Hierarchy.from_edges(edges)


def step_fn(model, loss_fn, x, y, opt):
    def step():
        opt.zero_grad(set_to_none=True)
        logits, features = model(x, return_features=True)
        loss_fn(logits, features, y).backward()
        opt.step()

    return step


def time_steps(step, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--steps", type=int, default=30, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    tree = balanced_tree(args.classes)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.classes, (args.batch_size,))

    setups = {}
    for name, method in (("haframe", get_method("haframe", "cifar100")), ("linear-ce", None)):
        if method is None:
            model = create(args.backbone, tree, head="linear", shape="plain")
            loss_fn = get_method("ce").build_loss(model, tree)
        else:
            model = method.create_model(args.backbone, tree)
            loss_fn = method.build_loss(model, tree)
        opt = torch.optim.SGD(model.param_groups(0.01, 0.1, 5e-4), lr=0.1, momentum=0.9)
        setups[name] = (model.train(), loss_fn, opt)

    steps = {name: step_fn(m, lf, x, y, o) for name, (m, lf, o) in setups.items()}
    for step in steps.values():
        time_steps(step, args.warmup)
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            times[name] += time_steps(step, 1)

    # the heads and losses alone, on fixed backbone outputs
    head_only = {}
    for name, (model, loss_fn, _) in setups.items():
        with torch.no_grad():
            z = model.head_input(x)
        params = list(model.head.parameters())

        def head_step(model=model, loss_fn=loss_fn, z=z, params=params):
            logits, features = model.head(z)
            grads = torch.autograd.grad(loss_fn(logits, features, y), params)
            with torch.no_grad():
                for p_, g in zip(params, grads):
                    p_.sub_(1e-3 * g)

        time_steps(head_step, args.warmup)
        head_only[name] = statistics.median(time_steps(head_step, args.steps))

    med = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "classes": args.classes,
        "threads": torch.get_num_threads(),
        "step_seconds": med,
        "ratio_haframe_over_linear": med["haframe"] / med["linear-ce"],
        "head_and_loss_seconds": head_only,
        "haframe_head_params": sum(p.numel() for p in setups["haframe"][0].head.parameters()),
        "linear_head_params": sum(p.numel() for p in setups["linear-ce"][0].head.parameters()),
    }
    print(f"{args.backbone}, {args.image_size} px, batch {args.batch_size}, K={args.classes}, "
          f"{result['threads']} threads, median of {args.steps} steps")
    for name in steps:
        print(f"  {name:10s} step {med[name] * 1e3:8.1f} ms   head+loss alone "
              f"{head_only[name] * 1e3:7.2f} ms")
    print(f"  ratio haframe / linear-ce: {result['ratio_haframe_over_linear']:.3f}")
    if args.json:
        from hafcls.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
