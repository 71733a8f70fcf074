"""``report.html`` of a search run: self-contained (plotly.js embedded once), no network needed.

Built only from the run folder's files (``sned.search.output.read_run``), so ``sned-search`` and
``sned report RUN`` produce the same page. Contents:

1. the run's settings (experiment, device, budget, method per resolution, predictor quality);
2. per resolution: the predicted quality (FVD, or the held-out loss for a ``--target loss``
   predictor) against latency per step, every evaluated subnet faded, the front highlighted (hover
   shows the arch), the budget as a dashed line; then the Pareto table;
3. for NSGA-II resolutions: the front's hypervolume per generation.

The page holds ~4.7 MB of plotly.js, embedded with the first figure only; the HTML is assembled
in memory and written once. plotly is imported here, lazily, never on the search path itself.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from sned.search.objectives import QUALITY_LABELS, quality_columns
from sned.search.output import RunFiles, read_run
from sned.supernet.base.files import write_atomic

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def report_figures(run: RunFiles) -> list[tuple[str, dict, str]]:
    """The report's figures as plain plotly figure dicts: ``(heading HTML, figure, HTML after it)``.

    Plain dicts rather than ``plotly.graph_objects``: validating every property costs ~1 s per
    run on a small CPU, which the search's time budget cannot afford (the tests validate them).
    """
    settings = run.settings
    config, stats = settings["config"], settings["stats"]
    budget, steps = config.get("budget_ms"), int(config.get("steps", 1))
    budget_step = None if budget is None else float(budget) / steps
    device = settings.get("device", "?")
    target = run.target
    pred, spread = quality_columns(target)
    quality, fmt = QUALITY_LABELS.get(target, target), _format(target)
    figures: list[tuple[str, dict, str]] = []
    for i, res_key in enumerate(stats):
        res, st, color = int(res_key), stats[res_key], COLORS[i % len(COLORS)]
        points = run.points[run.points["res"] == res] if len(run.points) else run.points
        front = run.fronts[run.fronts["res"] == res] if len(run.fronts) else run.fronts
        data = []
        cloud = points[~points["on_front"].astype(bool)] if len(points) else points
        if len(cloud):
            data.append({
                "type": "scatter", "mode": "markers", "name": "evaluated subnets",
                "x": _floats(cloud["latency_ms"]), "y": _floats(cloud[pred]),
                "marker": {"color": np.where(cloud["feasible"].astype(bool), "#9aa5b1", "#e0b4b4").tolist(),
                           "size": 5, "opacity": 0.45},
                "customdata": [list(t) for t in zip(cloud["arch_id"], cloud["summary"],
                                                    _floats(cloud["params"] / 1e6), strict=True)],
                "hovertemplate": "%{customdata[0]}<br>%{customdata[1]}<br>%{x:.1f} ms, " + quality + " %{y:" + fmt
                                 + "}<br>%{customdata[2]:.2f} M params<extra>evaluated</extra>"})
        if len(front):
            data.append({
                "type": "scatter", "mode": "lines+markers", "name": f"Pareto front {res} px",
                "x": _floats(front["latency_ms"]), "y": _floats(front[pred]),
                "line": {"color": color, "shape": "hv", "width": 1.5}, "marker": {"color": color, "size": 8},
                "error_y": {"type": "data", "array": _floats(front[spread]), "thickness": 1, "width": 2,
                            "color": color},
                "customdata": [list(t) for t in zip(front["arch_id"], front["summary"], _floats(front[spread]),
                                                    _floats(front["params"] / 1e6), _floats(front["gflops"]),
                                                    strict=True)],
                "hovertemplate": "<b>%{customdata[0]}</b><br>%{customdata[1]}<br>%{x:.1f} ms per step"
                                 "<br>" + quality + " %{y:" + fmt + "} ± %{customdata[2]:" + fmt + "}"
                                 "<br>%{customdata[3]:.2f} M params, %{customdata[4]:.2f} GFLOPs<extra></extra>"})
        layout = _layout(f"{res} px: {len(front)} Pareto-optimal subnets ({st['method']})",
                         f"predicted latency per denoising step, ms ({device})",
                         f"predicted {quality} (lower is better)", height=480)
        if budget_step is not None:
            label = f"budget {budget_step:g} ms/step" + (f" ({budget:g} ms / {steps} steps)" if steps > 1 else "")
            layout["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": budget_step, "x1": budget_step,
                                 "y0": 0, "y1": 1, "line": {"color": "#444", "dash": "dash", "width": 1.5}}]
            layout["annotations"] = [{"xref": "x", "yref": "paper", "x": budget_step, "y": 1, "text": label,
                                      "showarrow": False, "xanchor": "right", "yanchor": "bottom"}]
        figures.append((f"{res} px: {html.escape(_method_text(st))}", {"data": data, "layout": layout},
                        _front_table(front, steps, target)))
    if len(run.history):
        data = []
        for i, (res, df) in enumerate(run.history.groupby("res", sort=False)):
            data.append({"type": "scatter", "mode": "lines+markers", "name": f"{int(res)} px",
                         "x": [int(g) for g in df["generation"]], "y": _floats(df["hypervolume"]),
                         "line": {"color": COLORS[i % len(COLORS)]},
                         "customdata": df[["evaluations", "front_size"]].astype(int).values.tolist(),
                         "hovertemplate": "generation %{x}<br>hypervolume %{y:.4f}<br>%{customdata[0]} "
                                          "evaluations, front %{customdata[1]}<extra>%{fullData.name}</extra>"})
        layout = _layout("NSGA-II: hypervolume of the front per generation (normalised objectives)", "generation",
                         "hypervolume", height=380)
        figures.append(("Hypervolume per generation", {"data": data, "layout": layout}, ""))
    measured = f"{target}_measured"
    if run.verify is not None and len(run.verify) and {pred, measured} <= set(run.verify.columns) \
            and run.verify[measured].notna().any():
        v = run.verify.dropna(subset=[measured])
        lo, hi = float(min(v[pred].min(), v[measured].min())), float(max(v[pred].max(), v[measured].max()))
        data = [{"type": "scatter", "mode": "lines", "name": "y = x", "x": [lo, hi], "y": [lo, hi],
                 "line": {"color": "#999", "dash": "dot"}}]
        for i, (res, df) in enumerate(v.groupby("res", sort=True)):
            data.append({"type": "scatter", "mode": "markers", "name": f"{int(res)} px",
                         "x": _floats(df[pred]), "y": _floats(df[measured]),
                         "error_x": {"type": "data", "array": _floats(df[spread])},
                         "marker": {"color": COLORS[i % len(COLORS)], "size": 9},
                         "text": [str(a) for a in df["arch_id"]],
                         "hovertemplate": "%{text}<br>predicted %{x:" + fmt + "}<br>measured %{y:" + fmt
                                          + "}<extra></extra>"})
        extractor = ", ".join(sorted(set(map(str, v["extractor"])))) if "extractor" in v else "?"
        how = f"sampled, {extractor}" if target == "fvd" else "held-out clips"
        layout = _layout(f"Front members: predicted vs measured {quality} ({how})", f"predicted {quality}",
                         f"measured {quality}", height=420)
        figures.append(("Verification (--verify)", {"data": data, "layout": layout}, ""))
    return figures


def build_report(run: RunFiles) -> str:
    """The whole report page as one HTML string (plotly.js embedded once, with the first figure).

    Deterministic: the same run folder gives the same bytes (figure ids are numbered, not random).
    """
    import plotly.io as pio  # lazy: only the report needs plotly

    parts = []
    for k, (heading, fig, after) in enumerate(report_figures(run)):
        parts.append(f"<h2>{heading}</h2>")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(k == 0), config=PLOT_CONFIG,
                                 default_width="100%", validate=False, div_id=f"sned-figure-{k}"))
        parts.append(after)
    title = f"sned search: {run.settings['config'].get('experiment')} on {run.settings.get('device', '?')}"
    return _PAGE.format(title=html.escape(title), header=_header(run), body="\n".join(parts))


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def _format(target: str) -> str:
    """The d3 number format of a quality: FVD to one decimal, a loss (~0.05) to 4 significant digits."""
    return ".1f" if target == "fvd" else ".4g"


def _layout(title: str, x_title: str, y_title: str, height: int) -> dict:
    axis = {"gridcolor": "#e5e9f0", "zerolinecolor": "#d0d6de", "linecolor": "#9aa5b1", "showline": True}
    return {"title": {"text": title}, "height": height, "paper_bgcolor": "white", "plot_bgcolor": "white",
            "font": {"family": "system-ui, sans-serif", "size": 13, "color": "#222"},
            "xaxis": {**axis, "title": {"text": x_title}}, "yaxis": {**axis, "title": {"text": y_title}},
            "margin": {"l": 60, "r": 20, "t": 60, "b": 50}, "hovermode": "closest",
            "legend": {"orientation": "h", "y": -0.18}}


def write_report(run_dir: str | Path) -> Path:
    """Build ``report.html`` from a run folder's files and write it (atomically) into the folder."""
    run = read_run(run_dir)
    path = run.path / "report.html"
    write_atomic(path, build_report(run))
    return path


def _method_text(st: dict) -> str:
    if st["method"] == "exhaustive":
        return f"exact front, all {st['space_count']:,} archs evaluated"
    text = (f"NSGA-II, {st['unique']:,} distinct archs evaluated ({st['evaluations']:,} evaluations, "
            f"{st['generations']} generations, stopped: {st['stopped']}) of {st['space_count']:,}")
    return text if st.get("stopped") != "infeasible" else "no subnet meets the budget"


def _header(run: RunFiles) -> str:
    s, config = run.settings, run.settings["config"]
    budget = config.get("budget_ms")
    steps = int(config.get("steps", 1))
    rows = [
        ("experiment", f"{config.get('experiment')} (space {s['space']['name']}, hash {s['space']['hash']})"),
        ("device", s.get("device", "?")),
        ("budget", "none" if budget is None else f"{budget:g} ms" + (f" for {steps} denoising steps "
                                                                     f"({budget / steps:g} ms per step)"
                                                                     if steps > 1 else " per denoising step")),
        ("objectives", ", ".join(config.get("objectives", []))),
        ("method", ", ".join(f"{r} px: {st['method']}" for r, st in s["stats"].items())),
        ("seed", str(config.get("seed"))),
        ("created", f"{s.get('created', '?')}, search took {s.get('elapsed_s', 0):.2f} s"),
    ]
    prov = s.get("provenance") or {}
    if prov.get("kind") == "files":
        metrics = prov.get("predictor", {}).get("metrics", {})
        tau = metrics.get("kendall_tau", metrics.get("tau"))
        rows.append(("latency table", prov.get("table", {}).get("path", "?")))
        rows.append(("accuracy predictor", prov.get("predictor", {}).get("path", "?") + f" (predicts {run.target}"
                     + (f", cross-validated Kendall τ {tau:.3f})" if isinstance(tau, (int, float)) else ")")))
    elif prov:
        rows.append(("cost model", f"{prov.get('kind')}: {prov.get('note', '')}"))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in s.get("notes", []))
    return f"<table class='settings'>{table}</table>" + (f"<ul class='notes'>{notes}</ul>" if notes else "")


def _front_table(front: pd.DataFrame, steps: int, target: str = "fvd") -> str:
    if not len(front):
        return "<p>No subnet at this resolution meets the budget.</p>"
    pred, spread = quality_columns(target)
    fmt = _format(target)
    head = ["#", "arch id", "latency ms/step"] + (["latency ms (run)"] if steps > 1 else []) + [
        f"predicted {html.escape(QUALITY_LABELS.get(target, target))}", "params M", "GFLOPs", "arch"]
    rows = []
    for k, r in enumerate(front.to_dict("records"), 1):
        ms = r["latency_ms"]
        cells = [str(k), r["arch_id"], f"{ms:.1f}"] + ([f"{ms * steps:.0f}"] if steps > 1 else [])
        cells += [f"{r[pred]:{fmt}} ± {r[spread]:{fmt}}", f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.2f}",
                  r["summary"]]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (f"<p class='caption'>Pareto table: {len(front)} subnets, sorted by latency</p>"
            "<div class='scroll'><table class='front'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1100px;
       color: #222; padding: 0 16px; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 8px 0 16px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }}
table.front td:nth-child(n+3):not(:last-child) {{ text-align: right; font-variant-numeric: tabular-nums; }}
table.front td:last-child {{ font-family: ui-monospace, monospace; }}
table.settings th {{ color: #555; font-weight: 600; }}
.notes {{ color: #8a4b00; }}
.caption {{ color: #555; margin: 4px 0; font-size: 0.9em; }}
.scroll {{ max-height: 330px; overflow-y: auto; border: 1px solid #e5e9f0; display: inline-block; }}
.scroll thead th {{ position: sticky; top: 0; background: #f6f8fa; }}
</style>
</head>
<body>
<h1>{title}</h1>
{header}
{body}
</body>
</html>
"""

__all__ = ["build_report", "report_figures", "write_report"]
