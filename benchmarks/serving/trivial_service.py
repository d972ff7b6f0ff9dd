"""The framework floor: a BentoML service whose endpoint returns a constant (same body as /predict).

By default it runs on the same server configuration as the credit-risk service (workers, access log and
tracing from the service's ``ServerSettings``, so the route skips the tracing middleware unless
``CREDIT_RISK_TRACING``; BentoML's request timeout with ``platform_assets.serving.bentoml_fixes``), so that
the difference to the service is the endpoint's own work. ``TRIVIAL_STOCK=true`` serves it on BentoML's defaults instead
(access log on, tracing middleware on every route, the timeout middleware as released).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml

from platform_assets.serving import bentoml_fixes
from platform_assets.serving.settings import ServerSettings

STOCK = os.environ.get("TRIVIAL_STOCK", "false").strip().lower() == "true"  # run_benchmark sets true or false
SERVER = ServerSettings.from_environment()
if not STOCK:
    bentoml_fixes.apply()

CONSTANT = {"predictions": [{"probability_of_default": 0.5, "decision": "approve"}]}


@bentoml.service(
    name="trivial",
    workers=SERVER.workers,
    traffic={"timeout": 60},
    logging={"access": {"enabled": True if STOCK else SERVER.access_log}},
    tracing={} if STOCK or SERVER.tracing else {"excluded_urls": ["/predict"]},
    **({} if STOCK else {"metrics": SERVER.bentoml_metrics()}),
)
class TrivialService:
    @bentoml.api(route="/predict")
    async def predict(self, applications: list[dict[str, Any]]) -> dict[str, Any]:
        return CONSTANT
