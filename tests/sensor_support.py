"""Evaluating a real sensor in a test the way the daemon does, partition checks included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context


def evaluate_sensor(
    sensor: dg.SensorDefinition,
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None = None,
    resources: Mapping[str, Any] | None = None,
) -> Any:
    """One tick of ``sensor``. The daemon checks a partitioned run request's key against the instance's dynamic
    partitions; ``evaluate_tick`` only can inside a partition-loading context that knows the instance."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=definitions)
    with partition_loading_context(dynamic_partitions_store=instance):
        return sensor.evaluate_tick(context)
