"""The request and response models of ``sned serve`` (pydantic; they make the OpenAPI schema).

The request speaks :class:`~sned.search.engine.SearchConfig`'s vocabulary (``resolutions``,
``pop_size``, ``generations``). The names of sned 0.1.0's API (``res``, ``pop``, ``gens``) are
still accepted until sned 0.2 (:data:`DEPRECATED_FIELDS`); an answer to a request that used one
carries a ``Warning`` header naming the replacement.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

from sned.search.objectives import DEFAULT_OBJECTIVES, OBJECTIVES

# A registered name: letters, digits, '_', '-', '.', not starting with '.', no '/' or '\'. Every
# file the service opens is found by listing the experiments folder, and a request only picks
# among those names, so this pattern is the first of two fences (the second: dictionary lookup).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ARCH_ID_PATTERN = r"^[0-9a-f]{10}$"
MAX_POP, MAX_GENS, MAX_STEPS = 512, 1000, 1000  # schema bounds; the server also caps the total work
ObjectiveName = Literal[tuple(OBJECTIVES)]  # type: ignore[valid-type]  # generated from the registry
# Old request field -> its SearchConfig name. Accepted until REMOVAL_VERSION, then an unknown field.
DEPRECATED_FIELDS = {"res": "resolutions", "pop": "pop_size", "gens": "generations"}
REMOVAL_VERSION = "0.2"


class SearchRequest(BaseModel):
    """The body of ``POST /search``: the settings of ``sned-search``, by :class:`SearchConfig` name (names, never paths).

    Deprecated: ``res``, ``pop`` and ``gens`` (the names of sned 0.1.0) are still accepted for
    ``resolutions``, ``pop_size`` and ``generations`` until sned 0.2; sending both names of one
    setting is a 422.
    """

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"experiment": "tiny", "budget_ms": 200, "resolutions": [128], "analytic": True},
        {"experiment": "tiny", "budget_ms": 4000, "steps": 25, "resolutions": [64, 128],
         "objectives": ["fvd", "latency"]}]})

    experiment: str = Field("tiny", pattern=NAME_PATTERN, description="a registered experiment (GET /experiments)")
    device: str | None = Field(None, pattern=NAME_PATTERN,
                               description="latency table by device name (latency-<device>.parquet); "
                                           "default: cpu, else the experiment's first table")
    predictor: str | None = Field(None, pattern=NAME_PATTERN,
                                  description="accuracy predictor by file name (e.g. predictor.npz); "
                                              "default: the experiment's bundled one")
    analytic: bool = Field(False, description="score with the closed-form stand-in cost model instead of "
                                              "a table and predictor (like sned-search --analytic)")
    budget_ms: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="latency budget of `steps` denoising steps, ms; null: none")
    resolutions: list[Annotated[int, Field(gt=0)]] | None = Field(
        None, min_length=1, max_length=16, description="resolutions in px; null: all (deprecated name: res)")
    objectives: list[ObjectiveName] = Field(list(DEFAULT_OBJECTIVES), min_length=2,  # type: ignore[valid-type]
                                            max_length=len(OBJECTIVES))
    method: Literal["auto", "nsga2", "exhaustive"] = "auto"  # engine.METHODS (not imported: it loads pandas)
    pop_size: int = Field(64, ge=4, le=MAX_POP, description="NSGA-II population size (deprecated name: pop)")
    generations: int = Field(100, ge=1, le=MAX_GENS,
                             description="NSGA-II generations at most (deprecated name: gens)")
    patience: int = Field(10, ge=1, le=MAX_GENS, description="hypervolume-stagnation window")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    steps: int = Field(1, ge=1, le=MAX_STEPS, description="denoising steps the budget covers")

    _deprecated: tuple[str, ...] = PrivateAttr(default=())  # the old field names this request used

    @model_validator(mode="wrap")
    @classmethod
    def _accept_deprecated_names(cls, data: Any, handler):
        used: tuple[str, ...] = ()
        if isinstance(data, dict):
            used = tuple(old for old in DEPRECATED_FIELDS if old in data)
            for old in used:
                new = DEPRECATED_FIELDS[old]
                if new in data:  # ctx["field"]: the app's error handler names it, as for any field
                    raise PydanticCustomError("deprecated_name_conflict",
                                              "{old} is the deprecated name of {new}; send only {new}",
                                              {"old": old, "new": new, "field": old})
            data = {DEPRECATED_FIELDS.get(key, key): value for key, value in data.items()}
        model = handler(data)
        model._deprecated = used
        return model

    def deprecation_warning(self) -> str | None:
        """The ``Warning`` header value for a request that used deprecated names, else None."""
        if not self._deprecated:
            return None
        pairs = ", ".join(f"{old} -> {DEPRECATED_FIELDS[old]}" for old in self._deprecated)
        return f'299 - "deprecated request fields ({pairs}); the old names go in sned {REMOVAL_VERSION}"'


class ErrorBody(BaseModel):
    """Every 4xx answer: what was wrong, with which field, and what would be accepted."""

    error: str
    field: str | None = None
    valid: list[Any] | None = None
    errors: list[dict[str, Any]] | None = None  # every validation error, when there were several


class FrontMember(BaseModel):
    """A front member; the predicted quality is ``fvd_pred``/``fvd_std`` or, for a predictor fit on the
    held-out loss (``target`` of the answer), ``loss_pred``/``loss_std``."""

    arch_id: str
    arch: dict[str, Any]
    latency_ms: float
    fvd_pred: float | None = None
    fvd_std: float | None = None
    loss_pred: float | None = None
    loss_std: float | None = None
    params: int
    gflops: float


class SearchAnswer(BaseModel):
    """``sned-search --json`` without ``out``: fronts per resolution (keys are px as strings)."""

    experiment: str
    space: str
    space_hash: str
    device: str
    target: str = Field("fvd", description="what the accuracy predictor predicts: fvd or loss "
                                           "(names the members' <target>_pred columns)")
    budget_ms: float | None
    steps: int
    objectives: list[str]
    method: str
    methods: dict[str, str]
    fronts: dict[str, list[FrontMember]]


class Health(BaseModel):
    status: Literal["ok"]
    searches_run: int
    searches_in_flight: int
    cached: int
    known_archs: int = Field(description="archs of past fronts kept for /subnets (bounded, LRU)")
    space_indexes: int = Field(description="arch-id indexes of enumerated spaces kept (bounded, LRU)")
    uptime_s: float


class ExperimentInfo(BaseModel):
    name: str
    space: str | None = None
    space_hash: str | None = None
    resolutions: list[int] = []
    frames: int | None = None
    size: int | None = None
    devices: list[str] = []
    default_device: str | None = None
    predictors: list[str] = []
    default_predictor: str | None = None
    error: str | None = None  # an experiment whose YAML does not load is listed with the reason


class Experiments(BaseModel):
    experiments: list[ExperimentInfo]


class SubnetInfo(BaseModel):
    arch_id: str
    experiment: str
    arch: dict[str, Any]
    summary: str
    res: int
    params: int
    gflops: float
    latency_ms: dict[str, float | None] = Field(description="predicted ms of one denoising step per device")
    fvd: dict[str, dict[str, float] | None] = Field(description="predicted FVD mean/std per predictor")
    errors: dict[str, str] = Field(default_factory=dict, description="tables/predictors that could not score it")
    found_in: Literal["search", "space"]
    searches: list[dict[str, Any]] = Field(default_factory=list, description="requests whose front holds it")
    export_command: str
    note: str = ""


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {422: {"model": ErrorBody, "description": "bad request"}}


class RequestError(Exception):
    """A bad request: answered with ``status`` and an :class:`ErrorBody`."""

    def __init__(self, message: str, field: str | None = None, valid: list[Any] | None = None, status: int = 422):
        super().__init__(message)
        self.field, self.valid, self.status = field, valid, status

    def response(self) -> JSONResponse:
        body = ErrorBody(error=str(self), field=self.field, valid=self.valid)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=self.status)


__all__ = ["ARCH_ID_PATTERN", "DEPRECATED_FIELDS", "ERROR_RESPONSES", "MAX_GENS", "MAX_POP", "MAX_STEPS", "NAME_PATTERN",
           "REMOVAL_VERSION", "ErrorBody", "ExperimentInfo", "Experiments", "FrontMember", "Health", "RequestError",
           "SearchAnswer", "SearchRequest", "SubnetInfo"]
