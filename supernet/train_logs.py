"""A training run's folder: ``run.json``, ``metrics.csv``, ``validation.csv`` and TensorBoard events.

Rank 0 writes them (:class:`MetricsLog`, :class:`ValidationLog`); :func:`read_metrics` and
:func:`read_validation` read them back (benchmarks, ``sned-train``'s summary). A resumed run first
drops the rows logged after its checkpoint (a killed run may have logged past it), so the files
hold each step once.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sned.supernet.base.files import write_atomic, write_json_atomic
from sned.supernet.space import SearchSpace

RUN_FILE, METRICS_FILE, VALIDATION_FILE = "run.json", "metrics.csv", "validation.csv"
METRIC_FIELDS = ("step", "loss", "res", "batch", "arch_id", "lr", "seconds", "grad_norm", "stage")
VALIDATION_FIELDS = ("step", "res", "subnet", "t", "loss")


def truncate_rows(path: Path, keep_through: int, fields: Sequence[str] = METRIC_FIELDS) -> None:
    """Keep the CSV rows of steps ``<= keep_through`` (a killed run may have logged past its checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= keep_through]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def read_validation(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``validation.csv`` (step, res, subnet, t, loss); empty without validation."""
    path = Path(run_dir) / VALIDATION_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{"step": int(r["step"]), "res": int(r["res"]), "subnet": r["subnet"], "t": int(r["t"]),
                 "loss": float(r["loss"])} for r in csv.DictReader(f)]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed."""
    with open(Path(run_dir) / METRICS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({"step": int(r["step"]), "loss": float(r["loss"]), "res": int(r["res"]), "batch": int(r["batch"]),
                    "arch_id": r["arch_id"], "lr": float(r["lr"]), "seconds": float(r["seconds"]),
                    "grad_norm": float(r["grad_norm"]), "stage": r["stage"]})
    return out


def seconds_per_step(rows: Sequence[dict[str, Any]]) -> dict[int, tuple[float, int]]:
    """Median seconds per step and step count, per resolution, of metric rows (the first step left out)."""
    by_res: dict[int, list[float]] = {}
    for r in rows[1:]:
        by_res.setdefault(r["res"], []).append(r["seconds"])
    return {res: (statistics.median(v), len(v)) for res, v in sorted(by_res.items())}


class MetricsLog:
    """Rank 0's step log: ``run.json`` once, a ``metrics.csv`` row per step, TensorBoard every ``log_every`` steps.

    Args:
        out: the run folder (created).
        start: the step the run starts (or resumes) at.
        run_info: the contents of ``run.json`` (experiment, space hash, seed, data, steps, config).
        log_every: steps between TensorBoard points.
    """

    def __init__(self, out: Path, start: int, run_info: Mapping[str, Any], log_every: int):
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / RUN_FILE, dict(run_info))
        truncate_rows(out / METRICS_FILE, start)
        new_file = not (out / METRICS_FILE).is_file()
        self.file = open(out / METRICS_FILE, "a", newline="")  # noqa: SIM115 - closed by close()
        self.csv = csv.DictWriter(self.file, fieldnames=METRIC_FIELDS)
        if new_file:
            self.csv.writeheader()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tb"), purge_step=start + 1)
        self.log_every = log_every

    def step(self, step: int, loss: float, res: int, batch: int, arch_ids: Sequence[str], lr: float, seconds: float,
             grad_norm: float, stage: str) -> None:
        """Log optimiser step ``step`` (1-based)."""
        self.csv.writerow({"step": step, "loss": repr(loss), "res": res, "batch": batch, "arch_id": "+".join(arch_ids),
                           "lr": repr(lr), "seconds": f"{seconds:.4f}", "grad_norm": f"{grad_norm:.6g}",
                           "stage": stage})
        if step % self.log_every == 0:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar(f"train/loss_{res}px", loss, step)
            self.writer.add_scalar("train/lr", lr, step)
            self.writer.add_scalar("train/grad_norm", grad_norm, step)
            self.writer.add_scalar("train/seconds_per_step", seconds, step)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        self.writer.close()


class ValidationLog:
    """Held-out loss of the largest and smallest subnet per resolution (rank 0), logged to validation.csv.

    Args:
        space: the space trained.
        val_dataset: the held-out videos (a ``VideoClipDataset`` subset).
        seed: the run's seed (the held-out noise).
        out: the run folder.
        start: the step the run starts (or resumes) at; later rows of the file are dropped.
        device: where the losses are computed.
        diffusion: the run's :class:`~sned.supernet.diffusion.GaussianDiffusion`.
    """

    def __init__(self, space: SearchSpace, val_dataset: Any, seed: int, out: Path, start: int, device: torch.device,
                 diffusion: Any):
        from sned.supernet.validation import held_out_set, reference_losses

        self.space, self.device, self.diffusion = space, device, diffusion
        conditional = bool(self.space.spec.classes)  # conditional: scored with the true class
        self.held = {res: held_out_set(val_dataset, res, seed, labels=conditional) for res in self.space.resolutions}
        path = out / VALIDATION_FILE
        truncate_rows(path, start, VALIDATION_FIELDS)
        stored: dict[int, dict[str, dict[int, float]]] = {}
        for row in read_validation(out) if path.is_file() else []:  # a resumed run keeps its references
            if row["step"] == 0:
                stored.setdefault(row["res"], {}).setdefault(row["subnet"], {})[row["t"]] = row["loss"]
        is_new = not stored  # no references yet: start the file over
        self.file = open(path, "w" if is_new else "a", newline="")  # noqa: SIM115 - closed by close()
        self.csv = csv.DictWriter(self.file, fieldnames=VALIDATION_FIELDS)
        self.references = stored or {res: reference_losses(held, diffusion, seed=seed)
                                     for res, held in self.held.items()}
        if is_new:
            self.csv.writeheader()
            for res, refs in self.references.items():
                for name, losses in refs.items():
                    self.csv.writerows({"step": 0, "res": res, "subnet": name, "t": t, "loss": repr(v)}
                                       for t, v in losses.items())
            self.file.flush()

    def reference_lines(self) -> list[str]:
        from sned.supernet.validation import format_losses

        n = len(next(iter(self.held.values())).clips)
        return [f"reference held-out loss at {res} px ({n} clips): predict-zero {format_losses(refs['zero'])}; "
                f"per-pixel (no context) {format_losses(refs['per_pixel'])}" for res, refs in self.references.items()]

    def run(self, model: torch.nn.Module, step: int, use_temporal: bool, writer: Any) -> str:
        from sned.supernet.validation import held_out_loss

        parts = []
        for res, held in self.held.items():
            for name, arch in (("largest", self.space.largest(res)), ("smallest", self.space.smallest(res))):
                losses = held_out_loss(lambda z, t, y=None, a=arch: model(z, t, a, use_temporal, y), held,
                                       self.diffusion, device=self.device)
                self.csv.writerows({"step": step, "res": res, "subnet": name, "t": t, "loss": repr(v)}
                                   for t, v in losses.items())
                for t, v in losses.items():
                    writer.add_scalar(f"val/{res}px_{name}_t{t}", v, step)
                t200 = losses.get(200, next(iter(losses.values())))
                ratio = t200 / max(self.references[res]["per_pixel"].get(200, t200), 1e-12)
                parts.append(f"{res}px {name} {t200:.4f} ({ratio:.2f}x per-pixel)")
        self.file.flush()
        return f"step {step} held-out loss at t=200: " + "; ".join(parts)

    def close(self) -> None:
        self.file.close()


__all__ = ["METRICS_FILE", "METRIC_FIELDS", "RUN_FILE", "VALIDATION_FIELDS", "VALIDATION_FILE", "MetricsLog",
           "ValidationLog", "read_metrics", "read_validation", "seconds_per_step", "truncate_rows"]
