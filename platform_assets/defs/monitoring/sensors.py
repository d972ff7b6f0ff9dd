"""The closed loop's sensors: a live-quality drop or data drift requests a retrain; a challenger is stepped,
promoted or rolled back. A source that cannot be read (store locked, service down) is a skip with the
reason, never an exception in the daemon; each sensor's cursor makes one event lead to one request."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from platform_assets.defs.monitoring.assets import measure_canary, validation_metrics
from platform_assets.defs.monitoring.jobs import ab_report_job, canary_job
from platform_assets.defs.promotion.jobs import promotion_job
from platform_assets.defs.training.jobs import retrain_and_deploy_job
from platform_assets.ml import estimated_quality, live_quality, performance_estimation
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
ESTIMATED_PERFORMANCE = dg.AssetKey("estimated_performance")
#: Estimate-based triggers awaiting the realized verdict, and verdicts, kept in the cursor (oldest dropped first).
MAX_PENDING_ESTIMATES = 10
MAX_VERDICTS = 10


def _metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _judge_estimates(
    context: dg.SensorEvaluationContext,
    live_monitoring: LiveMonitoring,
    lake: LakeStorage,
    policy: live_quality.DropPolicy,
    cursor: dict[str, Any],
    now: datetime,
) -> list[dg.AssetObservation]:
    """Judge each earlier estimate-based trigger whose window now has ``policy.min_labelled`` outcomes: the realized
    test on the same rows CONFIRMS the estimate (it breaches too) or CONTRADICTS it. Moves judged entries from
    ``cursor["pending_estimates"]`` to ``cursor["verdicts"]`` and returns one observation of
    ``estimated_performance`` per verdict. Raises when the inference log or the lake cannot be read."""
    still_pending, observations = [], []
    verdicts = list(cursor.get("verdicts", []))
    for entry in cursor.get("pending_estimates", []):
        version = entry["model_version"]
        rows = live_monitoring.predictions(
            start=datetime.fromisoformat(entry["window_start"]),
            end=datetime.fromisoformat(entry["window_end"]),
            model_versions=[version],
            labelled_only=False,
        )
        realized = live_quality.frame_quality(rows)
        if realized["labelled"] < policy.min_labelled:
            still_pending.append(entry)
            continue
        coverage = live_quality.label_coverage(rows)
        try:
            reasons = live_quality.quality_breach(realized, validation_metrics(lake, version), policy)
        except ValueError as error:  # its validation metrics went missing since: nothing to judge against
            still_pending.append(entry)
            context.log.warning(f"estimate of {version} at {entry['triggered_at']} cannot be judged: {error}")
            continue
        verdict = "confirmed" if reasons else "contradicted"
        estimated = entry["estimated"]
        judged = {
            **entry,
            "verdict": verdict,
            "judged_at": now.isoformat(),
            "realized": {k: realized[k] for k in ("labelled", "accuracy", "roc_auc")},
            "realized_reasons": reasons,
            "labels_cover": coverage["labels_cover"],
            "coverage": coverage["coverage"],
        }
        verdicts.append(judged)
        context.log.info(
            f"estimate-based drop of {version} (triggered {entry['triggered_at']}: estimated ROC AUC "
            f"{_metric(estimated['roc_auc'])}) {verdict.upper()} by {realized['labelled']} outcomes of its window "
            f"(realized ROC AUC {_metric(realized['roc_auc'])}, labels cover {coverage['labels_cover']})"
        )
        observations.append(
            dg.AssetObservation(
                asset_key=ESTIMATED_PERFORMANCE,
                metadata={
                    "accuracy_drop_verdict": verdict,
                    "model_version": version,
                    "run_key": entry["run_key"],
                    "triggered_at": entry["triggered_at"],
                    "window_start": entry["window_start"],
                    "window_end": entry["window_end"],
                    "estimated_roc_auc": _float_or_nan(estimated["roc_auc"]),
                    "estimated_accuracy": float(estimated["accuracy"]),
                    "realized_roc_auc": _float_or_nan(realized["roc_auc"]),
                    "realized_accuracy": float(realized["accuracy"]),
                    "labelled": float(realized["labelled"]),
                    "coverage": _float_or_nan(coverage["coverage"]),
                    "labels_cover": coverage["labels_cover"],
                    "estimate_reasons": dg.MetadataValue.json(entry["reasons"]),
                    "realized_reasons": dg.MetadataValue.json(reasons),
                },
            )
        )
    cursor["pending_estimates"] = still_pending
    cursor["verdicts"] = verdicts[-MAX_VERDICTS:]
    return observations


def _float_or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


@dg.sensor(
    name="accuracy_drop_sensor",
    job=retrain_and_deploy_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests retrain_and_deploy_job when the champion's live quality (inference log joined with feedback, "
        "over the window) drops: relative to its validation metrics (default) and/or below an absolute accuracy "
        "floor, once enough outcomes are labelled; with PLATFORM_LOOP_USE_ESTIMATE, before then on the quality "
        "estimated from its calibrated probabilities, and later records on estimated_performance whether the "
        "window's outcomes confirmed or contradicted that estimate. One drop, one retrain (cursor: model "
        "version, last trigger, estimates awaiting their verdict)."
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
    policy = live_monitoring.drop_policy()
    cursor = read_cursor(context)
    now = now_utc()
    start = live_monitoring.window_start(now)
    try:
        frame = live_monitoring.predictions(
            start=start, model_versions=[champion], labelled_only=not policy.use_estimate
        )
    except Exception as error:  # noqa: BLE001
        return unreachable("inference log", error)
    try:
        observations = _judge_estimates(context, live_monitoring, lake, policy, cursor, now)
    except Exception as error:  # noqa: BLE001
        return unreachable("inference log or lake (judging earlier estimates)", error)

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=reason, cursor=json.dumps(cursor), asset_events=observations)

    live = live_quality.frame_quality(frame)
    on_estimate = policy.use_estimate and live["labelled"] < policy.min_labelled
    if on_estimate and len(frame) < policy.min_predictions_for_estimate:
        return skip(
            f"champion {champion}: only {live['labelled']} of the {policy.min_labelled} labelled outcomes needed, "
            f"and {len(frame)} of the {policy.min_predictions_for_estimate} predictions an estimate needs"
        )
    estimated: dict[str, Any] | None = None
    try:
        validation = validation_metrics(lake, champion)
        if on_estimate:
            estimated = performance_estimation.estimate_performance(
                frame["probability"].to_numpy(dtype="float64"), estimated_quality.decision_threshold(frame)
            ).as_dict()
            reasons = live_quality.estimate_breach(estimated, validation, policy)
            holds = (
                f"holds by its estimate over {estimated['n']} predictions (estimated accuracy "
                f"{estimated['accuracy']:.4f}, ROC AUC {_metric(estimated['roc_auc'])}; {live['labelled']} of "
                f"{policy.min_labelled} outcomes so far)"
            )
        else:
            reasons = live_quality.quality_breach(live, validation, policy)
            shown = f"accuracy {live['accuracy']:.4f}, ROC AUC {_metric(live['roc_auc'])}"
            holds = f"holds over {live['labelled']} labelled outcomes ({shown})"
    except ValueError as error:
        return skip(f"champion {champion}: {error}")
    except Exception as error:  # noqa: BLE001
        return unreachable("lake", error)
    if not reasons:
        return skip(f"champion {champion} {holds}")
    last = cursor.get("triggered_at")
    if cursor.get("model_version") == champion and last:
        again = datetime.fromisoformat(last) + timedelta(hours=live_monitoring.retrigger_hours)
        if now < again:
            return skip(
                f"champion {champion} dropped ({reasons[0]}), but a retrain was already requested at {last}; "
                f"the next request is possible after {again.isoformat()}"
            )
    if job_active(context, retrain_and_deploy_job.name):
        return skip(f"champion {champion} dropped ({reasons[0]}); a retrain is already running")
    basis = "realized" if estimated is None else "estimate"
    run_key = f"accuracy-drop-{champion}-{now:%Y%m%dT%H%M%S}"
    tags = {
        "loop/trigger": "accuracy_drop",
        "loop/basis": basis,
        "loop/model_version": champion,
        "loop/labelled": str(live["labelled"]),
        "loop/reason": "; ".join(reasons)[:240],
    }
    if estimated is not None:
        tags.update(
            {
                "loop/predictions": str(estimated["n"]),
                "loop/estimated_roc_auc": _metric(estimated["roc_auc"]),
                "loop/estimated_accuracy": _metric(estimated["accuracy"]),
            }
        )
        pending = {
            "model_version": champion,
            "run_key": run_key,
            "triggered_at": now.isoformat(),
            "window_start": start.isoformat(),
            "window_end": now.isoformat(),
            "estimated": {k: estimated[k] for k in ("roc_auc", "accuracy", "n", "method")},
            "reasons": reasons,
        }
        cursor["pending_estimates"] = [*cursor.get("pending_estimates", []), pending][-MAX_PENDING_ESTIMATES:]
    context.log.info(f"champion {champion}: {'; '.join(reasons)} ({basis}) -> retrain")
    cursor.update({"model_version": champion, "triggered_at": now.isoformat(), "reasons": reasons, "basis": basis})
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key, tags=tags)], cursor=json.dumps(cursor), asset_events=observations
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
    jobs=[canary_job, ab_report_job, promotion_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "While a challenger serves: requests canary_job to step its weight (default 10 -> 50 %) or roll it back "
        "when its /predict 5xx share, p99 or live quality fall behind the champion's over a minimum sample; after "
        "the last step, promotion_job (the promotion gate with its approval) for the step to champion. State: the "
        "MLflow registry. In A/B mode holds the split for the set period, then requests ab_report_job."
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
    if job_active(context, canary_job.name) or job_active(context, promotion_job.name):
        return dg.SkipReason("a canary_job or promotion_job run is in progress")
    if decision.action == "promote":  # the last step held: the promotion gate (evidence and approval) decides
        request = dg.RunRequest(
            job_name=promotion_job.name,
            partition_key=challenger,
            run_key=f"promotion-{challenger}-canary-{now:%Y%m%dT%H%M%S}",
            run_config={"ops": {"promotion_decision": {"config": {"expected_stage": "canary_to_champion"}}}},
            tags={
                "loop/trigger": "canary",
                "loop/action": "promote",
                "loop/stage": "canary_to_champion",
                "loop/challenger": challenger,
                "loop/model_version": challenger,
                "loop/from_weight": f"{decision.from_weight:g}",
                "loop/to_weight": "100",
            },
        )
        context.log.info(f"canary {challenger}: last step held -> promotion gate ({'; '.join(decision.reasons)})")
        cursor_now = {"challenger": challenger, "weight": weight, "action": "promote", "requested_at": now.isoformat()}
        return dg.SensorResult(run_requests=[request], cursor=json.dumps(cursor_now))
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
