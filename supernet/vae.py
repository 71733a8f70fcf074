"""Video autoencoders for latent video diffusion: the one interface they share, and sned's own KL video VAE.

Latent diffusion (LDM, Rombach et al. 2022; LVDM, He et al. 2022; VideoLDM, Blattmann et al. 2023)
trains the denoiser on the latents of a fixed, pretrained autoencoder. Everything in sned that
touches latents (the latent cache, latent training and sampling, the decoder's entry in the latency
table) goes through :class:`VideoAutoencoder`, whatever the autoencoder is:

* sned's own :class:`KLVideoAutoencoder` (this module; trained by ``sned vae train``, see
  :mod:`sned.supernet.vae_train`), or
* a diffusers autoencoder saved with ``save_pretrained`` (``AutoencoderKL`` applied per frame, as
  LVDM, VideoLDM and AnimateDiff do; ``AutoencoderKLTemporalDecoder``), wrapped by
  :mod:`sned.supernet.vae_load`.

Get one with :func:`sned.supernet.vae_load.load_autoencoder` (never downloads)::

    from sned.supernet.vae_load import load_autoencoder

    ae = load_autoencoder("runs/vae")                 # or a diffusers save_pretrained folder
    z = ae.encode(video)                              # (b, 3, f, h, w) in [-1, 1] -> scaled latent
    z.shape == (b, ae.latent_channels, f // ae.temporal_factor, h // ae.spatial_factor, w // ae.spatial_factor)
    video_hat = ae.decode(z)                          # -> (b, 3, f, h, w) in [-1, 1]
    ae.identity                                       # "sned-vae:1f2e...": key latent caches by ae.sha256

**The contract** (what the latent layer may rely on):

========================  =====================================================================
``encode(video, g)``      ``video`` ``(b, c, f, h, w)`` in [-1, 1], any float dtype; ``h, w``
                          divisible by ``spatial_factor``, ``f`` by ``temporal_factor``. Returns
                          the **scaled** latent ``(z - shift) * scale`` (unit variance on the
                          data it was measured on), in the autoencoder's dtype and device:
                          the posterior mean, or a posterior sample when a ``torch.Generator``
                          ``g`` is given (what LDM trains on).
``encode_distribution``   the scaled posterior as :class:`LatentDistribution` (``mean``, ``std``,
                          ``sample(g)``): a cache can store both moments and sample per step.
``decode(latent)``        scaled latent -> video ``(b, c, f, h, w)``, clamped to [-1, 1].
``latent_shape(f, h, w)`` ``(latent_channels, f', h', w')`` without running anything.
attributes                ``latent_channels``, ``spatial_factor``, ``temporal_factor``,
                          ``scaling_factor`` and ``shift_factor`` (scalars, as in diffusers'
                          configs: SD's ``scaling_factor = 0.18215``; per-channel statistics,
                          where a config has them, live in :attr:`latent_scale` /
                          :attr:`latent_shift`), ``channels`` (3), ``kind``
                          (``"sned-vae"``, ``"diffusers:AutoencoderKL"``, ...), ``sha256`` (of
                          everything that decides the latents: weights, config, scaling and the
                          adapter) and ``identity`` (``kind:sha256[:16]``).
========================  =====================================================================

Loaded autoencoders are in eval mode with ``requires_grad`` off; call them under
``torch.inference_mode()`` in loops. Both methods keep the batch axis independent (no batch
statistics), so encoding a dataset in any batch size gives the same latents up to float rounding.

For the layers built on this interface:

* **latent caches**: key entries by ``ae.sha256`` (plus the data hash, resolution, frames and clip
  start); store ``encode_distribution(x).mean`` and ``.std`` (already scaled) and draw
  ``mean + std * eps`` per training step from a seeded generator, as LDM samples the posterior;
* **latent spaces**: a clip of ``f`` frames at ``res`` px is ``latent_shape(f, res, res)``; the
  UNet's data channels are ``latent_channels``;
* **latency tables**: one decoder pass is ``decode`` on ``(1, C, f', h', w')`` (fixed per
  resolution; ``benchmarks/vae.py`` times encode and decode on one clip).

**sned's VAE** (:class:`KLVideoAutoencoder`, configured by :class:`VAEConfig`): a small conv
encoder/decoder with factorised space-time convs in the style of the supernet's blocks
(:mod:`sned.supernet.blocks.modules`): every res block is GroupNorm-SiLU-conv(1x3x3) twice, then a
residual temporal conv(3x1x1) (zero-initialised, so it starts as a per-frame image autoencoder;
GroupNorm statistics are per frame, :class:`FrameGroupNorm`);
stride-2 spatial downsampling (1x3x3 convs) and nearest-neighbour upsampling; optionally one 2x
temporal down/upsampling at the coarsest level. No attention, so the network is
resolution-agnostic and trains on crops. The encoder outputs the mean and log-variance of a
diagonal Gaussian posterior; the loss (:func:`vae_loss`) is L1 reconstruction plus a small KL term,
no adversarial or perceptual term.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from sned.supernet.base.errors import UserError
from sned.supernet.ops.conv import Conv3d

SPATIAL_KERNEL, TEMPORAL_KERNEL = (1, 3, 3), (3, 1, 1)
LOGVAR_RANGE = (-30.0, 20.0)  # LDM's clamp: keeps exp(logvar) finite early in training
# The encoder's log-variance starts here (posterior std 0.05) rather than at LDM's 0 (std 1): noise of
# std 1 buries the initial latent means, and shrinking it takes thousands of steps at lr 1e-3.
INITIAL_LOGVAR = -6.0


# ----------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class LatentDistribution:
    """A diagonal Gaussian over **scaled** latents ``(b, C, f', h', w')``: ``mean`` and ``std``."""

    mean: torch.Tensor
    std: torch.Tensor

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """``mean + std * eps``, ``eps`` drawn on the CPU from ``generator`` (device-independent draws)."""
        eps = torch.randn(self.mean.shape, generator=generator, dtype=torch.float32)
        return self.mean + self.std * eps.to(self.mean.device, self.mean.dtype)

    def mode(self) -> torch.Tensor:
        return self.mean


class VideoAutoencoder(nn.Module):
    """The interface of every video autoencoder in sned (see the module docstring for the contract).

    Subclasses set the attributes in ``__init__`` (through :meth:`_set_latent_affine` for the
    scaling) and implement two hooks on **unscaled** latents:

    * ``moments(video)`` (required): ``video`` ``(b, c, f, h, w)`` in the module's dtype ->
      ``(mean, logvar)`` of the posterior, each ``(b, C, f', h', w')``. A deterministic
      autoencoder returns a logvar of ``-inf``-like values (std 0).
    * ``decode_latent(z)`` (required): unscaled ``z`` -> the raw reconstruction (not clamped).

    :meth:`encode`, :meth:`encode_distribution`, :meth:`decode` (scaling, shape checks, dtype) are
    written once here. ``sha256`` is set by the loader: a module built by hand has ``""`` until
    :meth:`set_identity` is called.
    """

    kind: str = "abstract"
    channels: int = 3
    latent_channels: int
    spatial_factor: int
    temporal_factor: int
    scaling_factor: float
    shift_factor: float
    sha256: str = ""

    def moments(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- scaling: scaled = (z - shift) * scale, per latent channel

    def _set_latent_affine(self, scaling_factor: float, shift_factor: float = 0.0,
                           channel_mean: list[float] | None = None, channel_std: list[float] | None = None) -> None:
        """Scalar ``scaling_factor``/``shift_factor`` (SD/SD3 convention), optionally per-channel
        ``latents_mean``/``latents_std`` as in diffusers' configs: ``scale = scaling_factor / std_c``,
        ``shift = mean_c`` (else ``shift_factor``)."""
        C = self.latent_channels
        self.scaling_factor, self.shift_factor = float(scaling_factor), float(shift_factor)
        scale = torch.full((C,), self.scaling_factor, dtype=torch.float64)
        shift = torch.full((C,), self.shift_factor, dtype=torch.float64)
        if channel_std is not None:
            scale = scale / torch.tensor(channel_std, dtype=torch.float64).reshape(C)
        if channel_mean is not None:
            shift = torch.tensor(channel_mean, dtype=torch.float64).reshape(C)
        # Plain float32 tensors, not buffers: ``.to(bfloat16)`` must not round the scaling factor.
        self.latent_scale, self.latent_shift = scale.float(), shift.float()

    def _affine(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        view = (1, -1, 1, 1, 1)
        return (self.latent_shift.to(like.device, like.dtype).view(view),
                self.latent_scale.to(like.device, like.dtype).view(view))

    # -- identity

    def set_identity(self, sha256: str) -> None:
        self.sha256 = sha256

    @property
    def identity(self) -> str:
        """``kind:sha256[:16]``: a short, stable name for logs, file names and cache keys."""
        return f"{self.kind}:{self.sha256[:16]}"

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the public methods

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(latent_channels, f', h', w')`` of a ``(frames, height, width)`` clip.

        Raises:
            ValueError: a size not divisible by its factor.
        """
        s, t = self.spatial_factor, self.temporal_factor
        if height % s or width % s or frames % t:
            raise ValueError(f"video of {frames} frames of {height}x{width} px does not fit {self.kind}: frames must "
                             f"be divisible by its temporal factor {t}, height and width by its spatial factor {s}")
        return self.latent_channels, frames // t, height // s, width // s

    def _check_video(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != self.channels:
            raise ValueError(f"expected a video batch (b, {self.channels}, f, h, w), got {tuple(video.shape)}")
        self.latent_shape(*video.shape[2:])
        return video.to(self.device, self.dtype)

    def encode_distribution(self, video: torch.Tensor) -> LatentDistribution:
        """The posterior over scaled latents of ``video`` ``(b, c, f, h, w)`` in [-1, 1]."""
        mean, logvar = self.moments(self._check_video(video))
        shift, scale = self._affine(mean)
        std = torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE)) * scale.abs()
        return LatentDistribution((mean - shift) * scale, std)

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled latent of ``video``: the posterior mean, or a sample drawn from ``generator``."""
        posterior = self.encode_distribution(video)
        return posterior.mode() if generator is None else posterior.sample(generator)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled ``latent`` ``(b, C, f', h', w')`` -> video ``(b, c, f, h, w)`` clamped to [-1, 1]."""
        if latent.ndim != 5 or latent.shape[1] != self.latent_channels:
            raise ValueError(f"expected a latent batch (b, {self.latent_channels}, f, h, w), got {tuple(latent.shape)}")
        latent = latent.to(self.device, self.dtype)
        shift, scale = self._affine(latent)
        return self.decode_latent(latent / scale + shift).clamp(-1.0, 1.0)

    def describe(self) -> dict[str, Any]:
        """The interface values as a JSON-able dict (``sned vae info``, cache manifests)."""
        return {"kind": self.kind, "identity": self.identity, "sha256": self.sha256,
                "latent_channels": self.latent_channels, "spatial_factor": self.spatial_factor,
                "temporal_factor": self.temporal_factor, "scaling_factor": self.scaling_factor,
                "shift_factor": self.shift_factor, "dtype": str(self.dtype).removeprefix("torch.")}


# ----------------------------------------------------------------------------- sned's VAE: config


@dataclass(frozen=True)
class VAEConfig:
    """The architecture of :class:`KLVideoAutoencoder` (stored in ``vae.json`` as ``architecture``).

    Args:
        channels: video channels (3).
        latent_channels: channels of the latent.
        widths: encoder channels per level, finest first; ``len(widths) - 1`` stride-2 spatial
            downsamplings, so ``spatial_factor = 2 ** (len(widths) - 1)``. The decoder mirrors it.
        depth: res blocks per level (encoder and decoder).
        temporal_factor: 1, or 2 for one 2x temporal down/upsampling at the coarsest level.
        groups: GroupNorm groups (every width must be a multiple).
    """

    channels: int = 3
    latent_channels: int = 8
    widths: tuple[int, ...] = (32, 64, 64)
    depth: int = 1
    temporal_factor: int = 1
    groups: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) < 2:
            raise ValueError(f"widths {list(self.widths)}: need at least 2 levels (one downsampling)")
        for name in ("channels", "latent_channels", "depth", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r}: expected a positive integer")
        if any(w < 1 or w % self.groups for w in self.widths):
            raise ValueError(f"widths {list(self.widths)}: expected positive multiples of groups = {self.groups}")
        if self.temporal_factor not in (1, 2):
            raise ValueError(f"temporal_factor = {self.temporal_factor!r}: expected 1 or 2")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any], where: str) -> VAEConfig:
        """Strict: unknown keys or bad values raise :class:`UserError` naming ``where``."""
        if not isinstance(payload, Mapping):
            raise UserError(f"{where}: architecture is not a mapping")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(payload) - set(valid))
        if unknown:
            raise UserError(f"{where}: unknown architecture key {unknown[0]!r}; valid keys: {', '.join(valid)}")
        try:
            return cls(**payload)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: bad architecture ({exc})") from None

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- sned's VAE: modules


def _conv(c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)) -> Conv3d:
    """A same-padded conv; the supernet's :class:`~sned.supernet.ops.conv.Conv3d` (an ``nn.Conv3d`` that runs
    1xkxk and kx1x1 kernels as 2D convolutions, faster on CPU)."""
    return Conv3d(c_in, c_out, kernel, stride=stride, padding=tuple(k // 2 for k in kernel))


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame (frames folded into the batch), as a per-frame image VAE has them.

    A frame's features then depend on other frames only through the temporal convs (a 3-frame
    window each), not through clip-wide statistics: a frame's latent changes little with the clip
    length or start, which a latent cache of clips relies on.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, f, h, w)
        b = x.shape[0]
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        y = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
        return rearrange(y, "(b f) c h w -> b c f h w", b=b)


class ResBlock3d(nn.Module):
    """GroupNorm-SiLU-conv(1x3x3) twice, then a residual GroupNorm-SiLU-conv(3x1x1) over time.

    As the supernet's :class:`~sned.supernet.blocks.modules.ResBlock`, without the timestep. The
    temporal conv starts at zero: at initialisation every frame is coded on its own.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels)
        self.conv1 = _conv(in_channels, out_channels, SPATIAL_KERNEL)
        self.norm2 = FrameGroupNorm(groups, out_channels)
        self.conv2 = _conv(out_channels, out_channels, SPATIAL_KERNEL)
        self.temporal_norm = FrameGroupNorm(groups, out_channels)
        self.temporal_conv = _conv(out_channels, out_channels, TEMPORAL_KERNEL)
        nn.init.zeros_(self.temporal_conv.weight)
        nn.init.zeros_(self.temporal_conv.bias)
        self.skip = _conv(in_channels, out_channels, (1, 1, 1)) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, f, h, w)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        h = h + self.temporal_conv(F.silu(self.temporal_norm(h)))  # factorised: time after space
        return self.skip(x) + h


class Downsample3d(nn.Module):
    """Stride-2 spatial conv (1x3x3); with ``temporal`` a stride-2 temporal conv (3x1x1) after it."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.conv = _conv(channels, channels, SPATIAL_KERNEL, stride=(1, 2, 2))
        self.temporal_conv = _conv(channels, channels, TEMPORAL_KERNEL, stride=(2, 1, 1)) if temporal else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.temporal_conv is None else self.temporal_conv(x)


class Upsample3d(nn.Module):
    """Nearest 2x spatial (with ``temporal`` also 2x temporal) upsampling, then conv(1x3x3) to ``out_channels``
    (and with ``temporal`` a conv(3x1x1)). Narrowing here keeps the finest level's convs narrow."""

    def __init__(self, in_channels: int, out_channels: int, temporal: bool):
        super().__init__()
        self.scale = (2 if temporal else 1, 2, 2)
        self.conv = _conv(in_channels, out_channels, SPATIAL_KERNEL)
        self.temporal_conv = _conv(out_channels, out_channels, TEMPORAL_KERNEL) if temporal else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))
        return x if self.temporal_conv is None else self.temporal_conv(x)


class Encoder(nn.Module):
    """video ``(b, c, f, h, w)`` -> posterior moments ``(b, 2C, f/t, h/s, w/s)`` (mean | logvar)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        widths, g = config.widths, config.groups
        last = len(widths) - 1
        self.conv_in = _conv(config.channels, widths[0], SPATIAL_KERNEL)
        self.levels = nn.ModuleList()
        previous = widths[0]
        for i, width in enumerate(widths):
            blocks: list[nn.Module] = []
            for _ in range(config.depth):
                blocks.append(ResBlock3d(previous, width, g))
                previous = width
            if i < last:  # time is halved at the last downsampling, where it is cheapest
                blocks.append(Downsample3d(width, temporal=config.temporal_factor == 2 and i == last - 1))
            self.levels.append(nn.Sequential(*blocks))
        self.mid = ResBlock3d(previous, previous, g)
        self.norm_out = FrameGroupNorm(g, previous)
        self.conv_out = _conv(previous, 2 * config.latent_channels, SPATIAL_KERNEL)
        with torch.no_grad():
            self.conv_out.weight[config.latent_channels:].zero_()
            self.conv_out.bias[config.latent_channels:].fill_(INITIAL_LOGVAR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """latent ``(b, C, f/t, h/s, w/s)`` -> raw video ``(b, c, f, h, w)``: the encoder mirrored."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        widths, g = config.widths, config.groups
        last = len(widths) - 1
        self.conv_in = _conv(config.latent_channels, widths[-1], SPATIAL_KERNEL)
        self.mid = ResBlock3d(widths[-1], widths[-1], g)
        self.levels = nn.ModuleList()
        previous = widths[-1]
        for i in reversed(range(len(widths))):
            blocks: list[nn.Module] = []
            for _ in range(config.depth):
                blocks.append(ResBlock3d(previous, widths[i], g))
                previous = widths[i]
            if i > 0:
                blocks.append(Upsample3d(previous, widths[i - 1], temporal=config.temporal_factor == 2 and i == last))
                previous = widths[i - 1]
            self.levels.append(nn.Sequential(*blocks))
        self.norm_out = FrameGroupNorm(g, previous)
        self.conv_out = _conv(previous, config.channels, SPATIAL_KERNEL)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class KLVideoAutoencoder(VideoAutoencoder):
    """sned's KL-regularised factorised space-time video VAE (see the module docstring).

    Args:
        config: the architecture.
        scaling_factor: multiplies latents (``1 / std`` of the training latents, set after training).
        shift_factor: subtracted from latents before scaling (their mean on the training data).
    """

    kind = "sned-vae"

    def __init__(self, config: VAEConfig, scaling_factor: float = 1.0, shift_factor: float = 0.0):
        super().__init__()
        self.config = config
        self.channels, self.latent_channels = config.channels, config.latent_channels
        self.spatial_factor, self.temporal_factor = config.spatial_factor, config.temporal_factor
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self._set_latent_affine(scaling_factor, shift_factor)

    def moments(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(video).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def set_scaling(self, scaling_factor: float, shift_factor: float) -> None:
        """Set the latent scaling measured on the data (after training)."""
        self._set_latent_affine(scaling_factor, shift_factor)

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``(reconstruction, mean, logvar)``, the latent sampled from ``generator``
        (the reparameterisation trick) or the posterior mean without one."""
        mean, logvar = self.moments(video)
        z = mean
        if generator is not None:
            eps = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device, mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps
        return self.decoder(z), mean, logvar


def vae_loss(video: torch.Tensor, reconstruction: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``mean |x - x_hat| + kl_weight * mean KL(q(z|x) || N(0, I))``, both averaged per element.

    Returns:
        ``(loss, parts)`` with ``parts = {"l1": ..., "kl": ...}`` (detached).
    """
    l1 = (video - reconstruction).abs().mean()
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
    return l1 + kl_weight * kl, {"l1": l1.detach(), "kl": kl.detach()}


def psnr(video: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per clip of videos in [-1, 1] ``(b, c, f, h, w)`` (peak-to-peak 2, i.e. [0, 1] after rescaling)."""
    mse = (video.double() - reconstruction.double()).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))


__all__ = ["KLVideoAutoencoder", "LatentDistribution", "VAEConfig", "VideoAutoencoder", "psnr", "vae_loss"]
