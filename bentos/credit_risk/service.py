"""The credit-risk Bento: one BentoML service class; the behaviour lives in ``platform_assets.serving``.

Endpoints (POST): ``/predict`` (role predict), ``/feedback`` (role feedback), ``/admin/status`` (role
admin); BentoML's own ``/livez``, ``/readyz`` and ``/metrics`` stay open; OpenAPI at ``/docs``
(Swagger UI at ``/``, spec at ``/docs.json``). Configuration: environment variables, see
``platform_assets/serving/__init__.py``. Run from this folder::

    bentoml serve service:CreditRiskService --port 3001
"""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from platform_assets.serving import bentoml_fixes
from platform_assets.serving.config import flag
from platform_assets.serving.http import API_ROUTES, ServingMiddleware
from platform_assets.serving.schemas import (
    FeedbackInput,
    FeedbackOutput,
    PredictInput,
    PredictOutput,
    RawBody,
    StatusInput,
    StatusOutput,
)

bentoml_fixes.apply()  # BentoML's request timeout keeps a 60-s timer per request alive (see the module)

#: One access-log line per request costs a large share of the framework's time per request, and every
#: prediction is in the inference log and every request in the metrics: off unless
#: ``CREDIT_RISK_ACCESS_LOG=true``.
ACCESS_LOG = flag("CREDIT_RISK_ACCESS_LOG", False)
#: BentoML keeps no traces unless ``tracing.sample_rate`` (0 by default) and an exporter are configured,
#: yet its tracing middleware still builds spans for every request: a third of a worker's time at
#: full load. The API routes skip it unless ``CREDIT_RISK_TRACING=true`` (then configure the exporter
#: and sample rate the BentoML way).
TRACING: dict[str, Any] = {} if flag("CREDIT_RISK_TRACING", False) else {"excluded_urls": list(API_ROUTES)}


def _response(reply: Any) -> Response:
    headers = {"x-error-reason": reply.reason} if reply.reason else None
    return Response(reply.json_bytes(), status_code=reply.status, media_type="application/json", headers=headers)


@bentoml.service(
    name="credit_risk",
    workers=int(os.environ.get("CREDIT_RISK_WORKERS", "1")),
    traffic={"timeout": 60},
    logging={"access": {"enabled": ACCESS_LOG}},
    tracing=TRACING,
)
class CreditRiskService:
    """Probability of default for credit applications, from the champion (and challenger) model."""

    def __init__(self) -> None:
        # Imported here, in the worker: TensorFlow and MLflow are not needed by the process that only
        # reads this file to configure the server.
        from platform_assets.serving.engine import CreditRiskEngine

        self.engine = CreditRiskEngine.from_env()

    @bentoml.api(route="/predict", input_spec=PredictInput, output_spec=PredictOutput)
    async def predict(self, applications: RawBody, model_version: Any = None) -> Response:
        """Score 1..N applications (raw UCI schema). Each gets a probability of default, a decision at
        the model's threshold, the model version and role that scored it, and a prediction id."""
        return _response(await self.engine.predict(applications.data))

    @bentoml.api(route="/feedback", input_spec=FeedbackInput, output_spec=FeedbackOutput)
    async def feedback(self, outcomes: RawBody) -> Response:
        """Record observed outcomes (defaulted 0/1) by prediction id or application ID; answered
        only once they are committed to the inference log. Unknown IDs are stored and flagged."""
        return _response(await run_in_threadpool(self.engine.feedback, outcomes.data))

    @bentoml.api(route="/admin/status", input_spec=StatusInput, output_spec=StatusOutput)
    async def admin_status(self, refresh: RawBody) -> Response:
        """The models this worker serves, refused versions and the last registry refresh;
        ``{"refresh": true}`` re-reads the registry first."""
        try:
            body = json.loads(refresh.data or b"{}")
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("refresh", False), bool):
            return Response('{"error":"expected {\\"refresh\\": true|false}","field":"refresh"}', 422)
        return _response(await run_in_threadpool(self.engine.status, body.get("refresh", False)))

    def __is_ready__(self) -> bool:
        return self.engine.ready()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.engine.close()


CreditRiskService.add_asgi_middleware(ServingMiddleware)
