"""The credit-risk Bento: one BentoML service class; the behaviour lives in ``platform_assets.serving``.

Endpoints (POST): ``/predict`` (role predict), ``/feedback`` (role feedback), ``/admin/status`` (role
admin); BentoML's own ``/livez``, ``/readyz`` (a 503 names what is missing: the inference log, the
registry, a verified champion) and ``/metrics`` stay open. The contract, every constraint and status, is
the OpenAPI document at ``/docs.json`` (``platform_assets.serving.openapi``; Swagger UI at ``/``).
Configuration: environment variables, read once into
``platform_assets.serving.settings.ServingSettings`` when a worker starts. Run from this folder::

    bentoml serve service:CreditRiskService --port 3001
"""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from platform_assets.serving import bentoml_fixes
from platform_assets.serving.http import (
    API_ROUTES,
    MODEL_ROLE_HEADER,
    MODEL_VERSION_HEADER,
    AccessPolicy,
    ServingMiddleware,
)
from platform_assets.serving.schemas import (
    FeedbackInput,
    FeedbackOutput,
    PredictInput,
    PredictOutput,
    RawBody,
    StatusInput,
    StatusOutput,
)
from platform_assets.serving.settings import ServerSettings, ServingSettings

bentoml_fixes.apply()  # BentoML's request timeout keeps a 60-s timer per request alive (see the module)

#: Workers, access log, tracing and BentoML's metrics are the decorator's: BentoML reads them when the server
#: loads this file, before any worker exists (why some are off by default: ``ServerSettings``).
SERVER = ServerSettings.from_environment()


def _response(reply: Any) -> Response:
    headers = {"x-error-reason": reply.reason} if reply.reason else {}
    if reply.model is not None:  # the request metrics' model_version and role (ServingMiddleware reads them)
        headers[MODEL_VERSION_HEADER], headers[MODEL_ROLE_HEADER] = reply.model
    return Response(reply.json_bytes(), status_code=reply.status, media_type="application/json", headers=headers)


@bentoml.service(
    name="credit_risk",
    workers=SERVER.workers,
    traffic={"timeout": 60},
    logging={"access": {"enabled": SERVER.access_log}},
    tracing={} if SERVER.tracing else {"excluded_urls": list(API_ROUTES)},
    ssl=SERVER.bentoml_ssl(),  # mutual TLS when CREDIT_RISK_TLS_DIR is set
    metrics=SERVER.bentoml_metrics(),
    envs=[{"name": "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "value": "false"}],  # model downloads: no progress bars
)
class CreditRiskService:
    """Probability of default for credit applications, from the champion (and challenger) model."""

    def __init__(self) -> None:
        # Imported here, in the worker: ONNX Runtime and MLflow are not needed by the process that only
        # reads this file to configure the server.
        from platform_assets.serving.engine import CreditRiskEngine

        settings = ServingSettings.from_environment()  # once per worker; a bad value stops the start here
        self.access = AccessPolicy.from_settings(settings)
        self.engine = CreditRiskEngine(settings)

    # BentoML's decorators live in _bentoml_sdk, which ships no type information (no py.typed).
    @bentoml.api(route="/predict", input_spec=PredictInput, output_spec=PredictOutput)  # type: ignore[untyped-decorator]
    async def predict(self, applications: RawBody, model_version: Any = None, reasons: Any = None) -> Response:
        """Score 1..N applications (raw UCI schema). Each gets a probability of default, a decision at
        the model's threshold, the model version and role that scored it, a prediction id, and the
        adverse-action reasons of a decline (of an approval too with ``"reasons": "all"``)."""
        return _response(await self.engine.predict(applications.data))

    @bentoml.api(route="/feedback", input_spec=FeedbackInput, output_spec=FeedbackOutput)  # type: ignore[untyped-decorator]
    async def feedback(self, outcomes: RawBody) -> Response:
        """Record observed outcomes (defaulted 0/1) by prediction id or application ID; answered
        only once they are committed to the inference log. Unknown IDs are stored and flagged."""
        return _response(await run_in_threadpool(self.engine.feedback, outcomes.data))

    @bentoml.api(route="/admin/status", input_spec=StatusInput, output_spec=StatusOutput)  # type: ignore[untyped-decorator]
    async def admin_status(self, refresh: RawBody) -> Response:
        """The models this worker serves, refused versions and the last registry refresh;
        ``{"refresh": true}`` re-reads the registry first."""
        return _response(await run_in_threadpool(self.engine.status, refresh.data))

    def __is_ready__(self) -> bool:
        # BentoML's /readyz turns an HTTPException into its answer: the 503 names what is missing.
        reasons = self.engine.not_ready_reasons()
        if reasons:
            raise HTTPException(503, detail="not ready: " + "; ".join(reasons))
        return True

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]
    def shutdown(self) -> None:
        self.engine.close()


def _access_policy() -> AccessPolicy:
    access: AccessPolicy = bentoml.get_current_service().access
    return access


# mypy keeps a class's own type under a class decorator: it does not see the bentoml.Service this is.
CreditRiskService.add_asgi_middleware(ServingMiddleware, policy=_access_policy)  # type: ignore[attr-defined]
