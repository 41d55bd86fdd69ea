"""Distributed training helpers: torchrun detection, process groups, samplers, reductions.

Launch with ``torchrun --nproc_per_node=N -m hafcls.cli.main train ...`` (or the ``hafcls``
script). Without torchrun's environment everything degrades to a single process, so the same code
path serves both.

Training uses a shuffled, padded shard per rank (as :class:`~torch.utils.data.DistributedSampler`).
Evaluation instead gives each rank the indices ``rank, rank + W, ...`` without padding, and sums
the metric counters over ranks, so every sample is counted exactly once.
"""

from __future__ import annotations

import datetime
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler, get_worker_info

from hafcls.errors import HafclsError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank and world size from torchrun's environment variables (single process if absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise HafclsError("WORLD_SIZE, RANK or LOCAL_RANK is not an integer.",
                          "launch with torchrun, or unset these variables.") from None
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def resolve_device(spec: str, info: DistInfo) -> torch.device:
    """``auto`` picks this rank's GPU when CUDA is available, else the CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HafclsError(f"Device {spec!r} was asked for but CUDA is not available.",
                              "use --device cpu (or auto).")
        if spec == "cuda":
            spec = f"cuda:{info.local_rank % torch.cuda.device_count()}"
        device = torch.device(spec)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def init_distributed(device: torch.device, info: DistInfo, timeout_s: int = 1800) -> None:
    """Join the process group (NCCL on GPU, gloo on CPU) when launched with several processes."""
    if not info.distributed or (dist.is_available() and dist.is_initialized()):
        return
    if not dist.is_available():
        raise HafclsError("This torch build has no distributed support.",
                          "run a single process, or install a torch build with distributed.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)


def cleanup() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (a no-op for a single process); returns it."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every buffer (BatchNorm statistics, ...) of ``src`` to all ranks."""
    if not is_initialized():
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=src)


def gather_to_main(obj) -> list | None:
    """Every rank's ``obj`` as a list on rank 0 (None elsewhere); ``[obj]`` without DDP."""
    if not is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)  # all_gather: supported by every backend
    return out if dist.get_rank() == 0 else None


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from ``src`` to every rank (used only for small, own-made data)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class EpochShardSampler(Sampler[tuple[int, int]]):
    """Training order: one permutation of the dataset per epoch, drawn from ``(seed, epoch)``,
    padded by wrapping to a multiple of the world size and dealt out by rank.

    Yields ``(index, sample_seed)`` pairs for :class:`SeededDataset`, which seeds the random
    augmentation of each sample from ``sample_seed``. Order and augmentation are then pure
    functions of ``(seed, epoch)``: a resumed run (even mid-epoch, via ``start``) sees exactly the
    batches of an uninterrupted one, whatever the number of DataLoader workers.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True):
        if size < 1:
            raise HafclsError("The training set is empty.", "check the dataset folder.")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0
        self.per_rank = -(-size // world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order; skip the first ``start`` samples of this rank's shard."""
        self.epoch = epoch
        self.start = start

    def pairs(self) -> list[tuple[int, int]]:
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
        sample_seeds = torch.randint(0, 2**62, (self.size,), generator=g)
        total = self.per_rank * self.world_size
        if total > self.size:  # wrap around, as DistributedSampler does
            order = torch.cat([order, order[: total - self.size]])
        mine = order[self.rank:total:self.world_size][self.start:]
        return list(zip(mine.tolist(), sample_seeds[mine].tolist()))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.pairs())

    def __len__(self) -> int:
        return max(self.per_rank - self.start, 0)


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is loaded with every RNG seeded from
    ``seed``: random augmentation becomes independent of worker assignment and of the RNG
    history, which is what makes resume exact."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        return self.__getitems__([item])[0]

    def __getitems__(self, items):
        """A whole batch at once. A dataset that takes ``(index, seed)`` items itself (the
        in-memory datasets) gets the batch: one vectorised transform, each sample still
        augmented from its own seed, so batches equal item-by-item loading and resume stays
        exact. Otherwise each item is loaded with the RNGs seeded from its seed; in the
        training process their state is saved and restored once per batch (~130 us a time,
        as long as the rest of an item's seeding and loading)."""
        if getattr(self.dataset, "seeded_items", False):
            return self.dataset.__getitems__(items)
        if not any(isinstance(item, tuple) for item in items):
            return [self.dataset[item] for item in items]
        in_main = get_worker_info() is None
        if in_main:  # loading in the training process: leave its RNG streams untouched
            saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            return [self._seeded(item) if isinstance(item, tuple) else self.dataset[item]
                    for item in items]
        finally:
            if in_main:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])

    def _seeded(self, item):
        index, seed = item
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)  # CPU only: CUDA streams stay untouched
        return self.dataset[index]


class ShardSampler(Sampler[int]):
    """Evaluation order: indices ``rank, rank + W, ...`` — no padding, so summing per-rank
    counters counts every sample exactly once."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        self.size = size
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))
