"""The framework floor: a BentoML service whose endpoint returns a constant (same body as /predict)."""

from __future__ import annotations

import os
from typing import Any

import bentoml

CONSTANT = {"predictions": [{"probability_of_default": 0.5, "decision": "approve"}]}


@bentoml.service(name="trivial", workers=int(os.environ.get("CREDIT_RISK_WORKERS", "1")), traffic={"timeout": 60})
class TrivialService:
    @bentoml.api(route="/predict")
    async def predict(self, applications: list[dict[str, Any]]) -> dict[str, Any]:
        return CONSTANT
