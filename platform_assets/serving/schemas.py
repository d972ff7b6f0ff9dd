"""The service's request and response bodies: one model per body, the source of the OpenAPI document.

Every constraint here is one the service enforces, and every constraint the service enforces is here
(``openapi`` adds the 1..``CREDIT_RISK_MAX_BATCH`` bound on lists; ``tests/serving/test_serving_contract.py``
holds the two to each other with Schemathesis). The endpoints validate bodies themselves (``payloads`` for
types and shape, ``features`` for value ranges), so that errors are 4xx naming the field and row; the input
models therefore describe the bodies but do not parse them: ``RawJSONInput`` hands the raw body to the endpoint.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from platform_assets.core.reason_codes import MAX_REASONS
from platform_assets.ml import schema
from platform_assets.serving.payloads import INT64_MAX, INT64_MIN, MAX_ID_CHARS

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegative = Annotated[int, Field(ge=0, le=INT64_MAX)]
PayStatus = Annotated[
    int,
    Field(
        ge=min(schema.PAY_CODES),
        le=max(schema.PAY_CODES),
        description="-2 no consumption, -1 paid in full, 0 revolving credit, 1..9 months of payment delay",
    ),
]
Amount = Annotated[int, Field(ge=0, le=INT64_MAX, description="NT$")]
Bill = Annotated[Int64, Field(description="NT$; negative is a credit balance")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

#: The README's example (UCI client 1), shown in the document and sent by Schemathesis' examples phase. A body
#: model states it as OpenAPI's `example`: BentoML builds its own schema objects from these models when it builds
#: the Bento (`Bento.create` writes its OpenAPI spec), and its `Schema` takes `example`, not `examples`.
EXAMPLE_APPLICATION: dict[str, JsonValue] = {
    "ID": 1,
    "LIMIT_BAL": 20000,
    "AGE": 24,
    **dict(zip(schema.PAY_COLUMNS, (2, 2, -1, -1, -2, -2), strict=True)),
    **dict(zip(schema.BILL_COLUMNS, (3913, 3102, 689, 0, 0, 0), strict=True)),
    **dict(zip(schema.PAY_AMT_COLUMNS, (0, 689, 0, 0, 0, 0), strict=True)),
}


class RawBody:
    """The undecoded request body, handed to the endpoint in place of the described field."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class RawJSONInput(bentoml.IODescriptor):  # type: ignore[misc]
    """An input descriptor whose first field receives the raw body (no pydantic validation)."""

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> Any:
        first = next(iter(cls.model_fields))
        return cls.model_construct(**{first: RawBody(await request.body())})


class Body(BaseModel):
    """A JSON object with exactly the declared fields (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


class Application(Body):
    """One application in the raw UCI schema. SEX, EDUCATION, MARRIAGE and AGE are optional (null counts as
    absent) and used for fairness monitoring only, unless the serving model takes them as inputs."""

    ID: NonNegative = Field(description="Application/client ID; also the sticky routing key")
    LIMIT_BAL: Annotated[int, Field(ge=1, le=INT64_MAX)] = Field(description="Credit limit, NT$")
    SEX: Annotated[int, Field(ge=min(schema.SEX_CODES), le=max(schema.SEX_CODES))] | None = Field(
        default=None, description="1 male, 2 female (monitoring only)"
    )
    EDUCATION: Annotated[int, Field(ge=min(schema.EDUCATION_CODES), le=max(schema.EDUCATION_CODES))] | None = Field(
        default=None, description="Education code (monitoring only)"
    )
    MARRIAGE: Annotated[int, Field(ge=min(schema.MARRIAGE_CODES), le=max(schema.MARRIAGE_CODES))] | None = Field(
        default=None, description="Marital status code (monitoring only)"
    )
    AGE: Annotated[int, Field(ge=schema.AGE_RANGE[0], le=schema.AGE_RANGE[1])] | None = Field(
        default=None, description="Years (monitoring only)"
    )
    PAY_0: PayStatus = Field(description="Repayment status, most recent month")
    PAY_2: PayStatus
    PAY_3: PayStatus
    PAY_4: PayStatus
    PAY_5: PayStatus
    PAY_6: PayStatus = Field(description="Repayment status, oldest month")
    BILL_AMT1: Bill = Field(description="Bill statement, most recent month, NT$ (may be negative)")
    BILL_AMT2: Bill
    BILL_AMT3: Bill
    BILL_AMT4: Bill
    BILL_AMT5: Bill
    BILL_AMT6: Bill
    PAY_AMT1: Amount = Field(description="Amount paid, most recent month, NT$")
    PAY_AMT2: Amount
    PAY_AMT3: Amount
    PAY_AMT4: Amount
    PAY_AMT5: Amount
    PAY_AMT6: Amount


class PredictInput(RawJSONInput, Body):
    model_config = ConfigDict(json_schema_extra={"example": {"applications": [EXAMPLE_APPLICATION]}})

    applications: list[Application] = Field(
        min_length=1, description="1..CREDIT_RISK_MAX_BATCH applications (more: 413)"
    )
    model_version: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="Score with this loaded version ('v3' or '3') instead of routing; "
        "a version this service does not serve now: 409",
    )
    reasons: Literal["declines", "all"] = Field(
        default="declines",
        description="Adverse-action reasons for declines only (default), or for approvals too ('all')",
    )


class Reason(Body):
    """One adverse-action reason: a group of raw fields whose values, against the model version's reference
    applicant, raise this applicant's probability of default (an exact group Shapley value)."""

    code: str = Field(pattern=r"^R[0-9]{2}$", description="Code in the model version's reason-code table")
    text: str = Field(description="The reason as the applicant reads it")
    contribution: float = Field(gt=0, le=1, description="Rise of the probability of default due to these fields")
    fields: dict[str, int] = Field(description="The applicant's values of the raw fields behind the reason")
    reference: dict[str, int] = Field(description="The reference applicant's values of the same fields")


class Prediction(Body):
    application_id: NonNegative
    probability_of_default: Probability = Field(description="Calibrated probability of default, 0..1")
    decision: Literal["approve", "decline"] = Field(description="decline when probability >= the model's threshold")
    model_version: str
    role: Literal["champion", "challenger"]
    prediction_id: str = Field(description="UUID; send it back with the outcome to /feedback")
    reasons: list[Reason] | None = Field(
        max_length=MAX_REASONS,
        description=(
            f"Up to {MAX_REASONS} reasons, largest first, for every decline (and every approval when the request asks "
            "reasons='all'); null for an approval that did not ask"
        ),
    )


class PredictOutput(bentoml.IODescriptor, Body):  # type: ignore[misc]
    predictions: list[Prediction] = Field(min_length=1, description="One per application, in request order")


class Outcome(Body):
    """One observed outcome; ``prediction_id`` or ``application_id`` (or both) must be set."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["prediction_id"], "properties": {"prediction_id": {"type": "string"}}},
                {"required": ["application_id"], "properties": {"application_id": {"type": "integer"}}},
            ]
        }
    )

    prediction_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_CHARS, description="From a /predict response"
    )
    application_id: NonNegative | None = Field(default=None, description="Used when prediction_id is absent")
    defaulted: Literal[0, 1]


class FeedbackInput(RawJSONInput, Body):
    model_config = ConfigDict(
        json_schema_extra={"example": {"outcomes": [{"application_id": EXAMPLE_APPLICATION["ID"], "defaulted": 1}]}}
    )

    outcomes: list[Outcome] = Field(min_length=1, description="1..CREDIT_RISK_MAX_BATCH outcomes (more: 413)")


class StoredOutcome(Body):
    feedback_id: int
    prediction_id: str | None
    application_id: NonNegative | None
    known: bool = Field(description="whether the prediction/application was found in the inference log")


class FeedbackOutput(bentoml.IODescriptor, Body):  # type: ignore[misc]
    stored: int = Field(ge=1)
    known: int = Field(ge=0)
    unknown: int = Field(ge=0)
    outcomes: list[StoredOutcome] = Field(min_length=1)


class StatusInput(RawJSONInput, Body):
    """An empty body counts as ``{}``."""

    model_config = ConfigDict(json_schema_extra={"example": {"refresh": True}})

    refresh: bool = Field(default=False, description="re-read the registry now (this worker)")


class ApprovalRecord(Body):
    """A signed maker-checker approval as ``core.approval.PromotionApproval.describe`` shows it."""

    model_version: str
    approved_by: str
    auto: bool = Field(description="the local demo's labelled auto-approval (no person)")
    reason: str
    approved_at: str = Field(description="ISO 8601, UTC")
    expires_at: str = Field(description="ISO 8601, UTC")
    trained_by: str
    manifest_sha256: str
    key_id: str


class ServedApproval(Body):
    """Whether the served version's promotion approval is valid now (``serving.approvals``)."""

    state: Literal["valid", "missing", "bad_signature", "wrong_manifest", "expired", "not_allowed", "unverified"]
    valid: bool
    reason: str
    approval: ApprovalRecord | None = None
    tags_read_error: str | None = Field(default=None, description="why the registry's tags were not re-read")


class ServedModel(Body):
    model_version: str
    threshold: Probability = Field(description="decline at or above this probability")
    sha256: str
    run_id: str
    feature_spec_version: str | None
    signature: str = Field(description="how the signed manifest was verified, or 'unverified'")
    backend: str = Field(description="what computes the model")
    approval: ServedApproval = Field(description="the version's promotion approval and whether it is valid now")


class VerifyKeyStatus(Body):
    key_id: str | None
    source: str
    error: str | None


class GroupRate(Body):
    predictions: int = Field(ge=0)
    selection_rate: Probability | None = Field(description="share approved; null without predictions")


class AttributeBias(Body):
    disparate_impact_ratio: float | None = Field(ge=0.0, description="lowest / highest selection rate")
    groups: dict[str, GroupRate]


class LiveBias(Body):
    window_predictions: int = Field(ge=0)
    max_predictions: int = Field(ge=1)
    max_age_seconds: float
    min_group_size: int = Field(ge=1)
    attributes: dict[str, AttributeBias]


class ShadowScoring(Body):
    """This worker's shadow since it started, in applications (a batch waiting is one request's rows)."""

    scored: int = Field(ge=0, description="applications the shadow scored and logged with role shadow")
    failed: int = Field(ge=0, description="applications whose shadow scoring raised")
    dropped: int = Field(ge=0, description="applications not shadowed: the shadow's queue was full (it is slow)")
    missing_input: int = Field(ge=0, description="applications without a protected value the shadow model reads")
    pending_batches: int = Field(ge=0, description="answered batches waiting for the shadow")
    queue_batches: int = Field(ge=1, description="most batches that may wait (CREDIT_RISK_SHADOW_QUEUE_BATCHES)")
    last_error: str | None = Field(description="the shadow's last scoring failure, if any")


class StatusOutput(bentoml.IODescriptor, Body):  # type: ignore[misc]
    champion: str | None
    challenger: str | None
    challenger_weight_percent: float = Field(ge=0.0, le=100.0)
    shadow: str | None = Field(description="the version that scores answered applications and decides none")
    shadow_share_percent: float = Field(
        ge=0.0, le=100.0, description="share of the answered applications the shadow scores (0 without one)"
    )
    models: dict[Literal["champion", "challenger", "shadow"], ServedModel]
    refused: dict[str, str] = Field(description="version label -> why it was refused")
    last_refresh: float | None = Field(description="Unix time (seconds) of the last registry read, failed or not")
    last_successful_refresh: float | None = Field(
        description="Unix time (seconds) of the last registry read that succeeded; null before the first"
    )
    last_error: str | None = Field(description="why the last registry read failed, if it did (null once one succeeds)")
    registry_error_since: float | None = Field(
        description="Unix time (seconds) of the first of the registry reads failing now; null while reads succeed. "
        "The loaded versions keep serving meanwhile, but an alias change does not reach this worker"
    )
    registry_refresh_failures: int = Field(ge=0, description="failed registry reads of this worker since it started")
    ready: bool = Field(description="whether this worker takes traffic (what /readyz answers)")
    not_ready_reasons: list[str] = Field(description="why it does not: inference log or registry, named")
    inference_log_ready: bool = Field(description="the inference log answers and its schema is current")
    verify_key: VerifyKeyStatus
    inference_log_pending: int = Field(ge=0, description="predictions queued in this worker, not yet committed")
    inference_log_dropped: int = Field(ge=0, description="predictions this worker could not log (backlog full)")
    inference_log_write_retries: int = Field(
        ge=0, description="failed prediction writes a later try made good (the database was away for a while)"
    )
    live_bias: LiveBias
    shadow_scoring: ShadowScoring
    worker_pid: int = Field(ge=1, description="the worker that answered (each worker polls the registry on its own)")


class ErrorBody(Body):
    """Every error the service answers (4xx, 500, 503), with the field and row index where they apply."""

    error: str = Field(description="what is wrong and, where it helps, how to fix it")
    field: str | None = Field(default=None, description="the offending field")
    row: int | None = Field(default=None, ge=0, description="index of the offending item in the list")
