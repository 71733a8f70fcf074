"""The FastAPI app of ``sned serve``: routes, the token check, error bodies and the OpenAPI schema.

Each route hands its work to :class:`~sned.search.serve_service.SearchService` (``app.state.service``);
every 4xx answer is an :class:`~sned.search.serve_schema.ErrorBody` naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam  # pathlib.Path keeps the plain name
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from sned.search.objectives import OBJECTIVES
from sned.search.serve_registry import Registry
from sned.search.serve_schema import (
    ARCH_ID_PATTERN,
    ERROR_RESPONSES,
    NAME_PATTERN,
    ErrorBody,
    Experiments,
    Health,
    RequestError,
    SearchAnswer,
    SearchRequest,
    SubnetInfo,
)
from sned.search.serve_service import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_KNOWN_ARCHS,
    DEFAULT_MAX_EVALUATIONS,
    DEFAULT_SPACE_INDEXES,
    SearchService,
)
from sned.supernet.base.errors import UserError
from sned.supernet.space import SpaceError

CACHE_HEADER = "X-Sned-Cache"


def create_app(*, root: str | Path | None = None, token: str | None = None, cache_size: int = DEFAULT_CACHE_SIZE,
               max_searches: int = 2, max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
               known_archs: int = DEFAULT_KNOWN_ARCHS, space_indexes: int = DEFAULT_SPACE_INDEXES) -> FastAPI:
    """The FastAPI app of ``sned serve`` (also what each Ray Serve replica builds).

    ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from the app itself (``fastapi-offline``'s
    bundled files under ``/static-offline-docs``), never from a CDN.

    Args:
        root: the experiments folder (``*.yaml`` + ``<name>/`` artifacts); None: the installed bundle.
        token: when set, every request but ``/health`` needs ``Authorization: Bearer <token>``.
        cache_size: finished search answers kept (LRU).
        max_searches: searches running at once; more wait their turn.
        max_evaluations: the most work one request may ask for, in evaluations (see
            :meth:`SearchService._check_cost`); a larger request is a 422 naming ``generations`` or ``method``.
        known_archs: archs of returned fronts kept for ``/subnets`` (LRU).
        space_indexes: arch-id indexes of enumerated spaces kept for ``/subnets`` (LRU).

    Returns:
        The app; ``app.state.service`` is its :class:`SearchService`.
    """
    from sned.supernet.base.provenance import package_version

    sned_version = package_version("sned", "0")  # "0": running from a bare checkout
    # FastAPIOffline: a plain FastAPI app whose docs pages load their assets from this server.
    # validatorUrl None: Swagger UI would otherwise offer to send the schema to an online validator.
    app = FastAPIOffline(title="sned search service", version=sned_version,
                         description="Pareto-optimal subnets of an elastic video-diffusion supernet under a latency "
                                     "budget: the HTTP form of `sned-search --json`.",
                         swagger_ui_parameters={"validatorUrl": None})
    service = SearchService(Registry(root), cache_size=cache_size, max_searches=max_searches,
                            max_evaluations=max_evaluations, known_archs=known_archs, space_indexes=space_indexes)
    app.state.service = service

    if token:
        expected = f"Bearer {token}".encode()

        @app.middleware("http")
        async def require_token(request: Request, call_next):
            if request.url.path != "/health":
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):  # constant time: no guessing by timing
                    body = ErrorBody(error="missing or wrong token: send 'Authorization: Bearer <token>'",
                                     field="Authorization")
                    return JSONResponse(body.model_dump(exclude_none=True), status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    def openapi() -> dict[str, Any]:
        # The schema lists the experiments registered when it is first built, so clients (and
        # schemathesis) see the valid names; requests are still checked against the live registry.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            props = schema["components"]["schemas"]["SearchRequest"]["properties"]
            registered = service.registry.experiments()
            props["experiment"]["enum"] = sorted(registered) or ["tiny"]
            resolutions: set[int] = set()
            for exp in registered.values():
                with contextlib.suppress(SpaceError, UserError, OSError, ValueError):  # listed with its error
                    resolutions.update(service.registry.space(exp).resolutions)
            for name, values in (("device", {d for e in registered.values() for d in e.tables}),
                                 ("predictor", {p for e in registered.values() for p in e.predictors}),
                                 ("resolutions", resolutions)):
                branch = props[name]["anyOf"][0]  # the non-null branch of "X | None"
                target = branch["items"] if name == "resolutions" else branch
                if values:
                    target["enum"] = sorted(values)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            # A model-level error (e.g. both names of a setting) names its field in ctx.
            loc = loc or [str(f) for f in [(err.get("ctx") or {}).get("field")] if f]
            errors.append({"field": ".".join(loc) or None, "message": err.get("msg", ""), "type": err.get("type", "")})
        field_name = errors[0]["field"] if errors else None
        valid = _valid_values(field_name, service)
        message = f"{field_name}: {errors[0]['message']}" if errors and field_name else (
            errors[0]["message"] if errors else "invalid request")
        body = ErrorBody(error=message, field=field_name, valid=valid,
                         errors=jsonable_encoder(errors) if len(errors) > 1 else None)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=422)

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(UserError)
    @app.exception_handler(SpaceError)
    async def user_error(request: Request, exc: Exception) -> JSONResponse:
        # A SettingError names its setting, which is the request field of the same name.
        return RequestError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                            getattr(exc, "setting", None), getattr(exc, "valid", None)).response()

    @app.get("/health", response_model=Health, summary="liveness and counters (no token needed)")
    async def health() -> Health:
        return Health(status="ok", searches_run=service.cache.searches_run, searches_in_flight=service.cache.in_flight,
                      cached=len(service.cache), known_archs=len(service._known),
                      space_indexes=len(service._indexes), uptime_s=time.monotonic() - service.started)

    @app.get("/experiments", response_model=Experiments, summary="registered experiments, devices, predictors")
    async def experiments() -> Experiments:
        return await asyncio.to_thread(service.experiments)  # loads YAMLs: keep it off the loop

    @app.post("/search", response_model=None, responses={200: {"model": SearchAnswer}, **ERROR_RESPONSES},
              summary="Pareto fronts per resolution (the JSON of sned-search --json)")
    async def search(req: SearchRequest) -> Response:
        t0 = time.perf_counter()
        body, how = await service.search(req)
        # Server-Timing: the service's own time (after parsing), to tell it from queueing in benchmarks.
        headers = {CACHE_HEADER: how, "Server-Timing": f"search;dur={(time.perf_counter() - t0) * 1e3:.3f}"}
        deprecation = req.deprecation_warning()  # the same answer for the old names, and a note
        if deprecation:
            headers["Warning"] = deprecation
        return Response(body, media_type="application/json", headers=headers)

    @app.get("/subnets/{arch_id}", response_model=SubnetInfo,
             responses={404: {"model": ErrorBody, "description": "unknown arch id"}, **ERROR_RESPONSES},
             summary="an arch, its predicted metrics per device, and how to export it")
    async def subnet(arch_id: Annotated[str, PathParam(pattern=ARCH_ID_PATTERN,
                                                       description="10 hex digits of the arch's canonical-JSON sha1")],
                     experiment: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None) -> SubnetInfo:
        return await asyncio.to_thread(service.subnet, arch_id, experiment)

    return app


def _valid_values(field_name: str | None, service: SearchService) -> list[Any] | None:
    """The accepted values of a field, for enum-like fields (generated from the registries)."""
    top = (field_name or "").split(".")[0]
    if top == "experiment":
        return sorted(service.registry.experiments())
    if top == "objectives":
        return list(OBJECTIVES)
    if top == "method":
        from sned.search.engine import METHODS

        return list(METHODS)
    return None


__all__ = ["CACHE_HEADER", "create_app"]
