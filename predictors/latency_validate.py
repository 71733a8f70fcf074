"""Validating a latency table end to end: time random subnets, compare with the table, fit a correction (torch).

:func:`validate_table` times ``n`` extracted subnets with the table's own method
(:func:`~sned.predictors.latency_measure.measure_subnets`), compares them with the table's block
sums, fits ``measured ~ scale * block_sum + offset`` (:func:`fit_correction`, scored leave-one-out),
:func:`store_validation` writes the correction and the figures into the table's metadata, and
:func:`parity_html` plots predicted against measured ms.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sned.predictors.latency import LatencyTable
from sned.predictors.latency_measure import MeasureSettings, Session
from sned.predictors.latency_timing import summarise, time_interleaved
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.files import write_atomic
from sned.supernet.space import Arch, SearchSpace, arch_id, arch_summary


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
        raise SettingError("n", "{n} {value}: validation needs at least 3 subnets", value=n)
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
    return write_atomic(path, html)


__all__ = ["Validation", "fit_correction", "parity_html", "store_validation", "validate_table", "validation_archs"]
