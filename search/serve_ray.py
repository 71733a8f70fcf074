"""``sned serve --ray``: the search service as a Ray Serve deployment, so it scales over a cluster.

Each replica builds its own app with :func:`sned.search.serve.create_app` (``@serve.ingress`` with a
builder, evaluated on the replica), so replicas share nothing but the experiments bundle: each has
its own cache, and Ray Serve's proxy spreads requests over them. Locally::

    sned serve --ray --replicas 2
    sned serve --ray --address auto --host 0.0.0.0 --token $SNED_TOKEN   # on a running cluster
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sned.supernet.ray_start import RaySession, start_ray

APP_NAME = "sned"
log = logging.getLogger(__name__)
_SESSION: RaySession | None = None  # the Ray that deploy() started, stopped by shutdown()


def deploy(*, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, address: str | None = None,
           replicas: int = 1, cache_size: int | None = None, max_searches: int = 2, max_evaluations: int | None = None,
           known_archs: int | None = None, space_indexes: int | None = None, root: str | Path | None = None,
           blocking: bool = True, announce: Callable[[str], None] | None = None) -> None:
    """Start (or join) Ray, start Serve's HTTP proxy on ``host:port`` and deploy the app.

    Args:
        host, port: where Serve's HTTP proxy listens (the caller checks the token rule for ``host``).
        token: passed to every replica's app (``Authorization: Bearer``).
        address: a Ray cluster address (``auto``, ``ray://host:10001``); None starts Ray locally.
        replicas: Serve replicas of the deployment.
        cache_size, max_searches, max_evaluations, known_archs, space_indexes: per replica, as in
            :func:`~sned.search.serve.create_app` (None: its default).
        root: the experiments folder; None: the installed bundle (it must exist on every node).
        blocking: wait until interrupted (the CLI); False returns once the app is running (tests).
        announce: called with a one-line "serving at ..." message once the app runs (the CLI prints it).
    """
    global _SESSION
    from ray import serve

    from sned.search.serve import create_app

    if _SESSION is None:
        # A private local Ray unless an address is given: never a head some `ray start` left here.
        _SESSION = start_ray(address, logging_level=logging.WARNING, log_to_driver=True)
    serve.start(http_options={"host": host, "port": port})
    limits = {name: value for name, value in (("cache_size", cache_size), ("max_evaluations", max_evaluations),
                                              ("known_archs", known_archs), ("space_indexes", space_indexes))
              if value is not None}
    folder = None if root is None else str(root)

    # A plain function (Serve tells a builder from an ASGI app by inspect.isfunction, so no partial):
    # each replica calls it once and serves its own app.
    def build_app():
        return create_app(root=folder, token=token, max_searches=max_searches, **limits)

    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": 1})
    @serve.ingress(build_app)
    class SnedSearch:
        """The FastAPI app of ``sned serve`` (all routes come from the builder)."""

    serve.run(SnedSearch.bind(), name=APP_NAME, route_prefix="/", blocking=False)
    log.info("sned serve (Ray Serve, %d replicas) on http://%s:%d", replicas, host, port)
    if announce is not None:
        announce(f"sned serve: Ray Serve, {replicas} replica(s), http://{host}:{port} (Ctrl-C stops)")
    if blocking:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            shutdown()


def shutdown() -> None:
    """Remove the deployment, stop Serve and stop (or disconnect from) the Ray that :func:`deploy` started."""
    global _SESSION
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        session, _SESSION = _SESSION, None
        if session is not None:
            session.stop()
        else:
            ray.shutdown()


__all__ = ["APP_NAME", "deploy", "shutdown"]
