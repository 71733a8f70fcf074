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

("Attention" is the stage's ``attention_kind``: ``attn`` unless the YAML names another registered
block kind.) The same walk, written once in :meth:`SearchSpace.slots`, gives analytic params, FLOPs
and the latency-table keys of every block, vectorised over a population: each slot names its block
kind, and the kind (``sned.supernet.blocks``) owns the formulas. The ``space:`` section itself is
parsed by ``sned.supernet.space_spec`` (re-exported here).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sned.supernet.base.settings import check_keys
from sned.supernet.blocks import Slot, get_kind
from sned.supernet.space_spec import GROUPS, LatentSpec, SpaceError, SpaceSpec, StageSpec, parse_space_spec

Arch = dict[str, Any]

# ----------------------------------------------------------------------------- genes


@dataclass(frozen=True)
class Gene:
    """One integer gene: ``label`` in the nni declaration, its choices, and what it controls."""

    label: str
    choices: tuple[int, ...]
    stage: int = -1  # -1 for the resolution gene
    field: str = "res"  # "res" | "width" | "depth" | "attn"
    block: int = -1  # block index for attention genes


# ----------------------------------------------------------------------------- the space


class SearchSpace:
    """The elastic space of one experiment (see the module docstring for the arch format).

    Args:
        spec: the parsed ``space:`` section.
        source: where it came from (a YAML path), for messages.
    """

    def __init__(self, spec: SpaceSpec, source: str = "<spec>"):
        for s, st in enumerate(spec.stages):
            if st.attention:
                try:
                    get_kind(st.attention_kind)
                except SpaceError as exc:
                    raise SpaceError(f"space.stages[{s}].attention_kind: {exc}") from None
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
        if not spec["global_gate"]:  # and spaces without the res blocks' global gate
            del spec["global_gate"]
        if not spec["position_frequencies"]:  # or the stem's position features
            del spec["position_frequencies"]
        for stage in spec["stages"]:  # so do spaces with the default attention block
            if stage["attention_kind"] == "attn":
                del stage["attention_kind"]
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
        check_keys(arch, ("res", "stages"), "arch", error=SpaceError)
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
            check_keys(st, ("width", "depth", "attn"), where, error=SpaceError)
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
        tables share; ``sned.supernet.model`` builds its modules in the same order. It names each
        slot's kind; what a kind builds and costs is the kind's own (``sned.supernet.blocks``).
        """
        X = self._as_matrix(archs)
        V = self.values(X)
        n = len(X)
        spec = self.spec
        size0 = np.array([spec.unet_size(r) for r in V[:, 0]], dtype=np.int64)
        ones = np.ones(n, dtype=bool)
        widths = [V[:, idx["width"]] for idx in self._stage_index]
        depths = [V[:, idx["depth"]] for idx in self._stage_index]
        attn = [[V[:, g] for g in idx["attn"]] for idx in self._stage_index]
        full = lambda c: np.full(n, c, dtype=np.int64)  # noqa: E731
        cin_data = spec.unet_channels * spec.patch_size**2
        S = len(spec.stages)

        def slot(name, kind, active, c_in, c_out, size, segments=()) -> Slot:
            return Slot(name, kind, active, c_in, c_out, size, spec, segments)

        def stage_blocks(prefix: str, s: int, c_first: np.ndarray, segments_first: tuple) -> list[Slot]:
            st, size = spec.stages[s], size0 >> s
            blocks = []
            for b in range(max(st.depths)):
                active = depths[s] > b
                if b == 0:  # the stage's first block reads another width (or a skip concatenation)
                    blocks.append(slot(f"{prefix}{s}.block{b}.res", "res_proj", active, c_first, widths[s], size,
                                       segments_first))
                else:
                    blocks.append(slot(f"{prefix}{s}.block{b}.res", "res", active, widths[s], widths[s], size))
                if st.attention:
                    blocks.append(slot(f"{prefix}{s}.block{b}.attn", st.attention_kind, active & (attn[s][b] == 1),
                                       widths[s], widths[s], size))
            return blocks

        out = [slot("stem", "stem", ones, full(cin_data), widths[0], size0)]
        prev = widths[0]
        for s in range(S):
            out += stage_blocks("down", s, prev, ())
            prev = widths[s]
            if s < S - 1:
                out.append(slot(f"down{s}.downsample", "down", ones, widths[s], widths[s], size0 >> s))
        size_mid, w = size0 >> (S - 1), widths[-1]
        out.append(slot("mid.res0", "res", ones, w, w, size_mid))
        out.append(slot("mid.attn", "attn", ones, w, w, size_mid))
        out.append(slot("mid.res1", "res", ones, w, w, size_mid))
        below = w
        for s in reversed(range(S)):
            if s < S - 1:
                out.append(slot(f"up{s}.upsample", "up", ones, below, below, size0 >> s))
            out += stage_blocks("up", s, below + widths[s], (below, widths[s]))
            below = widths[s]
        out.append(slot("head", "head", ones, widths[0], full(cin_data), size0))
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
        params = np.full(len(X), self.fixed_params(), dtype=np.int64)
        flops = np.full(len(X), 2.0 * self._time_mlp_params(), dtype=np.float64)  # MLP MACs = params; a lookup is free
        for slot in self.slots(X):
            kind = get_kind(slot.kind)
            params += np.where(slot.active, kind.params(slot), 0)
            flops += np.where(slot.active, 2.0 * kind.macs(slot), 0.0)
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


__all__ = ["GROUPS", "Arch", "Gene", "SearchSpace", "Slot", "SpaceError", "SpaceSpec", "StageSpec", "LatentSpec",
           "arch_id", "arch_summary", "canonical_json", "experiment_path", "load_experiment", "load_space",
           "parse_space_spec"]
