"""The bottom floor (``sned.supernet.base``): the one atomic writer, the strict loader, names, the runner."""

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from sned.supernet.base.artifacts import DEFAULT_TABLE, latency_table_name, safe_file_part, slug, table_device
from sned.supernet.base.command import error_line
from sned.supernet.base.errors import SettingError, SpaceError, UserError
from sned.supernet.base.files import atomic_dir, atomic_path, write_atomic, write_json_atomic
from sned.supernet.base.provenance import git_commit, package_version
from sned.supernet.base.settings import check_keys, load_section


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------- files


def test_every_writer_gives_the_mode_of_a_plain_open(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import save_file

    write_atomic(tmp_path / "a.txt", "text")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_json_atomic(tmp_path / "c.json", {"x": [1, 2]})
    with atomic_path(tmp_path / "d.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, tmp)
    with atomic_path(tmp_path / "e.parquet") as tmp:
        pq.write_table(pa.table({"x": np.arange(3)}), tmp)
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    expected = _mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~_umask()  # what a plain open() gives, not mkstemp's 0600
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == dict.fromkeys(
        ["a.txt", "b.bin", "c.json", "d.safetensors", "e.parquet", "plain.txt"], expected)
    assert (tmp_path / "a.txt").read_text() == "text" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    assert (tmp_path / "c.json").read_text().endswith("\n")


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".parquet"
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]
    with atomic_path(tmp_path / "noext", suffix=".mp4") as tmp:
        assert tmp.suffix == ".mp4"
        tmp.write_text("video")
    assert (tmp_path / "noext").read_text() == "video"


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    final = tmp_path / "step-00000002"
    with atomic_dir(final) as tmp:
        (tmp / "state.json").write_text("1")
        (tmp / "secret").touch(mode=0o600)  # as safetensors writes its files
    assert (final / "state.json").read_text() == "1"
    assert _mode(final) == 0o777 & ~_umask()  # what a plain mkdir() gives, not mkdtemp's 0700
    assert _mode(final / "secret") == _mode(final / "state.json") == 0o666 & ~_umask()
    (final / "secret").unlink()
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "state.json").write_text("2")
        raise RuntimeError("killed")
    assert (final / "state.json").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == [final.name]
    with atomic_dir(final) as tmp:
        (tmp / "other.json").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["other.json"]


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Section:
    steps: int = 10
    clock: Literal["cpu", "wall"] = "cpu"
    rate: float = 0.5
    sizes: tuple[int, ...] = ()
    limit: int | None = None
    floor: int | Literal["all"] = "all"


def test_load_section_is_strict_and_names_the_valid_values():
    assert load_section(_Section, None, "s") == _Section()
    got = load_section(_Section, {"steps": 3, "rate": 1, "sizes": [1, 2], "limit": None, "floor": 4}, "s")
    assert got == _Section(steps=3, rate=1.0, sizes=(1, 2), limit=None, floor=4) and isinstance(got.rate, float)
    cases = [({"stepz": 1}, "s: unknown key 'stepz'; valid keys: steps, clock, rate, sizes, limit, floor"),
             ({"steps": "3"}, "s.steps = '3': expected int"),
             ({"steps": True}, "s.steps = True: expected int"),
             ({"clock": "gpu"}, "s.clock = 'gpu': expected one of ['cpu', 'wall']"),
             ({"sizes": [1, "x"]}, "s.sizes[1] = 'x': expected int"),
             ({"floor": "some"}, "s.floor = 'some': expected int or one of ['all']"),
             ([1], "s: expected a mapping of settings, got list")]
    for section, message in cases:
        with pytest.raises(UserError) as raised:
            load_section(_Section, section, "s")
        assert str(raised.value) == message
    with pytest.raises(SpaceError, match="space: unknown key 'x'"):
        load_section(_Section, {"x": 1}, "space", error=SpaceError)
    parsed = load_section(_Section, {"floor": "ALL"}, "s", parsers={"floor": lambda v, where: str(v).lower()})
    assert parsed.floor == "all"


def test_check_keys_reports_unknown_then_missing_keys():
    check_keys({"a": 1}, ["a", "b"], "card")
    with pytest.raises(UserError, match=r"card: unknown keys 'c', 'd'; valid keys: a, b"):
        check_keys({"a": 1, "c": 2, "d": 3}, ["a", "b"], "card")
    with pytest.raises(UserError, match=r"card: missing key 'b'; was it written by sned\?"):
        check_keys({"a": 1}, ["a", "b"], "card", required=["a", "b"], hint="; was it written by sned?")


# ----------------------------------------------------------------------------- names, provenance, the runner


def test_artifact_names_round_trip():
    assert DEFAULT_TABLE == latency_table_name("cpu") == "latency-cpu.parquet"
    assert latency_table_name("cuda:1") == "latency-cuda.parquet" and table_device("latency-h200.parquet") == "h200"
    assert table_device("latency-parity.html") is None and table_device("predictor.npz") is None
    assert slug("AMD EPYC 7B13 64-Core") == "amd-epyc-7b13-64-core" and safe_file_part("i3d:ab/c") == "i3d-ab-c"


def test_provenance_never_raises():
    commit = git_commit()
    assert commit is None or commit.isalnum()
    assert package_version("no-such-distribution-xyz", "missing") == "missing"


def test_error_line_spells_a_setting_as_the_command_does():
    err = SettingError("budget_ms", "{budget_ms} {value!r}: expected ms > 0\nsecond line", value=-1)
    assert error_line(err) == "budget_ms -1: expected ms > 0"
    assert error_line(err, {"budget_ms": "--budget-ms"}) == "--budget-ms -1: expected ms > 0"
    missing = FileNotFoundError(2, "No such file or directory", "/nope")
    assert error_line(missing) == "[Errno 2] No such file or directory: '/nope'"
