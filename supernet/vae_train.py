"""Training sned's video VAE (``sned vae train``): a resumable loop that ends in a self-describing folder.

Every step (:func:`train_vae`):

1. takes the next ``batch_size`` training videos of a seeded epoch shuffle; for each a clip of
   ``frames`` frames (start seeded by ``(seed, video, epoch)``, as :class:`VideoClipDataset` draws
   it) at one of ``resolutions`` (drawn per clip), cropped to ``min(resolutions)`` pixels at a
   seeded offset. The network has no attention and is resolution-agnostic, so crops of the 64 px
   clips teach it the 64 px statistics at the cost of 32 px steps;
2. encodes, samples the latent (reparameterisation; noise from a generator seeded by
   ``(seed, step)``), decodes, and takes an AdamW step on L1 + ``kl_weight`` x KL
   (:func:`~sned.supernet.vae.vae_loss`), with linear warm-up, cosine decay and gradient clipping.

No global RNG is used after initialisation, so a run resumed from a checkpoint reproduces the
uninterrupted run's losses and weights exactly (same device and thread count). Every
``val_every`` steps (and at the end) the held-out PSNR per resolution is printed and logged.

At the end the latent statistics are measured on training clips at every resolution (posterior
samples, as latent diffusion trains on them): ``shift_factor`` = their mean and
``scaling_factor`` = 1 / their std, so ``(z - shift) * scale`` has zero mean and unit variance
(Stable Diffusion's ``scaling_factor``, SD3's ``shift_factor``).

The output folder (``--out``):

* ``vae.safetensors``: the weights (fp32);
* ``vae.json``: ``format`` ``"sned-vae"``, ``architecture`` (:class:`VAEConfig`),
  ``latent_channels``, ``spatial_factor``, ``temporal_factor``, ``scaling_factor``,
  ``shift_factor``, ``latent_stats``, ``held_out`` (PSNR per resolution), ``training`` (settings,
  data hash, held-out videos), ``provenance`` (command, commit, date, seconds, host, versions) and
  the weights' sha256;
* ``metrics.csv`` (step, loss, l1, kl, lr, seconds, grad_norm), ``validation.csv`` (step, res,
  psnr) and ``checkpoints/step-XXXXXXXX/`` (``state.safetensors`` with model + AdamW state,
  ``state.json``), each checkpoint written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sned.supernet.base.errors import UserError
from sned.supernet.base.files import atomic_path, file_sha256, write_json_atomic
from sned.supernet.base.provenance import git_commit, package_version
from sned.supernet.vae import KLVideoAutoencoder, VAEConfig, psnr, vae_loss
from sned.supernet.vae_checkpoint import (
    CHECKPOINTS,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    read_metrics,
    save_checkpoint,
    truncate_csv,
)

logger = logging.getLogger(__name__)

FORMAT, VERSION = "sned-vae", 1
WEIGHTS, CONFIG = "vae.safetensors", "vae.json"
METRICS_FILE, VALIDATION_FILE = "metrics.csv", "validation.csv"
METRIC_FIELDS = ("step", "loss", "l1", "kl", "lr", "seconds", "grad_norm")
VALIDATION_FIELDS = ("step", "res", "psnr")
DEFAULT_STEPS = 4000
_CLIP_STREAM, _NOISE_STREAM, _ORDER_STREAM, _STATS_STREAM = 7, 3, 11, 13


@dataclass(frozen=True)
class VAETrainSettings:
    """One ``sned vae train`` run.

    Args:
        data: folder of training videos (``sned data synth`` output; class folders or flat).
        out: the VAE folder (new, or one to resume with ``resume``).
        steps: total optimiser steps (a resumed run may raise it; the cosine schedule follows).
        seed: seeds the initial weights, the split-free clip stream and the latent noise.
        resume: continue from the newest checkpoint in ``out``.
        architecture: the network (latent channels, widths -> spatial factor, temporal factor).
        resolutions: frame sizes the VAE serves (px); clips are drawn at each and cropped to the smallest.
        frames: frames per training clip.
        batch_size: clips per step.
        lr: AdamW peak learning rate.
        lr_warmup_steps: linear warm-up steps.
        lr_min: the cosine schedule's final learning rate.
        kl_weight: weight of the per-element KL term against the per-pixel L1.
        grad_clip: global gradient-norm clip (0: off).
        val_videos: videos held out for PSNR (evenly spaced, as ``sned-train`` holds them out).
        val_every: steps between held-out PSNR evaluations (and one at the end).
        checkpoint_every: steps between checkpoints (and one at the end).
        keep_checkpoints: newest checkpoints kept.
        stats_clips: training clips per resolution for the latent mean/std (evenly spaced videos).
        cache_videos: keep decoded videos in memory (the synthetic default: ~0.5 GB).
        dtype: ``bf16`` runs the forward under bf16 autocast (weights, optimizer and loss in fp32;
            1.6x faster per step on this AVX512-BF16 CPU), ``fp32`` without it.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        stop_after: leave after this many steps of this invocation, as if killed (tests).
        progress: show a tqdm bar.
        command: the command line recorded in the provenance (default: ``sys.argv``).
    """

    data: str
    out: str
    steps: int = DEFAULT_STEPS
    seed: int = 0
    resume: bool = False
    architecture: VAEConfig = field(default_factory=VAEConfig)
    resolutions: tuple[int, ...] = (32, 64)
    frames: int = 8
    batch_size: int = 8
    lr: float = 5e-4
    lr_warmup_steps: int = 100
    lr_min: float = 5e-5
    kl_weight: float = 1e-4
    grad_clip: float = 1.0
    val_videos: int = 24
    val_every: int = 500
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    stats_clips: int = 64
    cache_videos: bool = True
    dtype: Literal["fp32", "bf16"] = "bf16"
    device: str = "auto"
    stop_after: int | None = None
    progress: bool = True
    command: str | None = None

    def identity(self, data_hash: str) -> dict[str, Any]:
        """The settings that decide the weights: a resumed run must match them (``steps`` may grow)."""
        return {"data_hash": data_hash, "seed": self.seed, "architecture": self.architecture.to_dict(),
                "resolutions": list(self.resolutions), "frames": self.frames, "batch_size": self.batch_size,
                "lr": self.lr, "lr_warmup_steps": self.lr_warmup_steps, "lr_min": self.lr_min,
                "kl_weight": self.kl_weight, "grad_clip": self.grad_clip, "val_videos": self.val_videos,
                "dtype": self.dtype}


@dataclass
class VAETrainResult:
    """What an invocation did."""

    out: Path
    start_step: int
    end_step: int
    losses: list[float]
    seconds: float
    config: dict[str, Any] | None  # vae.json once the run is complete
    is_reused: bool = False  # the folder already held the finished run


# ----------------------------------------------------------------------------- small helpers


def _seed(*parts: int) -> int:
    """A 63-bit torch seed from integers (seed, step, stream)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def lr_at(settings: VAETrainSettings, step: int, total: int) -> float:
    """Learning rate of 0-based ``step``: linear warm-up, then cosine from ``lr`` to ``lr_min``."""
    if step < settings.lr_warmup_steps:
        return settings.lr * (step + 1) / settings.lr_warmup_steps
    progress = min(1.0, (step - settings.lr_warmup_steps) / max(1, total - settings.lr_warmup_steps))
    return settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (1 + math.cos(math.pi * progress))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}; valid: auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    return torch.device(name)


def _check_settings(s: VAETrainSettings) -> None:
    for name, value, low in (("--steps", s.steps, 1), ("--batch-size", s.batch_size, 1), ("--frames", s.frames, 1),
                             ("--seed", s.seed, 0), ("val_every", s.val_every, 1),
                             ("checkpoint_every", s.checkpoint_every, 1), ("stats_clips", s.stats_clips, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise UserError(f"{name} {value!r}: expected an integer >= {low}")
    factor = s.architecture.spatial_factor
    if not s.resolutions or any(int(r) != r or r < factor or r % factor for r in s.resolutions):
        raise UserError(f"--res {','.join(map(str, s.resolutions))}: expected sizes divisible by the spatial "
                        f"factor {factor}")
    if s.frames % s.architecture.temporal_factor:
        raise UserError(f"--frames {s.frames} is not divisible by the temporal factor {s.architecture.temporal_factor}")
    if s.dtype not in ("fp32", "bf16"):
        raise UserError(f"--dtype {s.dtype!r}; valid: fp32, bf16")
    if not (s.lr > 0 and math.isfinite(s.lr)) or s.kl_weight < 0 or s.grad_clip < 0:
        raise UserError(f"lr {s.lr} must be > 0, kl_weight {s.kl_weight} and grad_clip {s.grad_clip} >= 0")


# ----------------------------------------------------------------------------- data


class _Clips:
    """Training clips cropped to ``crop`` px and fixed held-out clips, from one scan of the folder."""

    def __init__(self, dataset: Any, resolutions: tuple[int, ...], seed: int):
        import copy

        self.views = {}
        for res in resolutions:
            view = copy.copy(dataset)  # shares the video list and the decoded-frame cache
            view.size = int(res)
            self.views[int(res)] = view
        self.resolutions, self.crop, self.seed = tuple(int(r) for r in resolutions), int(min(resolutions)), seed
        self._orders: dict[int, np.ndarray] = {}

    def training_batch(self, train_index: list[int], step: int, batch_size: int) -> torch.Tensor:
        """The clips of ``step``: positions ``step * batch_size ...`` of the seeded epoch shuffle."""
        clips = []
        for position in range(step * batch_size, (step + 1) * batch_size):
            epoch, offset = divmod(position, len(train_index))
            if epoch not in self._orders:
                self._orders = {epoch: np.random.default_rng([self.seed, epoch, _ORDER_STREAM]).permutation(
                    len(train_index))}
            index = train_index[int(self._orders[epoch][offset])]
            rng = np.random.default_rng([self.seed, index, epoch, _CLIP_STREAM])
            res = self.resolutions[int(rng.integers(len(self.resolutions)))]
            top, left = (int(v) for v in rng.integers(0, res - self.crop + 1, size=2))
            clip = self.views[res].clip(index, epoch)  # (c, f, res, res)
            clips.append(clip[..., top: top + self.crop, left: left + self.crop])
        return torch.stack(clips)

    def full_clips(self, indices: list[int], res: int, epoch: int = 0) -> torch.Tensor:
        """Whole-frame clips ``(n, c, f, res, res)`` of the videos at ``indices`` (the held-out set: epoch 0)."""
        return torch.stack([self.views[res].clip(i, epoch) for i in indices])


@torch.inference_mode()
def held_out_psnr(model: KLVideoAutoencoder, clips: torch.Tensor, batch_size: int = 8) -> list[float]:
    """Per-clip PSNR (dB) of reconstructing ``clips`` through the posterior mean, clamped to [-1, 1]."""
    was_training = model.training
    model.eval()
    values = []
    for i in range(0, len(clips), batch_size):
        x = clips[i: i + batch_size].to(model.device)
        values += psnr(x, model.decode(model.encode(x))).tolist()
    model.train(was_training)
    return values


@torch.inference_mode()
def latent_statistics(model: KLVideoAutoencoder, batches: list[torch.Tensor], seed: int) -> dict[str, Any]:
    """Mean and std of unscaled posterior samples (and of the means) over ``batches`` of clips."""
    model.eval()
    samples, means = [], []
    generator = torch.Generator().manual_seed(_seed(seed, _STATS_STREAM))
    for x in batches:
        mean, logvar = model.moments(x.to(model.device, model.dtype))
        eps = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
        samples.append((mean + torch.exp(0.5 * logvar) * eps).double().cpu().transpose(0, 1).flatten(1))
        means.append(mean.double().cpu().transpose(0, 1).flatten(1))
    z, m = torch.cat(samples, dim=1), torch.cat(means, dim=1)  # (C, n)
    return {"mean": float(z.mean()), "std": float(z.std()), "std_of_means": float(m.std()),
            "channel_mean": z.mean(dim=1).tolist(), "channel_std": z.std(dim=1).tolist(),
            "elements": int(z.numel())}


# ----------------------------------------------------------------------------- the run


def _prepare(settings: VAETrainSettings) -> tuple[Any, list[int], list[int], dict[str, Any], Path | None]:
    """Check everything before writing: returns (dataset, train, held-out, identity, checkpoint to resume)."""
    from sned.supernet.data import VideoClipDataset
    from sned.supernet.train_plan import split_held_out
    from sned.supernet.video_io import data_folder_hash

    _check_settings(settings)
    data, out = Path(settings.data), Path(settings.out)
    if not data.is_dir():
        raise UserError(f"video folder {data} {'is not a folder' if data.exists() else 'does not exist'}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    found = list_checkpoints(out)
    has_run = bool(found) or (out / CONFIG).is_file() or (out / METRICS_FILE).is_file()
    if has_run and not settings.resume:
        raise UserError(f"{out} already holds a VAE run; pass --resume to continue it or choose another --out")
    if out.is_dir() and not has_run and any(p.name != CHECKPOINTS for p in out.iterdir()):
        raise UserError(f"{out} is not empty and holds no VAE run; choose a new or empty folder")
    dataset = VideoClipDataset(data, frames=settings.frames, size=max(settings.resolutions), seed=settings.seed,
                               cache=settings.cache_videos)
    identity = settings.identity(data_folder_hash(data))
    checkpoint = None
    if found:
        state = read_checkpoint_state(found[-1])
        if state.get("identity") != identity:
            old = state.get("identity") or {}
            differ = [k for k in identity if old.get(k) != identity[k]] or ["format"]
            raise UserError(f"{out} holds a VAE run with other {', '.join(differ)}; resume it with its own "
                            f"settings or choose another --out")
        checkpoint = found[-1]
    train_index, held = split_held_out(len(dataset), settings.val_videos)
    return dataset, train_index, held, identity, checkpoint


def train_vae(settings: VAETrainSettings) -> VAETrainResult:
    """Train (or resume, or find finished) a VAE run and write its folder (see the module docstring).

    Raises:
        UserError: bad settings, a missing or empty data folder, an ``--out`` holding something else,
            a run of other settings, a corrupt checkpoint.
    """
    from tqdm import tqdm

    began = time.perf_counter()
    out = Path(settings.out)
    dataset, train_index, held, identity, checkpoint = _prepare(settings)
    finished = _read_json(out / CONFIG)
    if finished is not None and finished.get("format") == FORMAT:
        done = int(finished.get("training", {}).get("steps", 0))
        if done == settings.steps:  # nothing to do (the identity was checked against the checkpoint)
            return VAETrainResult(out, done, done, [], time.perf_counter() - began, finished, is_reused=True)
    device = _device(settings.device)

    # 1. model and optimizer, identically initialised from the seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = KLVideoAutoencoder(settings.architecture)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.99), weight_decay=0.0)
    start, elapsed = 0, 0.0
    if checkpoint is not None:
        state = read_checkpoint_state(checkpoint)
        load_checkpoint(checkpoint, model, optimizer)
        start, elapsed = int(state["step"]), float(state.get("seconds", 0.0))
        if start > settings.steps:
            raise UserError(f"{out} already trained {start} steps (> --steps {settings.steps})")

    def autocast() -> contextlib.AbstractContextManager:
        if settings.dtype == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # 2. data and logs
    clips = _Clips(dataset, settings.resolutions, settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, fields in ((METRICS_FILE, METRIC_FIELDS), (VALIDATION_FILE, VALIDATION_FIELDS)):
        truncate_csv(out / name, start, fields)
    files = {}
    for name, fields in ((METRICS_FILE, METRIC_FIELDS), (VALIDATION_FILE, VALIDATION_FIELDS)):
        is_new = not (out / name).is_file()
        handle = open(out / name, "a", newline="")  # noqa: SIM115 - closed in finally
        writer = csv.DictWriter(handle, fieldnames=fields)
        if is_new:
            writer.writeheader()
        files[name] = (handle, writer)
    held_clips = {res: clips.full_clips(held, res) for res in settings.resolutions} if held else {}

    def validate(step: int) -> dict[int, float]:
        scores = {res: statistics.fmean(held_out_psnr(model, x)) for res, x in held_clips.items()}
        handle, writer = files[VALIDATION_FILE]
        writer.writerows({"step": step, "res": res, "psnr": f"{v:.4f}"} for res, v in scores.items())
        handle.flush()
        if scores:
            line = f"step {step} held-out PSNR: " + ", ".join(f"{r} px {v:.2f} dB" for r, v in scores.items())
            if settings.progress:
                tqdm.write(line, file=sys.stderr)
            logger.info(line)
        return scores

    # 3. the loop
    losses: list[float] = []
    total = settings.steps
    stop = total if settings.stop_after is None else min(total, start + settings.stop_after)
    bar = tqdm(total=total, initial=start, desc=f"vae {out.name}", unit="step", disable=not settings.progress,
               dynamic_ncols=True, file=sys.stderr)
    loop_began = time.perf_counter()
    try:
        for step in range(start, stop):
            t0 = time.perf_counter()
            x = clips.training_batch(train_index, step, settings.batch_size).to(device)
            lr = lr_at(settings, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            noise = torch.Generator().manual_seed(_seed(settings.seed, step, _NOISE_STREAM))
            with autocast():
                reconstruction, mean, logvar = model(x, noise)
            loss, parts = vae_loss(x, reconstruction.float(), mean.float(), logvar.float(), settings.kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            if settings.grad_clip > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, settings.grad_clip))
            else:
                grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
            optimizer.step()
            losses.append(loss.item())
            handle, writer = files[METRICS_FILE]
            writer.writerow({"step": step + 1, "loss": repr(losses[-1]), "l1": repr(float(parts["l1"])),
                             "kl": repr(float(parts["kl"])), "lr": repr(lr),
                             "seconds": f"{time.perf_counter() - t0:.4f}", "grad_norm": f"{grad_norm:.6g}"})
            bar.set_postfix(l1=f"{float(parts['l1']):.4f}", kl=f"{float(parts['kl']):.2f}", refresh=False)
            bar.update(1)
            if (step + 1) % settings.val_every == 0 and step + 1 < total:
                validate(step + 1)
            if (step + 1) % settings.checkpoint_every == 0 or step + 1 == total:
                handle.flush()
                seconds = elapsed + time.perf_counter() - loop_began
                save_checkpoint(out, step + 1, model, optimizer, {"identity": identity, "seconds": seconds,
                                                                   "total_steps": total}, settings.keep_checkpoints)
        end = start + len(losses)
        if end < total:  # stopped early (stop_after): the run stays resumable
            return VAETrainResult(out, start, end, losses, time.perf_counter() - began, None)

        # 4. held-out PSNR, latent statistics, the folder
        scores = validate(total)
        # evenly spaced over the training videos (listed class by class), so every class counts
        spread = sorted({train_index[int(round(i))] for i in np.linspace(0, len(train_index) - 1,
                                                                         min(settings.stats_clips, len(train_index)))})
        stats_batches = [clips.full_clips(spread[i: i + 8], res, epoch=0)
                         for res in settings.resolutions for i in range(0, len(spread), 8)]
        stats = latent_statistics(model, stats_batches, settings.seed)
    finally:
        bar.close()
        for handle, _ in files.values():
            handle.close()
    seconds = elapsed + time.perf_counter() - loop_began
    config = _write_folder(out, model, settings, identity, stats, scores, held, train_index, dataset, seconds)
    return VAETrainResult(out, start, total, losses, time.perf_counter() - began, config)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _write_folder(out: Path, model: KLVideoAutoencoder, settings: VAETrainSettings, identity: dict[str, Any],
                  stats: dict[str, Any], scores: dict[int, float], held: list[int], train_index: list[int],
                  dataset: Any, seconds: float) -> dict[str, Any]:
    """``vae.safetensors`` then ``vae.json`` (last, so a folder with a config is complete), atomically."""
    from safetensors.torch import save_file

    scaling_factor, shift_factor = 1.0 / stats["std"], stats["mean"]
    with atomic_path(out / WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"format": FORMAT})
    root = Path(settings.data).resolve()
    command = settings.command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    arch = settings.architecture
    config = {
        "format": FORMAT, "version": VERSION, "architecture": arch.to_dict(),
        "latent_channels": arch.latent_channels, "spatial_factor": arch.spatial_factor,
        "temporal_factor": arch.temporal_factor, "scaling_factor": scaling_factor, "shift_factor": shift_factor,
        "latent_stats": stats,
        "held_out": {"psnr_db": {str(res): round(v, 3) for res, v in scores.items()}, "videos": len(held),
                     "clips": "every held-out video, the epoch-0 clip, whole frames"},
        "training": {**identity, "steps": settings.steps, "data": str(root), "train_videos": len(train_index),
                     "held_out_videos": [dataset.paths[i].relative_to(dataset.root).as_posix() for i in held]},
        "provenance": {"command": command, "commit": git_commit() or "unknown", "date": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "seconds": round(seconds, 1), "host": platform.node(),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "device": str(model.device), "torch_version": torch.__version__, "sned_version": package_version("sned")},
        "files": {WEIGHTS: file_sha256(out / WEIGHTS)},
    }
    write_json_atomic(out / CONFIG, config)
    return config


__all__ = ["CONFIG", "DEFAULT_STEPS", "FORMAT", "VAETrainResult", "VAETrainSettings", "WEIGHTS", "held_out_psnr",
           "latent_statistics", "list_checkpoints", "lr_at", "read_metrics", "train_vae"]
