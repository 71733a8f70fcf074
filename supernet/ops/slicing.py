"""Segment-wise slicing of max-size weights, shared by every elastic op."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gather_segments(weight: torch.Tensor, max_segments: Sequence[int], active: Sequence[int], dim: int) -> torch.Tensor:
    """Take the leading ``active[k]`` entries of each max-size segment along ``dim`` and concatenate.

    A single segment returns a view (no copy), so the common case costs nothing.
    """
    if len(active) != len(max_segments):
        raise ValueError(f"expected {len(max_segments)} segments, got {list(active)}")
    for a, m in zip(active, max_segments, strict=True):
        if not 0 < a <= m:
            raise ValueError(f"active segment width {a} outside (0, {m}]")
    if len(max_segments) == 1:
        return weight.narrow(dim, 0, active[0])
    parts, offset = [], 0
    for a, m in zip(active, max_segments, strict=True):
        parts.append(weight.narrow(dim, offset, a))
        offset += m
    return torch.cat(parts, dim=dim)
