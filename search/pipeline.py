"""``sned pipeline EXPERIMENT``: every stage from videos to Pareto fronts, resumable, with provenance.

Stages (in order; ``--stages`` picks a subset):

=========  ==========================================  =====================================
stage      what it does                                output under ``--out``
=========  ==========================================  =====================================
data       synthesise the procedural video dataset     ``data/`` (.mp4 in class folders)
features   train the domain classifier (FVD features)  ``features/`` (safetensors + card.json)
vae        latent spaces: train the video autoencoder  ``vae/`` (``sned vae train``)
latents    latent spaces: encode the data once         ``latents/`` (the latent cache)
train      superposition-train the supernet            ``train/`` (checkpoints, metrics.csv)
latency    measure the per-block table, validate it    ``latency-<device>.parquet``, parity
           (latent spaces: and time the decoder)
evaluate   sampled FVD/KVD of stratified subnets (Ray) ``fvd.parquet``
fit        fit and cross-validate the FVD predictor    ``predictor.npz``
search     the fronts at every resolution              ``search/`` (pareto.csv/json)
report     the self-contained HTML report              ``search/report.html``
=========  ==========================================  =====================================

A stage whose output is complete is skipped (its ``stages/<stage>.json`` marker records what it
made, the command, the commit, the device, the date and the seeds); a partial one resumes (the
data generator skips written files, training and latency measurement continue from their files,
evaluation skips finished trials, the autoencoder and the latent cache resume). So a killed
pipeline simply runs again. A pixel experiment has no ``vae`` and ``latents`` stages. ``--bundle`` then copies
the small artifacts into the experiment's folder (``experiments/<name>/``) with a provenance file.

Settings come from the experiment YAML's ``pipeline:`` section (strict: unknown keys are errors).
This module stays importable without torch; each stage imports what it needs when it runs.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from sned.supernet.base.artifacts import FVD_TABLE, PARITY_HTML, PREDICTOR, latency_table_name
from sned.supernet.base.errors import UserError
from sned.supernet.base.files import write_json_atomic
from sned.supernet.base.provenance import git_commit
from sned.supernet.base.settings import load_section
from sned.supernet.space import SearchSpace, load_experiment, load_space

logger = logging.getLogger(__name__)

STAGES = ("data", "features", "vae", "latents", "train", "latency", "evaluate", "fit", "search", "report")
LATENT_STAGES = ("vae", "latents")


def stages_for(space: SearchSpace) -> tuple[str, ...]:
    """The stages of an experiment: every one for a latent space, all but the autoencoder's for a pixel one."""
    return STAGES if space.spec.latent is not None else tuple(s for s in STAGES if s not in LATENT_STAGES)


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PipelineConfig:
    """The ``pipeline:`` section of an experiment YAML (every field optional).

    Args:
        seed: the one seed of the run (data, training, evaluation and search derive from it).
        data_videos, data_frames, data_size: the synthetic dataset (videos, frames per video, pixels).
        train_steps: training steps (None: the ``train:`` section's).
        latency_threads: CPU threads to measure with.
        latency_clock: ``cpu`` (process CPU time, 1 thread: robust on a shared machine) or ``wall``.
        latency_statistic: what the table sums: ``min`` (most repeatable under load) or ``median``.
        latency_repeats: timed repeats per block.
        latency_validate: random subnets measured end to end to validate the table.
        eval_subnets: subnets per resolution in the sampled-FVD table.
        eval_videos: generated videos per trial.
        eval_real_videos: real clips per resolution and pass, features computed once (None: eval_videos).
        eval_pca_dim: FVD in the real features' top-k principal directions (None: every dimension).
        eval_steps: DDIM steps per video.
        eval_noise_floor: ``all`` (every subnet evaluated a second time, independently: another seed,
            real subset and held-out set; DESIGN's two passes) or how many per resolution (0: none);
            the two passes' Kendall tau is the noise floor.
        eval_cpus_per_trial: Ray resources per trial (1 on a 2-core machine: two trials at a time).
        features_epochs: epochs of the domain classifier whose features score the sampled videos.
        fit_folds: outer cross-validation folds of the predictor fit (nested CV; they score it).
        fit_inner_folds: inner folds (they choose the model inside each outer fold).
        search_budget_ms: the latency budget of the bundled search.
        search_steps: denoising steps that budget covers (1: one UNet forward; a latent space's
            decoder is added once per video).
        vae_steps: latent spaces: steps of the autoencoder (``sned vae train``'s default when None).
        vae: latent spaces: an existing autoencoder folder (``sned vae train`` or diffusers
            ``save_pretrained``; relative to the experiment YAML's folder, or absolute) that the ``vae``
            stage uses instead of training one.
    """

    seed: int = 0
    data_videos: int = 240
    data_frames: int = 16
    data_size: int = 128
    train_steps: int | None = None
    latency_threads: int = 1
    latency_clock: Literal["cpu", "wall"] = "cpu"
    latency_statistic: Literal["min", "median"] = "min"
    latency_repeats: int = 25
    latency_validate: int = 30
    eval_subnets: int = 10
    eval_videos: int = 12
    eval_real_videos: int | None = None
    eval_pca_dim: int | None = None
    eval_steps: int = 10
    eval_noise_floor: int | Literal["all"] = "all"
    eval_cpus_per_trial: float = 1.0
    features_epochs: int = 30
    fit_folds: int = 5
    fit_inner_folds: int = 3
    search_budget_ms: float = 200.0
    search_steps: int = 1
    vae_steps: int | None = None
    vae: str | None = None

    @classmethod
    def from_experiment(cls, data: Mapping[str, Any]) -> PipelineConfig:
        """The ``pipeline:`` section of a loaded experiment YAML (strict; see :func:`~sned.supernet.base.settings.load_section`)."""
        return load_section(cls, data.get("pipeline") or {}, "pipeline", parsers={"eval_noise_floor": _noise_floor})


def _noise_floor(value: Any, where: str) -> int | str:
    """``eval_noise_floor``: ``"all"`` or a count."""
    from sned.predictors.evaluate_select import parse_noise_floor

    try:
        return parse_noise_floor(value)
    except UserError:
        raise UserError(f"{where} = {value!r}: expected 'all' or an integer >= 0") from None


@dataclass
class Context:
    """What every stage sees: the experiment, the output folder and the settings."""

    experiment: str  # YAML path
    space: SearchSpace
    cfg: PipelineConfig
    out: Path
    progress: bool = True
    device: str = "cpu"
    paths: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = self.out.resolve()  # absolute: Ray workers and subprocesses run elsewhere
        self.paths = {
            "data": self.out / "data",
            "features": self.out / "features",
            "vae": (Path(self.experiment).parent / self.cfg.vae).resolve() if self.cfg.vae else self.out / "vae",
            "latents": self.out / "latents",
            "train": self.out / "train",
            "latency": self.out / latency_table_name(self.device),
            "parity": self.out / PARITY_HTML,
            "evaluate": self.out / FVD_TABLE,
            "fit": self.out / PREDICTOR,
            "search": self.out / "search",
        }


def provenance(ctx: Context, stage: str, seconds: float, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"stage": stage, "experiment": ctx.space.name, "space_hash": ctx.space.hash,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "commit": git_commit() or "unknown",
            "device": ctx.device, "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seed": ctx.cfg.seed,
            "seconds": round(seconds, 1), "settings": asdict(ctx.cfg), **(extra or {})}


# ----------------------------------------------------------------------------- stages


def stage_data(ctx: Context) -> dict[str, Any]:
    from sned.supernet.synth import synthesize

    cfg = ctx.cfg
    paths = synthesize(ctx.paths["data"], cfg.data_videos, cfg.data_frames, cfg.data_size, cfg.seed,
                       progress=ctx.progress)
    return {"videos": len(paths)}


def stage_features(ctx: Context) -> dict[str, Any]:
    from sned.predictors.features_training import FeatureTrainingConfig, train_features

    result = train_features(FeatureTrainingConfig(data=str(ctx.paths["data"]), out=str(ctx.paths["features"]),
                                                  frames=ctx.space.frames, size=min(ctx.space.resolutions),
                                                  epochs=ctx.cfg.features_epochs, seed=ctx.cfg.seed,
                                                  progress=ctx.progress))
    return {"heldout_accuracy": result.card.heldout_accuracy, "weights_sha256": result.card.weights_sha256,
            "reused": result.is_reused}


def stage_vae(ctx: Context) -> dict[str, Any]:
    from sned.supernet.vae import VAEConfig
    from sned.supernet.vae_train import DEFAULT_STEPS, VAETrainSettings, list_checkpoints, train_vae

    latent = ctx.space.spec.latent
    out = ctx.paths["vae"]
    if ctx.cfg.vae:  # a given autoencoder: check it fits the space, train nothing
        from sned.supernet.latent import check_autoencoder
        from sned.supernet.vae_load import load_autoencoder

        autoencoder = load_autoencoder(out)
        check_autoencoder(autoencoder, ctx.space, f"pipeline.vae {out}")
        return {"given": str(out), "identity": autoencoder.identity, "sha256": autoencoder.sha256}
    architecture = VAEConfig(latent_channels=latent.channels, temporal_factor=latent.temporal_factor)
    if architecture.spatial_factor != latent.spatial_factor:
        raise UserError(f"space.latent.spatial_factor = {latent.spatial_factor}: sned's default autoencoder "
                        f"downsamples {architecture.spatial_factor}x; train one with `sned vae train` and pass --vae")
    result = train_vae(VAETrainSettings(str(ctx.paths["data"]), str(out), steps=ctx.cfg.vae_steps or DEFAULT_STEPS,
                                        seed=ctx.cfg.seed, resume=bool(list_checkpoints(out)), architecture=architecture,
                                        resolutions=tuple(ctx.space.resolutions), frames=ctx.space.frames,
                                        device=ctx.device, progress=ctx.progress, command=" ".join(sys.argv)))
    return {"steps": result.end_step, "reused": result.is_reused,
            "held_out": (result.config or {}).get("held_out")}


def stage_latents(ctx: Context) -> dict[str, Any]:
    from sned.supernet.data import VideoClipDataset
    from sned.supernet.latent import build_latent_cache
    from sned.supernet.vae_load import load_autoencoder

    autoencoder = load_autoencoder(ctx.paths["vae"], device=ctx.device)
    videos = VideoClipDataset(ctx.paths["data"], frames=ctx.space.frames, size=max(ctx.space.resolutions),
                              seed=ctx.cfg.seed, cache=True)
    cache = build_latent_cache(autoencoder, videos, ctx.space.resolutions, ctx.paths["latents"], progress=ctx.progress)
    return {"key": cache.key, "videos": len(cache.manifest["videos"]), "autoencoder": autoencoder.identity}


def stage_train(ctx: Context) -> dict[str, Any]:
    from sned.supernet.checkpoint import list_checkpoints
    from sned.supernet.train import TrainSettings, train

    run = ctx.paths["train"]
    found = list_checkpoints(run) if run.exists() else []
    latent = ctx.space.spec.latent is not None
    if found:  # a run that finished before its marker was written (a kill in between) is done
        from sned.supernet.checkpoint import read_state
        from sned.supernet.config import load_train_config

        state = read_state(found[-1], verify=False)
        if int(state["step"]) >= (ctx.cfg.train_steps or load_train_config(ctx.experiment).steps):
            return {"end_step": int(state["step"]), "checkpoint": str(found[-1]), "last_loss_mean": None,
                    "finished_earlier": True}
    resume = bool(found)
    result = train(TrainSettings(experiment=ctx.experiment, data=str(ctx.paths["data"]), out=str(run),
                                 steps=ctx.cfg.train_steps, seed=ctx.cfg.seed, resume=resume,
                                 progress=ctx.progress, vae=str(ctx.paths["vae"]) if latent else None,
                                 latents=str(ctx.paths["latents"]) if latent else None))
    losses = result.losses
    return {"end_step": result.end_step, "checkpoint": str(result.checkpoint),
            "last_loss_mean": float(sum(losses[-50:]) / max(1, len(losses[-50:]))) if losses else None}


def stage_latency(ctx: Context) -> dict[str, Any]:
    from sned.predictors.latency import LatencyTable
    from sned.predictors.latency_measure import MeasureSettings, measure_table
    from sned.predictors.latency_validate import parity_html, store_validation, validate_table

    cfg = ctx.cfg
    settings = MeasureSettings(device=ctx.device, threads=cfg.latency_threads, repeats=cfg.latency_repeats,
                               seed=cfg.seed, clock=cfg.latency_clock if ctx.device == "cpu" else "wall",
                               statistic=cfg.latency_statistic)
    measure_table(ctx.space, ctx.paths["latency"], settings, experiment=ctx.experiment, progress=ctx.progress)
    if ctx.space.spec.latent is not None:  # the decoder: a measured fixed block per resolution
        from sned.predictors.latency_decoder import measure_decoder
        from sned.supernet.vae_load import load_autoencoder

        measure_decoder(ctx.paths["latency"], ctx.space, load_autoencoder(ctx.paths["vae"]), repeats=cfg.latency_repeats,
                        seed=cfg.seed, progress=ctx.progress)
    table = LatencyTable.load(ctx.paths["latency"], ctx.space)
    result = validate_table(ctx.space, table, n=ctx.cfg.latency_validate, seed=ctx.cfg.seed, device=ctx.device,
                            threads=ctx.cfg.latency_threads, progress=ctx.progress)
    store_validation(table, result, command=" ".join(sys.argv))
    parity_html(result, ctx.paths["parity"], title=f"{ctx.space.name}: predicted vs measured latency")
    return {"validation": LatencyTable.load(ctx.paths["latency"], ctx.space).meta.get("validation")}


def stage_evaluate(ctx: Context) -> dict[str, Any]:
    from sned.predictors.evaluate import EvaluateConfig, evaluate

    cfg = ctx.cfg
    result = evaluate(EvaluateConfig(
        experiment=ctx.experiment, checkpoint=str(ctx.paths["train"]), data=str(ctx.paths["data"]),
        out=str(ctx.paths["evaluate"]), n_subnets=cfg.eval_subnets, videos=cfg.eval_videos,
        real_videos=cfg.eval_real_videos, pca_dim=cfg.eval_pca_dim, steps=cfg.eval_steps,
        seed=cfg.seed, cpus_per_trial=cfg.eval_cpus_per_trial, noise_floor=cfg.eval_noise_floor,
        features=str(ctx.paths["features"]) if marker(ctx.out, "features").exists() else None,
        resume=ctx.paths["evaluate"].exists(), progress=ctx.progress))
    if result.failed:  # the finished rows are kept; a re-run retries only the failed trials
        raise UserError(f"{len(result.failed)} sampled-FVD trials failed (first: {result.failed[0]}); "
                        f"run the pipeline again to retry them")
    return {"new_rows": len(result.rows), "skipped": result.skipped, "failed": result.failed,
            "noise_floor_tau": result.noise_floor_tau, "wall_seconds": result.wall_seconds}


def stage_fit(ctx: Context) -> dict[str, Any]:
    from sned.predictors.accuracy import AccuracyPredictor, read_fvd_table

    table, meta = read_fvd_table(ctx.paths["evaluate"], ctx.space)
    predictor = AccuracyPredictor.fit(ctx.space, table, folds=ctx.cfg.fit_folds, inner_folds=ctx.cfg.fit_inner_folds,
                                      seed=ctx.cfg.seed, table_meta=meta,
                                      command=" ".join(sys.argv), progress=ctx.progress)
    predictor.save(ctx.paths["fit"])
    return {"model": predictor.kind, "metrics": predictor.metrics}


def stage_search(ctx: Context) -> dict[str, Any]:
    from sned.search.engine import SearchConfig, run_search
    from sned.search.output import write_run

    config = SearchConfig(experiment=ctx.experiment, budget_ms=ctx.cfg.search_budget_ms, resolutions=None,
                          steps=ctx.cfg.search_steps, seed=ctx.cfg.seed, table=str(ctx.paths["latency"]),
                          predictor=str(ctx.paths["fit"]))
    result = run_search(config, space=ctx.space)
    if ctx.paths["search"].exists():
        shutil.rmtree(ctx.paths["search"])
    write_run(result, ctx.paths["search"], command=sys.argv)
    return {"fronts": {str(res): len(front) for res, front in result.fronts.items()}}


def stage_report(ctx: Context) -> dict[str, Any]:
    from sned.search.report import write_report

    return {"report": str(write_report(ctx.paths["search"]))}


STAGE_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "data": stage_data, "features": stage_features, "vae": stage_vae, "latents": stage_latents, "train": stage_train,
    "latency": stage_latency, "evaluate": stage_evaluate, "fit": stage_fit, "search": stage_search, "report": stage_report,
}


# ----------------------------------------------------------------------------- driver


def marker(out: Path, stage: str) -> Path:
    return out / "stages" / f"{stage}.json"


def run_pipeline(experiment: str, out: str | Path, stages: Sequence[str] | None = None, *, device: str = "cpu",
                 force: Sequence[str] = (), progress: bool = True, log: Callable[[str], None] = logger.info
                 ) -> dict[str, dict[str, Any]]:
    """Run (or continue) the pipeline; returns each stage's provenance record (``log`` gets a line per stage).

    ``stages``: a subset of the experiment's :func:`stages_for` (default: all of them).
    """
    unknown = [s for s in stages or () if s not in STAGES]
    if unknown:
        raise UserError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    data, path = load_experiment(experiment)
    space = load_space(path)
    valid = stages_for(space)
    stages = valid if stages is None else stages
    if any(s not in valid for s in stages):
        raise UserError(f"experiment {space.name!r} is a pixel-space experiment: it has no {', '.join(LATENT_STAGES)} "
                        f"stages; valid: {', '.join(valid)}")
    ctx = Context(str(path), space, PipelineConfig.from_experiment(data), Path(out), progress, device)
    ctx.out.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    ordered = [s for s in STAGES if s in stages]
    for i, stage in enumerate(ordered, 1):
        done = marker(ctx.out, stage)
        if done.exists() and stage not in force:
            records[stage] = json.loads(done.read_text())
            log(f"[{i}/{len(ordered)}] {stage}: done earlier ({records[stage]['date']}), skipped")
            continue
        log(f"[{i}/{len(ordered)}] {stage} ...")
        start = time.perf_counter()
        extra = STAGE_FUNCTIONS[stage](ctx)
        record = provenance(ctx, stage, time.perf_counter() - start, {"result": extra})
        done.parent.mkdir(exist_ok=True)
        write_json_atomic(done, json.loads(json.dumps(record, default=str)))
        records[stage] = record
        log(f"[{i}/{len(ordered)}] {stage}: done in {record['seconds']:.0f} s")
    return records


def bundled_files(device: str) -> dict[str, str]:
    """Stage -> the artifact file :func:`bundle` copies (the latency table of ``device``, the FVD table, the predictor)."""
    return {"latency": latency_table_name(device), "evaluate": FVD_TABLE, "fit": PREDICTOR}


def bundle(experiment: str, out: str | Path, device: str = "cpu") -> Path:
    """Copy the pipeline's small artifacts next to the experiment YAML, with ``provenance.json``."""
    _, path = load_experiment(experiment)
    out = Path(out)
    target = path.parent / path.stem
    target.mkdir(exist_ok=True)
    records = {}
    for stage, name in bundled_files(device).items():
        if not (out / name).exists() or not marker(out, stage).exists():
            raise UserError(f"cannot bundle: {out / name} is missing or its stage is unfinished; run the pipeline first")
        shutil.copy2(out / name, target / name)
        records[name] = json.loads(marker(out, stage).read_text())
    for stage in ("data", "train"):
        if marker(out, stage).exists():
            records[stage] = json.loads(marker(out, stage).read_text())
    if marker(out, "features").exists():  # the domain classifier that scored the sampled videos
        shutil.copytree(out / "features", target / "features", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".*", "train-state.*"))
        records["features"] = json.loads(marker(out, "features").read_text())
    metrics = out / "train" / "metrics.csv"
    if metrics.exists():  # the training loss curve the README quotes
        shutil.copy2(metrics, target / "train-metrics.csv")
        records["train-metrics.csv"] = records.get("train", {})
    if (out / "train" / "validation.csv").exists():  # the held-out loss curve (benchmarks/training.py)
        shutil.copy2(out / "train" / "validation.csv", target / "validation.csv")
        records["validation.csv"] = records.get("train", {})
    if marker(out, "vae").exists():  # a latent space's autoencoder: its samples decode with it
        records["vae"] = json.loads(marker(out, "vae").read_text())
        source = Path(records["vae"]["result"].get("given") or out / "vae")
        if source.resolve() != (target / "vae").resolve():
            shutil.copytree(source, target / "vae", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".*", "checkpoints", "*.csv", "tb"))
    if (out / "train").exists():
        records["supernet"] = _bundle_supernet(out / "train", target / "supernet", out)
        for old in (target / "samples").glob("*.gif"):  # grids of an earlier bundle (other names)
            old.unlink()
        records["samples"] = _bundle_samples(target / "supernet", target / "samples",
                                             PipelineConfig.from_experiment(load_experiment(experiment)[0]))
    write_json_atomic(target / "provenance.json", json.loads(json.dumps(records, default=str)))
    return target


def _bundle_supernet(run: Path, folder: Path, out: Path) -> dict[str, Any]:
    """The newest checkpoint's EMA weights (fp16) with provenance: command, commit, date, steps, seconds, losses."""
    from sned.supernet.checkpoint import bundle_weights
    from sned.supernet.train import read_metrics, read_validation

    rows = read_metrics(run)
    validation = read_validation(run)
    last = max((r["step"] for r in validation), default=0)
    losses = {f"{r['res']}px/{r['subnet']}/t{r['t']}": r["loss"] for r in validation if r["step"] in (0, last)}
    marker_file = marker(out, "train")
    train_marker = json.loads(marker_file.read_text()) if marker_file.exists() else {}
    provenance = {"command": train_marker.get("command"), "commit": git_commit() or "unknown",
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "steps": rows[-1]["step"] if rows else 0,
                  "train_seconds": round(sum(r["seconds"] for r in rows), 1),
                  "held_out_step": last, "held_out_loss": losses,
                  "train_marker": {k: train_marker.get(k) for k in ("commit", "date", "seconds", "host", "cpu")}}
    bundle_weights(run, folder, dtype="fp16", provenance=provenance)
    return {"folder": f"{folder.name}/", **provenance}


def _class_order(n: int, class_names: Sequence[str]) -> list[int]:
    """Indices into ``render_clips(n, ...)`` (video ``i`` of class ``CLASS_NAMES[i % 6]``) that put class
    ``class_names[i % k]`` at position ``i``: what ``sned sample`` generates for a class-conditional
    checkpoint. Unconditional (no names): the clips' own order."""
    from sned.supernet.synth import CLASS_NAMES

    if sorted(class_names) != sorted(CLASS_NAMES):
        return list(range(n))
    k = len(CLASS_NAMES)
    return [(i // k) * k + CLASS_NAMES.index(class_names[i % k]) for i in range(n)]


def _bundle_samples(weights: Path, folder: Path, cfg: PipelineConfig, steps: int = 25) -> dict[str, Any]:
    """Per resolution, GIF grids of the largest and the smallest subnet (several seeds) and of real clips.

    Sampled from the bundled (fp16) weights, so a fresh clone's ``sned sample tiny ...`` gives the
    same videos. 24 videos at the two small resolutions, 12 at the largest (file size).
    """
    from sned.supernet.checkpoint import load_supernet
    from sned.supernet.latent import autoencoder_for
    from sned.supernet.sample import generate, to_uint8, video_grid
    from sned.supernet.synth import render_clips
    from sned.supernet.video_io import write_video

    net, info = load_supernet(weights)
    decoder = autoencoder_for(info)  # latent spaces: samples decode to video
    space = net.space
    written: dict[str, Any] = {}
    for res in space.resolutions:
        n = 24 if res < max(space.resolutions) else 12
        scale = max(1, 64 // res)
        real = render_clips(n, space.frames, res, cfg.seed + 1, first_index=1000)  # unseen videos of every class
        real = real[_class_order(n, info.get("class_names") or [])]  # column j: the class sampled in column j
        write_video(folder / f"real-{res}.gif", video_grid(real, columns=6, scale=scale))
        written[f"real-{res}"] = {"file": f"samples/real-{res}.gif", "n": n, "seed": cfg.seed + 1}
        for which in ("largest", "smallest"):
            arch = getattr(space, which)(res)
            videos = to_uint8(generate(net, arch, n, steps, seed=0, prediction=info["config"].get("prediction", "v"),
                                       guidance=float(info["sample_config"].get("guidance", 1.0)), decoder=decoder))
            write_video(folder / f"{which}-{res}.gif", video_grid(videos, columns=6, scale=scale))
            written[f"{which}-{res}"] = {"arch": arch, "file": f"samples/{which}-{res}.gif", "n": n}
    return {"checkpoint_sha256": info["sha256"], "step": info["step"], "steps": steps, "seed": 0, "gifs": written,
            "command": f"sned sample {weights.parent.name} --largest|--smallest --res R --n N --steps {steps} --seed 0",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit() or "unknown"}
