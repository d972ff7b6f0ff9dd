"""The closed loop's sources and thresholds: the inference log, the service's ``/metrics``, the accuracy-drop,
drift and canary gates. Bound in ``platform_assets.defs.resources`` from the ``PLATFORM_LOOP_*`` settings
(``platform_assets.settings``), whose defaults are the constants of ``platform_assets.core.slo``.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import dagster as dg
import httpx
import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from platform_assets.core import slo
from platform_assets.core.service_tls import TLSFiles, verify
from platform_assets.core.slo import DropMode
from platform_assets.ml.canary import CanaryPolicy
from platform_assets.ml.live_quality import DropPolicy
from platform_assets.ml.service_metrics import ServedHealth, served_health


class LiveMonitoring(dg.ConfigurableResource["LiveMonitoring"]):
    """Where live outcomes are and what counts as a drop, a drift or a healthy canary."""

    inference_db: str = Field(default="", description="Inference log URL (SQLAlchemy), without its password.")
    inference_db_password: str = Field(default="", description="Its password (a dg.EnvVar in staging and prod).")
    service_url: str = Field(
        default="", description="Service whose /metrics give each version's 5xx share and p99; empty: not used."
    )
    tls_client_dir: str | None = Field(
        default=None, description="Client certificate for a service that requires one (ca.crt, tls.crt, tls.key)."
    )
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
    use_estimate: bool = Field(
        default=slo.ACCURACY_DROP.use_estimate,
        description="With too few outcomes, test the performance estimated from the calibrated probabilities.",
    )
    min_predictions_for_estimate: int = Field(
        default=slo.ACCURACY_DROP.min_predictions_for_estimate, description="Predictions before the estimate counts."
    )
    max_estimated_auc_drop: float = Field(
        default=slo.ACCURACY_DROP.max_estimated_auc_drop, description="Allowed estimated AUC below validation AUC."
    )
    max_estimated_accuracy_drop: float = Field(
        default=slo.ACCURACY_DROP.max_estimated_accuracy_drop,
        description="Allowed estimated accuracy below validation accuracy.",
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
    promotion_min_labelled: int = Field(
        default=slo.PROMOTION.min_labelled, description="Labelled outcomes a promotion gate needs, applicants."
    )
    promotion_auc_margin: float = Field(
        default=slo.PROMOTION.auc_margin, description="Non-inferiority margin of the ROC AUC, AUC points."
    )
    promotion_max_labelled_inconclusive: int = Field(
        default=slo.PROMOTION.max_labelled_inconclusive,
        description="Labelled outcomes after which an inconclusive AUC comparison fails the gate.",
    )
    promotion_max_approval_rate_change: float = Field(
        default=slo.PROMOTION.max_approval_rate_change, description="Largest approval-rate change, rate points."
    )
    promotion_shadow_min_predictions: int = Field(
        default=slo.PROMOTION.shadow_min_predictions, description="Applications a shadow scores before its gate."
    )
    mode: Literal["canary", "ab"] = Field(default="canary", description="canary: step and promote; ab: fixed split.")
    ab_hours: float = Field(default=24.0, description="Length of an A/B test before its report.")

    def drop_policy(self) -> DropPolicy:
        return DropPolicy(
            mode=self.drop_mode,
            accuracy_floor=self.accuracy_floor,
            max_auc_drop=self.max_auc_drop,
            max_accuracy_drop=self.max_accuracy_drop,
            min_labelled=self.min_labelled,
            use_estimate=self.use_estimate,
            min_predictions_for_estimate=self.min_predictions_for_estimate,
            max_estimated_auc_drop=self.max_estimated_auc_drop,
            max_estimated_accuracy_drop=self.max_estimated_accuracy_drop,
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

    def promotion_policy(self) -> slo.PromotionGate:
        """``core.slo.PROMOTION`` with the thresholds the environment sets (``PLATFORM_PROMOTION_*``)."""
        return dataclasses.replace(
            slo.PROMOTION,
            min_labelled=self.promotion_min_labelled,
            auc_margin=self.promotion_auc_margin,
            max_labelled_inconclusive=self.promotion_max_labelled_inconclusive,
            max_approval_rate_change=self.promotion_max_approval_rate_change,
            shadow_min_predictions=self.promotion_shadow_min_predictions,
        )

    def database(self) -> str:
        """The inference log's URL, with the password (a secret resolved when the run starts) set."""
        if not self.inference_db:
            raise ValueError("LiveMonitoring.inference_db is not set: bind it from the environment's table")
        if not self.inference_db_password:
            return self.inference_db
        url = sa.engine.make_url(self.inference_db).set(password=self.inference_db_password)
        return url.render_as_string(hide_password=False)

    def window_start(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) - timedelta(hours=self.window_hours)

    def predictions(
        self,
        start: datetime | None = None,
        model_versions: list[str] | None = None,
        labelled_only: bool = True,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Predictions made in ``[start, end)`` (default: the window up to now) joined with their outcomes.

        Raises ``FileNotFoundError`` when a SQLite log does not exist yet (nothing was served), and
        SQLAlchemy errors when the store cannot be read.
        """
        from platform_assets.core.inference_log.reader import read_predictions
        from platform_assets.core.inference_log.schema import make_engine

        url = self.database()
        if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
            raise FileNotFoundError(f"the inference log {url} does not exist: no prediction was logged yet")
        engine = make_engine(url)
        try:
            return read_predictions(
                engine,
                start=start if start is not None else self.window_start(),
                end=end,
                model_versions=model_versions,
                labelled_only=labelled_only,
            )
        finally:
            engine.dispose()

    def shadow_pairs(self, version: str, start: datetime | None = None) -> pd.DataFrame:
        """Every application ``version`` scored as the shadow (since ``start``; default: ever) beside the answer it
        did not give, with the answer's outcome (``reader.read_shadow_pairs``). A version is the shadow once, so
        without ``start`` this is its whole shadow phase, whose labels keep arriving through its canary.
        An empty frame when nothing was logged yet."""
        from platform_assets.core.inference_log.reader import SHADOW_PAIR_COLUMNS, read_shadow_pairs
        from platform_assets.core.inference_log.schema import make_engine

        url = self.database()
        if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
            return pd.DataFrame(columns=list(SHADOW_PAIR_COLUMNS))
        engine = make_engine(url)
        try:
            return read_shadow_pairs(engine, version, start=start)
        finally:
            engine.dispose()

    def served(self, versions: dict[str, str], timeout: float = 5.0) -> dict[str, ServedHealth] | None:
        """What each ``role -> model version`` answered on ``/predict``, from one read of the service's
        ``/metrics``; ``None`` without a service URL. Raises ``httpx.HTTPError`` when the service cannot be
        reached."""
        text = self._metrics_text(timeout)
        if text is None:
            return None
        return {role: served_health(text, version, role) for role, version in versions.items()}

    def _metrics_text(self, timeout: float) -> str | None:
        if not self.service_url:
            return None
        tls = TLSFiles(Path(self.tls_client_dir)) if self.tls_client_dir else None
        response = httpx.get(f"{self.service_url.rstrip('/')}/metrics", timeout=timeout, verify=verify(tls))
        response.raise_for_status()
        return response.text
