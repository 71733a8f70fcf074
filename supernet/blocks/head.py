"""The data-facing head (``head``): conv to a patch of data channels, depth-to-space, a pixel path.

GroupNorm-SiLU-conv ``kernel_size`` from the first stage's width to ``data channels * patch_size**2``,
pixel shuffle by ``patch_size``; with ``pixel_channels > 0`` a fixed-size full-resolution path
reads the network's input (:class:`~sned.supernet.blocks.modules.Head`). Its slot's ``c_in`` is the
first stage's width, ``c_out`` the data channels times ``patch_size**2``, ``size`` the first stage's side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sned.supernet.blocks.base import BlockKind, LatencyProbe, Slot, kernel_volume

KERNEL = (1, 3, 3)


class HeadKind(BlockKind):
    """The output head; block spec: the first stage's active width (its input)."""

    name = "head"
    kernel_size = KERNEL

    def build(self, slot: Slot) -> Any:
        from sned.supernet.blocks.modules import Head

        spec = slot.spec
        return Head(int(slot.c_in[0]), spec.unet_channels, spec.patch_size, spec.time_embed_dim, spec.pixel_channels,
                    self.kernel_size)

    def block_spec(self, slot: Slot, i: int = 0) -> int:
        return int(slot.c_in[i])

    def params(self, slot: Slot) -> np.ndarray:
        ci, co = slot.c_in.astype(np.int64), slot.c_out.astype(np.int64)
        spec, k = slot.spec, kernel_volume(self.kernel_size)
        temb = spec.time_embed_dim
        P, D = spec.pixel_channels, co // spec.patch_size**2
        pixel = (k * D * P + P) + (temb * 2 * P + 2 * P) + (k * (P + D) * D + D) if P else 0
        return 2 * ci + k * ci * co + co + pixel

    def macs(self, slot: Slot) -> np.ndarray:
        ci, co = slot.c_in.astype(np.float64), slot.c_out.astype(np.float64)
        spec, k = slot.spec, kernel_volume(self.kernel_size)
        N = slot.positions()
        P, D = spec.pixel_channels, co // spec.patch_size**2
        pixels = N * spec.patch_size**2  # the pixel path runs at full resolution
        pixel = k * D * P * pixels + spec.time_embed_dim * 2 * P + k * (P + D) * D * pixels if P else 0
        return k * ci * co * N + pixel

    def latency_call(self, block: Any, key: Any, probe: LatencyProbe) -> Callable[[], Any]:
        # the patch features and the full-resolution input of the pixel path
        side = key.size * probe.spec.patch_size
        h, x = probe.video(key.c_in, key.size), probe.video(probe.spec.unet_channels, side)
        temb = probe.temb
        return lambda: block(h, x, temb)


HEAD = HeadKind()
