"""The sampled-quality table: reading, writing and checking it, and a synthetic stand-in.

One row per (arch id, resolution, pass) as ``sned evaluate`` writes it (see DESIGN.md, "Sampled-quality
table"): the arch JSON, FVD and KVD, the held-out denoising loss (``loss``; tables written before it
have no such column: a ``--target loss`` fit refuses them, a resumed run leaves their rows NaN), the number of videos, the feature extractor, seed,
checkpoint hash and sampler steps, as parquet with the table's ``sned`` metadata (space hash,
noise-floor tau) as JSON under the parquet key ``sned``. Torch-free; pandas and pyarrow are imported
only inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.files import atomic_path, file_sha256
from sned.supernet.space import SearchSpace, SpaceError, arch_id, canonical_json

if TYPE_CHECKING:  # pandas is only needed to read tables and fit, never to predict
    import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("arch_id", "arch", "res", "fvd", "kvd", "n_videos", "extractor",
                                     "extractor_sha256", "checkpoint_sha256", "seed", "steps")
# numeric columns that describe how a row was measured, not how good the subnet is: never a target
BOOKKEEPING_COLUMNS: tuple[str, ...] = ("res", "n_videos", "seed", "steps")


def check_table_space(meta: Mapping[str, Any], space: SearchSpace, where: str = "FVD table") -> None:
    """Refuse a table whose recorded ``space_hash`` is not ``space.hash`` (naming both hashes)."""
    if meta.get("space_hash") != space.hash:
        raise UserError(f"{where} belongs to space {meta.get('space')!r} (hash {meta.get('space_hash')}), "
                        f"not to space {space.name!r} (hash {space.hash}); use the experiment it was made for")


def read_fvd_table(path: str | Path, space: SearchSpace | None = None, target: str = "fvd"
                   ) -> tuple[pd.DataFrame, dict]:
    """Read a sampled-FVD table (parquet, written by ``sned evaluate``) and its ``sned`` metadata.

    Args:
        path: the parquet file.
        space: if given, the table's ``space_hash`` must be this space's hash.
        target: the column the caller uses as the quality (``fvd``, ``loss``, ...): where the table
            has it, its values must be finite; FVD need not be finite unless it is the target.
            (:func:`target_values` names a target the table lacks.)

    Returns:
        ``(df, meta)``: one row per (arch id, resolution, checkpoint) with at least
        :data:`REQUIRED_COLUMNS`; ``meta`` is the JSON under the parquet key ``sned`` (``space_hash``,
        ``space``, optionally ``noise_floor_tau``) plus ``sha256``, the hash of the file's bytes.

    Raises:
        UserError: a missing or corrupt file, missing metadata or columns (named), an empty table,
            non-finite values of ``target``, or (with ``space``) a table of another space.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserError(f"FVD table not found: {path}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    raw_meta = (table.schema.metadata or {}).get(b"sned")
    if raw_meta is None:
        raise UserError(f"{path}: no 'sned' metadata (space_hash, space); was it written by sned evaluate?")
    try:
        meta = json.loads(raw_meta)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: the 'sned' metadata is not valid JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("space_hash"), str):
        raise UserError(f"{path}: the 'sned' metadata has no space_hash")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"{path}: missing columns {missing}; a sampled-FVD table needs {list(REQUIRED_COLUMNS)}")
    if table.num_rows == 0:
        raise UserError(f"{path}: the table is empty (no evaluated archs)")
    df = table.to_pandas()
    for col in ("res", "fvd", "kvd", "n_videos", "seed", "steps"):
        if not np.issubdtype(df[col].dtype, np.number):
            raise UserError(f"{path}: column {col!r} has dtype {df[col].dtype}; expected numbers")
    if target in df.columns and np.issubdtype(df[target].dtype, np.number):
        bad = ~np.isfinite(df[target].to_numpy(dtype=np.float64))
        if bad.any():
            ids = df.loc[bad, "arch_id"].astype(str).tolist()[:3]
            raise UserError(f"{path}: {int(bad.sum())} rows have a non-finite {target} (e.g. arch ids {ids}); "
                            "re-evaluate or drop them")
    meta["sha256"] = file_sha256(path)
    if space is not None:
        check_table_space(meta, space, str(path))
    return df, meta


def write_fvd_table(df: pd.DataFrame, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write a sampled-FVD table atomically, with ``meta`` as JSON under the parquet key ``sned``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"cannot write {path}: missing columns {missing}")
    table = pa.Table.from_pandas(df, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b"sned"] = json.dumps(dict(meta), sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def synthetic_fvd_table(space: SearchSpace, n: int, rng: np.random.Generator, noise: float = 2.0,
                        res: int | None = None) -> tuple[pd.DataFrame, dict]:
    """A clearly labelled synthetic sampled-FVD table with a known smooth FVD (tests, benchmarks, demos).

    ``fvd = 300 - 40 ln(params / 1e5) + 10 log2(res / min_res) + N(0, noise^2)`` over ``n`` distinct
    archs sampled uniformly from ``space`` (at ``res``, or over all resolutions). A second noise draw
    (another "seed") gives the table's ``noise_floor_tau``: the Kendall tau between the two passes.
    ``extractor`` is ``"synthetic"`` so that no one mistakes it for a measured table.
    """
    import pandas as pd
    from scipy.stats import kendalltau

    limit = space.count(res)
    if not 2 <= n <= limit:
        raise UserError(f"synthetic table: n = {n} must be between 2 and the {limit:,} archs of the space")
    X = np.zeros((0, space.n_genes), dtype=np.int64)
    while len(X) < n:  # distinct archs: resample until enough unique rows
        X = np.unique(np.concatenate([X, space.sample_genes(rng, 2 * n, res)]), axis=0)
    X = X[rng.permutation(len(X))[:n]]
    archs = space.decode(X)
    resolutions = space.values(X)[:, 0]
    clean = (300.0 - 40.0 * np.log(space.params(X) / 1e5)
             + 10.0 * np.log2(resolutions / min(space.resolutions)))
    fvd = clean + rng.normal(0.0, noise, n)
    second = clean + rng.normal(0.0, noise, n)
    df = pd.DataFrame({
        "arch_id": [arch_id(a) for a in archs],
        "arch": [canonical_json(a) for a in archs],
        "res": resolutions.astype(np.int64),
        "fvd": fvd,
        "kvd": fvd / 1000.0,  # synthetic: KVD is not modelled, only kept proportional
        "n_videos": np.full(n, 64, dtype=np.int64),
        "extractor": "synthetic",
        "extractor_sha256": "",
        "checkpoint_sha256": "synthetic",
        "seed": np.zeros(n, dtype=np.int64),
        "steps": np.zeros(n, dtype=np.int64),
    })
    meta = {"space_hash": space.hash, "space": space.name, "synthetic": True,
            "formula": f"300 - 40 ln(params/1e5) + 10 log2(res/{min(space.resolutions)}) + N(0, {noise}^2)",
            "noise_floor_tau": float(kendalltau(fvd, second).statistic)}
    return df, meta


def select_rows(table: pd.DataFrame, checkpoint: str | None) -> pd.DataFrame:
    """The rows of one checkpoint and one feature extractor (FVDs of different ones do not compare).

    Args:
        table: a sampled-quality table.
        checkpoint: a ``checkpoint_sha256`` (or prefix) to keep; None accepts a table of one checkpoint.

    Returns:
        The selected rows, re-indexed from 0.

    Raises:
        UserError: missing columns, no rows for ``checkpoint``, several checkpoints without a choice,
            several feature extractors, or no rows at all.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"FVD table: missing columns {missing}")
    df = table
    checkpoints = sorted(df["checkpoint_sha256"].astype(str).unique())
    if checkpoint is not None:
        df = df[df["checkpoint_sha256"].astype(str).str.startswith(checkpoint)]
        if df.empty:
            raise UserError(f"no rows for checkpoint {checkpoint!r}; the table has {[c[:12] for c in checkpoints]}")
    elif len(checkpoints) > 1:
        raise SettingError("checkpoint", "the table mixes {n} checkpoints {found}; choose one with {checkpoint}",
                           n=len(checkpoints), found=[c[:12] for c in checkpoints])
    extractors = sorted(df["extractor"].astype(str).unique())
    if len(extractors) > 1:
        raise UserError(f"the table mixes feature extractors {extractors}; FVDs of different extractors do not "
                        "compare")
    if df.empty:
        raise UserError("FVD table: no rows to fit")
    return df.reset_index(drop=True)


def table_genes(space: SearchSpace, df: pd.DataFrame) -> np.ndarray:
    """The canonical gene matrix ``(n, n_genes)`` of the table's ``arch`` column.

    Raises:
        UserError: a row whose arch is not JSON, not an arch of ``space``, or disagrees with its ``res``.
    """
    archs = []
    for i, (text, res) in enumerate(zip(df["arch"], df["res"], strict=True)):
        try:
            arch = json.loads(text)
            space.validate(arch)
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"FVD table row {i}: arch is not valid JSON ({exc})") from None
        except SpaceError as exc:
            raise UserError(f"FVD table row {i}: arch is not in space {space.name!r} (hash {space.hash}): "
                            f"{exc}") from None
        if int(arch["res"]) != int(res):
            raise UserError(f"FVD table row {i}: res column {int(res)} != the arch's res {arch['res']}")
        archs.append(arch)
    return space.encode(archs)


def target_values(df: pd.DataFrame, target: str) -> np.ndarray:
    """The finite float64 values of the numeric column ``target`` (what a predictor learns).

    Args:
        df: a sampled-quality table.
        target: a numeric column other than ``res``: ``fvd``, ``kvd``, or the held-out denoising ``loss``
            once the table has one.

    Raises:
        UserError: ``target`` is not a numeric column of the table (the message lists those that are),
            or some of its values are missing or non-finite (naming how many, and a few arch ids).
    """
    valid = numeric_columns(df)
    if target not in valid:
        what = "not numeric" if target in df.columns else "not in the table"
        raise UserError(f"target column {target!r} is {what}; valid: {valid}")
    values = df[target].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        ids = df.loc[bad, "arch_id"].astype(str).tolist()[:3]
        raise UserError(f"target column {target!r}: {int(bad.sum())} of {len(values)} rows are missing or "
                        f"non-finite (e.g. arch ids {ids}); re-evaluate or drop them")
    return values


def noise_floor_of(meta: Mapping[str, Any], column: str = "fvd") -> tuple[float | None, dict[str, float]]:
    """The recorded two-pass Kendall tau of ``column`` (pooled, and ``{res: tau}``); ``(None, {})`` if none.

    Reads ``noise_floor.columns[column]`` (``sned evaluate`` records fvd and loss), and for ``fvd``
    falls back to the older keys ``noise_floor_tau`` / ``noise_floor.tau_res``.
    """
    noise = meta.get("noise_floor") if isinstance(meta.get("noise_floor"), Mapping) else {}
    entry = (noise.get("columns") or {}).get(column) if isinstance(noise.get("columns"), Mapping) else None
    if isinstance(entry, Mapping):
        return entry.get("tau"), dict(entry.get("tau_res") or {})
    if column == "fvd":
        return meta.get("noise_floor_tau"), dict(noise.get("tau_res") or {})
    return None, {}


def numeric_columns(df: pd.DataFrame) -> list[str]:
    """The table's numeric columns a predictor may learn, in order: all but the :data:`BOOKKEEPING_COLUMNS`."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return [str(c) for c in df.columns if c not in BOOKKEEPING_COLUMNS and is_numeric_dtype(df[c])
            and not is_bool_dtype(df[c])]


__all__ = ["BOOKKEEPING_COLUMNS", "REQUIRED_COLUMNS", "check_table_space",
           "file_sha256", "noise_floor_of", "numeric_columns", "read_fvd_table", "select_rows", "synthetic_fvd_table", "table_genes", "target_values",
           "write_fvd_table"]
