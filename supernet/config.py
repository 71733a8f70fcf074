"""Typed, strict training and sampling settings from an experiment YAML's ``train:`` / ``sample:`` sections.

Torch-free. Each section maps onto a frozen dataclass; every key is optional (the dataclass
defaults are the CPU-sized ``tiny`` settings), an unknown key or a value of the wrong type is a
:class:`~sned.supernet.base.errors.UserError` naming the key, the value and the valid keys or choices
(through the floor's one strict loader, :func:`sned.supernet.base.settings.load_section`).

Example (``experiments/tiny.yaml``)::

    train:
      steps: 1000
      base_batch: 2
      sampler: dynamic
      sampling_warmup_steps: 300
    sample:
      steps: 25
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from sned.supernet.base.errors import UserError
from sned.supernet.base.settings import load_section

SamplerKind = Literal["uniform", "dynamic", "fixed"]
CostKind = Literal["params", "flops"]
DType = Literal["auto", "fp32", "bf16"]
LRSchedule = Literal["constant", "cosine"]


@dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` section: optimisation, superposition batch sizes and arch sampling.

    The batch of a step at resolution ``res`` is ``min(max_batch, base_batch * (max_res / res)**2)``
    (rounded up to a multiple of the number of ranks), so every step carries a similar number of
    pixels whatever the resolution.
    """

    steps: int = 1000  # total optimiser steps (image stage included)
    image_steps: int = 0  # first steps on single frames with the temporal layers bypassed
    base_batch: int = 2  # clips per step at the largest resolution
    max_batch: int = 32  # cap of the scaled batch at small resolutions
    resolution_weights: tuple[float, ...] = ()  # how often each resolution is drawn (empty: uniform)
    lr: float = 2e-4
    lr_warmup_steps: int = 50  # linear learning-rate warm-up from 0
    lr_schedule: LRSchedule = "constant"  # after warm-up; "cosine" decays to lr_min
    lr_min: float = 0.0
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # global gradient-norm clip (0 disables)
    ema_decay: float = 0.999
    ema_start: int = 0  # steps before the EMA starts tracking (it copies the weights until then)
    prediction: Literal["v", "eps", "x0"] = "v"
    label_dropout: float = 0.1  # class-conditional spaces: share of labels replaced by the null label (guidance)
    sampler: SamplerKind = "dynamic"  # "uniform": every gene uniform; "dynamic": cost buckets; "fixed": `arch` only
    arch: str = ""  # sampler "fixed": the one subnet trained, as JSON ({"stages": [...]}; res follows the step)
    cost: CostKind = "flops"  # what the dynamic sampler buckets by
    buckets: int = 8  # cost buckets (quantiles) per resolution
    pool: int = 20000  # candidate archs per resolution when the space is too big to enumerate
    sampling_warmup_steps: int = 300  # widen sampling from the largest subnets to the whole space
    sandwich: bool = False  # largest + smallest + sampled arch per step, gradients accumulated
    frame_stride: int = 1  # take every n-th frame of a video
    data_workers: int = 0  # DataLoader processes per rank
    cache_videos: bool = False  # keep decoded videos in memory (small datasets; saves decoding every step)
    dtype: DType = "auto"  # "auto": bf16 autocast on CUDA, fp32 on CPU
    val_videos: int = 24  # videos held out of training for the validation loss (0: no validation)
    val_every: int = 500  # steps between held-out validations (and one at the end)
    checkpoint_every: int = 200  # steps between checkpoints (and one at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept in the run folder
    log_every: int = 1  # steps between TensorBoard points (the CSV has every step)


@dataclass(frozen=True)
class SampleConfig:
    """The ``sample:`` section: DDIM defaults for ``sned sample`` and the sampled-FVD trials."""

    steps: int = 25  # DDIM steps (network evaluations per video)
    eta: float = 0.0  # DDIM stochasticity
    n: int = 8  # videos per subnet
    batch_size: int = 8  # videos per forward
    fps: int = 8  # frame rate of the written videos
    use_ema: bool = True  # sample with the EMA weights
    guidance: float = 1.0  # classifier-free guidance scale of a class-conditional space (1: none)


_NON_NEGATIVE = {"val_videos", "image_steps", "lr_warmup_steps", "ema_start", "sampling_warmup_steps", "data_workers", "lr_min",
                 "weight_decay", "grad_clip", "eta", "keep_checkpoints"}


def _check_number(key: str, value: Any, where: str) -> Any:
    """Numbers are positive, or ``>= 0`` for the keys of :data:`_NON_NEGATIVE`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key in _NON_NEGATIVE and value < 0:
            raise UserError(f"{where} = {value!r}: expected a number >= 0")
        if key not in _NON_NEGATIVE and value <= 0:
            raise UserError(f"{where} = {value!r}: expected a positive number")
    return value


def _from_section(cls: type, section: Any, where: str) -> Any:
    cfg = load_section(cls, section, where, check=_check_number)
    _check(cfg, where)
    return cfg


def _check(cfg: Any, where: str) -> None:
    if isinstance(cfg, TrainConfig):
        if cfg.image_steps > cfg.steps:
            raise UserError(f"{where}.image_steps = {cfg.image_steps} exceeds steps = {cfg.steps}")
        if cfg.max_batch < cfg.base_batch:
            raise UserError(f"{where}.max_batch = {cfg.max_batch} is below base_batch = {cfg.base_batch}")
        if not 0 <= cfg.ema_decay < 1:
            raise UserError(f"{where}.ema_decay = {cfg.ema_decay}: expected 0 <= ema_decay < 1")
        if not 0 <= cfg.label_dropout < 1:
            raise UserError(f"{where}.label_dropout = {cfg.label_dropout}: expected 0 <= label_dropout < 1")
        if (cfg.sampler == "fixed") != bool(cfg.arch):
            raise UserError(f"{where}: sampler: fixed and arch go together (arch = the one subnet to train, "
                            f"as JSON); got sampler {cfg.sampler!r} with arch {cfg.arch!r}")
        if cfg.sampler == "fixed" and cfg.sandwich:
            raise UserError(f"{where}: sandwich needs a sampler that draws subnets, not sampler: fixed")
        if not all(0 <= b < 1 for b in cfg.adam_betas):
            raise UserError(f"{where}.adam_betas = {list(cfg.adam_betas)}: expected two numbers in [0, 1)")


def train_config_from_dict(section: Mapping | None, where: str = "train") -> TrainConfig:
    """A :class:`TrainConfig` from a mapping (e.g. a checkpoint's saved config)."""
    if isinstance(section, Mapping):
        section = dict(section) | {k: list(section[k]) for k in ("adam_betas", "resolution_weights") if k in section}
    return _from_section(TrainConfig, section, where)


def sample_config_from_dict(section: Mapping | None, where: str = "sample") -> SampleConfig:
    return _from_section(SampleConfig, section, where)


def load_train_config(experiment: str | Path) -> TrainConfig:
    """The ``train:`` section of an experiment (bundled name or YAML path); defaults where absent."""
    from sned.supernet.space import load_experiment

    data, path = load_experiment(experiment)
    return train_config_from_dict(data.get("train"), f"{path.name}: train")


def load_sample_config(experiment: str | Path) -> SampleConfig:
    """The ``sample:`` section of an experiment; defaults where absent."""
    from sned.supernet.space import load_experiment

    data, path = load_experiment(experiment)
    return sample_config_from_dict(data.get("sample"), f"{path.name}: sample")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-able dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


__all__ = ["CostKind", "DType", "SampleConfig", "SamplerKind", "TrainConfig", "config_to_dict",
           "load_sample_config", "load_train_config", "sample_config_from_dict", "train_config_from_dict"]
