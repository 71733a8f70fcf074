"""What every training step is made of: its batch and learning rate, seeds, the EMA, gradient all-reduce.

The pieces :func:`sned.supernet.train.train_loop` composes, each a function of the step (no hidden
state), plus the data stream: the seeded per-step batches (``(index, epoch, res)`` keys) and the
clips at every resolution of the space.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from sned.supernet.base.errors import SettingError
from sned.supernet.config import TrainConfig
from sned.supernet.space import SearchSpace

# ----------------------------------------------------------------------------- schedule and optimiser


def batch_size_at(cfg: TrainConfig, space: SearchSpace, res: int, world_size: int = 1) -> int:
    """Global batch at ``res``: ``base_batch * (max_res / res)**2``, capped, a multiple of ``world_size``."""
    scaled = min(cfg.max_batch, round(cfg.base_batch * (max(space.resolutions) / res) ** 2))
    return max(world_size, math.ceil(scaled / world_size) * world_size)


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, then constant or cosine to ``lr_min``."""
    if cfg.lr_warmup_steps and step < cfg.lr_warmup_steps:
        return cfg.lr * (step + 1) / cfg.lr_warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(1, total - cfg.lr_warmup_steps)
        progress = min(1.0, (step - cfg.lr_warmup_steps) / span)
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))
    return cfg.lr


def torch_seed(*parts: int) -> int:
    """A 63-bit torch seed from integers (seed, step, rank, stream)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class EMA:
    """Exponential moving average of a module's parameters (and copies of its buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float, start: int = 0):
        self.decay, self.start = decay, start
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """After optimiser step ``step`` (0-based): copy until ``start``, then lerp by ``1 - decay``."""
        params = list(model.parameters())
        shadow = list(self.shadow.parameters())
        if step < self.start:
            torch._foreach_copy_(shadow, params)
        else:
            torch._foreach_lerp_(shadow, params, 1.0 - self.decay)
        for mine, theirs in zip(self.shadow.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)


def drop_labels(labels: torch.Tensor, classes: int, dropout: float, seed: int) -> torch.Tensor | None:
    """A batch's class labels for the network: None for an unconditional space, else each label
    replaced by the null label ``classes`` with probability ``dropout`` (classifier-free guidance
    trains the conditional and the unconditional model at once)."""
    if not classes:
        return None
    drop = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed)) < dropout
    return torch.where(drop, torch.full_like(labels, classes), labels)


def all_reduce_gradients(params: Sequence[torch.nn.Parameter], world_size: int) -> None:
    """Average the existing gradients over ranks as one flat buffer.

    Every rank trains the same subnet at a step, so the parameters holding a gradient (and their
    order) agree across ranks; parameters of skipped blocks have ``grad is None`` everywhere.
    """
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"`` as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingError("device", "{device} cuda: CUDA is not available here")
    if name not in ("cpu", "cuda"):
        raise SettingError("device", "{device} {value!r}; valid: {choices}", value=name, choices="auto, cpu, cuda",
                           valid=["auto", "cpu", "cuda"])
    return torch.device(name)


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast where ``train.dtype`` asks for it (``auto``: on CUDA), else a no-op."""
    use_bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()


# ----------------------------------------------------------------------------- data stream


class MultiResClips:
    """Clips (and labels) at any of the space's resolutions: key ``(index, epoch, res)`` (one folder scan for all)."""

    def __init__(self, dataset: Any, resolutions: Sequence[int]):
        self.by_res = {}
        for res in resolutions:
            view = copy.copy(dataset)  # same video list and frame counts; only the output size differs
            view.size = int(res)
            self.by_res[int(res)] = view
        self.length = len(dataset)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        """The clip and its class index (-1 for unlabelled videos)."""
        index, epoch, res = key
        view = self.by_res[res]
        return view[(index, epoch)], view.labels[index] if view.labels else -1


class StepBatches:
    """The keys of every step's batch for one rank, from ``start_step`` on (a ``batch_sampler``).

    The clip order is an endless epoch shuffle seeded by ``(seed, epoch)``; step ``k`` takes the
    next ``batch_size_at(res_k)`` clips of it and rank ``r`` every ``world_size``-th of those.
    """

    def __init__(self, length: int, seed: int, start_step: int, position: int, total: int,
                 schedule: Callable[[int], tuple[int, int]], rank: int, world_size: int):
        self.length, self.seed, self.start, self.position, self.total = length, seed, start_step, position, total
        self.schedule, self.rank, self.world_size = schedule, rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        position, orders = self.position, {}
        for step in range(self.start, self.total):
            res, batch = self.schedule(step)
            keys = []
            for p in range(position, position + batch):
                epoch, offset = divmod(p, self.length)
                if epoch not in orders:
                    orders = {epoch: np.random.default_rng([self.seed, epoch, 11]).permutation(self.length)}
                keys.append((int(orders[epoch][offset]), epoch, res))
            position += batch
            yield keys[self.rank:: self.world_size]


__all__ = ["EMA", "MultiResClips", "StepBatches", "all_reduce_gradients", "autocast", "batch_size_at", "drop_labels",
           "lr_at", "resolve_device", "torch_seed"]
