"""Elastic UNet blocks (res block, space-time attention, down/up sampling, stem, head): the torch side.

Each block kind of ``sned.supernet.blocks`` (``res.py``, ``attention.py``, ...) builds its module
here, passing the kernel sizes its cost formulas use.

A block's math is written once, in its ``compute`` static method, over a mapping of named ops. The
elastic block calls it with its elastic ops bound to their specs; ``extract(spec)`` builds a
:class:`StaticBlock` that calls the same ``compute`` with plain ``torch.nn`` modules. So the
supernet and an extracted subnet cannot drift apart.

Notation: ``x`` is a video batch ``(b, c, f, h, w)``; ``temb`` the timestep embedding ``(b, T)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from sned.supernet.blocks.base import position_feature_count, same_padding
from sned.supernet.ops import (
    ElasticConv3d,
    ElasticGroupNorm,
    ElasticLinear,
    ElasticRelativePositionBias,
    attention,
)

Ops = Mapping[str, Callable[..., torch.Tensor]]


class StaticBlock(nn.Module):
    """An extracted block: plain modules plus the elastic block's ``compute`` function."""

    def __init__(self, compute: Callable[..., torch.Tensor], ops: Mapping[str, nn.Module], **kwargs: Any):
        super().__init__()
        self.compute = compute
        self.ops = nn.ModuleDict(dict(ops))
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor, *args: torch.Tensor, **call_kwargs: Any) -> torch.Tensor:
        return self.compute(self.ops, x, *args, **self.kwargs, **call_kwargs)


class ElasticBlock(nn.Module):
    """Base of the elastic blocks: subclasses define ``child_specs``, ``compute`` and optional ``static_kwargs``."""

    def child_specs(self, spec: Any) -> dict[str, Any]:
        raise NotImplementedError

    def static_kwargs(self, spec: Any) -> dict[str, Any]:
        return {}

    @staticmethod
    def compute(ops: Ops, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *args: torch.Tensor, spec: Any, **call_kwargs: Any) -> torch.Tensor:
        """Run the block at ``spec``; ``call_kwargs`` (e.g. ``use_temporal``) go to ``compute`` as they are."""
        ops = {name: functools.partial(getattr(self, name), spec=s) for name, s in self.child_specs(spec).items()}
        return self.compute(ops, x, *args, **self.static_kwargs(spec), **call_kwargs)

    def extract(self, spec: Any) -> StaticBlock:
        ops = {name: getattr(self, name).extract(s) for name, s in self.child_specs(spec).items()}
        return StaticBlock(type(self).compute, ops, **self.static_kwargs(spec))


class ResBlock(ElasticBlock):
    """Residual block: GroupNorm-SiLU-conv(1x3x3), timestep scale-shift, conv(1x3x3), temporal conv(3x1x1).

    Spec: ``(input segment widths, output width)``. ``use_projection`` adds a ``projection_kernel``
    skip conv (the first block of every stage, whose input width differs or is a skip
    concatenation). With ``global_gate`` the features entering conv2 are scaled per channel by
    ``2 sigmoid(W mean_hw(h) + b)``, the frame's mean features (squeeze-excitation, Hu et al. 2018;
    zero-initialised, so it starts as the identity): a multiplicative path from the whole frame to
    every position, which a denoiser needs to commit to one orientation or palette of a pattern that
    covers the frame. ``compute(..., use_temporal=False)`` skips the temporal conv, so every frame is
    an independent image (the image pre-training stage). Kernels (``(1, 3, 3)``, ``(3, 1, 1)``,
    ``(1, 1, 1)`` for every built-in space) come from :class:`sned.supernet.blocks.res.ResKind`.
    """

    def __init__(self, in_segments: tuple[int, ...], out_channels: int, time_embed_dim: int, use_projection: bool, *,
                 spatial_kernel: tuple[int, int, int], temporal_kernel: tuple[int, int, int],
                 projection_kernel: tuple[int, int, int], global_gate: bool = False):
        super().__init__()
        C = out_channels
        self.time_embed_dim = time_embed_dim
        spatial, temporal = same_padding(spatial_kernel), same_padding(temporal_kernel)
        self.norm1 = ElasticGroupNorm(in_segments)
        self.conv1 = ElasticConv3d(in_segments, C, spatial_kernel, padding=spatial)
        self.emb = ElasticLinear(time_embed_dim, (C, C))  # scale | shift, sliced separately
        self.norm2 = ElasticGroupNorm((C,))
        self.gate = ElasticLinear(C, (C,), zero_init=True) if global_gate else None
        self.conv2 = ElasticConv3d((C,), C, spatial_kernel, padding=spatial, zero_init=True)
        self.temporal_norm = ElasticGroupNorm((C,))
        self.temporal_conv = ElasticConv3d((C,), C, temporal_kernel, padding=temporal, zero_init=True)
        self.skip = (ElasticConv3d(in_segments, C, projection_kernel, padding=same_padding(projection_kernel))
                     if use_projection else None)

    def child_specs(self, spec: tuple[tuple[int, ...], int]) -> dict[str, Any]:
        segments, c = spec
        specs = {"norm1": segments, "conv1": (segments, c), "emb": (self.time_embed_dim, (c, c)),
                 "norm2": (c,), "conv2": ((c,), c), "temporal_norm": (c,), "temporal_conv": ((c,), c)}
        if self.gate is not None:
            specs["gate"] = (c, (c,))
        if self.skip is not None:
            specs["skip"] = (segments, c)
        return specs

    @staticmethod
    def compute(ops: Ops, x: torch.Tensor, temb: torch.Tensor, use_temporal: bool = True) -> torch.Tensor:
        h = ops["conv1"](F.silu(ops["norm1"](x)))
        scale, shift = ops["emb"](F.silu(temb))[:, :, None, None, None].chunk(2, dim=1)
        h = F.silu(ops["norm2"](h) * (1 + scale) + shift)
        if "gate" in ops:  # per frame: (b, f, c) means over h, w
            gate = ops["gate"](h.mean(dim=(3, 4)).transpose(1, 2))  # (b, f, c)
            h = h * (2.0 * torch.sigmoid(gate)).transpose(1, 2)[..., None, None]
        h = ops["conv2"](h)
        if use_temporal:
            h = h + ops["temporal_conv"](F.silu(ops["temporal_norm"](h)))  # factorised: time after space
        return (ops["skip"](x) if "skip" in ops else x) + h


class AttentionBlock(ElasticBlock):
    """Spatial attention (over h*w per frame) then temporal attention (over frames, relative position bias).

    Spec: the active width; heads = width / head_dim. ``compute(..., use_temporal=False)`` skips the
    temporal attention (image pre-training).
    """

    def __init__(self, channels: int, head_dim: int, frames: int):
        super().__init__()
        C = channels
        self.head_dim = head_dim
        self.spatial_norm = ElasticGroupNorm((C,))
        self.spatial_qkv = ElasticLinear(C, (C, C, C), bias=False)
        self.spatial_out = ElasticLinear(C, (C,), zero_init=True)
        self.temporal_norm = ElasticGroupNorm((C,))
        self.temporal_qkv = ElasticLinear(C, (C, C, C), bias=False)
        self.temporal_out = ElasticLinear(C, (C,), zero_init=True)
        self.temporal_bias = ElasticRelativePositionBias(C // head_dim, frames)

    def child_specs(self, c: int) -> dict[str, Any]:
        return {"spatial_norm": (c,), "spatial_qkv": (c, (c, c, c)), "spatial_out": (c, (c,)),
                "temporal_norm": (c,), "temporal_qkv": (c, (c, c, c)), "temporal_out": (c, (c,)),
                "temporal_bias": c // self.head_dim}

    def static_kwargs(self, c: int) -> dict[str, Any]:
        return {"heads": c // self.head_dim}

    @staticmethod
    def compute(ops: Ops, x: torch.Tensor, heads: int, use_temporal: bool = True) -> torch.Tensor:
        b, _, f, h, w = x.shape
        tokens = rearrange(ops["spatial_norm"](x), "b c f h w -> (b f) (h w) c")
        y = attention(tokens, ops["spatial_qkv"], ops["spatial_out"], heads)
        x = x + rearrange(y, "(b f) (h w) c -> b c f h w", b=b, h=h)
        if not use_temporal:
            return x
        tokens = rearrange(ops["temporal_norm"](x), "b c f h w -> (b h w) f c")
        y = attention(tokens, ops["temporal_qkv"], ops["temporal_out"], heads, ops["temporal_bias"]())
        return x + rearrange(y, "(b h w) f c -> b c f h w", b=b, h=h, w=w)


class Downsample(ElasticBlock):
    """Spatial-only downsampling: conv ``kernel_size`` (1x3x3) with ``stride`` (1, 2, 2). Spec: the width."""

    def __init__(self, channels: int, kernel_size: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.conv = ElasticConv3d((channels,), channels, kernel_size, stride=stride, padding=same_padding(kernel_size))

    def child_specs(self, c: int) -> dict[str, Any]:
        return {"conv": ((c,), c)}

    @staticmethod
    def compute(ops: Ops, x: torch.Tensor) -> torch.Tensor:
        return ops["conv"](x)


class Upsample(ElasticBlock):
    """Spatial-only nearest upsampling by 2, then conv ``kernel_size`` (1x3x3). Spec: the width."""

    def __init__(self, channels: int, kernel_size: tuple[int, int, int]):
        super().__init__()
        self.conv = ElasticConv3d((channels,), channels, kernel_size, padding=same_padding(kernel_size))

    def child_specs(self, c: int) -> dict[str, Any]:
        return {"conv": ((c,), c)}

    @staticmethod
    def compute(ops: Ops, x: torch.Tensor) -> torch.Tensor:
        return ops["conv"](F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


class Stem(ElasticBlock):
    """Space-to-depth by ``patch`` (pixel unshuffle), then conv ``kernel_size`` (1x3x3) to the first stage's width.

    With ``position_frequencies = K > 0`` a learned projection of Fourier features of the grid's
    position is added to the output: ``cos`` and ``sin`` of ``2 pi k . u`` for every integer wave
    vector ``k`` with ``0 < max(|kx|, |ky|) <= K`` (one of each ``+-k`` pair), ``u`` the cell centre in
    frame units, so the features mean the same place at every resolution (those a grid is too coarse
    to hold, ``|k| >= side / 2`` on an axis, are zero there instead of aliased). Convolutions and
    attention without them are translation-equivariant; the projection (zero-initialised, so it
    starts as the identity) gives every position a frame-wide coordinate system to lay out one
    coherent grating or one centre of rings.
    """

    def __init__(self, data_channels: int, channels: int, patch: int, kernel_size: tuple[int, int, int],
                 position_frequencies: int = 0):
        super().__init__()
        self.patch, self.position_frequencies = patch, position_frequencies
        self.conv = ElasticConv3d((data_channels * patch * patch,), channels, kernel_size,
                                  padding=same_padding(kernel_size))
        n = position_feature_count(position_frequencies)
        self.position = ElasticLinear(n, (channels,), bias=False, zero_init=True) if n else None

    def child_specs(self, c: int) -> dict[str, Any]:
        specs = {"conv": (self.conv.in_segments, c)}
        if self.position is not None:
            specs["position"] = (self.position.in_features, (c,))
        return specs

    def static_kwargs(self, c: int) -> dict[str, Any]:
        return {"patch": self.patch, "frequencies": self.position_frequencies}

    @staticmethod
    def compute(ops: Ops, x: torch.Tensor, patch: int, frequencies: int = 0) -> torch.Tensor:
        x = rearrange(x, "b c f (h p1) (w p2) -> b (c p1 p2) f h w", p1=patch, p2=patch)
        h = ops["conv"](x)
        if "position" in ops:  # (h, w, F) -> (h, w, c), one per forward: shared by the batch and the frames
            features = position_features(frequencies, h.shape[-2], h.shape[-1], device=h.device, dtype=h.dtype)
            h = h + ops["position"](features).permute(2, 0, 1)[None, :, None]
        return h


def position_features(frequencies: int, height: int, width: int, *, device: Any = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(height, width, F)`` cos | sin of ``2 pi k . u`` over the cell centres ``u`` in [0, 1] (see :class:`Stem`)."""
    K = frequencies
    k = torch.tensor([(kx, ky) for kx in range(0, K + 1) for ky in range(-K, K + 1) if kx > 0 or ky > 0],
                     dtype=torch.float64, device=device)  # (2K(K+1), 2): one of each +-k pair
    uy = (torch.arange(height, dtype=torch.float64, device=device) + 0.5) / height
    ux = (torch.arange(width, dtype=torch.float64, device=device) + 0.5) / width
    angle = 2.0 * torch.pi * (ux[None, :, None] * k[:, 0] + uy[:, None, None] * k[:, 1])  # (h, w, n)
    # a grid of n cells holds frequencies below n / 2; the others would alias onto lower ones: zero
    resolved = ((2 * k[:, 0].abs() < width) & (2 * k[:, 1].abs() < height)).to(angle.dtype)
    return (torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1) * resolved.repeat(2)).to(dtype)


class Head(ElasticBlock):
    """GroupNorm-SiLU-conv ``kernel_size`` (1x3x3) to the data channels of a patch, depth-to-space by ``patch``, then a
    full-resolution pixel path.

    A space-to-depth stem leaves no full-resolution path: every pixel of a ``patch x patch`` cell
    has to pass through the first stage's width, and the noise of a ``p x p`` patch carries
    ``c * p * p`` independent values. With ``pixel_channels > 0`` the head also reads the network's
    input ``x`` at full resolution: a conv to ``pixel_channels`` features, a timestep
    scale-shift (the features must know the noise level), SiLU, and a zero-initialised conv of
    ``[features | patch output]`` added to the patch output. It is fixed-size (shared by every subnet).

    Spec: the active width of the first stage.
    """

    def __init__(self, channels: int, data_channels: int, patch: int, time_embed_dim: int, pixel_channels: int,
                 kernel_size: tuple[int, int, int]):
        super().__init__()
        self.patch, self.data_channels, self.time_embed_dim = patch, data_channels, time_embed_dim
        self.pixel_channels = pixel_channels
        k, pad = kernel_size, same_padding(kernel_size)
        self.norm = ElasticGroupNorm((channels,))
        self.conv = ElasticConv3d((channels,), data_channels * patch * patch, k, padding=pad, zero_init=True)
        if pixel_channels:
            P, D = pixel_channels, data_channels
            self.pixel_in = ElasticConv3d((D,), P, k, padding=pad)
            self.pixel_emb = ElasticLinear(time_embed_dim, (P, P))  # scale | shift
            self.pixel_out = ElasticConv3d((P, D), D, k, padding=pad, zero_init=True)

    def child_specs(self, c: int) -> dict[str, Any]:
        specs = {"norm": (c,), "conv": ((c,), self.conv.out_channels)}
        if self.pixel_channels:
            P, D = self.pixel_channels, self.data_channels
            specs |= {"pixel_in": ((D,), P), "pixel_emb": (self.time_embed_dim, (P, P)), "pixel_out": ((P, D), D)}
        return specs

    def static_kwargs(self, c: int) -> dict[str, Any]:
        return {"patch": self.patch}

    @staticmethod
    def compute(ops: Ops, h: torch.Tensor, x: torch.Tensor, temb: torch.Tensor, patch: int) -> torch.Tensor:
        y = ops["conv"](F.silu(ops["norm"](h)))
        y = rearrange(y, "b (c p1 p2) f h w -> b c f (h p1) (w p2)", p1=patch, p2=patch)
        if "pixel_in" not in ops:
            return y
        scale, shift = ops["pixel_emb"](F.silu(temb))[:, :, None, None, None].chunk(2, dim=1)
        features = F.silu(ops["pixel_in"](x) * (1 + scale) + shift)  # (b, P, f, H, W) at full resolution
        return y + ops["pixel_out"](torch.cat([features, y], dim=1))


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the timestep, then Linear-SiLU-Linear (shared by every subnet).

    With ``classes > 0`` a class embedding is added to the result (as in ADM and DiT), so every
    block that reads the timestep embedding also reads the class. Row ``classes`` of the table is
    the null label: the unconditional model that classifier-free guidance contrasts against
    (training drops labels to it at random).
    """

    def __init__(self, dim: int, max_period: float = 10_000.0, classes: int = 0):
        super().__init__()
        self.dim, self.max_period, self.classes = dim, max_period, classes
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(classes + 1, dim) if classes else None
        if self.label is not None:
            nn.init.normal_(self.label.weight, std=0.02)

    def forward(self, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``(b, dim)`` for timesteps ``t`` ``(b,)`` and class indices ``labels`` ``(b,)`` (None: all null)."""
        half = self.dim // 2
        freqs = torch.exp(-torch.log(torch.tensor(self.max_period)) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        emb = self.mlp(torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).to(self.mlp[0].weight.dtype))
        if self.label is None:
            if labels is not None:
                raise ValueError("this network is unconditional (space.classes = 0); pass no labels")
            return emb
        if labels is None:
            labels = torch.full((len(t),), self.classes, dtype=torch.long, device=t.device)
        elif labels.shape != t.shape:
            raise ValueError(f"labels must be (b,) class indices in [0, {self.classes}] ({self.classes}: none), "
                             f"got shape {tuple(labels.shape)} for {len(t)} timesteps")
        return emb + self.label(labels)
