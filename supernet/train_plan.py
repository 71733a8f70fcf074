"""A ``sned-train`` invocation, checked before anything is written: its settings and its plan.

:func:`prepare` validates the experiment, the data folder and the run folder (resume or not, the
same space, a finished run) and returns the :class:`Plan` that the loop runs, on the driver and on
every Ray Train rank alike.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.checkpoint import list_checkpoints, read_state
from sned.supernet.config import TrainConfig, load_sample_config, load_train_config, train_config_from_dict
from sned.supernet.sampler import UniformSampler, make_sampler
from sned.supernet.space import SearchSpace, load_space
from sned.supernet.train_logs import RUN_FILE

logger = logging.getLogger(__name__)


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
        vae: latent experiments: the video autoencoder's folder (default: the bundled experiment's ``vae/``).
        latents: latent experiments: the latent cache folder (default: ``<out>/latents``).
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
    vae: str | None = None
    latents: str | None = None


@dataclass(frozen=True)
class LatentPlan:
    """A latent experiment's autoencoder and cache folder (checked by :func:`prepare`, built by the driver)."""

    vae: str  # the autoencoder's folder (absolute)
    sha256: str  # its weights' identity (the cache key and what a checkpoint records)
    description: dict[str, Any]  # VideoAutoencoder.describe()
    cache: str  # the latent cache folder (absolute)

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores to decode its samples later (:func:`~sned.supernet.latent.autoencoder_for`)."""
        return {"path": self.vae, "sha256": self.sha256, "autoencoder": self.description}


@dataclass
class Plan:
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
    latent: LatentPlan | None = None  # a latent experiment: the datasets become latent clips in attach_latents
    videos: Any = None  # every usable video (train + held out), what a latent cache encodes
    split: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))  # (train, held-out) indices
    autoencoder: Any = None  # a latent experiment's, loaded (and checked) once by prepare


def prepare(settings: TrainSettings) -> Plan:
    """Validate a training invocation before anything is written.

    Raises:
        UserError: bad experiment or data folder, a run folder holding another experiment's run, a
            finished run, a corrupt checkpoint, or an existing run without ``--resume``.
    """
    space = load_space(settings.experiment)
    if space.spec.latent is None and (settings.vae or settings.latents):
        raise SettingError("vae", "experiment {name!r} is a pixel-space experiment; {vae} and {latents} are for "
                           "latent experiments (space.latent)", name=space.name)
    latent, autoencoder = _latent_plan(settings, space) if space.spec.latent is not None else (None, None)
    experiment_cfg = load_train_config(settings.experiment)
    if settings.workers < 1:
        raise SettingError("workers", "{workers} {value}: expected >= 1", value=settings.workers)
    if settings.steps is not None and settings.steps < 1:
        raise SettingError("steps", "{steps} {value}: expected >= 1", value=settings.steps)
    data = Path(settings.data)
    if not data.is_dir():
        raise SettingError("data", "{data} {value} {problem}", value=data,
                           problem="is not a folder" if data.exists() else "does not exist")
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise SettingError("out", "{out} {value} exists and is not a folder", value=out)
    found = list_checkpoints(out)
    run_file = out / RUN_FILE
    if (found or run_file.is_file()) and not settings.resume:
        raise SettingError("resume", "{path} already holds a training run; pass {resume} to continue it or choose "
                           "another {out}", path=out)
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text())
            previous_name, previous_hash = previous["experiment"], previous["space_hash"]
        except (ValueError, KeyError, TypeError):
            raise SettingError("out", "{path} is not a sned-train run file; choose another {out}", path=run_file) from None
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
            raise SettingError("seed", "{seed} {value} differs from the run's seed {run_seed}; resume without {seed}",
                               value=seed, run_seed=state.get("seed"))
        seed = int(state["seed"])
        if state.get("world_size", 1) != settings.workers:
            logger.warning("the run was trained with %s workers, resumed with %s: batches change (they are "
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
        raise SettingError("steps", "{path} already finished {total} steps; pass a larger {steps} to continue training",
                           path=out, total=total)
    from sned.supernet.data import VideoClipDataset

    # Scanned once here, at the largest resolution; an empty or unreadable folder fails here.
    dataset = VideoClipDataset(data, frames=space.frames, size=max(space.resolutions), stride=cfg.frame_stride,
                               seed=seed, cache=cfg.cache_videos)
    classes = space.spec.classes
    if classes and len(dataset.class_names) != classes:
        found_classes = (f"{len(dataset.class_names)} class folders ({', '.join(dataset.class_names)})"
                         if dataset.class_names else "videos outside class folders")
        raise SettingError("data", "experiment {name!r} is class-conditional with space.classes = {classes}, but "
                           "{data} {value} has {found}; use {classes} folders <data>/<class>/*.mp4, or space.classes: 0",
                           name=space.name, classes=classes, value=data, found=found_classes)
    train_index, val_index = split_held_out(len(dataset), cfg.val_videos)
    val_dataset = dataset.subset(val_index) if val_index else None
    if cfg.val_videos and not val_index:
        logger.warning("%d videos are too few to hold out train.val_videos = %d; training without validation",
                       len(dataset), cfg.val_videos)
    plan = Plan(settings, space, cfg, seed, total, checkpoint, dataset.subset(train_index),
                load_sample_config(settings.experiment), val_dataset, latent, dataset, (train_index, val_index),
                autoencoder)
    make_arch_sampler(plan)  # a bad train.arch fails here, in one line, before anything is written
    return plan


def _latent_plan(settings: TrainSettings, space: SearchSpace) -> tuple[LatentPlan, Any]:
    """Find, load and check a latent experiment's autoencoder (its latent must match the space)."""
    from sned.supernet.latent import bundled_autoencoder, check_autoencoder
    from sned.supernet.vae_load import load_autoencoder

    folder = Path(settings.vae) if settings.vae else bundled_autoencoder(space.name)
    if folder is None:
        raise SettingError("vae", "experiment {name!r} trains in the latent space of a video autoencoder: pass {vae} "
                           "DIR (a `sned vae train` folder or a diffusers save_pretrained folder)", name=space.name)
    autoencoder = load_autoencoder(folder)
    check_autoencoder(autoencoder, space, f"--vae {folder}")
    cache = Path(settings.latents) if settings.latents else Path(settings.out) / "latents"
    if cache.exists() and not cache.is_dir():
        raise SettingError("latents", "{latents} {value} exists and is not a folder", value=cache)
    plan = LatentPlan(str(folder.resolve()), autoencoder.sha256, autoencoder.describe(), str(cache.resolve()))
    return plan, autoencoder


def attach_latents(plan: Plan, build: bool, progress: bool = True) -> None:
    """Swap a latent plan's datasets for latent clips: build (or resume) the cache, or only open it.

    The driver builds (``build=True``, one process encodes); Ray Train ranks open what it built.

    Raises:
        UserError: the cache folder holds another autoencoder's or dataset's latents, or is unfinished
            where it should only be opened.
    """
    from sned.supernet.latent import LatentClipDataset, build_latent_cache, cache_key, open_latent_cache
    from sned.supernet.video_io import data_folder_hash

    latent = plan.latent
    if latent is None:
        return
    space = plan.space
    if build:
        cache = build_latent_cache(plan.autoencoder, plan.videos, space.resolutions, latent.cache, progress=progress)
    else:
        key = cache_key(latent.sha256, data_folder_hash(plan.videos.root), space.resolutions)
        cache = open_latent_cache(latent.cache, key)
        if cache is None:
            raise UserError(f"latent cache {latent.cache} is not finished; the driver builds it before training")
    clips = LatentClipDataset(plan.videos, cache, space.spec.unet_frames, space.spec.latent.spatial_factor)
    train_index, val_index = plan.split
    plan.dataset = clips.subset(train_index)
    plan.val_dataset = clips.subset(val_index) if val_index else None


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


def make_arch_sampler(plan: Plan) -> UniformSampler:
    """The arch sampler the plan's ``train:`` section asks for (seeded by the run's seed)."""
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


__all__ = ["LatentPlan", "Plan", "TrainSettings", "attach_latents", "make_arch_sampler", "prepare", "split_held_out"]
