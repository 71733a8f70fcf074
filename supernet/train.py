"""Superposition training of the elastic supernet: the loop behind ``sned-train`` / ``sned train``.

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
exactly those gradients itself, as one flat buffer (:func:`~sned.supernet.train_step.all_reduce_gradients`).

**Validation** (:mod:`sned.supernet.validation`): ``train.val_videos`` videos are held out of
training; every ``train.val_every`` steps and at the end, the EMA weights of the largest and the
smallest subnet are scored on fixed clips, noise and timesteps (t = 50, 200, 500, 800) at every
resolution. The predict-zero and per-pixel reference levels are printed once at the start.

Outputs in the run folder (:mod:`sned.supernet.train_logs`): ``run.json`` (settings),
``metrics.csv`` (one row per step: step, loss, resolution, batch, arch id, learning rate,
seconds, ...), ``validation.csv`` (step, res, subnet, t, loss; the reference levels as subnets
``zero`` and ``per_pixel`` at step 0), ``tb/`` (TensorBoard) and ``checkpoints/step-XXXXXXXX/``
(:mod:`sned.supernet.checkpoint`).

The pieces live beside this module: :mod:`~sned.supernet.train_plan` (settings, checks, the plan),
:mod:`~sned.supernet.train_step` (schedule, EMA, data stream), :mod:`~sned.supernet.train_logs`
(the run folder's files) and :mod:`~sned.supernet.train_cli` (the command).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sned.supernet.base.errors import UserError
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
from sned.supernet.config import TrainConfig, config_to_dict
from sned.supernet.ray_start import start_ray
from sned.supernet.sampler import UniformSampler, resolution_at
from sned.supernet.space import arch_id
from sned.supernet.train_logs import (
    METRIC_FIELDS,
    VALIDATION_FIELDS,
    MetricsLog,
    ValidationLog,
    read_metrics,
    read_validation,
    seconds_per_step,
)
from sned.supernet.train_plan import (
    Plan,
    TrainSettings,
    attach_latents,
    make_arch_sampler,
    prepare,
    split_held_out,
)
from sned.supernet.train_step import (
    EMA,
    MultiResClips,
    StepBatches,
    all_reduce_gradients,
    autocast,
    batch_size_at,
    drop_labels,
    lr_at,
    resolve_device,
    torch_seed,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training invocation did."""

    out: Path
    start_step: int
    end_step: int
    losses: list[float]  # of the steps run by this invocation
    seconds: float
    checkpoint: Path | None


# ----------------------------------------------------------------------------- the loop


@dataclass
class _State:
    """What the loop trains: the supernet, its EMA, the optimiser, the arch sampler, the diffusion."""

    net: torch.nn.Module
    ema: EMA
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    sampler: UniformSampler
    diffusion: Any


def _build(plan: Plan, device: torch.device) -> _State:
    """Model, EMA and optimiser, identical on every rank: seeded, without touching the global RNG."""
    from sned.supernet.diffusion import GaussianDiffusion
    from sned.supernet.model import Supernet

    cfg = plan.cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        net = Supernet(plan.space)
    net = net.to(device).train()
    ema = EMA(net, cfg.ema_decay, cfg.ema_start)
    params = list(net.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    return _State(net, ema, params, optimizer, make_arch_sampler(plan), GaussianDiffusion(cfg.prediction))


def _resume(plan: Plan, state: _State) -> tuple[int, int]:
    """Load the plan's checkpoint (weights, EMA, optimiser, sampler, RNG states); ``(step, data position)``."""
    if plan.checkpoint is None:
        return 0, 0
    saved = read_state(plan.checkpoint)
    tensors = load_tensors(plan.checkpoint)
    load_into(state.net, split_prefix(tensors, "model"), plan.checkpoint)
    load_into(state.ema.shadow, split_prefix(tensors, "ema"), plan.checkpoint)
    state.optimizer.load_state_dict(optimizer_state(plan.checkpoint, saved))
    try:
        state.sampler.check_state(saved.get("sampler", {}))
    except ValueError as exc:
        raise UserError(f"cannot resume {plan.checkpoint}: {exc}") from None
    set_rng_states(saved["rng"])
    return int(saved["step"]), int(saved["data"]["position"])


def _optimise(state: _State, cfg: TrainConfig, archs: Sequence[dict[str, Any]], x0: torch.Tensor,
              labels: torch.Tensor | None, use_temporal: bool, generator: torch.Generator, device: torch.device,
              world_size: int) -> tuple[float, float]:
    """One optimiser step over ``archs`` (gradients accumulated): ``(mean loss over ranks, gradient norm)``."""
    net, params = state.net, state.params
    state.optimizer.zero_grad(set_to_none=True)
    step_losses = []
    for arch in archs:  # one arch, or the sandwich: gradients accumulate
        with autocast(cfg, device):
            loss = state.diffusion.loss(lambda z, t, a=arch, u=use_temporal, y=labels: net(z, t, a, u, y), x0,
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
    state.optimizer.step()
    return float(loss_value), grad_norm


def train_loop(plan: Plan, rank: int = 0, world_size: int = 1, device: torch.device | None = None) -> TrainResult:
    """Run (or continue) the training loop of a prepared plan on this rank.

    Rank 0 writes the metrics, TensorBoard events and checkpoints; with ``world_size > 1`` a
    ``torch.distributed`` process group must be initialised (Ray Train does it).
    """
    from tqdm import tqdm

    settings, space, cfg, seed, total = plan.settings, plan.space, plan.cfg, plan.seed, plan.total
    device = device or resolve_device(settings.device)
    out = Path(settings.out)
    is_main = rank == 0

    # 1. model, EMA, optimizer; 2. resume
    state = _build(plan, device)
    start, position = _resume(plan, state)

    # 3. data: a seeded stream of per-step batches at each step's resolution
    def schedule(step: int) -> tuple[int, int]:
        res = resolution_at(space, seed, step, cfg.resolution_weights)
        return res, batch_size_at(cfg, space, res, world_size)

    clips = MultiResClips(plan.dataset, space.resolutions)
    loader = torch.utils.data.DataLoader(
        clips, batch_sampler=StepBatches(len(clips), seed, start, position, total, schedule, rank, world_size),
        num_workers=cfg.data_workers, pin_memory=device.type == "cuda")

    # 4. logs (rank 0)
    log = MetricsLog(out, start, {"experiment": space.name, "space_hash": space.hash, "seed": seed,
                                  "data": str(Path(settings.data).resolve()), "steps": total, "workers": world_size,
                                  "config": config_to_dict(cfg)}, cfg.log_every) if is_main else None

    def bar_write(line: str) -> None:
        if settings.progress:
            tqdm.write(line, file=sys.stderr)
        logger.info(line)

    validation = (ValidationLog(space, plan.val_dataset, seed, out, start, device, state.diffusion)
                  if is_main and plan.val_dataset is not None else None)
    if validation is not None:
        for line in validation.reference_lines():
            bar_write(line)

    def checkpoint(step: int) -> Path | None:
        path = None
        if log is not None:
            path = save_checkpoint(out, step, state.net, state.ema.shadow, state.optimizer, {
                "experiment": space.name, "space": space.to_dict(), "space_hash": space.hash,
                "config": config_to_dict(cfg), "sample_config": config_to_dict(plan.sample_cfg), "seed": seed,
                "sampler": state.sampler.state_dict(),
                "class_names": list(plan.dataset.class_names) if space.spec.classes else [],
                "data": {"position": position, "root": str(Path(settings.data).resolve())},
                "world_size": world_size, "total_steps": total,
                **({"vae": plan.latent.record()} if plan.latent else {})}, keep=cfg.keep_checkpoints)
            log.flush()
        if world_size > 1:
            torch.distributed.barrier()
        return path

    # 5. the steps
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
            archs = state.sampler.sample(step, res)
            use_temporal = step >= cfg.image_steps
            lr = lr_at(cfg, step, total)
            for group in state.optimizer.param_groups:
                group["lr"] = lr
            generator = torch.Generator().manual_seed(torch_seed(seed, step, rank, 3))
            loss, grad_norm = _optimise(state, cfg, archs, x0, labels, use_temporal, generator, device, world_size)
            state.ema.update(state.net, step)
            position += batch
            losses.append(loss)
            if log is not None:
                log.step(step + 1, loss, res, batch, [arch_id(a) for a in archs], lr, time.perf_counter() - t0,
                         grad_norm, "video" if use_temporal else "image")
                bar.set_postfix(loss=f"{loss:.4f}", res=res, refresh=False)
                bar.update(1)
            if validation is not None and ((step + 1) % cfg.val_every == 0 or step + 1 == total):
                bar_write(validation.run(state.ema.shadow, step + 1, use_temporal, log.writer))
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
                last_checkpoint = checkpoint(step + 1) or last_checkpoint
    finally:
        bar.close()
        if log is not None:
            log.close()
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
    attach_latents(plan, build=False)
    threads = config.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    result = train_loop(plan, context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device())
    ray.train.report({"end_step": result.end_step, "loss": result.losses[-1] if result.losses else float("nan")})


def train(settings: TrainSettings) -> TrainResult:
    """Train (in this process, or on ``settings.workers`` Ray Train ranks) and return what was done."""
    plan = prepare(settings)
    attach_latents(plan, build=True, progress=settings.progress)
    if settings.workers == 1:
        return train_loop(plan)
    began = time.perf_counter()
    start = int(read_state(plan.checkpoint, verify=False)["step"]) if plan.checkpoint else 0
    use_gpu = resolve_device(settings.device).type == "cuda"
    cpus = os.cpu_count() or 1
    out = Path(settings.out).resolve()
    worker_settings = asdict(replace(settings, out=str(out), data=str(Path(settings.data).resolve()),
                                     seed=plan.seed, progress=False,
                                     **({"vae": plan.latent.vae, "latents": plan.latent.cache} if plan.latent else {})))
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


# The training API in one place (the pieces are defined in the train_* modules beside this one).
__all__ = ["EMA", "METRIC_FIELDS", "VALIDATION_FIELDS", "Plan", "TrainResult", "TrainSettings", "all_reduce_gradients",
           "batch_size_at", "drop_labels", "lr_at", "prepare", "read_metrics", "read_validation", "seconds_per_step",
           "split_held_out", "train", "train_loop"]
