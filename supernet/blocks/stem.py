"""The data-facing stem (``stem``): space-to-depth by ``patch_size``, then a conv to the first stage's width.

Its slot's ``c_in`` is the data channels times ``patch_size**2`` and its ``size`` the first stage's
side: the stem reads pixels at ``size * patch_size``
(:class:`~sned.supernet.blocks.modules.Stem`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sned.supernet.blocks.base import BlockKind, LatencyProbe, Slot, kernel_volume, position_feature_count

KERNEL = (1, 3, 3)


class StemKind(BlockKind):
    """Pixel unshuffle then conv ``kernel_size`` (plus the space's position features); block spec: the first stage's
    active width."""

    name = "stem"
    kernel_size = KERNEL

    def build(self, slot: Slot) -> Any:
        from sned.supernet.blocks.modules import Stem

        return Stem(slot.spec.unet_channels, int(slot.c_out[0]), slot.spec.patch_size, self.kernel_size,
                    position_frequencies=slot.spec.position_frequencies)

    def params(self, slot: Slot) -> np.ndarray:
        ci, co = slot.c_in.astype(np.int64), slot.c_out.astype(np.int64)
        features = position_feature_count(slot.spec.position_frequencies)
        return kernel_volume(self.kernel_size) * ci * co + co + features * co

    def macs(self, slot: Slot) -> np.ndarray:
        ci, co = slot.c_in.astype(np.float64), slot.c_out.astype(np.float64)
        features = position_feature_count(slot.spec.position_frequencies)
        once_per_clip = features * co * slot.size.astype(np.float64) ** 2  # shared by the frames
        return kernel_volume(self.kernel_size) * ci * co * slot.positions() + once_per_clip

    def latency_call(self, block: Any, key: Any, probe: LatencyProbe) -> Callable[[], Any]:
        x = probe.video(probe.spec.unet_channels, key.size * probe.spec.patch_size)
        return lambda: block(x)


STEM = StemKind()
