"""Factorised space-time attention (``attn``): spec, cost and latency inputs.

The block (:class:`~sned.supernet.blocks.modules.AttentionBlock`): spatial self-attention over the
``h * w`` tokens of each frame, then temporal self-attention over the frames of each position with
a learned relative position bias (VDM). Each half is GroupNorm, a fused q|k|v projection without
bias and an output projection. Heads follow the width at the space's fixed ``head_dim``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sned.supernet.blocks.base import BlockKind, Slot
from sned.supernet.space_spec import SpaceSpec


class AttentionKind(BlockKind):
    """Space-time attention; block spec: the active width (``c_in == c_out``)."""

    name = "attn"

    def build(self, slot: Slot) -> Any:
        from sned.supernet.blocks.modules import AttentionBlock

        return AttentionBlock(int(slot.c_out[0]), slot.head_dim, slot.frames)

    def params(self, slot: Slot) -> np.ndarray:
        co = slot.c_out.astype(np.int64)
        heads = co // slot.head_dim
        one = 2 * co + 3 * co * co + co * co + co  # norm, qkv (no bias), out projection
        return 2 * one + (2 * slot.frames - 1) * heads  # spatial + temporal (+ relative position bias)

    def macs(self, slot: Slot) -> np.ndarray:
        co = slot.c_out.astype(np.float64)
        hw = slot.size.astype(np.float64) ** 2
        N = slot.positions()
        spatial = 4 * co * co * N + 2 * N * hw * co  # qkv + out, QK^T + AV over h*w tokens per frame
        temporal = 4 * co * co * N + 2 * N * slot.frames * co  # ... over frames per position
        return spatial + temporal

    def heads(self, width: int, spec: SpaceSpec) -> int:
        return width // spec.head_dim


ATTN = AttentionKind()
