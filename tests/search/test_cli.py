"""``sned-search`` and ``sned report`` (sned/search/search_cli.py, report_cli.py): output and bad input."""

import json

import numpy as np
import pytest

from sned.predictors import accuracy
from sned.search.cli import main, search_main


def _bad(capsys, argv, pattern):
    """Run a command that must fail: exit 2, exactly one line on stderr, no traceback, nothing on stdout."""
    code = search_main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert out == ""
    import re

    assert re.search(pattern, err), err
    return err


@pytest.mark.parametrize("budget", ["0", "-5", "nan", "NaN", "abc", "inf"])
def test_bad_budget(capsys, tmp_path, budget):
    _bad(capsys, [f"--budget-ms={budget}", "--res", "128", "--analytic", "--out", str(tmp_path / "r")],
         r"sned-search: error: --budget-ms .*(not a number|> 0)")
    assert not (tmp_path / "r").exists()


def test_resolution_outside_the_space(capsys, tmp_path):
    _bad(capsys, ["--budget-ms", "200", "--res", "96", "--analytic", "--out", str(tmp_path / "r")],
         r"resolution 96 is not in space 'tiny'; valid: 32, 64, 128")
    assert not (tmp_path / "r").exists()  # a failed search leaves no empty run folder


def test_budget_below_the_fastest_subnet(capsys, tmp_path):
    _bad(capsys, ["--budget-ms", "10", "--res", "128", "--analytic", "--out", str(tmp_path / "r")],
         r"below the fastest subnet \(128 px 51\.0 ms per step\); raise --budget-ms$")


def test_setting_errors_are_phrased_in_flags_here_and_in_setting_names_in_the_library():
    """The CLI names a library SettingError's setting by its flag; the library never writes flags."""
    import argparse
    import dataclasses

    from sned.search import search_cli
    from sned.search.commands import SETTING_FLAGS as SEARCH_FLAGS
    from sned.search.engine import SearchConfig
    from sned.supernet.base.errors import SettingError

    parser = argparse.ArgumentParser()
    search_cli.add_arguments(parser)
    assert set(SEARCH_FLAGS) <= {f.name for f in dataclasses.fields(SearchConfig)}  # the service's vocabulary
    assert search_cli.SETTING_FLAGS.items() >= SEARCH_FLAGS.items()
    assert set(search_cli.SETTING_FLAGS.values()) <= set(parser._option_string_actions)
    with pytest.raises(SettingError) as raised:
        SearchConfig(objectives="fvd,loss,latency")
    assert raised.value.setting == "objectives" and "--" not in str(raised.value)
    with pytest.raises(SettingError) as raised:
        SearchConfig(budget_ms="abc")
    assert str(raised.value) == "budget_ms 'abc' is not a number; give milliseconds, e.g. budget_ms 200"
    assert raised.value.phrase(search_cli.SETTING_FLAGS) == (
        "--budget-ms 'abc' is not a number; give milliseconds, e.g. --budget-ms 200")


def test_unknown_objective_and_method(capsys, tmp_path):
    _bad(capsys, ["--budget-ms", "200", "--objectives", "fvd,energy", "--analytic", "--out", str(tmp_path / "r")],
         r"unknown objective 'energy'; valid: fvd, latency, params, gflops")
    _bad(capsys, ["--budget-ms", "200", "--method", "grid", "--analytic", "--out", str(tmp_path / "r")],
         r"--method 'grid': valid: auto, nsga2, exhaustive")
    _bad(capsys, ["--budget-ms", "200", "--steps", "0", "--analytic", "--out", str(tmp_path / "r")],
         r"--steps '0': expected an integer >= 1")


def test_missing_table_and_predictor(capsys, tmp_path):
    _bad(capsys, ["--budget-ms", "200", "--table", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "r")],
         r"latency table not found: .*none\.parquet \(pass --table PATH\)")


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _bad(capsys, ["--budget-ms", "200", "--res", "128", "--analytic", "--out", str(blocker / "run")],
         r"cannot write to output folder .*file/run")


def test_real_table_and_predictor(capsys, tmp_path, space, real_files):
    from sned.search.objectives import FilePredictors

    table, predictor = real_files
    assert search_main(["--budget-ms", "200", "--res", "128", "--table", str(table), "--predictor", str(predictor),
                        "--json", "--out", str(tmp_path / "r")]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["device"] == "cpu-test" and payload["method"] == "exhaustive"
    front = payload["fronts"]["128"]
    assert front and all(r["latency_ms"] <= 200 for r in front)
    files = FilePredictors(space, table, predictor)
    X = space.encode([r["arch"] for r in front])
    np.testing.assert_allclose([r["latency_ms"] for r in front], files.latency_ms(X))
    np.testing.assert_allclose([r["fvd_pred"] for r in front], files.fvd(X)[0])


def test_corrupt_and_foreign_files(capsys, tmp_path, real_files):
    table, predictor = real_files
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    run = ["--budget-ms", "200", "--res", "128", "--out", str(tmp_path / "r")]
    _bad(capsys, run + ["--table", str(corrupt), "--predictor", str(predictor)], r"latency table .*corrupt\.parquet")
    bad = tmp_path / "predictor.npz"
    bad.write_bytes(b"PK not a zip")
    _bad(capsys, run + ["--table", str(table), "--predictor", str(bad)], r"predictor\.npz")
    _bad(capsys, run + ["--table", str(table), "--predictor", str(tmp_path / "none.npz")],
         r"accuracy predictor not found")
    # tiny's files against another experiment's space
    _bad(capsys, ["--experiment", "pixel-1.6b", "--budget-ms", "200", "--table", str(table), "--predictor",
                  str(predictor), "--out", str(tmp_path / "r")], r"space 'pixel-1.6b' \(hash [0-9a-f]+\)")


def test_json_output_and_run_folder(capsys, tmp_path):
    out = tmp_path / "run"
    code = main(["search", "--budget-ms", "200", "--res", "64,128", "--analytic", "--json", "--out", str(out)])
    stdout, _ = capsys.readouterr()
    assert code == 0
    payload = json.loads(stdout)  # one JSON object, nothing else
    assert payload["experiment"] == "tiny" and payload["device"] == "analytic" and payload["budget_ms"] == 200
    assert payload["method"] == "exhaustive" and sorted(payload["fronts"]) == ["128", "64"]
    front = payload["fronts"]["128"]
    assert [r["latency_ms"] for r in front] == sorted(r["latency_ms"] for r in front)
    assert all(r["latency_ms"] <= 200 for r in front)
    assert set(front[0]) == {"arch_id", "arch", "latency_ms", "fvd_pred", "fvd_std", "params", "gflops"}
    for name in ("pareto.csv", "pareto.json", "settings.json", "points.csv", "history.csv", "report.html"):
        assert (out / name).is_file(), name
    assert json.loads((out / "pareto.json").read_text())["fronts"] == payload["fronts"]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["config"]["budget_ms"] == 200 and settings["stats"]["128"]["method"] == "exhaustive"


def test_text_output_and_report_rebuild(capsys, tmp_path):
    out = tmp_path / "run"
    assert search_main(["--budget-ms", "1000", "--steps", "10", "--res", "128", "--method", "nsga2", "--pop", "16",
                        "--gens", "4", "--analytic", "--out", str(out)]) == 0
    stdout, _ = capsys.readouterr()
    assert "budget 1000 ms for 10 steps (100 ms per step)" in stdout
    assert "128 px: NSGA-II front" in stdout and "ms/run" in stdout
    rows = [line.split() for line in stdout.splitlines() if line.strip()[:1].isdigit() and "128px" in line]
    latencies = [float(r[2]) for r in rows]
    assert latencies and latencies == sorted(latencies) and max(latencies) <= 100
    assert f"report: {out / 'report.html'}" in stdout
    first = (out / "report.html").read_text()
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    assert (out / "report.html").read_text() == first  # rebuilt from the run folder's files alone


def test_report_of_a_folder_that_is_not_a_run(capsys, tmp_path):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a complete search run folder: missing pareto.csv" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the held-out loss as the quality


@pytest.fixture(scope="module")
def loss_predictor(tmp_path_factory, space):
    """A ridge predictor fitted (``--target loss``) on a table whose held-out loss falls with params."""
    df, meta = accuracy.synthetic_fvd_table(space, 96, np.random.default_rng(1))
    params = space.params([json.loads(a) for a in df["arch"]]).astype(float)
    df["loss"] = 0.05 + 0.02 / np.log10(params) + np.random.default_rng(2).normal(0, 1e-4, len(df))
    predictor = accuracy.AccuracyPredictor.fit(space, df, target="loss", folds=3, models=("ridge",), table_meta=meta)
    return predictor.save(tmp_path_factory.mktemp("loss") / "loss.npz")


def test_search_on_the_loss_names_the_quality_after_the_target(capsys, tmp_path, space, real_files, loss_predictor):
    from sned.search.objectives import FilePredictors

    table, _ = real_files
    out = tmp_path / "r"
    argv = ["--budget-ms", "200", "--res", "128", "--table", str(table), "--predictor", str(loss_predictor),
            "--objectives", "loss,latency"]
    assert search_main([*argv, "--json", "--out", str(out)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["target"] == "loss" and payload["objectives"] == ["loss", "latency"]
    front = payload["fronts"]["128"]
    assert len(front) >= 2 and set(front[0]) == {"arch_id", "arch", "latency_ms", "loss_pred", "loss_std", "params",
                                                 "gflops"}
    files = FilePredictors(space, table, loss_predictor)
    assert files.target == "loss"
    X = space.encode([r["arch"] for r in front])
    np.testing.assert_allclose([r["loss_pred"] for r in front], files.quality(X)[0])
    assert np.all(np.diff([r["loss_pred"] for r in front]) < 0)  # faster members predict a higher loss
    pareto = (out / "pareto.csv").read_text().splitlines()[0].split(",")
    assert "loss_pred" in pareto and "fvd_pred" not in pareto
    assert json.loads((out / "settings.json").read_text())["target"] == "loss"
    assert "predicted held-out loss" in (out / "report.html").read_text()
    assert search_main([*argv, "--out", str(tmp_path / "text")]) == 0
    assert "predicted held-out loss" in capsys.readouterr().out


def test_quality_objective_must_be_what_the_predictor_predicts(capsys, tmp_path, real_files, loss_predictor):
    table, _ = real_files
    run = ["--budget-ms", "200", "--res", "128", "--table", str(table), "--out", str(tmp_path / "r")]
    for objectives in ([], ["--objectives", "fvd,latency"]):  # the default objectives are fvd,latency
        _bad(capsys, [*run, "--predictor", str(loss_predictor), *objectives],
             r"objective 'fvd': accuracy predictor .*loss\.npz predicts 'loss', not 'fvd'; "
             r"pass --objectives loss,latency")
    _bad(capsys, ["--res", "128", "--analytic", "--objectives", "loss,latency", "--out", str(tmp_path / "r")],
         r"objective 'loss': the analytic cost model predicts 'fvd', not 'loss'")
    _bad(capsys, ["--res", "128", "--analytic", "--objectives", "fvd,loss,latency", "--out", str(tmp_path / "r")],
         r"fvd and loss both need the accuracy predictor")
    assert not (tmp_path / "r").exists()
