"""End to end: ingest two synthetic partitions, train fast, then the governance assets and their gates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import mlflow
import pytest

from platform_assets import model_store, settings
from platform_assets.core import lake_keys, registry, signing
from platform_assets.core import manifest as manifests
from platform_assets.definitions import bound_to
from platform_assets.demo import trained_version
from platform_assets.settings import PlatformSettings

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PARTITIONS = ["2026-10-05", "2026-10-06"]
FAST_TRAINING = {"ops": {"default_risk_model": {"config": {"epochs": 4, "patience": 2}}}}
GOVERNANCE_ASSETS = ["fairness_report", "data_drift_report", "model_performance_report", "model_manifest", "model_card"]


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "platform_assets.audit", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_governance_assets_gates_and_audit_chain(platform_home: Path) -> None:
    # A 600-row test split gives noisy gaps: loose bounds here, the strict run below shows the gate blocking.
    config = PlatformSettings(
        rows_per_day=1500, auc_floor=0.5, min_disparate_impact=0.5, max_equal_opportunity_diff=0.6
    )
    definitions = bound_to(config)
    lake = definitions.resources["lake"]
    with dg.DagsterInstance.get() as instance:
        for partition in PARTITIONS:
            ingest = definitions.resolve_job_def("daily_ingest_job")
            assert ingest.execute_in_process(partition_key=partition, instance=instance).success
        training = definitions.resolve_job_def("training_job").execute_in_process(
            instance=instance, run_config=FAST_TRAINING
        )
        assert training.success
        version = trained_version(training)
        governance = definitions.resolve_job_def("model_version_job").execute_in_process(
            instance=instance, partition_key=version
        )
        assert governance.success
        checks = {e.check_name: e for e in governance.get_asset_check_evaluations()}

    info = model_store.load_record(lake, version)
    folder = lake_keys.model_dir(registry.MODEL_NAME, version)
    metadata = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in governance.get_asset_materialization_events()
    }
    assert set(metadata) == {*GOVERNANCE_ASSETS, "baseline_models", "model_evaluation"}
    # Every materialization of the run is of this version's partition.
    assert {
        e.step_materialization_data.materialization.partition for e in governance.get_asset_materialization_events()
    } == {version}

    # Reports in the lake, linked from metadata.
    for name in (
        "fairness.json",
        "fairness.html",
        "data_drift.json",
        "data_drift.html",
        "performance.json",
        "performance.html",
        "manifest.json",
        "manifest.sig",
        "model_card.md",
    ):
        assert lake.exists(f"{folder}/{name}"), name
    assert metadata["fairness_report"]["report_html"].value == lake.uri(f"{folder}/fairness.html")
    assert metadata["data_drift_report"]["report_html"].value == lake.uri(f"{folder}/data_drift.html")

    # Fairness: tables, chart, numeric gaps; logged to the model's MLflow run.
    fairness_meta = metadata["fairness_report"]
    assert "| sex |" in fairness_meta["summary"].value and "data:image/png;base64," in fairness_meta["chart"].value
    assert 0.0 < fairness_meta["sex_disparate_impact_ratio"].value <= 1.0
    report = json.loads(lake.read_text(f"{folder}/fairness.json"))
    assert set(report["attributes"]) == {"sex", "age_band", "marriage", "education"}
    assert report["rows"] == info.rows["test"]
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri())
    logged = {a.path for a in client.list_artifacts(info.mlflow_run_id, "governance")}
    assert {"governance/fairness.json", "governance/fairness.html", "governance/manifest.json"} <= logged
    assert "fairness_sex_disparate_impact_ratio" in client.get_run(info.mlflow_run_id).data.metrics

    # Drift and performance: numeric metadata sensors can read.
    drift_meta = metadata["data_drift_report"]
    assert 0.0 <= drift_meta["drift_share"].value <= 1.0
    assert isinstance(drift_meta["drifted_features"].value, int)
    assert (
        "drift_score/delay_m6" in drift_meta and "drift_score/log_limit" in drift_meta and "score_drift" in drift_meta
    )
    assert drift_meta["window_partitions"].value == [PARTITIONS[-1]]
    assert 0.5 < metadata["model_performance_report"]["test_roc_auc"].value <= 1.0

    # Manifest: signed, verifies with the local demo public key, names the whole lineage.
    body = lake.read_bytes(f"{folder}/manifest.json")
    public_key = signing.load_public_key_file(platform_home / "keys" / signing.PUBLIC_KEY_FILE)
    document = manifests.verify_manifest(
        body,
        lake.read_bytes(f"{folder}/manifest.sig"),
        public_key,
        {name: lake.read_bytes(f"{folder}/{name}") for name in ("model.keras", "model.onnx")},
    )
    assert document["artifacts"]["model.onnx"]["sha256"] == info.onnx_sha256
    assert document["data"]["data_versions"] == info.data_versions
    assert document["lineage"]["mlflow_run_id"] == info.mlflow_run_id
    assert document["lineage"]["training_dagster_run_id"] == training.run_id
    assert document["metrics"]["test"]["cnn"]["roc_auc"] > 0.5
    assert document["fairness"]["attributes"]["sex"]["disparate_impact_ratio"] == pytest.approx(
        report["attributes"]["sex"]["summary"]["disparate_impact_ratio"]
    )
    assert "verified" in metadata["model_card"]["signature_status"].value
    assert "## Fairness" in metadata["model_card"]["card"].value
    # The card states how the served PD is calibrated and which policy set the threshold.
    assert "set by expected cost" in metadata["model_card"]["card"].value
    assert "its output is the calibrated probability of default" in metadata["model_card"]["card"].value

    # Gates: passed, with thresholds and measured values in their metadata.
    assert checks["manifest_verifies"].passed, checks["manifest_verifies"].metadata
    assert checks["manifest_verifies"].metadata["measured"].value == "verified"
    gate = checks["fairness_within_bounds"]
    assert gate.passed, gate.metadata
    assert gate.metadata["min_disparate_impact_ratio"].value == 0.5
    assert gate.metadata["max_equal_opportunity_difference"].value == 0.6
    assert "lowest_disparate_impact_ratio" in gate.metadata and "sex_equal_opportunity_difference" in gate.metadata

    # The audit CLI prints the chain from the signed manifest.
    chain = audit("--model-version", version)
    assert chain.returncode == 0, chain.stderr
    for expected in (version, "VERIFIED", training.run_id, info.mlflow_run_id, *PARTITIONS):
        assert expected in chain.stdout, expected
    for partition, digest in info.data_versions.items():
        assert f"{partition}  {digest}" in chain.stdout

    # A strict fairness bound blocks the manifest and the card in that run.
    strict = bound_to(config.model_copy(update={"min_disparate_impact": 0.9999}))
    with dg.DagsterInstance.get() as instance:
        blocked = strict.resolve_job_def("model_version_job").execute_in_process(
            instance=instance,
            partition_key=version,
            raise_on_error=False,
            asset_selection=[dg.AssetKey("fairness_report"), dg.AssetKey("model_manifest")],
        )
    [evaluation] = blocked.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["min_disparate_impact_ratio"].value == 0.9999
    assert "disparate impact ratio" in evaluation.description
    assert {e.asset_key.to_user_string() for e in blocked.get_asset_materialization_events()} == {"fairness_report"}

    # One flipped byte in the model: the manifest gate fails naming the file, the audit says NOT VERIFIED.
    model_bytes = bytearray(lake.read_bytes(f"{folder}/model.keras"))
    model_bytes[len(model_bytes) // 2] ^= 0x01
    lake.write_bytes(f"{folder}/model.keras", bytes(model_bytes))
    with dg.DagsterInstance.get() as instance:
        tampered = (
            bound_to(config.model_copy(update={"min_disparate_impact": 0.0}))
            .resolve_job_def("model_version_job")
            .execute_in_process(
                instance=instance,
                partition_key=version,
                raise_on_error=False,
                asset_selection=[dg.AssetKey("model_manifest")],
            )
        )
    [verification] = tampered.get_asset_check_evaluations()
    assert not verification.passed
    assert verification.metadata["error"].value == "ArtifactHashMismatchError"
    assert "model.keras has sha256" in verification.metadata["message"].value
    broken = audit("--model-version", version)
    assert broken.returncode == 1 and "NOT VERIFIED" in broken.stdout and "model.keras" in broken.stdout
    unknown = audit("--model-version", "v999")
    assert unknown.returncode == 2 and "no default_risk_model v999" in unknown.stderr
