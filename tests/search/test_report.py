"""report.html (sned/search/report.py): valid plotly figures, one embedded plotly.js, no network."""

from pathlib import Path

import plotly
import plotly.graph_objects as go
import pytest

from sned.search.engine import SearchConfig, run_search
from sned.search.output import read_run, write_run
from sned.search.report import report_figures, write_report
from sned.supernet.base.errors import UserError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, space, analytic):
    config = SearchConfig(budget_ms=200, resolutions=(64, 128), method="auto", exhaustive_limit=1300,
                          steps=1, seed=0)
    result = run_search(config, analytic, space=space, progress=False)
    # one NSGA-II resolution too, so the hypervolume figure appears
    nsga = run_search(SearchConfig(budget_ms=200, resolutions=(32,), method="nsga2", pop_size=16, generations=5),
                      analytic, space=space, progress=False)
    for table in ("fronts", "evaluated", "history", "stats"):
        getattr(result, table).update(getattr(nsga, table))
    out = tmp_path_factory.mktemp("run")
    write_run(result, out, command=["test"])
    return out


def test_figures_are_valid_plotly(run_dir):
    figures = report_figures(read_run(run_dir))
    assert [h.split(":")[0] for h, _, _ in figures] == ["64 px", "128 px", "32 px", "Hypervolume per generation"]
    for _, fig, _ in figures:
        go.Figure(fig)  # raises on any property plotly does not know
    _, fig128, table = figures[1]
    names = [t["name"] for t in fig128["data"]]
    assert names == ["evaluated subnets", "Pareto front 128 px"]
    front = fig128["data"][1]
    assert all("px " in row[1] for row in front["customdata"])  # hover shows the arch summary
    assert fig128["layout"]["shapes"][0]["x0"] == 200  # the budget line
    assert "Pareto table" in table and table.count("<tr>") == len(front["x"]) + 1


def test_report_is_self_contained_with_one_plotly_js(run_dir):
    html = write_report(run_dir).read_text()
    plotly_js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    assert html.count(plotly_js[:200]) == 1  # embedded exactly once
    page = html.replace(plotly_js, "")  # plotly.js itself mentions URLs (map tiles) it never loads here
    assert "<script src=" not in page and "http" not in page.lower().replace("http-equiv", "")
    assert html.count('class="plotly-graph-div"') == 4


def test_read_run_refuses_incomplete_folders(run_dir, tmp_path):
    with pytest.raises(UserError, match="not a search run folder"):
        read_run(tmp_path / "missing")
    (tmp_path / "pareto.csv").write_text("")
    with pytest.raises(UserError, match="missing pareto.json"):
        read_run(tmp_path)


def test_run_folders_from_before_the_target_read_as_fvd(run_dir, tmp_path):
    """settings.json without "target" (an older sned-search): the quality columns are fvd_pred/fvd_std."""
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    settings = json.loads((old / "settings.json").read_text())
    assert settings.pop("target") == "fvd"
    (old / "settings.json").write_text(json.dumps(settings))
    run = read_run(old)
    assert run.target == "fvd"
    _, fig128, table = report_figures(run)[1]
    front = run.fronts[run.fronts["res"] == 128]
    assert fig128["data"][1]["y"] == [float(v) for v in front["fvd_pred"]]
    assert "predicted FVD" in table and fig128["layout"]["yaxis"]["title"]["text"] == "predicted FVD (lower is better)"
