"""End to end on small data, through real Spark, MLflow and a Dagster instance on disk."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest
from record_support import model_version

from platform_assets import model_store, settings
from platform_assets.core import lake_keys, registry
from platform_assets.core.model_version import BaselineSet, TrainingSample
from platform_assets.dataplane.partitions import read_manifest, read_partition
from platform_assets.definitions import bound_to, defs
from platform_assets.demo import trained_version
from platform_assets.ml import features, schema
from platform_assets.resources.lake import content_hash
from platform_assets.settings import PlatformSettings

EVALUATION = dg.AssetKey("model_evaluation")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PARTITIONS = ["2026-10-05", "2026-10-06"]
FAST_TRAINING = {"ops": {"default_risk_model": {"config": {"epochs": 4, "patience": 2}}}}
#: Fewer than the ~840 training rows: the baselines fit on a seeded sample of the training split.
BASELINE_SAMPLE = {"ops": {"baseline_models": {"config": {"max_train_rows": 400, "seed": 9}}}}


def data_version(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    assert records, f"{asset} {partition} was not materialized"
    return records[0].asset_materialization.tags["dagster/data_version"]


def test_whole_graph_on_synthetic_data(platform_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_USER", "Ann Lee")  # Dagster OSS names no launcher: the setting does
    definitions = bound_to(PlatformSettings(rows_per_day=600, auc_floor=0.6))
    lake = definitions.resources["lake"]
    with dg.DagsterInstance.get() as instance:
        for partition in PARTITIONS:
            result = definitions.resolve_job_def("daily_ingest_job").execute_in_process(
                partition_key=partition, instance=instance
            )
            assert result.success
            # Each partition's digest (over its parts' sha256) is its data version.
            for asset, folder in (
                ("raw_credit_applications", lake_keys.raw),
                ("credit_history_tensors", lake_keys.tensors),
            ):
                assert data_version(instance, asset, partition) == read_manifest(lake, folder(partition)).digest
        training = definitions.resolve_job_def("training_job").execute_in_process(
            instance=instance, run_config=FAST_TRAINING
        )
        assert training.success
        trained = trained_version(training)
        evaluated = definitions.resolve_job_def("model_version_job").execute_in_process(
            instance=instance,
            partition_key=trained,
            asset_selection=[dg.AssetKey("baseline_models"), EVALUATION],
            run_config=BASELINE_SAMPLE,
        )
        assert evaluated.success
        gate = {e.check_name: e for e in evaluated.get_asset_check_evaluations()}
        assert gate["cnn_beats_floor_and_baselines"].passed, gate["cnn_beats_floor_and_baselines"].metadata

        # Training progress appears in the run log while it runs.
        logs = [e.message for e in instance.all_logs(training.run_id) if e.message]
        assert any(m.startswith("epoch 1: ") and "val_auc=" in m for m in logs)

    info = model_store.load_record(lake, trained)
    baselines, _ = model_store.load_baselines(lake, trained)
    assert baselines.training_sample == TrainingSample(rows=400, split_rows=info.rows["train"], max_rows=400, seed=9)
    assert info.data_versions == {p: read_manifest(lake, lake_keys.tensors(p)).digest for p in PARTITIONS}
    model_bytes = lake.read_bytes(f"{lake_keys.model_dir(registry.MODEL_NAME, info.version)}/model.keras")
    assert model_bytes[:2] == b"PK", "native .keras (zip) format expected"

    assert content_hash(model_bytes) == info.artifacts["model.keras"]
    onnx_bytes = lake.read_bytes(f"{lake_keys.model_dir(registry.MODEL_NAME, info.version)}/model.onnx")

    # The registered version is the ONNX model (what serves), checked against Keras when it was trained;
    # the Keras model is logged beside it in the same run.
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri())
    version = client.get_model_version(registry.MODEL_NAME, info.registered_version)
    assert version.tags[registry.SHA_TAG] == content_hash(onnx_bytes) == info.onnx_sha256
    assert version.source == info.mlflow_model_uri and version.tags[registry.KERAS_MODEL_URI_TAG] != version.source
    flavors = mlflow.models.get_model_info(info.mlflow_model_uri).flavors
    assert "onnx" in flavors and "tensorflow" in mlflow.models.get_model_info(version.tags["keras_model_uri"]).flavors
    assert float(version.tags["threshold"]) == pytest.approx(info.threshold)
    # The maker of maker-checker, in the record and on the version.
    assert info.launched_by == version.tags[registry.LAUNCHED_BY_TAG] == "user:Ann Lee"
    assert version.tags["feature_spec_version"] == features.FEATURE_SPEC_VERSION
    run = client.get_run(info.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val_auc")) >= 2, "per-epoch metrics expected"
    assert 0.0 <= run.data.metrics["val_onnx_max_abs_diff"] <= 1e-5
    for name in ("test_roc_auc", "test_logistic_regression_roc_auc", "test_hist_gradient_boosting_roc_auc"):
        assert 0.5 < run.data.metrics[name] <= 1.0, name
    assert "feature_spec.json" in {a.path for a in client.list_artifacts(run.info.run_id)}

    report = model_store.read_json(lake, f"{lake_keys.model_dir(registry.MODEL_NAME, info.version)}/evaluation.json")
    assert set(report["metrics"]) == {"cnn", "logistic_regression", "hist_gradient_boosting"}
    assert report["test_rows"] == info.rows["test"]
    # Every model is calibrated on validation and thresholded by the version's policy (expected cost by default);
    # the uncalibrated figures stay in the report for the record.
    assert info.threshold_policy.kind == "expected_cost" and info.threshold == pytest.approx(0.25)
    assert (
        info.calibration.method in {"platt", "isotonic"} and info.calibration.validation_rows == info.rows["validation"]
    )
    for name, metrics in report["metrics"].items():
        assert metrics["threshold"] == pytest.approx(0.25), name
        assert {"ece", "ece_uncalibrated", "brier", "brier_uncalibrated"} <= set(metrics), name
        assert metrics["ece"] < metrics["ece_uncalibrated"], (name, metrics)
    # The registered (served) artifact outputs the calibrated probability.
    served = model_store.keras_from_bytes(model_bytes)
    assert served.layers[-1].name == "calibrated_probability_of_default"


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def uci_defs(monkeypatch: pytest.MonkeyPatch, csv: Path) -> dg.Definitions:
    monkeypatch.setenv("PLATFORM_SOURCE", "uci_csv")
    monkeypatch.setenv("PLATFORM_UCI_CSV", str(csv))
    monkeypatch.setenv("PLATFORM_UCI_REPLAY_START", "2026-10-01")
    return defs()


def test_out_of_range_rows_are_quarantined_and_counted(
    platform_home: Path, uci_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.read_csv(uci_csv).head(3000)
    frame.loc[0:4, "LIMIT_BAL"] = -1000
    frame.loc[5:6, "AGE"] = 140
    frame.loc[7, "PAY_0"] = 12
    definitions = uci_defs(monkeypatch, write_csv(frame, tmp_path / "uci_subset.csv"))
    lake = definitions.resources["lake"]
    with dg.DagsterInstance.get() as instance:
        total_quarantined = 0
        for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
            result = definitions.resolve_job_def("daily_ingest_job").execute_in_process(
                partition_key=day, instance=instance
            )
            assert result.success
            raw = read_partition(lake, lake_keys.raw(day))
            tensors = read_partition(lake, lake_keys.tensors(day))
            assert len(tensors) == len(raw), "no row may be dropped silently"
            quarantined = tensors[features.REASON].notna().sum()
            [check] = result.get_asset_check_evaluations()
            assert check.metadata["out_of_range_rows"].value == quarantined
            if quarantined:
                stored = read_partition(lake, lake_keys.quarantine(day))
                assert len(stored) == quarantined and stored[features.REASON].notna().all()
                assert not check.passed
            total_quarantined += quarantined
    all_rows = sum(len(read_partition(lake, lake_keys.raw(d))) for d in ("2026-10-01", "2026-10-02", "2026-10-03"))
    replayed_bad = frame.head(8)[schema.ID].isin(
        pd.concat(read_partition(lake, lake_keys.raw(d)) for d in ("2026-10-01", "2026-10-02", "2026-10-03"))[schema.ID]
    )
    assert total_quarantined == replayed_bad.sum() and all_rows < len(frame)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        str(e.step_failure_data.error.cause or e.step_failure_data.error.message) + e.step_failure_data.error.message
        for e in result.all_events
        if e.is_step_failure
    )


def test_source_missing_a_column_fails_naming_file_and_column(
    platform_home: Path, uci_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = write_csv(pd.read_csv(uci_csv).head(500).drop(columns=["PAY_AMT3"]), tmp_path / "no_pay_amt3.csv")
    definitions = uci_defs(monkeypatch, csv)
    with dg.DagsterInstance.get() as instance:
        result = definitions.resolve_job_def("daily_ingest_job").execute_in_process(
            partition_key="2026-10-01", instance=instance, raise_on_error=False
        )
    assert not result.success
    message = failure_message(result)
    assert "no_pay_amt3.csv" in message and "PAY_AMT3" in message


def test_wrong_type_and_partition_outside_the_replay_fail_clearly(
    platform_home: Path, uci_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.read_csv(uci_csv).head(500).astype({"AGE": object})
    frame.loc[3, "AGE"] = "forty"
    definitions = uci_defs(monkeypatch, write_csv(frame, tmp_path / "bad_age.csv"))
    with dg.DagsterInstance.get() as instance:
        ingest = definitions.resolve_job_def("daily_ingest_job")
        bad_type = ingest.execute_in_process(partition_key="2026-10-01", instance=instance, raise_on_error=False)
        outside = ingest.execute_in_process(partition_key="2026-11-20", instance=instance, raise_on_error=False)
    assert "'AGE'" in failure_message(bad_type) and "bad_age.csv" in failure_message(bad_type)
    assert "outside the UCI replay window" in failure_message(outside)


def test_evaluation_refuses_models_trained_on_different_data(platform_home: Path) -> None:
    definitions = defs()
    lake = definitions.resources["lake"]
    record = model_version("v1", data_versions={"2026-10-05": "1" * 64})
    model_store.publish(lake, record)
    model_store.publish_baselines(
        lake,
        BaselineSet(
            model_version="v1",
            mlflow_run_id="r",
            dagster_run_id="d",
            artifacts={},
            thresholds={},
            calibrations={},
            validation_roc_auc={},
            data_versions={"2026-10-05": "2" * 64},
            split=record.split,
        ),
    )
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("model_versions", ["v1"])
        result = dg.materialize(
            [definitions.resolve_assets_def("model_evaluation")],
            instance=instance,
            partition_key="v1",
            raise_on_error=False,
        )
    assert "different data or splits" in failure_message(result)
    assert model_store.load_record(lake, "v1") == record, "a refused evaluation leaves the version as it was"
