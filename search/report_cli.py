"""``sned report RUN``: rebuild a search run's ``report.html`` from the files in its folder."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder written by sned-search (e.g. runs/search-20250101-120000)")


def run(args: argparse.Namespace) -> int:
    from sned.search.report import write_report

    print(write_report(args.run))
    return 0
