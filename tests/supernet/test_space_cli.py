import json

from sned.search.cli import main


def test_space_show_prints_summary(capsys):
    assert main(["space", "show", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "3,888 archs" in out and "stage 2: widths [64, 96, 128]" in out


def test_space_show_json(capsys):
    assert main(["space", "show", "tiny", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["size"] == 3888 and set(summary["resolutions"]) == {"32", "64", "128"}


def test_unknown_experiment_is_one_line_exit_2(capsys):
    assert main(["space", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown experiment 'nope'" in err[0]
