"""`sned-search --verify K`: front members picked along the front, measured, and plotted in the report."""

import json

import pandas as pd
import pytest

from sned.search.cli import main
from sned.search.output import read_run
from sned.search.report import report_figures
from sned.search.verify import pick_members


def test_pick_members_spreads_along_the_front():
    front = pd.DataFrame({"latency_ms": [50.0, 10, 40, 20, 30, 60], "arch_id": list("fabdce")})
    picked = pick_members(front, 3)
    assert picked["arch_id"].tolist() == ["a", "c", "e"] or picked["latency_ms"].tolist() == [10.0, 30.0, 60.0]
    assert picked["latency_ms"].iloc[0] == 10 and picked["latency_ms"].iloc[-1] == 60
    assert len(pick_members(front, 10)) == 6


def test_verify_needs_data_and_defaults_to_the_bundled_supernet(capsys, tmp_path):
    # tiny bundles a trained supernet, so --ckpt may be left out; the real videos may not
    assert main(["search", "--analytic", "--res", "32", "--verify", "2"]) == 2
    assert "--verify needs --data" in capsys.readouterr().err
    assert main(["search", "--analytic", "--res", "32", "--verify", "2", "--ckpt", str(tmp_path / "none"),
                 "--data", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
def test_verify_end_to_end(tmp_path, capsys, checkpoint_writer):
    from sned.supernet.synth import synthesize

    checkpoint_writer(tmp_path / "run")
    # 8 videos: the real set (tiny's sample.n = 8) never repeats a video, and all 6 classes have a folder
    synthesize(tmp_path / "data", 8, 8, 32, 0, progress=False)
    out = tmp_path / "search"
    code = main(["search", "--analytic", "--res", "32", "--budget-ms", "1000", "--verify", "2", "--ckpt",
                 str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--out", str(out), "--json"])
    assert code == 0
    json.loads(capsys.readouterr().out)
    run = read_run(out)
    assert run.verify is not None and len(run.verify) == 2 and run.verify["fvd_measured"].notna().all()
    assert run.verify["loss_measured"].notna().all()  # the held-out loss of each member beside its FVD
    assert any(title.startswith("Verification") for title, _, _ in report_figures(run))
