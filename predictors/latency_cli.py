"""``sned latency measure|validate|show``: per-block latency tables of a search space on a device.

Examples::

    sned latency measure tiny --device cpu --threads 1 --clock cpu --out experiments/tiny/latency-cpu.parquet
    sned latency measure pixel-1.6b --device cuda --dtype bf16 --device-name h200 --out latency-h200.parquet
    sned latency validate tiny --table experiments/tiny/latency-cpu.parquet --n 30 --html parity.html
    sned latency show experiments/tiny/latency-cpu.parquet

``measure`` resumes: run it again on the same ``--out`` and it measures only the missing rows.
``validate`` times random extracted subnets end to end (largest and smallest included), prints the
errors of the table's predictions, fits the end-to-end correction ``scale * block_sum + offset_ms``
and stores it in the table (``--no-store`` to leave the file as it is).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from sned.supernet.base.errors import UserError

# How this CLI spells the MeasureSettings fields (and validate_table's n) that library errors name.
SETTING_FLAGS = {"device": "--device", "dtype": "--dtype", "batch": "--batch", "threads": "--threads",
                 "repeats": "--repeats", "warmup": "--warmup", "seed": "--seed", "clock": "--clock",
                 "statistic": "--statistic", "n": "--n"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "examples:\n" + "\n".join(line for line in (__doc__ or "").splitlines() if "sned latency " in line)
    sub = parser.add_subparsers(dest="action", required=True, metavar="{measure,validate,show}")

    m = sub.add_parser("measure", help="measure every block shape of a space into a table (resumable)")
    m.add_argument("experiment", help="bundled experiment name (tiny) or a YAML path")
    m.add_argument("--out", required=True, metavar="TABLE", help="parquet table to write (resumed if it exists)")
    _device_args(m)
    m.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16 (default: fp32)")
    m.add_argument("--res", default="all", metavar="RES", help="resolutions to cover: 64,128 or all (default)")
    m.add_argument("--batch", default="1", metavar="N", help="batch size (default: 1, one denoising step)")
    m.add_argument("--repeats", default="15", metavar="N", help="timed rounds per block (default: 15)")
    m.add_argument("--statistic", default="median", choices=("median", "min"),
                   help="what predictions sum: median, or min on a machine shared with busy processes "
                        "(both are stored; default: median)")
    m.add_argument("--warmup", default="3", metavar="N", help="untimed calls per block first (default: 3)")
    m.add_argument("--device-name", default=None, metavar="NAME",
                   help="device label stored in the table (default: from the hardware, e.g. cpu-amd-epyc)")
    m.add_argument("--max-rows", default=None, metavar="N", help="stop after N new rows (run again to go on)")
    m.add_argument("--fresh", action="store_true", help="start over instead of resuming an existing --out")
    m.add_argument("--seed", default="0", metavar="N", help="seed of weights, inputs and round order (default: 0)")
    m.add_argument("--vae", default=None, metavar="DIR",
                   help="latent experiments: the autoencoder whose decoder is timed as a fixed block "
                        "(default: the bundled experiment's vae/)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")

    v = sub.add_parser("validate", help="time random subnets end to end against a table; fit its correction")
    v.add_argument("experiment", help="bundled experiment name (tiny) or a YAML path")
    v.add_argument("--table", required=True, metavar="TABLE", help="the latency table to validate")
    v.add_argument("--n", default="30", metavar="N", help="subnets, largest and smallest included (default: 30)")
    v.add_argument("--device", default=None, help="cpu or cuda[:i] (default: the table's device type)")
    v.add_argument("--threads", default=None, metavar="N", help="CPU threads (default: the table's)")
    v.add_argument("--repeats", default="9", metavar="N", help="timed rounds per subnet (default: 9)")
    v.add_argument("--warmup", default="2", metavar="N", help="untimed calls per subnet first (default: 2)")
    v.add_argument("--res", default="all", metavar="RES", help="draw subnets at these resolutions (default: the table's)")
    v.add_argument("--seed", default="0", metavar="N", help="which random subnets (default: 0)")
    v.add_argument("--html", default=None, metavar="PATH", help="write a parity plot (self-contained plotly HTML)")
    v.add_argument("--no-store", action="store_true", help="do not write the fitted correction into the table")
    v.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("show", help="print a table's provenance, rows per kind and correction")
    s.add_argument("table", metavar="TABLE")
    s.add_argument("--experiment", default=None,
                   help="also predict the space's largest/smallest subnets (default: the table's space, if bundled)")
    s.add_argument("--json", action="store_true", help="print the metadata as JSON")


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:INDEX (default: cpu)")
    p.add_argument("--threads", default=None, metavar="N",
                   help="CPU threads, set with torch.set_num_threads and recorded (default: every core available)")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="wall: elapsed time (CUDA events on GPU); cpu: process CPU time, for a CPU shared with "
                        "other busy processes (needs --threads 1) (default: wall)")


def _int(value: str | None, flag: str, low: int) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) < low:
        raise UserError(f"{flag} {value!r}: expected an integer >= {low}")
    return int(text)


def _resolutions(value: str, space) -> tuple[int, ...] | None:
    if value.strip().lower() == "all":
        return None
    out = []
    for part in value.split(","):
        res = _int(part, "--res", 1)
        if res not in space.resolutions:
            raise UserError(f"--res {res}: not a resolution of space {space.name!r}; valid: {list(space.resolutions)}")
        out.append(res)
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    return {"measure": _measure, "validate": _validate, "show": _show}[args.action](args)


def _command() -> str:
    return "sned latency " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["latency"] \
        else " ".join(shlex.quote(a) for a in sys.argv)


# ----------------------------------------------------------------------------- measure


def _measure(args: argparse.Namespace) -> int:
    from sned.supernet.space import load_space

    space = load_space(args.experiment)
    resolutions = _resolutions(args.res, space)
    threads = _int(args.threads, "--threads", 1)
    from sned.predictors.latency_measure import (  # torch: after the cheap checks
        MeasureSettings,
        measure_table,
    )

    settings = MeasureSettings(device=args.device, dtype=args.dtype, batch=_int(args.batch, "--batch", 1),
                               threads=threads, repeats=_int(args.repeats, "--repeats", 1),
                               warmup=_int(args.warmup, "--warmup", 0), device_name=args.device_name,
                               seed=_int(args.seed, "--seed", 0), clock=args.clock, statistic=args.statistic)
    t0 = time.perf_counter()
    result = measure_table(space, args.out, settings, resolutions=resolutions,
                           max_rows=_int(args.max_rows, "--max-rows", 1), fresh=args.fresh,
                           experiment=args.experiment, command=_command(), progress=not args.no_progress)
    table = result.table
    meta = table.meta
    state = "complete" if result.complete else "PARTIAL (run the same command again to resume)"
    print(f"latency table {table.path}: {len(table)} rows, {state}")
    print(f"  space {space.name} (hash {space.hash}), device {table.device}, dtype {meta['dtype']}, "
          f"batch {meta['batch']}, threads {meta['threads']}, clock {meta['clock']}, statistic {table.statistic}, "
          f"torch {meta['torch_version']}")
    print(f"  measured {result.measured} rows now, {result.skipped} already there (resumed); "
          f"elapsed {time.perf_counter() - t0:.1f} s")
    if result.complete and space.spec.latent is not None:  # the decoder: a fixed block per resolution
        from sned.predictors.latency_decoder import measure_decoder
        from sned.supernet.latent import bundled_autoencoder
        from sned.supernet.vae_load import load_autoencoder

        folder = args.vae or bundled_autoencoder(space.name)
        if folder is None:
            raise UserError(f"experiment {space.name!r} is a latent space: pass --vae DIR to measure its decoder")
        table = measure_decoder(table.path, space, load_autoencoder(folder), repeats=settings.repeats,
                                warmup=settings.warmup, resolutions=resolutions, seed=settings.seed,
                                progress=not args.no_progress)
        print(_decoder_line(table))
    if result.complete:
        _print_extremes(table, space, resolutions or space.resolutions)
    return 0


def _decoder_line(table) -> str:
    """A latent table's decoder entry: its autoencoder and ms per video at each resolution (the table's statistic)."""
    decoder = table.decoder
    return (f"  decoder        {decoder['autoencoder']['identity']}: "
            + ", ".join(f"{r} px {table.decoder_ms(int(r)):.1f} ms" for r in decoder["median_ms"]) + " per video")


def _print_extremes(table, space, resolutions) -> None:
    for res in resolutions:
        ms = table.predict(space, [space.largest(res), space.smallest(res)])
        print(f"  predicted at {res} px: largest {ms[0]:.1f} ms, smallest {ms[1]:.1f} ms")


# ----------------------------------------------------------------------------- validate


def _validate(args: argparse.Namespace) -> int:
    from sned.predictors.latency import LatencyTable
    from sned.supernet.space import arch_id, arch_summary, load_space

    space = load_space(args.experiment)
    table = LatencyTable.load(args.table, space)
    resolutions = _resolutions(args.res, space)
    n = _int(args.n, "--n", 3)
    threads = _int(args.threads, "--threads", 1)
    from sned.predictors.latency_validate import parity_html, store_validation, validate_table

    had_correction = bool(table.meta.get("correction", {}).get("n"))
    result = validate_table(space, table, n=n, seed=_int(args.seed, "--seed", 0), device=args.device,
                            threads=threads, repeats=_int(args.repeats, "--repeats", 1),
                            warmup=_int(args.warmup, "--warmup", 0), resolutions=resolutions,
                            progress=not args.no_progress)
    figures = {"table": result.metrics(result.table_pred), "block_sum": result.metrics(result.block_sum),
               "corrected_loo": result.metrics(result.loo)}
    stored, refusal = False, ""
    if not args.no_store:
        try:  # an implausible fit is reported, not stored; the figures below are still worth printing
            table = store_validation(table, result, command=_command())
            stored = True
        except UserError as exc:
            refusal = str(exc)
            print(f"sned latency: warning: {refusal}", file=sys.stderr)
    if args.html:
        parity_html(result, args.html, title=f"{space.name} on {table.device}: predicted vs measured latency")
    if args.json:
        print(json.dumps({"table": str(table.path), "device": table.device, "n": len(result.archs),
                          "figures": figures, "correction": {"scale": result.scale, "offset_ms": result.offset_ms},
                          "stored": stored,
                          "statistic": table.statistic,
                          "subnets": [{"arch_id": arch_id(a), "res": a["res"], "measured_ms": float(m),
                                       "block_sum_ms": float(b), "predicted_ms": float(p), "loo_ms": float(lo)}
                                      for a, m, b, p, lo in zip(result.archs, result.measured, result.block_sum,
                                                                result.table_pred, result.loo, strict=True)]},
                         indent=2))
        return 0
    print(f"{'arch id':<10}  {'subnet':<28} {'measured':>9} {'iqr':>6} {'block sum':>9} {'table':>8} "
          f"{'err %':>6} {'LOO fit':>8} {'err %':>6}")
    for a, m, q, b, p, lo in zip(result.archs, result.measured, result.iqr, result.block_sum, result.table_pred,
                                 result.loo, strict=True):
        print(f"{arch_id(a):<10}  {arch_summary(a):<28} {m:>9.1f} {q:>6.1f} {b:>9.1f} {p:>8.1f} "
              f"{100 * (p - m) / m:>+6.1f} {lo:>8.1f} {100 * (lo - m) / m:>+6.1f}")
    print(f"validated {len(result.archs)} extracted subnets on {table.device} ({result.settings['dtype']}, "
          f"batch {result.settings['batch']}, threads {result.settings['threads']}, clock {result.settings['clock']}, "
          f"statistic {table.statistic}) "
          f"in {result.elapsed_s:.0f} s")

    def line(name: str, m: dict) -> str:
        return (f"  {name:<34} median abs error {m['median_ape']:5.1f} %   p90 {m['p90_ape']:5.1f} %   "
                f"max {m['max_ape']:5.1f} %   Spearman {m['spearman']:.3f}")

    print(line("table prediction" + (" (stored correction)" if had_correction else " (uncorrected)"),
               figures["table"]))
    print(line("block sum (no correction)", figures["block_sum"]))
    print(line("refitted correction, leave-one-out", figures["corrected_loo"]))
    print(f"  correction: predicted = {result.scale:.4f} * block_sum {result.offset_ms:+.2f} ms "
          + ("(stored in the table)" if stored else "(not stored: --no-store)" if args.no_store
             else "(not stored: implausible fit)"))
    top = result.archs[0]["res"]
    print(f"  measured at {top} px: largest {result.measured[0]:.1f} ms, smallest {result.measured[1]:.1f} ms"
)
    if args.html:
        print(f"  parity plot: {args.html}")
    return 0


# ----------------------------------------------------------------------------- show


def _show(args: argparse.Namespace) -> int:
    from sned.predictors.latency import LatencyTable
    from sned.supernet.space import load_space

    table = LatencyTable.load(args.table)
    meta = table.meta
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    print(f"latency table {table.path}: {len(table)} rows{'' if meta.get('complete') else ' (PARTIAL)'}")
    for key in ("space", "space_hash", "experiment", "device", "device_detail", "dtype", "batch", "threads", "clock",
                "statistic",
                "frames", "resolutions", "repeats", "warmup", "torch_version", "date", "elapsed_s", "git_commit",
                "command"):
        print(f"  {key:<14} {meta.get(key)}")
    counts = table.rows.groupby("kind").size()
    print("  rows per kind  " + ", ".join(f"{k} {int(counts[k])}" for k in counts.index))
    rel = (table.rows["iqr_ms"] / table.rows["median_ms"].where(table.rows["median_ms"] > 0)).median()
    print(f"  median IQR/median over rows: {100 * rel:.1f} %")
    scale, offset = table.correction
    print(f"  correction     predicted = {scale:.4f} * block_sum {offset:+.2f} ms"
          + (f" (fitted on {meta['correction']['n']} subnets)" if meta.get("correction", {}).get("n") else
             " (none fitted: run sned latency validate)"))
    val = meta.get("validation")
    if val:
        loo = val["corrected_loo"]
        print(f"  validation     n={val['n']}: leave-one-out median abs error {loo['median_ape']:.1f} %, "
              f"p90 {loo['p90_ape']:.1f} %, Spearman {loo['spearman']:.3f}")
    if table.decoder:
        print(_decoder_line(table))
    experiment = args.experiment or meta.get("space")
    try:
        space = load_space(experiment)
    except (FileNotFoundError, ValueError):
        return 0  # not a bundled space and no --experiment: provenance only
    if space.hash == table.space_hash and meta.get("complete"):
        _print_extremes(table, space, [int(r) for r in meta.get("resolutions", space.resolutions)])
    elif args.experiment:
        table.check_space(space)
    return 0
