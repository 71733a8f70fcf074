"""How sned times a callable on a device: devices, threads, and interleaved, calibrated repeats (torch).

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

The same method times blocks (:mod:`sned.predictors.latency_measure`) and whole subnets
(:mod:`sned.predictors.latency_validate`), so the two agree.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sned.supernet.base.artifacts import slug
from sned.supernet.base.errors import SettingError, UserError

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
            raise SettingError("device", "device {value!r}: CUDA is not available on this machine (torch {version}); "
                               "use {device} cpu", value=name, version=torch.__version__)
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    return torch.device("cpu")


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


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
        return slug(torch.cuda.get_device_name(device))
    return "cpu-" + slug(cpu_model())


def default_threads() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


__all__ = ["DTYPES", "cpu_model", "default_threads", "device_label", "resolve_device", "resolve_dtype", "summarise",
           "time_interleaved"]
