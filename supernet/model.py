"""The elastic factorised space-time 3D UNet (VDM/LVDM style) and its extracted static subnets.

``Supernet(space)`` holds one set of max-size weights. ``net(x, t, arch)`` runs the subnet ``arch``
by slicing them; nothing about the active subnet is stored on the modules, so several archs can be
run (sandwich rule) or profiled concurrently. ``net.extract(arch)`` returns a :class:`SubnetUNet`
with copied weights and the same forward math; ``net.bind(arch)`` a thin module view.

The block layout comes from :meth:`sned.supernet.space.SearchSpace.slots`, the same walk that
gives analytic params, FLOPs and latency-table keys; each slot's block kind
(``sned.supernet.blocks``) builds its module and gives its spec for an arch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from sned.supernet.blocks import get_kind, module_key
from sned.supernet.blocks.modules import TimeEmbedding
from sned.supernet.space import Arch, SearchSpace, canonical_json

Plan = dict[str, Any]  # slot name -> block spec, for the active blocks only


def unet_forward(block: Callable[[str], Callable | None], x: torch.Tensor, temb: torch.Tensor,
                 max_depths: tuple[int, ...], use_temporal: bool = True) -> torch.Tensor:
    """The UNet's data flow, shared by the supernet and extracted subnets.

    ``block(name)`` returns the callable for an active block, or None for a skipped one.
    ``use_temporal=False`` bypasses every temporal conv and temporal attention, so the frames are
    denoised as independent images (the image pre-training stage).
    """
    n_stages = len(max_depths)

    def run_stage(prefix: str, s: int, h: torch.Tensor) -> torch.Tensor:
        for b in range(max_depths[s]):
            res = block(f"{prefix}{s}.block{b}.res")
            if res is None:  # elastic depth keeps the first d blocks
                break
            h = res(h, temb, use_temporal=use_temporal)
            attn = block(f"{prefix}{s}.block{b}.attn")
            if attn is not None:
                h = attn(h, use_temporal=use_temporal)
        return h

    h = block("stem")(x)
    skips = []
    for s in range(n_stages):
        h = run_stage("down", s, h)
        skips.append(h)
        if s < n_stages - 1:
            h = block(f"down{s}.downsample")(h)
    h = block("mid.res0")(h, temb, use_temporal=use_temporal)
    h = block("mid.attn")(h, use_temporal=use_temporal)
    h = block("mid.res1")(h, temb, use_temporal=use_temporal)
    for s in reversed(range(n_stages)):
        if s < n_stages - 1:
            h = block(f"up{s}.upsample")(h)
        h = run_stage("up", s, torch.cat([h, skips[s]], dim=1))  # block 0 slices [up | skip] separately
    return block("head")(h, x, temb)


class Supernet(nn.Module):
    """The weight-sharing supernet of a search space.

    Args:
        space: the search space (``load_space("tiny")``).

    Example::

        net = Supernet(load_space("tiny"))
        arch = net.space.sample(np.random.default_rng(0), res=64)
        eps = net(torch.randn(2, 3, 8, 64, 64), torch.tensor([10.0, 500.0]), arch)
    """

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        spec = space.spec
        self.max_depths = tuple(max(st.depths) for st in spec.stages)
        self.time_embed = TimeEmbedding(spec.time_embed_dim, classes=spec.classes)
        largest = space.slots(space.largest(space.resolutions[-1]))  # every slot active, at its max shape
        self.blocks = nn.ModuleDict({module_key(slot.name): get_kind(slot.kind).build(slot) for slot in largest})
        self._plan = functools.lru_cache(maxsize=4096)(self._make_plan)

    # ------------------------------------------------------------------ arch -> per-block specs

    def _make_plan(self, arch_json: str) -> Plan:
        arch = json.loads(arch_json)
        plan: Plan = {}
        for slot in self.space.slots([arch]):
            if slot.active[0]:
                plan[slot.name] = get_kind(slot.kind).block_spec(slot)
        return plan

    def plan(self, arch: Arch) -> Plan:
        """The spec of every active block of ``arch`` (validated; cached per arch)."""
        return self._plan(canonical_json(self.space.validate(arch)))

    def check_input(self, x: torch.Tensor, arch: Arch) -> None:
        spec = self.space.spec
        side = spec.unet_size(arch["res"]) * spec.patch_size
        expected = (spec.unet_channels, spec.unet_frames, side, side)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected input (b, c, f, h, w) with (c, f, h, w) = {expected} for res "
                             f"{arch['res']}, got {tuple(x.shape)}")

    # ------------------------------------------------------------------ forward, extract, bind

    def forward(self, x: torch.Tensor, t: torch.Tensor, arch: Arch, use_temporal: bool = True,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the diffusion target for ``x`` ``(b, c, f, h, w)`` at timesteps ``t`` ``(b,)`` with ``arch``.

        ``use_temporal=False`` skips the temporal layers (frames become independent images).
        ``labels`` ``(b,)``: class indices of a class-conditional space (``space.spec.classes`` or
        None: the null label, i.e. unconditional).
        """
        self.check_input(x, arch)
        plan = self.plan(arch)

        def block(name: str) -> Callable | None:
            spec = plan.get(name)
            return None if spec is None else functools.partial(self.blocks[module_key(name)], spec=spec)

        return unet_forward(block, x, self.time_embed(t, labels), self.max_depths, use_temporal)

    def extract(self, arch: Arch) -> SubnetUNet:
        """A plain static module with copies of ``arch``'s weights; ``extract(arch)(x, t) == net(x, t, arch)``."""
        plan = self.plan(arch)
        blocks = {module_key(name): self.blocks[module_key(name)].extract(spec) for name, spec in plan.items()}
        spec = self.space.spec
        time_embed = TimeEmbedding(spec.time_embed_dim, classes=spec.classes).to(next(self.parameters()).device)
        time_embed.load_state_dict(self.time_embed.state_dict())
        return SubnetUNet(self.space.validate(arch), blocks, time_embed, self.max_depths)

    def bind(self, arch: Arch) -> BoundSubnet:
        """A module view ``m(x, t)`` of one arch that shares the supernet's weights (for profilers)."""
        return BoundSubnet(self, self.space.validate(arch))


class SubnetUNet(nn.Module):
    """A static subnet: only the active blocks, each a plain module; ``forward(x, t[, labels=...])``."""

    def __init__(self, arch: Arch, blocks: Mapping[str, nn.Module], time_embed: TimeEmbedding,
                 max_depths: tuple[int, ...]):
        super().__init__()
        self.arch = arch
        self.max_depths = max_depths
        self.time_embed = time_embed
        self.blocks = nn.ModuleDict(dict(blocks))

    def forward(self, x: torch.Tensor, t: torch.Tensor, use_temporal: bool = True,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        def block(name: str) -> nn.Module | None:
            key = module_key(name)
            return self.blocks[key] if key in self.blocks else None

        return unet_forward(block, x, self.time_embed(t, labels), self.max_depths, use_temporal)


class BoundSubnet(nn.Module):
    """``supernet`` bound to one immutable arch (no copy)."""

    def __init__(self, supernet: Supernet, arch: Arch):
        super().__init__()
        self.supernet = supernet
        self.arch = arch

    def forward(self, x: torch.Tensor, t: torch.Tensor, use_temporal: bool = True,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.supernet(x, t, self.arch, use_temporal, labels)
