"""``sned-train`` / ``sned train``: superposition training of the elastic supernet.

    sned-train EXPERIMENT --data DIR --out RUN [--steps N] [--seed K] [--resume] [--workers N]

Every step (see :func:`train_loop`):

1. picks a resolution of the space, seeded by ``(seed, step)`` (superposition over resolutions;
   uniform, or as often as ``train.resolution_weights`` say),
   and a batch sized so every step carries a similar number of pixels:
   ``min(max_batch, base_batch * (max_res / res)**2)``;
2. picks the subnet(s) with the arch sampler (:mod:`sned.supernet.sampler`: dynamic cost buckets
   with a sampling warm-up from the largest subnets, optionally the sandwich rule), also seeded by
   ``(seed, step)``, so every rank trains the same subnet;
3. computes the diffusion loss (:mod:`sned.supernet.diffusion`: cosine schedule, v-prediction) and
   accumulates gradients over the step's subnets; during the first ``image_steps`` the temporal
   layers are bypassed (``use_temporal=False``): frames are denoised as independent images, the
   image-diffusion pre-training stage;
4. clips the gradient norm, takes an AdamW step and updates the EMA.

Noise and timesteps come from a generator seeded by ``(seed, step, rank)`` and the clips from a
seeded epoch shuffle at a stored position, so a run resumed from a checkpoint reproduces the
uninterrupted run's losses exactly (on the same device and thread count).

**Distributed** (``--workers N``): the same loop runs on N Ray Train workers (``TorchTrainer``;
gloo on CPU, NCCL on GPU). The supernet is *not* wrapped in ``DistributedDataParallel``: a subnet
leaves whole blocks (and slices) without gradients, which DDP's reducer treats as an error unless
it searches the graph every step (``find_unused_parameters``). Because every rank trains the same
subnet, the set of parameters with a gradient is the same on every rank, so the loop all-reduces
exactly those gradients itself, as one flat buffer (:func:`all_reduce_gradients`).

**Validation** (:mod:`sned.supernet.validation`): ``train.val_videos`` videos are held out of
training; every ``train.val_every`` steps and at the end, the EMA weights of the largest and the
smallest subnet are scored on fixed clips, noise and timesteps (t = 50, 200, 500, 800) at every
resolution. The predict-zero and per-pixel reference levels are printed once at the start.

Outputs in the run folder: ``run.json`` (settings), ``metrics.csv`` (one row per step: step, loss,
resolution, batch, arch id, learning rate, seconds, ...), ``validation.csv`` (step, res, subnet,
t, loss; the reference levels as subnets ``zero`` and ``per_pixel`` at step 0), ``tb/``
(TensorBoard) and ``checkpoints/step-XXXXXXXX/`` (:mod:`sned.supernet.checkpoint`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sned.supernet.checkpoint import (
    list_checkpoints,
    load_into,
    load_tensors,
    optimizer_state,
    read_state,
    save_checkpoint,
    set_rng_states,
    split_prefix,
)
from sned.supernet.config import (
    TrainConfig,
    config_to_dict,
    load_sample_config,
    load_train_config,
    train_config_from_dict,
)
from sned.supernet.errors import UserError
from sned.supernet.files import write_json_atomic
from sned.supernet.ray_start import start_ray
from sned.supernet.sampler import UniformSampler, make_sampler, resolution_at
from sned.supernet.space import SearchSpace, arch_id, load_space

logger = logging.getLogger(__name__)

RUN_FILE, METRICS_FILE, VALIDATION_FILE = "run.json", "metrics.csv", "validation.csv"
METRIC_FIELDS = ("step", "loss", "res", "batch", "arch_id", "lr", "seconds", "grad_norm", "stage")
VALIDATION_FIELDS = ("step", "res", "subnet", "t", "loss")


@dataclass(frozen=True)
class TrainSettings:
    """One ``sned-train`` invocation (the experiment's ``train:`` section holds the rest).

    Args:
        experiment: bundled experiment name or YAML path.
        data: folder of training videos.
        out: the run folder.
        steps: total steps (overrides ``train.steps``).
        seed: run seed (None: 0, or the checkpoint's when resuming).
        resume: continue from the run folder's newest checkpoint.
        workers: data-parallel ranks; above 1 runs under Ray Train.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        stop_after: leave the loop after this many steps of this invocation, as if killed (tests).
        progress: show a tqdm bar.
    """

    experiment: str
    data: str
    out: str
    steps: int | None = None
    seed: int | None = None
    resume: bool = False
    workers: int = 1
    device: str = "auto"
    stop_after: int | None = None
    progress: bool = True


@dataclass
class TrainResult:
    """What a training invocation did."""

    out: Path
    start_step: int
    end_step: int
    losses: list[float]  # of the steps run by this invocation
    seconds: float
    checkpoint: Path | None


# ----------------------------------------------------------------------------- pieces of the loop


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


# ----------------------------------------------------------------------------- data stream


class _MultiResClips:
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


class _StepBatches:
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


# ----------------------------------------------------------------------------- run folder


def _truncate_metrics(path: Path, keep_through: int, fields: Sequence[str] = METRIC_FIELDS) -> None:
    """Keep the CSV rows of steps ``<= keep_through`` (a killed run may have logged past its checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= keep_through]
    fd, tmp = tempfile.mkstemp(suffix=".csv", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_validation(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``validation.csv`` (step, res, subnet, t, loss); empty without validation."""
    path = Path(run_dir) / VALIDATION_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{"step": int(r["step"]), "res": int(r["res"]), "subnet": r["subnet"], "t": int(r["t"]),
                 "loss": float(r["loss"])} for r in csv.DictReader(f)]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed."""
    with open(Path(run_dir) / METRICS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({"step": int(r["step"]), "loss": float(r["loss"]), "res": int(r["res"]), "batch": int(r["batch"]),
                    "arch_id": r["arch_id"], "lr": float(r["lr"]), "seconds": float(r["seconds"]),
                    "grad_norm": float(r["grad_norm"]), "stage": r["stage"]})
    return out


@dataclass
class _Plan:
    """Everything :func:`prepare` checked, for the loop (driver and Ray workers alike)."""

    settings: TrainSettings
    space: SearchSpace
    cfg: TrainConfig
    seed: int
    total: int
    checkpoint: str | None  # resume from this checkpoint folder
    dataset: Any  # the training VideoClipDataset at the largest resolution
    sample_cfg: Any  # the experiment's sample: section, stored in checkpoints for `sned sample`
    val_dataset: Any = None  # the held-out videos (None: no validation)


def prepare(settings: TrainSettings) -> _Plan:
    """Validate a training invocation before anything is written.

    Raises:
        UserError: bad experiment or data folder, a run folder holding another experiment's run, a
            finished run, a corrupt checkpoint, or an existing run without ``--resume``.
    """
    space = load_space(settings.experiment)
    if space.spec.latent is not None:
        raise UserError(f"experiment {space.name!r} trains in the latent space of a video autoencoder, which "
                        f"sned-train does not provide yet; train a pixel-space experiment (e.g. tiny)")
    experiment_cfg = load_train_config(settings.experiment)
    if settings.workers < 1:
        raise UserError(f"--workers {settings.workers}: expected >= 1")
    if settings.steps is not None and settings.steps < 1:
        raise UserError(f"--steps {settings.steps}: expected >= 1")
    data = Path(settings.data)
    if not data.is_dir():
        raise UserError(f"--data {data} {'is not a folder' if data.exists() else 'does not exist'}")
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    found = list_checkpoints(out)
    run_file = out / RUN_FILE
    if (found or run_file.is_file()) and not settings.resume:
        raise UserError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text())
            previous_name, previous_hash = previous["experiment"], previous["space_hash"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{run_file} is not a sned-train run file; choose another --out") from None
        if (previous_name, previous_hash) != (space.name, space.hash):
            raise UserError(f"{out} holds a run of experiment {previous_name!r} (space {previous_hash}); cannot "
                            f"resume experiment {space.name!r} (space {space.hash}) into it")
    cfg, seed, checkpoint = experiment_cfg, settings.seed, None
    if settings.resume and found:
        state = read_state(found[-1])
        if (state["experiment"], state["space_hash"]) != (space.name, space.hash):
            raise UserError(f"{out} holds a run of experiment {state['experiment']!r} (space {state['space_hash']});"
                            f" cannot resume experiment {space.name!r} (space {space.hash}) into it")
        cfg = train_config_from_dict(state.get("config"), f"{found[-1]}: config")
        if cfg != experiment_cfg:
            logger.warning("resuming with the checkpoint's train config; the experiment's train: section differs")
        if seed is not None and seed != state.get("seed"):
            raise UserError(f"--seed {seed} differs from the run's seed {state.get('seed')}; resume without --seed")
        seed = int(state["seed"])
        if state.get("world_size", 1) != settings.workers:
            logger.warning("the run was trained with --workers %s, resumed with %s: batches change (they are "
                           "rounded to multiples of the ranks)", state.get("world_size", 1), settings.workers)
        checkpoint = str(found[-1])
    seed = 0 if seed is None else int(seed)
    total = settings.steps if settings.steps is not None else cfg.steps
    if cfg.resolution_weights and (len(cfg.resolution_weights) != len(space.resolutions)
                                   or min(cfg.resolution_weights) < 0 or sum(cfg.resolution_weights) <= 0):
        raise UserError(f"train.resolution_weights = {list(cfg.resolution_weights)}: expected "
                        f"{len(space.resolutions)} non-negative numbers, one per resolution {list(space.resolutions)}")
    if cfg.image_steps >= total:
        logger.warning("train.image_steps = %d covers all %d steps: the temporal layers will not be trained",
                       cfg.image_steps, total)
    if checkpoint is not None and int(read_state(checkpoint, verify=False)["step"]) >= total:
        raise UserError(f"{out} already finished {total} steps; pass a larger --steps to continue training")
    from sned.supernet.data import VideoClipDataset

    # Scanned once here, at the largest resolution; an empty or unreadable folder fails here.
    dataset = VideoClipDataset(data, frames=space.frames, size=max(space.resolutions), stride=cfg.frame_stride,
                               seed=seed, cache=cfg.cache_videos)
    classes = space.spec.classes
    if classes and len(dataset.class_names) != classes:
        found_classes = (f"{len(dataset.class_names)} class folders ({', '.join(dataset.class_names)})"
                         if dataset.class_names else "videos outside class folders")
        raise UserError(f"experiment {space.name!r} is class-conditional with space.classes = {classes}, but --data "
                        f"{data} has {found_classes}; use {classes} folders <data>/<class>/*.mp4, or space.classes: 0")
    train_index, val_index = split_held_out(len(dataset), cfg.val_videos)
    val_dataset = dataset.subset(val_index) if val_index else None
    if cfg.val_videos and not val_index:
        logger.warning("%d videos are too few to hold out train.val_videos = %d; training without validation",
                       len(dataset), cfg.val_videos)
    plan = _Plan(settings, space, cfg, seed, total, checkpoint, dataset.subset(train_index),
                 load_sample_config(settings.experiment), val_dataset)
    _sampler(plan)  # a bad train.arch fails here, in one line, before anything is written
    return plan


def split_held_out(n: int, val_videos: int) -> tuple[list[int], list[int]]:
    """Training and held-out video indices: ``val_videos`` evenly spaced over the sorted videos.

    Videos are listed in path order, i.e. grouped by class folder or class name, so evenly spaced
    picks cover every class. Nothing is held out when fewer than ``2 * val_videos`` videos exist.
    """
    if val_videos <= 0 or n < 2 * val_videos:
        return list(range(n)), []
    held = sorted({int(round(i)) for i in np.linspace(0, n - 1, val_videos)})
    chosen = set(held)
    return [i for i in range(n) if i not in chosen], held


def _sampler(plan: _Plan) -> UniformSampler:
    cfg = plan.cfg
    return make_sampler(plan.space, plan.seed, cfg.sampler, cost=cfg.cost, buckets=cfg.buckets,
                        warmup_steps=cfg.sampling_warmup_steps, pool=cfg.pool, sandwich=cfg.sandwich,
                        arch=_fixed_arch(cfg.arch) if cfg.sampler == "fixed" else None)


def _fixed_arch(text: str) -> dict[str, Any]:
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"train.arch is not JSON ({exc.msg} at character {exc.pos}): {text!r}") from None
    if not isinstance(arch, dict):
        raise UserError(f"train.arch: expected a JSON object like {{\"stages\": [...]}}, got {text!r}")
    return arch


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def _autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    use_bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()


class _Validation:
    """Held-out loss of the largest and smallest subnet per resolution (rank 0), logged to validation.csv."""

    def __init__(self, plan: _Plan, out: Path, start: int, device: torch.device, diffusion: Any):
        from sned.supernet.validation import make_held_out, reference_losses

        self.space, self.device, self.diffusion = plan.space, device, diffusion
        self.held = {}
        for res in self.space.resolutions:
            view = copy.copy(plan.val_dataset)
            view.size = int(res)
            clips = torch.stack([view.clip(i, epoch=0) for i in range(len(view))])
            labels = torch.tensor(view.labels) if self.space.spec.classes else None  # conditional: the true class
            self.held[res] = make_held_out(clips, res, plan.seed, labels=labels)
        path = out / VALIDATION_FILE
        _truncate_metrics(path, start, VALIDATION_FIELDS)
        stored: dict[int, dict[str, dict[int, float]]] = {}
        for row in read_validation(out) if path.is_file() else []:  # a resumed run keeps its references
            if row["step"] == 0:
                stored.setdefault(row["res"], {}).setdefault(row["subnet"], {})[row["t"]] = row["loss"]
        is_new = not stored  # no references yet: start the file over
        self.file = open(path, "w" if is_new else "a", newline="")  # noqa: SIM115 - closed by close()
        self.csv = csv.DictWriter(self.file, fieldnames=VALIDATION_FIELDS)
        self.references = stored or {res: reference_losses(held, diffusion, seed=plan.seed)
                                     for res, held in self.held.items()}
        if is_new:
            self.csv.writeheader()
            for res, refs in self.references.items():
                for name, losses in refs.items():
                    self.csv.writerows({"step": 0, "res": res, "subnet": name, "t": t, "loss": repr(v)}
                                       for t, v in losses.items())
            self.file.flush()

    def reference_lines(self) -> list[str]:
        from sned.supernet.validation import format_losses

        n = len(next(iter(self.held.values())).clips)
        return [f"reference held-out loss at {res} px ({n} clips): predict-zero {format_losses(refs['zero'])}; "
                f"per-pixel (no context) {format_losses(refs['per_pixel'])}" for res, refs in self.references.items()]

    def run(self, model: torch.nn.Module, step: int, use_temporal: bool, writer: Any) -> str:
        from sned.supernet.validation import held_out_loss

        parts = []
        for res, held in self.held.items():
            for name, arch in (("largest", self.space.largest(res)), ("smallest", self.space.smallest(res))):
                losses = held_out_loss(lambda z, t, y=None, a=arch: model(z, t, a, use_temporal, y), held,
                                       self.diffusion, device=self.device)
                self.csv.writerows({"step": step, "res": res, "subnet": name, "t": t, "loss": repr(v)}
                                   for t, v in losses.items())
                for t, v in losses.items():
                    writer.add_scalar(f"val/{res}px_{name}_t{t}", v, step)
                t200 = losses.get(200, next(iter(losses.values())))
                ratio = t200 / max(self.references[res]["per_pixel"].get(200, t200), 1e-12)
                parts.append(f"{res}px {name} {t200:.4f} ({ratio:.2f}x per-pixel)")
        self.file.flush()
        return f"step {step} held-out loss at t=200: " + "; ".join(parts)

    def close(self) -> None:
        self.file.close()


# ----------------------------------------------------------------------------- the loop


def train_loop(plan: _Plan, rank: int = 0, world_size: int = 1, device: torch.device | None = None) -> TrainResult:
    """Run (or continue) the training loop of a prepared plan on this rank.

    Rank 0 writes the metrics, TensorBoard events and checkpoints; with ``world_size > 1`` a
    ``torch.distributed`` process group must be initialised (Ray Train does it).
    """
    from tqdm import tqdm

    from sned.supernet.diffusion import GaussianDiffusion
    from sned.supernet.model import Supernet

    settings, space, cfg, seed, total = plan.settings, plan.space, plan.cfg, plan.seed, plan.total
    device = device or _device(settings.device)
    out = Path(settings.out)
    is_main = rank == 0

    # 1. model, EMA, optimizer (identical init on every rank: seeded, without touching the global RNG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Supernet(space)
    net = net.to(device).train()
    ema = EMA(net, cfg.ema_decay, cfg.ema_start)
    params = list(net.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    sampler = _sampler(plan)
    diffusion = GaussianDiffusion(cfg.prediction)

    # 2. resume
    start, position = 0, 0
    if plan.checkpoint is not None:
        state = read_state(plan.checkpoint)
        tensors = load_tensors(plan.checkpoint)
        load_into(net, split_prefix(tensors, "model"), plan.checkpoint)
        load_into(ema.shadow, split_prefix(tensors, "ema"), plan.checkpoint)
        optimizer.load_state_dict(optimizer_state(plan.checkpoint, state))
        try:
            sampler.check_state(state.get("sampler", {}))
        except ValueError as exc:
            raise UserError(f"cannot resume {plan.checkpoint}: {exc}") from None
        set_rng_states(state["rng"])
        start, position = int(state["step"]), int(state["data"]["position"])

    # 3. data: a seeded stream of per-step batches at each step's resolution
    def schedule(step: int) -> tuple[int, int]:
        res = resolution_at(space, seed, step, cfg.resolution_weights)
        return res, batch_size_at(cfg, space, res, world_size)

    clips = _MultiResClips(plan.dataset, space.resolutions)
    loader = torch.utils.data.DataLoader(
        clips, batch_sampler=_StepBatches(len(clips), seed, start, position, total, schedule, rank, world_size),
        num_workers=cfg.data_workers, pin_memory=device.type == "cuda")

    # 4. logs (rank 0)
    writer, metrics_file, csv_writer = None, None, None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / RUN_FILE, {"experiment": space.name, "space_hash": space.hash, "seed": seed,
                                     "data": str(Path(settings.data).resolve()), "steps": total,
                                     "workers": world_size, "config": config_to_dict(cfg)})
        _truncate_metrics(out / METRICS_FILE, start)
        new_file = not (out / METRICS_FILE).is_file()
        metrics_file = open(out / METRICS_FILE, "a", newline="")  # noqa: SIM115 - closed in finally
        csv_writer = csv.DictWriter(metrics_file, fieldnames=METRIC_FIELDS)
        if new_file:
            csv_writer.writeheader()
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=start + 1)

    def bar_write(line: str) -> None:
        if settings.progress:
            tqdm.write(line, file=sys.stderr)
        logger.info(line)

    validation = _Validation(plan, out, start, device, diffusion) if is_main and plan.val_dataset is not None else None
    if validation is not None:
        for line in validation.reference_lines():
            bar_write(line)

    def checkpoint(step: int) -> Path | None:
        path = None
        if is_main:
            path = save_checkpoint(out, step, net, ema.shadow, optimizer, {
                "experiment": space.name, "space": space.to_dict(), "space_hash": space.hash,
                "config": config_to_dict(cfg), "sample_config": config_to_dict(plan.sample_cfg), "seed": seed,
                "sampler": sampler.state_dict(), "class_names": list(plan.dataset.class_names) if space.spec.classes else [],
                "data": {"position": position, "root": str(Path(settings.data).resolve())},
                "world_size": world_size, "total_steps": total}, keep=cfg.keep_checkpoints)
            metrics_file.flush()
        if world_size > 1:
            torch.distributed.barrier()
        return path

    losses: list[float] = []
    last_checkpoint: Path | None = None
    began = time.perf_counter()
    stop = total if settings.stop_after is None else min(total, start + settings.stop_after)
    bar = tqdm(total=total, initial=start, desc=f"train {space.name}", unit="step",
               disable=not (is_main and settings.progress), dynamic_ncols=True)
    try:
        batches = iter(loader)
        for step in range(start, stop):
            t0 = time.perf_counter()
            res, batch = schedule(step)
            x0, labels = next(batches)
            x0 = x0.to(device, non_blocking=True)  # (batch / world_size, c, f, res, res)
            labels = drop_labels(labels, space.spec.classes, cfg.label_dropout, torch_seed(seed, step, rank, 5))
            labels = None if labels is None else labels.to(device)
            archs = sampler.sample(step, res)
            use_temporal = step >= cfg.image_steps
            lr = lr_at(cfg, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            generator = torch.Generator().manual_seed(torch_seed(seed, step, rank, 3))
            optimizer.zero_grad(set_to_none=True)
            step_losses = []
            for arch in archs:  # one arch, or the sandwich: gradients accumulate
                with _autocast(cfg, device):
                    loss = diffusion.loss(lambda z, t, a=arch, u=use_temporal, y=labels: net(z, t, a, u, y), x0,
                                          generator)
                (loss / len(archs)).backward()
                step_losses.append(loss.detach())
            loss_value = torch.stack(step_losses).mean()
            if world_size > 1:
                all_reduce_gradients(params, world_size)
                torch.distributed.all_reduce(loss_value)
                loss_value /= world_size
            grads = [p for p in params if p.grad is not None]
            if cfg.grad_clip > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(grads, cfg.grad_clip))
            else:
                grad_norm = float(torch.linalg.vector_norm(torch.stack([g.grad.norm() for g in grads])))
            optimizer.step()
            ema.update(net, step)
            position += batch
            loss_f = float(loss_value)
            losses.append(loss_f)
            seconds = time.perf_counter() - t0
            if is_main:
                csv_writer.writerow({"step": step + 1, "loss": repr(loss_f), "res": res, "batch": batch,
                                     "arch_id": "+".join(arch_id(a) for a in archs), "lr": repr(lr),
                                     "seconds": f"{seconds:.4f}", "grad_norm": f"{grad_norm:.6g}",
                                     "stage": "video" if use_temporal else "image"})
                if (step + 1) % cfg.log_every == 0:
                    writer.add_scalar("train/loss", loss_f, step + 1)
                    writer.add_scalar(f"train/loss_{res}px", loss_f, step + 1)
                    writer.add_scalar("train/lr", lr, step + 1)
                    writer.add_scalar("train/grad_norm", grad_norm, step + 1)
                    writer.add_scalar("train/seconds_per_step", seconds, step + 1)
                bar.set_postfix(loss=f"{loss_f:.4f}", res=res, refresh=False)
                bar.update(1)
            if validation is not None and ((step + 1) % cfg.val_every == 0 or step + 1 == total):
                bar_write(validation.run(ema.shadow, step + 1, use_temporal, writer))
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
                last_checkpoint = checkpoint(step + 1) or last_checkpoint
    finally:
        bar.close()
        if is_main:
            metrics_file.close()
            writer.close()
            if validation is not None:
                validation.close()
    end = start + len(losses)
    return TrainResult(out, start, end, losses, time.perf_counter() - began, last_checkpoint)


# ----------------------------------------------------------------------------- entry points


def _ray_worker(config: dict[str, Any]) -> None:
    """One Ray Train rank: rebuild the plan (already validated by the driver) and run the loop."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    settings = TrainSettings(**config["settings"])
    plan = prepare(settings)
    threads = config.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    result = train_loop(plan, context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device())
    ray.train.report({"end_step": result.end_step, "loss": result.losses[-1] if result.losses else float("nan")})


def train(settings: TrainSettings) -> TrainResult:
    """Train (in this process, or on ``settings.workers`` Ray Train ranks) and return what was done."""
    plan = prepare(settings)
    if settings.workers == 1:
        return train_loop(plan)
    began = time.perf_counter()
    start = int(read_state(plan.checkpoint, verify=False)["step"]) if plan.checkpoint else 0
    use_gpu = _device(settings.device).type == "cuda"
    cpus = os.cpu_count() or 1
    out = Path(settings.out).resolve()
    worker_settings = asdict(replace(settings, out=str(out), data=str(Path(settings.data).resolve()),
                                     seed=plan.seed, progress=False))
    # A private local Ray (RAY_ADDRESS aside), never a head some `ray start` left on this machine.
    with start_ray(None, num_cpus=max(cpus, settings.workers)):
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        trainer = TorchTrainer(
            _ray_worker,
            train_loop_config={"settings": worker_settings, "threads": max(1, cpus // settings.workers)},
            scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": 1, **({"GPU": 1} if use_gpu else {})}),
            run_config=RunConfig(name="ray", storage_path=str(out / "ray")),
        )
        trainer.fit()
    rows = read_metrics(out)
    losses = [r["loss"] for r in rows if r["step"] > start]
    found = list_checkpoints(out)
    return TrainResult(out, start, start + len(losses), losses, time.perf_counter() - began,
                       found[-1] if found else None)


def seconds_per_step(rows: Sequence[dict[str, Any]]) -> dict[int, tuple[float, int]]:
    """Median seconds per step and step count, per resolution, of metric rows (the first step left out)."""
    by_res: dict[int, list[float]] = {}
    for r in rows[1:]:
        by_res.setdefault(r["res"], []).append(r["seconds"])
    return {res: (statistics.median(v), len(v)) for res, v in sorted(by_res.items())}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned-train`` / ``sned train`` options."""
    parser.add_argument("experiment", help="bundled experiment name (tiny, pixel-1.6b) or a YAML path")
    parser.add_argument("--data", required=True, help="folder of training videos (e.g. from `sned data synth`)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, tb/)")
    parser.add_argument("--steps", type=int, help="total steps (default: the experiment's train.steps)")
    parser.add_argument("--seed", type=int, help="run seed (default 0; a resumed run keeps its own)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's newest checkpoint")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel ranks under Ray Train (default 1)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train and print a summary: steps, loss, seconds per step per resolution, the checkpoint."""
    settings = TrainSettings(args.experiment, args.data, args.out, args.steps, args.seed, args.resume,
                             args.workers, args.device, progress=not args.quiet)
    result = train(settings)
    rows = [r for r in read_metrics(result.out) if r["step"] > result.start_step]
    speed = ", ".join(f"{res}px {s:.2f} s (n={n})" for res, (s, n) in seconds_per_step(rows).items())
    tail = result.losses[-50:]
    print(f"trained steps {result.start_step + 1}..{result.end_step} in {result.seconds:.1f} s; "
          f"mean loss of the last {len(tail)} steps {statistics.fmean(tail):.4f}" if tail else "no steps run")
    print(f"median seconds per step: {speed}")
    val = read_validation(result.out)
    last = max((r["step"] for r in val), default=0)
    for res in sorted({r["res"] for r in val}):
        per = {(r["subnet"], r["t"]): r["loss"] for r in val if r["res"] == res and r["step"] in (0, last)}
        cells = [f"{name} " + "/".join(f"{per[(name, t)]:.3f}" for t in sorted({t for _, t in per}) if (name, t) in per)
                 for name in ("largest", "smallest", "per_pixel", "zero") if any(k[0] == name for k in per)]
        print(f"held-out loss at {res} px, step {last} (t = 50/200/500/800): " + "; ".join(cells))
    print(f"checkpoint: {result.checkpoint}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """The ``sned-train`` console script."""
    from sned.search.cli import run_command

    sys.exit(run_command(__name__, "sned-train", sys.argv[1:] if argv is None else argv,
                         "train the supernet (superposition over widths, depths, resolutions)"))


__all__ = ["EMA", "METRIC_FIELDS", "VALIDATION_FIELDS", "TrainResult", "TrainSettings", "add_arguments", "all_reduce_gradients",
           "batch_size_at", "lr_at", "main", "prepare", "read_metrics", "read_validation", "run",
           "seconds_per_step", "split_held_out", "train", "train_loop"]
