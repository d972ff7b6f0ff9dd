"""Two retrains that overlap each evaluate, sign and build only the version they trained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from platform_assets import model_store
from platform_assets.core import lake_keys, registry, signing
from platform_assets.core import manifest as manifests
from platform_assets.core.model_version import MODEL_FILE, ONNX_FILE
from platform_assets.definitions import defs
from platform_assets.resources.lake import content_hash

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PARTITIONS = ["2026-10-05", "2026-10-06"]
WORKER = Path(__file__).with_name("overlapping_release.py")


def test_overlapping_retrains_each_release_their_own_version(
    platform_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loose = {
        "PLATFORM_ROWS_PER_DAY": "800",
        "PLATFORM_AUC_FLOOR": "0.0",
        "PLATFORM_BASELINE_MARGIN": "1.0",
        "PLATFORM_MIN_DISPARATE_IMPACT": "0.0",
        "PLATFORM_MAX_EQUAL_OPPORTUNITY_DIFF": "1.0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name, value in loose.items():
        monkeypatch.setenv(name, value)
    definitions = defs()
    lake = definitions.resources["lake"]
    with dg.DagsterInstance.get() as instance:
        for partition in PARTITIONS:
            ingest = definitions.resolve_job_def("daily_ingest_job")
            assert ingest.execute_in_process(partition_key=partition, instance=instance).success

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(barrier), name, str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, seed in (("a", 1), ("b", 2))
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=900)
        assert worker.returncode == 0, output[-5000:]
    runs = [json.loads((barrier / f"{name}.json").read_text()) for name in ("a", "b")]
    assert sorted(r["version"] for r in runs) == ["v1", "v2"]

    public_key = signing.load_public_key_file(platform_home / "keys" / signing.PUBLIC_KEY_FILE)
    with dg.DagsterInstance.get() as instance:
        for run in runs:
            version = run["version"]
            record = model_store.load_record(lake, version)
            folder = lake_keys.model_dir(registry.MODEL_NAME, version)
            model_bytes = lake.read_bytes(f"{folder}/{MODEL_FILE}")
            # The record is the one its own training run wrote, and it hashes its own model.
            assert record.dagster_run_id == run["training_run_id"]
            assert record.model_sha256 == content_hash(model_bytes)
            # Its manifest signs exactly those bytes (and the ONNX export) and names its own training run.
            document = manifests.verify_manifest(
                lake.read_bytes(f"{folder}/manifest.json"),
                lake.read_bytes(f"{folder}/manifest.sig"),
                public_key,
                {MODEL_FILE: model_bytes, ONNX_FILE: lake.read_bytes(f"{folder}/{ONNX_FILE}")},
            )
            assert document["version"] == version
            assert document["lineage"]["training_dagster_run_id"] == run["training_run_id"]
            assert document["lineage"]["manifest_dagster_run_id"] == run["release_run_id"]
            assert model_store.read_json(lake, f"{folder}/evaluation.json")["model_version"] == version
            bento = model_store.read_json(lake, f"{folder}/bento.json")
            assert bento["model_version"] == version and bento["tag"].startswith(f"credit_risk:{version}-")
            # Every materialization of the release run is of its own version's partition.
            partitions = {
                record.partition
                for record in instance.get_records_for_run(
                    run["release_run_id"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
                ).records
                for record in [record.event_log_entry.dagster_event.step_materialization_data.materialization]
            }
            assert partitions == {version}
        assert set(instance.get_dynamic_partitions("model_versions")) == {"v1", "v2"}
    # The two versions really are different models.
    first, second = (model_store.load_record(lake, v).model_sha256 for v in ("v1", "v2"))
    assert first != second
