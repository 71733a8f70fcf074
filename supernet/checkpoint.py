"""Supernet checkpoints: safetensors tensors plus a JSON state, written atomically, loaded with validation.

A run folder holds ``checkpoints/step-00000200/`` folders, each with:

* ``weights.safetensors``: the model (``model.<name>``) and its EMA (``ema.<name>``);
* ``optimizer.safetensors``: the optimizer's per-parameter tensors (``state.<index>.<key>``);
* ``state.json``: the step, the optimizer's param groups, the RNG states (torch, numpy, python, as
  lists), the space (dict and hash), the experiment name, the arch-sampler state, the data position,
  the training config, and the sha256 of both tensor files.

No pickle anywhere. A checkpoint is written into a hidden temporary folder and renamed into place
(one atomic ``os.replace``), so a killed run leaves either the whole checkpoint or none of it.
:func:`load_supernet` is the entry point for other rooms (sampling, sampled-FVD trials)::

    net, info = load_supernet("runs/tiny")          # newest checkpoint, EMA weights
    info["sha256"], info["step"], info["experiment"]
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.files import atomic_dir, atomic_path, file_sha256, write_json_atomic
from sned.supernet.space import SearchSpace, SpaceError, parse_space_spec

FORMAT = "sned-supernet-checkpoint"
VERSION = 1
CHECKPOINTS = "checkpoints"
WEIGHTS, OPTIMIZER, STATE = "weights.safetensors", "optimizer.safetensors", "state.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


sha256_file = file_sha256  # the checkpoint's name for it


# ----------------------------------------------------------------------------- RNG states


def rng_states() -> dict[str, Any]:
    """The global torch, numpy and python RNG states as JSON-able lists (CUDA too where present)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        states["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in states["cuda"]])


# ----------------------------------------------------------------------------- optimizer <-> tensors + JSON


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "state"
                      ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """An optimizer's state as safetensors-ready tensors ``<prefix>.<param index>.<key>`` and JSON-able groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.{index}.{key}"] = value.detach().cpu().contiguous()
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def optimizer_from_tensors(tensors: Mapping[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The optimizer ``state_dict`` of :func:`optimizer_tensors`' tensors (any one prefix) and groups."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------- save


def _tensors(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, ema: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: Mapping[str, Any], keep: int = 2) -> Path:
    """Write ``run_dir/checkpoints/step-<step>/`` atomically; keep the newest ``keep`` checkpoints.

    Args:
        run_dir: the run folder.
        step: optimiser steps completed.
        model: the supernet being trained (unwrapped).
        ema: its exponential moving average (same keys).
        optimizer: the optimizer.
        state: JSON-able extras: ``experiment``, ``space`` (dict), ``space_hash``, ``config``,
            ``sampler``, ``data``, ``seed``, ... (RNG states are added here).
        keep: number of newest checkpoints to keep (0 keeps all).

    Returns:
        The checkpoint folder.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{int(step):08d}"
    # The same step written again (a resumed run re-reaching it) replaces the folder whole.
    with atomic_dir(final) as tmp:
        save_file(_tensors(model, "model") | _tensors(ema, "ema"), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        opt_tensors, groups = optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / OPTIMIZER), metadata={"format": FORMAT})
        payload = {"format": FORMAT, "version": VERSION, "step": int(step), **dict(state),
                   "optimizer": {"param_groups": groups}, "rng": rng_states(),
                   "files": {WEIGHTS: sha256_file(tmp / WEIGHTS), OPTIMIZER: sha256_file(tmp / OPTIMIZER)},
                   "torch_version": torch.__version__, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json_atomic(tmp / STATE, payload, indent=1)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def bundle_weights(ckpt: str | Path, out: str | Path, dtype: str = "fp16",
                   provenance: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint's EMA weights as a small, inference-only checkpoint folder.

    ``out/weights.safetensors`` holds the ``ema.*`` tensors (``dtype`` ``"fp16"`` halves the size;
    they load into the fp32 supernet), ``out/state.json`` the checkpoint's space, configs, step and
    seed plus ``provenance`` (command, commit, date, seconds, held-out losses...). No optimizer
    state: it loads with :func:`load_supernet` for sampling, export and ``--verify``, not for resume.

    Returns:
        The folder ``out``.
    """
    if dtype not in ("fp16", "fp32"):
        raise UserError(f"dtype {dtype!r}; valid: fp16, fp32")
    ckpt = resolve_checkpoint(ckpt)
    state = read_state(ckpt)
    tensors = split_prefix(load_tensors(ckpt), "ema")
    if dtype == "fp16":
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS) as tmp:
        save_file({f"ema.{k}": v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": FORMAT, "dtype": dtype})
        weights_sha256 = sha256_file(tmp)
    keep = ("experiment", "space", "space_hash", "config", "sample_config", "sampler", "seed", "world_size",
            "total_steps", "torch_version", "class_names", "vae")
    payload = {"format": FORMAT, "version": VERSION, "step": int(state["step"]),
               **{k: state[k] for k in keep if k in state}, "weights_only": True, "dtype": dtype,
               "source_sha256": state["files"][WEIGHTS], "provenance": dict(provenance or {}),
               "files": {WEIGHTS: weights_sha256}}
    write_json_atomic(out / STATE, payload, indent=1)
    return out


def bundled_supernet(experiment: str) -> Path | None:
    """The folder of a bundled experiment's trained supernet (``experiments/<name>/supernet``), if any."""
    from importlib import resources

    if not experiment.replace("-", "").replace("_", "").isalnum():
        return None
    folder = Path(str(resources.files("sned.experiments"))) / experiment / "supernet"
    return folder if (folder / STATE).is_file() else None


# ----------------------------------------------------------------------------- find and load


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE).is_file())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder (its newest), a checkpoint folder, one of its files, or
    the name of a bundled experiment with a trained supernet (``"tiny"``: ``experiments/tiny/supernet``).

    Raises:
        UserError: nothing checkpoint-like there.
    """
    path = Path(path)
    if not path.exists() and (bundled := bundled_supernet(str(path))) is not None:
        return bundled
    if path.is_file() and path.name in (WEIGHTS, OPTIMIZER, STATE):
        path = path.parent
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if (path / STATE).is_file() or (path / WEIGHTS).is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise UserError(f"no checkpoint in {path} (expected {CHECKPOINTS}/step-XXXXXXXX/{STATE})")
    return found[-1]


def read_state(ckpt: str | Path, verify: bool = True) -> dict[str, Any]:
    """The validated ``state.json`` of a checkpoint folder; ``verify`` checks the tensor files' sha256.

    Raises:
        UserError: missing or corrupt files (one line naming the file and the problem).
    """
    ckpt = Path(ckpt)
    state_path = ckpt / STATE
    try:
        state = json.loads(state_path.read_text())
    except FileNotFoundError:
        raise UserError(f"corrupt checkpoint {ckpt}: {STATE} is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"corrupt checkpoint {ckpt}: {STATE} is not valid JSON ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"corrupt checkpoint {ckpt}: {STATE} is not a {FORMAT} state")
    if state.get("version") != VERSION:
        raise UserError(f"checkpoint {ckpt} has format version {state.get('version')}; this sned reads {VERSION}")
    missing = [k for k in ("step", "experiment", "space", "space_hash", "files") if k not in state]
    if missing:
        raise UserError(f"corrupt checkpoint {ckpt}: {STATE} lacks {', '.join(missing)}")
    for name, expected in state["files"].items():
        file = ckpt / name
        if not file.is_file():
            raise UserError(f"corrupt checkpoint {ckpt}: {name} is missing")
        if verify and sha256_file(file) != expected:
            raise UserError(f"corrupt checkpoint {ckpt}: {name} does not match its recorded sha256")
    return state


def space_from_state(state: Mapping[str, Any], source: str) -> SearchSpace:
    """Rebuild the checkpoint's search space from its saved dict and check its hash."""
    try:
        spec_dict = dict(state["space"])
        space = SearchSpace(parse_space_spec(spec_dict, str(spec_dict.get("name", "space"))), source=source)
    except (SpaceError, TypeError, KeyError) as exc:
        raise UserError(f"corrupt checkpoint {source}: its space does not parse ({exc})") from None
    if space.hash != state["space_hash"]:
        raise UserError(f"corrupt checkpoint {source}: space hash {space.hash} != recorded {state['space_hash']}")
    return space


def load_tensors(ckpt: str | Path, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file of a checkpoint (CPU)."""
    try:
        return load_file(str(Path(ckpt) / name), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"corrupt checkpoint {ckpt}: {name} does not load ({exc})") from None


def split_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_into(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """``module.load_state_dict(tensors)`` with a one-line UserError on mismatched keys or shapes."""
    try:
        module.load_state_dict(dict(tensors), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(f"checkpoint {where} does not fit the supernet: {' '.join(first[:2])[:300]}") from None


def optimizer_state(ckpt: str | Path, state: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer ``state_dict`` stored in a checkpoint."""
    return optimizer_from_tensors(load_tensors(ckpt, OPTIMIZER), state["optimizer"]["param_groups"])


def load_supernet(ckpt_path_or_run_dir: str | Path, ema: bool = True, device: str | torch.device = "cpu"
                  ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a trained supernet from a checkpoint (or a run folder's newest one).

    Args:
        ckpt_path_or_run_dir: a run folder, a ``step-XXXXXXXX`` folder, one of its files, a bundled
            weights folder (:func:`bundle_weights`), or a bundled experiment's name (``"tiny"``).
        ema: load the EMA weights (what sampling should use) instead of the raw ones.
        device: where to put the network.

    Returns:
        ``(net, info)``: the :class:`~sned.supernet.model.Supernet` in eval mode, and a dict with
        ``path``, ``step``, ``experiment``, ``space_hash``, ``sha256`` (of ``weights.safetensors``:
        the checkpoint's identity in sampled-FVD tables), ``ema``, ``config`` (training),
        ``sample_config`` (the experiment's ``sample:`` defaults), ``sampler``, ``seed`` and ``vae``
        (a latent network's autoencoder: folder and sha256; None in pixel space).

    Raises:
        UserError: missing, corrupt or mismatched checkpoint (one line).
    """
    from sned.supernet.model import Supernet

    ckpt = resolve_checkpoint(ckpt_path_or_run_dir)
    state = read_state(ckpt)
    space = space_from_state(state, str(ckpt))
    net = Supernet(space)
    if not ema and state.get("weights_only"):
        raise SettingError("ema", "{path} holds only the EMA weights (a bundled supernet); load those ({ema})",
                           path=ckpt)
    load_into(net, split_prefix(load_tensors(ckpt), "ema" if ema else "model"), str(ckpt))
    net = net.to(device).eval()
    info = {"path": str(ckpt), "step": int(state["step"]), "experiment": state["experiment"],
            "space_hash": state["space_hash"], "sha256": state["files"][WEIGHTS], "ema": bool(ema),
            "config": state.get("config", {}), "sample_config": state.get("sample_config", {}),
            "sampler": state.get("sampler", {}), "seed": state.get("seed"), "class_names": state.get("class_names", []),
            "vae": state.get("vae")}
    return net, info


__all__ = ["CHECKPOINTS", "FORMAT", "OPTIMIZER", "STATE", "WEIGHTS", "bundle_weights", "bundled_supernet",
           "list_checkpoints", "load_into",
           "load_supernet", "load_tensors", "optimizer_from_tensors", "optimizer_state", "optimizer_tensors", "read_state", "resolve_checkpoint", "rng_states",
           "save_checkpoint", "set_rng_states", "sha256_file", "space_from_state", "split_prefix"]
