"""The sampled-FVD table ``sned evaluate`` fills: rows by (arch id, resolution, checkpoint), the noise floor.

:class:`FvdTable` appends each finished trial's row and rewrites the parquet atomically
(:func:`~sned.predictors.quality_table.write_fvd_table`), never holding two rows for one key;
:func:`noise_floor_tau` is the rank agreement of two independent passes; :func:`plan_trials` the
trials still missing from a table.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sned.predictors.evaluate_select import NOISE_SEED_OFFSET, NoiseFloor, noise_floor_subset
from sned.predictors.evaluate_trials import LOSS_COLUMNS, TableKey, TrialSpec
from sned.supernet.base.errors import SettingError
from sned.supernet.space import Arch, SearchSpace

if TYPE_CHECKING:  # pandas loads lazily
    import pandas as pd

log = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("arch_id", "res", "checkpoint_sha256")
# Settings that change FVD values: a resumed table must have been made with the same ones.
COMPARABLE_SETTINGS: tuple[str, ...] = ("videos", "real_videos", "steps", "eta", "seed", "ema", "pca_dim", "extractor",
                                        "extractor_sha256", "held_out")
# The second pass's real and held-out clips: "disjoint" videos from the first pass's. Recorded in the
# settings; a resumed table whose second-pass rows were measured otherwise (before this existed: the
# same real set) measures them again.
NOISE_SUBSET = "disjoint-or-reseeded"
NOISE_COLUMNS: tuple[str, ...] = ("fvd", "loss")  # the columns whose two-pass Kendall tau is recorded


ROW_DTYPES: dict[str, str] = {
    "arch_id": "object", "arch": "object", "res": "int64", "fvd": "float64", "kvd": "float64",
    "inception_score": "float64",  # optional: NaN for I3D rows and absent from tables written before it
    **dict.fromkeys(LOSS_COLUMNS, "float64"),  # held-out loss; absent from tables written before it (NaN)
    "n_videos": "int64", "extractor": "object", "extractor_sha256": "object", "checkpoint_sha256": "object",
    "seed": "int64", "steps": "int64", "params": "int64", "gflops": "float64", "seconds": "float64",
    "generate_seconds": "float64", "features_seconds": "float64", "loss_seconds": "float64", "started_at": "float64",
    "worker": "object",
}
NOISE_ROW_FIELDS: tuple[str, ...] = ("arch_id", "res", "checkpoint_sha256", "fvd", "kvd", "loss", "seed", "seconds")


def empty_table() -> pd.DataFrame:
    """A table without rows, with the columns and dtypes of :data:`ROW_DTYPES`."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in ROW_DTYPES.items()})


def noise_floor_tau(table: pd.DataFrame, second: Iterable[Mapping[str, Any]], column: str = "fvd"
                    ) -> tuple[float | None, dict[int, float]]:
    """Kendall tau of ``column`` between the first pass (table rows) and the second (``second``), per resolution.

    Pairs match on (arch id, resolution, checkpoint); a pair with the value missing or non-finite
    on either side (e.g. ``loss`` of rows written before it existed) is left out, and so are
    resolutions with fewer than 2 pairs or a tau that is undefined (all values tied).

    Returns:
        ``(tau, tau_per_res)``: the mean of the per-resolution taus weighted by their pair counts
        (``None`` when no resolution qualifies), and ``{res: tau}``.
    """
    from scipy.stats import kendalltau

    if column not in table.columns:
        return None, {}
    first = {(str(a), int(r), str(c)): float(f) for a, r, c, f in
             zip(table["arch_id"], table["res"], table["checkpoint_sha256"], table[column], strict=True)
             if f is not None and math.isfinite(float(f))}
    pairs: dict[int, list[tuple[float, float]]] = {}
    for row in second:
        key = (str(row["arch_id"]), int(row["res"]), str(row["checkpoint_sha256"]))
        value = row.get(column)
        if key in first and value is not None and math.isfinite(float(value)):
            pairs.setdefault(key[1], []).append((first[key], float(value)))
    per_res: dict[int, float] = {}
    weights: dict[int, int] = {}
    for res, values in sorted(pairs.items()):
        if len(values) < 2:
            continue
        a, b = np.asarray(values).T
        tau = float(kendalltau(a, b).statistic)
        if math.isfinite(tau):
            per_res[res], weights[res] = tau, len(values)
    if not per_res:
        return None, {}
    total = sum(weights.values())
    return float(sum(per_res[r] * weights[r] for r in per_res) / total), per_res


class FvdTable:
    """The sampled-FVD table a run fills: finished keys, atomic appends, and the noise-floor pass.

    Every :meth:`add` rewrites the parquet through
    :func:`~sned.predictors.accuracy.write_fvd_table` (temp file + ``os.replace``), so a killed run
    leaves the table as it was after its last finished trial. A row whose key (arch id, resolution,
    checkpoint) is already there is dropped: the table never holds two rows for one key. Resuming a
    table whose second pass was measured under another ``noise_subset`` setting (before the second
    pass had its own real subset) drops those second-pass rows, so that they are measured again.

    Args:
        path: the parquet file.
        space: the search space (an existing table must belong to it).
        settings: the run's settings, stored under the ``evaluate`` metadata key; on resume the
            :data:`COMPARABLE_SETTINGS` must equal the table's.
        resume: continue an existing table (without it an existing file is an error).

    Raises:
        UserError: the table exists without ``resume``, belongs to another space, or was made with
            other settings.
    """

    def __init__(self, path: str | Path, space: SearchSpace, settings: Mapping[str, Any], resume: bool = False):
        from sned.predictors.accuracy import read_fvd_table

        self.path = Path(path)
        self.space = space
        if self.path.exists():
            if not resume:
                raise SettingError("resume", "{path} exists; pass {resume} to continue it, or choose another {out}",
                                   path=self.path)
            df, meta = read_fvd_table(self.path, space)
            meta.pop("sha256", None)
            old = meta.get("evaluate", {})
            differ = [k for k in COMPARABLE_SETTINGS if k in old and old[k] != settings.get(k)]
            if differ:
                was = ", ".join(f"{k}={old[k]!r}" for k in differ)
                now = ", ".join(f"{k}={settings.get(k)!r}" for k in differ)
                raise SettingError("out", "{path} was made with {was}, not {now}; FVDs would not compare: use the "
                                   "same settings or another {out}", path=self.path, was=was, now=now)
            self.df = df
            self.meta = dict(meta)
        else:
            self.df = empty_table()
            self.meta = {"space_hash": space.hash, "space": space.name}
        old_settings = self.meta.get("evaluate", {})
        self.meta["evaluate"] = dict(settings)
        noise = self.meta.get("noise_floor") or {}
        self.noise_rows: list[dict[str, Any]] = list(noise.get("rows", []))
        if self.noise_rows and old_settings.get("noise_subset") != settings.get("noise_subset"):
            log.warning("%s: dropping %d second-pass rows measured with noise_subset %r (now %r); they are "
                        "measured again", self.path, len(self.noise_rows), old_settings.get("noise_subset"),
                        settings.get("noise_subset"))
            self.noise_rows = []
            self.meta.pop("noise_floor", None)
            self.meta.pop("noise_floor_tau", None)

    def keys(self) -> set[TableKey]:
        """The (arch id, resolution, checkpoint) of every row."""
        return {(str(a), int(r), str(c)) for a, r, c in
                zip(self.df["arch_id"], self.df["res"], self.df["checkpoint_sha256"], strict=True)}

    def noise_keys(self) -> set[TableKey]:
        """The keys of the noise-floor pass already measured."""
        return {(str(r["arch_id"]), int(r["res"]), str(r["checkpoint_sha256"])) for r in self.noise_rows}

    def add(self, row: Mapping[str, Any], noise: bool = False) -> bool:
        """Append one trial's row (to the table, or to the noise-floor pass) and write atomically.

        Returns:
            Whether the row was new (a duplicate key is dropped and nothing is written).
        """
        import pandas as pd

        key = (str(row["arch_id"]), int(row["res"]), str(row["checkpoint_sha256"]))
        if noise:
            if key in self.noise_keys():
                return False
            self.noise_rows.append({k: row[k] for k in NOISE_ROW_FIELDS if k in row})
        else:
            if key in self.keys():
                return False
            new = pd.DataFrame([{c: row.get(c) for c in self.df.columns.union(list(row), sort=False)}])
            self.df = new if self.df.empty else pd.concat([self.df, new], ignore_index=True)
            self.df = self.df.astype({c: d for c, d in ROW_DTYPES.items() if c in self.df.columns})
        self._update_noise_meta()
        if not self.df.empty:  # a table without rows is not a table (read_fvd_table refuses it)
            self.write()
        return True

    def _update_noise_meta(self) -> None:
        if not self.noise_rows:
            return
        columns = {}
        for column in NOISE_COLUMNS:
            col_tau, col_res = noise_floor_tau(self.df, self.noise_rows, column)
            columns[column] = {"tau": col_tau, "tau_res": {str(r): t for r, t in col_res.items()}}
        tau, per_res = noise_floor_tau(self.df, self.noise_rows)
        self.meta["noise_floor"] = {"rows": self.noise_rows, "tau_res": {str(r): t for r, t in per_res.items()},
                                    "pairs": sum(1 for _ in self.noise_rows), "columns": columns}
        if tau is None:
            self.meta.pop("noise_floor_tau", None)
        else:
            self.meta["noise_floor_tau"] = tau

    def write(self) -> Path:
        """Write the table and its metadata atomically."""
        from sned.predictors.accuracy import write_fvd_table

        return write_fvd_table(self.df, self.path, self.meta)


def plan_trials(selection: Mapping[int, Sequence[Arch]], seed: int, checkpoint_sha256: str,
                done: set[TableKey], noise_floor: NoiseFloor = 0, noise_done: set[TableKey] | None = None
                ) -> list[TrialSpec]:
    """The trials still to run: selected subnets not in the table, then the noise-floor pass.

    Args:
        selection: ``{res: archs sorted by cost}`` (:func:`select_subnets`).
        seed: the generation seed of the main pass (the noise pass uses ``seed + 1``).
        checkpoint_sha256: the checkpoint being evaluated (part of every key).
        done: keys already in the table.
        noise_floor: subnets per resolution to evaluate a second time, or ``"all"``.
        noise_done: keys of the noise pass already measured.

    Returns:
        Main-pass trials first (so the table fills before the second pass starts), each key once.
    """
    noise_done = noise_done or set()
    main, second, seen = [], [], set()
    for res in sorted(selection):
        for arch in selection[res]:
            spec = TrialSpec.of(arch, seed)
            if spec.key(checkpoint_sha256) not in done and spec.key(checkpoint_sha256) not in seen:
                seen.add(spec.key(checkpoint_sha256))
                main.append(spec)
        for arch in noise_floor_subset(selection[res], noise_floor):
            spec = TrialSpec.of(arch, seed + NOISE_SEED_OFFSET, noise=True)
            if spec.key(checkpoint_sha256) not in noise_done:
                second.append(spec)
    return main + second


__all__ = ["COMPARABLE_SETTINGS", "KEY_COLUMNS", "NOISE_COLUMNS", "NOISE_ROW_FIELDS", "NOISE_SUBSET", "ROW_DTYPES",
           "FvdTable", "empty_table", "noise_floor_tau", "plan_trials"]
