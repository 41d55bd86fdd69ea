"""Building the pieces of a run from its config, and rebuilding a model from a checkpoint.

Shared by training, evaluation and prediction so that the three agree on data, model, scores and
autocast.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
from torch.utils.data import DataLoader

from hafcls.engine import distributed as D
from hafcls.engine.checkpoint import check_hierarchy, load_weights
from hafcls.engine.config import TrainConfig
from hafcls.errors import HafclsError
from hafcls.methods import scores_from_logits
from hafcls.registry import HEADS


# ---------------------------------------------------------------------- data
def load_hierarchy(spec):
    """A Hierarchy from a shipped name or a file (``None`` stays ``None``)."""
    if spec is None:
        return None
    from hafcls.hierarchy import Hierarchy, load

    return spec if isinstance(spec, Hierarchy) else load(spec)


def _takes_channels(data: str) -> bool:
    """Whether the dataset declares a ``channels`` option (grayscale data kept in memory)."""
    from hafcls.registry import DATASETS

    return any(o.name == "channels" for o in DATASETS.get(DATASETS.canonical(data)).options)


def build_data(config: TrainConfig, info: D.DistInfo | None = None, hierarchy=None):
    """The dataset bundle of ``config``. With ``download`` under DDP, rank 0 fetches first."""
    from hafcls.data import build_datasets

    info = info or D.DistInfo()
    hierarchy = hierarchy if hierarchy is not None else load_hierarchy(config.hierarchy)
    kwargs: dict[str, Any] = dict(config.data_options)
    if hierarchy is not None:
        kwargs.pop("branching", None)  # the synthetic tree is given, not generated
    if _takes_channels(config.data) and "in_chans" in config.model_options:
        # grayscale data follows the model: in_chans=1 keeps 1 channel, else replicated to 3
        kwargs.setdefault("channels", 1 if int(config.model_options["in_chans"]) == 1 else 3)
    kwargs.update(data_dir=config.data_dir, hierarchy=hierarchy, image_size=config.image_size,
                  download=config.download)
    if config.transform_preset:
        kwargs.update(zip(("train_transform", "eval_transform"), preset_pipelines(config)))

    def build():
        from hafcls.engine.preflight import outside_errors

        with outside_errors(f"Downloading the {config.data} dataset",
                            "connect to the network, or put the dataset files into --data-dir "
                            "yourself and leave --download out."):
            return apply_imbalance(build_datasets(config.data, **kwargs), config)

    if config.download and info.distributed:
        bundle = build() if info.is_main else None
        D.barrier()
        return bundle if bundle is not None else build()
    return build()


def apply_imbalance(bundle, config: TrainConfig):
    """Replace the bundle's training split by its long-tailed subset when ``config.imbalance``
    is set (seeded by the run's seed, so ``--resume`` rebuilds the same subset); validation and
    test stay untouched. ``bundle.info["imbalance"]`` records the profile and the counts."""
    if config.imbalance is None:
        return bundle
    import numpy as np

    from hafcls.data.imbalance import imbalanced_subset
    from hafcls.metrics.minority import shot_group_sizes

    bundle.train = imbalanced_subset(bundle.train, config.imbalance, config.imbalance_profile,
                                     config.imbalance_rare, seed=config.seed)
    counts = np.bincount(np.asarray(bundle.train.targets),
                         minlength=bundle.hierarchy.num_classes)
    bundle.info["imbalance"] = {"ratio": config.imbalance, "profile": config.imbalance_profile,
                                "rare": config.imbalance_rare, "train_counts": counts.tolist(),
                                "shot_groups": shot_group_sizes(counts)}
    return bundle


def train_class_counts(bundle):
    """Training images per class (K ints), or None when the split exposes no ``targets``."""
    import numpy as np

    targets = getattr(bundle.train, "targets", None)
    if targets is None:
        return None
    return np.bincount(np.asarray(targets), minlength=bundle.hierarchy.num_classes)


def preset_pipelines(config: TrainConfig, mean=None, std=None):
    """``(train, eval)`` transforms of ``config.transform_preset`` at the run's image size, with
    the dataset's normalisation (or the given ``mean`` / ``std``, e.g. a pretrained backbone's)."""
    from hafcls.data.transforms import preset_pair
    from hafcls.registry import DATASETS

    spec = DATASETS.get(config.data)
    opts = config.data_options
    return preset_pair(config.transform_preset, config.image_size or spec.image_size,
                       mean or opts.get("mean", spec.mean), std or opts.get("std", spec.std),
                       opts.get("hflip", spec.hflip), opts.get("interpolation", "bilinear"))


def make_eval_loader(dataset, config: TrainConfig, info: D.DistInfo,
                     device: torch.device) -> DataLoader:
    """Evaluation loader: this rank's shard without padding, no sample dropped."""
    from hafcls.data.images import collate_skip_corrupt

    sampler = D.ShardSampler(len(dataset), info.rank, info.world_size)
    return DataLoader(dataset, batch_size=config.eval_batch, sampler=sampler,
                      num_workers=config.workers, drop_last=False,
                      pin_memory=device.type == "cuda", collate_fn=collate_skip_corrupt,
                      persistent_workers=config.workers > 0)  # validation runs every epoch


def normalisation(bundle) -> dict:
    """Image size, mean and std the bundle's eval transform uses (for predicting on files)."""
    out = {"image_size": getattr(bundle, "image_size", None)}
    for key in ("mean", "std"):
        value = getattr(bundle, key, None)
        if value is not None:
            out[key] = [float(v) for v in value]
    return out


# ---------------------------------------------------------------------- model
def build_method_and_model(config: TrainConfig, hierarchy):
    """The method (with ``method_options`` applied) and its freshly created model."""
    from hafcls.methods import get_method

    method = get_method(config.method, dataset=config.data)
    if config.method_options:
        method = method.with_options(**config.method_options)
    method = seed_frame(method, config)
    from hafcls.engine.preflight import outside_errors

    with outside_errors(f"Fetching timm's pretrained weights of {config.model}",
                        "connect to the network once (the weights are cached), or give a local "
                        "file with --pretrained-file, or train from scratch without "
                        "--pretrained."):
        model = method.create_model(config.model, hierarchy, pretrained=config.pretrained,
                                    pretrained_file=config.pretrained_file,
                                    timm_kwargs=dict(config.model_options))
    return method, model


def seed_frame(method, config: TrainConfig):
    """The method with its head's ``seed`` (the fixed frame's random rotation) set to the run's
    ``--seed``, unless ``method_options`` or ``model_options`` give one explicitly."""
    from hafcls.methods.base import head_options

    explicit = "seed" in config.method_options or "seed" in config.model_options
    if explicit or "seed" not in {o.name for o in head_options(method.head)}:
        return method
    return method.with_options(seed=int(config.seed))


def match_backbone_transforms(bundle, model, config: TrainConfig) -> None:
    """A pretrained backbone sees images normalised as in its pretraining (timm's data config);
    a backbone trained from scratch keeps the dataset's own statistics. A transform preset
    keeps its geometry and takes only the backbone's mean and std."""
    if not (config.pretrained or config.pretrained_file):
        return
    if config.transform_preset:
        from hafcls.data.transforms import _data_config

        cfg = _data_config(model)
        bundle.set_transforms(*preset_pipelines(config, cfg["mean"], cfg["std"]))
        bundle.mean, bundle.std = tuple(cfg["mean"]), tuple(cfg["std"])
    else:
        bundle.use_model_transforms(model)


def checkpoint_meta(config: TrainConfig, model, method, bundle) -> dict:
    """What a checkpoint needs besides weights to be used on its own (JSON-able)."""
    h = bundle.hierarchy
    return {
        "config": config.to_dict(),
        "model_config": model.config,
        "method": {"name": method.name, "head": method.head,
                   "score_temperature": float(method.score_temperature)},
        "hierarchy": h.to_dict(),
        "hierarchy_fingerprint": h.fingerprint(),
        "num_classes": h.num_classes,
        "data": {"name": getattr(bundle, "name", config.data), **normalisation(bundle)},
    }


def model_from_checkpoint(ckpt: dict, hierarchy=None, path=None):
    """Re-create the trained model of a loaded checkpoint, with its weights, in eval mode.

    Returns ``(model, hierarchy, score)``; ``score(logits)`` gives the method's probabilities.
    A ``hierarchy`` other than the training one is refused; weights that do not fit the model
    the metadata describes raise :class:`HafclsError` (``path`` names the file in the message).
    """
    from hafcls.hierarchy import Hierarchy
    from hafcls.models import create

    meta = ckpt["meta"]
    stored = Hierarchy.from_dict(meta["hierarchy"])
    if hierarchy is not None:
        check_hierarchy(meta, hierarchy)
    hierarchy = stored
    cfg = dict(meta["model_config"])
    if cfg.get("head") in HEADS and HEADS.get(cfg["head"]).fixed_classifier:
        cfg["frame"] = "state_dict"  # the frame comes with the weights: no rebuild
    else:
        cfg.pop("frame", None)
    model = create(hierarchy=hierarchy, **cfg)
    load_weights(model, ckpt.get("model"), path or "the checkpoint", "model")
    model.eval()
    temperature = float(meta.get("method", {}).get("score_temperature", 1.0))
    return model, hierarchy, functools.partial(scores_from_logits, temperature=temperature)


# ---------------------------------------------------------------------- precision
def autocast_context(amp: str, device: torch.device):
    """``torch.autocast`` for ``bf16``/``fp16``, a no-op for ``none``."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise HafclsError("--amp fp16 needs a CUDA device.",
                          "use --amp bf16 on the CPU, or --amp none.")
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_float32_head(model, images: torch.Tensor):
    """``model(images, return_features=True)`` with the backbone under the caller's autocast
    and the head (its last matrix product included) in float32, autocast off: bf16 logits are
    full of exact ties, and HAFrame's dot-product logits grow with the feature norm. Without an
    active autocast, or for a model without a separate head, the model runs as it is."""
    device_type = images.device.type
    head, head_input = getattr(model, "head", None), getattr(model, "head_input", None)
    if head is None or head_input is None or not torch.is_autocast_enabled(device_type):
        return model(images, return_features=True)
    x = head_input(images)
    with torch.autocast(device_type=device_type, enabled=False):
        return head(x.float())
