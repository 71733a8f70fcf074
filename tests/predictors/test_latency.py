"""Tests for sned.predictors.latency (keys, tables, prediction), latency_measure and ``sned latency``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sned.predictors.latency import (
    COLUMNS,
    BlockKey,
    LatencyTable,
    covering_genes,
    enumerate_keys,
    pack_keys,
    slot_codes,
    unpack_key,
)
from sned.search.cli import main
from sned.supernet.base.errors import UserError
from sned.supernet.space import load_space

MICRO_YAML = """\
# a two-stage space small enough to measure in a test (16 px, 2 frames)
name: micro
space:
  resolutions: [8, 16]
  frames: 2
  channels: 3
  patch_size: 2
  head_dim: 32
  time_embed_dim: 32
  stages:
    - {widths: [32], depths: [1, 2], attention: false}
    - {widths: [32, 64], depths: [1], attention: true}
"""


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="module")
def micro_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "micro.yaml"
    path.write_text(MICRO_YAML)
    return path


def synthetic_table(space, rng: np.random.Generator, drop: BlockKey | None = None) -> LatencyTable:
    """A table with a random ms per key (no timing): prediction must be its exact sum."""
    rows = [{"kind": k.kind, "c_in": k.c_in, "c_out": k.c_out, "c_skip": k.c_skip, "size": k.size,
             "median_ms": float(rng.uniform(0.1, 5.0)), "slot": slot}
            for k, (slot, _) in enumerate_keys(space).items() if k != drop]
    return LatencyTable(pd.DataFrame(rows), {"space": space.name, "space_hash": space.hash, "device": "cpu-test",
                                             "resolutions": list(space.resolutions)})


# ----------------------------------------------------------------------------- keys


@pytest.mark.parametrize("name", ["tiny", "pixel-1.6b", "latent"])
def test_enumerated_keys_cover_every_active_slot_of_random_archs(name):
    space = load_space(name)
    keys = enumerate_keys(space)
    codes = {k.code for k in keys}
    X = space.sample_genes(np.random.default_rng(1), 3000)
    X = np.concatenate([X, space.encode([space.largest(r) for r in space.resolutions]
                                        + [space.smallest(r) for r in space.resolutions])])
    for slot in space.slots(X):
        used = set(slot_codes(slot)[slot.active].tolist())
        assert used <= codes, (slot.name, [str(unpack_key(c)) for c in used - codes][:3])
    # every enumerated block key is reachable (no phantom shapes to measure)
    reachable = set()
    for res in space.resolutions:
        for slot in space.slots(covering_genes(space, res)):
            reachable |= set(slot_codes(slot).tolist())
    assert {k.code for k in keys if k.kind != "time_embed"} == reachable


@pytest.mark.parametrize("name", ["tiny", "latent"])
def test_pairwise_covering_gives_the_same_keys_as_the_full_width_product(name):
    space = load_space(name)
    for res in space.resolutions:
        full = {int(c) for s in space.slots(covering_genes(space, res)) for c in slot_codes(s)}
        pairs = {int(c) for s in space.slots(covering_genes(space, res, limit=1)) for c in slot_codes(s)}
        assert full == pairs
        assert len(covering_genes(space, res, limit=1)) < len(covering_genes(space, res))


def test_key_packing_round_trips_and_rejects_values_that_do_not_fit():
    key = BlockKey("res_proj", 3840, 1920, 1920, 256)
    assert unpack_key(key.code) == key
    codes = pack_keys(np.array([1, 2]), np.array([64, 96]), np.array([64, 96]), np.array([0, 32]), np.array([8, 4]))
    assert [unpack_key(int(c)) for c in codes] == [BlockKey("res", 64, 64, 0, 8), BlockKey("res_proj", 96, 96, 32, 4)]
    with pytest.raises(UserError, match="c_in"):
        pack_keys(np.array([1]), np.array([1 << 16]), np.array([1]), np.array([0]), np.array([1]))


# ----------------------------------------------------------------------------- prediction


def test_predict_is_the_sum_of_active_blocks_plus_the_fixed_part(tiny):
    table = synthetic_table(tiny, np.random.default_rng(0))
    ms = dict(zip(table.rows["kind"] + ":" + table.rows["c_in"].astype(str) + ":" + table.rows["c_out"].astype(str)
                  + ":" + table.rows["c_skip"].astype(str) + ":" + table.rows["size"].astype(str),
                  table.rows["median_ms"], strict=True))
    rng = np.random.default_rng(2)
    archs = [tiny.largest(128), tiny.smallest(32)] + [tiny.sample(rng) for _ in range(5)]
    predicted = table.predict(tiny, archs)
    for arch, value in zip(archs, predicted, strict=True):
        total = ms[f"time_embed:{tiny.spec.time_embed_dim}:{tiny.spec.time_embed_dim}:0:0"]
        for slot in tiny.slots([arch]):  # the manual walk: one arch, one slot at a time
            if slot.active[0]:
                skip = int(slot.segments[1][0]) if len(slot.segments) == 2 else 0
                total += ms[f"{slot.kind}:{int(slot.c_in[0])}:{int(slot.c_out[0])}:{skip}:{int(slot.size[0])}"]
        assert value == pytest.approx(total, rel=1e-12)
    assert predicted[0] > predicted[1]


def test_predict_is_vectorised_and_applies_the_correction(tiny):
    table = synthetic_table(tiny, np.random.default_rng(0))
    X = tiny.sample_genes(np.random.default_rng(3), 500)
    together = table.predict(tiny, X)
    one_by_one = np.array([table.predict(tiny, X[i:i + 1])[0] for i in range(0, 500, 50)])
    np.testing.assert_allclose(together[::50], one_by_one)
    assert together.shape == (500,) and together.dtype == np.float64
    corrected = LatencyTable(table.rows, {**table.meta, "correction": {"scale": 0.5, "offset_ms": 3.0}})
    np.testing.assert_allclose(corrected.predict(tiny, X), 0.5 * together + 3.0)
    np.testing.assert_allclose(corrected.block_sum(tiny, X), together)
    halved = table.rows.assign(min_ms=table.rows["median_ms"] / 2)
    by_min = LatencyTable(halved, {**table.meta, "statistic": "min"})  # sums the min_ms column instead
    np.testing.assert_allclose(by_min.predict(tiny, X), together / 2)
    with pytest.raises(UserError, match="statistic"):
        LatencyTable(table.rows, {**table.meta, "statistic": "mean"})


def test_missing_shape_error_names_block_key_and_table(tiny, tmp_path):
    drop = BlockKey("attn", 128, 128, 0, 8)  # stage 2 attention at 128 px, width 128
    table = synthetic_table(tiny, np.random.default_rng(0), drop=drop)
    path = table.save(tmp_path / "holey.parquet")
    table = LatencyTable.load(path)
    table.predict(tiny, [tiny.smallest(128)])  # no attention there: fine
    with pytest.raises(UserError) as err:
        table.predict(tiny, [tiny.smallest(128), tiny.largest(128)])
    message = str(err.value)
    assert "down2.block0.attn" in message and str(drop) in message and str(path) in message
    assert "\n" not in message


# ----------------------------------------------------------------------------- files


def test_table_round_trips_with_metadata_and_exact_dtypes(tiny, tmp_path):
    table = synthetic_table(tiny, np.random.default_rng(0))
    table.meta.update({"dtype": "fp32", "threads": 1, "command": "pytest", "correction": {"scale": 1.1,
                                                                                         "offset_ms": -2.0}})
    path = table.save(tmp_path / "sub" / "table.parquet")
    assert not [p for p in path.parent.iterdir() if p.name != "table.parquet"]  # no temp file left
    schema = pq.read_schema(path)
    for col, dtype in COLUMNS.items():
        assert str(schema.field(col).type) == ("string" if dtype == "str" else {"int32": "int32",
                                                                               "float64": "double"}[dtype])
    loaded = LatencyTable.load(path, tiny)
    assert loaded.meta["command"] == "pytest" and loaded.meta["space_hash"] == tiny.hash
    assert loaded.device == "cpu-test" and loaded.space_hash == tiny.hash and loaded.correction == (1.1, -2.0)
    pd.testing.assert_frame_equal(loaded.rows, table.rows, check_dtype=False)
    X = tiny.sample_genes(np.random.default_rng(4), 50)
    np.testing.assert_allclose(loaded.predict(tiny, X), table.predict(tiny, X))


def test_another_spaces_table_is_refused(tiny, tmp_path):
    path = synthetic_table(tiny, np.random.default_rng(0)).save(tmp_path / "tiny.parquet")
    latent = load_space("latent")
    with pytest.raises(UserError, match="another space|not for space"):
        LatencyTable.load(path, latent)
    with pytest.raises(UserError, match=latent.hash):
        LatencyTable.load(path).predict(latent, [latent.smallest(128)])


@pytest.mark.parametrize("content", [b"", b"PAR1 not really a parquet file", b"\x00" * 100])
def test_corrupt_file_is_a_user_error(tmp_path, content):
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(UserError, match="bad.parquet"):
        LatencyTable.load(path)


def test_parquet_without_sned_metadata_or_with_a_wrong_column_is_refused(tiny, tmp_path):
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(plain)
    with pytest.raises(UserError, match="not a sned latency table"):
        LatencyTable.load(plain)
    path = synthetic_table(tiny, np.random.default_rng(0)).save(tmp_path / "t.parquet")
    arrow = pq.read_table(path)
    arrow = arrow.set_column(arrow.column_names.index("c_in"), "c_in", arrow.column("c_in").cast("float64"))
    pq.write_table(arrow, tmp_path / "retyped.parquet")
    with pytest.raises(UserError, match="c_in"):
        LatencyTable.load(tmp_path / "retyped.parquet")
    with pytest.raises(UserError, match="not found"):
        LatencyTable.load(tmp_path / "missing.parquet")


def test_prediction_side_never_imports_torch(tiny, tmp_path):
    path = synthetic_table(tiny, np.random.default_rng(0)).save(tmp_path / "t.parquet")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        import numpy as np
        from sned.predictors.latency import LatencyTable
        from sned.supernet.space import load_space
        space = load_space("tiny")
        ms = LatencyTable.load({str(path)!r}, space).predict(space, space.sample_genes(np.random.default_rng(0), 100))
        assert ms.shape == (100,)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# ----------------------------------------------------------------------------- measuring (torch)


def test_measure_stops_after_k_rows_then_resumes_and_validates(micro_path, tmp_path):
    from sned.predictors.latency_measure import MeasureSettings, measure_table
    from sned.predictors.latency_validate import store_validation, validate_table

    space = load_space(micro_path)
    out = tmp_path / "micro.parquet"
    settings = MeasureSettings(threads=1, repeats=2, warmup=1)
    keys = enumerate_keys(space, [8])
    first = measure_table(space, out, settings, resolutions=[8], chunk=2, max_rows=3, progress=False)
    assert (first.measured, first.skipped, first.complete) == (3, 0, False)
    partial = LatencyTable.load(out, space)
    assert len(partial) == 3 and partial.meta["complete"] is False  # an interrupted run's state on disk
    second = measure_table(space, out, settings, resolutions=[8], chunk=4, progress=False)
    assert (second.measured, second.skipped, second.complete) == (len(keys) - 3, 3, True)
    table = LatencyTable.load(out, space)
    assert len(table) == len(keys) and table.has(list(keys)).all()
    assert pd.Series(table.rows["kind"]).value_counts()["time_embed"] == 1
    rows = table.rows
    assert (rows["median_ms"] > 0).all() and (rows["repeats"] == 2).all()
    assert (rows["min_ms"] <= rows["median_ms"]).all() and (rows["iqr_ms"] >= 0).all()
    for field in ("device", "dtype", "batch", "threads", "torch_version", "date", "command", "git_commit"):
        assert field in table.meta, field
    assert table.meta["threads"] == 1 and table.meta["dtype"] == "fp32"
    again = measure_table(space, out, settings, resolutions=[8], progress=False)  # nothing left: no timing
    assert (again.measured, again.skipped, again.complete) == (0, len(keys), True)
    with pytest.raises(UserError, match="threads"):
        measure_table(space, out, MeasureSettings(threads=2, repeats=2), resolutions=[8], progress=False)

    result = validate_table(space, table, n=3, repeats=2, warmup=1, progress=False)
    assert len(result.archs) == 3 and result.archs[0] == space.largest(8) and result.archs[1] == space.smallest(8)
    assert (result.measured > 0).all() and np.isfinite(result.loo).all()
    # 3 near-identical micro subnets timed twice give a noise-driven fit; store a known one instead
    result = dataclasses.replace(result, scale=0.9, offset_ms=0.5, fitted=0.9 * result.block_sum + 0.5)
    stored = store_validation(table, result, command="pytest")
    reloaded = LatencyTable.load(out, space)
    assert reloaded.correction == pytest.approx((result.scale, result.offset_ms))
    assert reloaded.meta["validation"]["n"] == 3 and stored.meta["correction"]["n"] == 3
    np.testing.assert_allclose(reloaded.predict(space, result.archs), result.fitted)


def test_implausible_correction_is_not_stored(tiny, tmp_path):
    from sned.predictors.latency_validate import Validation, store_validation

    path = synthetic_table(tiny, np.random.default_rng(0)).save(tmp_path / "t.parquet")
    measured = np.array([10.0, 200.0, 50.0])
    block_sum = np.array([300.0, 30.0, 100.0])  # anti-correlated: the fit has a negative scale
    bad = Validation(archs=[tiny.smallest(32)] * 3, measured=measured, iqr=np.zeros(3), block_sum=block_sum,
                     table_pred=block_sum, scale=-0.8, offset_ms=250.0, fitted=-0.8 * block_sum + 250.0,
                     loo=measured, elapsed_s=0.0)
    with pytest.raises(UserError, match="not stored"):
        store_validation(LatencyTable.load(path), bad)
    assert LatencyTable.load(path).correction == (1.0, 0.0)


def test_fit_correction_recovers_scale_and_offset():
    from sned.predictors.latency_validate import fit_correction

    block_sum = np.array([10.0, 20.0, 50.0, 100.0, 300.0])
    scale, offset = fit_correction(block_sum, 0.9 * block_sum + 4.0)
    assert scale == pytest.approx(0.9) and offset == pytest.approx(4.0)


def test_bad_device_and_settings_are_user_errors():
    import torch

    from sned.predictors.latency_measure import MeasureSettings, resolve_device

    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.raises(UserError, match="clock cpu"):
        MeasureSettings(threads=2, clock="cpu")
    with pytest.raises(UserError, match="dtype"):
        MeasureSettings(dtype="fp8")


# ----------------------------------------------------------------------------- CLI


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["latency", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("argv,message", [
    (["measure", "tiny", "--device", "tpu", "--out", "{tmp}/x.parquet"], "unknown device"),
    (["measure", "tiny", "--res", "48", "--out", "{tmp}/x.parquet"], "--res 48"),
    (["measure", "tiny", "--threads", "0", "--out", "{tmp}/x.parquet"], "--threads"),
    (["measure", "tiny", "--clock", "cpu", "--threads", "2", "--out", "{tmp}/x.parquet"], "clock cpu"),
    (["measure", "nosuch", "--out", "{tmp}/x.parquet"], "unknown experiment"),
    (["show", "{tmp}/missing.parquet"], "not found"),
    (["show", "{tmp}/corrupt.parquet"], "corrupt.parquet"),
    (["validate", "latent", "--table", "{tmp}/tiny.parquet"], "not for space 'latent'"),
    (["validate", "tiny", "--table", "{tmp}/tiny.parquet", "--n", "2"], "--n"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, tmp_path, tiny, argv, message):
    (tmp_path / "corrupt.parquet").write_bytes(b"garbage")
    synthetic_table(tiny, np.random.default_rng(0)).save(tmp_path / "tiny.parquet")
    code, output = _cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2, output
    assert message in output and len(output.strip().splitlines()) == 1, output


def test_cli_cuda_where_none_exists_exits_2(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, output = _cli(capsys, "measure", "tiny", "--device", "cuda", "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "CUDA is not available" in output and len(output.strip().splitlines()) == 1


def test_cli_show_prints_provenance_and_extremes(capsys, tmp_path, tiny):
    table = synthetic_table(tiny, np.random.default_rng(0))
    table.meta["complete"] = True
    path = table.save(tmp_path / "t.parquet")
    code, output = _cli(capsys, "show", str(path))
    assert code == 0, output
    assert "cpu-test" in output and "predicted at 128 px: largest" in output and "rows per kind" in output


def test_a_session_scopes_its_thread_count_and_restores_the_callers(micro_path):
    """torch.set_num_threads is process-wide: a session sets it while it runs, then puts the caller's back."""
    import torch

    from sned.predictors.latency_measure import MeasureSettings, Session, measure_subnets

    space = load_space(micro_path)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with Session(space, MeasureSettings(threads=1, repeats=1, warmup=0)) as session:
            assert torch.get_num_threads() == 1 and session.provenance()["threads"] == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="inside"), Session(space, MeasureSettings(threads=1)):
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        stats = measure_subnets(space, [space.smallest(8)], MeasureSettings(threads=1, repeats=1, warmup=0))
        assert stats["median_ms"].shape == (1,) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
