"""Images/s of the hafcls training loop against a plain PyTorch loop over the same model and data.

Both loops train the same method's model (``hafcls.get_method(...).create_model``) on the same
synthetic dataset (``hafcls.data.build_datasets("synthetic")``), batch size, DataLoader workers and
torch threads, for ``--epochs`` epochs; a run's figure is the median images/s of its epochs after
the first (which pays for warm-up and compilation), counting each step's data wait as the engine
does. The two loops run ``--repeats`` times in alternating order and the ratio is the median of
the per-pair ratios, with their range. The data loader alone (no model)
is timed beside them, so loading is seen not to be the bottleneck. Variants: ``--channels-last``,
``--amp bf16`` (CPU autocast) and ``--compile`` (``torch.compile`` in both loops: the plain loop's
model, the engine's ``--compile``, which compiles its model + loss step). The engine keeps its
DataLoader workers between epochs, as the plain loop does.

    nice python scripts/bench_train_loop.py                        # resnet18, 32 px, haframe
    nice python scripts/bench_train_loop.py --channels-last --amp bf16 --json out.json

The engine is reached through one small function, :func:`engine_images_per_s`, so that a change of
the engine's API touches one place.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_common import bench_parser, pin_threads, write_json
from torch.utils.data import DataLoader

import hafcls


def engine_images_per_s(args, out_dir: str) -> float:
    """Train with ``hafcls.engine.train.train`` and return the last epoch's train images/s."""
    from hafcls.engine.train import train

    train({"data": "synthetic", "image_size": args.image_size,
           "data_options": {"per_class": {"train": args.per_class, "val": 2, "test": 2}},
           "method": args.method, "model": args.model, "epochs": args.epochs,
           "batch_size": args.batch_size, "workers": args.workers, "amp": args.amp,
           "channels_last": args.channels_last, "compile": args.compile, "lr": 0.01,
           "progress": False,
           "output": out_dir, "seed": 0, "device": "cpu"}, log=lambda msg: None)
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return after_warmup([float(json.loads(line)["train"]["img_per_s"]) for line in lines])


def after_warmup(per_epoch: list[float]) -> float:
    """Median images/s of the epochs after the first (all of them if there is only one)."""
    return statistics.median(per_epoch[1:] or per_epoch)


def data(args):
    from hafcls.data import build_datasets

    bundle = build_datasets(
        "synthetic", image_size=args.image_size, seed=0,
        per_class={"train": args.per_class, "val": 2, "test": 2})
    loader = DataLoader(bundle.train, batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, drop_last=True,
                        collate_fn=getattr(bundle, "collate_fn", None),
                        persistent_workers=args.workers > 0)
    return bundle.hierarchy, loader


def loader_images_per_s(loader, epochs: int) -> float:
    for _ in range(epochs):
        count, start = 0, time.perf_counter()
        for images, _ in loader:
            count += len(images)
    return count / (time.perf_counter() - start)


def plain_images_per_s(args, hierarchy, loader) -> float:
    """The textbook loop: forward, loss, backward, SGD step; the same method and options."""
    method = hafcls.get_method(args.method)
    model = method.create_model(args.model, hierarchy).train()
    loss_fn = method.build_loss(model, hierarchy)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    forward = torch.compile(model) if args.compile else model
    amp = (torch.autocast("cpu", dtype=torch.bfloat16) if args.amp == "bf16"
           else contextlib.nullcontext())
    per_epoch = []
    for _ in range(args.epochs):
        count, seconds, tic = 0, 0.0, time.perf_counter()
        for images, targets in loader:
            if args.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with amp:
                logits, features = forward(images, return_features=True)
                loss = loss_fn(logits.float(), features.float(), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # one host sync per step, as the engine's finite-loss check
            count += len(targets)
            seconds += time.perf_counter() - tic
            tic = time.perf_counter()
        per_epoch.append(count / seconds)
    return after_warmup(per_epoch)


def main(argv=None) -> dict:
    ap = bench_parser(__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--method", default="haframe")
    ap.add_argument("--per-class", type=int, default=16, help="train images per class (36)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader workers (default 0: on 2 cores a worker process competes "
                    "with the model)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--amp", choices=("none", "bf16"), default="none")
    ap.add_argument("--repeats", type=int, default=3, help="plain/engine run pairs")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile both loops (the plain model; the engine's --compile)")
    args = ap.parse_args(argv)
    load_start = pin_threads(args.threads)
    torch.manual_seed(0)
    hierarchy, loader = data(args)
    loader_ips = loader_images_per_s(loader, args.epochs)
    plains, engines = [], []
    for r in range(args.repeats):  # alternating order (PE, EP, ...): load drift hits both alike
        for which in (("plain", "engine") if r % 2 == 0 else ("engine", "plain")):
            if which == "plain":
                plains.append(plain_images_per_s(args, hierarchy, loader))
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    engines.append(engine_images_per_s(args, tmp))
    ratios = sorted(e / p for e, p in zip(engines, plains))
    plain, engine = statistics.median(plains), statistics.median(engines)
    ratio = statistics.median(ratios)
    result = {"model": args.model, "method": args.method, "image_size": args.image_size,
              "batch_size": args.batch_size, "workers": args.workers,
              "threads": torch.get_num_threads(), "channels_last": args.channels_last,
              "amp": args.amp, "compile": args.compile, "loader_img_per_s": loader_ips,
              "plain_img_per_s": plain, "engine_img_per_s": engine,
              "ratio_engine_over_plain": ratio, "ratios": ratios,
              "loadavg_start": load_start, "loadavg_end": os.getloadavg()}
    print(f"{args.model} {args.method}, {args.image_size} px, batch {args.batch_size}, "
          f"{args.workers} workers, {result['threads']} threads, channels_last="
          f"{args.channels_last}, amp={args.amp}, compile={args.compile}; load "
          f"{load_start[0]:.1f} -> {result['loadavg_end'][0]:.1f}")
    print(f"  loader alone {loader_ips:8.0f} img/s   plain loop {plain:7.1f} img/s   "
          f"hafcls engine {engine:7.1f} img/s   engine / plain {ratio:.3f} (median of "
          f"{len(ratios)} alternating pairs, range {ratios[0]:.3f}-{ratios[-1]:.3f})")
    return write_json(result, args.json)


if __name__ == "__main__":
    main()
