"""What a block kind is: the :class:`Slot` it is given and the :class:`BlockKind` hooks it implements.

Torch-free: the search path computes params, FLOPs and latency-table keys from these hooks and must
not import torch. A kind's :meth:`BlockKind.build` and :meth:`BlockKind.latency_call` run on the
torch side and import what they need inside the method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sned.supernet.space_spec import SpaceSpec


def module_key(slot_name: str) -> str:
    """The ``nn.ModuleDict`` key of a slot's module: ``"down0.block1.res"`` -> ``"down0_block1_res"``.

    Keys cannot contain dots; checkpoints store these keys, so this mapping is frozen.
    """
    return slot_name.replace(".", "_")


def kernel_volume(kernel_size: Sequence[int]) -> int:
    """Weights per input-output channel pair of a conv kernel: ``(1, 3, 3)`` -> 9."""
    return math.prod(kernel_size)


def position_feature_count(frequencies: int) -> int:
    """Fourier position features of a stem with ``position_frequencies = K``: cos and sin of the
    ``2K(K + 1)`` integer wave vectors with ``0 < max(|kx|, |ky|) <= K``, one of each ``+-k`` pair."""
    return 4 * frequencies * (frequencies + 1)


def same_padding(kernel_size: Sequence[int]) -> tuple[int, ...]:
    """The padding that keeps an odd kernel's output the size of its input: ``(1, 3, 3)`` -> ``(0, 1, 1)``."""
    return tuple(k // 2 for k in kernel_size)


@dataclass
class Slot:
    """One block position of the max network, with its active shape for every arch of a population.

    All arrays have shape ``(n,)``. ``kind`` names a registered :class:`BlockKind`.
    ``segments`` splits ``c_in`` into the concatenated inputs (decoder block 0 reads [up, skip]).

    ``size`` is the spatial side of the feature grid of the stage the slot belongs to: stage ``s``
    runs at ``size0 >> s`` (``size0``: the resolution after the stem's patching), the mid blocks at
    the last stage's side. It is the input side of every block except two that change the grid:
    ``stem`` reads pixels at ``size * patch_size`` and ``up{s}.upsample`` reads stage ``s + 1`` at
    ``size // 2`` (and writes ``size``). Each kind's FLOPs and latency inputs say how it reads it.
    """

    name: str
    kind: str
    active: np.ndarray
    c_in: np.ndarray
    c_out: np.ndarray
    size: np.ndarray
    spec: SpaceSpec  # the space's constants: frames, head_dim, time_embed_dim, patch_size, ...
    segments: tuple[np.ndarray, ...] = ()

    def __post_init__(self):
        if not self.segments:
            self.segments = (self.c_in,)

    @property
    def frames(self) -> int:
        """Frames every block sees (the UNet's, after a latent autoencoder's temporal factor)."""
        return self.spec.unet_frames

    @property
    def head_dim(self) -> int:
        return self.spec.head_dim

    def positions(self) -> np.ndarray:
        """Space-time positions of the stage's grid, ``frames * size**2``, ``(n,)`` float64."""
        return self.frames * self.size.astype(np.float64) ** 2


@dataclass(frozen=True)
class LatencyProbe:
    """Random inputs for timing one block in a latency table (given by ``predictors.latency_measure``).

    ``randn(*shape)`` draws a tensor on the measuring device in its dtype; ``temb`` is a timestep
    embedding ``(batch, time_embed_dim)`` there.
    """

    spec: SpaceSpec
    batch: int
    randn: Callable[..., Any]
    temb: Any

    def video(self, channels: int, side: int) -> Any:
        """A random video batch ``(batch, channels, frames, side, side)``."""
        return self.randn(self.batch, channels, self.spec.unet_frames, side, side)


class BlockKind:
    """A kind of UNet block: how the supernet builds it at a slot and what it costs there.

    A kind is registered under :attr:`name` (``sned.supernet.blocks.register_kind``); a slot of the
    space's walk names its kind, and the space (params, FLOPs), the supernet (modules, per-arch
    block specs) and latency tables (keys, timed inputs) all go through these hooks. Hooks that
    take a :class:`Slot` see every arch of a population at once and return ``(n,)`` arrays.

    Required hooks: :meth:`build`, :meth:`params`, :meth:`macs`. Optional hooks (defaults suit a
    block that maps ``(b, c, f, h, w)`` to the same shape and is specified by its width):
    :meth:`block_spec`, :meth:`latency_key`, :meth:`latency_call`, :meth:`heads`.

    The contracts that keep a kind exact:

    - the parameter count of ``build(slot).extract(block_spec(slot, i))`` equals ``params(slot)[i]``;
    - ``extract(spec)(x, ...) == module(x, ..., spec=spec)`` (an :class:`~sned.supernet.blocks.modules.ElasticBlock`
      subclass gets this by writing its math once in ``compute``);
    - :meth:`params` and :meth:`macs` are numpy only, and :meth:`build` imports torch lazily, so
      the search path (which imports every registered kind) stays torch-free.

    A kind used at a stage's optional attention position (``attention_kind`` in the YAML) is called
    as ``block(x, use_temporal=...)`` and must return ``x``'s shape; ``use_temporal=False`` means
    the frames are independent images (it must not mix them).

    Example (a channel MLP on every position; see tests/supernet/test_blocks.py for the whole
    file: module, kind, YAML, exact params, extraction and latency rows)::

        class TokenMLPKind(BlockKind):
            name = "token_mlp"

            def build(self, slot):
                from my_blocks_torch import TokenMLP  # torch, imported only when a supernet is built
                return TokenMLP(int(slot.c_out[0]), ratio=2)

            def params(self, slot):
                c = slot.c_out.astype(np.int64)
                return 2 * c + (c * 2 * c + 2 * c) + (2 * c * c + c)  # norm, fc1, fc2

            def macs(self, slot):
                c = slot.c_out.astype(np.float64)
                return 4 * c * c * slot.positions()

        register_kind(TokenMLPKind())
    """

    name: str = ""

    # ------------------------------------------------------------------ required

    def build(self, slot: Slot) -> Any:
        """The elastic ``nn.Module`` for ``slot`` at its max shape (``slot`` holds one arch, the largest).

        The module takes its active shape as a ``spec=`` argument (``forward(x, ..., spec=...)``)
        and has ``extract(spec)`` returning a plain module with copies of the active weights.
        """
        raise NotImplementedError(f"block kind {self.name!r} does not implement build()")

    def params(self, slot: Slot) -> np.ndarray:
        """Exact parameter count of the extracted block for every arch, ``(n,)`` int64."""
        raise NotImplementedError(f"block kind {self.name!r} does not implement params()")

    def macs(self, slot: Slot) -> np.ndarray:
        """Multiply-accumulates of one forward at batch 1 for every arch, ``(n,)`` float64.

        Count convolutions, linear layers and attention matmuls; leave norms, activations and
        additions out (as fvcore does). FLOPs are twice this.
        """
        raise NotImplementedError(f"block kind {self.name!r} does not implement macs()")

    # ------------------------------------------------------------------ optional

    def block_spec(self, slot: Slot, i: int = 0) -> Hashable:
        """The ``spec`` the block's module is called with for arch ``i`` (default: the active output width)."""
        return int(slot.c_out[i])

    def latency_key(self, slot: Slot) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(c_in, c_out, c_skip, size)`` of the latency-table key for every arch.

        The default: the slot's widths and side; ``c_skip`` is the width of the concatenated
        segments after the first (a decoder block 0's skip input; 0 elsewhere).
        """
        c_skip = sum(slot.segments[1:]) if len(slot.segments) > 1 else np.zeros_like(slot.c_in)
        return slot.c_in, slot.c_out, c_skip, slot.size

    def latency_call(self, block: Any, key: Any, probe: LatencyProbe) -> Callable[[], Any]:
        """A zero-argument callable that runs the extracted ``block`` once on random inputs for ``key``.

        ``key`` is the table row's key (``kind, c_in, c_out, c_skip, size``). The default feeds one
        video ``(batch, c_in, frames, size, size)``. Work inside the returned callable is timed.
        """
        x = probe.video(key.c_in, key.size)
        return lambda: block(x)

    def heads(self, width: int, spec: SpaceSpec) -> int:
        """Attention heads at ``width`` (the latency table's descriptive ``heads`` column; default 0)."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


__all__ = ["BlockKind", "LatencyProbe", "Slot", "kernel_volume", "module_key", "same_padding"]
