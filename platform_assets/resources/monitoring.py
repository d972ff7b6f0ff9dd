"""The closed loop's settings and sources: the inference log, the service's ``/metrics``, the thresholds of
the accuracy-drop, drift and canary sensors. Environment variables (``PLATFORM_LOOP_*``) set the defaults;
without them the thresholds are the constants of ``platform_assets.core.slo`` named in the table.

====================================== ============================================== =================================
variable                               meaning                                        default
====================================== ============================================== =================================
CREDIT_RISK_INFERENCE_DB               inference log (SQLAlchemy URL)                 service's
PLATFORM_LOOP_SERVICE_URL              service whose ``/metrics`` give the error rate local one
PLATFORM_LOOP_WINDOW_HOURS             live metrics over the last N hours             ``24``
PLATFORM_LOOP_DROP_MODE                ``relative`` | ``absolute`` | ``either``       ``ACCURACY_DROP.mode``
PLATFORM_LOOP_ACCURACY_FLOOR           absolute floor of live accuracy                ``ACCURACY_DROP.accuracy_floor``
PLATFORM_LOOP_MAX_AUC_DROP             live ROC AUC allowed below validation's        ``ACCURACY_DROP.max_auc_drop``
PLATFORM_LOOP_MIN_LABELLED             outcomes before the drop test judges           ``ACCURACY_DROP.min_labelled``
PLATFORM_LOOP_RETRIGGER_HOURS          hours before a dropped model retrains again    ``ACCURACY_DROP.retrigger_hours``
PLATFORM_LOOP_DRIFT_SHARE              drift share that requests a retrain            ``DRIFT.drift_share``
PLATFORM_LOOP_CANARY_STEPS             challenger weights, percent, comma-separated   ``CANARY.steps``
PLATFORM_LOOP_CANARY_MIN_LABELLED      labelled outcomes per version and step         ``CANARY.min_labelled``
PLATFORM_LOOP_CANARY_MAX_AUC_DROP      challenger ROC AUC allowed below champion's    ``CANARY.max_auc_drop``
PLATFORM_LOOP_CANARY_MAX_ACCURACY_DROP challenger accuracy allowed below champion's   ``CANARY.max_accuracy_drop``
PLATFORM_LOOP_CANARY_MAX_ERROR_RATE    5xx share of /predict allowed in a step        ``CANARY.max_error_rate``
PLATFORM_LOOP_CANARY_MAX_P99_SECONDS   /predict p99 (seconds) allowed in a step       ``CANARY.max_p99_seconds``
PLATFORM_LOOP_MODE                     ``canary`` (stepped) | ``ab`` (fixed split)    canary
PLATFORM_LOOP_AB_HOURS                 length of an A/B test before its report        ``24``
====================================== ============================================== =================================
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Literal

import dagster as dg
import httpx
import pandas as pd
from pydantic import Field

from platform_assets.core import slo
from platform_assets.core.slo import DropMode
from platform_assets.ml.canary import CanaryPolicy
from platform_assets.ml.live_quality import DropPolicy
from platform_assets.ml.service_metrics import predict_latency_buckets, predict_request_counts


class LiveMonitoring(dg.ConfigurableResource):  # type: ignore[misc]
    """Where live outcomes are and what counts as a drop, a drift or a healthy canary."""

    inference_db: str = Field(default="", description="Inference log URL; empty: the service's default.")
    service_url: str = Field(default="", description="Service for /metrics (error rate); empty: not used.")
    window_hours: float = Field(default=24.0, description="Live metrics cover predictions of the last N hours.")
    drop_mode: DropMode = Field(default=slo.ACCURACY_DROP.mode, description="relative, absolute or either.")
    accuracy_floor: float = Field(
        default=slo.ACCURACY_DROP.accuracy_floor, description="Absolute floor of live accuracy."
    )
    max_auc_drop: float = Field(
        default=slo.ACCURACY_DROP.max_auc_drop, description="Allowed live ROC AUC below validation ROC AUC."
    )
    max_accuracy_drop: float = Field(
        default=slo.ACCURACY_DROP.max_accuracy_drop, description="Allowed live accuracy below validation accuracy."
    )
    min_labelled: int = Field(
        default=slo.ACCURACY_DROP.min_labelled, description="Labelled outcomes before the drop test applies."
    )
    retrigger_hours: float = Field(
        default=slo.ACCURACY_DROP.retrigger_hours, description="Hours before the same model may trigger again."
    )
    drift_share: float = Field(
        default=slo.DRIFT.drift_share, description="data_drift_report drift share that requests a retrain."
    )
    canary_steps: list[float] = Field(default=list(slo.CANARY.steps), description="Challenger weights, percent.")
    canary_min_labelled: int = Field(
        default=slo.CANARY.min_labelled, description="Labelled outcomes per version and step."
    )
    canary_max_auc_drop: float = Field(
        default=slo.CANARY.max_auc_drop, description="Allowed challenger AUC below the champion's."
    )
    canary_max_accuracy_drop: float = Field(
        default=slo.CANARY.max_accuracy_drop, description="Allowed challenger accuracy gap."
    )
    canary_max_error_rate: float = Field(
        default=slo.CANARY.max_error_rate, description="Allowed 5xx share of /predict per step."
    )
    canary_max_p99_seconds: float = Field(
        default=slo.CANARY.max_p99_seconds, description="Allowed /predict latency p99 per step."
    )
    mode: Literal["canary", "ab"] = Field(default="canary", description="canary: step and promote; ab: fixed split.")
    ab_hours: float = Field(default=24.0, description="Length of an A/B test before its report.")

    @classmethod
    def from_env(cls) -> LiveMonitoring:
        env = os.environ.get
        port = env("PLATFORM_SERVICE_PORT", "3001")
        local = env("PLATFORM_DEPLOY_TARGET", "local") == "local"
        steps = env("PLATFORM_LOOP_CANARY_STEPS", ",".join(f"{step:g}" for step in slo.CANARY.steps))
        return cls(
            inference_db=env("CREDIT_RISK_INFERENCE_DB", ""),
            service_url=env("PLATFORM_LOOP_SERVICE_URL", f"http://127.0.0.1:{port}" if local else ""),
            window_hours=float(env("PLATFORM_LOOP_WINDOW_HOURS", "24")),
            drop_mode=env("PLATFORM_LOOP_DROP_MODE", slo.ACCURACY_DROP.mode),  # type: ignore[arg-type]
            accuracy_floor=float(env("PLATFORM_LOOP_ACCURACY_FLOOR", str(slo.ACCURACY_DROP.accuracy_floor))),
            max_auc_drop=float(env("PLATFORM_LOOP_MAX_AUC_DROP", str(slo.ACCURACY_DROP.max_auc_drop))),
            min_labelled=int(env("PLATFORM_LOOP_MIN_LABELLED", str(slo.ACCURACY_DROP.min_labelled))),
            retrigger_hours=float(env("PLATFORM_LOOP_RETRIGGER_HOURS", str(slo.ACCURACY_DROP.retrigger_hours))),
            drift_share=float(env("PLATFORM_LOOP_DRIFT_SHARE", str(slo.DRIFT.drift_share))),
            canary_steps=[float(s) for s in steps.split(",") if s.strip()],
            canary_min_labelled=int(env("PLATFORM_LOOP_CANARY_MIN_LABELLED", str(slo.CANARY.min_labelled))),
            canary_max_auc_drop=float(env("PLATFORM_LOOP_CANARY_MAX_AUC_DROP", str(slo.CANARY.max_auc_drop))),
            canary_max_accuracy_drop=float(
                env("PLATFORM_LOOP_CANARY_MAX_ACCURACY_DROP", str(slo.CANARY.max_accuracy_drop))
            ),
            canary_max_error_rate=float(env("PLATFORM_LOOP_CANARY_MAX_ERROR_RATE", str(slo.CANARY.max_error_rate))),
            canary_max_p99_seconds=float(env("PLATFORM_LOOP_CANARY_MAX_P99_SECONDS", str(slo.CANARY.max_p99_seconds))),
            mode=env("PLATFORM_LOOP_MODE", "canary"),  # type: ignore[arg-type]
            ab_hours=float(env("PLATFORM_LOOP_AB_HOURS", "24")),
        )

    def drop_policy(self) -> DropPolicy:
        return DropPolicy(
            mode=self.drop_mode,
            accuracy_floor=self.accuracy_floor,
            max_auc_drop=self.max_auc_drop,
            max_accuracy_drop=self.max_accuracy_drop,
            min_labelled=self.min_labelled,
        )

    def canary_policy(self) -> CanaryPolicy:
        return CanaryPolicy(
            steps=tuple(self.canary_steps),
            min_labelled=self.canary_min_labelled,
            max_auc_drop=self.canary_max_auc_drop,
            max_accuracy_drop=self.canary_max_accuracy_drop,
            max_error_rate=self.canary_max_error_rate,
            max_p99_seconds=self.canary_max_p99_seconds,
        )

    def database(self) -> str:
        from platform_assets.serving.inference_log.schema import default_inference_db

        return self.inference_db or default_inference_db()

    def window_start(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) - timedelta(hours=self.window_hours)

    def predictions(
        self, start: datetime | None = None, model_versions: list[str] | None = None, labelled_only: bool = True
    ) -> pd.DataFrame:
        """Predictions since ``start`` (default: the window) joined with their outcomes.

        Raises ``FileNotFoundError`` when a SQLite log does not exist yet (nothing was served), and
        SQLAlchemy errors when the store cannot be read.
        """
        from platform_assets.serving.inference_log.reader import read_predictions
        from platform_assets.serving.inference_log.schema import make_engine

        url = self.database()
        if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
            raise FileNotFoundError(f"the inference log {url} does not exist: no prediction was logged yet")
        engine = make_engine(url)
        try:
            return read_predictions(
                engine,
                start=start if start is not None else self.window_start(),
                model_versions=model_versions,
                labelled_only=labelled_only,
            )
        finally:
            engine.dispose()

    def request_counts(self, timeout: float = 5.0) -> tuple[int, int] | None:
        """(all, 5xx) ``/predict`` requests from the service's ``/metrics``; ``None`` without a service URL.
        Raises ``httpx.HTTPError`` when the service cannot be reached."""
        text = self._metrics_text(timeout)
        return None if text is None else predict_request_counts(text)

    def latency_buckets(self, timeout: float = 5.0) -> dict[str, float] | None:
        """Cumulative ``/predict`` latency buckets from ``/metrics``; ``None`` without a service URL."""
        text = self._metrics_text(timeout)
        return None if text is None else predict_latency_buckets(text)

    def _metrics_text(self, timeout: float) -> str | None:
        if not self.service_url:
            return None
        response = httpx.get(f"{self.service_url.rstrip('/')}/metrics", timeout=timeout)
        response.raise_for_status()
        return response.text
