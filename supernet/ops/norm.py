"""Elastic GroupNorm: 32 groups at every width (widths are multiples of 32), affine sliced per segment."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sned.supernet.ops.slicing import gather_segments


class ElasticGroupNorm(nn.Module):
    """GroupNorm over ``(b, c, f, h, w)`` with a fixed number of groups and sliced affine parameters.

    Keeping the group count fixed (rather than the channels per group) matches the dense
    GroupNorm(32, c) that a static subnet of width ``c`` would have.
    """

    def __init__(self, segments: Sequence[int], groups: int = 32, eps: float = 1e-5):
        super().__init__()
        self.segments, self.groups, self.eps = tuple(segments), groups, eps
        self.weight = nn.Parameter(torch.ones(sum(self.segments)))
        self.bias = nn.Parameter(torch.zeros(sum(self.segments)))

    def active_weights(self, spec: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return (gather_segments(self.weight, self.segments, spec, 0),
                gather_segments(self.bias, self.segments, spec, 0))

    def forward(self, x: torch.Tensor, spec: Sequence[int]) -> torch.Tensor:
        weight, bias = self.active_weights(spec)
        return F.group_norm(x, self.groups, weight, bias, self.eps)

    def extract(self, spec: Sequence[int]) -> nn.GroupNorm:
        weight, bias = self.active_weights(spec)
        norm = nn.GroupNorm(self.groups, weight.shape[0], self.eps, device=weight.device, dtype=weight.dtype)
        norm.weight.data.copy_(weight.detach())
        norm.bias.data.copy_(bias.detach())
        return norm
