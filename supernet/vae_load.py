"""Load any video autoencoder sned can use through one function: :func:`load_autoencoder`.

It reads, from a local folder only (nothing is ever downloaded):

* **sned's own VAE** (``sned vae train``): ``vae.json`` (format ``sned-vae``) + ``vae.safetensors``,
  checked against the sha256 recorded in the config;
* **a diffusers autoencoder** saved with ``save_pretrained`` (``config.json`` naming the class +
  ``diffusion_pytorch_model.safetensors``), or a diffusers pipeline folder holding it in ``vae/``:

  =================================  =================================================================
  ``AutoencoderKL``                  applied per frame, as LVDM, VideoLDM and AnimateDiff do: frames
                                     fold into the batch (temporal factor 1); Stable Diffusion's VAEs
  ``AutoencoderKLTemporalDecoder``   Stable Video Diffusion's: per-frame encoder, a decoder with
                                     temporal layers over the clip's frames (temporal factor 1)
  =================================  =================================================================

  The config's ``scaling_factor`` (and ``shift_factor`` / ``latents_mean`` / ``latents_std`` where
  set) scale the latents, as the diffusers pipelines do. Only safetensors weights load
  (``use_safetensors=True``, ``local_files_only=True``); a folder with pickle weights (``.bin``)
  is refused. Causal 3D video VAEs (CogVideoX, Mochi, LTX, Wan, HunyuanVideo) compress time to
  ``1 + 4k`` frames, which the 8- and 16-frame clips of sned's spaces do not fit; they are refused
  with one line.

diffusers is an optional dependency (``pip install 'sned[vae]'``), imported only when a diffusers
folder is loaded. Every failure (missing, corrupt or foreign folder, missing diffusers) is a
:class:`~sned.supernet.base.errors.UserError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from sned.supernet.base.errors import UserError
from sned.supernet.base.files import file_sha256
from sned.supernet.vae import KLVideoAutoencoder, VAEConfig, VideoAutoencoder

logger = logging.getLogger(__name__)

SNED_CONFIG, SNED_WEIGHTS, SNED_FORMAT, SNED_VERSION = "vae.json", "vae.safetensors", "sned-vae", 1
DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
_CAUSAL_3D = ("AutoencoderKLCogVideoX", "AutoencoderKLMochi", "AutoencoderKLLTXVideo", "AutoencoderKLWan",
              "AutoencoderKLHunyuanVideo", "AutoencoderKLAllegro")
ADAPTER_VERSION = 1  # part of a diffusers autoencoder's sha256: bump when the adapters' math changes


def _digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- diffusers adapters


class DiffusersFrameAutoencoder(VideoAutoencoder):
    """A diffusers ``AutoencoderKL`` applied to every frame on its own (temporal factor 1).

    Args:
        model: the loaded ``AutoencoderKL``.
        frames_per_call: frames encoded or decoded per call of the image model (bounds memory).
    """

    kind = "diffusers:AutoencoderKL"

    def __init__(self, model: torch.nn.Module, frames_per_call: int = 16):
        super().__init__()
        config = model.config
        self.model, self.frames_per_call = model, frames_per_call
        self.channels, self.latent_channels = int(config.in_channels), int(config.latent_channels)
        self.spatial_factor = 2 ** (len(config.block_out_channels) - 1)  # the last down block keeps the size
        self.temporal_factor = 1
        self._set_latent_affine(config.scaling_factor, getattr(config, "shift_factor", None) or 0.0,
                                getattr(config, "latents_mean", None), getattr(config, "latents_std", None))

    def moments(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = rearrange(video, "b c f h w -> (b f) c h w")
        means, logvars = [], []
        for chunk in frames.split(self.frames_per_call):
            posterior = self.model.encode(chunk).latent_dist
            means.append(posterior.mean)
            logvars.append(posterior.logvar)
        fold = "(b f) c h w -> b c f h w"
        return (rearrange(torch.cat(means), fold, b=video.shape[0]),
                rearrange(torch.cat(logvars), fold, b=video.shape[0]))

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        frames = rearrange(z, "b c f h w -> (b f) c h w")
        decoded = torch.cat([self.model.decode(chunk).sample for chunk in frames.split(self.frames_per_call)])
        return rearrange(decoded, "(b f) c h w -> b c f h w", b=z.shape[0])


class DiffusersTemporalDecoderAutoencoder(DiffusersFrameAutoencoder):
    """A diffusers ``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion): per-frame encoder, and a
    decoder whose temporal layers see all frames of one clip (decoded one clip at a time)."""

    kind = "diffusers:AutoencoderKLTemporalDecoder"

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        frames = z.shape[2]
        clips = [self.model.decode(rearrange(clip, "c f h w -> f c h w"), num_frames=frames).sample for clip in z]
        return rearrange(torch.stack(clips), "b f c h w -> b c f h w")


ADAPTERS: dict[str, type[DiffusersFrameAutoencoder]] = {
    "AutoencoderKL": DiffusersFrameAutoencoder,
    "AutoencoderKLTemporalDecoder": DiffusersTemporalDecoderAutoencoder,
}


# ----------------------------------------------------------------------------- loading


def load_autoencoder(path: str | Path, *, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> VideoAutoencoder:
    """Load a video autoencoder from a local folder (sned's ``vae.json`` or a diffusers ``save_pretrained``).

    Args:
        path: a ``sned vae train`` folder, a diffusers autoencoder folder, or a diffusers pipeline
            folder with the autoencoder in ``vae/``.
        device: where to put it.
        dtype: its parameter dtype; ``encode``/``decode`` return this dtype.

    Returns:
        A :class:`~sned.supernet.vae.VideoAutoencoder` in eval mode, ``requires_grad`` off, its
        ``sha256`` set.

    Raises:
        UserError: a missing, corrupt or foreign folder, unsupported diffusers class, pickle-only
            weights, or diffusers not installed (one line each).
    """
    folder = Path(path)
    if not folder.exists():
        raise UserError(f"--vae {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"--vae {folder} is not a folder (expected a sned vae train or diffusers save_pretrained folder)")
    if (folder / SNED_CONFIG).is_file():
        model: VideoAutoencoder = _load_sned(folder)
    elif (folder / DIFFUSERS_CONFIG).is_file():
        model = _load_diffusers(folder, dtype)
    elif (folder / "vae" / DIFFUSERS_CONFIG).is_file():  # a pipeline saved with save_pretrained
        model = _load_diffusers(folder / "vae", dtype)
    else:
        hint = " (a sned supernet checkpoint?)" if (folder / "state.json").is_file() else ""
        raise UserError(f"--vae {folder} holds neither {SNED_CONFIG} (sned vae train) nor {DIFFUSERS_CONFIG} "
                        f"(a diffusers save_pretrained folder){hint}")
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _read_json(file: Path, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"corrupt {what} {file.parent}: {file.name} is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise UserError(f"corrupt {what} {file.parent}: {file.name} is not a JSON object")
    return payload


def read_sned_config(folder: str | Path) -> dict[str, Any]:
    """The validated ``vae.json`` of a ``sned vae train`` folder (weights' sha256 checked)."""
    folder = Path(folder)
    config = _read_json(folder / SNED_CONFIG, "sned VAE")
    if config.get("format") != SNED_FORMAT:
        raise UserError(f"--vae {folder}: {SNED_CONFIG} is not a {SNED_FORMAT} config (format "
                        f"{config.get('format')!r})")
    if config.get("version") != SNED_VERSION:
        raise UserError(f"--vae {folder} has {SNED_FORMAT} version {config.get('version')!r}; this sned reads "
                        f"{SNED_VERSION}")
    missing = [k for k in ("architecture", "scaling_factor", "shift_factor", "files") if k not in config]
    if missing:
        raise UserError(f"corrupt sned VAE {folder}: {SNED_CONFIG} lacks {', '.join(missing)}")
    for key in ("scaling_factor", "shift_factor"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                key == "scaling_factor" and value == 0):
            raise UserError(f"corrupt sned VAE {folder}: {key} = {value!r}, expected a finite number")
    weights = folder / SNED_WEIGHTS
    if not weights.is_file():
        raise UserError(f"corrupt sned VAE {folder}: {SNED_WEIGHTS} is missing")
    if file_sha256(weights) != dict(config["files"]).get(SNED_WEIGHTS):
        raise UserError(f"corrupt sned VAE {folder}: {SNED_WEIGHTS} does not match its recorded sha256")
    return config


def _load_sned(folder: Path) -> KLVideoAutoencoder:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_sned_config(folder)
    architecture = VAEConfig.from_dict(config["architecture"], f"--vae {folder}: {SNED_CONFIG}")
    model = KLVideoAutoencoder(architecture, float(config["scaling_factor"]), float(config["shift_factor"]))
    try:
        model.load_state_dict(load_file(str(folder / SNED_WEIGHTS)), strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = " ".join(str(exc).strip().splitlines()[:2])[:300]
        raise UserError(f"corrupt sned VAE {folder}: {SNED_WEIGHTS} does not fit its architecture ({first})") from None
    model.set_identity(_digest({"kind": model.kind, "architecture": architecture.to_dict(),
                                "scaling_factor": model.scaling_factor, "shift_factor": model.shift_factor,
                                "weights": config["files"][SNED_WEIGHTS]}))
    return model


@contextlib.contextmanager
def _offline_and_quiet() -> Iterator[None]:
    """No hub access and no diffusers log lines while loading (the CLI's error is the only line)."""
    from diffusers.utils import logging as diffusers_logging

    previous_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "DIFFUSERS_OFFLINE")}
    previous_level = diffusers_logging.get_verbosity()
    os.environ.update(HF_HUB_OFFLINE="1", DIFFUSERS_OFFLINE="1")
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(previous_level)
        for key, value in previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _load_diffusers(folder: Path, dtype: torch.dtype) -> DiffusersFrameAutoencoder:
    config = _read_json(folder / DIFFUSERS_CONFIG, "diffusers autoencoder")
    class_name = config.get("_class_name")
    if not isinstance(class_name, str):
        raise UserError(f"--vae {folder}: {DIFFUSERS_CONFIG} names no diffusers class (_class_name); expected a "
                        f"save_pretrained folder of {' or '.join(ADAPTERS)}")
    if class_name not in ADAPTERS:
        why = (" (a causal 3D VAE: it needs 1 + 4k frames)" if class_name in _CAUSAL_3D else "")
        raise UserError(f"--vae {folder} holds a diffusers {class_name}{why}; supported: {', '.join(ADAPTERS)}")
    weights = sorted(p.name for p in folder.glob("diffusion_pytorch_model*.safetensors"))
    variant = None
    if DIFFUSERS_WEIGHTS not in weights and not (folder / f"{DIFFUSERS_WEIGHTS}.index.json").is_file():
        variants = [n.split(".")[1] for n in weights if n.count(".") == 2]
        if not variants:
            pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.ckpt"))
            what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
            raise UserError(f"--vae {folder} holds {what}; sned loads safetensors only ({DIFFUSERS_WEIGHTS}: "
                            f"save_pretrained(..., safe_serialization=True))")
        variant = variants[0]
    try:
        import diffusers
    except ImportError:
        raise UserError(f"--vae {folder} is a diffusers {class_name}: install diffusers (pip install 'sned[vae]')"
                        ) from None
    from safetensors import SafetensorError

    try:
        with _offline_and_quiet():
            model = getattr(diffusers, class_name).from_pretrained(
                str(folder), use_safetensors=True, local_files_only=True, torch_dtype=dtype, variant=variant)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        first = " ".join(str(exc).strip().splitlines()[:1])[:300] or type(exc).__name__
        raise UserError(f"corrupt diffusers {class_name} {folder}: {first}") from None
    adapter = ADAPTERS[class_name](model)
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix == ".safetensors" or p.name in (
        DIFFUSERS_CONFIG, f"{DIFFUSERS_WEIGHTS}.index.json")))
    adapter.set_identity(_digest({"kind": adapter.kind, "adapter_version": ADAPTER_VERSION, "variant": variant,
                                  "files": {p.name: file_sha256(p) for p in files}}))
    return adapter


__all__ = ["ADAPTERS", "DiffusersFrameAutoencoder", "DiffusersTemporalDecoderAutoencoder", "load_autoencoder",
           "read_sned_config"]
