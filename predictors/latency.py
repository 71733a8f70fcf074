"""Per-block latency tables: the key scheme, loading, saving and vectorised prediction (torch-free).

A latency table holds, for one search space and one device, the measured time of every distinct
block shape the space can produce (see :meth:`sned.supernet.space.SearchSpace.slots`), plus the
fixed part every subnet shares (the timestep MLP). The predicted latency of a subnet, one UNet
forward at the table's batch size and the space's frame count, is

    predicted_ms = scale * (sum over active blocks of median_ms[key(block)] + fixed_ms) + offset_ms

where ``scale`` and ``offset_ms`` are the end-to-end correction fitted by ``sned latency validate``
(1 and 0 until then; ``offset_ms`` absorbs the per-call overhead of the UNet's Python control flow
that no single block sees, ``scale`` the systematic difference between a block timed alone and
the same block inside a network).

**Key scheme.** A block's cost is fixed by ``(kind, c_in, c_out, c_skip, size)`` within one space
(the frame count and head size are properties of the space, and heads = c_out / head_dim):

=========  ==================================================================================
kind       a registered block kind (``sned.supernet.blocks``), or ``time_embed``, the fixed part
c_in       input channels (for a decoder block 0: up-path + skip channels, concatenated)
c_out      output channels
c_skip     the skip segment of a decoder block 0's input (0 elsewhere): its row times the
           ``torch.cat`` of the skip concatenation together with the block
size       the block's :attr:`~sned.supernet.blocks.Slot.size`: the side of its stage's grid
=========  ==================================================================================

A block kind gives its key (``BlockKind.latency_key``; the default is the slot's widths and side).
Each key packs into one int64 (:func:`pack_keys`), so a population's look-up is one
``np.searchsorted`` per block slot over the sorted codes, never a per-row pandas ``.loc``. The
packed codes live in memory only (files store the kind's name), so they may change between versions.

**Statistic.** Every row stores the median, IQR and minimum of its timed samples; the table's
``meta["statistic"]`` (``median``, the default, or ``min``) says which one :meth:`LatencyTable.predict`
sums, and ``sned latency validate`` summarises end-to-end timings with the same one. ``min`` is for
machines shared with other busy processes: contention only ever slows a sample down, so the
minimum is far more repeatable there than the median (on a quiet machine the two nearly agree).

The file is parquet with exact column dtypes (:data:`COLUMNS`) and the provenance as JSON in the
parquet key-value metadata under ``sned.latency``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sned.supernet.base.errors import UserError
from sned.supernet.base.files import atomic_path
from sned.supernet.blocks import Slot, get_kind, kind_code, kind_names, kind_of_code
from sned.supernet.space import Arch, SearchSpace

FORMAT = "sned-latency-table"
FORMAT_VERSION = 1
META_KEY = b"sned.latency"
FIXED_KINDS: tuple[str, ...] = ("time_embed",)  # measured once per table, shared by every subnet

# column -> numpy dtype of the parquet file (checked on load; "str" is a pyarrow string column)
COLUMNS: dict[str, str] = {
    "device": "str", "dtype": "str", "batch": "int32", "frames": "int32",
    "kind": "str", "c_in": "int32", "c_out": "int32", "c_skip": "int32", "size": "int32", "heads": "int32",
    "median_ms": "float64", "iqr_ms": "float64", "min_ms": "float64", "repeats": "int32",
    "slot": "str",  # one block position that produces this key (where it was measured from)
}
KEY_COLUMNS: tuple[str, ...] = ("kind", "c_in", "c_out", "c_skip", "size")
STATISTICS: tuple[str, ...] = ("median", "min")  # meta["statistic"]: which column predict() sums

# Bit widths of the packed key: kind | c_in | c_out | c_skip | size (5 + 16 + 15 + 15 + 12 = 63 bits).
# Block kinds take codes from 0 up (registration order), the fixed kinds from the top down.
_KIND_BITS = 5
_BITS = (("c_in", 16), ("c_out", 15), ("c_skip", 15), ("size", 12))


def kinds() -> tuple[str, ...]:
    """Every kind a table row may have: the registered block kinds, then :data:`FIXED_KINDS`."""
    return (*kind_names(), *FIXED_KINDS)


def _kind_code(kind: str) -> int:
    if kind in FIXED_KINDS:
        return (1 << _KIND_BITS) - 1 - FIXED_KINDS.index(kind)
    code = kind_code(kind)
    if code >= (1 << _KIND_BITS) - len(FIXED_KINDS):
        raise UserError(f"block kind {kind!r} has code {code}: latency keys hold "
                        f"{(1 << _KIND_BITS) - len(FIXED_KINDS)} block kinds")
    return code


def _kind_name(code: int) -> str:
    top = (1 << _KIND_BITS) - 1
    return FIXED_KINDS[top - code] if code > top - len(FIXED_KINDS) else kind_of_code(code)


# ----------------------------------------------------------------------------- keys


@dataclass(frozen=True, order=True)
class BlockKey:
    """The shape of one block, as far as its latency is concerned (see the module docstring)."""

    kind: str
    c_in: int
    c_out: int
    c_skip: int
    size: int

    def __str__(self) -> str:
        skip = f" (skip {self.c_skip})" if self.c_skip else ""
        return f"{self.kind} c_in={self.c_in}{skip} c_out={self.c_out} size={self.size}"

    @property
    def code(self) -> int:
        return int(pack_keys(np.array([_kind_code(self.kind)]), np.array([self.c_in]), np.array([self.c_out]),
                             np.array([self.c_skip]), np.array([self.size]))[0])


def pack_keys(kind: np.ndarray, c_in: np.ndarray, c_out: np.ndarray, c_skip: np.ndarray,
              size: np.ndarray) -> np.ndarray:
    """Pack key columns (kind as its code: the block kind's registration index) into int64 codes, vectorised.

    Raises:
        UserError: a value does not fit its bit field (a space far beyond any UNet here).
    """
    code = np.asarray(kind, dtype=np.int64)
    if code.size and (code.min() < 0 or code.max() >= 1 << _KIND_BITS):
        raise UserError(f"latency key kind code {int(code.max())} does not fit the table's {_KIND_BITS}-bit field")
    for (name, bits), values in zip(_BITS, (c_in, c_out, c_skip, size), strict=True):
        values = np.asarray(values, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() >= 1 << bits):
            raise UserError(f"latency key {name}={int(values.max())} does not fit the table's {bits}-bit field")
        code = (code << bits) | values
    return code


def unpack_key(code: int) -> BlockKey:
    """The inverse of :func:`pack_keys` for one code (for messages)."""
    values = {}
    for name, bits in reversed(_BITS):
        values[name] = int(code & ((1 << bits) - 1))
        code >>= bits
    return BlockKey(_kind_name(int(code)), values["c_in"], values["c_out"], values["c_skip"], values["size"])


def slot_codes(slot: Slot) -> np.ndarray:
    """The packed key of ``slot`` for every arch of its population (its kind's ``latency_key``), ``(n,)`` int64."""
    c_in, c_out, c_skip, size = get_kind(slot.kind).latency_key(slot)
    return pack_keys(np.full(slot.c_in.shape, _kind_code(slot.kind)), c_in, c_out, c_skip, size)


def fixed_keys(space: SearchSpace) -> list[BlockKey]:
    """The keys of the fixed part (every subnet runs them once)."""
    T = space.spec.time_embed_dim
    return [BlockKey("time_embed", T, T, 0, 0)]


def covering_genes(space: SearchSpace, res: int, limit: int = 4096) -> np.ndarray:
    """Gene rows at ``res`` whose slots, together, show every block shape the space has at ``res``.

    A block's shape depends on the resolution and the widths of its own stage and at most one
    neighbouring stage (depth and attention only switch blocks on and off). So the rows use the
    maximum depth with every attention flag on (all slots active) and run over the width choices:
    their full cartesian product when it has at most ``limit`` rows, else every pair of widths of
    adjacent stages (the other stages at their first width), which covers the same shapes.
    """
    genes = space.genes
    base = np.zeros(space.n_genes, dtype=np.int64)
    base[0] = space.resolutions.index(res)
    width_cols = []
    for i, g in enumerate(genes):
        if g.field in ("depth", "attn"):
            base[i] = len(g.choices) - 1
        elif g.field == "width":
            width_cols.append(i)
    choices = [range(len(genes[i].choices)) for i in width_cols]
    if int(np.prod([len(c) for c in choices])) <= limit:
        combos = list(itertools.product(*choices))
    else:
        combos = []
        for s in range(len(width_cols) - 1):
            for a, b in itertools.product(choices[s], choices[s + 1]):
                combo = [0] * len(width_cols)
                combo[s], combo[s + 1] = a, b
                combos.append(tuple(combo))
    X = np.tile(base, (len(combos), 1))
    X[:, width_cols] = np.asarray(combos, dtype=np.int64).reshape(len(combos), len(width_cols))
    return X


def enumerate_keys(space: SearchSpace, resolutions: Sequence[int] | None = None) -> dict[BlockKey, tuple[str, Arch]]:
    """Every distinct block shape of ``space`` at ``resolutions`` (default: all), plus the fixed part.

    Returns:
        ``{key: (slot name, arch)}``: one block position and one arch that produce the key, so the
        block can be extracted from a supernet and measured. Ordered by resolution, then slot order.
        The fixed keys map to ``("time_embed", arch)``.
    """
    resolutions = tuple(space.resolutions if resolutions is None else resolutions)
    for res in resolutions:
        if res not in space.resolutions:
            raise UserError(f"resolution {res} is not in space {space.name!r}; valid: {list(space.resolutions)}")
    keys: dict[BlockKey, tuple[str, Arch]] = {}
    for res in resolutions:
        X = covering_genes(space, res)
        archs = None
        for slot in space.slots(X):
            codes = slot_codes(slot)
            _, first = np.unique(codes, return_index=True)
            for i in sorted(first):
                key = unpack_key(int(codes[i]))
                if key not in keys:
                    archs = archs if archs is not None else space.decode(X)
                    keys[key] = (slot.name, archs[i])
    first_arch = space.smallest(resolutions[0])
    for key in fixed_keys(space):
        keys[key] = ("time_embed", first_arch)
    return keys


# ----------------------------------------------------------------------------- the table


def _default_meta() -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "correction": {"scale": 1.0, "offset_ms": 0.0}}


class LatencyTable:
    """Measured per-block latencies of one space on one device, and the subnet latency they predict.

    Args:
        rows: a pandas DataFrame, one row per key: the :data:`KEY_COLUMNS` and ``median_ms`` are
            required; the other :data:`COLUMNS` are filled in where missing (``min_ms`` =
            ``median_ms``, ``device``/``dtype``/``batch`` from ``meta``, ...).
        meta: provenance (``space_hash``, ``device``, ``dtype``, ``batch``, ``threads``, ...); see
            ``sned latency show``. ``meta["correction"]`` holds ``scale`` and ``offset_ms``;
            ``meta["statistic"]`` (``median`` or ``min``) picks the column that is summed.
        path: where it was loaded from or saved to (for messages).

    Example::

        table = LatencyTable.load("experiments/tiny/latency-cpu.parquet")
        ms = table.predict(space, space.sample_genes(rng, 10_000))   # (10000,) ms, one UNet forward
    """

    def __init__(self, rows, meta: Mapping[str, Any], path: str | Path | None = None):
        self.meta: dict[str, Any] = {**_default_meta(), **dict(meta)}
        self.rows = _complete_rows(rows.reset_index(drop=True), self.meta)
        self.path = Path(path) if path is not None else None
        self._index()

    def _index(self) -> None:
        row_kinds = self.rows["kind"].to_numpy(dtype=object)
        unknown = sorted(set(row_kinds) - set(kinds()))
        if unknown:
            raise UserError(f"latency table {self._where()}: unknown block kinds {unknown}; valid: {list(kinds())} "
                            f"(register a kind of your own before loading its table)")
        codes_of = {k: _kind_code(k) for k in set(row_kinds)}
        kind_idx = np.array([codes_of[k] for k in row_kinds], dtype=np.int64)
        codes = pack_keys(kind_idx, *(self.rows[c].to_numpy(np.int64) for c in KEY_COLUMNS[1:]))
        order = np.argsort(codes, kind="stable")
        self._codes = codes[order]
        statistic = self.statistic
        if statistic not in STATISTICS:
            raise UserError(f"latency table {self._where()}: statistic {statistic!r}; valid: {list(STATISTICS)}")
        self._ms = self.rows[f"{statistic}_ms"].to_numpy(np.float64)[order]
        if len(self._codes) > 1 and (np.diff(self._codes) == 0).any():
            dup = unpack_key(int(self._codes[1:][np.diff(self._codes) == 0][0]))
            raise UserError(f"latency table {self._where()}: key {dup} appears twice")

    # ------------------------------------------------------------------ provenance

    @property
    def device(self) -> str:
        """The device label, e.g. ``cpu-amd-epyc`` or ``h200``."""
        return str(self.meta.get("device", "?"))

    @property
    def statistic(self) -> str:
        """Which per-row statistic :meth:`predict` sums: ``median`` or ``min``."""
        return str(self.meta.get("statistic", "median"))

    @property
    def space_hash(self) -> str | None:
        return self.meta.get("space_hash")

    @property
    def correction(self) -> tuple[float, float]:
        """``(scale, offset_ms)`` applied by :meth:`predict` on top of the block sum."""
        c = self.meta.get("correction") or {}
        return float(c.get("scale", 1.0)), float(c.get("offset_ms", 0.0))

    @property
    def decoder(self) -> dict[str, Any] | None:
        """A latent space's decoder entry (``sned latency measure`` of a latent experiment), or None."""
        return self.meta.get("decoder") or None

    def decoder_ms(self, res: int) -> float:
        """Measured ms of one decoder pass (one video, the table's batch) at pixel resolution ``res``; 0 without one.

        A latent model's video costs ``steps`` UNet forwards plus this fixed block.

        Raises:
            UserError: the table has a decoder entry, but not at ``res``.
        """
        entry = self.decoder
        if entry is None:
            return 0.0
        per_res = entry.get(f"{self.statistic}_ms") or entry["median_ms"]
        if str(int(res)) not in per_res:
            raise UserError(f"latency table {self._where()}: the decoder was measured at {sorted(map(int, per_res))} px, "
                            f"not at {res} px; measure it again with sned latency measure ... --res {res}")
        return float(per_res[str(int(res))])

    def _where(self) -> str:
        return str(self.path) if self.path else "<in memory>"

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"LatencyTable({self._where()!r}, device={self.device!r}, dtype={self.meta.get('dtype')!r}, "
                f"rows={len(self)}, space={self.meta.get('space')!r})")

    def has(self, keys: Sequence[BlockKey]) -> np.ndarray:
        """Which of ``keys`` have a row, ``(len(keys),)`` bool."""
        codes = np.array([k.code for k in keys], dtype=np.int64)
        idx = np.clip(np.searchsorted(self._codes, codes), 0, max(len(self._codes) - 1, 0))
        return (len(self._codes) > 0) & (self._codes[idx] == codes) if len(codes) else np.zeros(0, dtype=bool)

    def check_space(self, space: SearchSpace) -> None:
        """Refuse ``space`` unless the table was measured for it (same definition hash).

        Raises:
            UserError: naming both spaces and hashes.
        """
        if self.space_hash != space.hash:
            raise UserError(f"latency table {self._where()} was measured for space {self.meta.get('space')!r} "
                            f"(hash {self.space_hash}), not for space {space.name!r} (hash {space.hash}); "
                            f"measure one with: sned latency measure {space.name} --out TABLE")

    # ------------------------------------------------------------------ prediction

    def _lookup(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ms, found)`` for packed codes; ms is 0 where not found."""
        if not len(self._codes):
            return np.zeros(codes.shape), np.zeros(codes.shape, dtype=bool)
        idx = np.clip(np.searchsorted(self._codes, codes), 0, len(self._codes) - 1)
        found = self._codes[idx] == codes
        return np.where(found, self._ms[idx], 0.0), found

    def block_sum(self, space: SearchSpace, archs_or_genes: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
        """The uncorrected prediction: sum of the active blocks' entries plus the fixed part, ``(n,)`` ms.

        Raises:
            UserError: another space's table, or a block shape with no row (naming the block, its
                key, the arch's resolution and the table).
        """
        self.check_space(space)
        slots = space.slots(archs_or_genes)
        n = len(slots[0].active)
        fixed_codes = np.array([k.code for k in fixed_keys(space)], dtype=np.int64)
        fixed_ms, found = self._lookup(fixed_codes)
        if not found.all():
            key = fixed_keys(space)[int(np.argmin(found))]
            raise UserError(f"latency table {self._where()} has no row for the fixed part {key}; "
                            f"re-run sned latency measure")
        total = np.full(n, float(fixed_ms.sum()))
        for slot in slots:
            codes = slot_codes(slot)
            ms, found = self._lookup(codes)
            missing = slot.active & ~found
            if missing.any():
                i = int(np.argmax(missing))
                key = unpack_key(int(codes[i]))
                sizes = sorted({int(v) for v in self.rows["size"]} - {0})
                raise UserError(f"latency table {self._where()} ({self.device}) has no row for block {slot.name} "
                                f"with key {key} (arch {i} of {n}; the table covers spatial sizes {sizes}); "
                                f"measure it with sned latency measure {space.name} --res ... --out TABLE")
            total += np.where(slot.active, ms, 0.0)
        return total

    def predict(self, space: SearchSpace, archs_or_genes: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
        """Predicted ms of one UNet forward of each extracted subnet (table batch, the space's frames).

        Args:
            space: the space the table was measured for (checked by hash).
            archs_or_genes: one arch, a list of archs, or a gene matrix ``(n, space.n_genes)``.

        Returns:
            ``(n,)`` float64 ms: ``scale * block_sum + offset_ms`` (see :attr:`correction`).

        Raises:
            UserError: see :meth:`block_sum`.
        """
        scale, offset = self.correction
        return scale * self.block_sum(space, archs_or_genes) + offset

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path | None = None) -> Path:
        """Write the table as parquet (exact dtypes, metadata as JSON), atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path if path is not None else self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for col, dtype in COLUMNS.items():
            values = self.rows[col].to_numpy()
            arrays[col] = pa.array([str(v) for v in values], pa.string()) if dtype == "str" \
                else pa.array(values.astype(dtype))
        table = pa.table(arrays)
        table = table.replace_schema_metadata({META_KEY: json.dumps(self.meta, sort_keys=True).encode()})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | None = None) -> LatencyTable:
        """Read a table written by :meth:`save` (``space``, if given, must be the table's space).

        Raises:
            UserError: a missing, unreadable or corrupt file, a file that is not a sned latency
                table, wrong column dtypes, or another space's table.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise UserError(f"latency table not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"latency table {path} is not a readable parquet file ({first})") from None
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise UserError(f"{path} is not a sned latency table (no {META_KEY.decode()} metadata)")
        try:
            meta = json.loads(raw)
        except ValueError:
            raise UserError(f"latency table {path}: its metadata is not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"{path} is not a sned latency table (format {meta.get('format')!r})"
                            if isinstance(meta, dict) else f"latency table {path}: metadata is not a mapping")
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"latency table {path} has format version {meta.get('format_version')}; "
                            f"this sned reads version {FORMAT_VERSION}")
        for col, dtype in COLUMNS.items():
            if col not in table.column_names:
                raise UserError(f"latency table {path} lacks column {col!r}")
            expected = pa.string() if dtype == "str" else pa.from_numpy_dtype(np.dtype(dtype))
            if table.schema.field(col).type not in (expected, pa.large_string() if dtype == "str" else expected):
                raise UserError(f"latency table {path}: column {col!r} has type {table.schema.field(col).type}, "
                                f"expected {expected}")
        rows = table.select(list(COLUMNS)).to_pandas()
        for col in ("median_ms", "min_ms"):
            if not np.isfinite(rows[col].to_numpy()).all() or (rows[col].to_numpy() < 0).any():
                raise UserError(f"latency table {path} has non-finite or negative {col} values")
        out = cls(rows, meta, path)
        if space is not None:
            out.check_space(space)
        return out


def _complete_rows(rows, meta: Mapping[str, Any]):
    """Fill the optional columns of a row frame and cast every column to its :data:`COLUMNS` dtype."""
    for col in (*KEY_COLUMNS, "median_ms"):
        if col not in rows.columns:
            raise UserError(f"latency rows lack column {col!r}; required: {[*KEY_COLUMNS, 'median_ms']}")
    rows = rows.copy()
    defaults = {"device": meta.get("device", "?"), "dtype": meta.get("dtype", "fp32"), "batch": meta.get("batch", 1),
                "frames": meta.get("frames", 0), "heads": 0, "iqr_ms": 0.0, "repeats": 0,
                "slot": ""}
    for col in COLUMNS:
        if col not in rows.columns:
            if col == "min_ms":
                rows[col] = rows["median_ms"]
            else:
                rows[col] = defaults[col]
    return rows[list(COLUMNS)].astype({c: (object if d == "str" else d) for c, d in COLUMNS.items()})


def empty_rows():
    """An empty row frame with the table's columns and dtypes."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series([], dtype=object if d == "str" else d) for c, d in COLUMNS.items()})


__all__ = ["BlockKey", "COLUMNS", "STATISTICS", "FIXED_KINDS", "KEY_COLUMNS", "LatencyTable", "covering_genes",
           "empty_rows", "enumerate_keys", "fixed_keys", "kinds", "pack_keys", "slot_codes", "unpack_key"]
