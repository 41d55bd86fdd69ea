"""Set-up and output shared by the timing scripts (imported from scripts/ as a sibling module)."""

from __future__ import annotations

import argparse
import json
import os

import torch


def bench_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every timing script shares: input size, batch, threads, json."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared machine several threads spin "
                   "at barriers and a step's time swings 3x; 0 keeps torch's default)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    return p


def pin_threads(threads: int) -> tuple[float, float, float]:
    """Set torch's CPU threads (0 keeps torch's default) and return the load average now.

    One thread is the scripts' default: on a shared machine extra threads spin at barriers and a
    step's time swings; the load average is reported so a noisy run is recognisable.
    """
    if threads:
        torch.set_num_threads(threads)
    return os.getloadavg()


def write_json(result: dict, path: str | None) -> dict:
    """Write ``result`` to ``path`` (when given) and return it, so ``main`` can end with it."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    return result
