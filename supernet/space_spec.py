"""The ``space:`` section of an experiment YAML, parsed strictly into frozen dataclasses (torch-free).

This is the bottom of the space's layering: it imports only the floor (``sned.supernet.base``), so the block-kind registry
(``sned.supernet.blocks``) can speak of a :class:`SpaceSpec` and ``sned.supernet.space`` can build
a :class:`~sned.supernet.space.SearchSpace` on both. Unknown keys and wrong types are errors that
name the field, the value and the valid set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sned.supernet.base.errors import SpaceError
from sned.supernet.base.settings import check_keys, load_section

GROUPS = 32  # GroupNorm groups; every width is a multiple of this.

# ----------------------------------------------------------------------------- spec (YAML)


@dataclass(frozen=True)
class StageSpec:
    """One UNet stage: its width and depth choices, and whether its blocks may carry attention.

    With ``attention`` every block of the stage may carry an optional block after its res block,
    switched per block by the arch's ``attn`` flags. ``attention_kind`` names the registered block
    kind that fills that position (``sned.supernet.blocks``; default ``attn``, the space-time attention).
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    attention: bool = False
    attention_kind: str = "attn"


@dataclass(frozen=True)
class LatentSpec:
    """A video autoencoder in front of the UNet: its latent channels and down-sampling factors."""

    channels: int = 4
    spatial_factor: int = 8
    temporal_factor: int = 4


@dataclass(frozen=True)
class SpaceSpec:
    """The ``space:`` section of an experiment YAML (strict: unknown keys and wrong types are errors)."""

    resolutions: tuple[int, ...]  # pixel resolutions (square), the elastic input size
    frames: int  # pixel frames of a clip
    stages: tuple[StageSpec, ...]
    channels: int = 3  # data channels of a pixel-space video
    patch_size: int = 1  # space-to-depth factor of the stem (pixel shuffle in the head)
    head_dim: int = 32  # attention head size; heads = width / head_dim
    pixel_channels: int = 0  # width of the head's full-resolution pixel path (0: none); see blocks/head.py
    global_gate: bool = False  # res blocks gate their channels by the clip's mean features; see blocks/res.py
    position_frequencies: int = 0  # Fourier position features of the stem's grid, up to this many cycles (0: none)
    time_embed_dim: int = 128  # width of the timestep MLP (fixed part)
    classes: int = 0  # class labels of a class-conditional UNet (0: unconditional); see blocks.modules.TimeEmbedding
    latent: LatentSpec | None = None
    name: str = "space"

    @property
    def unet_channels(self) -> int:
        return self.latent.channels if self.latent else self.channels

    @property
    def unet_frames(self) -> int:
        return self.frames // self.latent.temporal_factor if self.latent else self.frames

    def unet_size(self, res: int) -> int:
        """Spatial size of the first UNet stage for a pixel resolution."""
        factor = self.patch_size * (self.latent.spatial_factor if self.latent else 1)
        return res // factor


def _check_keys(section: Mapping, cls: type, where: str) -> None:
    check_keys(section, [f.name for f in fields(cls)], where, error=SpaceError)


def _int_tuple(value: Any, where: str) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise SpaceError(f"{where} = {value!r}: expected a non-empty list of positive integers")
    if len(set(items)) != len(items):
        raise SpaceError(f"{where} = {value!r}: choices must be distinct")
    return tuple(sorted(items))


def _positive_int(section: Mapping, key: str, where: str, default: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpaceError(f"{where}.{key} = {value!r}: expected a positive integer")
    return value


def _positive(key: str, value: int, where: str) -> int:
    if value <= 0:
        raise SpaceError(f"{where} = {value!r}: expected a positive integer")
    return value


def _bool(section: Mapping, key: str, where: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise SpaceError(f"{where}.{key} = {value!r}: expected true or false")
    return value


def _non_negative_int(section: Mapping, key: str, where: str, default: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SpaceError(f"{where}.{key} = {value!r}: expected an integer >= 0")
    return value


def parse_space_spec(section: Mapping, name: str = "space") -> SpaceSpec:
    """Build a :class:`SpaceSpec` from the ``space:`` mapping of an experiment YAML."""
    if not isinstance(section, Mapping):
        raise SpaceError(f"space: expected a mapping, got {type(section).__name__}")
    _check_keys(section, SpaceSpec, "space")
    for required in ("resolutions", "frames", "stages"):
        if required not in section:
            raise SpaceError(f"space.{required} is missing")
    stages_raw = section["stages"]
    if not isinstance(stages_raw, list) or not stages_raw:
        raise SpaceError(f"space.stages = {stages_raw!r}: expected a non-empty list of stages")
    head_dim = _positive_int(section, "head_dim", "space", 32)
    stages = []
    for i, raw in enumerate(stages_raw):
        where = f"space.stages[{i}]"
        if not isinstance(raw, Mapping):
            raise SpaceError(f"{where}: expected a mapping with widths, depths, attention[, attention_kind]")
        _check_keys(raw, StageSpec, where)
        widths = _int_tuple(raw.get("widths"), f"{where}.widths")
        for w in widths:
            if w % GROUPS:
                raise SpaceError(f"{where}.widths: {w} is not a multiple of {GROUPS} (GroupNorm keeps {GROUPS} groups)")
        attention = raw.get("attention", False)
        if not isinstance(attention, bool):
            raise SpaceError(f"{where}.attention = {attention!r}: expected true or false")
        attention_kind = raw.get("attention_kind", "attn")
        if not isinstance(attention_kind, str) or not attention_kind:
            raise SpaceError(f"{where}.attention_kind = {attention_kind!r}: expected the name of a block kind")
        if "attention_kind" in raw and not attention:
            raise SpaceError(f"{where}.attention_kind = {attention_kind!r} needs attention: true "
                             f"(it names the block kind of the stage's optional attention positions)")
        if attention:
            for w in widths:
                if w % head_dim:
                    raise SpaceError(f"{where}.widths: {w} is not a multiple of head_dim {head_dim}")
        stages.append(StageSpec(widths, _int_tuple(raw.get("depths"), f"{where}.depths"), attention, attention_kind))
    latent = section.get("latent")
    if latent is not None:
        if not isinstance(latent, Mapping):
            raise SpaceError("space.latent: expected a mapping with channels, spatial_factor, temporal_factor")
        latent = load_section(LatentSpec, latent, "space.latent", error=SpaceError, check=_positive)
    spec = SpaceSpec(
        resolutions=_int_tuple(section["resolutions"], "space.resolutions"),
        frames=_positive_int(section, "frames", "space", 8),
        stages=tuple(stages),
        channels=_positive_int(section, "channels", "space", 3),
        patch_size=_positive_int(section, "patch_size", "space", 1),
        head_dim=head_dim,
        pixel_channels=_non_negative_int(section, "pixel_channels", "space", 0),
        global_gate=_bool(section, "global_gate", "space", False),
        position_frequencies=_non_negative_int(section, "position_frequencies", "space", 0),
        time_embed_dim=_positive_int(section, "time_embed_dim", "space", 128),
        classes=_non_negative_int(section, "classes", "space", 0),
        latent=latent,
        name=str(section.get("name", name)),
    )
    down = 2 ** (len(spec.stages) - 1)
    factor = spec.patch_size * (spec.latent.spatial_factor if spec.latent else 1) * down
    for res in spec.resolutions:
        if res % factor:
            raise SpaceError(f"space.resolutions: {res} is not divisible by {factor} "
                             f"(patch x latent factor x 2^(stages-1))")
    if spec.latent and spec.frames % spec.latent.temporal_factor:
        raise SpaceError(f"space.frames = {spec.frames} is not divisible by latent.temporal_factor "
                         f"{spec.latent.temporal_factor}")
    return spec

