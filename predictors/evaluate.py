"""``sned evaluate``: sampled FVD/KVD of subnets of a supernet checkpoint, run as Ray Tune trials.

    sned evaluate EXPERIMENT --ckpt RUN --data REAL_DIR --out TABLE.parquet [--res 32,64|all]
        [--n-subnets K] [--videos V] [--steps S] [--seed K] [--i3d PATH | --features DIR] [--address ADDR]
        [--gpus-per-trial G] [--cpus-per-trial C] [--concurrency N] [--noise-floor M|all]
        [--held-out N] [--resume]

The ground truth the accuracy predictor (``sned fit``) learns from: for a handful of subnets per
resolution, generate videos with the supernet's inherited weights and measure FVD and KVD against a
real set, and the held-out denoising loss on fixed real clips. The steps:

1. **Select subnets** per resolution (:func:`select_subnets`): stratified over the cost range --
   FLOPs-quantile strata over every arch of the resolution (or a seeded pool for big spaces), one
   arch drawn per stratum -- always with the largest and the smallest subnet; seeded per resolution,
   so ``--res 64`` alone picks the same subnets as ``--res all``.
2. **Real features** once per resolution and pass, cached next to the table as
   ``TABLE.cache/real-<res>-<extractor>.npz`` (the second pass: ``...-pass2.npz``), reused only
   when the data folder, clip count, frames, seed and the chosen videos match. ``--real-videos``
   above the folder's usable videos is bad input: FVD against repeated videos would look better
   than it is.
3. **One Ray Tune trial per (subnet, resolution)** (:func:`run_trial`): load the supernet
   (:func:`~sned.supernet.checkpoint.load_supernet`, EMA weights), generate ``V`` videos with DDIM,
   features (I3D, or with ``--features DIR`` the domain classifier of ``sned features train``, which
   also gives the Inception Score, column ``inception_score``), FVD and KVD. Function trainables on
   reused actors keep the loaded supernet and
   extractor in a module-level cache, so a worker loads them once, not once per trial.
   **Held-out denoising loss** (column ``loss``, the mean over t of ``loss_t50`` ... ``loss_t800``):
   training validation's metric (:func:`~sned.supernet.validation.held_out_loss`, v units) on
   ``--held-out`` real clips spread over the classes (:func:`clip_subset`) with noise fixed by the
   seed; class-conditional spaces are given each clip's true class. The clips are built once per
   worker process and resolution.
   **Common random numbers**: every trial at a resolution generates from the same seed (video ``i``
   from ``(seed, i)``) against the same real features, and its loss uses the same clips, noise and
   timesteps, so differences between subnets are not drowned in sampling noise.
4. **The table** (:class:`FvdTable`): the driver appends each finished trial's row as its result
   arrives (a Tune ``Callback``), rewriting the parquet atomically; never two rows for one
   (arch id, resolution, checkpoint).

Resume design. A killed run continues with ``--resume``: the driver reads the table, skips every
(arch id, resolution, checkpoint) already in it, and runs a fresh ``Tuner.fit()`` over only the
missing trials. We chose this over Tune's own experiment restore (``Tuner.restore``) because the
table *is* the state: it is written atomically after every trial, so there is nothing else to keep
consistent; it survives moving the table, changing ``--n-subnets``/``--res``, or switching from a
laptop to a cluster; and Tune restore would re-run in-flight trials anyway while adding an
experiment folder that must live on shared storage. Trials that fail are retried by Tune
(``FailureConfig(max_failures=2)``); ones that still fail are reported, and ``--resume`` retries them.

Noise floor. ``--noise-floor all`` evaluates every selected subnet a second time (``--noise-floor M``:
``M`` per resolution, spread over the cost range), independently of the first pass: generated from
``seed + 1``, against the real features of another real subset (the next ``--real-videos`` videos of
the same seeded order, disjoint from the first where the folder holds enough, else an independently
seeded draw with fresh clip positions), and with its loss on another held-out set and noise. Kendall's
tau between the two passes, within each resolution and averaged weighted by pairs, is the rank
agreement a perfect predictor could reach: ``noise_floor_tau`` (FVD) and
``noise_floor.columns[<fvd|loss>]`` (``tau`` and per-resolution ``tau_res``) in the metadata. The
second-pass rows live in the metadata (``noise_floor.rows``), not as duplicate table rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sned.supernet.errors import UserError
from sned.supernet.ray_start import start_ray
from sned.supernet.space import Arch, SearchSpace, SpaceError, arch_id, arch_summary, canonical_json

if TYPE_CHECKING:  # torch and pandas load lazily: the CLI parses and checks input before importing them
    import pandas as pd
    import torch

log = logging.getLogger(__name__)

ENUMERATE_LIMIT = 200_000  # archs per resolution up to which selection enumerates them all
DEFAULT_POOL = 20_000  # candidates per resolution drawn when the space is too big to enumerate
DEFAULT_SUBNETS = 8
KEY_COLUMNS: tuple[str, ...] = ("arch_id", "res", "checkpoint_sha256")
# Settings that change FVD values: a resumed table must have been made with the same ones.
COMPARABLE_SETTINGS: tuple[str, ...] = ("videos", "real_videos", "steps", "eta", "seed", "ema", "pca_dim", "extractor",
                                        "extractor_sha256", "held_out")
NOISE_SEED_OFFSET = 1  # the noise-floor pass generates with seed + 1 (against another real subset)
# The second pass's real and held-out clips: "disjoint" videos from the first pass's. Recorded in the
# settings; a resumed table whose second-pass rows were measured otherwise (before this existed: the
# same real set) measures them again.
NOISE_SUBSET = "disjoint-or-reseeded"
DEFAULT_HELD_OUT = 24  # held-out clips per resolution for the loss column (training validation holds out 24)
LOSS_TIMESTEPS: tuple[int, ...] = (50, 200, 500, 800)  # sned.supernet.validation.VAL_TIMESTEPS (imports torch)
LOSS_COLUMNS: tuple[str, ...] = ("loss", *(f"loss_t{t}" for t in LOSS_TIMESTEPS))
NOISE_COLUMNS: tuple[str, ...] = ("fvd", "loss")  # the columns whose two-pass Kendall tau is recorded
NoiseFloor = int | str  # subnets per resolution measured twice, or "all"

TableKey = tuple[str, int, str]  # (arch_id, res, checkpoint_sha256)


# ----------------------------------------------------------------------------- subnet selection


def candidate_pool(space: SearchSpace, res: int, rng: np.random.Generator, pool: int = DEFAULT_POOL) -> np.ndarray:
    """The gene rows to select from at ``res``: every arch when at most :data:`ENUMERATE_LIMIT`, else a pool.

    The pool is ``pool`` uniform samples (deduplicated) plus the largest and the smallest arch.
    """
    if space.count(res) <= ENUMERATE_LIMIT:  # count() also refuses a resolution outside the space
        return space.enumerate(res)
    extremes = space.encode([space.largest(res), space.smallest(res)])
    return np.unique(np.concatenate([space.sample_genes(rng, pool, res), extremes]), axis=0)


def select_subnets(space: SearchSpace, res: int, n: int, rng: np.random.Generator,
                   pool: int = DEFAULT_POOL) -> list[Arch]:
    """``n`` subnets at ``res``, stratified over the FLOPs range, always with the largest and the smallest.

    1. Candidates: every arch at ``res`` (or a seeded pool, see :func:`candidate_pool`), by FLOPs.
    2. The largest and the smallest arch are always chosen.
    3. The other candidates, sorted by FLOPs, are cut into ``n - 2`` strata of equal count (FLOPs
       quantiles) and one arch is drawn uniformly from each: cheap, middle and expensive subnets
       are all represented, however the space's archs are distributed over cost.

    Args:
        space: the search space.
        res: the resolution.
        n: number of subnets (>= 2); all candidates when ``n`` exceeds their number.
        rng: the selection's generator (``np.random.default_rng([seed, res])`` in ``sned evaluate``).
        pool: pool size for spaces too big to enumerate.

    Returns:
        Canonical archs sorted by FLOPs (smallest first), all distinct.

    Raises:
        UserError: ``n < 2``. SpaceError: ``res`` not in the space.
    """
    if n < 2:
        raise UserError(f"--n-subnets {n}: need at least 2 (the largest and the smallest subnet)")
    X = candidate_pool(space, res, rng, pool)
    costs = space.flops(X)
    order = np.lexsort((*X.T[::-1], costs))  # by FLOPs, ties by genes: deterministic
    X, costs = X[order], costs[order]
    if n >= len(X):
        return space.decode(X)
    extremes = space.encode([space.smallest(res), space.largest(res)])
    matches = (X[:, None, :] == extremes[None]).all(axis=2)  # (len(X), 2): row is the smallest / largest
    chosen = [int(np.flatnonzero(matches[:, 0])[0]), int(np.flatnonzero(matches[:, 1])[0])]
    rest = np.flatnonzero(~matches.any(axis=1))
    for stratum in np.array_split(rest, n - 2) if n > 2 else []:
        chosen.append(int(stratum[rng.integers(len(stratum))]))
    return space.decode(X[np.sort(np.unique(chosen))])


def parse_noise_floor(value: Any) -> NoiseFloor:
    """``--noise-floor``: ``"all"`` or an integer >= 0 (subnets per resolution measured twice).

    Raises:
        UserError: anything else.
    """
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    if isinstance(value, bool) or not text.isdigit():
        raise UserError(f"--noise-floor {value!r}: expected 'all' or an integer >= 0 (subnets per resolution "
                        "measured twice)")
    return int(text)


def noise_floor_subset(archs: Sequence[Arch], m: NoiseFloor) -> list[Arch]:
    """``m`` of ``archs`` (sorted by cost) evenly spread over the list, both ends included; ``"all"``: every one."""
    if m == "all":
        return list(archs)
    if m <= 0 or not archs:
        return []
    if m >= len(archs):
        return list(archs)
    index = np.unique(np.round(np.linspace(0, len(archs) - 1, m)).astype(int))
    return [archs[i] for i in index]


def clip_subset(length: int, n: int, seed: int, second: bool = False, labels: Sequence[int] = ()
                ) -> tuple[list[tuple[int, int]], bool]:
    """Which real videos (and clip epochs) a pass uses: ``n`` of ``length``, as ``(video, epoch)`` pairs.

    1. The videos in an order seeded by ``seed`` (with ``labels``, reordered so that classes take
       turns: any prefix is spread over the classes).
    2. The first pass takes the first ``n`` of that order (epoch 0).
    3. The second pass takes the next ``n``, disjoint from the first, when ``length >= 2 n``; else
       the first ``n`` of an order seeded independently (``(seed, 1)``) at epoch 1, so that its clips
       start at other frames.

    Returns:
        ``(items, disjoint)``: the pairs, and whether they share no video with the first pass.

    Raises:
        UserError: ``n > length`` (a real set must not repeat videos).
    """
    if n > length:
        raise UserError(f"{n} real clips requested but the data folder holds {length} usable videos; "
                        f"lower --real-videos (or --videos) to at most {length}, or add videos")

    def order(rng: np.random.Generator) -> np.ndarray:
        perm = rng.permutation(length)
        if not len(labels):
            return perm
        classes = np.asarray(labels)[perm]
        turn = np.zeros(length, dtype=np.int64)  # how many of its class came before it in perm
        for c in np.unique(classes):
            turn[classes == c] = np.arange(int((classes == c).sum()))
        return perm[np.lexsort((np.arange(length), turn))]  # by turn, then by position in perm

    first = order(np.random.default_rng(seed))
    if not second:
        return [(int(i), 0) for i in first[:n]], True
    if 2 * n <= length:
        return [(int(i), 0) for i in first[n:2 * n]], True
    return [(int(i), 1) for i in order(np.random.default_rng([seed, 1]))[:n]], False


# ----------------------------------------------------------------------------- trials


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


def _supernet(settings: TrialSettings) -> torch.nn.Module:
    from sned.supernet.checkpoint import load_supernet

    def build() -> torch.nn.Module:
        net, info = load_supernet(settings.checkpoint, ema=settings.ema, device=settings.device)
        if info["sha256"] != settings.checkpoint_sha256:
            raise UserError(f"checkpoint {settings.checkpoint} changed since the run started "
                            f"(sha256 {info['sha256'][:12]} != {settings.checkpoint_sha256[:12]})")
        return net

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
                 stride: int = 1, conditional: bool = False):
    """The fixed held-out clips and noise of one resolution and pass (:class:`~sned.supernet.validation.HeldOut`).

    ``min(n, videos in the folder)`` clips from :func:`clip_subset` (spread over the classes; the
    second pass's are another subset, or reseeded), with noise from
    :func:`~sned.supernet.validation.make_held_out` seeded by ``seed`` (``seed + 1`` for the second
    pass). ``conditional``: the clips carry their true class labels.

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
    return make_held_out(clips, res, seed + (NOISE_SEED_OFFSET if second else 0), labels=labels)


def _held_out(settings: TrialSettings, res: int, frames: int, second: bool, conditional: bool):
    return _cached(("held_out", settings.data, res, frames, settings.held_out, settings.seed, second,
                    settings.frame_stride, conditional),
                   lambda: held_out_set(settings.data, res, frames, settings.held_out, settings.seed, second,
                                        settings.frame_stride, conditional))


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
    net = _supernet(settings)
    extractor = _extractor(settings)
    arch = json.loads(spec.arch)
    videos = generate(net, arch, settings.videos, settings.steps, spec.seed, eta=settings.eta,
                      batch_size=settings.batch_size, device=settings.device, prediction=settings.prediction,
                      guidance=settings.guidance)
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
        held = _held_out(settings, spec.res, space.frames, spec.noise, bool(space.spec.classes))
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


def _tune_trial(config: dict[str, Any], specs: Sequence[TrialSpec], settings: TrialSettings,
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


# ----------------------------------------------------------------------------- the table


ROW_DTYPES: dict[str, str] = {
    "arch_id": "object", "arch": "object", "res": "int64", "fvd": "float64", "kvd": "float64",
    "inception_score": "float64",  # optional: NaN for I3D rows and absent from tables written before it
    **dict.fromkeys(LOSS_COLUMNS, "float64"),  # held-out loss; absent from tables written before it (NaN)
    "n_videos": "int64", "extractor": "object", "extractor_sha256": "object", "checkpoint_sha256": "object",
    "seed": "int64", "steps": "int64", "params": "int64", "gflops": "float64", "seconds": "float64",
    "generate_seconds": "float64", "features_seconds": "float64", "loss_seconds": "float64", "started_at": "float64",
    "worker": "object",
}
NOISE_ROW_FIELDS: tuple[str, ...] = ("arch_id", "res", "checkpoint_sha256", "fvd", "kvd", "loss", "seed", "seconds")


def _empty_table() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in ROW_DTYPES.items()})


def noise_floor_tau(table: pd.DataFrame, second: Iterable[Mapping[str, Any]], column: str = "fvd"
                    ) -> tuple[float | None, dict[int, float]]:
    """Kendall tau of ``column`` between the first pass (table rows) and the second (``second``), per resolution.

    Pairs match on (arch id, resolution, checkpoint); a pair with the value missing or non-finite
    on either side (e.g. ``loss`` of rows written before it existed) is left out, and so are
    resolutions with fewer than 2 pairs or a tau that is undefined (all values tied).

    Returns:
        ``(tau, tau_per_res)``: the mean of the per-resolution taus weighted by their pair counts
        (``None`` when no resolution qualifies), and ``{res: tau}``.
    """
    from scipy.stats import kendalltau

    if column not in table.columns:
        return None, {}
    first = {(str(a), int(r), str(c)): float(f) for a, r, c, f in
             zip(table["arch_id"], table["res"], table["checkpoint_sha256"], table[column], strict=True)
             if f is not None and math.isfinite(float(f))}
    pairs: dict[int, list[tuple[float, float]]] = {}
    for row in second:
        key = (str(row["arch_id"]), int(row["res"]), str(row["checkpoint_sha256"]))
        value = row.get(column)
        if key in first and value is not None and math.isfinite(float(value)):
            pairs.setdefault(key[1], []).append((first[key], float(value)))
    per_res: dict[int, float] = {}
    weights: dict[int, int] = {}
    for res, values in sorted(pairs.items()):
        if len(values) < 2:
            continue
        a, b = np.asarray(values).T
        tau = float(kendalltau(a, b).statistic)
        if math.isfinite(tau):
            per_res[res], weights[res] = tau, len(values)
    if not per_res:
        return None, {}
    total = sum(weights.values())
    return float(sum(per_res[r] * weights[r] for r in per_res) / total), per_res


class FvdTable:
    """The sampled-FVD table a run fills: finished keys, atomic appends, and the noise-floor pass.

    Every :meth:`add` rewrites the parquet through
    :func:`~sned.predictors.accuracy.write_fvd_table` (temp file + ``os.replace``), so a killed run
    leaves the table as it was after its last finished trial. A row whose key (arch id, resolution,
    checkpoint) is already there is dropped: the table never holds two rows for one key. Resuming a
    table whose second pass was measured under another ``noise_subset`` setting (before the second
    pass had its own real subset) drops those second-pass rows, so that they are measured again.

    Args:
        path: the parquet file.
        space: the search space (an existing table must belong to it).
        settings: the run's settings, stored under the ``evaluate`` metadata key; on resume the
            :data:`COMPARABLE_SETTINGS` must equal the table's.
        resume: continue an existing table (without it an existing file is an error).

    Raises:
        UserError: the table exists without ``resume``, belongs to another space, or was made with
            other settings.
    """

    def __init__(self, path: str | Path, space: SearchSpace, settings: Mapping[str, Any], resume: bool = False):
        from sned.predictors.accuracy import read_fvd_table

        self.path = Path(path)
        self.space = space
        if self.path.exists():
            if not resume:
                raise UserError(f"{self.path} exists; pass --resume to continue it, or choose another --out")
            df, meta = read_fvd_table(self.path, space)
            meta.pop("sha256", None)
            old = meta.get("evaluate", {})
            differ = [k for k in COMPARABLE_SETTINGS if k in old and old[k] != settings.get(k)]
            if differ:
                was = ", ".join(f"{k}={old[k]!r}" for k in differ)
                now = ", ".join(f"{k}={settings.get(k)!r}" for k in differ)
                raise UserError(f"{self.path} was made with {was}, not {now}; FVDs would not compare: "
                                "use the same settings or another --out")
            self.df = df
            self.meta = dict(meta)
        else:
            self.df = _empty_table()
            self.meta = {"space_hash": space.hash, "space": space.name}
        old_settings = self.meta.get("evaluate", {})
        self.meta["evaluate"] = dict(settings)
        noise = self.meta.get("noise_floor") or {}
        self.noise_rows: list[dict[str, Any]] = list(noise.get("rows", []))
        if self.noise_rows and old_settings.get("noise_subset") != settings.get("noise_subset"):
            log.warning("%s: dropping %d second-pass rows measured with noise_subset %r (now %r); they are "
                        "measured again", self.path, len(self.noise_rows), old_settings.get("noise_subset"),
                        settings.get("noise_subset"))
            self.noise_rows = []
            self.meta.pop("noise_floor", None)
            self.meta.pop("noise_floor_tau", None)

    def keys(self) -> set[TableKey]:
        """The (arch id, resolution, checkpoint) of every row."""
        return {(str(a), int(r), str(c)) for a, r, c in
                zip(self.df["arch_id"], self.df["res"], self.df["checkpoint_sha256"], strict=True)}

    def noise_keys(self) -> set[TableKey]:
        """The keys of the noise-floor pass already measured."""
        return {(str(r["arch_id"]), int(r["res"]), str(r["checkpoint_sha256"])) for r in self.noise_rows}

    def add(self, row: Mapping[str, Any], noise: bool = False) -> bool:
        """Append one trial's row (to the table, or to the noise-floor pass) and write atomically.

        Returns:
            Whether the row was new (a duplicate key is dropped and nothing is written).
        """
        import pandas as pd

        key = (str(row["arch_id"]), int(row["res"]), str(row["checkpoint_sha256"]))
        if noise:
            if key in self.noise_keys():
                return False
            self.noise_rows.append({k: row[k] for k in NOISE_ROW_FIELDS if k in row})
        else:
            if key in self.keys():
                return False
            new = pd.DataFrame([{c: row.get(c) for c in self.df.columns.union(list(row), sort=False)}])
            self.df = new if self.df.empty else pd.concat([self.df, new], ignore_index=True)
            self.df = self.df.astype({c: d for c, d in ROW_DTYPES.items() if c in self.df.columns})
        self._update_noise_meta()
        if not self.df.empty:  # a table without rows is not a table (read_fvd_table refuses it)
            self.write()
        return True

    def _update_noise_meta(self) -> None:
        if not self.noise_rows:
            return
        columns = {}
        for column in NOISE_COLUMNS:
            col_tau, col_res = noise_floor_tau(self.df, self.noise_rows, column)
            columns[column] = {"tau": col_tau, "tau_res": {str(r): t for r, t in col_res.items()}}
        tau, per_res = noise_floor_tau(self.df, self.noise_rows)
        self.meta["noise_floor"] = {"rows": self.noise_rows, "tau_res": {str(r): t for r, t in per_res.items()},
                                    "pairs": sum(1 for _ in self.noise_rows), "columns": columns}
        if tau is None:
            self.meta.pop("noise_floor_tau", None)
        else:
            self.meta["noise_floor_tau"] = tau

    def write(self) -> Path:
        """Write the table and its metadata atomically."""
        from sned.predictors.accuracy import write_fvd_table

        return write_fvd_table(self.df, self.path, self.meta)


def plan_trials(selection: Mapping[int, Sequence[Arch]], seed: int, checkpoint_sha256: str,
                done: set[TableKey], noise_floor: NoiseFloor = 0, noise_done: set[TableKey] | None = None
                ) -> list[TrialSpec]:
    """The trials still to run: selected subnets not in the table, then the noise-floor pass.

    Args:
        selection: ``{res: archs sorted by cost}`` (:func:`select_subnets`).
        seed: the generation seed of the main pass (the noise pass uses ``seed + 1``).
        checkpoint_sha256: the checkpoint being evaluated (part of every key).
        done: keys already in the table.
        noise_floor: subnets per resolution to evaluate a second time, or ``"all"``.
        noise_done: keys of the noise pass already measured.

    Returns:
        Main-pass trials first (so the table fills before the second pass starts), each key once.
    """
    noise_done = noise_done or set()
    main, second, seen = [], [], set()
    for res in sorted(selection):
        for arch in selection[res]:
            spec = TrialSpec.of(arch, seed)
            if spec.key(checkpoint_sha256) not in done and spec.key(checkpoint_sha256) not in seen:
                seen.add(spec.key(checkpoint_sha256))
                main.append(spec)
        for arch in noise_floor_subset(selection[res], noise_floor):
            spec = TrialSpec.of(arch, seed + NOISE_SEED_OFFSET, noise=True)
            if spec.key(checkpoint_sha256) not in noise_done:
                second.append(spec)
    return main + second


# ----------------------------------------------------------------------------- real features


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
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "-", extractor.name)  # names hold ':' (i3d:<sha>)
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


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of one ``sned evaluate`` run (``None`` fields take the experiment's ``sample:`` defaults).

    Args:
        experiment: bundled experiment name or YAML path.
        checkpoint: run folder (its newest checkpoint) or checkpoint folder.
        data: folder of real videos.
        out: the parquet table to write (or continue, with ``resume``).
        resolutions: resolutions to evaluate (``None``: all of the space's).
        n_subnets: subnets per resolution (>= 2; largest and smallest included).
        videos: generated videos per trial (``sample.n``).
        real_videos: real clips per resolution (default: ``videos``).
        steps: DDIM steps (``sample.steps``).
        eta: DDIM eta (``sample.eta``).
        batch_size: videos per forward, for generation and I3D (``sample.batch_size``).
        ema: sample with the EMA weights (``sample.use_ema``).
        seed: generation seed (common to every subnet), clip seed and selection seed.
        i3d: I3D weights (``None``: ``$SNED_I3D_WEIGHTS``, else the random-init ``i3d-random``).
        features: a ``sned features train`` folder: its domain classifier replaces I3D (and gives
            the ``inception_score`` column); ``None``: I3D. Not together with ``i3d``.
        address: Ray cluster address (``None``: start Ray locally).
        gpus_per_trial, cpus_per_trial: resources per trial.
        concurrency: most trials at a time (``None``: as many as resources allow).
        noise_floor: subnets per resolution evaluated a second time, independently (``seed + 1``,
            another real subset and held-out set), or ``"all"``: every selected subnet.
        held_out: real clips per resolution (at most the folder's videos) for the held-out loss.
        pca_dim: compute FVD in the span of the real features' top ``pca_dim`` principal directions
            (below the generated set's size, so its covariance is full rank there); ``None``: all.
        resume: continue an existing table, skipping finished trials.
        pool: candidates per resolution for spaces too big to enumerate.
        progress: show tqdm progress bars.
        archs: evaluate exactly these subnets per resolution instead of a stratified selection
            (``sned-search --verify`` passes front members).
    """

    experiment: str
    checkpoint: str
    data: str
    out: str
    resolutions: tuple[int, ...] | None = None
    n_subnets: int = DEFAULT_SUBNETS
    videos: int | None = None
    real_videos: int | None = None
    steps: int | None = None
    eta: float | None = None
    batch_size: int | None = None
    ema: bool | None = None
    seed: int = 0
    i3d: str | None = None
    features: str | None = None
    address: str | None = None
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    concurrency: int | None = None
    noise_floor: NoiseFloor = 0
    held_out: int = DEFAULT_HELD_OUT
    pca_dim: int | None = None
    resume: bool = False
    pool: int = DEFAULT_POOL
    progress: bool = True
    archs: Mapping[int, Sequence[Arch]] | None = None


@dataclass
class EvaluateResult:
    """What a run did: the table, this run's new rows (``all_rows``: with the noise pass), failures, timings."""

    table: Path
    rows: pd.DataFrame
    all_rows: pd.DataFrame
    planned: int
    skipped: int
    failed: list[str] = field(default_factory=list)
    noise_floor_tau: float | None = None
    wall_seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


def _check_config(cfg: EvaluateConfig) -> None:
    parse_noise_floor(cfg.noise_floor)
    for name, value, low in (("--n-subnets", cfg.n_subnets, 2), ("--videos", cfg.videos, 2),
                             ("--real-videos", cfg.real_videos, 2), ("--steps", cfg.steps, 1),
                             ("--batch-size", cfg.batch_size, 1), ("--held-out", cfg.held_out, 1),
                             ("--concurrency", cfg.concurrency, 1), ("--pool", cfg.pool, 1)):
        if value is not None and value < low:
            raise UserError(f"{name} {value}: expected >= {low}")
    if cfg.eta is not None and cfg.eta < 0:
        raise UserError(f"--eta {cfg.eta}: expected >= 0")
    if cfg.cpus_per_trial <= 0 or cfg.gpus_per_trial < 0:
        raise UserError(f"--cpus-per-trial {cfg.cpus_per_trial} must be > 0 and --gpus-per-trial "
                        f"{cfg.gpus_per_trial} >= 0")
    if cfg.address is None and cfg.cpus_per_trial > (os.cpu_count() or 1):
        raise UserError(f"--cpus-per-trial {cfg.cpus_per_trial} exceeds this machine's {os.cpu_count()} CPUs")
    if not Path(cfg.data).is_dir():
        what = "is not a folder" if Path(cfg.data).exists() else "does not exist"
        raise UserError(f"--data {cfg.data} {what} (a folder of real videos)")
    if cfg.i3d is not None and not Path(cfg.i3d).is_file():
        raise UserError(f"--i3d {cfg.i3d}: no such file")
    if cfg.features is not None:
        from sned.predictors.features import check_classes, load_card

        if cfg.i3d is not None:
            raise UserError("--features replaces I3D: pass --i3d or --features, not both")
        check_classes(load_card(cfg.features), cfg.data, where=f"the features in {cfg.features}")


def _checkpoint(space: SearchSpace, path: str) -> tuple[Path, dict[str, Any]]:
    """The resolved checkpoint folder and its verified state; refuses a checkpoint of another space."""
    from sned.supernet.checkpoint import WEIGHTS, read_state, resolve_checkpoint

    ckpt = resolve_checkpoint(path).resolve()  # absolute: Ray workers run in another directory
    state = read_state(ckpt, verify=True)
    if state["space_hash"] != space.hash:
        raise UserError(f"checkpoint {ckpt} belongs to space {state.get('experiment')!r} (hash "
                        f"{state['space_hash']}), not to experiment {space.name!r} (hash {space.hash})")
    config = state.get("config", {})
    return ckpt, {"sha256": state["files"][WEIGHTS], "step": int(state["step"]),
                  "prediction": str(config.get("prediction", "v")),
                  "frame_stride": int(config.get("frame_stride", 1)),
                  "class_names": list(state.get("class_names") or [])}


def _check_data(space: SearchSpace, data: str, real_videos: int, seed: int, class_names: Sequence[str]) -> Any:
    """Scan the real-video folder once: it must hold ``real_videos`` usable videos, in the
    checkpoint's class folders when the space is class-conditional. Returns the scanned dataset."""
    from sned.supernet.data import VideoClipDataset

    dataset = VideoClipDataset(data, frames=space.frames, size=min(space.resolutions), seed=seed)
    if real_videos > len(dataset):
        raise UserError(f"--real-videos {real_videos}: {data} holds {len(dataset)} usable videos of "
                        f"{space.frames} frames; pass --real-videos {len(dataset)} or fewer (and --videos, whose "
                        "value it defaults to), or add videos")
    classes = space.spec.classes
    if classes and len(dataset.class_names) != classes:
        found = (f"{len(dataset.class_names)} class folders" if dataset.class_names
                 else "videos outside class folders")
        raise UserError(f"space {space.name!r} is class-conditional with {classes} classes, but --data {data} has "
                        f"{found}; the held-out loss needs each clip's class (<data>/<class>/*.mp4)")
    if classes and class_names and list(dataset.class_names) != list(class_names):
        raise UserError(f"--data {data} has classes {list(dataset.class_names)}, the checkpoint was trained on "
                        f"{list(class_names)}; the held-out loss would give subnets the wrong labels")
    return dataset


def _table_callback(table: FvdTable, specs: Sequence[TrialSpec], on_row: Callable[[dict[str, Any]], None]):
    """A Tune callback (driver side): each reported trial result becomes a table row, written at once."""
    from ray import tune

    class TableCallback(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            spec = specs[int(result["index"])]
            row = {k: result[k] for k in ROW_DTYPES if k in result}
            if table.add(row, noise=spec.noise):
                on_row({**row, "noise": spec.noise})

        def __reduce__(self):
            # Tune snapshots its callbacks with the experiment; this one holds the live table and a
            # progress bar, so a snapshot is a plain no-op callback (a run continues with --resume).
            return (tune.Callback, ())

    return TableCallback()


def _run_tuner(cfg: EvaluateConfig, specs: Sequence[TrialSpec], trial_settings: TrialSettings,
               real: Mapping[tuple[int, bool], np.ndarray], table: FvdTable, rows: list[dict[str, Any]],
               result: EvaluateResult, temp_dir: str) -> None:
    """Run ``specs`` as Ray Tune trials (Ray started here unless already running); rows go to ``table``."""
    # The classic Tune output engine is silent at verbose=0; one node sized from this machine.
    session = start_ray(cfg.address, num_cpus=os.cpu_count(), environ={"RAY_AIR_NEW_OUTPUT": "0"})
    try:
        from ray import tune
        from tqdm import tqdm

        with tqdm(total=len(specs), desc="sampled-FVD trials", unit="trial", disable=not cfg.progress,
                  file=sys.stderr) as bar:
            def on_row(row: dict[str, Any]) -> None:
                rows.append(row)
                bar.update(1)

            trainable = tune.with_resources(
                tune.with_parameters(_tune_trial, specs=specs, settings=trial_settings, real=real),
                {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
            tuner = tune.Tuner(
                trainable,
                param_space={"index": tune.grid_search(list(range(len(specs))))},
                tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=cfg.concurrency),
                run_config=tune.RunConfig(
                    name="sned-evaluate", storage_path=os.path.join(temp_dir, "tune"), verbose=0,
                    failure_config=tune.FailureConfig(max_failures=2),
                    callbacks=[_table_callback(table, specs, on_row)]),
            )
            grid = tuner.fit()
        for trial_result in grid:
            if trial_result.error is not None:
                index = trial_result.config.get("index") if trial_result.config else None
                spec = specs[index] if index is not None else None
                what = f"{arch_summary(json.loads(spec.arch))} ({spec.arch_id})" if spec else "a trial"
                reason = (str(trial_result.error).strip().splitlines() or [type(trial_result.error).__name__])[-1]
                result.failed.append(f"{what}: {reason[:300]}")
    finally:
        session.stop()


def evaluate(cfg: EvaluateConfig) -> EvaluateResult:
    """Run the sampled-FVD trials of ``cfg`` and fill its table (see the module docstring).

    Raises:
        UserError, SpaceError, FileNotFoundError: bad input (a missing checkpoint or data folder, a
            checkpoint of another space, an existing table without ``resume``, ...).
    """
    from sned.supernet.config import load_sample_config
    from sned.supernet.space import load_space

    began = time.perf_counter()
    space = load_space(cfg.experiment)
    resolutions = tuple(cfg.resolutions or space.resolutions)
    unknown = [r for r in resolutions if r not in space.resolutions]
    if unknown:
        raise SpaceError(f"--res {unknown} not in space {space.name!r}; valid: {list(space.resolutions)}")
    _check_config(cfg)
    ckpt, ckpt_info = _checkpoint(space, cfg.checkpoint)
    sample = load_sample_config(cfg.experiment)
    videos = cfg.videos or sample.n
    if cfg.pca_dim is not None and not 1 <= cfg.pca_dim < videos:
        raise UserError(f"--pca-dim {cfg.pca_dim}: expected 1 <= k < --videos {videos} (the generated set must "
                        f"be full rank in k dimensions)")
    real_videos = cfg.real_videos or videos
    steps = cfg.steps or sample.steps
    eta = sample.eta if cfg.eta is None else cfg.eta
    batch_size = cfg.batch_size or sample.batch_size
    ema = sample.use_ema if cfg.ema is None else cfg.ema
    if videos < 2 or real_videos < 2:
        raise UserError(f"FVD needs at least 2 videos per set; got {videos} generated, {real_videos} real")
    noise_floor = parse_noise_floor(cfg.noise_floor)
    dataset = _check_data(space, cfg.data, real_videos, cfg.seed, ckpt_info["class_names"])

    # 1. Subnets per resolution, seeded per resolution (or the ones the caller names).
    if cfg.archs is not None:
        selection = {int(res): [space.validate(a) for a in archs] for res, archs in cfg.archs.items()}
        resolutions = tuple(selection)
    else:
        selection = {res: select_subnets(space, res, cfg.n_subnets, np.random.default_rng([cfg.seed, res]),
                                         cfg.pool) for res in resolutions}

    # 2. The extractor's identity and the real features (driver side, once per resolution).
    import torch

    from sned.predictors.i3d import I3DFeatureExtractor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.address is None and cfg.gpus_per_trial > torch.cuda.device_count():
        # Tune would wait forever for GPUs that a local node does not have.
        raise UserError(f"--gpus-per-trial {cfg.gpus_per_trial}: this machine has {torch.cuda.device_count()} GPUs")
    if cfg.features is not None:
        from sned.predictors.features import DomainFeatureExtractor

        extractor = DomainFeatureExtractor(cfg.features, device=device, batch_size=batch_size)
    else:
        extractor = I3DFeatureExtractor(cfg.i3d, device=device, batch_size=batch_size)
    settings = {"experiment": space.name, "checkpoint": str(ckpt), "checkpoint_step": ckpt_info["step"],
                "data": str(Path(cfg.data).resolve()), "videos": videos, "real_videos": real_videos,
                "steps": steps, "eta": eta, "seed": cfg.seed, "ema": ema, "extractor": extractor.name,
                "extractor_sha256": extractor.weights_sha256,
                "features": str(Path(cfg.features).resolve()) if cfg.features else None, "n_subnets": cfg.n_subnets,
                "noise_floor": noise_floor, "noise_seed": cfg.seed + NOISE_SEED_OFFSET,
                "noise_subset": NOISE_SUBSET, "noise_real_disjoint": 2 * real_videos <= len(dataset),
                "held_out": cfg.held_out, "frame_stride": ckpt_info["frame_stride"],
                "resolutions": list(resolutions)}
    if cfg.pca_dim is not None:  # recorded only when set: tables made without it stay resumable
        settings["pca_dim"] = cfg.pca_dim
    guidance = sample.guidance if space.spec.classes else 1.0
    if space.spec.classes:  # generated videos take the classes in turn
        settings["guidance"] = guidance
    table = FvdTable(cfg.out, space, settings, resume=cfg.resume)
    specs = plan_trials(selection, cfg.seed, ckpt_info["sha256"], table.keys(), noise_floor, table.noise_keys())
    total = sum(len(v) for v in selection.values()) + sum(len(noise_floor_subset(v, noise_floor))
                                                          for v in selection.values())
    result = EvaluateResult(Path(cfg.out), _empty_table(), _empty_table(), len(specs), total - len(specs),
                            settings=settings)
    if not specs:
        result.noise_floor_tau = table.meta.get("noise_floor_tau")
        result.wall_seconds = time.perf_counter() - began
        return result
    cache_dir = Path(f"{cfg.out}.cache")
    real = {(res, second): real_features(cfg.data, res, space.frames, real_videos, cfg.seed, extractor, cache_dir,
                                         cfg.progress, second=second, dataset=dataset)
            for res, second in sorted({(s.res, s.noise) for s in specs})}
    del extractor  # the workers build their own

    trial_settings = TrialSettings(
        checkpoint=str(ckpt), checkpoint_sha256=ckpt_info["sha256"], ema=ema, prediction=ckpt_info["prediction"],
        videos=videos, steps=steps, eta=eta, batch_size=batch_size,
        i3d=str(Path(cfg.i3d).resolve()) if cfg.i3d else None, extractor=settings["extractor"],
        extractor_sha256=settings["extractor_sha256"], device="cuda" if cfg.gpus_per_trial > 0 else "cpu",
        threads=max(1, int(cfg.cpus_per_trial)),
        features=str(Path(cfg.features).resolve()) if cfg.features else None, guidance=guidance,
        data=str(Path(cfg.data).resolve()), held_out=cfg.held_out, frame_stride=ckpt_info["frame_stride"],
        seed=cfg.seed, pca_dim=cfg.pca_dim)

    # 3. The trials, on Ray Tune; rows are written by the callback as results arrive.
    rows: list[dict[str, Any]] = []
    temp_dir = tempfile.mkdtemp(prefix="sned-tune-")  # the Tune experiment's folder, removed afterwards
    try:
        _run_tuner(cfg, specs, trial_settings, real, table, rows, result, temp_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    import pandas as pd

    main_rows = [r for r in rows if not r["noise"]]
    result.rows = pd.DataFrame(main_rows) if main_rows else _empty_table()
    result.all_rows = pd.DataFrame(rows) if rows else _empty_table()
    result.noise_floor_tau = table.meta.get("noise_floor_tau")
    result.wall_seconds = time.perf_counter() - began
    return result


# ----------------------------------------------------------------------------- CLI


def _parse_resolutions(text: str | None) -> tuple[int, ...] | None:
    if text is None or text.strip().lower() == "all":
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--res {text!r}: expected comma-separated resolutions like 32,64 or 'all'") from None
    if not values:
        raise UserError(f"--res {text!r}: expected comma-separated resolutions like 32,64 or 'all'")
    return tuple(dict.fromkeys(values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned evaluate`` options."""
    parser.add_argument("experiment", help="experiment name (tiny, latent, ...) or YAML path")
    parser.add_argument("--ckpt", required=True, help="run folder (its newest checkpoint) or checkpoint folder")
    parser.add_argument("--data", required=True, help="folder of real videos (searched recursively)")
    parser.add_argument("--out", required=True, help="the sampled-FVD table to write (.parquet)")
    parser.add_argument("--res", help="resolutions, e.g. 32,64, or 'all' (default all)")
    parser.add_argument("--n-subnets", type=int, default=DEFAULT_SUBNETS,
                        help=f"subnets per resolution, largest and smallest included (default {DEFAULT_SUBNETS})")
    parser.add_argument("--videos", type=int, help="generated videos per trial (default: the experiment's sample.n)")
    parser.add_argument("--real-videos", type=int, help="real clips per resolution (default: --videos)")
    parser.add_argument("--pca-dim", type=int, help="FVD in the real features' top-k principal directions "
                        "(k < --videos; default: every feature dimension)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the experiment's sample.steps)")
    parser.add_argument("--eta", type=float, help="DDIM eta (default: sample.eta, usually 0)")
    parser.add_argument("--batch-size", type=int, help="videos per forward, generation and I3D (default: "
                        "sample.batch_size)")
    parser.add_argument("--seed", type=int, default=0, help="generation, clip and selection seed (default 0)")
    parser.add_argument("--i3d", metavar="PATH", help="I3D weights (default: $SNED_I3D_WEIGHTS, else a random-init "
                        "I3D, whose FVDs only compare with each other)")
    parser.add_argument("--features", metavar="DIR", help="domain classifier from `sned features train` instead of "
                        "I3D (features domain:<sha12>; also fills the inception_score column)")
    parser.add_argument("--address", help="Ray cluster address (auto, ray://host:10001); default: local Ray")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default 0: CPU)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    parser.add_argument("--concurrency", type=int, help="most trials at a time (default: as resources allow)")
    parser.add_argument("--noise-floor", default="0", metavar="M|all",
                        help="evaluate every subnet ('all') or M per resolution a second time, independently "
                             "(seed+1, another real subset and held-out set); Kendall tau -> metadata (default 0)")
    parser.add_argument("--held-out", type=int, default=DEFAULT_HELD_OUT, metavar="N",
                        help=f"real clips per resolution for the held-out loss column (default {DEFAULT_HELD_OUT}, "
                             "at most the folder's videos)")
    parser.add_argument("--resume", action="store_true", help="continue an existing table; finished trials are "
                        "skipped")


def _print_summary(result: EvaluateResult) -> None:
    from sned.predictors.accuracy import read_fvd_table

    s = result.settings
    print(f"table {result.table}: {s['extractor']} features ({'random-init, FVDs only compare with each other' if s['extractor'].startswith('i3d-random') else s['extractor_sha256'][:12]}), "
          f"{s['videos']} videos x {s['steps']} DDIM steps, seed {s['seed']}")
    print(f"trials: {result.planned} run, {result.skipped} already done, {len(result.failed)} failed")
    if not result.rows.empty:
        df = result.rows.sort_values(["res", "gflops"])
        df = df.assign(subnet=[arch_summary(json.loads(a)) for a in df["arch"]])
        scores = ["fvd", "kvd"] + [c for c in ("inception_score", "loss")
                                   if df.get(c) is not None and df[c].notna().any()]
        print(df[["arch_id", "subnet", "gflops", *scores, "seconds"]].to_string(
            index=False, float_format=lambda v: f"{v:.4g}"))
        everything = result.all_rows if not result.all_rows.empty else df
        loss_time = (f", held-out loss {df['loss_seconds'].mean():.1f} s" if "loss_seconds" in df
                     and df["loss_seconds"].notna().any() else "")
        print(f"time per trial: mean {df['seconds'].mean():.1f} s (generate {df['generate_seconds'].mean():.1f} s, "
              f"I3D + FVD {df['features_seconds'].mean():.1f} s{loss_time}); at most "
              f"{peak_concurrency(everything['started_at'], everything['seconds'])} trials at a time on "
              f"{everything['worker'].nunique()} workers; wall {result.wall_seconds:.1f} s")
    if result.table.is_file():
        table, meta = read_fvd_table(result.table)
        print(f"table rows: {len(table)}")
        columns = (meta.get("noise_floor") or {}).get("columns", {})
        for column in NOISE_COLUMNS:
            entry = columns.get(column) or {}
            if entry.get("tau") is None:
                continue
            print(f"noise-floor tau of {column} (two independent passes: seed {s['seed']} vs {s['noise_seed']}, "
                  f"other real clips): {entry['tau']:.3f} "
                  f"(per res: {', '.join(f'{r}: {t:.3f}' for r, t in entry['tau_res'].items())})")
    for failure in result.failed:
        print(f"failed: {failure}", file=sys.stderr)
    if result.failed:
        print("rerun with --resume to retry the failed trials", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``sned evaluate``; exit 1 when some trials failed (the table holds the rest)."""
    cfg = EvaluateConfig(
        experiment=args.experiment, checkpoint=args.ckpt, data=args.data, out=args.out,
        resolutions=_parse_resolutions(args.res), n_subnets=args.n_subnets, videos=args.videos,
        real_videos=args.real_videos, steps=args.steps, eta=args.eta, batch_size=args.batch_size, seed=args.seed,
        i3d=args.i3d, features=args.features, address=args.address, gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        concurrency=args.concurrency, noise_floor=parse_noise_floor(args.noise_floor), held_out=args.held_out,
        pca_dim=args.pca_dim, resume=args.resume,
        progress=os.environ.get("TQDM_DISABLE") not in ("1", "true"))
    result = evaluate(cfg)
    _print_summary(result)
    return 1 if result.failed else 0


__all__ = ["DEFAULT_HELD_OUT", "LOSS_COLUMNS", "NOISE_COLUMNS", "EvaluateConfig", "EvaluateResult", "FvdTable",
           "TrialSettings", "TrialSpec", "add_arguments", "candidate_pool", "clip_subset", "evaluate", "held_out_set",
           "noise_floor_subset", "noise_floor_tau", "parse_noise_floor", "peak_concurrency", "plan_trials",
           "real_features", "run", "run_trial", "select_subnets", "subnet_loss"]
