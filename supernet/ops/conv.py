"""Elastic 3D convolution (space-time kernels such as 1x3x3 and 3x1x1)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from sned.supernet.ops.slicing import gather_segments

ConvSpec = tuple[tuple[int, ...], int]  # (active input segments, active output channels)


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int, int],
           padding: tuple[int, int, int]) -> torch.Tensor:
    """A 3D convolution that runs factorised kernels as 2D convolutions.

    Spatial kernels ``(1, k, k)`` fold frames into the batch and temporal kernels ``(k, 1, 1)`` fold
    space into the last axis; on CPU this is 1.1-4.7x faster than ``F.conv3d`` for tiny's shapes
    (``benchmarks/conv_paths.py``), and the result is the same convolution.
    """
    b, _, f, h, w = x.shape
    if weight.shape[2] == 1 and stride[0] == 1 and padding[0] == 0:  # (1, k, k): per frame
        y = F.conv2d(rearrange(x, "b c f h w -> (b f) c h w"), weight[:, :, 0], bias, stride[1:], padding[1:])
        return rearrange(y, "(b f) c h w -> b c f h w", b=b)
    if weight.shape[3:] == (1, 1) and stride[1:] == (1, 1) and padding[1:] == (0, 0):  # (k, 1, 1): per position
        y = F.conv2d(x.reshape(b, x.shape[1], f, h * w), weight[..., 0], bias, (stride[0], 1), (padding[0], 0))
        return y.reshape(b, y.shape[1], y.shape[2], h, w)
    return F.conv3d(x, weight, bias, stride, padding)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state dict) computed by :func:`conv3d`: what ``extract`` returns."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3d(x, self.weight, self.bias, self.stride, self.padding)


class ElasticConv3d(nn.Module):
    """A Conv3d whose input segments and output channels are sliced per call.

    Args:
        in_segments: max widths of the (concatenated) input segments.
        out_channels: max output channels.
        kernel_size, stride, padding: as ``nn.Conv3d`` (3-tuples).
        zero_init: start from zero weights (residual branches' last layer).
    """

    def __init__(self, in_segments: Sequence[int], out_channels: int, kernel_size: tuple[int, int, int],
                 stride: tuple[int, int, int] = (1, 1, 1), padding: tuple[int, int, int] = (0, 0, 0),
                 zero_init: bool = False):
        super().__init__()
        self.in_segments = tuple(in_segments)
        self.out_channels = out_channels
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), tuple(stride), tuple(padding)
        self.weight = nn.Parameter(torch.empty(out_channels, sum(self.in_segments), *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters(zero_init)

    def reset_parameters(self, zero_init: bool = False) -> None:
        if zero_init:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)
            return
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in = self.weight[0].numel()
        nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def active_weights(self, spec: ConvSpec) -> tuple[torch.Tensor, torch.Tensor]:
        in_active, out = spec
        weight = gather_segments(self.weight[:out], self.in_segments, in_active, dim=1)
        return weight, self.bias[:out]

    def forward(self, x: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
        weight, bias = self.active_weights(spec)
        return conv3d(x, weight, bias, self.stride, self.padding)

    def extract(self, spec: ConvSpec) -> Conv3d:
        weight, bias = self.active_weights(spec)
        conv = Conv3d(weight.shape[1], weight.shape[0], self.kernel_size, self.stride, self.padding,
                         device=weight.device, dtype=weight.dtype)
        conv.weight.data.copy_(weight.detach())
        conv.bias.data.copy_(bias.detach())
        return conv
