"""A standalone subnet (safetensors + config.json) from a search run and a checkpoint (``sned export``).

``DIR/model.safetensors`` holds the extracted static subnet's weights (EMA by default) and
``DIR/config.json`` its arch, the space definition, the diffusion settings it was trained with, and
the provenance (checkpoint sha256, search run, predicted metrics). :func:`load_exported` rebuilds
the module without the supernet's other weights, and ``sned sample DIR`` samples from it. The
command is :mod:`sned.supernet.export_cli`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sned.supernet.base.errors import UserError
from sned.supernet.base.files import atomic_path, write_json_atomic
from sned.supernet.space import Arch, SearchSpace, arch_id, parse_space_spec

CONFIG, WEIGHTS, FORMAT = "config.json", "model.safetensors", "sned-subnet-1"


def find_front_member(pareto_json: str | Path, wanted: str) -> tuple[Arch, dict[str, Any]]:
    """The arch with id ``wanted`` in a search run's ``pareto.json`` (any resolution), and its row."""
    path = Path(pareto_json)
    if path.is_dir():
        path = path / "pareto.json"
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"search run file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    fronts = payload.get("fronts") if isinstance(payload, dict) else None
    if not isinstance(fronts, dict):
        raise UserError(f"{path} has no 'fronts' (is it a sned-search pareto.json?)")
    ids = []
    for rows in fronts.values():
        for row in rows:
            ids.append(row.get("arch_id"))
            if row.get("arch_id") == wanted:
                return row["arch"], row
    raise UserError(f"arch id {wanted!r} is not on the fronts of {path}; ids there: {', '.join(map(str, ids[:12]))}")


def _space(spec: dict[str, Any], where: str) -> SearchSpace:
    spec = dict(spec)
    if spec.get("latent"):
        spec["latent"] = dict(spec["latent"])
    try:
        return SearchSpace(parse_space_spec(spec, spec.get("name", "space")), source=where)
    except ValueError as exc:
        raise UserError(f"{where}: invalid space in config ({exc})") from None


def export_subnet(ckpt: str | Path, arch: Arch, out: str | Path, ema: bool = True,
                  extra: dict[str, Any] | None = None) -> Path:
    """Extract ``arch`` from a checkpoint and write it to the folder ``out`` (atomically, file by file)."""
    from sned.supernet.checkpoint import load_supernet

    net, info = load_supernet(ckpt, ema=ema)
    arch = net.space.validate(arch)
    subnet = net.extract(arch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "arch": arch, "arch_id": arch_id(arch), "space": net.space.to_dict(),
              "space_hash": net.space.hash, "experiment": info["experiment"],
              "prediction": info["config"].get("prediction", "v"), "sample": info.get("sample_config", {}),
              "class_names": info.get("class_names", []), "vae": info.get("vae"),
              "params": int(sum(p.numel() for p in subnet.parameters())),
              "checkpoint": {"path": info["path"], "sha256": info["sha256"], "step": info["step"], "ema": ema},
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(extra or {})}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in subnet.state_dict().items()}, str(tmp), metadata={"format": FORMAT})
    write_json_atomic(out / CONFIG, config)
    return out


class StandaloneSubnet(torch.nn.Module):
    """An exported subnet with the supernet's calling convention ``net(x, t, arch)`` (``arch`` must be its own),
    so :func:`sned.supernet.sample.generate` samples from it unchanged."""

    def __init__(self, subnet: torch.nn.Module, space: SearchSpace, arch: Arch):
        super().__init__()
        self.subnet, self.space, self.arch = subnet, space, space.validate(arch)

    def forward(self, x: torch.Tensor, t: torch.Tensor, arch: Arch | None = None, **kwargs: Any) -> torch.Tensor:
        if arch is not None and self.space.validate(arch) != self.arch:
            raise ValueError(f"this exported subnet is arch {arch_id(self.arch)}, not {arch_id(arch)}")
        return self.subnet(x, t, **kwargs)


def is_export(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file() and (Path(path) / WEIGHTS).is_file()


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> tuple[StandaloneSubnet, dict[str, Any]]:
    """Load an exported subnet: ``(StandaloneSubnet in eval mode, config dict)``. Raises UserError when broken."""
    from sned.supernet.model import Supernet

    path = Path(path)
    try:
        config = json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise UserError(f"not an exported subnet (no {CONFIG}): {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path / CONFIG} is not valid JSON ({exc})") from None
    if config.get("format") != FORMAT:
        raise UserError(f"{path / CONFIG}: format {config.get('format')!r} is not {FORMAT!r}")
    space = _space(config["space"], str(path))
    with torch.device("meta"):  # the structure only; weights come from the file
        subnet = Supernet(space).extract(config["arch"])
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot read {path / WEIGHTS}: {str(exc).splitlines()[0]}") from None
    try:
        subnet.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as exc:
        raise UserError(f"{path / WEIGHTS} does not fit arch {config.get('arch_id')}: "
                        f"{str(exc).splitlines()[0][:200]}") from None
    return StandaloneSubnet(subnet, space, config["arch"]).to(device).eval(), config
