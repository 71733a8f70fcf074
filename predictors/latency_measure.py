"""Measuring latency tables and validating them end to end (torch).

Everything timed here is an *extracted static* module, the thing a deployed subnet runs: a block
is ``Supernet.blocks[slot].extract(spec)`` for one slot that produces its key (see
:func:`sned.predictors.latency.enumerate_keys`), a subnet is ``Supernet.extract(arch)``.

Timing method (:func:`time_interleaved`), shared by blocks and whole subnets so that the two agree:

1. warm-up: every callable runs ``warmup`` times (allocator, caches, cuDNN/oneDNN kernel choice);
2. calibration: a callable faster than ``min_sample_ms`` is called ``inner`` times per sample, so
   one sample is long enough for the clock (the per-call time is the sample / ``inner``);
3. ``repeats`` rounds; each round visits every callable once in a fresh random order. A burst of
   load from another process on a shared machine then hits random callables instead of one
   block's whole series; the median over rounds and the IQR summarise each callable.

On CUDA each sample is bracketed by CUDA events after a synchronisation, and read after the end
event has completed. On CPU it is ``time.perf_counter`` (``clock="wall"``) with
``torch.set_num_threads`` set explicitly (and recorded in the table). On a CPU shared with other
busy processes wall time measures the scheduler more than the network (and more than one thread
makes it far worse: OpenMP threads spin at barriers waiting for a descheduled sibling), so
``clock="cpu"`` times the process's CPU time (``time.process_time``) instead; it requires one
thread, where CPU time equals the latency of an otherwise idle core.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sned.predictors.latency import (
    COLUMNS,
    FIXED_KINDS,
    STATISTICS,
    BlockKey,
    LatencyTable,
    empty_rows,
    enumerate_keys,
)
from sned.supernet.blocks import LatencyProbe, get_kind, module_key
from sned.supernet.errors import UserError
from sned.supernet.model import Supernet
from sned.supernet.space import Arch, SearchSpace, arch_id, arch_summary
from sned.supernet.threads import torch_threads

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------- devices


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:i"`` -> a usable ``torch.device``.

    Raises:
        UserError: an unknown device, or CUDA asked for where there is none (or no such index).
    """
    text = str(name).strip().lower()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise UserError(f"unknown device {name!r}; valid: cpu, cuda, cuda:INDEX")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r}: CUDA is not available on this machine (torch {torch.__version__}); "
                            f"use --device cpu")
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    return torch.device("cpu")


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def device_label(device: torch.device) -> str:
    """A short device name for tables and reports: ``cpu-amd-epyc``, ``nvidia-h200``."""
    if device.type == "cuda":
        return _slug(torch.cuda.get_device_name(device))
    return "cpu-" + _slug(cpu_model())


def default_threads() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def git_commit() -> str:
    """The sned checkout's commit (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- timing


def time_interleaved(fns: Sequence[Callable[[], Any]], device: torch.device, *, warmup: int, repeats: int,
                     rng: np.random.Generator, min_sample_ms: float = 2.0, max_inner: int = 64,
                     clock: str = "wall", progress: tqdm | None = None) -> np.ndarray:
    """Per-call ms of each callable, ``(len(fns), repeats)``, by interleaved rounds (module docstring).

    Args:
        fns: zero-argument callables (already bound to their inputs), run under ``inference_mode``.
        device: where they run (CUDA: event timing with synchronisation).
        warmup: untimed calls of each callable before timing (>= 1: it also calibrates ``inner``).
        repeats: timed rounds.
        rng: orders each round.
        min_sample_ms: a sample of a faster callable repeats it ``inner`` times to reach this.
        max_inner: at most this many calls per sample.
        clock: ``"wall"`` (perf_counter, or CUDA events) or ``"cpu"`` (process CPU time; CPU only).
        progress: a tqdm bar advanced by one per timed sample (``len(fns)`` per round).
    """
    n = len(fns)
    samples = np.zeros((n, repeats))
    with torch.inference_mode():
        first = np.zeros(n)
        for w in range(max(warmup, 1)):
            for i, fn in enumerate(fns):
                _sync(device)
                t0 = time.perf_counter()
                fn()
                _sync(device)
                if w == max(warmup, 1) - 1:
                    first[i] = (time.perf_counter() - t0) * 1e3
        inner = np.clip(np.ceil(min_sample_ms / np.maximum(first, 1e-6)), 1, max_inner).astype(int)
        for r in range(repeats):
            for i in rng.permutation(n):
                samples[i, r] = _time_sample(fns[i], int(inner[i]), device, clock)
            if progress is not None:
                progress.update(n)
    return samples


def _time_sample(fn: Callable[[], Any], inner: int, device: torch.device, clock: str = "wall") -> float:
    """ms per call over one sample of ``inner`` calls."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / inner
    now = time.process_time if clock == "cpu" else time.perf_counter
    t0 = now()
    for _ in range(inner):
        fn()
    return (now() - t0) * 1e3 / inner


def summarise(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Median, IQR and min per row of ``(n, repeats)`` samples."""
    q25, q50, q75 = np.percentile(samples, [25, 50, 75], axis=1)
    return {"median_ms": q50, "iqr_ms": q75 - q25, "min_ms": samples.min(axis=1)}


# ----------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class MeasureSettings:
    """What a table is measured with; a resumed run must use the same (checked against the file).

    ``device`` is ``cpu``/``cuda[:i]``; ``device_name`` the label stored in the table (default:
    :func:`device_label`, e.g. ``cpu-amd-epyc``; the H200 script passes ``h200``).
    """

    device: str = "cpu"
    dtype: str = "fp32"
    batch: int = 1
    threads: int | None = None  # CPU threads; None = every core this process may use
    repeats: int = 15
    warmup: int = 3
    device_name: str | None = None
    seed: int = 0
    clock: str = "wall"  # "wall" or "cpu" (process CPU time; CPU device and 1 thread only)
    statistic: str = "median"  # what predict() sums: "median", or "min" on a machine shared with busy processes

    def __post_init__(self):
        for name in ("batch", "repeats", "warmup"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "warmup" else 1):
                raise UserError(f"--{name} {value!r}: expected an integer >= {0 if name == 'warmup' else 1}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise UserError(f"--threads {self.threads!r}: expected an integer >= 1")
        resolve_dtype(self.dtype)
        if self.clock not in ("wall", "cpu"):
            raise UserError(f"--clock {self.clock!r}: expected wall or cpu")
        if self.clock == "cpu" and (not str(self.device).startswith("cpu") or self.threads != 1):
            raise UserError("--clock cpu times process CPU time: it needs --device cpu and --threads 1")
        if self.statistic not in STATISTICS:
            raise UserError(f"--statistic {self.statistic!r}: expected one of {', '.join(STATISTICS)}")


class Session:
    """A device, dtype and thread setting, plus the supernet whose blocks and subnets get timed.

    A context manager: inside ``with Session(...) as session:`` torch runs with ``session.threads``
    CPU threads (explicit, because timings depend on it and the table records it); leaving the
    block restores the caller's thread count (:func:`sned.supernet.threads.torch_threads`).
    """

    def __init__(self, space: SearchSpace, settings: MeasureSettings):
        self.space = space
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype)
        self.threads = settings.threads or default_threads()
        self._scope = contextlib.ExitStack()
        self.label = settings.device_name or device_label(self.device)
        # Inputs are drawn on the device: a 256 px video batch made on the CPU and copied would
        # cost seconds per block on a GPU machine.
        self.generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        with torch.random.fork_rng(devices=[]):  # the init's RNG use stays local to this session
            torch.manual_seed(settings.seed)
            with self.device:
                self.net = Supernet(space).to(self.dtype).eval()

    def __enter__(self) -> Session:
        self._scope.enter_context(torch_threads(self.threads))
        return self

    def __exit__(self, *exc: object) -> None:
        self._scope.close()

    def provenance(self) -> dict[str, Any]:
        detail = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_model()
        return {"device": self.label, "device_type": self.device.type, "device_detail": detail,
                "dtype": self.settings.dtype, "batch": self.settings.batch, "threads": self.threads,
                "clock": self.settings.clock, "statistic": self.settings.statistic,
                "torch_version": torch.__version__, "python": platform.python_version(),
                "host": platform.node(), "git_commit": git_commit()}

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def timesteps(self) -> torch.Tensor:
        return torch.randint(0, 1000, (self.settings.batch,), generator=self.generator, device=self.device).float()

    def block_callable(self, key: BlockKey, slot_name: str, arch: Arch) -> Callable[[], torch.Tensor]:
        """One extracted block bound to random inputs of its key's shape (its kind's ``latency_call``)."""
        with torch.no_grad():
            temb = self.net.time_embed(self.timesteps())
        if key.kind in FIXED_KINDS:  # the timestep MLP
            module = copy.deepcopy(self.net.time_embed)  # what SubnetUNet.time_embed holds
            t = self.timesteps()
            return lambda: module(t)
        block = self.net.blocks[module_key(slot_name)].extract(self.net.plan(arch)[slot_name]).to(self.dtype)
        probe = LatencyProbe(self.space.spec, self.settings.batch, self.randn, temb)
        return get_kind(key.kind).latency_call(block, key, probe)

    def subnet_callable(self, arch: Arch) -> Callable[[], torch.Tensor]:
        """The extracted static subnet of ``arch`` bound to a random input (batch, the space's frames)."""
        spec = self.space.spec
        static = self.net.extract(arch).to(self.dtype).eval()
        side = spec.unet_size(arch["res"]) * spec.patch_size
        x = self.randn(self.settings.batch, spec.unet_channels, spec.unet_frames, side, side)
        t = self.timesteps()
        return lambda: static(x, t)


# ----------------------------------------------------------------------------- measuring a table


@dataclass
class MeasureResult:
    """What :func:`measure_table` did: the table (as saved), rows measured now and skipped (resumed)."""

    table: LatencyTable
    measured: int
    skipped: int
    elapsed_s: float
    complete: bool


def _check_resume(old: LatencyTable, space: SearchSpace, session: Session, out: Path) -> None:
    old.check_space(space)
    mine = session.provenance()
    for name in ("device", "dtype", "batch", "threads", "clock"):
        if name == "threads" and session.device.type != "cpu":
            continue
        if old.meta.get(name) != mine[name]:
            raise UserError(f"{out} was measured with {name}={old.meta.get(name)!r}, this run has "
                            f"{name}={mine[name]!r}; pass another --out (or --fresh to start it over)")


def measure_table(space: SearchSpace, out: str | Path, settings: MeasureSettings = MeasureSettings(), *,
                  resolutions: Sequence[int] | None = None, chunk: int = 12, max_rows: int | None = None,
                  fresh: bool = False, experiment: str | None = None, command: str | None = None,
                  progress: bool = True) -> MeasureResult:
    """Measure every block shape of ``space`` at ``resolutions`` into the parquet table ``out``.

    The table is rewritten atomically after every ``chunk`` rows, so an interrupted run keeps its
    rows, and a run on an existing table measures only the missing keys (same settings required).

    Args:
        space: the search space.
        out: the table's path (created, or resumed).
        settings: device, dtype, batch, threads, repeats, warm-up, label, seed.
        resolutions: pixel resolutions to cover (default: all of the space's).
        chunk: keys timed together (interleaved) between two saves.
        max_rows: stop after measuring this many new rows (a partial table; run again to go on).
        fresh: ignore an existing ``out`` and start over.
        experiment, command: provenance recorded in the metadata.
        progress: show a tqdm bar.

    Raises:
        UserError: a bad device/dtype, another space's or another setting's table at ``out``.
    """
    t_start = time.perf_counter()
    out = Path(out)
    resolutions = tuple(sorted(resolutions or space.resolutions))
    keys = enumerate_keys(space, resolutions)
    with Session(space, settings) as session:
        old = None if fresh or not out.exists() else LatencyTable.load(out)
        if old is not None:
            _check_resume(old, space, session, out)
        rows = old.rows.copy() if old is not None else empty_rows()
        done = old.has(list(keys)) if old is not None else np.zeros(len(keys), dtype=bool)
        todo = [k for k, d in zip(keys, done, strict=True) if not d]
        # Shuffled, so that a slow drift of the machine's load spreads over every resolution and block
        # kind instead of biasing whichever keys happened to share a chunk (keys come ordered by res).
        todo = [todo[i] for i in np.random.default_rng(settings.seed).permutation(len(todo))]
        if max_rows is not None:
            todo = todo[:max_rows]
        covered = sorted(set(resolutions) | set(old.meta.get("resolutions", [])) if old is not None else resolutions)
        meta = {
            **(old.meta if old is not None else {}),
            "space": space.name, "space_hash": space.hash, "experiment": experiment or space.source,
            **session.provenance(), "resolutions": covered, "frames": space.spec.unet_frames,
            "repeats": settings.repeats, "warmup": settings.warmup, "seed": settings.seed,
            "timing": ("median of interleaved rounds; CUDA events after synchronize" if session.device.type == "cuda"
                       else f"median of interleaved rounds; {'process CPU time' if settings.clock == 'cpu' else 'perf_counter'}"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command or " ".join(sys.argv),
        }
        if old is not None and not todo:  # nothing to measure: keep when and how the rows were measured
            meta.update({k: old.meta[k] for k in ("date", "command") if k in old.meta})
        if old is not None and old.meta.get("correction", {}).get("n") and (todo or old.statistic != settings.statistic):
            # New rows or another statistic change the block sums the fitted correction was made for:
            # drop it, and let sned latency validate fit it again.
            meta["correction"] = {"scale": 1.0, "offset_ms": 0.0, "note": "reset: the table changed after validation"}
            meta.pop("validation", None)
        table = LatencyTable(rows, meta, out)
        rng = np.random.default_rng(settings.seed)
        bar = tqdm(total=len(todo) * settings.repeats,
                   desc=f"latency {space.name} ({session.label})", unit="sample",
                   disable=not progress or not todo, dynamic_ncols=True)
        measured = 0
        try:
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                fns = [session.block_callable(k, *keys[k]) for k in part]
                samples = time_interleaved(fns, session.device, warmup=settings.warmup, repeats=settings.repeats,
                                           rng=rng, clock=settings.clock, progress=bar)
                del fns
                stats = summarise(samples)
                new = _rows(part, keys, stats, session, space)
                rows = new if not len(rows) else _concat(rows, new)
                measured += len(part)
                table = LatencyTable(rows, {**meta, "complete": False}, out)
                table.save(out)  # atomic: an interrupted run keeps every finished chunk
        finally:
            bar.close()
        complete = bool(LatencyTable(rows, meta).has(list(keys)).all())
        elapsed = time.perf_counter() - t_start
        prior = float(old.meta.get("elapsed_s", 0.0)) if old is not None else 0.0
        table = LatencyTable(rows, {**meta, "complete": complete, "elapsed_s": round(prior + elapsed, 1)}, out)
        table.save(out)
        return MeasureResult(table, measured, int(done.sum()), elapsed, complete)


def _concat(a, b):
    import pandas as pd

    return pd.concat([a, b], ignore_index=True)


def _rows(part: Sequence[BlockKey], keys: dict, stats: dict[str, np.ndarray], session: Session,
          space: SearchSpace):
    import pandas as pd

    data = {
        "device": [session.label] * len(part), "dtype": [session.settings.dtype] * len(part),
        "batch": session.settings.batch, "frames": space.spec.unet_frames,
        "kind": [k.kind for k in part], "c_in": [k.c_in for k in part], "c_out": [k.c_out for k in part],
        "c_skip": [k.c_skip for k in part], "size": [k.size for k in part],
        "heads": [0 if k.kind in FIXED_KINDS else get_kind(k.kind).heads(k.c_out, space.spec) for k in part],
        "median_ms": stats["median_ms"], "iqr_ms": stats["iqr_ms"], "min_ms": stats["min_ms"],
        "repeats": session.settings.repeats, "slot": [keys[k][0] for k in part],
    }
    frame = pd.DataFrame(data)
    return frame.astype({c: (object if d == "str" else d) for c, d in COLUMNS.items()})


# ----------------------------------------------------------------------------- validation


@dataclass
class Validation:
    """End-to-end check of a table on ``n`` subnets.

    ``measured`` is each extracted subnet's ms (the table's statistic, median or min, over the
    rounds; ``iqr`` the spread of its samples); ``block_sum`` the table's uncorrected
    prediction; ``table_pred`` its prediction with the correction it was loaded with; ``fitted``
    the prediction with the correction fitted here (``scale``, ``offset_ms``) and ``loo`` the same
    fit's leave-one-out prediction of each subnet (fitted without it: an honest error).
    """

    archs: list[Arch]
    measured: np.ndarray
    iqr: np.ndarray
    block_sum: np.ndarray
    table_pred: np.ndarray
    scale: float
    offset_ms: float
    fitted: np.ndarray
    loo: np.ndarray
    elapsed_s: float
    settings: dict[str, Any] = field(default_factory=dict)

    def metrics(self, predicted: np.ndarray) -> dict[str, float]:
        """Median and p90 absolute percentage error (%) and Spearman rho of ``predicted`` vs measured."""
        from scipy.stats import spearmanr

        ape = 100.0 * np.abs(predicted - self.measured) / self.measured
        rho = float(spearmanr(predicted, self.measured).statistic) if len(ape) > 2 else float("nan")
        return {"median_ape": float(np.median(ape)), "p90_ape": float(np.percentile(ape, 90)),
                "max_ape": float(ape.max()), "spearman": rho}


def fit_correction(block_sum: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """``(scale, offset_ms)`` minimising the squared *relative* error of ``scale * block_sum + offset``.

    Weighted least squares with weights ``1 / measured``: the validation judges percentage
    errors, so a 300 ms subnet must not dominate a 30 ms one.
    """
    w = 1.0 / measured
    A = np.stack([block_sum * w, w], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(A, np.ones_like(measured), rcond=None)
    return float(scale), float(offset)


def _loo(block_sum: np.ndarray, measured: np.ndarray) -> np.ndarray:
    out = np.zeros_like(measured)
    for i in range(len(measured)):
        keep = np.arange(len(measured)) != i
        scale, offset = fit_correction(block_sum[keep], measured[keep])
        out[i] = scale * block_sum[i] + offset
    return out


def validation_archs(space: SearchSpace, resolutions: Sequence[int], n: int, rng: np.random.Generator) -> list[Arch]:
    """The largest and smallest subnet at the highest resolution, then random ones (distinct)."""
    top = max(resolutions)
    archs = [space.largest(top), space.smallest(top)]
    seen = {arch_id(a) for a in archs}
    for _ in range(50 * n):
        if len(archs) >= n:
            break
        arch = space.sample(rng, res=int(rng.choice(resolutions)))
        if arch_id(arch) not in seen:
            seen.add(arch_id(arch))
            archs.append(arch)
    return archs[:n]


def validate_table(space: SearchSpace, table: LatencyTable, *, n: int = 30, seed: int = 0,
                   device: str | None = None, threads: int | None = None, repeats: int = 9, warmup: int = 2,
                   resolutions: Sequence[int] | None = None, progress: bool = True) -> Validation:
    """Time ``n`` extracted subnets end to end and compare them with the table's predictions.

    The subnets are the largest and the smallest at the table's highest resolution plus random
    ones over its resolutions, timed with :func:`time_interleaved` (the method of the table).

    Args:
        space: the table's space (checked).
        table: the table to validate.
        n: number of subnets (>= 3).
        seed: chooses the random subnets and inputs.
        device: ``cpu`` / ``cuda[:i]``; default: the table's device type. Must match its type.
        threads: CPU threads; default: the table's.
        repeats, warmup: timing rounds.
        resolutions: which resolutions to draw from (default: the table's).
        progress: show a tqdm bar.

    Raises:
        UserError: another space's table, a device of another type, n < 3, a resolution the table
            does not cover.
    """
    t_start = time.perf_counter()
    table.check_space(space)
    if n < 3:
        raise UserError(f"--n {n}: validation needs at least 3 subnets")
    device = device or str(table.meta.get("device_type", "cpu"))
    covered = [int(r) for r in table.meta.get("resolutions", space.resolutions)]
    resolutions = tuple(resolutions or covered)
    for res in resolutions:
        if res not in covered:
            raise UserError(f"table {table.path} does not cover resolution {res}; it covers {covered}")
    settings = MeasureSettings(device=device, dtype=str(table.meta.get("dtype", "fp32")),
                               batch=int(table.meta.get("batch", 1)),
                               threads=threads or table.meta.get("threads"), repeats=repeats, warmup=warmup,
                               device_name=table.device, seed=seed, clock=str(table.meta.get("clock", "wall")),
                               statistic=table.statistic)
    session = Session(space, settings)
    if session.device.type != table.meta.get("device_type", session.device.type):
        raise UserError(f"table {table.path} was measured on {table.meta.get('device_type')} "
                        f"({table.device}); validate it there, not on {session.device.type}")
    rng = np.random.default_rng(seed)
    archs = validation_archs(space, resolutions, n, rng)
    block_sum = table.block_sum(space, archs)  # fails fast on a missing key, before any timing
    table_pred = table.predict(space, archs)
    with session, tqdm(total=repeats * len(archs), desc=f"validate {len(archs)} subnets", unit="sample",
                       disable=not progress, dynamic_ncols=True) as bar:
        fns = [session.subnet_callable(a) for a in archs]
        samples = time_interleaved(fns, session.device, warmup=warmup, repeats=repeats, rng=rng,
                                   min_sample_ms=0.0, clock=settings.clock, progress=bar)
    stats = summarise(samples)
    measured = stats[f"{table.statistic}_ms"]
    scale, offset = fit_correction(block_sum, measured)
    return Validation(archs=archs, measured=measured, iqr=stats["iqr_ms"], block_sum=block_sum,
                      table_pred=table_pred, scale=scale, offset_ms=offset, fitted=scale * block_sum + offset,
                      loo=_loo(block_sum, measured), elapsed_s=time.perf_counter() - t_start,
                      settings={**session.provenance(), "repeats": repeats, "warmup": warmup, "seed": seed,
                                "n": len(archs), "resolutions": list(resolutions)})


def store_validation(table: LatencyTable, result: Validation, command: str | None = None) -> LatencyTable:
    """Write the fitted correction and the validation figures into the table's metadata (atomically).

    Raises:
        UserError: the fit is not a plausible correction (scale <= 0, or a non-positive latency for
            a validated subnet: too few or too noisy subnets); the table is left as it is.
    """
    if result.scale <= 0 or (result.fitted <= 0).any():
        raise UserError(f"the fitted correction {result.scale:.3f} * block_sum {result.offset_ms:+.1f} ms is not "
                        f"plausible (non-positive latency); not stored: validate on more subnets (--n) or rounds")
    meta = dict(table.meta)
    loo = result.metrics(result.loo)
    meta["correction"] = {
        "scale": result.scale, "offset_ms": result.offset_ms, "n": len(result.archs),
        "method": "weighted least squares of measured ~ scale * block_sum + offset_ms (weights 1/measured)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta["validation"] = {
        "n": len(result.archs), "block_sum": result.metrics(result.block_sum), "corrected_loo": loo,
        "corrected_in_sample": result.metrics(result.fitted), "settings": result.settings,
        "command": command or " ".join(sys.argv),
        "largest_ms": float(result.measured[0]), "smallest_ms": float(result.measured[1]),
        "largest_smallest_res": int(result.archs[0]["res"]),
    }
    out = LatencyTable(table.rows, meta, table.path)
    out.save()
    return out


def parity_html(result: Validation, path: str | Path, title: str = "") -> Path:
    """A self-contained plotly parity plot (predicted vs measured ms), written atomically."""
    import plotly.graph_objects as go
    import plotly.io as pio

    path = Path(path)
    res = np.array([a["res"] for a in result.archs])
    text = [f"{arch_id(a)} {arch_summary(a)}" for a in result.archs]
    fig = go.Figure()
    series = (("block sum", result.block_sum, "circle-open"), ("corrected (leave-one-out)", result.loo, "circle"))
    for name, pred, symbol in series:
        fig.add_trace(go.Scatter(x=result.measured, y=pred, mode="markers", name=name, text=text,
                                 marker={"symbol": symbol, "size": 9, "color": res, "colorscale": "Viridis",
                                         "showscale": name == "block sum", "colorbar": {"title": "res"}},
                                 error_x={"type": "data", "array": result.iqr / 2, "visible": True},
                                 hovertemplate="%{text}<br>measured %{x:.1f} ms<br>predicted %{y:.1f} ms"))
    lo = float(min(result.measured.min(), result.block_sum.min(), result.loo.min())) * 0.9
    hi = float(max(result.measured.max(), result.block_sum.max(), result.loo.max())) * 1.1
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dash"}))
    m = result.metrics(result.loo)
    fig.update_layout(title=title or f"latency parity: median APE {m['median_ape']:.1f} %, p90 {m['p90_ape']:.1f} %, "
                                     f"Spearman {m['spearman']:.3f} (n={len(result.archs)})",
                      xaxis_title="measured ms (one UNet forward)", yaxis_title="predicted ms",
                      xaxis_type="log", yaxis_type="log", template="plotly_white")
    html = pio.to_html(fig, include_plotlyjs=True, full_html=True)  # no internet: embed plotly.js
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html)
    os.replace(tmp, path)
    return path


def measure_subnets(space: SearchSpace, archs: Sequence[Arch], settings: MeasureSettings = MeasureSettings(),
                    progress: bool = False) -> dict[str, np.ndarray]:
    """Median / IQR / min ms of each arch's extracted subnet, end to end (the validation's method)."""
    rng = np.random.default_rng(settings.seed)
    with Session(space, settings) as session, tqdm(total=settings.repeats * len(archs), disable=not progress,
                                                   desc="subnets", unit="sample") as bar:
        fns = [session.subnet_callable(a) for a in archs]
        samples = time_interleaved(fns, session.device, warmup=settings.warmup, repeats=settings.repeats,
                                   rng=rng, min_sample_ms=0.0, clock=settings.clock, progress=bar)
    return summarise(samples)


__all__ = ["DTYPES", "MeasureResult", "MeasureSettings", "Session", "Validation", "cpu_model", "default_threads",
           "device_label", "fit_correction", "measure_subnets", "measure_table", "parity_html", "resolve_device",
           "resolve_dtype", "store_validation", "summarise", "time_interleaved", "validate_table",
           "validation_archs"]
