"""The service's OpenAPI 3.1 document (served at ``/docs.json``): the bodies of ``schemas``, the bound on list
sizes from the settings, every status the service answers with its error body, the API-key scheme.

BentoML generates a document of its own from the input/output descriptors, but flattens ``anyOf`` (a
nullable field becomes non-nullable), drops ``additionalProperties: false`` below the top level, cannot know
the configured batch limit and documents statuses the service never returns (404, 500) instead of the ones
it does. ``http.ServingMiddleware`` serves this document in its place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from platform_assets.serving import schemas

#: The contract's version: bump it with any change a generated client would notice.
API_VERSION: Final = "1.0"
REF: Final = "#/components/schemas/{model}"
SECURITY_SCHEME: Final = "apiKey"
#: Header naming an error's cause in a few words (also the error metric's ``reason`` label).
REASON_HEADER: Final = "X-Error-Reason"
#: Headers naming the model version and role a /predict request was counted under (``engine.answered_by``).
MODEL_VERSION_HEADER: Final = "X-Model-Version"
MODEL_ROLE_HEADER: Final = "X-Model-Role"
JSON: Final = "application/json"

#: Every error status of the service's endpoints, and when it is answered.
ERRORS: Final = {
    400: "Empty or malformed JSON body.",
    401: "Missing or unknown API key (send `Authorization: Bearer <key>`).",
    403: "The key lacks the endpoint's role.",
    405: "A method the path does not take (`Allow` lists those it does); answered before the API key is checked.",
    409: "`model_version` names a version this service does not serve now (it serves the champion and, "
    "during a rollout, the challenger; see /admin/status).",
    413: "Body larger than CREDIT_RISK_MAX_BODY_BYTES, or more than CREDIT_RISK_MAX_BATCH items.",
    422: "The body breaks the schema (a wrong type, a value out of range, a missing or unknown field, an empty "
    "list), or omits a protected attribute that the serving model takes as input; `field` and `row` name "
    "the first offence.",
    500: "The model failed on a valid batch (a fault of the served version, not of the request; counted under "
    "its version and role, so a failing challenger is rolled back).",
    503: "No model is serving (no version has the alias 'champion', or it failed verification), or the "
    "inference log is unavailable or could not store the feedback; retry later.",
}


@dataclass(frozen=True)
class Operation:
    """One POST endpoint of the service: its route, the role it needs, its bodies and its error statuses."""

    route: str
    role: str
    summary: str
    request: type[BaseModel]
    body_required: bool
    response: type[BaseModel]
    errors: tuple[int, ...]

    @property
    def operation_id(self) -> str:
        return self.route.strip("/").replace("/", "_")


OPERATIONS: Final = (
    Operation(
        "/predict",
        "predict",
        "Score 1..N applications: a calibrated probability of default, a decision at the model's threshold, "
        "the model version and role that scored it, and a prediction id, for each.",
        schemas.PredictInput,
        True,
        schemas.PredictOutput,
        (400, 401, 403, 405, 409, 413, 422, 500, 503),
    ),
    Operation(
        "/feedback",
        "feedback",
        "Record 1..N observed outcomes (defaulted 0/1) by prediction id or application id; answered once they "
        "are committed to the inference log. Unknown ids are stored and flagged.",
        schemas.FeedbackInput,
        True,
        schemas.FeedbackOutput,
        (400, 401, 403, 405, 413, 422, 503),
    ),
    Operation(
        "/admin/status",
        "admin",
        "The models this worker serves (and shadows), refused versions, the last registry read, the live bias "
        "window and the shadow's counts; "
        '`{"refresh": true}` re-reads the registry first. An empty body counts as `{}`.',
        schemas.StatusInput,
        False,
        schemas.StatusOutput,
        (400, 401, 403, 405, 413, 422),
    ),
)
#: List fields bounded by CREDIT_RISK_MAX_BATCH: (schema, property).
BATCH_LISTS: Final = (
    ("PredictInput", "applications"),
    ("PredictOutput", "predictions"),
    ("FeedbackInput", "outcomes"),
    ("FeedbackOutput", "outcomes"),
)
#: What a client can do with a /predict answer (Schemathesis' stateful phase follows these): report the outcome
#: of a prediction, or score again with the version that answered.
PREDICT_LINKS: Final = {
    "OutcomeOfPrediction": {
        "operationId": "feedback",
        "requestBody": {"outcomes": [{"prediction_id": "$response.body#/predictions/0/prediction_id", "defaulted": 1}]},
        "description": "Report whether the first application defaulted.",
    },
    "ScoreWithTheSameVersion": {
        "operationId": "predict",
        "requestBody": {"model_version": "$response.body#/predictions/0/model_version"},
        "description": "Pin the version that scored the first application.",
    },
}
#: BentoML's own endpoints (GET): path -> (description, statuses other than 200).
INFRASTRUCTURE: Final = {
    "/livez": ("Liveness: 200 while the server runs.", ()),
    "/readyz": ("Readiness: 200 once a champion model is loaded, 503 before.", (503,)),
    "/metrics": ("Prometheus metrics (text exposition format).", ()),
}


def _components() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((operation.request, "validation") for operation in OPERATIONS),
        *((operation.response, "serialization") for operation in OPERATIONS),
        (schemas.ErrorBody, "serialization"),
    ]
    _, document = models_json_schema(models, ref_template=REF)
    return dict(document["$defs"])


def _header(description: str, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


def _model_headers(required: bool) -> dict[str, Any]:
    """The /predict headers naming the model that answered (on errors: once the request was routed to one)."""
    return {
        MODEL_VERSION_HEADER: _header("The version the request is counted under, e.g. `v3`.", required),
        MODEL_ROLE_HEADER: _header("`champion` or `challenger`.", required),
    }


def _error(status: int, route: str | None = None) -> dict[str, Any]:
    headers = {REASON_HEADER: _header("The error's cause in a few words, e.g. `batch_too_large`.")}
    if route == "/predict" and status in (422, 500):
        headers.update(_model_headers(required=status == 500))
    if status == 401:
        headers["WWW-Authenticate"] = _header("`Bearer`")
    if status == 405:
        headers["Allow"] = _header("The methods the path accepts.")
    return {
        "description": ERRORS[status],
        "headers": headers,
        "content": {JSON: _ref(schemas.ErrorBody)},
    }


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"schema": {"$ref": REF.format(model=model.__name__)}}


def _post(operation: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK", "content": {JSON: _ref(operation.response)}}
    if operation.route == "/predict":
        ok["headers"] = _model_headers(required=True)
        ok["links"] = PREDICT_LINKS
    return {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": f"Needs an API key with role `{operation.role}` (or `admin`).",
        "tags": ["Service APIs"],
        "security": [{SECURITY_SCHEME: []}],
        "requestBody": {"required": operation.body_required, "content": {JSON: _ref(operation.request)}},
        "responses": {"200": ok, **{str(status): _error(status, operation.route) for status in operation.errors}},
    }


def _infrastructure(path: str, description: str, statuses: tuple[int, ...], protected: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    }
    for status in statuses:
        responses[str(status)] = {"description": "Not ready", "content": {"text/plain": {"schema": {"type": "string"}}}}
    operation: dict[str, Any] = {"description": description, "tags": ["Infrastructure"], "responses": responses}
    if protected:  # CREDIT_RISK_PROTECTED_PATHS
        operation["security"] = [{SECURITY_SCHEME: []}]
        operation["description"] += " Needs an API key with role `admin`."
        for status in (401, 403, 405):
            responses[str(status)] = _error(status)
    return {"get": operation}


def document(max_items: int, protected_paths: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The OpenAPI document for a service that takes at most ``max_items`` applications or outcomes per call
    and protects ``protected_paths`` (``ServingSettings.max_batch`` and ``.protected_paths``)."""
    components = _components()
    for model, field in BATCH_LISTS:
        components[model]["properties"][field]["maxItems"] = max_items
    paths: dict[str, Any] = {operation.route: {"post": _post(operation)} for operation in OPERATIONS}
    for path, (description, statuses) in INFRASTRUCTURE.items():
        paths[path] = _infrastructure(path, description, statuses, path in protected_paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "credit_risk",
            "version": API_VERSION,
            "description": "Probability of default for credit applications, from the champion (and challenger) "
            "model. Every constraint below is enforced; every error body is an `ErrorBody`.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`make api-key ROLE=...`) as `Authorization: Bearer <key>`.",
                }
            },
        },
    }


def document_bytes(max_items: int, protected_paths: frozenset[str] = frozenset()) -> bytes:
    """``document`` as compact JSON."""
    return json.dumps(document(max_items, protected_paths), separators=(",", ":")).encode()
