"""The closed loop's sensors: a live-quality drop or data drift requests a retrain; a challenger is stepped,
promoted or rolled back. A source that cannot be read (store locked, service down) is a skip with the
reason, never an exception in the daemon; each sensor's cursor makes one event lead to one request."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from platform_assets.defs.monitoring.assets import measure_canary, validation_metrics
from platform_assets.defs.monitoring.jobs import ab_report_job, canary_job
from platform_assets.defs.training.jobs import retrain_and_deploy_job
from platform_assets.ml import live_quality
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.monitoring import LiveMonitoring

DRIFT_REPORT = dg.AssetKey("data_drift_report")
#: A step request not yet reflected in the registry is repeated after this long (its run may have failed).
CANARY_REQUEST_TIMEOUT = timedelta(minutes=10)
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def read_cursor(context: dg.SensorEvaluationContext) -> dict[str, Any]:
    try:
        value = json.loads(context.cursor) if context.cursor else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def unreachable(what: str, error: BaseException) -> dg.SkipReason:
    return dg.SkipReason(f"{what} unreachable, will retry: {type(error).__name__}: {error}")


def job_active(context: dg.SensorEvaluationContext, job_name: str) -> bool:
    runs = context.instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, statuses=ACTIVE), limit=1)
    return bool(runs)


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- accuracy drop -----------------------------------------------------------------------------------------
@dg.sensor(
    name="accuracy_drop_sensor",
    job=retrain_and_deploy_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests retrain_and_deploy_job when the champion's live quality (inference log joined with feedback, "
        "over the window) drops: relative to its validation metrics (default) and/or below an absolute accuracy "
        "floor, once enough outcomes are labelled. One drop, one retrain (cursor: model version, last trigger)."
    ),
)
def accuracy_drop_sensor(
    context: dg.SensorEvaluationContext,
    live_monitoring: LiveMonitoring,
    model_registry: ModelRegistry,
    lake: LakeStorage,
) -> dg.SensorResult | dg.SkipReason:
    try:
        champion = model_registry.aliases().get("champion")
    except Exception as error:  # noqa: BLE001 - a sensor must not crash the daemon
        return unreachable("model registry", error)
    if champion is None:
        return dg.SkipReason("no champion in the model registry: nothing is serving")
    try:
        frame = live_monitoring.predictions(model_versions=[champion])
    except Exception as error:  # noqa: BLE001
        return unreachable("inference log", error)
    live = live_quality.frame_quality(frame)
    policy = live_monitoring.drop_policy()
    try:
        validation = validation_metrics(lake, champion)
        reasons = live_quality.quality_breach(live, validation, policy)
    except ValueError as error:
        return dg.SkipReason(f"champion {champion}: {error}")
    except Exception as error:  # noqa: BLE001
        return unreachable("lake", error)
    auc = "n/a" if live["roc_auc"] is None else f"{live['roc_auc']:.4f}"
    shown = f"accuracy {live['accuracy']:.4f}, ROC AUC {auc}"
    if not reasons:
        return dg.SkipReason(f"champion {champion} holds over {live['labelled']} labelled outcomes ({shown})")
    cursor = read_cursor(context)
    now = now_utc()
    last = cursor.get("triggered_at")
    if cursor.get("model_version") == champion and last:
        again = datetime.fromisoformat(last) + timedelta(hours=live_monitoring.retrigger_hours)
        if now < again:
            return dg.SkipReason(
                f"champion {champion} dropped ({reasons[0]}), but a retrain was already requested at {last}; "
                f"the next request is possible after {again.isoformat()}"
            )
    if job_active(context, retrain_and_deploy_job.name):
        return dg.SkipReason(f"champion {champion} dropped ({reasons[0]}); a retrain is already running")
    request = dg.RunRequest(
        run_key=f"accuracy-drop-{champion}-{now:%Y%m%dT%H%M%S}",
        tags={
            "loop/trigger": "accuracy_drop",
            "loop/model_version": champion,
            "loop/labelled": str(live["labelled"]),
            "loop/reason": "; ".join(reasons)[:240],
        },
    )
    context.log.info(f"champion {champion}: {'; '.join(reasons)} -> retrain")
    return dg.SensorResult(
        run_requests=[request],
        cursor=json.dumps({"model_version": champion, "triggered_at": now.isoformat(), "reasons": reasons}),
    )


# -- drift -------------------------------------------------------------------------------------------------
@dg.sensor(
    name="drift_sensor",
    job=retrain_and_deploy_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests retrain_and_deploy_job when the newest data_drift_report's Evidently drift share exceeds the "
        "threshold (and its window is not already in the training data). One request per report (cursor: the "
        "materialization's storage id)."
    ),
)
def drift_sensor(
    context: dg.SensorEvaluationContext, live_monitoring: LiveMonitoring
) -> dg.SensorResult | dg.SkipReason:
    try:
        records = context.instance.fetch_materializations(DRIFT_REPORT, limit=1).records
    except Exception as error:  # noqa: BLE001
        return unreachable("Dagster event log", error)
    if not records:
        return dg.SkipReason("no data_drift_report materialized yet")
    record = records[0]
    seen = int(read_cursor(context).get("storage_id", -1))
    if record.storage_id <= seen:
        return dg.SkipReason(f"no data_drift_report since the one judged (storage id {seen})")
    metadata = record.asset_materialization.metadata if record.asset_materialization else {}
    cursor = json.dumps({"storage_id": record.storage_id})
    if "drift_share" not in metadata:
        return dg.SensorResult(skip_reason="the newest data_drift_report has no drift_share metadata", cursor=cursor)
    share = float(metadata["drift_share"].value)  # type: ignore[arg-type]
    overlap = metadata.get("window_overlaps_training")
    version = metadata["model_version"].value if "model_version" in metadata else "?"
    threshold = live_monitoring.drift_share
    if share <= threshold:
        return dg.SensorResult(
            skip_reason=f"drift share {share:.3f} of {version} is within the threshold {threshold:.3f}", cursor=cursor
        )
    if overlap is not None and overlap.value:
        return dg.SensorResult(
            skip_reason=(
                f"drift share {share:.3f} > {threshold:.3f}, but the drift window is already in {version}'s "
                "training data: a retrain would not add it"
            ),
            cursor=cursor,
        )
    if job_active(context, retrain_and_deploy_job.name):
        return dg.SensorResult(
            skip_reason=f"drift share {share:.3f} > {threshold:.3f}; a retrain is already running", cursor=cursor
        )
    request = dg.RunRequest(
        run_key=f"drift-{record.storage_id}",
        tags={"loop/trigger": "drift", "loop/model_version": str(version), "loop/drift_share": f"{share:.4f}"},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)


# -- canary / A/B --------------------------------------------------------------------------------------------
@dg.sensor(
    name="canary_sensor",
    jobs=[canary_job, ab_report_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "The one gate of a new model version: while a challenger serves, requests canary_job to step its weight "
        "(default 10 -> 50 -> 100 %), promote it at 100 % or roll it back when its /predict 5xx share, p99 or "
        "live quality fall behind the champion's over a minimum sample. State: the MLflow registry. In A/B mode "
        "holds the split for the set period, then requests ab_report_job."
    ),
)
def canary_sensor(
    context: dg.SensorEvaluationContext,
    live_monitoring: LiveMonitoring,
    model_registry: ModelRegistry,
) -> dg.SensorResult | dg.SkipReason:
    try:
        aliases = model_registry.aliases()
        weight = model_registry.challenger_weight()
    except Exception as error:  # noqa: BLE001
        return unreachable("model registry", error)
    champion, challenger = aliases.get("champion"), aliases.get("challenger")
    if champion is None or challenger is None:
        return dg.SkipReason(f"no canary in progress (registry aliases: {aliases or 'none'})")
    cursor = read_cursor(context)
    now = now_utc()
    if live_monitoring.mode == "ab":
        return _ab_tick(context, live_monitoring, model_registry, champion, challenger, weight, cursor, now)
    try:
        decision, _ = measure_canary(live_monitoring, model_registry, champion, challenger, weight)
    except Exception as error:  # noqa: BLE001
        return unreachable("inference log or service", error)
    if decision.action == "wait":
        return dg.SkipReason(f"canary {challenger} at {weight:g} %: waiting ({'; '.join(decision.reasons)})")
    same = (cursor.get("challenger"), cursor.get("weight"), cursor.get("action")) == (
        challenger,
        weight,
        decision.action,
    )
    if same and now - datetime.fromisoformat(cursor["requested_at"]) < CANARY_REQUEST_TIMEOUT:
        return dg.SkipReason(f"{decision.action} of {challenger} at {weight:g} % already requested; waiting for it")
    if job_active(context, canary_job.name):
        return dg.SkipReason("a canary_job run is in progress")
    request = dg.RunRequest(
        job_name=canary_job.name,
        run_key=f"canary-{challenger}-{weight:g}-{decision.action}-{now:%Y%m%dT%H%M%S}",
        run_config={
            "ops": {"canary_decision": {"config": {"expected_challenger": challenger, "expected_weight": weight}}}
        },
        tags={
            "loop/trigger": "canary",
            "loop/action": decision.action,
            "loop/challenger": challenger,
            "loop/from_weight": f"{decision.from_weight:g}",
            "loop/to_weight": f"{decision.to_weight:g}",
        },
    )
    context.log.info(f"canary {challenger}: {decision.action} ({'; '.join(decision.reasons)})")
    new_cursor = {
        "challenger": challenger,
        "weight": weight,
        "action": decision.action,
        "requested_at": now.isoformat(),
    }
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(new_cursor))


def _ab_tick(
    context: dg.SensorEvaluationContext,
    live_monitoring: LiveMonitoring,
    model_registry: ModelRegistry,
    champion: str,
    challenger: str,
    weight: float,
    cursor: dict[str, Any],
    now: datetime,
) -> dg.SensorResult | dg.SkipReason:
    try:
        started = model_registry.step_started()
    except Exception as error:  # noqa: BLE001
        return unreachable("model registry", error)
    if started is None:  # the registry has no recorded start for this split: from first sight
        first_seen = cursor.get("first_seen") if cursor.get("challenger") == challenger else None
        started = datetime.fromisoformat(first_seen) if first_seen else now
    new_cursor = {**cursor, "challenger": challenger, "first_seen": started.isoformat()}
    ends = started + timedelta(hours=live_monitoring.ab_hours)
    if now < ends:
        return dg.SensorResult(
            skip_reason=f"A/B test {champion} vs {challenger} at {weight:g} % runs until {ends.isoformat()}",
            cursor=json.dumps(new_cursor),
        )
    if cursor.get("reported") == f"{challenger}@{started.isoformat()}":
        return dg.SkipReason(f"A/B test of {challenger} ended and its report was requested")
    request = dg.RunRequest(
        job_name=ab_report_job.name,
        run_key=f"ab-{challenger}-{started:%Y%m%dT%H%M%S}",
        run_config={"ops": {"ab_comparison_report": {"config": {"version_b": challenger, "end_test": True}}}},
        tags={"loop/trigger": "ab_test", "loop/challenger": challenger},
    )
    new_cursor["reported"] = f"{challenger}@{started.isoformat()}"
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(new_cursor))
