"""The control plane's configuration: one typed settings object and one topology table per environment.

``load()`` reads the environment once, when the code location loads (never at import time), into
``PlatformSettings``; a bad value fails naming its variable. ``topology(settings)`` then gives what the
environment runs on: ``local`` is one laptop (local lake, SQLite MLflow store, local ``bentoml serve``);
``staging`` and ``prod`` state the Kubernetes deploy target, the S3 lake, the PostgreSQL inference log and
the MLflow server, so a cluster deployment is right without any variable but its credentials. Any
topology entry can still be overridden by its variable (e.g. ``PLATFORM_LAKE_URI``).

``python -m platform_assets.settings [--env prod]`` prints the table an environment resolves to.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from platform_assets.core import registry, slo
from platform_assets.core.environment import Environment
from platform_assets.core.inference_log.schema import inference_db_under

#: First daily partition. Part of the asset graph's definition (the snapshot test covers it), not of a
#: deployment: change it here for data that starts elsewhere.
PARTITIONS_START: Final = "2026-10-01"
#: Days of the UCI replay: 30,000 rows become 30 daily batches of about 1,000.
UCI_REPLAY_DAYS: Final = 30
EXPERIMENT_NAME: Final = "credit_risk"
OWNER: Final = "team:ml-platform"
#: Secrets are never settings: resources read them with ``dg.EnvVar`` when a run starts (hidden in the UI).
INFERENCE_DB_PASSWORD: Final = "PLATFORM_INFERENCE_DB_PASSWORD"


class PlatformSettings(BaseSettings):
    """Every control-plane setting, with the variable it is read from (prefix ``PLATFORM_`` unless named)."""

    model_config = SettingsConfigDict(env_prefix="PLATFORM_", extra="ignore", frozen=True)

    env: Environment = Field(default=Environment.LOCAL, description="local | staging | prod (PLATFORM_ENV).")
    home: Path = Field(default=Path(".platform_home"), description="Where local state lives (PLATFORM_HOME).")
    source: Literal["synthetic", "uci_csv"] = Field(default="synthetic", description="Raw data source.")
    uci_csv: str | None = Field(default=None, description="Path or s3:// URI of the UCI CSV (PLATFORM_UCI_CSV).")
    uci_replay_start: str = Field(default=PARTITIONS_START, description="Date of the first UCI replay day.")
    seed: int = Field(default=2005, description="Synthetic generator seed.")
    rows_per_day: int = Field(default=1000, gt=0, description="Synthetic rows per daily partition.")
    lake_uri: str | None = Field(default=None, description="Override of the topology's lake (path or s3://).")
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL (MinIO, moto); default AWS.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "PLATFORM_MLFLOW_TRACKING_URI"),
        description="Override of the topology's MLflow tracking server/store (MLFLOW_TRACKING_URI).",
    )
    mlflow_artifacts: str | None = Field(default=None, description="Artifact root of the MLflow experiment.")
    inference_db: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CREDIT_RISK_INFERENCE_DB", "PLATFORM_INFERENCE_DB"),
        description="Override of the topology's inference log (SQLAlchemy URL, no password).",
    )
    deploy_target: Literal["local", "kubernetes"] | None = Field(default=None, description="Override of the target.")
    service_port: int = Field(default=3001, description="Port of the local service.")
    service_workers: int = Field(default=2, ge=1, description="Worker processes of the local service.")
    service_tls_dir: Path | None = Field(
        default=None,
        description="Mutual TLS with the service: service/ and client/ (ca.crt, tls.crt, tls.key) below it.",
    )
    rollout_strategy: Literal["replace", "canary"] = Field(default="replace", description="How a new version ships.")
    first_canary_weight: float = Field(default=10.0, gt=0, le=100, description="First canary step, percent.")
    shadow_share: float = Field(
        default=registry.DEFAULT_SHADOW_SHARE, ge=0, le=100, description="Served applications a shadow scores, percent."
    )
    auto_approve_local: bool = Field(
        default=True,
        description="local only: a passed promotion gate records the labelled auto-approval when none is in force.",
    )
    k8s_overlay: str | None = Field(default=None, description="Override of the kustomize overlay.")
    k8s_namespace: str | None = Field(default=None, description="Override of the Kubernetes namespace.")
    training_window_days: int = Field(default=0, ge=0, description="Newest N tensor partitions to train on; 0: all.")
    auc_floor: float = Field(default=slo.MODEL_QUALITY.auc_floor, description="Quality gate: CNN test AUC floor.")
    baseline_margin: float = Field(default=slo.MODEL_QUALITY.baseline_margin, description="Allowed AUC below baseline.")
    max_quarantine_share: float = Field(default=slo.MODEL_QUALITY.max_quarantine_share, description="Raw check bound.")
    min_disparate_impact: float = Field(
        default=slo.FAIRNESS.min_disparate_impact_ratio, description="Fairness gate: lowest DI ratio."
    )
    max_equal_opportunity_diff: float = Field(
        default=slo.FAIRNESS.max_equal_opportunity_difference, description="Fairness gate: largest TPR gap."
    )
    signing_key_file: str | None = Field(default=None, description="Ed25519 private key file for manifests.")
    verify_key_file: str | None = Field(default=None, description="Ed25519 public key file for manifests.")
    loop_service_url: str | None = Field(default=None, description="Service whose /metrics the canary reads.")
    loop_window_hours: float = Field(default=24.0, gt=0, description="Live metrics over the last N hours.")
    loop_drop_mode: slo.DropMode = Field(default=slo.ACCURACY_DROP.mode, description="relative | absolute | either.")
    loop_accuracy_floor: float = Field(default=slo.ACCURACY_DROP.accuracy_floor, ge=0, le=1)
    loop_max_auc_drop: float = Field(default=slo.ACCURACY_DROP.max_auc_drop, ge=0, le=1)
    loop_max_accuracy_drop: float = Field(default=slo.ACCURACY_DROP.max_accuracy_drop, ge=0, le=1)
    loop_min_labelled: int = Field(default=slo.ACCURACY_DROP.min_labelled, ge=1)
    loop_retrigger_hours: float = Field(default=slo.ACCURACY_DROP.retrigger_hours, ge=0)
    loop_use_estimate: bool = Field(
        default=slo.ACCURACY_DROP.use_estimate, description="Accuracy drop: test the estimate while outcomes are few."
    )
    loop_min_predictions_for_estimate: int = Field(default=slo.ACCURACY_DROP.min_predictions_for_estimate, ge=1)
    loop_max_estimated_auc_drop: float = Field(default=slo.ACCURACY_DROP.max_estimated_auc_drop, ge=0, le=1)
    loop_max_estimated_accuracy_drop: float = Field(default=slo.ACCURACY_DROP.max_estimated_accuracy_drop, ge=0, le=1)
    loop_drift_share: float = Field(default=slo.DRIFT.drift_share, ge=0, le=1)
    loop_canary_steps: str = Field(
        default=",".join(f"{step:g}" for step in slo.CANARY.steps), description="Challenger weights, percent, a,b,c."
    )
    loop_canary_min_labelled: int = Field(default=slo.CANARY.min_labelled, ge=1)
    loop_canary_max_auc_drop: float = Field(default=slo.CANARY.max_auc_drop, ge=0, le=1)
    loop_canary_max_accuracy_drop: float = Field(default=slo.CANARY.max_accuracy_drop, ge=0, le=1)
    loop_canary_max_error_rate: float = Field(default=slo.CANARY.max_error_rate, ge=0, le=1)
    loop_canary_max_p99_seconds: float = Field(default=slo.CANARY.max_p99_seconds, gt=0)
    promotion_min_labelled: int = Field(default=slo.PROMOTION.min_labelled, ge=1)
    promotion_auc_margin: float = Field(default=slo.PROMOTION.auc_margin, ge=0, le=1)
    promotion_max_labelled_inconclusive: int = Field(default=slo.PROMOTION.max_labelled_inconclusive, ge=1)
    promotion_max_approval_rate_change: float = Field(default=slo.PROMOTION.max_approval_rate_change, ge=0, le=1)
    promotion_shadow_min_predictions: int = Field(default=slo.PROMOTION.shadow_min_predictions, ge=1)
    sensor_intervals: str = Field(
        default="",
        description=(
            "Sensors evaluated more (or less) often than their own minimum interval, seconds, as "
            "name=seconds pairs: 'accuracy_drop_sensor=30,canary_sensor=20' (make demo's). Empty: each sensor's own."
        ),
    )
    loop_mode: Literal["canary", "ab"] = Field(default="canary", description="canary: step and promote; ab: split.")
    loop_ab_hours: float = Field(default=24.0, gt=0, description="Length of an A/B test before its report.")
    spark_master: str = Field(default="local[*]", validation_alias=AliasChoices("SPARK_MASTER"))
    spark_shuffle_partitions: int = Field(default=8, validation_alias=AliasChoices("SPARK_SHUFFLE_PARTITIONS"))
    spark_ui_enabled: bool = Field(default=False, validation_alias=AliasChoices("SPARK_UI_ENABLED"))
    spark_driver_memory: str = Field(default="2g", validation_alias=AliasChoices("SPARK_DRIVER_MEMORY"))

    @property
    def home_dir(self) -> Path:
        return self.home.resolve()

    @field_validator("loop_canary_steps")
    @classmethod
    def _steps(cls, value: str) -> str:
        steps = [float(step) for step in value.split(",") if step.strip()]
        if not steps or steps != sorted(steps) or not all(0 < step <= 100 for step in steps) or steps[-1] != 100:
            raise ValueError("must be increasing percentages in (0, 100] ending at 100, e.g. 10,50,100")
        return value

    @field_validator("sensor_intervals")
    @classmethod
    def _intervals(cls, value: str) -> str:
        cls._parse_intervals(value)
        return value

    @staticmethod
    def _parse_intervals(value: str) -> dict[str, int]:
        intervals = {}
        for pair in (p.strip() for p in value.split(",") if p.strip()):
            name, _, seconds = pair.partition("=")
            if not name.strip() or not seconds.strip().isdigit() or int(seconds) < 1:
                raise ValueError(f"{pair!r}: must be name=seconds pairs (whole seconds >= 1), e.g. canary_sensor=20")
            intervals[name.strip()] = int(seconds)
        return intervals

    def sensor_interval_overrides(self) -> dict[str, int]:
        """``{sensor name: minimum interval in seconds}`` for the sensors whose own interval is overridden."""
        return self._parse_intervals(self.sensor_intervals)

    def canary_steps(self) -> list[float]:
        return [float(step) for step in self.loop_canary_steps.split(",") if step.strip()]


@dataclass(frozen=True)
class Topology:
    """What an environment runs on. URLs carry no secrets."""

    deploy_target: Literal["local", "kubernetes"]
    lake_uri: str
    mlflow_tracking_uri: str
    mlflow_artifacts: str | None
    inference_db: str  # local: the service's own SQLite file under PLATFORM_HOME
    inference_db_password_env: str | None
    k8s_overlay: str
    k8s_namespace: str
    signing_keys_required: bool


def _cluster(env: Environment) -> Topology:
    namespace = f"credit-risk-{env.value}"
    return Topology(
        deploy_target="kubernetes",
        lake_uri=f"s3://credit-risk-lake/{env.value}",
        mlflow_tracking_uri=f"http://mlflow.{namespace}.svc.cluster.local:5000",
        mlflow_artifacts=None,  # the MLflow server proxies its artifact store (S3)
        inference_db=f"postgresql+psycopg2://credit_risk@postgres.{namespace}.svc.cluster.local:5432/inference_log",
        inference_db_password_env=INFERENCE_DB_PASSWORD,
        k8s_overlay=f"k8s/overlays/{env.value}",
        k8s_namespace=namespace,
        signing_keys_required=True,
    )


def topology(settings: PlatformSettings) -> Topology:
    """The environment's table, with any explicit override applied."""
    home = settings.home_dir
    if settings.env is Environment.LOCAL:
        base = Topology(
            deploy_target="local",
            lake_uri=str(home / "lake"),
            mlflow_tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            mlflow_artifacts=(home / "mlflow" / "artifacts").as_uri(),
            inference_db=inference_db_under(home),
            inference_db_password_env=None,
            k8s_overlay="k8s/overlays/staging",
            k8s_namespace="credit-risk-staging",
            signing_keys_required=False,
        )
    else:
        base = _cluster(settings.env)
    overrides = {
        "deploy_target": settings.deploy_target,
        "lake_uri": settings.lake_uri,
        "mlflow_tracking_uri": settings.mlflow_tracking_uri,
        "mlflow_artifacts": settings.mlflow_artifacts,
        "inference_db": settings.inference_db,
        "k8s_overlay": settings.k8s_overlay,
        "k8s_namespace": settings.k8s_namespace,
    }
    return Topology(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def load() -> PlatformSettings:
    """The settings the environment gives; an invalid value fails naming its variable."""
    try:
        return PlatformSettings()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = str(item["loc"][0]) if item["loc"] else "?"
            # A field read through an alias is reported by that alias (the variable's own name).
            variable = f"PLATFORM_{where.upper()}" if where in PlatformSettings.model_fields else where
            problems.append(f"{variable}: {item['msg']} (got {item.get('input')!r})")
        raise SettingsError("invalid platform settings: " + "; ".join(problems)) from None


def platform_home() -> Path:
    """Root of everything the platform keeps on local disk."""
    return load().home_dir


def mlflow_tracking_uri() -> str:
    return topology(load()).mlflow_tracking_uri


def missing_secrets(settings: PlatformSettings) -> list[str]:
    """The variables a cluster environment needs that are not set (none are needed locally)."""
    top = topology(settings)
    if not top.signing_keys_required:
        return []
    missing = []
    if not (settings.signing_key_file or os.environ.get("PLATFORM_SIGNING_KEY")):
        missing.append("PLATFORM_SIGNING_KEY_FILE (or PLATFORM_SIGNING_KEY)")
    if not settings.verify_key_file:
        missing.append("PLATFORM_VERIFY_KEY_FILE")
    if top.inference_db_password_env and not os.environ.get(top.inference_db_password_env):
        missing.append(top.inference_db_password_env)
    return missing


def require_secrets(settings: PlatformSettings) -> None:
    """Fail before any work when a cluster environment lacks a credential, naming every missing variable."""
    missing = missing_secrets(settings)
    if missing:
        raise SettingsError(f"PLATFORM_ENV={settings.env.value} needs {', '.join(missing)}: set them (see README)")


def inference_db_url(settings: PlatformSettings) -> str:
    """The inference log's URL with its password read now (for command-line tools; runs use ``dg.EnvVar``);
    ``""`` for the service's own default."""
    top = topology(settings)
    if not top.inference_db or not top.inference_db_password_env:
        return top.inference_db
    password = os.environ.get(top.inference_db_password_env)
    if not password:
        raise SettingsError(f"{top.inference_db_password_env} is not set: the {settings.env} inference log needs it")
    return make_url(top.inference_db).set(password=password).render_as_string(hide_password=False)


def render(settings: PlatformSettings) -> str:
    """The resolved configuration of ``settings.env`` as a two-column table (no secrets in it)."""
    rows = [("environment", settings.env.value), *asdict(topology(settings)).items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v if v not in (None, '') else '-'}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.settings", description=render.__doc__)
    parser.add_argument("--env", choices=[e.value for e in Environment], help="instead of PLATFORM_ENV")
    args = parser.parse_args(argv)
    try:
        settings = load()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    if args.env:
        settings = settings.model_copy(update={"env": Environment(args.env)})
    print(render(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
