"""The paper's claims at small scale: sampling warm-up, dynamic-cost sampling, weight sharing, superposition
over resolutions and image-stage transfer, each as a comparison of short training runs.

    python benchmarks/claims.py --data DATA [--out runs/claims] [--steps 1000]
        [--claims warmup,dynamic,sharing,superposition,image] [--report-only] [--boot 2000]
    python benchmarks/claims.py        # prints the stored table (benchmarks/claims/claims.json)

Every run is ``sned-train`` on a variant of tiny's space and recipe (class-conditional, x0
prediction, lr 1e-3 with warm-up and cosine decay, EMA), at 32 px unless the claim is about
resolutions, for ``--steps`` steps, with 48 of the videos held out. Runs are resumable: a run
folder that exists is resumed, a finished one is reused, so a killed or partial invocation
continues where it stopped (also across sessions). ``--report-only`` only re-reads the runs.

Metric: the EMA weights' held-out denoising loss (v units) on the 48 held-out clips with fixed
noise at t = 50/200/500/800 (:func:`sned.supernet.validation.held_out_losses`), summarised by the
geometric mean over the four timesteps (one number; each t counts equally whatever its scale).
A comparison is the ratio of two runs' scores on the same clips and noise, with a 95 % paired
bootstrap interval over held-out clips (one training seed per run: seed-to-seed variation is not
in the interval). Verdicts:

* a claim that a technique *helps* (warm-up, dynamic cost for small subnets, image stage) holds
  when the interval of (with / without) lies below 1, does not hold when it lies above 1, and is
  inconclusive when it contains 1;
* a claim of *comparable* quality (weight sharing, superposition) holds when the interval lies
  below 1.10 (at most 10 % worse), does not hold when it lies above 1.10, inconclusive otherwise.

The sandwich rule runs three forwards a step, so at equal steps it has three times the compute.
Writes ``--out/claims.json`` and ``--out/claims.html`` (plotly embedded: opens offline) and prints
the README table. Measured on a noisy 2-core VM; the figures are from one seed at one small scale.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sned.supernet.space import SearchSpace, arch_id, load_experiment, parse_space_spec

VAL_VIDEOS = 48
CLAIMS = ("warmup", "dynamic", "sharing", "superposition", "image")
SHARING_ARCHS = ("small", "middle", "large")
COMPARABLE = 1.10  # "comparable": at most 10 % worse


@dataclass(frozen=True)
class Run:
    """One training run: a name and the changes to the base experiment."""

    name: str
    space: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    steps_share: float = 1.0  # of --steps


def _sharing_archs(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The small, middle and large subnet of the weight-sharing claim at 32 px (FLOPs extremes and median)."""
    X = space.enumerate(32)
    order = np.argsort(space.flops(X), kind="stable")
    picks = {"small": order[0], "middle": order[len(order) // 2], "large": order[-1]}
    return {name: space.decode(X[i: i + 1])[0] for name, i in picks.items()}


def _bucket_archs(space: SearchSpace, res: int, buckets: int = 4, per_bucket: int = 3) -> dict[str, list[dict]]:
    """``per_bucket`` seeded archs in each FLOPs quartile at ``res`` (the dynamic-cost claim's probes)."""
    X = space.enumerate(res)
    ranks = np.argsort(np.argsort(space.flops(X), kind="stable"), kind="stable")
    bucket = np.minimum(ranks * buckets // len(X), buckets - 1)
    rng = np.random.default_rng(17)
    return {f"Q{b + 1}": space.decode(X[rng.choice(np.flatnonzero(bucket == b), per_bucket, replace=False)])
            for b in range(buckets)}


def runs_for(claims: list[str], base_space: SearchSpace) -> list[Run]:
    wanted: dict[str, Run] = {}

    def add(run: Run) -> None:
        wanted.setdefault(run.name, run)

    add(Run("base"))
    if "warmup" in claims:
        add(Run("no-warmup", train={"sampling_warmup_steps": 0}))
    if "dynamic" in claims:
        add(Run("uniform", train={"sampler": "uniform"}))
        add(Run("sandwich", train={"sandwich": True}))
    if "sharing" in claims:
        for name, arch in _sharing_archs(base_space).items():
            add(Run(f"static-{name}", train={"sampler": "fixed", "arch": json.dumps({"stages": arch["stages"]})}))
    if "superposition" in claims:
        add(Run("super-32-64", space={"resolutions": [32, 64]},
                train={"base_batch": 4, "resolution_weights": [0.5, 0.5]}))
        add(Run("only-32", steps_share=0.5))
        add(Run("only-64", space={"resolutions": [64]}, train={"base_batch": 4, "max_batch": 4}, steps_share=0.5))
    if "image" in claims:
        add(Run("no-image", train={"image_steps": 0}))
    return list(wanted.values())


def experiment_for(run: Run, steps: int) -> dict[str, Any]:
    """tiny at 32 px with a short recipe (the fractions of ``steps`` scale with the run), then ``run``'s changes."""
    experiment = copy.deepcopy(load_experiment("tiny")[0])
    experiment.pop("pipeline", None)
    experiment["name"] = f"claims-{run.name}"
    n = max(10, round(steps * run.steps_share))
    experiment["space"]["resolutions"] = [32]
    experiment["train"].update(steps=n, image_steps=n // 10, base_batch=16, max_batch=16, resolution_weights=[1.0],
                               lr_warmup_steps=n // 10, ema_start=n // 5, ema_decay=0.998,
                               sampling_warmup_steps=n // 5, val_videos=VAL_VIDEOS, val_every=max(10, n // 10),
                               checkpoint_every=max(50, n // 4))
    experiment["space"].update(run.space)
    experiment["train"].update(run.train)
    if "resolutions" in run.space and "resolution_weights" not in run.train:
        experiment["train"]["resolution_weights"] = [1.0] * len(run.space["resolutions"])
    return experiment


def train_run(run: Run, steps: int, data: str, out: Path) -> float:
    """Train (or resume, or reuse) one run; returns the seconds this call spent training."""
    from sned.supernet.checkpoint import list_checkpoints, read_state
    from sned.supernet.train import TrainSettings, train

    experiment = experiment_for(run, steps)
    folder = out / "runs" / run.name
    found = list_checkpoints(folder) if folder.is_dir() else []
    if found and int(read_state(found[-1], verify=False)["step"]) >= experiment["train"]["steps"]:
        return 0.0
    spec_path = out / "runs" / f"{run.name}.yaml"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    began = time.perf_counter()
    train(TrainSettings(str(spec_path), data, str(folder), resume=bool(found), progress=True))
    return time.perf_counter() - began


# ----------------------------------------------------------------------------- evaluation


class HeldOutSet:
    """The held-out clips every run left out (the same split of the same folder), with fixed noise, per resolution."""

    def __init__(self, data: str, frames: int):
        from sned.supernet.data import VideoClipDataset
        from sned.supernet.train import split_held_out

        dataset = VideoClipDataset(data, frames=frames, size=64, seed=0)
        _, held = split_held_out(len(dataset), VAL_VIDEOS)
        self.view = dataset.subset(held)
        self.cache: dict[int, Any] = {}

    def at(self, res: int) -> Any:
        from sned.supernet.validation import held_out_set

        if res not in self.cache:
            self.cache[res] = held_out_set(self.view, res, seed=0)
        return self.cache[res]


def evaluate(folder: Path, archs: list[dict[str, Any]], held: HeldOutSet, cache_path: Path) -> dict[str, np.ndarray]:
    """Per-clip held-out losses ``(clips, timesteps)`` of each arch (by arch id) from a run's EMA weights (cached)."""
    import torch

    from sned.supernet.checkpoint import load_supernet
    from sned.supernet.diffusion import GaussianDiffusion
    from sned.supernet.validation import held_out_losses

    cached = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    ckpt = None
    out = {}
    for arch in archs:
        key = arch_id(arch)
        if key not in cached:
            if ckpt is None:
                net, info = load_supernet(folder)
                ckpt = (net, GaussianDiffusion(info["config"]["prediction"]))
            net, diffusion = ckpt
            with torch.inference_mode():
                losses = held_out_losses(lambda z, t, y, a=arch, m=net: m(z, t, a, labels=y), held.at(arch["res"]),
                                         diffusion)
            cached[key] = losses.tolist()
            cache_path.write_text(json.dumps(cached))
        out[key] = np.asarray(cached[key])
    return out


def score(losses: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Geometric mean over timesteps of the mean loss over clips; ``rows`` ``(B, clips)`` bootstrap index draws."""
    if rows is None:
        return np.exp(np.log(losses.mean(axis=0)).mean())
    return np.exp(np.log(losses[rows].mean(axis=1)).mean(axis=1))  # (B,)


@dataclass
class Ratio:
    label: str
    value: float
    low: float
    high: float

    def cell(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def ratio(label: str, a: list[np.ndarray], b: list[np.ndarray], rows: np.ndarray) -> Ratio:
    """Score ratio of arm ``a`` to arm ``b`` (each a list of per-clip loss arrays whose scores are averaged in logs)."""
    def combined(arm: list[np.ndarray], r: np.ndarray | None) -> np.ndarray:
        return np.exp(np.mean([np.log(score(x, r)) for x in arm], axis=0))

    boot = combined(a, rows) / combined(b, rows)
    low, high = np.percentile(boot, [2.5, 97.5])
    return Ratio(label, float(combined(a, None) / combined(b, None)), float(low), float(high))


def verdict_helps(r: Ratio) -> str:
    return "holds" if r.high < 1.0 else "does not hold" if r.low > 1.0 else "inconclusive"


def verdict_comparable(rs: list[Ratio]) -> str:
    if all(r.high < COMPARABLE for r in rs):
        return "holds"
    return "does not hold" if any(r.low > COMPARABLE for r in rs) else "inconclusive"


def steps_to_reach(rows: list[dict[str, Any]], subnet: str, threshold: float, res: int = 32, t: int = 200) -> int | None:
    """The first validation step at which ``subnet``'s held-out loss at ``t`` is at or below ``threshold``."""
    for row in sorted(rows, key=lambda r: r["step"]):
        if row["step"] > 0 and row["subnet"] == subnet and row["res"] == res and row["t"] == t and row["loss"] <= threshold:
            return int(row["step"])
    return None


# ----------------------------------------------------------------------------- the claims


def measure(claims: list[str], out: Path, data: str, boot: int) -> dict[str, Any]:
    from sned.supernet.train import read_validation

    base_experiment = experiment_for(Run("base"), 1000)
    space32 = SearchSpace(parse_space_spec(base_experiment["space"], "claims"), "claims")
    space64 = SearchSpace(parse_space_spec(base_experiment["space"] | {"resolutions": [32, 64]}, "claims"), "claims")
    held = HeldOutSet(data, space32.spec.frames)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, VAL_VIDEOS, size=(boot, VAL_VIDEOS))
    runs = out / "runs"

    def losses(run: str, archs: list[dict[str, Any]]) -> list[np.ndarray]:
        got = evaluate(runs / run, archs, held, runs / f"{run}.heldout.json")
        return [got[arch_id(a)] for a in archs]

    ends = [space32.largest(32), space32.smallest(32)]
    result: dict[str, Any] = {}
    if "warmup" in claims:
        with_, without = losses("base", ends), losses("no-warmup", ends)
        rs = [ratio(name, [a], [b], rows) for name, a, b in zip(("largest", "smallest"), with_, without, strict=True)]
        both = ratio("largest and smallest", with_, without, rows)
        curves = {run: read_validation(runs / run) for run in ("base", "no-warmup")}
        reach = {}
        for subnet in ("largest", "smallest"):
            finals = [max((r for r in curves[run] if r["subnet"] == subnet and r["t"] == 200), key=lambda r: r["step"])["loss"]
                      for run in curves]
            threshold = 1.05 * max(finals)
            reach[subnet] = {"threshold": threshold, **{run: steps_to_reach(curves[run], subnet, threshold) for run in curves}}
        result["warmup"] = {"ratios": rs + [both], "verdict": verdict_helps(both), "steps_to_reach": reach,
                            "question": "with / without the sampling warm-up"}
    if "dynamic" in claims:
        probes = _bucket_archs(space32, 32)
        rs = []
        for arm in ("base", "sandwich"):
            for q, archs in probes.items():
                rs.append(ratio(f"{'dynamic' if arm == 'base' else 'dynamic + sandwich'} / uniform, {q}",
                                losses(arm, archs), losses("uniform", archs), rows))
        lowest = rs[0]
        result["dynamic"] = {"ratios": rs, "verdict": verdict_helps(lowest),
                             "question": "dynamic-cost / uniform sampling, per FLOPs quartile (Q1 cheapest)"}
    if "sharing" in claims:
        rs = []
        for name, arch in _sharing_archs(space32).items():
            rs.append(ratio(f"inherited / alone, {name}", losses("base", [arch]), losses(f"static-{name}", [arch]), rows))
        result["sharing"] = {"ratios": rs, "verdict": verdict_comparable(rs),
                             "question": "subnet inherited from the supernet / the same net trained alone"}
    if "superposition" in claims:
        rs = []
        for res, alone in ((32, "only-32"), (64, "only-64")):
            archs = [space64.largest(res), space64.smallest(res)]
            rs.append(ratio(f"32+64 supernet / {res} px alone", losses("super-32-64", archs), losses(alone, archs), rows))
        result["superposition"] = {"ratios": rs, "verdict": verdict_comparable(rs),
                                   "question": "one supernet over 32+64 px / one per resolution, equal total steps"}
    if "image" in claims:
        with_, without = losses("base", ends), losses("no-image", ends)
        rs = [ratio(name, [a], [b], rows) for name, a, b in zip(("largest", "smallest"), with_, without, strict=True)]
        both = ratio("largest and smallest", with_, without, rows)
        result["image"] = {"ratios": rs + [both], "verdict": verdict_helps(both),
                           "question": "with / without the image pre-training stage, equal total steps"}
    return result


# ----------------------------------------------------------------------------- report


def _figures(result: dict[str, Any], out: Path) -> list[Any]:
    import plotly.graph_objects as go

    from sned.supernet.train import read_validation

    figures = []
    for claim, runs in (("warmup", ("base", "no-warmup")), ("image", ("base", "no-image"))):
        if claim not in result:
            continue
        fig = go.Figure()
        for run in runs:
            rows = read_validation(out / "runs" / run)
            for subnet, dash in (("largest", "solid"), ("smallest", "dot")):
                pts = sorted((r["step"], r["loss"]) for r in rows
                             if r["subnet"] == subnet and r["t"] == 200 and r["res"] == 32 and r["step"] > 0)
                fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                name=f"{run}, {subnet}", line={"dash": dash})
        fig.update_layout(title=f"{claim}: held-out loss at t=200 (32 px) over training", xaxis_title="step",
                          yaxis_title="held-out loss (v units)", yaxis_type="log")
        figures.append(fig)
    for claim, entry in result.items():
        rs = [Ratio(**r) if isinstance(r, dict) else r for r in entry["ratios"]]
        fig = go.Figure(go.Bar(x=[r.label for r in rs], y=[r.value for r in rs],
                               error_y={"type": "data", "symmetric": False, "array": [r.high - r.value for r in rs],
                                        "arrayminus": [r.value - r.low for r in rs]}))
        line = COMPARABLE if claim in ("sharing", "superposition") else 1.0
        fig.add_hline(y=line, line_dash="dash", annotation_text=f"{line:g}")
        fig.update_layout(title=f"{claim}: {entry['question']} (verdict: {entry['verdict']})",
                          yaxis_title="held-out score ratio (95 % bootstrap CI)")
        figures.append(fig)
    return figures


def write_report(result: dict[str, Any], out: Path, meta: dict[str, Any]) -> Path:
    import plotly.io as pio

    parts = [pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(_figures(result, out))]
    rows = "".join(f"<tr><td>{html.escape(c)}</td><td>{html.escape(e['question'])}</td>"
                   f"<td>{html.escape('; '.join(f'{r.label}: {r.cell()}' for r in e['ratios']))}</td>"
                   f"<td>{html.escape(e['verdict'])}</td></tr>" for c, e in result.items())
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>sned: the paper's claims at small scale</title>"
            "</head><body><h1>The paper's claims at small scale</h1>"
            f"<p>{html.escape(json.dumps(meta))}</p><table border='1' cellpadding='4'>"
            "<tr><th>claim</th><th>comparison</th><th>ratio [95 % CI]</th><th>verdict</th></tr>"
            f"{rows}</table>{''.join(parts)}</body></html>")
    path = out / "claims.html"
    path.write_text(page)
    return path


def print_table(result: dict[str, Any]) -> None:
    """The README table (markdown) and the warm-up's steps to a fixed loss."""
    print("\n| claim | comparison | ratio [95 % CI] | verdict |\n|---|---|---|---|")
    for claim, entry in result.items():
        cells = "; ".join(f"{r.label}: {r.cell()}" for r in entry["ratios"])
        print(f"| {claim} | {entry['question']} | {cells} | {entry['verdict']} |")
    if "warmup" in result:
        for subnet, reach in result["warmup"]["steps_to_reach"].items():
            print(f"warm-up, steps for the {subnet} subnet to reach held-out t=200 loss {reach['threshold']:.4f}: "
                  f"with {reach['base']}, without {reach['no-warmup']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="a `sned data synth` folder (600 videos for the README figures); "
                        "without it, print the stored results")
    parser.add_argument("--out", type=Path, default=Path("runs/claims"))
    parser.add_argument("--steps", type=int, default=1000, help="steps per run (the per-resolution runs get half)")
    parser.add_argument("--claims", default=",".join(CLAIMS))
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples of the held-out clips")
    parser.add_argument("--report-only", action="store_true", help="do not train; report the stored runs")
    args = parser.parse_args()
    if args.data is None:
        stored = json.loads((Path(__file__).parent / "claims" / "claims.json").read_text())
        print(f"stored results ({stored['meta']['command']}, {stored['meta']['date']}; rerun with --data DATA):")
        print_table({c: e | {"ratios": [Ratio(**r) for r in e["ratios"]]} for c, e in stored["claims"].items()})
        return
    claims = [c for c in args.claims.split(",") if c]
    unknown = sorted(set(claims) - set(CLAIMS))
    if unknown:
        raise SystemExit(f"unknown claims {unknown}; valid: {', '.join(CLAIMS)}")
    base = SearchSpace(parse_space_spec(experiment_for(Run("base"), args.steps)["space"], "claims"), "claims")
    seconds = {}
    if not args.report_only:
        for run in runs_for(claims, base):
            spent = train_run(run, args.steps, args.data, args.out)
            seconds[run.name] = round(spent, 1)
            print(f"{run.name}: " + (f"trained in {spent:.0f} s" if spent else "done already"), flush=True)
    result = measure(claims, args.out, args.data, args.boot)
    meta = {"command": "python benchmarks/claims.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                  (("data", args.data), ("steps", args.steps))),
            "steps": args.steps, "held_out_clips": VAL_VIDEOS, "bootstrap": args.boot, "train_seconds": seconds,
            "date": time.strftime("%Y-%m-%d")}
    serialisable = {c: e | {"ratios": [r.__dict__ for r in e["ratios"]]} for c, e in result.items()}
    (args.out / "claims.json").write_text(json.dumps({"meta": meta, "claims": serialisable}, indent=1))
    report = write_report(result, args.out, meta)
    print_table(result)
    print(f"report: {report}")
    if not math.isfinite(sum(r.value for e in result.values() for r in e["ratios"])):
        raise SystemExit("a ratio is not finite: a run diverged")


if __name__ == "__main__":
    main()
