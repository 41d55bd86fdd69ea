"""``--tensorboard DIR``: training curves in TensorBoard, written with torch's own
``torch.utils.tensorboard.SummaryWriter`` (offline: event files only, nothing is served).

Written by rank 0 only, one step per epoch (``step = epoch``, 1-based):

- ``train/loss``, ``train/top1``, ``train/img_per_s``: the epoch's running totals;
- ``lr/<group>``: the learning rate of every optimizer parameter group (``backbone``,
  ``head``, or the roles of ``lr_groups``);
- ``val/<metric>``: every numeric validation metric (top-1, mistake severity, HierDist@k,
  ECE, shot groups, loss, ...);
- ``frame/target_cos``, ``frame/realised_cos``, ``frame/realised_minus_target`` (histograms) and
  ``frame/mean_abs_gap``: over the pairs of classes c < c', the cosine of the class means of a
  fixed probe of validation images against the target cosine S_cc' of the frame (the HAFrame
  Gram matrix for a HAFrame model, else the HAFrame target of the dataset's preset, as in the
  comparison's similarity figure);
- ``test/<metric>`` once, at the last epoch, for the best-validation model.

``SummaryWriter`` needs the ``tensorboard`` package (``pip install tensorboard``); without it the
flag fails before training with that fix. On resume the writer purges the events of epochs after
the checkpoint, so the curves show each epoch once.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hafcls.errors import HafclsError

PROBE_IMAGES = 256  # validation images whose class means give the realised cosines


def summary_writer_class():
    """torch's ``SummaryWriter``, or a :class:`HafclsError` naming ``pip install tensorboard``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        raise HafclsError("--tensorboard needs the 'tensorboard' package, which is not installed.",
                          "pip install tensorboard (or pip install 'hafcls[tensorboard]'), or "
                          "drop --tensorboard.") from None
    return SummaryWriter


def _numeric(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"
            and math.isfinite(float(v))}


class TensorBoardLog:
    """The event files of one run (see the module docstring for the tags)."""

    def __init__(self, log_dir: str | Path, resume_epoch: int = 0):
        writer_cls = summary_writer_class()
        self.log_dir = Path(log_dir)
        purge = resume_epoch + 1 if resume_epoch > 0 else None
        self.writer = writer_cls(log_dir=str(self.log_dir), purge_step=purge)
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self.target: np.ndarray | None = None

    # ------------------------------------------------------------------ scalars
    def log_epoch(self, record: dict, optimizer: torch.optim.Optimizer | None = None) -> None:
        step = int(record["epoch"])
        for key, value in _numeric(record.get("train", {})).items():
            if key != "images":
                self.writer.add_scalar(f"train/{key}", value, step)
        if optimizer is not None:
            for i, group in enumerate(optimizer.param_groups):
                self.writer.add_scalar(f"lr/{group.get('name', f'group{i}')}", group["lr"], step)
        else:
            self.writer.add_scalar("lr/head", float(record["lr"]), step)
        for key, value in _numeric(record.get("val") or {}).items():
            self.writer.add_scalar(f"val/{key}", value, step)

    def log_metrics(self, prefix: str, metrics: dict | None, step: int) -> None:
        for key, value in _numeric(metrics or {}).items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)

    # ------------------------------------------------------------------ frame geometry
    def set_probe(self, dataset, target_similarity: np.ndarray, seed: int = 0) -> None:
        """Fix the validation images of the cosine histograms and the target cosines S."""
        n = min(PROBE_IMAGES, len(dataset))
        idx = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:n])
        items = [dataset[int(i)] for i in idx]
        items = [it for it in items if it is not None]
        if not items:
            return
        images = torch.stack([torch.as_tensor(x) for x, _ in items])
        labels = torch.as_tensor([int(y) for _, y in items])
        self.probe = (images, labels)
        self.target = np.asarray(target_similarity, dtype=np.float64)

    @torch.no_grad()
    def log_frame(self, model: nn.Module, step: int, device: torch.device,
                  batch_size: int = 256) -> None:
        """Histograms of the realised class-mean cosines against the target cosines."""
        if self.probe is None or self.target is None:
            return
        images, labels = self.probe
        was_training = model.training
        model.eval()
        try:
            feats = torch.cat([model(images[i:i + batch_size].to(device),
                                     return_features=True)[1].float().cpu()
                               for i in range(0, images.shape[0], batch_size)])
        finally:
            model.train(was_training)
        realised, target = class_mean_cosines(feats, labels, self.target)
        if realised.size == 0:
            return
        gap = realised - target
        self.writer.add_histogram("frame/target_cos", target, step)
        self.writer.add_histogram("frame/realised_cos", realised, step)
        self.writer.add_histogram("frame/realised_minus_target", gap, step)
        self.writer.add_scalar("frame/mean_abs_gap", float(np.abs(gap).mean()), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def class_mean_cosines(features: torch.Tensor, labels: torch.Tensor,
                       target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(realised, target)`` cosines over the pairs c < c' of the classes present: the cosine
    of the uncentred class means of ``features`` and ``target[c, c']``."""
    present, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(present.numel(), features.shape[1], dtype=torch.float64)
    sums.index_add_(0, inverse, features.double())
    unit = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-300)
    iu = torch.triu_indices(present.numel(), present.numel(), offset=1)
    realised = (unit @ unit.T)[iu[0], iu[1]].numpy()
    p = present.numpy()
    return realised, np.asarray(target)[p[iu[0].numpy()], p[iu[1].numpy()]]


# the log folder of the runs started inside ``run_log_dir(...)`` (``hafcls compare``): it overrides
# ``config.tensorboard`` without being recorded in the run's config.json, so a finished run of a
# comparison is reused whatever folder the next call names
_RUN_LOG_DIR: contextvars.ContextVar[str | None] = contextvars.ContextVar("tensorboard_dir",
                                                                          default=None)


@contextlib.contextmanager
def run_log_dir(path: str | Path | None):
    """Send the TensorBoard events of the runs trained inside the block to ``path``."""
    token = _RUN_LOG_DIR.set(None if path is None else str(path))
    try:
        yield
    finally:
        _RUN_LOG_DIR.reset(token)


def open_tensorboard(config, model, hierarchy, val_dataset, is_main: bool,
                     resume_epoch: int = 0) -> TensorBoardLog | None:
    """The run's :class:`TensorBoardLog` on rank 0 when ``config.tensorboard`` (or
    :func:`run_log_dir`) names a folder, else None. The probe of the cosine histograms is fixed
    here (seeded by the run's seed)."""
    log_dir = _RUN_LOG_DIR.get() or config.tensorboard
    if not log_dir:
        return None
    summary_writer_class()  # fail on every rank alike when the package is missing
    if not is_main:
        return None
    log = TensorBoardLog(log_dir, resume_epoch)
    if val_dataset is not None and len(val_dataset) > 0:
        from hafcls.methods.haframe import similarity_target

        log.set_probe(val_dataset, similarity_target(model, hierarchy, config.data), config.seed)
    return log
