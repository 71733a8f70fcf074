"""``sned serve``: the subnet search as an HTTP service (FastAPI, run by uvicorn; ``--ray`` for Ray Serve).

A thin wrapper: check the flags, then run :func:`~sned.search.serve_app.create_app` under uvicorn
or deploy it with :func:`sned.search.serve_ray.deploy`. Examples::

    sned serve                                   # http://127.0.0.1:8000/docs
    SNED_TOKEN=secret sned serve --host 0.0.0.0  # any other address needs a token
    sned serve --ray --replicas 2                # the same app as a Ray Serve deployment

The endpoints, the request fields and the safety rules: :mod:`sned.search.serve`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os

from sned.search.serve_service import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_KNOWN_ARCHS,
    DEFAULT_MAX_EVALUATIONS,
    DEFAULT_SPACE_INDEXES,
    GENERATION_COST,
)
from sned.supernet.base.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "examples:\n" + "\n".join(line for line in (__doc__ or "").splitlines() if "sned serve" in line)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1; any other needs --token or SNED_TOKEN)")
    parser.add_argument("--port", default=8000, type=int, help="port (default: 8000)")
    parser.add_argument("--token", default=None,
                        help="require 'Authorization: Bearer TOKEN' on every request but /health "
                             "(default: $SNED_TOKEN, preferable: a command line is visible to other users)")
    parser.add_argument("--cache-size", default=DEFAULT_CACHE_SIZE, type=int,
                        help=f"search answers kept (default: {DEFAULT_CACHE_SIZE})")
    parser.add_argument("--known-archs", default=DEFAULT_KNOWN_ARCHS, type=int,
                        help=f"archs of returned fronts kept for /subnets (default: {DEFAULT_KNOWN_ARCHS})")
    parser.add_argument("--space-indexes", default=DEFAULT_SPACE_INDEXES, type=int,
                        help=f"arch-id indexes of enumerated spaces kept for /subnets (default: {DEFAULT_SPACE_INDEXES})")
    parser.add_argument("--max-searches", default=2, type=int, help="searches running at once (default: 2)")
    parser.add_argument("--max-evaluations", default=DEFAULT_MAX_EVALUATIONS, type=int,
                        help=f"the most work one request may ask for, in evaluations: the arch count per "
                             f"exhaustive resolution, generations x max(pop_size, {GENERATION_COST}) per NSGA-II one "
                             f"(default: {DEFAULT_MAX_EVALUATIONS:,})")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    ray = parser.add_argument_group("Ray Serve")
    ray.add_argument("--ray", action="store_true", help="deploy with Ray Serve instead of a single uvicorn process")
    ray.add_argument("--address", default=None, help="Ray cluster address (default: start Ray locally)")
    ray.add_argument("--replicas", default=1, type=int, help="Ray Serve replicas (default: 1)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("SNED_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise UserError(f"--host {args.host}: binding a non-loopback address needs a token "
                        f"(--token TOKEN or SNED_TOKEN); clients then send 'Authorization: Bearer TOKEN'")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0-65535")
    for name in ("cache_size", "known_archs", "space_indexes", "max_searches", "max_evaluations", "replicas"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected an integer >= 1")
    from sned.search.serve_registry import Registry

    Registry().experiments()  # fail early (exit 2) if the bundle is missing, before binding a port
    if args.ray:
        import importlib.util

        if importlib.util.find_spec("grpc_reflection") is None or importlib.util.find_spec("ray.serve") is None:
            raise UserError("--ray needs Ray Serve's dependencies: pip install 'sned[cluster]' (or 'ray[serve]')")
        from sned.search.serve_ray import deploy

        deploy(host=args.host, port=args.port, token=token, address=args.address, replicas=args.replicas,
               cache_size=args.cache_size, max_searches=args.max_searches, max_evaluations=args.max_evaluations,
               known_archs=args.known_archs, space_indexes=args.space_indexes,
               announce=lambda line: print(line, flush=True))
        return 0
    import uvicorn

    from sned.search.serve_app import create_app

    uvicorn.run(create_app(token=token, cache_size=args.cache_size, max_searches=args.max_searches,
                           max_evaluations=args.max_evaluations, known_archs=args.known_archs,
                           space_indexes=args.space_indexes),
                host=args.host, port=args.port, log_level=args.log_level)
    return 0

