"""Sampled FVD/KVD of subnets of a supernet checkpoint, run as Ray Tune trials (``sned evaluate``).

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

Where the pieces live: :mod:`~sned.predictors.evaluate_select` (step 1, the clip subsets),
:mod:`~sned.predictors.evaluate_trials` (steps 2-3), :mod:`~sned.predictors.evaluate_table` (step
4), this module (the run), :mod:`~sned.predictors.evaluate_cli` (the command). The names below are
importable from here as well.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sned.predictors.evaluate_select import (
    DEFAULT_POOL,
    DEFAULT_SUBNETS,
    ENUMERATE_LIMIT,
    NOISE_SEED_OFFSET,
    NoiseFloor,
    candidate_pool,
    clip_subset,
    noise_floor_subset,
    parse_noise_floor,
    select_subnets,
)
from sned.predictors.evaluate_table import (
    COMPARABLE_SETTINGS,
    KEY_COLUMNS,
    NOISE_COLUMNS,
    NOISE_SUBSET,
    ROW_DTYPES,
    FvdTable,
    empty_table,
    noise_floor_tau,
    plan_trials,
)
from sned.predictors.evaluate_trials import (
    DEFAULT_HELD_OUT,
    LOSS_COLUMNS,
    LOSS_TIMESTEPS,
    TrialSettings,
    TrialSpec,
    held_out_set,
    peak_concurrency,
    real_features,
    run_trial,
    subnet_loss,
    tune_trial,
)
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.ray_start import start_ray
from sned.supernet.space import Arch, SearchSpace, arch_summary

if TYPE_CHECKING:  # pandas loads lazily: the CLI parses and checks input before importing it
    import pandas as pd


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
    for name, low in (("n_subnets", 2), ("videos", 2), ("real_videos", 2), ("steps", 1), ("batch_size", 1),
                      ("held_out", 1), ("concurrency", 1), ("pool", 1)):
        value = getattr(cfg, name)
        if value is not None and value < low:
            raise SettingError(name, "{setting} {value}: expected >= {low}", value=value, low=low)
    if cfg.eta is not None and cfg.eta < 0:
        raise SettingError("eta", "{eta} {value}: expected >= 0", value=cfg.eta)
    if cfg.cpus_per_trial <= 0 or cfg.gpus_per_trial < 0:
        raise SettingError("cpus_per_trial" if cfg.cpus_per_trial <= 0 else "gpus_per_trial",
                           "{cpus_per_trial} {cpus} must be > 0 and {gpus_per_trial} {gpus} >= 0",
                           cpus=cfg.cpus_per_trial, gpus=cfg.gpus_per_trial)
    if cfg.address is None and cfg.cpus_per_trial > (os.cpu_count() or 1):
        raise SettingError("cpus_per_trial", "{cpus_per_trial} {value} exceeds this machine's {cpus} CPUs",
                           value=cfg.cpus_per_trial, cpus=os.cpu_count())
    if not Path(cfg.data).is_dir():
        what = "is not a folder" if Path(cfg.data).exists() else "does not exist"
        raise SettingError("data", "{data} {value} {what} (a folder of real videos)", value=cfg.data, what=what)
    if cfg.i3d is not None and not Path(cfg.i3d).is_file():
        raise SettingError("i3d", "{i3d} {value}: no such file", value=cfg.i3d)
    if cfg.features is not None:
        from sned.predictors.features_card import check_classes, load_card

        if cfg.i3d is not None:
            raise SettingError("features", "{features} replaces I3D: pass {i3d} or {features}, not both")
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
        raise SettingError("real_videos", "{real_videos} {value}: {path} holds {n} usable videos of {frames} frames; "
                           "pass {real_videos} {n} or fewer (and {videos}, whose value it defaults to), or add videos",
                           value=real_videos, path=data, n=len(dataset), frames=space.frames)
    classes = space.spec.classes
    if classes and len(dataset.class_names) != classes:
        found = (f"{len(dataset.class_names)} class folders" if dataset.class_names
                 else "videos outside class folders")
        raise SettingError("data", "space {name!r} is class-conditional with {classes} classes, but {data} {value} has "
                           "{found}; the held-out loss needs each clip's class (<data>/<class>/*.mp4)", name=space.name,
                           classes=classes, value=data, found=found)
    if classes and class_names and list(dataset.class_names) != list(class_names):
        raise SettingError("data", "{data} {value} has classes {found}, the checkpoint was trained on {wanted}; the "
                           "held-out loss would give subnets the wrong labels", value=data,
                           found=list(dataset.class_names), wanted=list(class_names))
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
                tune.with_parameters(tune_trial, specs=specs, settings=trial_settings, real=real),
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
        raise SettingError("resolutions", "{resolutions} {unknown} not in space {name!r}; valid: {valid_res}",
                           unknown=unknown, name=space.name, valid_res=list(space.resolutions),
                           valid=list(space.resolutions))
    _check_config(cfg)
    ckpt, ckpt_info = _checkpoint(space, cfg.checkpoint)
    sample = load_sample_config(cfg.experiment)
    videos = cfg.videos or sample.n
    if cfg.pca_dim is not None and not 1 <= cfg.pca_dim < videos:
        raise SettingError("pca_dim", "{pca_dim} {value}: expected 1 <= k < {videos} {n} (the generated set must be "
                           "full rank in k dimensions)", value=cfg.pca_dim, n=videos)
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
        raise SettingError("gpus_per_trial", "{gpus_per_trial} {value}: this machine has {n} GPUs",
                           value=cfg.gpus_per_trial, n=torch.cuda.device_count())
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
    result = EvaluateResult(Path(cfg.out), empty_table(), empty_table(), len(specs), total - len(specs),
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
    result.rows = pd.DataFrame(main_rows) if main_rows else empty_table()
    result.all_rows = pd.DataFrame(rows) if rows else empty_table()
    result.noise_floor_tau = table.meta.get("noise_floor_tau")
    result.wall_seconds = time.perf_counter() - began
    return result


__all__ = ["COMPARABLE_SETTINGS", "DEFAULT_HELD_OUT", "DEFAULT_POOL", "DEFAULT_SUBNETS", "ENUMERATE_LIMIT", "KEY_COLUMNS",
           "LOSS_COLUMNS", "LOSS_TIMESTEPS", "NOISE_COLUMNS", "NOISE_SEED_OFFSET", "NOISE_SUBSET", "ROW_DTYPES",
           "EvaluateConfig", "EvaluateResult", "FvdTable", "NoiseFloor", "TrialSettings", "TrialSpec", "candidate_pool",
           "clip_subset", "empty_table", "evaluate", "held_out_set", "noise_floor_subset", "noise_floor_tau",
           "parse_noise_floor", "peak_concurrency", "plan_trials", "real_features", "run_trial", "select_subnets",
           "subnet_loss"]
