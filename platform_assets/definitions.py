"""The ``platform_assets`` code location: everything is declared under ``defs/`` and loaded from there.

What every asset shares is applied here, once: its owner, a code version for the assets whose code defines
their output (a digest of that code, so Dagster marks them stale exactly when it changes), and freshness
policies on the daily data and on the model's age.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from platform_assets.settings import OWNER, PlatformSettings, SettingsError, load

PACKAGE = Path(__file__).parent
#: The modules whose code defines each asset's output.
CODE = {
    "raw_credit_applications": (
        "ml/schema.py",
        "ml/synthetic.py",
        "ml/uci.py",
        "dataplane/sources.py",
        "dataplane/raw.py",
        "dataplane/partitions.py",
    ),
    "credit_history_tensors": ("ml/features.py", "dataplane/tensors.py", "dataplane/partitions.py", "ml/schema.py"),
    "default_risk_model": ("ml/model.py", "ml/train.py", "ml/dataset.py", "defs/training/assets.py"),
    "baseline_models": ("ml/train.py", "ml/dataset.py"),
    "model_evaluation": ("ml/evaluate.py",),
    "fairness_report": ("ml/fairness_metrics.py", "ml/fairness_rendering.py"),
    "data_drift_report": ("ml/drift.py",),
    "model_performance_report": ("ml/drift.py",),
    "model_manifest": ("core/manifest.py", "core/signing.py", "core/model_version.py"),
    "model_card": ("ml/model_card.py",),
    "portfolio_scores": (
        "dataplane/scoring.py",
        "core/onnx_runtime.py",
        "core/decisions.py",
        "dataplane/partitions.py",
    ),
}
#: Daily data is due by 02:00 UTC (the ingest schedule runs at 01:00); a model older than a week is
#: overdue for the weekly retrain (warn) and fails freshness after two. ``portfolio_scores`` has none: it is
#: launched on demand (a backfill with a candidate), so no deadline can be missed.
FRESHNESS = {
    "raw_credit_applications": dg.FreshnessPolicy.cron(deadline_cron="0 2 * * *", lower_bound_delta=timedelta(days=1)),
    "credit_history_tensors": dg.FreshnessPolicy.cron(deadline_cron="0 2 * * *", lower_bound_delta=timedelta(days=1)),
    "default_risk_model": dg.FreshnessPolicy.time_window(fail_window=timedelta(days=14), warn_window=timedelta(days=8)),
}


def code_version(files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode())
        digest.update((PACKAGE / name).read_bytes())
    return digest.hexdigest()[:16]


def _shared(spec: dg.AssetSpec) -> dg.AssetSpec:
    name = spec.key.to_user_string()
    return spec.replace_attributes(
        owners=[OWNER],
        code_version=code_version(CODE[name]) if name in CODE else spec.code_version,
        freshness_policy=FRESHNESS.get(name, spec.freshness_policy),
    )


def with_minimum_interval(sensor: dg.SensorDefinition, seconds: int) -> dg.SensorDefinition:
    """A copy of ``sensor`` the daemon evaluates at most every ``seconds``. Dagster's ``with_attributes`` copies
    with other jobs or metadata only, so the copy sets the attribute its constructor sets."""
    copied = copy.copy(sensor)
    copied._min_interval = seconds
    return copied


def _sensors(sensors: Iterable[dg.SensorDefinition], intervals: dict[str, int]) -> list[dg.SensorDefinition]:
    """``sensors``, those named in ``intervals`` (``PLATFORM_SENSOR_INTERVALS``) with that minimum interval."""
    sensors = list(sensors)
    unknown = sorted(set(intervals) - {s.name for s in sensors})
    if unknown:
        names = ", ".join(sorted(s.name for s in sensors))
        raise SettingsError(
            f"PLATFORM_SENSOR_INTERVALS names no sensor of the code location: {unknown} (sensors: {names})"
        )
    return [with_minimum_interval(s, intervals[s.name]) if s.name in intervals else s for s in sensors]


def _load(resources: dict[str, Any] | None, intervals: dict[str, int]) -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=PACKAGE)
    # A module that imports another's asset (to draw an edge) hands the loader the same object twice: keep one,
    # so that the mapped copies stay one asset each.
    assets = list({id(asset): asset for asset in loaded.assets or []}.values())
    unique = dg.Definitions(
        assets=assets,
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=_sensors(loaded.sensors or [], intervals),
        resources=resources if resources is not None else loaded.resources,
        # Every step of a run in the run's process. Dagster's default starts a process per step, and each loads
        # the code location again: 7-32 s a step on 2 busy cores, 218 s of release_job's 278 s under the demo's
        # daemon (benchmarks/README.md, closed loop). Steps here run one after another anyway (2 cores), and the
        # Spark steps then share one session.
        executor=loaded.executor or dg.in_process_executor,
        loggers=loaded.loggers,
        metadata=loaded.metadata,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # chosen on purpose: the one place specs are shared
        return unique.map_resolved_asset_specs(func=_shared)


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, its resources bound from the environment's settings (``defs/resources.py``)."""
    return _load(None, load().sensor_interval_overrides())


def bound_to(config: PlatformSettings) -> dg.Definitions:
    """The same code location with its resources bound from ``config`` (tests and tools build settings
    directly instead of setting environment variables)."""
    from platform_assets.defs.resources import resources_for

    return _load(resources_for(config), config.sensor_interval_overrides())
