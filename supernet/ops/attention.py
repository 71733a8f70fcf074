"""Multi-head attention over token sequences, and the elastic relative position bias for time.

One attention function serves spatial and temporal attention (the block rearranges the video
into ``(batch, tokens, channels)``); heads follow the active width at a fixed head size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def attention(tokens: torch.Tensor, qkv, out, heads: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention of ``tokens`` ``(B, N, C)``; ``qkv`` maps C -> 3C as [q | k | v], ``out`` C -> C.

    ``bias`` ``(heads, N, N)`` is added to the attention logits (relative position bias).
    """
    q, k, v = rearrange(qkv(tokens), "b n (three h d) -> three b h n d", three=3, h=heads)
    mask = None if bias is None else bias.to(q.dtype).unsqueeze(0)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, N, d)
    return out(rearrange(y, "b h n d -> b n (h d)"))


def relative_positions(frames: int, device=None) -> torch.Tensor:
    """Index table ``(F, F)`` into a ``(2F - 1)`` bias row: ``j - i + F - 1``."""
    idx = torch.arange(frames, device=device)
    return idx[None, :] - idx[:, None] + frames - 1


class StaticRelativePositionBias(nn.Module):
    """A learned bias per head and frame offset (the extracted, fixed-head version)."""

    def __init__(self, table: torch.Tensor, frames: int):
        super().__init__()
        self.frames = frames
        self.table = nn.Parameter(table)  # (2F - 1, heads)

    def forward(self) -> torch.Tensor:
        rel = relative_positions(self.frames, self.table.device)
        return rearrange(self.table[rel], "i j h -> h i j")


class ElasticRelativePositionBias(nn.Module):
    """Relative position bias for temporal attention (VDM): ``(2F - 1, max_heads)`` sliced to the active heads."""

    def __init__(self, max_heads: int, frames: int):
        super().__init__()
        self.frames = frames
        self.table = nn.Parameter(torch.zeros(2 * frames - 1, max_heads))

    def active_weights(self, heads: int) -> torch.Tensor:
        return self.table[:, :heads]

    def forward(self, spec: int) -> torch.Tensor:
        """The bias ``(heads, F, F)`` for ``spec`` active heads."""
        rel = relative_positions(self.frames, self.table.device)
        return rearrange(self.active_weights(spec)[rel], "i j h -> h i j")

    def extract(self, heads: int) -> StaticRelativePositionBias:
        return StaticRelativePositionBias(self.active_weights(heads).detach().clone(), self.frames)
