"""Spatial down- and upsampling between stages (``down``, ``up``): spec, cost and latency inputs.

Frames are never resampled: ``down`` is a conv ``kernel_size`` with stride ``(1, 2, 2)``, ``up``
nearest upsampling by ``(1, 2, 2)`` then a conv ``kernel_size``
(:class:`~sned.supernet.blocks.modules.Downsample`, :class:`~sned.supernet.blocks.modules.Upsample`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sned.supernet.blocks.base import BlockKind, LatencyProbe, Slot, kernel_volume

KERNEL = (1, 3, 3)
STRIDE = (1, 2, 2)


class DownKind(BlockKind):
    """``down{s}.downsample``: stage ``s`` (side ``size``) to stage ``s + 1`` (``size // 2``). Spec: the width."""

    name = "down"
    kernel_size = KERNEL
    stride = STRIDE

    def build(self, slot: Slot) -> Any:
        from sned.supernet.blocks.modules import Downsample

        return Downsample(int(slot.c_out[0]), self.kernel_size, self.stride)

    def params(self, slot: Slot) -> np.ndarray:
        co = slot.c_out.astype(np.int64)
        return kernel_volume(self.kernel_size) * co * co + co

    def macs(self, slot: Slot) -> np.ndarray:
        co = slot.c_out.astype(np.float64)
        return kernel_volume(self.kernel_size) * co * co * slot.positions() / kernel_volume(self.stride)


class UpKind(BlockKind):
    """``up{s}.upsample``: stage ``s + 1`` (side ``size // 2``) to stage ``s`` (``size``). Spec: the width.

    Its slot's ``size`` is the side it writes (the stage it belongs to), so its conv runs there.
    """

    name = "up"
    kernel_size = KERNEL

    def build(self, slot: Slot) -> Any:
        from sned.supernet.blocks.modules import Upsample

        return Upsample(int(slot.c_out[0]), self.kernel_size)

    def params(self, slot: Slot) -> np.ndarray:
        co = slot.c_out.astype(np.int64)
        return kernel_volume(self.kernel_size) * co * co + co

    def macs(self, slot: Slot) -> np.ndarray:
        co = slot.c_out.astype(np.float64)
        return kernel_volume(self.kernel_size) * co * co * slot.positions()  # conv after upsampling, at size

    def latency_call(self, block: Any, key: Any, probe: LatencyProbe) -> Callable[[], Any]:
        x = probe.video(key.c_in, key.size // 2)  # the coarser stage's grid
        return lambda: block(x)


DOWN = DownKind()
UP = UpKind()
