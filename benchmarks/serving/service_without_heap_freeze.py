"""The credit-risk service with ``engine.freeze_heap`` turned into a no-op: the benchmark's ``service-nofreeze``
row, which shows what freezing the heap after a model load does to the tail latency.

Run (from this folder): ``bentoml serve service_without_heap_freeze:CreditRiskService``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from platform_assets.serving import engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bentos" / "credit_risk"))


def _no_freeze() -> None:
    """Leave every object to the garbage collector's full scans."""


engine.freeze_heap = _no_freeze  # looked up by name when models load, so the service never freezes

from service import CreditRiskService  # noqa: E402

__all__ = ["CreditRiskService"]
