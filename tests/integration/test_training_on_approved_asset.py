"""Training on the approved through Dagster: a real MLflow registry whose champion's committed portfolio_scores
select the training labels, the CNN and the baselines reweighted for reject inference, the version record and
the materialization saying so, and a day without the champion's scores failing before any training."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest
from reject_support import write_champion_scores

from platform_assets import model_store, settings
from platform_assets.core import lake_keys, registry
from platform_assets.dataplane.partitions import write_partition
from platform_assets.definitions import bound_to
from platform_assets.demo import trained_version
from platform_assets.ml import dataset, features, reject_inference, synthetic
from platform_assets.resources.training_data import TrainingData, open_labelled
from platform_assets.settings import PlatformSettings

pytestmark = pytest.mark.slow

DAYS = ("2026-10-05", "2026-10-06")
CHAMPION = "v1"
APPROVED_REWEIGHTED = {
    "ops": {
        "default_risk_model": {
            "config": {"epochs": 3, "patience": 2, "outcomes": "approved", "reject_inference": "reweight"}
        }
    }
}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    return "\n".join(
        e.event_specific_data.error.message
        for e in result.all_events
        if e.is_step_failure  # type: ignore[union-attr]
    )


def test_training_on_the_champions_approved_with_reweighting(platform_home: Path) -> None:
    definitions = bound_to(PlatformSettings(auc_floor=0.5))
    lake = definitions.resources["lake"]
    tensors = {
        day: features.featurize_rows(synthetic.generate_partition(date.fromisoformat(day), 700, 4)) for day in DAYS
    }
    # A real registry with a champion: v1, a version registered before (its model is not needed, its scores are).
    # The registry URI too: MlflowClient otherwise takes a process-wide one an earlier test or run may have set.
    uri = settings.mlflow_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(registry.MODEL_NAME)
    client.create_model_version(registry.MODEL_NAME, source=(platform_home / "champion").as_uri())
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, "1")
    with dg.DagsterInstance.get() as instance:
        for day, rows in tensors.items():
            write_partition(lake, lake_keys.tensors(day), [rows])
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "credit_history_tensors",
                    partition=day,
                    metadata={"feature_spec": dg.MetadataValue.json(features.feature_spec())},
                )
            )
        write_champion_scores(lake, CHAMPION, DAYS[0], tensors[DAYS[0]], threshold=0.35)
        training_job = definitions.resolve_job_def("training_job")

        missing = training_job.execute_in_process(
            instance=instance, run_config=APPROVED_REWEIGHTED, raise_on_error=False
        )
        message = _failure(missing)
        assert f"training day {DAYS[1]} has no committed portfolio_scores by the champion {CHAMPION}" in message
        assert "portfolio_scoring_job" in message

        scores = write_champion_scores(lake, CHAMPION, DAYS[1], tensors[DAYS[1]], threshold=0.35)
        training = training_job.execute_in_process(instance=instance, run_config=APPROVED_REWEIGHTED)
        version = trained_version(training)
        evaluated = definitions.resolve_job_def("model_version_job").execute_in_process(
            instance=instance,
            partition_key=version,
            asset_selection=[dg.AssetKey("baseline_models"), dg.AssetKey("model_evaluation")],
            raise_on_error=False,
        )
        materializations = {
            e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata  # type: ignore[union-attr]
            for result in (training, evaluated)
            for e in result.get_asset_materialization_events()
        }

    record = model_store.load_record(lake, version)
    selection = record.label_selection
    assert (selection.outcomes, selection.reject_inference, selection.selected_by) == ("approved", "reweight", CHAMPION)
    # The rows the version learnt from: the approved clients of the train and validation splits, none declined.
    everyone, _ = TrainingData().open(lake)
    labelled = open_labelled(lake, record)
    declined = set(scores[scores["decision"] == "decline"][dataset.schema.ID])
    for split in dataset.SELECTED_SPLITS:
        ids = labelled.materialize(split).ids
        assert len(ids) == selection.labelled_rows[split] == record.rows[split]
        assert selection.declined_rows[split] == everyone.rows()[split] - len(ids) > 0
        assert not declined & set(ids.tolist())
    assert record.rows["test"] == everyone.rows()["test"]  # the test split stays through the door
    weights = selection.weights
    assert weights is not None and weights.fitted_rows == everyone.rows()["train"]
    # The recorded weights reproduce: mean 1 and the recorded effective sample size over the labelled rows.
    w = reject_inference.weights_of(weights, labelled.materialize("train").flat())
    assert w.mean() == pytest.approx(1.0) and weights.effective_sample_size == pytest.approx(
        reject_inference.effective_sample_size(w)
    )
    assert 0 < weights.effective_sample_size < len(w)

    trained = materializations["default_risk_model"]
    assert trained["outcomes"].value == "approved" and trained["reject_inference"].value == "reweight"
    assert trained["labels_selected_by"].value == CHAMPION
    assert trained["labelled_rows"].value == selection.labelled_rows
    assert trained["effective_sample_size"].value == pytest.approx(weights.effective_sample_size)
    assert materializations["baseline_models"]["reject_inference"].value == "reweight"
    # Calibration and threshold describe the applicant flow: fitted with the validation rows' weights.
    assert record.calibration.weighted
    baselines, _ = model_store.load_baselines(lake, version)
    assert all(fit.weighted for fit in baselines.calibrations.values())
    assert baselines.training_sample is not None and baselines.training_sample.split_rows == record.rows["train"]
    evaluation = materializations["model_evaluation"]
    assert evaluation["test_rows"].value == everyone.rows()["test"]
    assert np.isfinite(evaluation["cnn_test_roc_auc"].value)
    run = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri()).get_run(record.mlflow_run_id)
    assert run.data.params["outcomes"] == "approved" and run.data.params["labels_selected_by"] == CHAMPION


def test_reweighting_without_the_approved_fails_before_training_naming_both_settings(platform_home: Path) -> None:
    definitions = bound_to(PlatformSettings())
    with dg.DagsterInstance.get() as instance:
        result = definitions.resolve_job_def("training_job").execute_in_process(
            instance=instance,
            run_config={"ops": {"default_risk_model": {"config": {"reject_inference": "reweight"}}}},
            raise_on_error=False,
        )
        message = _failure(result)
        # Not retried: a configuration does not heal.
        assert not [
            e for e in instance.all_logs(result.run_id) if e.dagster_event and e.dagster_event.is_step_up_for_retry
        ]
    assert "reject_inference='reweight'" in message and "outcomes='approved', not outcomes='all'" in message
    # The MLflow run dagster-mlflow opened for the Dagster run is closed as FAILED, not left running.
    assert mlflow.active_run() is None
    # The registry URI too: MlflowClient otherwise takes a process-wide one an earlier test or run may have set.
    uri = settings.mlflow_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FAILED"
