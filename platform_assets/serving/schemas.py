"""Request/response models of the service, for the OpenAPI document (``/docs.json``) and clients.

The endpoints validate bodies themselves (``payloads``), so that errors are 4xx with the field and row
index the platform promises; these models therefore describe the bodies but do not parse them: the
input descriptors hand the raw body to the endpoint.
"""

from __future__ import annotations

from typing import Any, Literal

import bentoml
from pydantic import BaseModel, Field

from platform_assets.core.reason_codes import MAX_REASONS


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


class Application(BaseModel):
    """One application in the raw UCI schema. SEX, EDUCATION, MARRIAGE and AGE are optional and used
    for fairness monitoring only (logged when sent)."""

    ID: int = Field(ge=0, description="Application/client ID; also the sticky routing key")
    LIMIT_BAL: int = Field(gt=0, description="Credit limit, NT$")
    SEX: int | None = Field(default=None, description="1 male, 2 female (monitoring only)")
    EDUCATION: int | None = Field(default=None, ge=0, le=6, description="0..6 (monitoring only)")
    MARRIAGE: int | None = Field(default=None, ge=0, le=3, description="0..3 (monitoring only)")
    AGE: int | None = Field(default=None, ge=18, le=100, description="Years (monitoring only)")
    PAY_0: int = Field(ge=-2, le=9, description="Repayment status, most recent month")
    PAY_2: int = Field(ge=-2, le=9)
    PAY_3: int = Field(ge=-2, le=9)
    PAY_4: int = Field(ge=-2, le=9)
    PAY_5: int = Field(ge=-2, le=9)
    PAY_6: int = Field(ge=-2, le=9, description="Repayment status, oldest month")
    BILL_AMT1: int = Field(description="Bill statement, most recent month, NT$ (may be negative)")
    BILL_AMT2: int
    BILL_AMT3: int
    BILL_AMT4: int
    BILL_AMT5: int
    BILL_AMT6: int
    PAY_AMT1: int = Field(ge=0, description="Amount paid, most recent month, NT$")
    PAY_AMT2: int = Field(ge=0)
    PAY_AMT3: int = Field(ge=0)
    PAY_AMT4: int = Field(ge=0)
    PAY_AMT5: int = Field(ge=0)
    PAY_AMT6: int = Field(ge=0)


class PredictInput(RawJSONInput):
    applications: list[Application] = Field(description="1..CREDIT_RISK_MAX_BATCH applications (default 1000)")
    model_version: str | None = Field(
        default=None, description="Score with this loaded version (e.g. 'v3') instead of routing"
    )
    reasons: Literal["declines", "all"] = Field(
        default="declines",
        description="Adverse-action reasons for declines only (default), or for approvals too ('all')",
    )


class Reason(BaseModel):
    """One adverse-action reason: a group of raw fields whose values, against the model version's reference
    applicant, raise this applicant's probability of default (an exact group Shapley value)."""

    code: str = Field(pattern=r"^R[0-9]{2}$", description="Code in the model version's reason-code table")
    text: str = Field(description="The reason as the applicant reads it")
    contribution: float = Field(gt=0, le=1, description="Rise of the probability of default due to these fields")
    fields: dict[str, int] = Field(description="The applicant's values of the raw fields behind the reason")
    reference: dict[str, int] = Field(description="The reference applicant's values of the same fields")


class Prediction(BaseModel):
    application_id: int
    probability_of_default: float
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


class PredictOutput(bentoml.IODescriptor):  # type: ignore[misc]
    predictions: list[Prediction]


class Outcome(BaseModel):
    prediction_id: str | None = Field(default=None, description="From a /predict response")
    application_id: int | None = Field(default=None, description="Used when prediction_id is absent")
    defaulted: Literal[0, 1]


class FeedbackInput(RawJSONInput):
    outcomes: list[Outcome]


class StoredOutcome(BaseModel):
    feedback_id: int
    prediction_id: str | None
    application_id: int | None
    known: bool = Field(description="whether the prediction/application was found in the inference log")


class FeedbackOutput(bentoml.IODescriptor):  # type: ignore[misc]
    stored: int
    known: int
    unknown: int
    outcomes: list[StoredOutcome]


class StatusInput(RawJSONInput):
    refresh: bool = Field(default=False, description="re-read the registry now (this worker)")


class StatusOutput(bentoml.IODescriptor):  # type: ignore[misc]
    champion: str | None
    challenger: str | None
    challenger_weight_percent: float
    ready: bool = Field(description="whether this worker takes traffic (what /readyz answers)")
    not_ready_reasons: list[str] = Field(description="why it does not: inference log or registry, named")
    inference_log_ready: bool = Field(description="the inference log answers and its schema is current")
    models: dict[str, Any]
    refused: dict[str, str]
    inference_log_pending: int = Field(description="predictions queued in this worker, not yet committed")
    inference_log_dropped: int = Field(description="predictions this worker could not log (backlog full)")
    inference_log_write_retries: int = Field(
        description="failed prediction writes a later try made good (the database was away for a while)"
    )
    live_bias: dict[str, Any]
    worker_pid: int = Field(description="the worker that answered (each worker polls the registry on its own)")
