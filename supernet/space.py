"""The elastic search space of a sned supernet: declaration, sampling, encoding and analytic cost.

Torch-free by design: the search path (``sned-search``, latency and accuracy predictors) lives on
this module and must answer in about a second. The space is declared with ``nni.mutable`` (this is
the one module of sned that imports nni; NNI is unmaintained since 2023, so it stays behind
:meth:`SearchSpace.declaration` and is imported lazily there, costing ~2 s only when used).

An **arch** is a plain JSON-serialisable mapping::

    {"res": 128, "stages": [{"width": 64, "depth": 2, "attn": [0, 0]},
                            {"width": 96, "depth": 1, "attn": [1]}, ...]}

``attn`` has one flag per active block (``depth`` entries); stages without attention carry zeros.
Optimisers and predictors see the **encoding** instead: one integer gene per choice (the index of
the chosen value), in the order of :attr:`SearchSpace.genes`. Attention genes of blocks beyond the
stage's depth are irrelevant and canonically 0.

The network a space describes (see ``sned.supernet.model``) is a factorised space-time 3D UNet:

    stem -> [stage s: depth x (ResBlock [+ Attention]) -> Down] -> mid (Res, Attention, Res)
         -> [stage s reversed: Up -> concat skip -> depth x (ResBlock [+ Attention])] -> head

The same walk, written once in :meth:`SearchSpace.slots`, gives analytic params, FLOPs and the
latency-table keys of every block, vectorised over a population.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

Arch = dict[str, Any]

GROUPS = 32  # GroupNorm groups; every width is a multiple of this.
BLOCK_KINDS = ("stem", "res", "res_proj", "attn", "down", "up", "head")


class SpaceError(ValueError):
    """An invalid space definition or arch; the message names the field, the value and the valid set."""


# ----------------------------------------------------------------------------- spec (YAML)


@dataclass(frozen=True)
class StageSpec:
    """One UNet stage: its width and depth choices, and whether its blocks may carry attention."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    attention: bool = False


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
    pixel_channels: int = 0  # width of the head's full-resolution pixel path (0: none); see blocks.Head
    time_embed_dim: int = 128  # width of the timestep MLP (fixed part)
    classes: int = 0  # class labels of a class-conditional UNet (0: unconditional); see blocks.TimeEmbedding
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
    valid = [f.name for f in fields(cls)]
    for key in section:
        if key not in valid:
            raise SpaceError(f"{where}: unknown key {key!r}; valid keys: {valid}")


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
            raise SpaceError(f"{where}: expected a mapping with widths, depths, attention")
        _check_keys(raw, StageSpec, where)
        widths = _int_tuple(raw.get("widths"), f"{where}.widths")
        for w in widths:
            if w % GROUPS:
                raise SpaceError(f"{where}.widths: {w} is not a multiple of {GROUPS} (GroupNorm keeps {GROUPS} groups)")
        attention = raw.get("attention", False)
        if not isinstance(attention, bool):
            raise SpaceError(f"{where}.attention = {attention!r}: expected true or false")
        if attention:
            for w in widths:
                if w % head_dim:
                    raise SpaceError(f"{where}.widths: {w} is not a multiple of head_dim {head_dim}")
        stages.append(StageSpec(widths, _int_tuple(raw.get("depths"), f"{where}.depths"), attention))
    latent = section.get("latent")
    if latent is not None:
        if not isinstance(latent, Mapping):
            raise SpaceError("space.latent: expected a mapping with channels, spatial_factor, temporal_factor")
        _check_keys(latent, LatentSpec, "space.latent")
        latent = LatentSpec(**{k: _positive_int(latent, k, "space.latent", getattr(LatentSpec, k)) for k in
                               ("channels", "spatial_factor", "temporal_factor")})
    spec = SpaceSpec(
        resolutions=_int_tuple(section["resolutions"], "space.resolutions"),
        frames=_positive_int(section, "frames", "space", 8),
        stages=tuple(stages),
        channels=_positive_int(section, "channels", "space", 3),
        patch_size=_positive_int(section, "patch_size", "space", 1),
        head_dim=head_dim,
        pixel_channels=_non_negative_int(section, "pixel_channels", "space", 0),
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


# ----------------------------------------------------------------------------- genes and slots


@dataclass(frozen=True)
class Gene:
    """One integer gene: ``label`` in the nni declaration, its choices, and what it controls."""

    label: str
    choices: tuple[int, ...]
    stage: int = -1  # -1 for the resolution gene
    field: str = "res"  # "res" | "width" | "depth" | "attn"
    block: int = -1  # block index for attention genes


@dataclass
class Slot:
    """One block position of the max network, with its active shape for every arch of a population.

    All arrays have shape ``(n,)``. ``kind`` is one of :data:`BLOCK_KINDS`. For ``attn`` blocks
    ``c_in == c_out`` is the width; for ``res_proj`` the block has a 1x1x1 skip projection (first
    block of every stage, where the input comes from another width or a skip concatenation).
    ``segments`` splits ``c_in`` into the concatenated inputs (decoder block 0 reads [up, skip]).
    """

    name: str
    kind: str
    active: np.ndarray
    c_in: np.ndarray
    c_out: np.ndarray
    size: np.ndarray  # spatial side of the block's input (output for "up")
    frames: int
    head_dim: int = 32
    segments: tuple[np.ndarray, ...] = ()
    patch_size: int = 1  # head only: depth-to-space factor
    pixel_channels: int = 0  # head only: width of its full-resolution pixel path

    def __post_init__(self):
        if not self.segments:
            self.segments = (self.c_in,)


# ----------------------------------------------------------------------------- the space


class SearchSpace:
    """The elastic space of one experiment (see the module docstring for the arch format).

    Args:
        spec: the parsed ``space:`` section.
        source: where it came from (a YAML path), for messages.
    """

    def __init__(self, spec: SpaceSpec, source: str = "<spec>"):
        self.spec = spec
        self.source = source
        self.name = spec.name
        self.resolutions = spec.resolutions
        self.frames = spec.frames
        self.genes: tuple[Gene, ...] = self._make_genes()
        self.n_genes = len(self.genes)
        self.upper = np.array([len(g.choices) - 1 for g in self.genes], dtype=np.int64)  # inclusive bounds
        self._values = [np.asarray(g.choices, dtype=np.int64) for g in self.genes]
        self._stage_index = self._make_stage_index()

    # ------------------------------------------------------------------ identity

    def to_dict(self) -> dict:
        spec = asdict(self.spec)
        if not spec["classes"]:  # unconditional spaces keep the hash they had before labels existed
            del spec["classes"]
        return spec

    @property
    def hash(self) -> str:
        """A short hash of the space definition; tables and predictors record it."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, resolutions={self.resolutions}, genes={self.n_genes}, size={self.size})"

    # ------------------------------------------------------------------ declaration (nni)

    def _make_genes(self) -> tuple[Gene, ...]:
        genes = [Gene("res", self.spec.resolutions)]
        for s, st in enumerate(self.spec.stages):
            genes.append(Gene(f"stage{s}.width", st.widths, s, "width"))
            genes.append(Gene(f"stage{s}.depth", st.depths, s, "depth"))
            if st.attention:
                for b in range(max(st.depths)):
                    genes.append(Gene(f"stage{s}.attn{b}", (0, 1), s, "attn", b))
        return tuple(genes)

    def _make_stage_index(self) -> list[dict[str, Any]]:
        index = []
        for s in range(len(self.spec.stages)):
            idx = {g.field: i for i, g in enumerate(self.genes) if g.stage == s and g.field != "attn"}
            idx["attn"] = [i for i, g in enumerate(self.genes) if g.stage == s and g.field == "attn"]
            index.append(idx)
        return index

    def declaration(self):
        """The space as an ``nni.mutable.MutableDict`` of ``Categorical`` choices, one per gene.

        Its ``simplify()`` labels and choices are exactly :attr:`genes`, so an nni sample
        (``{label: value}``) and a row of :meth:`encode` describe the same arch.
        """
        import nni.mutable as nm  # lazy: ~2 s of import, kept off the search path

        return nm.MutableDict({g.label: nm.Categorical(list(g.choices), label=g.label) for g in self.genes})

    # ------------------------------------------------------------------ arch <-> genes

    def _as_matrix(self, archs: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
        if isinstance(archs, np.ndarray):
            X = np.atleast_2d(archs).astype(np.int64, copy=False)
            if X.shape[1] != self.n_genes:
                raise SpaceError(f"gene matrix has {X.shape[1]} columns; space {self.name!r} has {self.n_genes}")
            return X
        if isinstance(archs, Mapping):
            archs = [archs]
        return self.encode(archs)

    def validate(self, arch: Arch) -> Arch:
        """Check an arch against the space; return it in canonical form.

        Raises:
            SpaceError: naming the field, the value and the valid choices.
        """
        if not isinstance(arch, Mapping):
            raise SpaceError(f"arch: expected a mapping like {{'res': ..., 'stages': [...]}}, got {type(arch).__name__}")
        unknown = set(arch) - {"res", "stages"}
        if unknown:
            raise SpaceError(f"arch: unknown keys {sorted(unknown)}; valid keys: ['res', 'stages']")
        if arch.get("res") not in self.spec.resolutions:
            raise SpaceError(f"arch.res = {arch.get('res')!r} is not in the space; valid: {list(self.spec.resolutions)}")
        stages = arch.get("stages")
        if not isinstance(stages, Sequence) or len(stages) != len(self.spec.stages):
            raise SpaceError(f"arch.stages: expected a list of {len(self.spec.stages)} stages, got {stages!r}")
        out = {"res": int(arch["res"]), "stages": []}
        for s, (st, spec) in enumerate(zip(stages, self.spec.stages, strict=True)):
            where = f"arch.stages[{s}]"
            if not isinstance(st, Mapping):
                raise SpaceError(f"{where}: expected a mapping with width, depth, attn")
            unknown = set(st) - {"width", "depth", "attn"}
            if unknown:
                raise SpaceError(f"{where}: unknown keys {sorted(unknown)}; valid keys: ['attn', 'depth', 'width']")
            if st.get("width") not in spec.widths:
                raise SpaceError(f"{where}.width = {st.get('width')!r} is not a valid choice; valid: {list(spec.widths)}")
            if st.get("depth") not in spec.depths:
                raise SpaceError(f"{where}.depth = {st.get('depth')!r} is not a valid choice; valid: {list(spec.depths)}")
            depth = int(st["depth"])
            attn = st.get("attn", [0] * depth)
            if not isinstance(attn, Sequence) or len(attn) != depth:
                raise SpaceError(f"{where}.attn = {attn!r}: expected {depth} flags (one per active block)")
            for b, flag in enumerate(attn):
                valid = (0, 1) if spec.attention else (0,)
                if flag not in valid or isinstance(flag, float):
                    raise SpaceError(f"{where}.attn[{b}] = {flag!r} is not a valid choice; valid: {list(valid)}"
                                     + ("" if spec.attention else " (this stage has no attention)"))
            out["stages"].append({"width": int(st["width"]), "depth": depth, "attn": [int(a) for a in attn]})
        return out

    def encode(self, archs: Arch | Iterable[Arch]) -> np.ndarray:
        """Archs -> canonical gene matrix ``(n, n_genes)`` of choice indices (validates each arch)."""
        if isinstance(archs, Mapping):
            archs = [archs]
        rows = []
        for arch in archs:
            arch = self.validate(arch)
            row = [self.spec.resolutions.index(arch["res"])]
            for st, spec in zip(arch["stages"], self.spec.stages, strict=True):
                row += [spec.widths.index(st["width"]), spec.depths.index(st["depth"])]
                if spec.attention:
                    row += list(st["attn"]) + [0] * (max(spec.depths) - st["depth"])
            rows.append(row)
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), self.n_genes)

    def canonical(self, X: np.ndarray) -> np.ndarray:
        """Zero the attention genes of blocks beyond each stage's depth (vectorised copy)."""
        X = np.array(X, dtype=np.int64, copy=True).reshape(-1, self.n_genes)
        for idx in self._stage_index:
            depth = self._values[idx["depth"]][X[:, idx["depth"]]]
            for b, g in enumerate(idx["attn"]):
                X[depth <= b, g] = 0
        return X

    def decode(self, X: np.ndarray) -> list[Arch]:
        """Gene matrix -> list of canonical archs."""
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        if X.shape[1] != self.n_genes or (X < 0).any() or (X > self.upper).any():
            raise SpaceError(f"gene matrix out of bounds for space {self.name!r}: expected {self.n_genes} "
                             f"columns with 0 <= gene <= {self.upper.tolist()}")
        V = self.values(X)
        archs = []
        for row in V.tolist():
            arch = {"res": row[0], "stages": []}
            for idx in self._stage_index:
                depth = row[idx["depth"]]
                attn = [row[g] for g in idx["attn"][:depth]] if idx["attn"] else [0] * depth
                arch["stages"].append({"width": row[idx["width"]], "depth": depth, "attn": attn})
            archs.append(arch)
        return archs

    def values(self, X: np.ndarray) -> np.ndarray:
        """Gene indices -> chosen values (ordinal encoding), same shape."""
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        return np.stack([v[X[:, i]] for i, v in enumerate(self._values)], axis=1)

    # ------------------------------------------------------------------ sampling and enumeration

    def _check_res(self, res: int | None) -> None:
        if res is not None and res not in self.spec.resolutions:
            raise SpaceError(f"resolution {res} is not in space {self.name!r}; valid: {list(self.spec.resolutions)}")

    def sample_genes(self, rng: np.random.Generator, n: int, res: int | None = None) -> np.ndarray:
        """``n`` canonical gene rows, each gene uniform over its choices (``res`` fixes the resolution)."""
        self._check_res(res)
        X = rng.integers(0, self.upper + 1, size=(n, self.n_genes))
        if res is not None:
            X[:, 0] = self.spec.resolutions.index(res)
        return self.canonical(X)

    def sample(self, rng: np.random.Generator, res: int | None = None) -> Arch:
        """One random arch (uniform per gene). ``rng`` is required: randomness is explicit."""
        return self.decode(self.sample_genes(rng, 1, res))[0]

    def largest(self, res: int) -> Arch:
        self._check_res(res)
        X = self.upper.copy()[None]
        X[0, 0] = self.spec.resolutions.index(res)
        return self.decode(self.canonical(X))[0]

    def smallest(self, res: int) -> Arch:
        self._check_res(res)
        X = np.zeros((1, self.n_genes), dtype=np.int64)
        X[0, 0] = self.spec.resolutions.index(res)
        return self.decode(X)[0]

    def _stage_options(self, s: int) -> list[list[int]]:
        """All canonical gene tuples of stage ``s`` (width, depth, attn...)."""
        spec, idx = self.spec.stages[s], self._stage_index[s]
        options = []
        for wi, di in itertools.product(range(len(spec.widths)), range(len(spec.depths))):
            if not idx["attn"]:
                options.append([wi, di])
                continue
            d = spec.depths[di]
            for flags in itertools.product((0, 1), repeat=d):
                options.append([wi, di, *flags, *([0] * (len(idx["attn"]) - d))])
        return options

    def count(self, res: int | None = None) -> int:
        """Number of distinct archs at ``res`` (or over all resolutions)."""
        self._check_res(res)
        per_res = int(np.prod([len(self._stage_options(s)) for s in range(len(self.spec.stages))], dtype=object))
        return per_res * (1 if res is not None else len(self.spec.resolutions))

    @property
    def size(self) -> int:
        return self.count()

    def enumerate(self, res: int | None = None, limit: int = 2_000_000) -> np.ndarray:
        """Every canonical gene row at ``res`` (or all resolutions). Refuses spaces above ``limit``."""
        n = self.count(res)
        if n > limit:
            raise SpaceError(f"space {self.name!r} has {n:,} archs{'' if res is None else f' at {res}'}; "
                             f"enumeration is limited to {limit:,}")
        res_idx = [self.spec.resolutions.index(res)] if res is not None else range(len(self.spec.resolutions))
        per_stage = [np.asarray(self._stage_options(s), dtype=np.int64) for s in range(len(self.spec.stages))]
        # cartesian product of stage option tables, vectorised
        combo = np.zeros((1, 0), dtype=np.int64)
        for table in per_stage:
            combo = np.concatenate([np.repeat(combo, len(table), axis=0), np.tile(table, (len(combo), 1))], axis=1)
        blocks = [np.concatenate([np.full((len(combo), 1), r), combo], axis=1) for r in res_idx]
        return np.concatenate(blocks, axis=0)

    # ------------------------------------------------------------------ the network walk

    def slots(self, archs: Arch | Sequence[Arch] | np.ndarray) -> list[Slot]:
        """Every block position of the max network with its active shape, vectorised over archs.

        This walk is the one description of the UNet's structure that params, FLOPs and latency
        tables share; ``sned.supernet.model`` builds its modules in the same order.
        """
        X = self._as_matrix(archs)
        V = self.values(X)
        n = len(X)
        spec = self.spec
        F = spec.unet_frames
        size0 = np.array([spec.unet_size(r) for r in V[:, 0]], dtype=np.int64)
        ones = np.ones(n, dtype=bool)
        widths = [V[:, idx["width"]] for idx in self._stage_index]
        depths = [V[:, idx["depth"]] for idx in self._stage_index]
        attn = [[V[:, g] for g in idx["attn"]] for idx in self._stage_index]
        full = lambda c: np.full(n, c, dtype=np.int64)  # noqa: E731
        cin_data = spec.unet_channels * spec.patch_size**2
        S = len(spec.stages)
        out: list[Slot] = [Slot("stem", "stem", ones, full(cin_data), widths[0], size0, F, spec.head_dim)]
        prev = widths[0]
        for s in range(S):
            size = size0 >> s
            for b in range(max(spec.stages[s].depths)):
                active = depths[s] > b
                kind = "res_proj" if b == 0 else "res"
                out.append(Slot(f"down{s}.block{b}.res", kind, active, prev if b == 0 else widths[s], widths[s],
                                size, F, spec.head_dim))
                if spec.stages[s].attention:
                    out.append(Slot(f"down{s}.block{b}.attn", "attn", active & (attn[s][b] == 1), widths[s],
                                    widths[s], size, F, spec.head_dim))
            prev = widths[s]
            if s < S - 1:
                out.append(Slot(f"down{s}.downsample", "down", ones, widths[s], widths[s], size, F, spec.head_dim))
        size_mid = size0 >> (S - 1)
        w = widths[-1]
        out.append(Slot("mid.res0", "res", ones, w, w, size_mid, F, spec.head_dim))
        out.append(Slot("mid.attn", "attn", ones, w, w, size_mid, F, spec.head_dim))
        out.append(Slot("mid.res1", "res", ones, w, w, size_mid, F, spec.head_dim))
        below = w
        for s in reversed(range(S)):
            size = size0 >> s
            if s < S - 1:
                out.append(Slot(f"up{s}.upsample", "up", ones, below, below, size, F, spec.head_dim))
            for b in range(max(spec.stages[s].depths)):
                active = depths[s] > b
                kind = "res_proj" if b == 0 else "res"
                c_in = below + widths[s] if b == 0 else widths[s]
                segments = (below, widths[s]) if b == 0 else (widths[s],)
                out.append(Slot(f"up{s}.block{b}.res", kind, active, c_in, widths[s], size, F, spec.head_dim,
                                segments))
                if spec.stages[s].attention:
                    out.append(Slot(f"up{s}.block{b}.attn", "attn", active & (attn[s][b] == 1), widths[s],
                                    widths[s], size, F, spec.head_dim))
            below = widths[s]
        out.append(Slot("head", "head", ones, widths[0], full(cin_data), size0, F, spec.head_dim,
                        patch_size=spec.patch_size, pixel_channels=spec.pixel_channels))
        return out

    # ------------------------------------------------------------------ analytic cost

    def fixed_params(self) -> int:
        """Parameters of the parts every subnet shares: the timestep MLP and the class embedding."""
        classes, T = self.spec.classes, self.spec.time_embed_dim
        return self._time_mlp_params() + ((classes + 1) * T if classes else 0)  # + the null label's row

    def _time_mlp_params(self) -> int:
        T = self.spec.time_embed_dim  # sinusoidal features -> Linear(T, T) -> SiLU -> Linear(T, T)
        return 2 * (T * T + T)

    def costs(self, archs: Arch | Sequence[Arch] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(params, flops)`` of each arch from one walk of the network (see :meth:`params`, :meth:`flops`)."""
        X = self._as_matrix(archs)
        temb = self.spec.time_embed_dim
        params = np.full(len(X), self.fixed_params(), dtype=np.int64)
        flops = np.full(len(X), 2.0 * self._time_mlp_params(), dtype=np.float64)  # MLP MACs = params; a lookup is free
        for slot in self.slots(X):
            params += np.where(slot.active, _slot_params(slot, temb), 0)
            flops += np.where(slot.active, 2.0 * _slot_macs(slot, temb), 0.0)
        return params, flops

    def params(self, archs: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
        """Exact parameter count of each arch's extracted subnet, ``(n,)`` int64."""
        return self.costs(archs)[0]

    def flops(self, archs: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
        """FLOPs (2 x multiply-accumulates) of one UNet forward at batch 1, ``(n,)`` float64.

        Counts convolutions, linear layers and attention matmuls; norms, activations and additions
        (well under 1 % here) are left out, as fvcore and most papers do.
        """
        return self.costs(archs)[1]

    def summary(self) -> dict:
        """Choices, size and the params/GFLOPs range per resolution (what ``sned space show`` prints)."""
        per_res = {}
        for res in self.resolutions:
            p, f = self.costs([self.smallest(res), self.largest(res)])
            per_res[res] = {"archs": self.count(res), "params_min": int(p[0]), "params_max": int(p[1]),
                            "gflops_min": float(f[0] / 1e9), "gflops_max": float(f[1] / 1e9),
                            "unet_input": [self.spec.unet_channels, self.spec.unet_frames,
                                           self.spec.unet_size(res), self.spec.unet_size(res)]}
        return {"name": self.name, "hash": self.hash, "source": self.source, "size": self.size,
                "genes": [{"label": g.label, "choices": list(g.choices)} for g in self.genes],
                "resolutions": per_res}


def _slot_params(slot: Slot, temb: int) -> np.ndarray:
    ci, co = slot.c_in.astype(np.int64), slot.c_out.astype(np.int64)
    if slot.kind in ("res", "res_proj"):
        p = 2 * ci + 9 * ci * co + co  # norm1, spatial conv1
        p += temb * 2 * co + 2 * co  # time-embedding scale and shift
        p += 2 * co + 9 * co * co + co  # norm2, spatial conv2
        p += 2 * co + 3 * co * co + co  # temporal norm, temporal conv
        if slot.kind == "res_proj":
            p += ci * co + co
        return p
    if slot.kind == "attn":
        heads = co // slot.head_dim
        one = 2 * co + 3 * co * co + co * co + co  # norm, qkv (no bias), out projection
        return 2 * one + (2 * slot.frames - 1) * heads  # spatial + temporal (+ relative position bias)
    if slot.kind in ("down", "up"):
        return 9 * co * co + co
    if slot.kind == "stem":
        return 9 * ci * co + co
    if slot.kind == "head":
        P, D = slot.pixel_channels, co // slot.patch_size**2
        pixel = (9 * D * P + P) + (temb * 2 * P + 2 * P) + (9 * (P + D) * D + D) if P else 0
        return 2 * ci + 9 * ci * co + co + pixel
    raise AssertionError(slot.kind)


def _slot_macs(slot: Slot, temb: int) -> np.ndarray:
    ci, co = slot.c_in.astype(np.float64), slot.c_out.astype(np.float64)
    hw = slot.size.astype(np.float64) ** 2
    N = slot.frames * hw  # positions of the block's input
    if slot.kind in ("res", "res_proj"):
        m = 9 * ci * co * N + 9 * co * co * N + 3 * co * co * N + temb * 2 * co
        if slot.kind == "res_proj":
            m += ci * co * N
        return m
    if slot.kind == "attn":
        spatial = 4 * co * co * N + 2 * N * hw * co  # qkv + out, QK^T + AV over h*w tokens per frame
        temporal = 4 * co * co * N + 2 * N * slot.frames * co  # ... over frames per position
        return spatial + temporal
    if slot.kind == "down":
        return 9 * co * co * N / 4
    if slot.kind == "up":
        return 9 * co * co * N  # conv after nearest upsampling, at the output size
    if slot.kind == "stem":
        return 9 * ci * co * N
    if slot.kind == "head":
        P, D = slot.pixel_channels, co // slot.patch_size**2
        pixels = N * slot.patch_size**2  # the pixel path runs at full resolution
        pixel = 9 * D * P * pixels + temb * 2 * P + 9 * (P + D) * D * pixels if P else 0
        return 9 * ci * co * N + pixel
    raise AssertionError(slot.kind)


# ----------------------------------------------------------------------------- loading


def experiment_path(name_or_path: str | Path) -> Path:
    """Resolve ``"tiny"`` to the bundled ``experiments/tiny.yaml``, or return an existing YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"experiment file not found: {p}")
        return p
    bundled = resources.files("sned.experiments") / f"{name_or_path}.yaml"
    if not bundled.is_file():
        names = sorted(f.name[:-5] for f in resources.files("sned.experiments").iterdir() if f.name.endswith(".yaml"))
        raise FileNotFoundError(f"unknown experiment {str(name_or_path)!r}; bundled: {names}, or pass a YAML path")
    return Path(str(bundled))


def load_experiment(name_or_path: str | Path) -> tuple[dict, Path]:
    """The whole experiment YAML as a mapping, and its path."""
    path = experiment_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, Mapping) or "space" not in data:
        raise SpaceError(f"{path}: expected a mapping with a 'space:' section")
    return dict(data), path


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load the search space of an experiment (a bundled name like ``"tiny"`` or a YAML path)."""
    data, path = load_experiment(name_or_path)
    name = str(data.get("name", path.stem))
    section = dict(data["space"])
    section.setdefault("name", name)
    return SearchSpace(parse_space_spec(section, name), source=str(path))


# ----------------------------------------------------------------------------- arch helpers


def canonical_json(arch: Arch) -> str:
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def arch_id(arch: Arch) -> str:
    """A stable short id: the first 10 hex digits of the sha1 of the arch's canonical JSON."""
    return hashlib.sha1(canonical_json(arch).encode()).hexdigest()[:10]


def arch_summary(arch: Arch) -> str:
    """A short human summary: ``128px 64x2|96x1a|128x2aa`` (width x depth, one ``a`` per attention)."""
    parts = [f"{st['width']}x{st['depth']}" + "a" * sum(st["attn"]) for st in arch["stages"]]
    return f"{arch['res']}px " + "|".join(parts)


__all__ = ["Arch", "Gene", "SearchSpace", "Slot", "SpaceError", "SpaceSpec", "StageSpec", "LatentSpec",
           "arch_id", "arch_summary", "canonical_json", "experiment_path", "load_experiment", "load_space",
           "parse_space_spec"]
