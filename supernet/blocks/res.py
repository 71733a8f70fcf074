"""Residual blocks (``res``, and ``res_proj`` with a 1x1x1 skip projection): spec, cost, latency inputs.

The block (:class:`~sned.supernet.blocks.modules.ResBlock`): GroupNorm-SiLU-conv ``spatial_kernel``,
timestep scale-shift, (with the space's ``global_gate``, a per-frame channel gate from the
frame's mean features), conv ``spatial_kernel``, then a temporal GroupNorm-SiLU-conv
``temporal_kernel`` added on top (factorised space-time). ``res_proj`` is the first block of every
stage, whose input comes from another width or a skip concatenation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sned.supernet.blocks.base import BlockKind, LatencyProbe, Slot, kernel_volume

SPATIAL_KERNEL = (1, 3, 3)
TEMPORAL_KERNEL = (3, 1, 1)
PROJECTION_KERNEL = (1, 1, 1)


class ResKind(BlockKind):
    """A residual block; block spec ``(input segment widths, output width)``.

    Args:
        name: ``res`` or ``res_proj``.
        use_projection: the block has a ``PROJECTION_KERNEL`` skip conv.
    """

    spatial_kernel = SPATIAL_KERNEL
    temporal_kernel = TEMPORAL_KERNEL
    projection_kernel = PROJECTION_KERNEL

    def __init__(self, name: str, use_projection: bool):
        self.name = name
        self.use_projection = use_projection

    def build(self, slot: Slot) -> Any:
        from sned.supernet.blocks.modules import ResBlock

        segments = tuple(int(s[0]) for s in slot.segments)
        return ResBlock(segments, int(slot.c_out[0]), slot.spec.time_embed_dim, use_projection=self.use_projection,
                        spatial_kernel=self.spatial_kernel, temporal_kernel=self.temporal_kernel,
                        projection_kernel=self.projection_kernel, global_gate=slot.spec.global_gate)

    def block_spec(self, slot: Slot, i: int = 0) -> tuple[tuple[int, ...], int]:
        return tuple(int(s[i]) for s in slot.segments), int(slot.c_out[i])

    def params(self, slot: Slot) -> np.ndarray:
        ci, co = slot.c_in.astype(np.int64), slot.c_out.astype(np.int64)
        temb = slot.spec.time_embed_dim
        ks, kt = kernel_volume(self.spatial_kernel), kernel_volume(self.temporal_kernel)
        p = 2 * ci + ks * ci * co + co  # norm1, spatial conv1
        p += temb * 2 * co + 2 * co  # time-embedding scale and shift
        p += 2 * co + ks * co * co + co  # norm2, spatial conv2
        p += 2 * co + kt * co * co + co  # temporal norm, temporal conv
        if slot.spec.global_gate:
            p += co * co + co
        if self.use_projection:
            p += kernel_volume(self.projection_kernel) * ci * co + co
        return p

    def macs(self, slot: Slot) -> np.ndarray:
        ci, co = slot.c_in.astype(np.float64), slot.c_out.astype(np.float64)
        N = slot.positions()
        ks, kt = kernel_volume(self.spatial_kernel), kernel_volume(self.temporal_kernel)
        m = ks * ci * co * N + ks * co * co * N + kt * co * co * N + slot.spec.time_embed_dim * 2 * co
        if slot.spec.global_gate:  # one co x co product per frame (the pooling and scaling are not MACs)
            m += slot.frames * co * co
        if self.use_projection:
            m += kernel_volume(self.projection_kernel) * ci * co * N
        return m

    def latency_call(self, block: Any, key: Any, probe: LatencyProbe) -> Callable[[], Any]:
        temb = probe.temb
        if key.c_skip:  # decoder block 0: the skip concatenation is part of its cost
            import torch

            up, skip = probe.video(key.c_in - key.c_skip, key.size), probe.video(key.c_skip, key.size)
            return lambda: block(torch.cat([up, skip], dim=1), temb)
        x = probe.video(key.c_in, key.size)
        return lambda: block(x, temb)


RES = ResKind("res", use_projection=False)
RES_PROJ = ResKind("res_proj", use_projection=True)
