"""The shadow phase's sensor: it gathers a candidate's evidence and asks for its gate when there is more of it.

While a version is the shadow, ``promotion_sensor`` requests the ``portfolio_scores`` runs the comparison needs
(both versions' scores of the newest days, once each: one run per version over the range of days) and, once
none of those runs is in progress, whenever the shadow has scored enough applications with enough outcomes and
the evidence grew since the last request, ``promotion_job`` for the version: its ``promotion_decision`` moves
it to a canary, retires it or holds. The canary's end (challenger to champion) is requested by
``canary_sensor`` when the last step is reached. A source that cannot be read is a skip with the reason.
"""

import json
from datetime import date, datetime, timedelta

import dagster as dg

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.defs.monitoring.sensors import job_active, now_utc, read_cursor, unreachable
from platform_assets.defs.portfolio.jobs import portfolio_scoring_job
from platform_assets.defs.promotion.assets import PORTFOLIO_DAYS, newest_tensor_days
from platform_assets.defs.promotion.jobs import promotion_job
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.monitoring import LiveMonitoring

#: A held gate is asked again no sooner than this, and only when the evidence grew.
RECHECK = timedelta(seconds=60)


#: The run tags that make one run materialize a range of partitions (what a single-run backfill sets).
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def consecutive_days(days: list[str]) -> list[list[str]]:
    """Sorted ISO ``days`` split where a day is missing between two: each list is one partition range."""
    spans: list[list[str]] = []
    for day in days:
        if spans and date.fromisoformat(day) - date.fromisoformat(spans[-1][-1]) == timedelta(days=1):
            spans[-1].append(day)
        else:
            spans.append([day])
    return spans


def portfolio_requests(lake: LakeStorage, versions: list[str], requested: set[str]) -> list[dg.RunRequest]:
    """One ``portfolio_scoring_job`` run per version over the newest days it has no committed scores of (and was
    not asked for yet): a partition range, scored in one run (``portfolio_scores`` is a single-run backfill).
    A gap in the tensor days splits the range. Each request's ``loop/days`` tag lists its days."""
    store = lake.executor_store()
    days = newest_tensor_days(lake, PORTFOLIO_DAYS)
    requests = []
    for version in versions:
        missing = [
            day
            for day in days
            if f"{version}:{day}" not in requested
            and not partitions.is_committed(store, lake_keys.portfolio_scores(version, day))
        ]
        for span in consecutive_days(missing):
            requests.append(
                dg.RunRequest(
                    job_name=portfolio_scoring_job.name,
                    run_key=f"portfolio-{version}-{span[0]}-{span[-1]}",
                    run_config={"ops": {"portfolio_scores": {"config": {"model_version": version}}}},
                    tags={
                        RANGE_START_TAG: span[0],
                        RANGE_END_TAG: span[-1],
                        "loop/trigger": "promotion",
                        "loop/model_version": version,
                        "loop/days": ",".join(span),
                    },
                )
            )
    return requests


@dg.sensor(
    name="promotion_sensor",
    jobs=[promotion_job, portfolio_scoring_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "While a version is the shadow: requests both versions' portfolio_scores of the newest days, then, "
        "once no portfolio_scoring_job run is in progress, promotion_job (shadow_comparison -> "
        "promotion_decision) when the shadow has scored enough applications with enough outcomes "
        "(core.slo.PROMOTION), again whenever that evidence grew while the gate holds."
    ),
)
def promotion_sensor(
    context: dg.SensorEvaluationContext,
    model_registry: ModelRegistry,
    live_monitoring: LiveMonitoring,
    lake: LakeStorage,
) -> dg.SensorResult | dg.SkipReason:
    try:
        state = model_registry.state()
    except Exception as error:  # noqa: BLE001 - a sensor must not crash the daemon
        return unreachable("model registry", error)
    if state is None or state.shadow is None:
        return dg.SkipReason(f"no shadow in the registry (aliases: {state.aliases() if state else 'none'})")
    version, cursor = state.shadow, read_cursor(context)
    requested = set(cursor.get("portfolio", [])) if cursor.get("shadow") == version else set()
    try:
        requests = portfolio_requests(lake, [state.champion, version], requested)
        pairs = live_monitoring.shadow_pairs(version)
    except Exception as error:  # noqa: BLE001
        return unreachable("lake or inference log", error)
    pairs = pairs[pairs["served_model_version"] == state.champion]
    evidence = [len(pairs), int(pairs["defaulted"].notna().sum())]
    policy = live_monitoring.promotion_policy()
    now = now_utc()
    new_cursor = {
        **(cursor if cursor.get("shadow") == version else {}),
        "shadow": version,
        "portfolio": sorted(
            requested
            | {f"{r.tags['loop/model_version']}:{day}" for r in requests for day in r.tags["loop/days"].split(",")}
        ),
    }
    why = None
    if evidence[0] < policy.shadow_min_predictions or evidence[1] < policy.min_labelled:
        why = (
            f"shadow {version}: {evidence[0]} of {policy.shadow_min_predictions} predictions, {evidence[1]} of "
            f"{policy.min_labelled} labelled"
        )
    elif requests or job_active(context, portfolio_scoring_job.name):
        # The gate judges the past months' shift too: it waits for the scoring runs just asked for or still
        # running (a failed one is not asked again, and the comparison then lists its days as missing).
        why = f"shadow {version}: waiting for portfolio_scoring_job runs (the shift over the newest days)"
    elif cursor.get("shadow") == version and cursor.get("evidence") == evidence:
        why = f"shadow {version}: no new evidence since the last gate ({evidence[0]} pairs, {evidence[1]} labelled)"
    elif cursor.get("requested_at") and now - datetime.fromisoformat(cursor["requested_at"]) < RECHECK:
        why = f"shadow {version}: gate asked at {cursor['requested_at']}; next check after {RECHECK}"
    elif job_active(context, promotion_job.name):
        why = "a promotion_job run is in progress"
    if why is None:
        requests.append(
            dg.RunRequest(
                job_name=promotion_job.name,
                partition_key=version,
                run_key=f"promotion-{version}-{evidence[0]}-{evidence[1]}",
                run_config={"ops": {"promotion_decision": {"config": {"expected_stage": "shadow_to_canary"}}}},
                tags={
                    "loop/trigger": "promotion",
                    "loop/stage": "shadow_to_canary",
                    "loop/model_version": version,
                    "loop/evidence": f"{evidence[0]} pairs, {evidence[1]} labelled",
                },
            )
        )
        new_cursor.update({"evidence": evidence, "requested_at": now.isoformat()})
        context.log.info(f"shadow {version}: {evidence[0]} pairs, {evidence[1]} labelled -> promotion gate")
    if not requests:
        return dg.SkipReason(why or "nothing to request")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor))
