"""The code location loads, and its graph only changes on purpose (snapshot)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from platform_assets.definitions import defs

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "definitions.json"


def describe(definitions: dg.Definitions) -> dict[str, object]:
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "partitions": type(partitions).__name__ if partitions else None,
            "has_description": bool(node.description),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda c: c.to_user_string()):
        spec = graph.get_check_spec(check_key)
        checks[check_key.to_user_string()] = {"blocking": spec.blocking}
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(j.name for j in definitions.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in definitions.schedules or []),
        "sensors": sorted(s.name for s in definitions.sensors or []),
        "resources": sorted(definitions.resources or {}),
    }


def test_definitions_match_snapshot(platform_home: Path) -> None:
    actual = describe(defs())
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert actual == expected, "the asset graph changed: review, then rerun with UPDATE_SNAPSHOTS=1"


def test_partitions_are_daily_from_the_configured_start(platform_home: Path) -> None:
    graph = defs().resolve_asset_graph()
    partitions = graph.get(dg.AssetKey("raw_credit_applications")).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.get_first_partition_key() == "2026-10-01"
    assert graph.get(dg.AssetKey("credit_history_tensors")).partitions_def == partitions


def test_workspace_loads_the_code_location() -> None:
    workspace = (Path(__file__).resolve().parents[2] / "workspace.yaml").read_text()
    assert "platform_assets.definitions" in workspace
