"""The bundled defaults (experiments/tiny/, experiments/tiny-latent/): every artifact loads, belongs to
its space, and carries its provenance; the headline command runs on each."""

import json
from importlib import resources
from pathlib import Path

import pytest

from sned.predictors.accuracy import AccuracyPredictor, read_fvd_table
from sned.predictors.latency import LatencyTable
from sned.search.cli import main
from sned.supernet.space import load_space

EXPERIMENTS = Path(str(resources.files("sned.experiments")))


@pytest.fixture(scope="module", params=["tiny", "tiny-latent"])
def bundled(request):
    return request.param, load_space(request.param), EXPERIMENTS / request.param


def test_artifacts_belong_to_the_bundled_space(bundled):
    _, space, folder = bundled
    table = LatencyTable.load(folder / "latency-cpu.parquet", space)
    assert table.space_hash == space.hash and "validation" in table.meta
    predictor = AccuracyPredictor.load(folder / "predictor.npz")
    predictor.check_space(space)
    fvd, meta = read_fvd_table(folder / "fvd.parquet", space)
    assert meta["space_hash"] == space.hash and len(fvd) >= 2 * len(space.resolutions)
    assert set(fvd["res"]) == set(space.resolutions)


def test_artifacts_carry_provenance(bundled):
    provenance = json.loads((bundled[2] / "provenance.json").read_text())
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


def test_the_latent_default_budgets_its_decoder_and_samples_decoded_video(capsys, tmp_path):
    table = LatencyTable.load(EXPERIMENTS / "tiny-latent" / "latency-cpu.parquet")
    decoder = table.decoder_ms(64)
    assert decoder > 0 and table.decoder["sha256"]
    argv = ["search", "--experiment", "tiny-latent", "--budget-ms", "600", "--steps", "25", "--res", "64", "--json",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    front = json.loads(capsys.readouterr().out)["fronts"]["64"]
    assert front and all(25 * row["latency_ms"] + decoder <= 600 for row in front)
    assert main(["sample", "tiny-latent", "--smallest", "--res", "32", "--n", "1", "--steps", "2",
                 "--out", str(tmp_path / "s")]) == 0
    from sned.supernet.video_io import read_frames

    assert read_frames(tmp_path / "s" / "sample-000.mp4", [0]).shape == (1, 32, 32, 3)  # decoded, not 8x8 latent
