"""``sned-search --verify K``: measure the real sampled FVD and held-out loss of K members of each front.

The members are spread evenly along each front's latency range (its fastest and slowest always
among them). Their videos are generated and scored by the same Ray Tune trials as ``sned
evaluate`` (common random numbers, the same real set), into ``RUN/verify.parquet``; the
predicted-vs-measured table goes to ``RUN/verify.csv`` (``<target>_pred``, ``<target>_std`` beside
``fvd_measured``, ``kvd_measured`` and ``loss_measured``), which the report plots. Torch and Ray load
only when a verification runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from sned.search.objectives import quality_columns
from sned.supernet.base.errors import SettingError
from sned.supernet.base.files import write_atomic

VERIFY_CSV = "verify.csv"


def pick_members(front: pd.DataFrame, k: int) -> pd.DataFrame:
    """``k`` rows of a front (sorted by latency) spread evenly along it, ends included."""
    if k < 1:
        raise SettingError("verify", "{verify} {value}: expected an integer >= 1", value=k)
    front = front.sort_values("latency_ms").reset_index(drop=True)
    if len(front) <= k:
        return front
    return front.iloc[np.unique(np.round(np.linspace(0, len(front) - 1, k)).astype(int))].reset_index(drop=True)


def verify_run(run_dir: str | Path, fronts: dict[int, pd.DataFrame], experiment: str, k: int, checkpoint: str,
               data: str, *, seed: int = 0, address: str | None = None, i3d: str | None = None,
               cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, progress: bool = True,
               target: str = "fvd") -> pd.DataFrame:
    """Measure K members per front; write ``verify.parquet`` and ``verify.csv`` into the run folder.

    ``target`` is what the fronts' predictor predicted (their ``<target>_pred`` column).
    """
    from sned.predictors.evaluate import EvaluateConfig, evaluate

    run_dir = Path(run_dir)
    picked = {res: pick_members(front, k) for res, front in fronts.items() if len(front)}
    if not picked:
        raise SettingError("verify", "{verify}: every front is empty, nothing to verify")
    table = run_dir / "verify.parquet"
    archs = {res: [json.loads(a) if isinstance(a, str) else a for a in rows["arch"]] for res, rows in picked.items()}
    evaluate(EvaluateConfig(experiment=experiment, checkpoint=checkpoint, data=data, out=str(table),
                            resolutions=tuple(archs), archs=archs, n_subnets=max(len(v) for v in archs.values()),
                            seed=seed, i3d=i3d, address=address, cpus_per_trial=cpus_per_trial,
                            gpus_per_trial=gpus_per_trial, resume=table.exists(), progress=progress))
    measured = pd.read_parquet(table)
    scores = [c for c in dict.fromkeys(("fvd", "kvd", "loss", target)) if c in measured.columns]
    measured = measured[["arch_id", "res", *scores, "extractor"]].rename(columns={c: f"{c}_measured" for c in scores})
    rows = pd.concat(picked.values(), ignore_index=True)[["arch_id", "res", "latency_ms", *quality_columns(target)]]
    merged = rows.merge(measured, on=["arch_id", "res"], how="left")
    write_atomic(run_dir / VERIFY_CSV, merged.to_csv(index=False))
    return merged
