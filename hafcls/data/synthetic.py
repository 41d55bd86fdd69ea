"""A built-in synthetic image dataset whose visual similarity follows a label tree.

Every non-root node ``v`` of the tree owns a random smooth pattern ``P_v`` (a colour offset plus a
few low-frequency oriented colour gratings, periodic on the image, unit RMS). The clean image of
class ``c`` is the weighted sum of the patterns on its root path,

    f_c = sum_{t=1..depth(c)} w_t P_{anc_t(c)},     w_t = depth_decay ** (t - 1),

so two classes share every term above their lowest common ancestor: siblings differ only in the
smallest (deepest) term, classes in different top-level branches differ in all of them. A model's
confusions therefore follow the tree and mistake severity is meaningful.

Each sample adds nuisance on top: per-sample jitter of every path weight, a random circular shift,
contrast and per-channel brightness jitter, a random distractor grating and pixel noise. Sample
``i`` of a split is generated from its own random stream keyed by ``(seed, split, i)``, so it is the
same whenever and wherever it is regenerated (any DataLoader worker, any process), without storing
anything. Sample ``i`` has class ``i % K`` (balanced, interleaved).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from hafcls.data.base import SPLITS, check_split, resolve_hierarchy
from hafcls.data.registry import DatasetRequest, register_dataset
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.validation import Option

#: Default images per class for each split.
SYNTHETIC_SIZES = {"train": 200, "val": 40, "test": 40}
DEFAULT_BRANCHING = (4, 3, 3)
#: Per-channel mean / std of the generated images in [0, 1] (measured on the default tree).
SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.21, 0.21, 0.21)

_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
_PATTERN_DOMAIN = 0x5EED  # separates the pattern streams from the sample streams


def synthetic_hierarchy(branching: Sequence = DEFAULT_BRANCHING, seed: int = 0) -> Hierarchy:
    """The synthetic label tree: ``branching[t]`` children for every node at depth ``t``.

    An entry may be an int or a ``(low, high)`` range (inclusive); ranges are drawn per node from
    ``seed``, which gives an unbalanced tree. Node ids are dotted paths (``"s2.0.1"``); classes
    are the leaves in depth-first order. The default ``(4, 3, 3)`` gives 36 classes of height 3.
    """
    if isinstance(branching, (int, np.integer)) or not isinstance(branching, Sequence) \
            or len(branching) == 0:
        raise HafclsError(
            f"branching must be a non-empty sequence, got {branching!r}.",
            "pass e.g. branching=(4, 3, 3) for 4 -> 3 -> 3 = 36 classes.",
        )
    ranges = []
    for b in branching:
        lo, hi = (b, b) if isinstance(b, (int, np.integer)) else tuple(b)
        if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer))) \
                or lo < 1 or hi < lo:
            raise HafclsError(
                f"Each branching entry must be an int >= 1 or a (low, high) range, got {b!r}.",
                "pass e.g. branching=(4, 3, 3) or ((2, 5), 3).",
            )
        ranges.append((int(lo), int(hi)))
    rng = np.random.default_rng([int(seed), _PATTERN_DOMAIN, 0])
    edges, classes, frontier = [], [], [("root", "")]
    for depth, (lo, hi) in enumerate(ranges):
        nxt = []
        for node, prefix in frontier:
            for j in range(int(rng.integers(lo, hi + 1))):
                child = f"{prefix}.{j}" if prefix else f"s{j}"
                edges.append((node, child))
                nxt.append((child, child))
        frontier = nxt
        if depth == len(ranges) - 1:
            classes = [n for n, _ in frontier]
    meta = {"name": "synthetic", "source": "synthetic",
            "branching": [list(r) if r[0] != r[1] else r[0] for r in ranges], "seed": int(seed)}
    return Hierarchy.from_edges(edges, classes, meta=meta)


def _node_pattern(node: str, seed: int, size: int, gratings: int, max_freq: int,
                  colour_weight: float) -> np.ndarray:
    """The fixed ``3 x size x size`` pattern of one node (unit RMS)."""
    rng = np.random.default_rng([int(seed), _PATTERN_DOMAIN, zlib.crc32(node.encode())])
    coords = np.arange(size) / size
    pattern = np.zeros((3, size, size))
    pattern += (colour_weight * rng.standard_normal(3))[:, None, None]
    for _ in range(gratings):
        while True:  # a non-zero integer frequency inside the disc of radius max_freq
            k = rng.integers(-max_freq, max_freq + 1, size=2)
            if 0 < k @ k <= max_freq**2:
                break
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.cos(2 * np.pi * (k[0] * coords[None, :] + k[1] * coords[:, None]) + phase)
        pattern += rng.standard_normal(3)[:, None, None] * wave[None]
    pattern /= np.sqrt(np.mean(pattern**2))
    return pattern.astype(np.float32)


class SyntheticHierarchyDataset(Dataset):
    """Synthetic images whose similarity follows ``hierarchy`` (see the module docstring).

    Parameters
    ----------
    hierarchy:
        Any :class:`Hierarchy`; default :func:`synthetic_hierarchy` ``(4, 3, 3)``.
    split:
        ``"train"``, ``"val"`` or ``"test"``: disjoint random streams.
    per_class:
        Images per class; default :data:`SYNTHETIC_SIZES` for the split.
    image_size:
        Side in pixels (default 32).
    seed:
        Selects the node patterns and every sample.
    transform:
        Applied to the PIL image; ``None`` returns the PIL image (torchvision convention).
    depth_decay:
        Weight ratio between consecutive depths (smaller: fine classes harder to tell apart).
    weight_jitter, max_shift, contrast_jitter, brightness_jitter, distractor, noise:
        Per-sample nuisance: relative std of each path weight, circular shift in pixels
        (default ``image_size // 8``), contrast range ``1 +- contrast_jitter``, per-channel
        offset std, amplitude of a random distractor grating, pixel noise std (in units of the
        pattern RMS).
    """

    def __init__(
        self,
        hierarchy: Hierarchy | None = None,
        split: str = "train",
        per_class: int | None = None,
        image_size: int = 32,
        seed: int = 0,
        transform: Callable | None = None,
        depth_decay: float = 0.6,
        weight_jitter: float = 0.3,
        max_shift: int | None = None,
        contrast_jitter: float = 0.3,
        brightness_jitter: float = 0.3,
        distractor: float = 0.6,
        noise: float = 0.6,
        gratings: int = 3,
        max_freq: int = 3,
    ):
        check_split(split, SPLITS)
        self.hierarchy = synthetic_hierarchy() if hierarchy is None else hierarchy
        if not isinstance(self.hierarchy, Hierarchy):
            raise HafclsError(
                f"hierarchy must be a Hierarchy, got {type(hierarchy).__name__}.",
                "build one with synthetic_hierarchy() or hafcls.hierarchy.load().",
            )
        per_class = SYNTHETIC_SIZES[split] if per_class is None else per_class
        if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) \
                or per_class < 1:
            raise HafclsError(f"per_class must be a positive int, got {per_class!r}.",
                              "pass e.g. per_class=200.")
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
                or image_size < 8:
            raise HafclsError(f"image_size must be an int >= 8, got {image_size!r}.",
                              "pass e.g. image_size=32.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise HafclsError(f"seed must be an int >= 0, got {seed!r}.", "pass e.g. seed=0.")
        if not 0 < depth_decay <= 1:
            raise HafclsError(f"depth_decay must be in (0, 1], got {depth_decay!r}.",
                              "pass e.g. depth_decay=0.6.")
        for name, value in [("weight_jitter", weight_jitter), ("contrast_jitter", contrast_jitter),
                            ("brightness_jitter", brightness_jitter), ("distractor", distractor),
                            ("noise", noise)]:
            if not value >= 0:
                raise HafclsError(f"{name} must be >= 0, got {value!r}.", f"pass {name}=0 or more.")
        if contrast_jitter >= 1:
            raise HafclsError(f"contrast_jitter must be < 1, got {contrast_jitter!r}.",
                              "pass e.g. contrast_jitter=0.3.")
        self.split = split
        self.per_class = int(per_class)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.transform = transform
        self.depth_decay = float(depth_decay)
        self.weight_jitter = float(weight_jitter)
        self.max_shift = self.image_size // 8 if max_shift is None else int(max_shift)
        self.contrast_jitter = float(contrast_jitter)
        self.brightness_jitter = float(brightness_jitter)
        self.distractor = float(distractor)
        self.noise = float(noise)

        h = self.hierarchy
        # patterns of the nodes on class paths (the root owns none), in h.nodes order
        self._patterns = np.stack([
            np.zeros((3, self.image_size, self.image_size), np.float32) if i == 0 else
            _node_pattern(n, self.seed, self.image_size, gratings, max_freq, colour_weight=1.0)
            for i, n in enumerate(h.nodes)
        ])
        # path of each class below the root: node index and base weight per depth 1..H;
        # depths deeper than the class get weight 0 (a class sitting at an internal node)
        anc = h.ancestor_matrix[:, 1:]
        class_depth = h.node_depths[h.class_nodes]
        t = np.arange(1, h.height + 1)
        self._path_nodes = anc
        self._path_weights = np.where(t[None, :] <= class_depth[:, None],
                                      self.depth_decay ** (t - 1.0), 0.0).astype(np.float32)
        self._coords = (np.arange(self.image_size) / self.image_size).astype(np.float32)
        self.targets = np.arange(len(self)) % h.num_classes

    # ------------------------------------------------------------------ Dataset API
    @property
    def classes(self) -> list[str]:
        return self.hierarchy.classes

    def __len__(self) -> int:
        return self.per_class * self.hierarchy.num_classes

    def __getitem__(self, index: int):
        array, label = self.generate(index)
        img = Image.fromarray(array)
        if self.transform is not None:
            img = self.transform(img)
        return img, label

    # ------------------------------------------------------------------ generation
    def generate(self, index: int) -> tuple[np.ndarray, int]:
        """Sample ``index`` as a ``H x W x 3`` uint8 array and its class index."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index = int(index) % n
        label = index % self.hierarchy.num_classes
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.split], index])
        s = self.image_size

        weights = self._path_weights[label] * (
            1.0 + self.weight_jitter * rng.standard_normal(self._path_weights.shape[1],
                                                           dtype=np.float32))
        # sum_t w_t P_t over the class path (elementwise: no BLAS threads inside workers)
        field = (weights[:, None, None, None] * self._patterns[self._path_nodes[label]]).sum(0)
        if self.max_shift:
            dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
            field = np.roll(field, (int(dy), int(dx)), axis=(1, 2))
        contrast = rng.uniform(1 - self.contrast_jitter, 1 + self.contrast_jitter)
        field *= np.float32(contrast)
        field += (self.brightness_jitter * rng.standard_normal(3, dtype=np.float32))[:, None, None]
        if self.distractor:
            k = rng.integers(-3, 4, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            # separable cos(a x + b y + phase) from complex exponentials (no 2-D trig call)
            ex = np.exp(1j * (2 * np.pi * k[0] * self._coords + phase))
            ey = np.exp(1j * (2 * np.pi * k[1] * self._coords))
            wave = np.real(ey[:, None] * ex[None, :]).astype(np.float32)
            colour = self.distractor * rng.standard_normal(3, dtype=np.float32)
            field += colour[:, None, None] * wave[None]
        if self.noise:
            field += self.noise * rng.standard_normal((3, s, s), dtype=np.float32)
        # pattern units -> pixels: 0 at mid-grey, one pattern RMS = 40 grey levels (little clipping)
        pixels = np.clip(127.5 + 40.0 * field, 0, 255)
        return np.ascontiguousarray(pixels.transpose(1, 2, 0)).astype(np.uint8), label

    def arrays(self, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``N x H x W x 3`` uint8 images and labels (for analyses without a DataLoader)."""
        indices = range(len(self)) if indices is None else indices
        out = [self.generate(i) for i in indices]
        if not out:
            return (np.zeros((0, self.image_size, self.image_size, 3), np.uint8),
                    np.zeros(0, np.int64))
        return np.stack([a for a, _ in out]), np.array([y for _, y in out], dtype=np.int64)

    def __repr__(self) -> str:
        return (f"SyntheticHierarchyDataset(split={self.split!r}, n={len(self)}, "
                f"classes={self.hierarchy.num_classes}, image_size={self.image_size}, "
                f"seed={self.seed})")


#: Alias named after the feature ("the SyntheticHierarchy dataset").
SyntheticHierarchy = SyntheticHierarchyDataset


# ---------------------------------------------------------------------- registration
def _per_class_sizes(per_class) -> dict[str, int]:
    if per_class is None:
        return dict(SYNTHETIC_SIZES)
    if isinstance(per_class, Mapping):
        return {**SYNTHETIC_SIZES, **per_class}
    if isinstance(per_class, (int, np.integer)):
        return dict.fromkeys(SYNTHETIC_SIZES, int(per_class))
    try:
        return dict(zip(("train", "val", "test"), per_class, strict=True))
    except (TypeError, ValueError):
        raise HafclsError(f"per_class must be an int, a dict or 3 ints, got {per_class!r}.",
                          "pass e.g. per_class=(200, 40, 40).") from None


# no flips for synthetic data: the generator never mirrors, so flips add unseen variation
@register_dataset(
    "synthetic", image_size=32, mean=SYNTHETIC_MEAN, std=SYNTHETIC_STD, hflip=0.0,
    skip_corrupt=False, help="Generated images whose similarity follows the label tree.",
    options=(
        Option("branching", (list, tuple)), Option("per_class", (int, dict, list, tuple)),
        Option("depth_decay", float, 0.0, None), Option("weight_jitter", float, 0.0, None),
        Option("max_shift", int, 0, None, nullable=True),
        Option("contrast_jitter", float, 0.0, None),
        Option("brightness_jitter", float, 0.0, None), Option("distractor", float, 0.0, None),
        Option("noise", float, 0.0, None), Option("gratings", int, 0, None),
        Option("max_freq", int, 1, None),
    ))
def build_synthetic(req: DatasetRequest):
    kw = dict(req.options)
    branching = kw.pop("branching", None)
    if req.hierarchy is None:
        hierarchy = synthetic_hierarchy(**({} if branching is None else
                                           {"branching": branching}), seed=req.seed)
    elif branching is not None:
        raise HafclsError("Pass either hierarchy or branching to the synthetic dataset, not both.",
                          "drop one of them.")
    else:
        hierarchy = resolve_hierarchy(req.hierarchy)
    per_class = _per_class_sizes(kw.pop("per_class", None))
    sets = {
        split: SyntheticHierarchyDataset(hierarchy, split, per_class[split],
                                         image_size=req.image_size, seed=req.seed,
                                         transform=req.transform(split), **kw)
        for split in ("train", "val", "test")
    }
    info = {"per_class": per_class, "seed": req.seed, **kw}
    return hierarchy, sets["train"], sets["val"], sets["test"], info
