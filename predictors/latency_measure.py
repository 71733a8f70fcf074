"""Measuring latency tables (torch): every block key of a space, timed on a device, written as it goes.

Everything timed here is an *extracted static* module, the thing a deployed subnet runs: a block
is ``Supernet.blocks[slot].extract(spec)`` for one slot that produces its key (see
:func:`sned.predictors.latency.enumerate_keys`), a subnet is ``Supernet.extract(arch)``. The timing
method is :func:`sned.predictors.latency_timing.time_interleaved` (calibrated, interleaved repeats;
CUDA events or a CPU clock); validating a table end to end is :mod:`sned.predictors.latency_validate`.
"""

from __future__ import annotations

import contextlib
import copy
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from sned.predictors.latency_timing import (
    DTYPES,
    cpu_model,
    default_threads,
    device_label,
    resolve_device,
    resolve_dtype,
    summarise,
    time_interleaved,
)
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.provenance import git_commit
from sned.supernet.blocks import LatencyProbe, get_kind, module_key
from sned.supernet.model import Supernet
from sned.supernet.space import Arch, SearchSpace
from sned.supernet.threads import torch_threads

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
                raise SettingError(name, "{setting} {value!r}: expected an integer >= {low}", value=value,
                                   low=0 if name == "warmup" else 1)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise SettingError("threads", "{threads} {value!r}: expected an integer >= 1", value=self.threads)
        resolve_dtype(self.dtype)
        if self.clock not in ("wall", "cpu"):
            raise SettingError("clock", "{clock} {value!r}: expected wall or cpu", value=self.clock, valid=["wall", "cpu"])
        if self.clock == "cpu" and (not str(self.device).startswith("cpu") or self.threads != 1):
            raise SettingError("clock", "{clock} cpu times process CPU time: it needs {device} cpu and {threads} 1")
        if self.statistic not in STATISTICS:
            raise SettingError("statistic", "{statistic} {value!r}: expected one of {choices}", value=self.statistic,
                               choices=", ".join(STATISTICS), valid=list(STATISTICS))


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
                "host": platform.node(), "git_commit": git_commit(short=False) or "unknown"}

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


__all__ = ["DTYPES", "MeasureResult", "MeasureSettings", "Session", "cpu_model", "default_threads", "device_label",
           "measure_subnets", "measure_table", "resolve_device", "resolve_dtype", "summarise", "time_interleaved"]
