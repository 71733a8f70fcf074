"""``sned-search`` / ``sned search``: Pareto-optimal subnets per resolution under a latency budget.

A thin wrapper: parse into a :class:`~sned.search.engine.SearchConfig`, call
:func:`~sned.search.engine.run_search`, write the run folder and its report, print the fronts.

Examples::

    sned-search --budget-ms 200 --res 128
    sned-search --budget-ms 4000 --steps 25 --res 64,128 --objectives fvd,latency,params --json
    sned-search --budget-ms 200 --predictor loss.npz --objectives loss,latency
    sned-search --budget-ms 200 --res all --method nsga2 --pop 64 --gens 100 --seed 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from sned.search.commands import SETTING_FLAGS as SEARCH_FLAGS
from sned.search.objectives import (
    DEFAULT_OBJECTIVES,
    DEFAULT_PREDICTORS,
    DEFAULT_TABLE,
    OBJECTIVES,
    QUALITY_LABELS,
    quality_columns,
)
from sned.supernet.base.errors import UserError

# How this CLI spells each setting (run_command phrases a SettingError with it): SearchConfig's, and --verify's.
SETTING_FLAGS = {**SEARCH_FLAGS, "verify": "--verify", "i3d": "--i3d", "data": "--data", "checkpoint": "--ckpt",
                 "address": "--address"}



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "examples:\n" + "\n".join(line for line in (__doc__ or "").splitlines() if "sned-search " in line)
    parser.add_argument("--experiment", default="tiny", help="bundled experiment name or a YAML path (default: tiny)")
    # Numbers are parsed by the config, not argparse, so bad values give one line, not usage + error.
    parser.add_argument("--budget-ms", default=None, metavar="MS",
                        help="latency budget of one denoising step (one UNet forward, batch 1); "
                             "with --steps N, of N steps (default: no budget)")
    parser.add_argument("--steps", default="1", metavar="N", help="denoising steps the budget covers (default: 1)")
    parser.add_argument("--res", default="all", metavar="RES",
                        help="resolution(s): 128, 64,128 or all (default: all); one front each")
    parser.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES), metavar="LIST",
                        help=f"comma-separated, all minimised; valid: {', '.join(OBJECTIVES)} "
                             f"(default: {','.join(DEFAULT_OBJECTIVES)}); fvd or loss must be what the "
                             "--predictor predicts (sned fit --target)")
    parser.add_argument("--method", default="auto", metavar="M",
                        help="auto (exhaustive where a resolution's space is small enough), nsga2 or exhaustive")
    parser.add_argument("--pop", default="64", metavar="N", help="NSGA-II population size (default: 64)")
    parser.add_argument("--gens", default="100", metavar="N",
                        help="NSGA-II generations at most; it stops earlier when the hypervolume stalls "
                             "for --patience generations (default: 100)")
    parser.add_argument("--patience", default="10", metavar="N", help="hypervolume-stagnation window (default: 10)")
    parser.add_argument("--seed", default="0", metavar="N", help="random seed; same seed, same front (default: 0)")
    parser.add_argument("--table", default=None, metavar="PATH",
                        help=f"latency table (default: the experiment's bundled {DEFAULT_TABLE})")
    parser.add_argument("--predictor", default=None, metavar="PATH",
                        help=f"accuracy predictor (default: the experiment's bundled {' or '.join(DEFAULT_PREDICTORS)})")
    parser.add_argument("--analytic", action="store_true",
                        help="score with the closed-form stand-in cost model (latency and FVD from analytic "
                             "FLOPs/params) instead of a table and predictor; for demos and tests")
    parser.add_argument("--out", default=None, metavar="DIR", help="run folder (default: runs/search-<timestamp>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    verify = parser.add_argument_group("verification (generates videos: needs a checkpoint, real videos, torch, Ray)")
    verify.add_argument("--verify", default=None, metavar="K",
                        help="measure the real sampled FVD of K members of each front (Ray Tune trials)")
    verify.add_argument("--ckpt", default=None, help="supernet checkpoint for --verify: a run folder, a checkpoint folder or a "
                        "bundled name (default: the experiment's bundled supernet, e.g. experiments/tiny/supernet)")
    verify.add_argument("--data", default=None, help="folder of real videos for --verify")
    verify.add_argument("--address", default=None, help="Ray cluster address for --verify (default: local Ray)")
    verify.add_argument("--i3d", default=None, help="I3D weights for --verify (default: $SNED_I3D_WEIGHTS or i3d-random)")
    verify.add_argument("--cpus-per-trial", default=1.0, type=float, help="Ray CPUs per verification trial")
    verify.add_argument("--gpus-per-trial", default=0.0, type=float, help="Ray GPUs per verification trial")


def _int_arg(value: str, flag: str, low: int) -> int:
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or int(text) < low:
        raise UserError(f"{flag} {value!r}: expected an integer >= {low}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    # Everything below loads pandas (and pymoo for NSGA-II): keep it out of argument parsing.
    from sned.search.engine import SearchConfig, run_search
    from sned.search.output import default_out_dir, prepare_out_dir, write_run
    from sned.search.report import write_report
    from sned.supernet.space import load_space

    config = SearchConfig(
        experiment=args.experiment, budget_ms=args.budget_ms, resolutions=args.res,
        steps=_int_arg(args.steps, "--steps", 1), objectives=args.objectives, method=args.method,
        pop_size=_int_arg(args.pop, "--pop", 4), generations=_int_arg(args.gens, "--gens", 1),
        patience=_int_arg(args.patience, "--patience", 1), seed=_int_arg(args.seed, "--seed", 0),
        table=args.table, predictor=args.predictor)
    verify_k = None if args.verify is None else _int_arg(args.verify, "--verify", 1)
    if verify_k is not None:
        if not args.ckpt:  # the experiment's bundled supernet, when it has one (tiny does)
            from sned.supernet.checkpoint import bundled_supernet

            bundled = bundled_supernet(Path(config.experiment).stem)
            args.ckpt = str(bundled) if bundled is not None else None
        for flag, value in (("--ckpt", args.ckpt), ("--data", args.data)):
            if not value:
                raise UserError(f"--verify needs {flag}")
        if not Path(args.data).exists():
            raise UserError(f"--data {args.data}: not found")
        from sned.supernet.checkpoint import resolve_checkpoint

        args.ckpt = str(resolve_checkpoint(args.ckpt))  # a run, a checkpoint folder or a bundled name
    out = Path(args.out) if args.out else default_out_dir()
    created = not out.exists()
    prepare_out_dir(out)  # fail before the search, not after it
    try:
        space = load_space(config.experiment)
        predictors = None
        if args.analytic:
            from sned.search.objectives import AnalyticPredictors

            predictors = AnalyticPredictors(space)
        result = run_search(config, predictors, space=space)
        write_run(result, out, command=["sned-search", *sys.argv[1:]])
        if verify_k is not None:
            from sned.search.verify import verify_run

            verified = verify_run(out, result.fronts, config.experiment, verify_k, args.ckpt, args.data,
                                  seed=config.seed, address=args.address, i3d=args.i3d,
                                  cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                                  progress=not args.json, target=result.target)
        report = write_report(out)
    except BaseException:
        if created:  # leave no empty run folder behind a failed search
            shutil.rmtree(out, ignore_errors=True)
        raise
    if args.json:
        print(json.dumps({**result.to_json(), "out": str(out)}))
        return 0
    _print_fronts(result)
    if verify_k is not None:
        target = result.target
        pred = quality_columns(target)[0]
        print(f"\nverification (measured {QUALITY_LABELS.get(target, target)} of front members):")
        for r in verified.to_dict("records"):
            print(f"  {r['res']:>4} px  {r['arch_id']:<10}  {r['latency_ms']:>8.1f} ms  predicted "
                  f"{_number(r[pred], target):>7}  measured {_number(r[f'{target}_measured'], target):>7}  "
                  f"({r['extractor']})")
    print(f"\nwrote {out}/: pareto.csv, pareto.json, settings.json, points.csv, history.csv")
    print(f"report: {report}")
    return 0


def _print_fronts(result) -> None:
    config = result.config
    steps = config.steps
    budget = "no budget" if config.budget_ms is None else (
        f"budget {config.budget_ms:g} ms" + (f" for {steps} steps" + (" and the decoder" if _latent(result) else
                                                                       f" ({config.budget_ms / steps:g} ms per step)")
                                             if steps > 1 else " per denoising step"))
    print(f"{result.space_name} on {result.device}: {budget}; objectives {', '.join(config.objectives)}")
    for res, front in result.fronts.items():
        st = result.stats[res]
        if st.method == "exhaustive":
            how = f"exact front (exhaustive: all {st.space_count:,} archs)"
        else:
            how = (f"NSGA-II front ({st.unique:,} of {st.space_count:,} archs in {st.generations} generations, "
                   f"stopped: {st.stopped})")
        decoder = st.decoder_ms
        print(f"\n{res} px: {how}; {len(front)} subnets, fastest {st.fastest_ms:.1f} ms"
              + (f" per step; decoder {decoder:.1f} ms per video (measured; in ms/run)" if decoder else ""))
        if not len(front):
            print(f"  no subnet meets the budget at {res} px")
            continue
        run_col = steps > 1 or decoder > 0
        pred, spread = quality_columns(result.target)
        label = f"predicted {QUALITY_LABELS.get(result.target, result.target)}"
        print(f"  {'#':>3}  {'arch id':<10}  {'ms/step':>8}" + (f"  {'ms/run':>8}" if run_col else "")
              + f"  {label:>15}  {'params M':>8}  {'GFLOPs':>7}  arch")
        for k, r in enumerate(front.to_dict("records"), 1):
            ms = r["latency_ms"]
            print(f"  {k:>3}  {r['arch_id']:<10}  {ms:>8.1f}" + (f"  {ms * steps + decoder:>8.0f}" if run_col else "")
                  + f"  {_number(r[pred], result.target):>7} ± {_number(r[spread], result.target):<5}  {r['params'] / 1e6:>8.2f}  "
                  f"{r['gflops']:>7.2f}  {r['summary']}")
    for note in result.notes:
        print(f"note: {note}")


def _latent(result) -> bool:
    return any(st.decoder_ms for st in result.stats.values())


def _number(value: float, target: str) -> str:
    """A predicted quality for the tables: FVD as ``123.4``, other targets (a loss ~0.05) to 4 significant digits."""
    return f"{value:.1f}" if target == "fvd" else f"{value:.4g}"
