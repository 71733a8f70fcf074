"""Elastic linear layer with segmented outputs (q | k | v, or scale | shift), each sliced separately."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sned.supernet.ops.slicing import gather_segments

LinearSpec = tuple[int, tuple[int, ...]]  # (active input features, active output segments)


class ElasticLinear(nn.Module):
    """A Linear whose input features and each output segment are sliced per call.

    Args:
        in_features: max input features.
        out_segments: max widths of the output segments (``(C, C, C)`` for fused q, k, v).
        bias: learn a bias.
        zero_init: start from zero weights (residual branches' last layer).
    """

    def __init__(self, in_features: int, out_segments: Sequence[int], bias: bool = True, zero_init: bool = False):
        super().__init__()
        self.in_features, self.out_segments = in_features, tuple(out_segments)
        self.weight = nn.Parameter(torch.empty(sum(self.out_segments), in_features))
        self.bias = nn.Parameter(torch.empty(sum(self.out_segments))) if bias else None
        if zero_init:
            nn.init.zeros_(self.weight)
        else:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 0.0 if zero_init else 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def active_weights(self, spec: LinearSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
        in_active, out_active = spec
        weight = gather_segments(self.weight[:, :in_active], self.out_segments, out_active, dim=0)
        bias = None if self.bias is None else gather_segments(self.bias, self.out_segments, out_active, 0)
        return weight, bias

    def forward(self, x: torch.Tensor, spec: LinearSpec) -> torch.Tensor:
        weight, bias = self.active_weights(spec)
        return F.linear(x, weight, bias)

    def extract(self, spec: LinearSpec) -> nn.Linear:
        weight, bias = self.active_weights(spec)
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                           dtype=weight.dtype)
        linear.weight.data.copy_(weight.detach())
        if bias is not None:
            linear.bias.data.copy_(bias.detach())
        return linear
