"""The bundled default (experiments/tiny/): every artifact loads, belongs to the bundled space, and
carries its provenance; the headline command runs on it."""

import json
from importlib import resources
from pathlib import Path

import pytest

from sned.predictors.accuracy import AccuracyPredictor, read_fvd_table
from sned.predictors.latency import LatencyTable
from sned.search.cli import main
from sned.supernet.space import load_space

FOLDER = Path(str(resources.files("sned.experiments") / "tiny"))


@pytest.fixture(scope="module")
def space():
    return load_space("tiny")


def test_artifacts_belong_to_the_bundled_space(space):
    table = LatencyTable.load(FOLDER / "latency-cpu.parquet", space)
    assert table.space_hash == space.hash and "validation" in table.meta
    predictor = AccuracyPredictor.load(FOLDER / "predictor.npz")
    predictor.check_space(space)
    fvd, meta = read_fvd_table(FOLDER / "fvd.parquet", space)
    assert meta["space_hash"] == space.hash and len(fvd) >= 2 * len(space.resolutions)
    assert set(fvd["res"]) == set(space.resolutions)


def test_artifacts_carry_provenance():
    provenance = json.loads((FOLDER / "provenance.json").read_text())
    for name in ("latency-cpu.parquet", "fvd.parquet", "predictor.npz"):
        record = provenance[name]
        for key in ("command", "commit", "device", "date", "seed"):
            assert record.get(key) not in (None, ""), (name, key)


def test_headline_command_on_the_bundled_default(capsys, tmp_path):
    assert main(["search", "--budget-ms", "200", "--res", "128", "--json", "--out", str(tmp_path / "run")]) == 0
    answer = json.loads(capsys.readouterr().out)
    front = answer["fronts"]["128"]
    assert front and all(row["latency_ms"] <= 200 for row in front)
    assert answer["device"].startswith("cpu")
