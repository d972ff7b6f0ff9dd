"""The closed loop's assets: live model quality from the inference log, canary decisions, the A/B report.

Thin wrappers over ``platform_assets.ml`` (``live_quality``, ``canary``, ``ab_comparison``,
``service_metrics``); the sensors in ``sensors.py`` read the same sources through the helpers here, so they
work without these assets being materialized. A model-version rollout keeps its state in the MLflow registry
only (aliases, challenger weight, step start: ``ModelRegistry``); each decision's measurements and reasons
are the ``canary_decision`` materialization's metadata.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from platform_assets import model_store
from platform_assets.core import registry
from platform_assets.deploy.local import DeploymentFailed
from platform_assets.deploy.rollout import RolloutPlan
from platform_assets.ml import ab_comparison, canary, estimated_quality, live_quality
from platform_assets.resources.deployer import ServiceDeployer
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.monitoring import LiveMonitoring
from platform_assets.retries import fail_fast, io_retry_policy

GROUP = "monitoring"
LIVE_PERFORMANCE_KEY = "monitoring/live_performance.json"
AB_REPORT_KEY = "monitoring/ab_comparison.json"
ESTIMATED_PERFORMANCE_KEY = "monitoring/estimated_performance.json"
DEPLOYMENT = dg.AssetKey("credit_risk_deployment")


# -- helpers shared with the sensors -----------------------------------------------------------------
def validation_metrics(lake: LakeStorage, version: str) -> dict[str, float] | None:
    """The validation metrics in ``version``'s record, or None when the lake has no record of it."""
    try:
        return dict(model_store.load_record(lake, version).validation_metrics)
    except FileNotFoundError:
        return None


def measure_canary(
    live_monitoring: LiveMonitoring, model_registry: ModelRegistry, champion: str, challenger: str, weight: float
) -> tuple[canary.CanaryDecision, dict[str, Any]]:
    """Both versions' live quality since the step began, what each answered on /predict, and the decision.

    Raises when the inference log, the registry or the service cannot be read (the sensor turns that into a
    skip).
    """
    start = model_registry.step_started() or live_monitoring.window_start()
    frame = live_monitoring.predictions(start=start)
    # A shadow's rows are scores nobody was answered with: the canary compares what the two roles decided.
    frame = frame[frame["role"] != registry.SHADOW]
    quality = {
        role: live_quality.frame_quality(frame[frame["model_version"] == version])
        for role, version in (("champion", champion), ("challenger", challenger))
    }
    served = live_monitoring.served({"champion": champion, "challenger": challenger})
    decision = canary.canary_decision(
        weight,
        quality["champion"],
        quality["challenger"],
        live_monitoring.canary_policy(),
        served["challenger"] if served else None,
        served["champion"] if served else None,
    )
    return decision, {"window_start": start.isoformat(), "quality": quality}


def window_predictions(
    live_monitoring: LiveMonitoring, window_hours: float | None
) -> tuple[float, datetime, pd.DataFrame]:
    """The window's length (hours: ``window_hours``, or the resource's), its start and every prediction made since,
    labelled or not; no inference log yet is a failure that is not retried."""
    hours = window_hours if window_hours is not None else live_monitoring.window_hours
    start = datetime.now(UTC) - timedelta(hours=hours)
    with fail_fast(FileNotFoundError):
        frame = live_monitoring.predictions(start=start, labelled_only=False)
    return hours, start, frame


def _float_metadata(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    """The numbers of ``values`` as floats (the UI plots float metadata over materializations), keys prefixed;
    missing values are left out."""
    return {f"{prefix}{k}": float(v) for k, v in values.items() if isinstance(v, int | float) and v is not None}


def _float_or_none(value: float | None) -> float | dg.MetadataValue[Any]:
    return dg.MetadataValue.null() if value is None else float(value)


def _monitoring_asset(kind: str, description: str) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``dg.asset`` with what every monitoring asset shares: it reads the deployed service's traffic
    (so it follows ``credit_risk_deployment``), its group, owner and the platform's I/O retry policy."""
    return dg.asset(
        deps=[DEPLOYMENT],
        group_name=GROUP,
        kinds={kind},
        retry_policy=io_retry_policy(),
        description=description,
    )


# -- live_model_performance --------------------------------------------------------------------------
class LivePerformanceConfig(dg.Config):
    window_hours: float | None = Field(default=None, description="Predictions of the last N hours; None: resource's.")
    min_group_size: int = Field(default=30, description="Groups with fewer labelled outcomes are left out.")


@_monitoring_asset(
    kind="pandas",
    description=(
        "Live quality of each served model version (and role) from the inference log joined with the outcomes "
        "posted to /feedback: labelled count, accuracy, ROC AUC, Brier score, calibration error and per-group "
        "metrics by protected attribute, over a window; predictions, outcomes and coverage per decision, and "
        "labels_cover (approved_only: the realized metrics are those of the approved population). JSON at "
        "monitoring/live_performance.json."
    ),
)
def live_model_performance(
    context: dg.AssetExecutionContext,
    config: LivePerformanceConfig,
    lake: LakeStorage,
    live_monitoring: LiveMonitoring,
) -> dg.MaterializeResult[Any]:
    hours, start, frame = window_predictions(live_monitoring, config.window_hours)
    document = live_quality.live_performance(frame, config.min_group_size)
    for version, metrics in document["versions"].items():
        metrics["validation_metrics"] = validation_metrics(lake, version)
    document.update(
        {"window_hours": hours, "window_start": start.isoformat(), "computed_at": datetime.now(UTC).isoformat()}
    )
    model_store.write_json(lake, LIVE_PERFORMANCE_KEY, document)
    table = live_quality.versions_table(document)
    context.log.info(f"live performance since {start:%Y-%m-%d %H:%M} UTC:\n{table}")
    per_version: dict[str, float] = {}
    for version, metrics in document["versions"].items():
        keys = ("labelled", "coverage", "accuracy", "roc_auc", "brier", "ece")
        per_version.update(_float_metadata(f"{version}/", {k: metrics[k] for k in keys}))
        for decision, counts in metrics["decisions"].items():
            per_version.update(_float_metadata(f"{version}/{decision}/", counts))
    return dg.MaterializeResult(
        metadata={
            "predictions": document["predictions"],
            "labelled": document["labelled"],
            "coverage": _float_or_none(document["coverage"]),
            "labels_cover": dg.MetadataValue.json({v: m["labels_cover"] for v, m in document["versions"].items()}),
            "window_hours": hours,
            "versions": dg.MetadataValue.md(table),
            "groups": dg.MetadataValue.json({v: m["groups"] for v, m in document["versions"].items()}),
            "path": dg.MetadataValue.path(lake.uri(LIVE_PERFORMANCE_KEY)),
            **per_version,
        }
    )


# -- estimated_performance -------------------------------------------------------------------------------
def stability_reference(lake: LakeStorage, version: str, max_rows: int) -> estimated_quality.StabilityReference:
    """``version``'s reference, the drift report's: a seeded sample of its training split (at most ``max_rows``
    rows), scored by its served ``model.onnx``, with the rows' raw inputs."""
    record = model_store.load_record(lake, version)
    sample = model_store.reference_sample(lake, record, max_rows)
    scores = model_store.load_onnx(lake, record).predict(sample.features.tensor, sample.features.static)
    missing = [c for c in estimated_quality.INPUT_COLUMNS if c not in sample.frame.columns]
    if missing:
        raise ValueError(f"the training rows of {version} lack the raw column(s) {missing}: rematerialize its tensors")
    return estimated_quality.StabilityReference(
        scores=scores.astype("float64"),
        inputs=sample.frame[list(estimated_quality.INPUT_COLUMNS)].astype("float64"),
        threshold=record.threshold,
        description=f"train split of {version} ({len(sample)} rows, at most {max_rows}), scored by its model.onnx",
    )


class EstimatedPerformanceConfig(dg.Config):
    window_hours: float | None = Field(default=None, description="Predictions of the last N hours; None: resource's.")
    reference_rows: int = Field(
        default=model_store.REFERENCE_ROWS, gt=0, description="Most rows of each version's training split compared."
    )


@_monitoring_asset(
    kind="pandas",
    description=(
        "Quality of each served model version before its outcomes arrive: ROC AUC and accuracy estimated from the "
        "logged calibrated probabilities, beside the realized values on whatever outcomes exist (with their "
        "coverage per decision); PSI of the score and CSI of the declined rows' inputs against the version's "
        "training split, each with an alarm threshold for the window's size. JSON at "
        "monitoring/estimated_performance.json."
    ),
)
def estimated_performance(
    context: dg.AssetExecutionContext,
    config: EstimatedPerformanceConfig,
    lake: LakeStorage,
    live_monitoring: LiveMonitoring,
) -> dg.MaterializeResult[Any]:
    hours, start, frame = window_predictions(live_monitoring, config.window_hours)
    policy = estimated_quality.StabilityPolicy()
    versions: dict[str, Any] = {}
    for version, rows in frame.groupby("model_version", sort=True):
        with fail_fast(FileNotFoundError, ValueError):
            reference = stability_reference(lake, str(version), config.reference_rows)
            versions[str(version)] = estimated_quality.version_report(rows, reference, policy)
    document = {
        "predictions": len(frame),
        "versions": versions,
        "stability": {"bins": policy.bins, "confidence": policy.confidence},
        "window_hours": hours,
        "window_start": start.isoformat(),
        "computed_at": datetime.now(UTC).isoformat(),
    }
    model_store.write_json(lake, ESTIMATED_PERFORMANCE_KEY, document)
    table = estimated_quality.report_table(document)
    context.log.info(f"estimated performance since {start:%Y-%m-%d %H:%M} UTC:\n{table}")
    per_version: dict[str, float] = {}
    alarms: dict[str, list[str]] = {}
    for version, report in versions.items():
        score = report["score_psi"]
        estimated = report["estimated"]
        per_version.update(
            _float_metadata(f"{version}/estimated_", {k: estimated[k] for k in ("roc_auc", "accuracy", "n")})
        )
        per_version.update(_float_metadata(f"{version}/realized_", report["realized"]))
        per_version.update(
            {
                f"{version}/score_psi": score["psi"],
                f"{version}/score_psi_threshold": score["threshold"],
                **{f"{version}/csi/{c}": r["csi"] for c, r in report["inputs_csi"]["columns"].items()},
            }
        )
        alarms[version] = (["score"] if score["alarm"] else []) + report["inputs_csi"]["alarms"]
    return dg.MaterializeResult(
        metadata={
            "predictions": len(frame),
            "window_hours": float(hours),
            "versions": dg.MetadataValue.md(table),
            "alarms": dg.MetadataValue.json(alarms),
            "labels_cover": dg.MetadataValue.json({v: r["realized"]["labels_cover"] for v, r in versions.items()}),
            "path": dg.MetadataValue.path(lake.uri(ESTIMATED_PERFORMANCE_KEY)),
            **per_version,
        }
    )


# -- canary_decision -----------------------------------------------------------------------------------
class CanaryDecisionConfig(dg.Config):
    expected_challenger: str = Field(
        default="", description="The challenger the sensor judged; nothing changes if the registry moved on."
    )
    expected_weight: float = Field(default=-1.0, description="Its weight when judged (-1: do not check).")
    force: str = Field(
        default="",
        description="Operator override: 'rollback' regardless of metrics (a promotion goes through promotion_job).",
    )


def plan_for(
    decision: canary.CanaryDecision, champion: str, challenger: str, shadow: str | None = None
) -> RolloutPlan | None:
    """The registry state a decision leads to (same RolloutPlan/ModelRegistry mechanics as the deployment); a
    ``shadow`` scoring meanwhile keeps scoring. A canary never promotes by itself: its last step hands the
    challenger to ``promotion_decision`` (``ready_for_promotion``)."""
    if decision.action == "step":
        return RolloutPlan(champion, challenger, decision.to_weight, "canary_started", shadow=shadow)
    if decision.action == "rollback":
        return RolloutPlan(champion, None, 0.0, "unchanged", shadow=shadow)
    return None


def ready_for_promotion(decision: canary.CanaryDecision, challenger: str) -> canary.CanaryDecision:
    """A passed last step, as the canary records it: a wait, since the promotion to champion is the promotion
    gate's (statistical evidence and a signed approval: ``promotion_job`` for ``challenger``)."""
    reasons = [
        *decision.reasons,
        f"the promotion to champion is promotion_decision's (gate and approval): promotion_job for {challenger}",
    ]
    return canary.CanaryDecision("wait", decision.from_weight, decision.from_weight, reasons, decision.measured)


def _forced(decision: canary.CanaryDecision, force: str, challenger: str) -> canary.CanaryDecision:
    if force != "rollback":
        hint = f"; a promotion goes through promotion_job for {challenger}" if force == "promote" else ""
        raise ValueError(f"force must be 'rollback' or empty, got {force!r}{hint}")
    reasons = [f"forced by the operator ({force})", *decision.reasons]
    return canary.CanaryDecision("rollback", decision.from_weight, 0.0, reasons, decision.measured)


@_monitoring_asset(
    kind="mlflow",
    description=(
        "One step of a model-version canary: measures champion and challenger (live quality since the step began "
        "from the inference log; each one's /predict 5xx share and p99 from the service's /metrics), then steps "
        "the challenger's weight, hands it to the promotion gate after the last step or rolls it back (weight 0, "
        "alias removed, version retired, champion unchanged) in the MLflow registry, where the rollout's state "
        "lives, and records why."
    ),
)
def canary_decision(
    context: dg.AssetExecutionContext,
    config: CanaryDecisionConfig,
    model_registry: ModelRegistry,
    live_monitoring: LiveMonitoring,
    deployer: ServiceDeployer,
) -> dg.MaterializeResult[Any]:
    aliases = model_registry.aliases()
    weight = model_registry.challenger_weight()
    champion, challenger = aliases.get("champion"), aliases.get("challenger")
    stale = None
    if champion is None or challenger is None:
        stale = f"no canary in progress (registry aliases: {aliases or 'none'})"
    elif config.expected_challenger and (
        challenger != config.expected_challenger or (config.expected_weight >= 0 and weight != config.expected_weight)
    ):
        stale = (
            f"the registry moved on since the sensor judged {config.expected_challenger} at "
            f"{config.expected_weight:g} %: now {challenger} at {weight:g} %"
        )
    if stale is not None:
        context.log.info(f"nothing to do: {stale}")
        return dg.MaterializeResult(metadata={"action": "none", "reasons": dg.MetadataValue.json([stale])})
    assert champion is not None and challenger is not None
    decision, measured = measure_canary(live_monitoring, model_registry, champion, challenger, weight)
    if config.force:
        with fail_fast(ValueError):
            decision = _forced(decision, config.force, challenger)
    if decision.action == "promote":
        decision = ready_for_promotion(decision, challenger)
    plan = plan_for(decision, champion, challenger, aliases.get(registry.SHADOW))
    served: dict[str, Any] = {}
    if plan is not None:
        previous = (aliases, weight)
        model_registry.apply(plan)
        state = deployer.local_manager().current() if deployer.target == "local" else None
        if state is not None:
            try:
                served = deployer.wait_for_models(state, plan)
            except DeploymentFailed as failure:
                if decision.action != "rollback":  # a rollback is the safe state: keep it
                    model_registry.restore(*previous)
                raise dg.Failure(description=f"{decision.action}: {failure}", allow_retries=False) from failure
        if decision.action == "rollback":
            model_registry.retire(challenger, "canary rolled back: " + "; ".join(decision.reasons)[:200])
    policy = live_monitoring.canary_policy()
    summary = f"{decision.action}: {challenger} {decision.from_weight:g} % -> {decision.to_weight:g} %"
    context.log.info(f"{summary} ({'; '.join(decision.reasons)})")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(json.dumps([champion, challenger, decision.action, decision.to_weight])),
        metadata={
            "action": decision.action,
            "summary": summary,
            "champion": plan.champion if plan else champion,
            "challenger": (plan.challenger or "none") if plan else challenger,
            "from_weight_percent": decision.from_weight,
            "to_weight_percent": decision.to_weight,
            "reasons": dg.MetadataValue.json(decision.reasons),
            "measured": dg.MetadataValue.json(decision.measured),
            "window_start": measured["window_start"],
            "thresholds": dg.MetadataValue.json(
                {
                    "steps": list(policy.steps),
                    "min_labelled": policy.min_labelled,
                    "max_auc_drop": policy.max_auc_drop,
                    "max_accuracy_drop": policy.max_accuracy_drop,
                    "max_error_rate": policy.max_error_rate,
                    "max_error_rate_excess": policy.max_error_rate_excess,
                    "max_p99_seconds": policy.max_p99_seconds,
                    "min_requests": policy.min_requests,
                }
            ),
            "served_status": dg.MetadataValue.json(served),
            **_float_metadata("champion/", measured["quality"]["champion"]),
            **_float_metadata("challenger/", measured["quality"]["challenger"]),
        },
    )


# -- ab_comparison_report ------------------------------------------------------------------------------
class ABReportConfig(dg.Config):
    version_a: str = Field(default="", description="Baseline version; empty: the champion.")
    version_b: str = Field(default="", description="Compared version; empty: the challenger.")
    end_test: bool = Field(
        default=False, description="End the A/B split after the report (challenger weight 0, champion unchanged)."
    )
    alpha: float = Field(default=0.05, description="Significance level of the tests.")


@_monitoring_asset(
    kind="pandas",
    description=(
        "A/B test report: live metrics of champion and challenger side by side since the split began, with a "
        "two-proportion z-test of the accuracy difference and a z-test of the ROC AUC difference (Hanley-McNeil)."
    ),
)
def ab_comparison_report(
    context: dg.AssetExecutionContext,
    config: ABReportConfig,
    lake: LakeStorage,
    model_registry: ModelRegistry,
    live_monitoring: LiveMonitoring,
) -> dg.MaterializeResult[Any]:
    aliases = model_registry.aliases()
    a = config.version_a or aliases.get("champion")
    b = config.version_b or aliases.get("challenger")
    with fail_fast(ValueError):
        if not a or not b:
            raise ValueError(f"two versions are needed: set version_a/version_b (registry aliases: {aliases})")
    start = (
        model_registry.step_started() if aliases.get("challenger") == b else None
    ) or live_monitoring.window_start()
    with fail_fast(FileNotFoundError):
        frame = live_monitoring.predictions(start=start, model_versions=[a, b])
    result = ab_comparison.compare_versions(
        frame[frame["model_version"] == a], frame[frame["model_version"] == b], config.alpha
    )
    report = {"version_a": a, "version_b": b, "since": start.isoformat(), **result}
    if config.end_test and aliases.get("challenger") == b and aliases.get("champion"):
        model_registry.apply(
            RolloutPlan(aliases["champion"], None, 0.0, "unchanged", shadow=aliases.get(registry.SHADOW))
        )
        report["ended"] = datetime.now(UTC).isoformat()
    model_store.write_json(lake, AB_REPORT_KEY, report)
    rows = [("labelled", "labelled"), ("accuracy", "accuracy"), ("ROC AUC", "roc_auc"), ("Brier", "brier")]
    cell = live_quality.cell
    table = "\n".join(
        [f"| metric | {a} | {b} |", "|---|---|---|"]
        + [f"| {label} | {cell(result['a'].get(k))} | {cell(result['b'].get(k))} |" for label, k in rows]
    )
    context.log.info(f"A/B {a} vs {b} since {start:%Y-%m-%d %H:%M} UTC: {result['verdict']}\n{table}")
    return dg.MaterializeResult(
        metadata={
            "version_a": a,
            "version_b": b,
            "verdict": result["verdict"],
            "comparison": dg.MetadataValue.md(table),
            "ended": bool(report.get("ended")),
            **_float_metadata("", {k: result.get(k) for k in result if k.endswith(("_difference", "_p_value"))}),
            "path": dg.MetadataValue.path(lake.uri(AB_REPORT_KEY)),
        }
    )
