"""Build the shipped hierarchies (hierarchies/*.json) from WordNet and the synset lists of timm.

    python scripts/build_hierarchies.py                  # imagenet-1k, -12k and -21k
    python scripts/build_hierarchies.py imagenet-21k     # one of them

The class lists are read from the installed timm package (``timm/data/_info``), nothing is
downloaded. ImageNet-21k is the fall 2011 release's 21,841 synsets (timm's
``imagenet22k_synsets.txt``; ``imagenet21k_goog_synsets.txt`` is Google's 21,843-synset variant).
Every tree uses the same DAG-to-tree rule (``shortest``) and keeps unary chains, so classes may be
internal nodes (docs/hierarchies.md).
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
    "imagenet-21k": "imagenet22k_synsets.txt",
}
EXPECTED_CLASSES = {"imagenet-1k": 1000, "imagenet-12k": 11821, "imagenet-21k": 21841}


def timm_synsets(filename: str) -> list[str]:
    text = (resources.files("timm.data") / "_info" / filename).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "hierarchies")
    ap.add_argument("names", nargs="*", default=list(TIMM_LISTS))
    args = ap.parse_args()
    unknown = sorted(set(args.names) - set(TIMM_LISTS))
    if unknown:
        ap.error(f"unknown hierarchy {', '.join(unknown)}; choose from {', '.join(TIMM_LISTS)}")
    for name in args.names:
        t0 = time.perf_counter()
        wnids = timm_synsets(TIMM_LISTS[name])
        if len(wnids) != EXPECTED_CLASSES[name] or len(set(wnids)) != len(wnids):
            raise SystemExit(f"{TIMM_LISTS[name]} holds {len(wnids)} ids ({len(set(wnids))} "
                             f"distinct), expected {EXPECTED_CLASSES[name]}: check timm's version")
        h = wordnet(wnids, name=name)
        h.meta["class_list"] = f"timm {TIMM_LISTS[name]}"
        h.to_json(args.out / f"{name}.json")
        print(f"{name}: {h!r} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
