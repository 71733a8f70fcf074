"""The search service (``sned serve``): the subnet search as an HTTP API, FastAPI run by uvicorn or Ray Serve.

The service answers the same questions as ``sned-search --json``, over the same
:func:`~sned.search.engine.run_search`, for clients that cannot run Python::

    sned serve                                   # http://127.0.0.1:8000/docs
    curl -s localhost:8000/experiments
    curl -s localhost:8000/search -H 'content-type: application/json' \\
         -d '{"experiment": "tiny", "budget_ms": 200, "resolutions": [128]}'
    curl -s localhost:8000/subnets/<arch_id>
    SNED_TOKEN=secret sned serve --host 0.0.0.0  # any other address needs a token
    sned serve --ray --replicas 2                # the same app as a Ray Serve deployment

Endpoints (OpenAPI schema at ``/openapi.json``; docs at ``/docs`` (Swagger UI) and ``/redoc``, whose
scripts and styles the app serves itself from the ``fastapi-offline`` package, so they work offline):

* ``GET /health``: liveness, plus counters (searches run, cache size); never needs a token.
* ``GET /experiments``: the bundled experiments with their resolutions, latency tables (devices)
  and accuracy predictors.
* ``POST /search``: the settings of ``sned-search``, named as in
  :class:`~sned.search.engine.SearchConfig` (``budget_ms``, ``resolutions``, ``pop_size``,
  ``generations``, ...); answers its ``--json`` object (no ``out`` key: the service writes no run
  folder). The header ``X-Sned-Cache`` says ``hit`` (answered from the cache), ``shared`` (joined an
  identical search in flight) or ``miss`` (searched). **Deprecated:** the names of sned 0.1.0,
  ``res``, ``pop`` and ``gens``, are still accepted until sned 0.2; such an answer carries a
  ``Warning`` header naming the new field.
* ``GET /subnets/{arch_id}``: an arch (from a search this server ran, else found by enumerating a
  small space), its predicted metrics per device and predictor, and how to export it.

Safety: requests name experiments, devices and predictors by registered name only (a name matches
:data:`~sned.search.serve_schema.NAME_PATTERN`, so ``../x`` and ``/etc/x`` are a 422 before any
lookup); the files opened are the ones discovered in the experiments folder, never a path from a
request. Bad input is a 4xx whose JSON body (:class:`ErrorBody`) names the field and the valid
values; a search runs in a worker thread, so ``/health`` answers while it runs.

Memory is bounded: finished answers, the archs of past fronts (``known_archs``), the arch-id
indexes of enumerated spaces (``space_indexes``) and loaded predictors are each an LRU cache.

The parts, one concept per module (this one gathers their public names):

- :mod:`~sned.search.serve_schema`: request and response models, :class:`RequestError`.
- :mod:`~sned.search.serve_registry`: the experiments folder (:class:`Registry`) and file hashes.
- :mod:`~sned.search.serve_cache`: :class:`LRU` and :class:`SearchCache` (answers done and in flight).
- :mod:`~sned.search.serve_service`: :class:`SearchService`, what the routes call.
- :mod:`~sned.search.serve_app`: :func:`create_app`, the FastAPI app.
- :mod:`~sned.search.serve_cli`: the ``sned serve`` command; :mod:`~sned.search.serve_ray`: ``--ray``.
"""

from sned.search.serve_app import CACHE_HEADER, create_app
from sned.search.serve_cache import LRU, SearchCache
from sned.search.serve_registry import Experiment, Registry
from sned.search.serve_schema import ErrorBody, RequestError, SearchAnswer, SearchRequest, SubnetInfo
from sned.search.serve_service import SEARCHES_PER_ARCH, SearchService

__all__ = ["CACHE_HEADER", "LRU", "SEARCHES_PER_ARCH", "ErrorBody", "Experiment", "Registry", "RequestError",
           "SearchAnswer", "SearchCache", "SearchRequest", "SearchService", "SubnetInfo", "create_app"]
