"""Checkpoints and CSV logs of ``sned vae train`` runs (:mod:`sned.supernet.vae_train`).

A checkpoint is ``out/checkpoints/step-XXXXXXXX/`` with ``state.safetensors`` (``model.*`` and the
AdamW state as ``optimizer.<index>.<key>``) and ``state.json`` (format, step, the run's identity,
seconds, the tensor file's sha256). It is written into a temporary folder and renamed into place,
so a killed run leaves the whole checkpoint or none of it. No pickle.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from sned.supernet.base.errors import UserError
from sned.supernet.base.files import atomic_dir, atomic_path, file_sha256, write_json_atomic

STATE_FORMAT, VERSION = "sned-vae-train-state", 1
CHECKPOINTS, STATE_WEIGHTS, STATE = "checkpoints", "state.safetensors", "state.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def list_checkpoints(out: str | Path) -> list[Path]:
    """Complete checkpoint folders of a VAE run, oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE).is_file())


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], keep: int) -> Path:
    """``out/checkpoints/step-<step>/``, appearing whole (:func:`atomic_dir`); keeps the newest ``keep``."""
    from safetensors.torch import save_file

    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    with atomic_dir(final) as tmp:
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        for index, entries in optimizer.state_dict()["state"].items():
            for key, value in entries.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
        save_file(tensors, str(tmp / STATE_WEIGHTS), metadata={"format": STATE_FORMAT})
        write_json_atomic(tmp / STATE, {"format": STATE_FORMAT, "version": VERSION, "step": step, **state,
                                        "files": {STATE_WEIGHTS: file_sha256(tmp / STATE_WEIGHTS)}}, indent=1)
    for old in list_checkpoints(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint_state(ckpt: Path) -> dict[str, Any]:
    try:
        state = json.loads((ckpt / STATE).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"corrupt VAE checkpoint {ckpt}: {STATE} does not read ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{ckpt} is not a sned VAE checkpoint ({STATE} lacks format {STATE_FORMAT!r}); "
                        f"choose another --out")
    for name, expected in dict(state.get("files", {})).items():
        if not (ckpt / name).is_file() or file_sha256(ckpt / name) != expected:
            raise UserError(f"corrupt VAE checkpoint {ckpt}: {name} is missing or does not match its sha256")
    if not isinstance(state.get("step"), int) or STATE_WEIGHTS not in state.get("files", {}):
        raise UserError(f"corrupt VAE checkpoint {ckpt}: {STATE} lacks step or files")
    return state


def load_checkpoint(ckpt: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(ckpt / STATE_WEIGHTS))
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        saved: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                saved.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": saved, "param_groups": optimizer.state_dict()["param_groups"]})
    except (SafetensorError, RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"corrupt VAE checkpoint {ckpt}: {str(exc).strip().splitlines()[0][:200]}") from None


def truncate_csv(path: Path, keep_through: int, fields: tuple[str, ...]) -> None:
    """Keep the rows of steps ``<= keep_through`` (a killed run may have logged past its checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= keep_through]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def read_metrics(out: str | Path, name: str = "metrics.csv") -> list[dict[str, float]]:
    """The rows of a VAE run's ``metrics.csv`` (or another of its CSV logs), numbers parsed."""
    with open(Path(out) / name, newline="") as f:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]


__all__ = ["CHECKPOINTS", "STATE", "STATE_FORMAT", "STATE_WEIGHTS", "list_checkpoints", "load_checkpoint",
           "read_checkpoint_state", "read_metrics", "save_checkpoint", "truncate_csv"]
