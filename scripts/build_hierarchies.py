"""Build the shipped hierarchies (hierarchies/*.json) from WordNet and the synset lists of timm.

    python scripts/build_hierarchies.py            # imagenet-1k and imagenet-12k
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

from hafcls.hierarchy import wordnet

TIMM_LISTS = {
    "imagenet-1k": "imagenet_synsets.txt",
    "imagenet-12k": "imagenet12k_synsets.txt",
}


def timm_synsets(filename: str) -> list[str]:
    text = (resources.files("timm.data") / "_info" / filename).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "hierarchies")
    ap.add_argument("names", nargs="*", default=list(TIMM_LISTS))
    args = ap.parse_args()
    for name in args.names:
        t0 = time.perf_counter()
        h = wordnet(timm_synsets(TIMM_LISTS[name]), name=name)
        h.meta["class_list"] = f"timm {TIMM_LISTS[name]}"
        h.to_json(args.out / f"{name}.json")
        print(f"{name}: {h!r} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
