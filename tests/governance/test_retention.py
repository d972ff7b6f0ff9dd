"""The data_retention asset: old partitions, inference-log rows and runs go; what a manifest names stays."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from platform_assets.core import lake_keys
from platform_assets.core.inference_log import migrate, reader
from platform_assets.core.inference_log import schema as inference_log
from platform_assets.dataplane.partitions import is_committed, read_partition, write_partition
from platform_assets.defs.governance.retention import data_retention
from platform_assets.governance import retention
from platform_assets.resources.lake import LocalLake
from platform_assets.resources.monitoring import LiveMonitoring

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-11-20"]
TODAY = "2026-12-01"  # with 30 days' retention the cutoff is 2026-11-01


@dg.op
def noop() -> None:
    pass


@dg.job
def some_job() -> None:
    noop()


def _lake(root: Path, referenced_run: str) -> LocalLake:
    lake = LocalLake(root=str(root))
    for day in DAYS:
        write_partition(lake, lake_keys.raw(day), [pd.DataFrame({"raw": [day]})])
        write_partition(lake, lake_keys.tensors(day), [pd.DataFrame({"tensors": [day]})])
    write_partition(lake, lake_keys.quarantine("2026-10-01"), [pd.DataFrame({"quarantined": [1]})])
    folder = lake_keys.model_dir("default_risk_model", "v1")
    manifest = {
        "data": {"data_versions": {"2026-10-02": "a" * 64}},
        "lineage": {"training_dagster_run_id": referenced_run, "manifest_dagster_run_id": "elsewhere"},
    }
    lake.write_text(f"{folder}/manifest.json", json.dumps(manifest))
    lake.write_text(f"{folder}/model_version.json", json.dumps({"data_versions": {"2026-10-02": "a" * 64}}))
    return lake


def _inference_log(url: str) -> None:
    engine = inference_log.make_engine(url)
    migrate.upgrade(engine)
    row = {"role": "champion", "probability": 0.3, "threshold": 0.5, "decision": "approve", "model_version": "v1"}
    with engine.begin() as connection:
        connection.execute(
            sa.insert(inference_log.predictions),
            [
                {**row, "prediction_id": "old", "created_at": datetime(2026, 10, 2, 8), "application_id": 1},
                {**row, "prediction_id": "new", "created_at": datetime(2026, 11, 25, 8), "application_id": 2},
            ],
        )
        connection.execute(
            sa.insert(inference_log.feedback),
            [
                {"received_at": datetime(2026, 10, 9), "prediction_id": "old", "defaulted": 1, "known": True},
                {"received_at": datetime(2026, 11, 26), "prediction_id": "new", "defaulted": 0, "known": True},
            ],
        )
    engine.dispose()


def test_retention_archives_old_data_and_keeps_what_manifests_reference(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    _inference_log(url)
    monitoring = LiveMonitoring(inference_db=url)
    with dg.DagsterInstance.ephemeral() as instance:
        kept_run = some_job.execute_in_process(instance=instance).run_id
        old_run = some_job.execute_in_process(instance=instance).run_id
        lake = _lake(tmp_path / "lake", kept_run)
        # Runs created now are "old" when the reference day is far in the future.
        future = (datetime.now(UTC).date() + timedelta(days=800)).isoformat()
        config = {"retention_days": 30, "today": TODAY, "delete_runs": False}
        result = dg.materialize(
            [data_retention],
            instance=instance,
            resources={"lake": lake, "live_monitoring": monitoring},
            run_config={"ops": {"data_retention": {"config": config}}},
        )
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        _check_first_run(lake, url, metadata)
        runs = dg.materialize(
            [data_retention],
            instance=instance,
            resources={"lake": lake, "live_monitoring": monitoring},
            run_config={"ops": {"data_retention": {"config": {"retention_days": 30, "today": future}}}},
        )
        assert runs.success
        run_metadata = runs.get_asset_materialization_events()[0].materialization.metadata
        assert instance.get_run_by_id(old_run) is None, "an old, unreferenced run was not deleted"
        assert instance.get_run_by_id(kept_run) is not None, "a run a manifest names was deleted"
        assert instance.get_run_by_id(result.run_id) is None and instance.get_run_by_id(runs.run_id) is not None

    assert run_metadata["deleted_runs"].value >= 2 and run_metadata["kept_referenced_runs"].value == [kept_run]
    # The partitions a manifest references survive any cutoff.
    assert is_committed(lake, lake_keys.raw("2026-10-02")) and is_committed(lake, lake_keys.tensors("2026-10-02"))


def _check_first_run(lake: LocalLake, url: str, metadata: Any) -> None:
    assert metadata["cutoff"].value == "2026-11-01"
    # Two partitions of one part and a manifest each; one quarantine partition.
    assert metadata["archived_raw_files"].value == 4 and metadata["archived_features_files"].value == 4
    assert metadata["archived_quarantine_files"].value == 2
    assert metadata["kept_referenced_partitions"].value[lake_keys.RAW_PREFIX] == ["2026-10-02"]
    assert metadata["archived_predictions"].value == 1 and metadata["archived_feedback"].value == 1

    # Old, unreferenced partitions moved to archive/ byte for byte; referenced and recent ones stayed.
    for day in ("2026-10-01", "2026-10-03"):
        assert not lake.list_keys(lake_keys.raw(day))
        assert read_partition(lake, f"archive/{lake_keys.raw(day)}")["raw"].tolist() == [day]
    assert read_partition(lake, f"archive/{lake_keys.quarantine('2026-10-01')}")["quarantined"].tolist() == [1]
    for day in ("2026-10-02", "2026-11-20"):
        assert is_committed(lake, lake_keys.raw(day)) and is_committed(lake, lake_keys.tensors(day))
        assert not lake.list_keys(f"archive/{lake_keys.raw(day)}")

    # Inference-log rows before the cutoff are in the archive as Parquet and gone from the log.
    assert set(reader.read_predictions(url)["prediction_id"]) == {"new"}
    assert len(reader.read_feedback(url)) == 1
    [predictions_file] = [f for f in metadata["inference_log_archive_files"].value if "/predictions/" in f]
    archived = pd.read_parquet(lake.uri(predictions_file))
    assert archived["prediction_id"].tolist() == ["old"]


def test_dry_run_changes_nothing_and_bad_settings_are_clear(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake", "run-1")
    refs = retention.model_references(lake)
    assert refs.partitions == {"2026-10-02": ["default_risk_model v1"]} and "run-1" in refs.runs
    from datetime import date

    dry = retention.archive_lake_partitions(lake, date(2026, 11, 1), refs, dry_run=True)
    assert dry.archived[lake_keys.RAW_PREFIX] == 4 and is_committed(lake, lake_keys.raw("2026-10-01"))
    assert not lake.list_keys("archive")
    with pytest.raises(ValueError, match="folder of its own"):
        retention.archive_lake_partitions(lake, date(2026, 11, 1), refs, archive_prefix="raw")
    with pytest.raises(ValueError, match="at least 1"):
        retention.cutoff_date(0)
    missing = retention.archive_inference_log(lake, f"sqlite:///{tmp_path / 'none.db'}", date(2026, 11, 1))
    assert missing.predictions == 0 and "no inference log" in (missing.note or "")
