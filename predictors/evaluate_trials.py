"""One sampled-FVD trial of ``sned evaluate``: a subnet's videos, features, FVD/KVD/IS and held-out loss.

:func:`run_trial` is a plain function (a Ray Tune trial calls it, and so can a test or a user to
evaluate one subnet in-process). A worker process keeps the loaded supernet, extractor and held-out
sets in a small LRU (:func:`_cached`), so a reused Ray actor loads them once, not once per trial.
:func:`real_features` computes (or reads from its cache) the real-video features a trial compares
against, once per resolution and pass, on the driver.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sned.predictors.evaluate_select import NOISE_SEED_OFFSET, clip_subset
from sned.supernet.base.artifacts import safe_file_part
from sned.supernet.base.errors import UserError
from sned.supernet.space import Arch, arch_id, canonical_json

if TYPE_CHECKING:  # torch loads lazily: the CLI parses and checks input before importing it
    import torch

log = logging.getLogger(__name__)

DEFAULT_HELD_OUT = 24  # held-out clips per resolution for the loss column (training validation holds out 24)
LOSS_TIMESTEPS: tuple[int, ...] = (50, 200, 500, 800)  # sned.supernet.validation.VAL_TIMESTEPS (imports torch)
LOSS_COLUMNS: tuple[str, ...] = ("loss", *(f"loss_t{t}" for t in LOSS_TIMESTEPS))
TableKey = tuple[str, int, str]  # (arch_id, res, checkpoint_sha256)


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a subnet at its resolution, generated from ``seed``; ``noise`` marks the second pass."""

    arch: str  # canonical JSON
    arch_id: str
    res: int
    seed: int
    noise: bool = False

    @classmethod
    def of(cls, arch: Arch, seed: int, noise: bool = False) -> TrialSpec:
        return cls(canonical_json(arch), arch_id(arch), int(arch["res"]), int(seed), noise)

    def key(self, checkpoint_sha256: str) -> TableKey:
        return (self.arch_id, self.res, checkpoint_sha256)


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a run shares (sent once to the workers through the Ray object store).

    ``checkpoint`` is the resolved checkpoint folder (not a run folder, which training may extend
    while trials run); on a cluster it, ``data`` and ``i3d`` / ``features`` must be readable at the
    same path on every node. ``features`` (a ``sned features train`` folder) replaces I3D when set.
    ``data`` is the real-video folder whose clips give the held-out loss (``held_out`` clips of
    ``frame_stride``, the training's, noise from ``seed``); ``None`` leaves the loss columns NaN.
    """

    checkpoint: str
    checkpoint_sha256: str
    ema: bool
    prediction: str
    videos: int
    steps: int
    eta: float
    batch_size: int
    i3d: str | None
    extractor: str
    extractor_sha256: str
    device: str = "cpu"
    threads: int = 1
    features: str | None = None
    guidance: float = 1.0  # classifier-free guidance of a class-conditional space (its classes in turn)
    pca_dim: int | None = None  # FVD in the top-k principal directions of the real features (None: all)
    data: str | None = None
    held_out: int = DEFAULT_HELD_OUT
    frame_stride: int = 1
    seed: int = 0  # the run's seed: held-out clip order and noise (the second pass derives its own)


# Worker-side cache: a reused Ray actor (or a plain Python caller) loads the supernet and the I3D
# extractor once per process, not once per trial. Keys name exactly what was loaded. It is an LRU of
# at most WORKER_CACHE_SIZE entries (a supernet, an extractor and a few held-out sets), so a
# long-lived caller that evaluates many checkpoints keeps only the recent ones.
WORKER_CACHE_SIZE = 8
_WORKER_CACHE: OrderedDict[tuple, Any] = OrderedDict()


def _cached(key: tuple, build: Callable[[], Any], size: int = WORKER_CACHE_SIZE) -> Any:
    if key in _WORKER_CACHE:
        _WORKER_CACHE.move_to_end(key)
        return _WORKER_CACHE[key]
    value = build()
    _WORKER_CACHE[key] = value
    while len(_WORKER_CACHE) > max(1, size):
        _WORKER_CACHE.popitem(last=False)
    return value


def _supernet(settings: TrialSettings) -> tuple[torch.nn.Module, Any]:
    """The supernet and, for a latent network, the autoencoder that decodes its samples (else None)."""
    from sned.supernet.checkpoint import load_supernet
    from sned.supernet.latent import autoencoder_for

    def build() -> tuple[torch.nn.Module, Any]:
        net, info = load_supernet(settings.checkpoint, ema=settings.ema, device=settings.device)
        if info["sha256"] != settings.checkpoint_sha256:
            raise UserError(f"checkpoint {settings.checkpoint} changed since the run started "
                            f"(sha256 {info['sha256'][:12]} != {settings.checkpoint_sha256[:12]})")
        return net, autoencoder_for(info, device=settings.device)

    return _cached(("supernet", settings.checkpoint, settings.checkpoint_sha256, settings.ema, settings.device),
                   build)


def _extractor(settings: TrialSettings):
    if settings.features is not None:
        from sned.predictors.features import DomainFeatureExtractor

        def build_domain() -> DomainFeatureExtractor:
            extractor = DomainFeatureExtractor(settings.features, device=settings.device,
                                               batch_size=settings.batch_size)
            if (extractor.name, extractor.weights_sha256) != (settings.extractor, settings.extractor_sha256):
                raise UserError(f"features {settings.features} on this worker ({extractor.name}) differ from the "
                                f"driver's ({settings.extractor}, sha256 {settings.extractor_sha256[:12]})")
            return extractor

        return _cached(("domain", settings.features, settings.extractor_sha256, settings.device,
                        settings.batch_size), build_domain)

    from sned.predictors.i3d import I3DFeatureExtractor

    def build() -> I3DFeatureExtractor:
        extractor = I3DFeatureExtractor(settings.i3d, device=settings.device, batch_size=settings.batch_size)
        if (extractor.name, extractor.weights_sha256) != (settings.extractor, settings.extractor_sha256):
            raise UserError(f"I3D on this worker ({extractor.name}, sha256 {extractor.weights_sha256[:12]}) differs "
                            f"from the driver's ({settings.extractor}, sha256 {settings.extractor_sha256[:12]})")
        return extractor

    return _cached(("i3d", settings.i3d, settings.extractor_sha256, settings.device, settings.batch_size), build)


def held_out_set(data: str | Path, res: int, frames: int, n: int, seed: int, second: bool = False,
                 stride: int = 1, conditional: bool = False, autoencoder: Any = None):
    """The fixed held-out clips and noise of one resolution and pass (:class:`~sned.supernet.validation.HeldOut`).

    ``min(n, videos in the folder)`` clips from :func:`clip_subset` (spread over the classes; the
    second pass's are another subset, or reseeded), with noise from
    :func:`~sned.supernet.validation.make_held_out` seeded by ``seed`` (``seed + 1`` for the second
    pass). ``conditional``: the clips carry their true class labels. ``autoencoder``: a latent
    network's; the clips are its latents (posterior means), what the network denoises.

    Raises:
        UserError: ``conditional`` but the folder's videos are not in class folders.
    """
    import torch

    from sned.supernet.data import VideoClipDataset
    from sned.supernet.validation import make_held_out

    dataset = VideoClipDataset(data, frames=frames, size=res, stride=stride, seed=seed)
    if conditional and not dataset.labels:
        raise UserError(f"the space is class-conditional but the videos under {data} are not in class folders "
                        "(<data>/<class>/*.mp4): the held-out loss needs each clip's class")
    items, _ = clip_subset(len(dataset), min(int(n), len(dataset)), seed, second, dataset.labels)
    clips = torch.stack([dataset[item] for item in items])
    labels = torch.tensor([dataset.labels[i] for i, _ in items]) if conditional else None
    side = res
    if autoencoder is not None:
        with torch.no_grad():
            clips = torch.cat([autoencoder.encode(clips[i: i + 8]).float().cpu() for i in range(0, len(clips), 8)])
        side = res // int(autoencoder.spatial_factor)
    return make_held_out(clips, res, seed + (NOISE_SEED_OFFSET if second else 0), labels=labels, side=side)


def _held_out(settings: TrialSettings, res: int, frames: int, second: bool, conditional: bool, autoencoder: Any):
    return _cached(("held_out", settings.data, res, frames, settings.held_out, settings.seed, second,
                    settings.frame_stride, conditional, autoencoder.sha256 if autoencoder is not None else None),
                   lambda: held_out_set(settings.data, res, frames, settings.held_out, settings.seed, second,
                                        settings.frame_stride, conditional, autoencoder))


def subnet_loss(net: torch.nn.Module, arch: Arch, held: Any, prediction: str, batch_size: int = 8,
                device: str = "cpu") -> dict[str, float]:
    """The held-out denoising loss of one subnet: ``{"loss": mean over t, "loss_t<t>": ...}`` (v units).

    ``net`` is the supernet, ``held`` a :class:`~sned.supernet.validation.HeldOut` (with labels for a
    class-conditional space), ``prediction`` what the network predicts (the checkpoint's).
    """
    from sned.supernet.diffusion import GaussianDiffusion
    from sned.supernet.validation import held_out_loss

    if held.labels is None:
        def model(z, t):
            return net(z, t, arch)
    else:
        def model(z, t, y=None):
            return net(z, t, arch, labels=y)
    losses = held_out_loss(model, held, GaussianDiffusion(prediction), batch_size=batch_size, device=device)
    return {"loss": float(np.mean(list(losses.values()))), **{f"loss_t{t}": float(v) for t, v in losses.items()}}


def run_trial(spec: TrialSpec, settings: TrialSettings, real: np.ndarray) -> dict[str, Any]:
    """Generate ``settings.videos`` videos from one subnet and score them against ``real`` features.

    Runs inside a Ray worker in ``sned evaluate``, but is a plain function: call it directly to
    evaluate one subnet in-process.

    Args:
        spec: the subnet, its resolution and seed.
        settings: checkpoint, sampler and extractor settings.
        real: ``(m, d)`` real-video features of ``spec.res`` from the same extractor.

    Returns:
        One table row: the :data:`~sned.predictors.accuracy.REQUIRED_COLUMNS` plus
        ``inception_score`` (over all generated videos, one split; NaN for an extractor without class
        probabilities, i.e. I3D), the held-out loss :data:`LOSS_COLUMNS` (of the pass's held-out set;
        NaN without ``settings.data``), ``params``, ``gflops``, ``seconds`` (the whole trial),
        ``generate_seconds``, ``features_seconds``, ``loss_seconds``, ``started_at`` (Unix time) and
        ``worker`` (``host:pid``).
    """
    from sned.supernet.threads import torch_threads

    with torch_threads(max(1, int(settings.threads))):  # the caller's count comes back afterwards
        return _run_trial(spec, settings, real)


def _run_trial(spec: TrialSpec, settings: TrialSettings, real: np.ndarray) -> dict[str, Any]:
    from sned.predictors.fvd import frechet_distance, inception_score, kernel_distance
    from sned.supernet.sample import generate

    began, started_at = time.perf_counter(), time.time()
    net, decoder = _supernet(settings)
    extractor = _extractor(settings)
    arch = json.loads(spec.arch)
    videos = generate(net, arch, settings.videos, settings.steps, spec.seed, eta=settings.eta,
                      batch_size=settings.batch_size, device=settings.device, prediction=settings.prediction,
                      guidance=settings.guidance, decoder=decoder)
    generated = time.perf_counter()
    if hasattr(extractor, "features_and_probabilities"):
        fake, probabilities = extractor.features_and_probabilities(videos)
        score = inception_score(probabilities, splits=1)[0]  # one split: a few dozen videos per trial
    else:
        fake, score = extractor.features(videos), math.nan
    fvd = frechet_distance(real, fake, pca_dim=settings.pca_dim)
    kvd = kernel_distance(real, fake)
    done = time.perf_counter()
    space = net.space
    losses = dict.fromkeys(LOSS_COLUMNS, math.nan)
    if settings.data is not None:
        held = _held_out(settings, spec.res, space.frames, spec.noise, bool(space.spec.classes), decoder)
        losses = subnet_loss(net, arch, held, settings.prediction, settings.batch_size, settings.device)
    scored = time.perf_counter()
    return {
        "arch_id": spec.arch_id, "arch": spec.arch, "res": spec.res, "fvd": float(fvd), "kvd": float(kvd),
        "inception_score": float(score), **losses,
        "n_videos": settings.videos, "extractor": settings.extractor, "extractor_sha256": settings.extractor_sha256,
        "checkpoint_sha256": settings.checkpoint_sha256, "seed": spec.seed, "steps": settings.steps,
        "params": int(space.params([arch])[0]), "gflops": float(space.flops([arch])[0] / 1e9),
        "seconds": scored - began, "generate_seconds": generated - began, "features_seconds": done - generated,
        "loss_seconds": scored - done, "started_at": started_at, "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def tune_trial(config: dict[str, Any], specs: Sequence[TrialSpec], settings: TrialSettings,
                real: Mapping[tuple[int, bool], np.ndarray]) -> None:
    """The Ray Tune function trainable: one trial = one :func:`run_trial`, reported once.

    ``real`` holds the real features per (resolution, second pass).
    """
    from ray import tune

    spec = specs[config["index"]]
    row = run_trial(spec, settings, real[(spec.res, spec.noise)])
    tune.report({**row, "index": int(config["index"]), "noise": spec.noise})


def peak_concurrency(started_at: Sequence[float], seconds: Sequence[float]) -> int:
    """The most trials that ran at the same moment, from their start times and durations."""
    events = sorted([(float(t), 1) for t in started_at] + [(float(t) + float(d), -1)
                                                           for t, d in zip(started_at, seconds, strict=True)],
                    key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def real_features(data: str | Path, res: int, frames: int, n: int, seed: int, extractor: Any,
                  cache_dir: str | Path, progress: bool = True, second: bool = False, dataset: Any = None
                  ) -> np.ndarray:
    """Features of ``n`` real clips at ``res``, from the cache when it matches, else computed and cached.

    Clips come from :class:`~sned.supernet.data.VideoClipDataset` (``frames`` frames, resized and
    centre-cropped to ``res``); the videos are :func:`clip_subset`'s (a seeded order, the same at
    every resolution; ``second``: the noise-floor pass's own subset). The cache key records the
    chosen videos and epochs, so a subset of another pass, seed or folder content is never reused.
    ``dataset``: the folder already scanned (a ``VideoClipDataset`` of ``data`` with ``frames`` frames,
    stride 1 and ``seed``), to scan it once for every resolution and pass.

    Returns:
        ``(n, d)`` float32 features.

    Raises:
        UserError: the folder holds fewer than ``n`` usable videos.
    """
    import hashlib

    import torch
    from tqdm import tqdm

    from sned.predictors.fvd import load_features, save_features
    from sned.supernet.data import VideoClipDataset

    if dataset is None:
        dataset = VideoClipDataset(data, frames=frames, size=res, seed=seed)
    else:
        dataset = copy.copy(dataset)
        dataset.size = int(res)
    items, disjoint = clip_subset(len(dataset), n, seed, second)
    chosen = json.dumps([[str(dataset.paths[i].relative_to(dataset.root)), e] for i, e in items])
    safe_name = safe_file_part(extractor.name)  # names hold ':' (i3d:<sha>)
    path = Path(cache_dir) / f"real-{res}-{safe_name}{'-pass2' if second else ''}.npz"
    source = json.dumps({"data": str(Path(data).resolve()), "res": res, "frames": frames, "n": n, "seed": seed,
                         "pass": 2 if second else 1, "disjoint": disjoint,
                         "videos_sha1": hashlib.sha1(chosen.encode()).hexdigest()}, sort_keys=True)
    if path.is_file():
        try:
            cached = load_features(path)
        except UserError as exc:
            log.warning("recomputing %s: %s", path, exc)
        else:
            if (cached.source, cached.extractor, cached.weights_sha256) == (source, extractor.name,
                                                                            extractor.weights_sha256):
                return cached.features
            log.info("recomputing %s: made for another data set, subset, extractor or settings", path)
    batch = max(1, int(getattr(extractor, "batch_size", 8)))
    out = []
    what = f"real features {res}px" + (" (pass 2)" if second else "")
    for start in tqdm(range(0, n, batch), desc=what, unit="batch", disable=not progress,
                      file=sys.stderr):
        clips = torch.stack([dataset[item] for item in items[start:start + batch]])
        out.append(extractor.features(clips))
    features = np.concatenate(out).astype(np.float32)
    save_features(path, features, extractor.name, extractor.weights_sha256, source=source)
    return features


__all__ = ["DEFAULT_HELD_OUT", "LOSS_COLUMNS", "LOSS_TIMESTEPS", "TableKey", "TrialSettings", "TrialSpec",
           "held_out_set", "peak_concurrency", "real_features", "run_trial", "subnet_loss", "tune_trial"]
