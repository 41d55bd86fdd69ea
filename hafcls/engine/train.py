"""``train(config) -> result``: the training loop of every method, single process or DDP.

One epoch: shuffled shards (order and augmentation a pure function of ``(seed, epoch)``), forward
under optional autocast, a finite-loss check on every step (all ranks agree), backward, optional
gradient clipping, optimizer step. After each epoch: validation with the full metric set,
``metrics.jsonl`` line, ``best.pt`` when the selection metric improved, ``last.pt``. At the end
the best-validation model is evaluated on the test split (as in the paper) and ``metrics.json``
is written.

Resume (``resume=True``) restores model, optimizer, schedule position, AMP scaler, best-so-far
and every RNG from ``last.pt``; with ``checkpoint_every=N`` a run killed mid-epoch continues from
the last N-step checkpoint and skips the batches it already trained on, so the final weights equal
those of an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from hafcls.engine import distributed as D
from hafcls.engine.builders import (
    autocast_context,
    build_data,
    build_method_and_model,
    checkpoint_meta,
    make_eval_loader,
    match_backbone_transforms,
)
from hafcls.engine.checkpoint import (
    load_checkpoint,
    load_weights,
)
from hafcls.engine.config import TrainConfig, metric_is_higher_better
from hafcls.engine.evaluate import calibrate_checkpoint, evaluate_model, format_metrics
from hafcls.engine.optimization import build_optimizer, lr_factor, set_lr
from hafcls.engine.run_extras import RunExtras
from hafcls.engine.runs import RunFolder, prepare_run_folder, stop_message
from hafcls.engine.train_step import (
    EpochTotals,
    TrainStep,
    better,
    epoch_line,
    nonfinite,
    seed_everything,
)
from hafcls.engine.trainer_checkpoints import CheckpointMixin
from hafcls.errors import HafclsError

__all__ = ["EpochTotals", "TrainStep", "Trainer", "build_optimizer", "lr_factor",
           "seed_everything", "train"]

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def train(config: TrainConfig | dict, log: Log | None = None) -> dict:
    """Train a model as ``config`` describes and return the final result.

    The result dict (also written to ``metrics.json``) holds ``output`` (the run folder),
    ``data``, ``method``, ``model``, ``seed``, ``epochs``, ``select_metric``, ``best_epoch``,
    ``val`` (validation metrics at the best epoch), ``test`` (test metrics of the best model)
    and ``wall_time_s``. Under torchrun every rank returns the same result; only rank 0 writes
    files. Errors caused by the config or the data raise :class:`HafclsError`.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(config)
    config.validate()
    config.require_run_fields()
    info = D.env_info()
    device = D.resolve_device(config.device, info)
    joined = info.distributed and not D.is_initialized()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    D.init_distributed(device, info)
    trainer = None
    try:
        trainer = Trainer(config, info, device, log=log)
        return trainer.run()
    finally:
        if trainer is not None:
            trainer.folder.unlock()  # the run folder's writer lock (rank 0)
        torch.use_deterministic_algorithms(deterministic_before)
        if joined:
            D.cleanup()


# ---------------------------------------------------------------------- helpers
# ---------------------------------------------------------------------- the loop
class Trainer(CheckpointMixin):
    """One training run; :meth:`run` does the whole job (see the module docstring)."""

    def __init__(self, config: TrainConfig, info: D.DistInfo, device: torch.device,
                 log: Log | None = None):
        self.config = config
        self.info = info
        self.device = device
        self.folder = RunFolder(config.output)
        self._log = log or _stderr
        self._position = (0, 0)  # (epoch, step) of the current training step

    def log(self, msg: str) -> None:
        if self.info.is_main:
            self._log(msg)

    # ------------------------------------------------------------------ set-up
    def _prepare_folder(self) -> Path | None:
        return prepare_run_folder(self.folder, self.config, self.info, self.log)

    def _setup(self) -> None:
        cfg = self.config
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # warn (not fail) where an op has no deterministic kernel on this device
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if cfg.amp == "fp16" and self.device.type != "cuda":
            raise HafclsError("--amp fp16 needs a CUDA device.",
                              "use --amp bf16 on the CPU, or --amp none.")
        if cfg.threads:  # fewer threads than cores left to the loader workers: no spin-waits
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.data = build_data(cfg, self.info)
        self.hierarchy = self.data.hierarchy
        from hafcls.engine.preflight import check_select_metric, check_splits_present

        check_select_metric(cfg.select_metric, self.hierarchy.height)  # before any epoch
        check_splits_present(self.data)
        # timm downloads pretrained weights on first use: rank 0 fills the cache, then the rest
        fetch_first = cfg.pretrained and cfg.pretrained_file is None and self.info.distributed
        if fetch_first and not self.info.is_main:
            D.barrier()
        self.method, self.model = build_method_and_model(cfg, self.hierarchy)
        if fetch_first and self.info.is_main:
            D.barrier()
        match_backbone_transforms(self.data, self.model, cfg)
        from hafcls.engine.preflight import check_batch_norm_batch

        self.batch_norm = check_batch_norm_batch(self.model, cfg.batch_size)
        weights = getattr(self.model.backbone, "hafcls_weights_report", None)
        if weights is not None:  # e.g. a MoCo checkpoint: mapped, dropped, missing keys
            self.log(weights.summary())
        self.criterion = self.method.build_loss(self.model, self.hierarchy)
        self.extras = RunExtras(cfg, self.criterion, self.data, self.info.is_main)  # mixup, ...
        self.model.to(self.device)
        self.criterion.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, self.criterion, cfg)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        step = TrainStep(self.model, self.criterion, cfg.channels_last)
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module = nn.parallel.DistributedDataParallel(step, device_ids=ids)
        else:
            self.step_module = step
        if cfg.compile:  # the training step only: checkpoints and evaluation use self.model
            self.step_module = torch.compile(self.step_module)
        # different dropout / drop-path draws per rank, same model init everywhere
        seed_everything(cfg.seed + 7919 * self.info.rank)

        n_train = len(self.data.train)
        self.sampler = D.EpochShardSampler(n_train, cfg.seed, self.info.rank,
                                           self.info.world_size)
        # a last batch of one sample breaks BatchNorm: drop it (the same on every rank)
        self.drop_last = self.sampler.per_rank % cfg.batch_size == 1
        self.steps_per_epoch = (self.sampler.per_rank // cfg.batch_size if self.drop_last
                                else -(-self.sampler.per_rank // cfg.batch_size))
        if self.steps_per_epoch == 0:
            raise HafclsError(f"The training set ({n_train} images) is too small for batches of "
                              f"{cfg.batch_size} per process.", "lower --batch-size.")
        self.train_loader = self._train_loader()
        self.val_loader = (make_eval_loader(self.data.val, cfg, self.info, self.device)
                           if self.data.val is not None else None)
        self.meta = checkpoint_meta(cfg, self.model, self.method, self.data)

    def _train_loader(self) -> DataLoader:
        cfg = self.config
        from hafcls.data.images import collate_skip_corrupt

        return DataLoader(
            D.SeededDataset(self.data.train), batch_size=cfg.batch_size, sampler=self.sampler,
            num_workers=cfg.workers, drop_last=self.drop_last,
            pin_memory=self.device.type == "cuda", collate_fn=collate_skip_corrupt,
            # one loader for the whole run, its workers kept between epochs (no per-epoch start
            # up): items are (index, seed) pairs seeded per sample by SeededDataset, so the
            # workers' own random state never reaches the data and resume stays exact
            persistent_workers=cfg.workers > 0,
            # the loader draws its workers' base seed from this generator, not from the global
            # random state: a draw there would shift every dropout mask after a mid-epoch resume
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        cfg = self.config
        started = time.perf_counter()
        resume_from = self._prepare_folder()
        self._setup()
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_val: dict | None = None
        self.train_skipped: int | None = None
        epochs_done, step_in_epoch, totals = 0, 0, EpochTotals()
        if resume_from is not None:
            epochs_done, step_in_epoch, totals = self._restore(resume_from)
            self.log(f"Resuming {self.folder.path} after epoch {epochs_done}"
                     + (f", step {step_in_epoch}" if step_in_epoch else "") + ".")
        if self.info.is_main:
            self.folder.path.mkdir(parents=True, exist_ok=True)
            self.folder.write_config(cfg)
            self.folder.write_hierarchy(self.hierarchy)
            self.folder.truncate_log(epochs_done)
        self.extras.open_tensorboard(self.model, self.hierarchy, epochs_done)
        self.log(f"Training {cfg.method} on {self.data.name} ({self.hierarchy.num_classes} "
                 f"classes, {len(self.data.train)} train images) with {cfg.model} for "
                 f"{cfg.epochs} epochs on {self.device} x{self.info.world_size}.")
        higher = metric_is_higher_better(cfg.select_metric)
        for epoch in range(epochs_done, cfg.epochs):
            train_stats = self._train_epoch(epoch, step_in_epoch, totals)
            self.train_skipped = train_stats["skipped"]
            step_in_epoch, totals = 0, EpochTotals()
            record = {"epoch": epoch + 1, "lr": lr_factor(epoch, cfg) * cfg.lr,
                      "train": train_stats}
            if self.val_loader is not None:
                val = self._validate()
                record["val"] = val
                value = val.get(cfg.select_metric)
                if value is None:
                    raise HafclsError(
                        f"The validation metrics have no {cfg.select_metric!r}.",
                        f"use one of {', '.join(k for k in val if k != 'n')}.")
                if better(value, self.best_value, higher):
                    self.best_value, self.best_epoch, self.best_val = value, epoch + 1, val
                    self._save_best(epoch + 1, val)
            else:
                self.best_epoch, self.best_val = epoch + 1, None
                self._save_best(epoch + 1, {})
            self.log(epoch_line(record, cfg))
            if self.info.is_main:
                self.folder.append_log(record)
            self.extras.end_epoch(record, self.optimizer, self.model, self.device)
            self._save_last(epoch + 1, 0, EpochTotals())
        return self._finish(started)

    def _train_epoch(self, epoch: int, start_step: int, totals: EpochTotals) -> dict:
        cfg = self.config
        set_lr(self.optimizer, lr_factor(epoch, cfg))
        self.sampler.set_epoch(epoch, start=start_step * cfg.batch_size)
        self.step_module.train()
        loader = self.train_loader
        bar = self._bar(loader, f"epoch {epoch + 1}/{cfg.epochs}", initial=start_step)
        tic = time.perf_counter()
        step = start_step
        for batch in bar:
            # samples the sampler dealt into this batch; the shortfall was unreadable
            expected = min(cfg.batch_size, self.sampler.per_rank - step * cfg.batch_size)
            if batch is None:  # every image of the batch was unreadable and skipped
                totals.skipped += expected
                step += 1
                continue
            images, targets = batch
            totals.skipped += expected - targets.numel()
            if self.batch_norm and D.any_rank(targets.numel() == 1, self.device):
                # unreadable images left one: batch norm cannot train on a single sample, so
                # the step is left out (the same on resume: it depends on the data only)
                totals.skipped += targets.numel()
                self.log(f"Left out a batch of one image at epoch {epoch + 1}, step "
                         f"{step + 1} (the rest was unreadable): batch norm needs two.")
                step += 1
                continue
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            # train accuracy below compares with each image's own label (weight λ in a mix)
            loss, logits = self._forward(*self.extras.mix(images, targets))
            n = targets.numel()
            # one host sync per step: the loss (for the finite check) and the hit count
            loss_value, hits = torch.stack([loss.detach(), (logits.detach().argmax(1) == targets)
                                            .sum().float()]).tolist()
            if D.any_rank(not math.isfinite(loss_value), self.device):
                kept, fix = stop_message(self.folder, cfg.amp)
                raise HafclsError(
                    f"The training loss became {nonfinite(loss_value)} at epoch {epoch + 1}, "
                    f"step {step + 1}; training stopped and {kept}.", fix)
            self._position = (epoch, step)  # for the message of a non-finite gradient
            self._backward(loss)
            step += 1
            totals.loss += loss_value * n
            totals.correct += int(hits)
            totals.count += n
            totals.steps += 1
            totals.seconds += time.perf_counter() - tic
            tic = time.perf_counter()
            if bar is not loader and (step % 5 == 0 or step == self.steps_per_epoch):
                bar.set_postfix(loss=f"{totals.loss / totals.count:.3f}",
                                acc=f"{100 * totals.correct / totals.count:.1f}%",
                                img_s=f"{totals.count / max(totals.seconds, 1e-9):.0f}",
                                refresh=False)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 \
                    and step < self.steps_per_epoch:
                self._save_last(epoch, step, totals)
        if bar is not loader:
            bar.close()
        return totals.reduced(self.device)

    def _forward(self, images, targets):
        with autocast_context(self.config.amp, self.device):
            loss, logits = self.step_module(images, targets)
        return loss.float(), logits.float()

    def _backward(self, loss: torch.Tensor) -> None:
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            # the scaler skips steps with inf/NaN gradients by design
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            # a finite loss can still have a non-finite gradient; stepping with it would make
            # every weight NaN (and the next checkpoint useless), so check before the step
            norm = float(self._clip())
            if D.any_rank(not math.isfinite(norm), self.device):
                epoch, step = self._position
                kept, fix = stop_message(self.folder, cfg.amp)
                raise HafclsError(
                    f"The gradient norm became {nonfinite(norm)} at epoch {epoch + 1}, step "
                    f"{step + 1}; training stopped before the weights changed and {kept}.", fix)
            self.optimizer.step()

    def _clip(self) -> torch.Tensor:
        """Clip the global gradient norm to ``grad_clip`` (if set); return the norm before."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]
                  if p.grad is not None]
        if self.config.grad_clip:
            return torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        return torch.nn.utils.get_total_norm([p.grad for p in params])

    def _bar(self, loader, desc: str, initial: int = 0):
        if not (self.config.progress and self.info.is_main):
            return loader
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (batch jobs log epoch lines only)
        return tqdm(loader, desc=desc, total=self.steps_per_epoch, initial=initial,
                    leave=False, dynamic_ncols=True, file=sys.stderr, unit="batch",
                    disable=None)

    def _validate(self) -> dict:
        # BatchNorm statistics drift per rank after the last step: evaluate rank 0's (saved) ones
        D.broadcast_buffers(self.model)
        return evaluate_model(self.model, self.val_loader, self.hierarchy, self.device,
                              amp=self.config.amp, score=self.method.score,
                              criterion=self.criterion, channels_last=self.config.channels_last,
                              train_counts=self.extras.train_counts)

    def _calibrate(self, result: dict) -> Callable:
        """Fit the best model's softmax temperature on the validation split; stored in best.pt
        and the result, it is the score of the test metrics, CRM, hedging and prediction."""
        cfg = self.config
        fit, score = calibrate_checkpoint(self.model, self.folder.best, self.val_loader,
                                          self.device, cfg.amp, cfg.channels_last, self.log)
        if fit is not None:
            result["temperature"] = fit
        return score or self.method.score

    def _finish(self, started: float) -> dict:
        cfg = self.config
        D.barrier()
        result = {"output": str(self.folder.path), "data": cfg.data, "method": cfg.method,
                  "model": cfg.model, "seed": cfg.seed, "epochs": cfg.epochs,
                  "select_metric": cfg.select_metric, "best_epoch": self.best_epoch,
                  "val": self.best_val, "test": None,
                  # split protocol and sizes (e.g. the split listing used, its test-set size)
                  "data_info": getattr(self.data, "info", {})}
        if self.train_skipped:  # unreadable training images, left out of every epoch
            result["train_skipped"] = self.train_skipped
        score = self._calibrate(result) if self.val_loader is not None else self.method.score
        if self.data.test is not None:
            best = load_checkpoint(self.folder.best, map_location=self.device)
            load_weights(self.model, best["model"], self.folder.best, "model")
            load_weights(self.criterion, best["criterion"], self.folder.best, "loss")
            loader = make_eval_loader(self.data.test, cfg, self.info, self.device)
            result["test"] = evaluate_model(self.model, loader, self.hierarchy, self.device,
                                            amp=cfg.amp, score=score,
                                            channels_last=cfg.channels_last,
                                            train_counts=self.extras.train_counts)
            self.log("test (best-validation model, epoch "
                     f"{self.best_epoch}): {format_metrics(result['test'])}")
        self.extras.finish(result, self.model, self.device, self.folder.path, self.log)
        result["wall_time_s"] = time.perf_counter() - started
        if self.info.is_main:
            self.folder.write_metrics(result)
        D.barrier()
        return result


