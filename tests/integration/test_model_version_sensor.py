"""model_version_sensor hands each trained version on, as a partition key, to the job that follows its training."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
from sensor_support import evaluate_sensor

from platform_assets.definitions import defs
from platform_assets.defs.training.sensors import model_version_sensor


def train_stub(instance: dg.DagsterInstance, job_name: str, version: str, tags: dict[str, str] | None = None) -> str:
    """A run of ``job_name`` that materializes default_risk_model as ``version`` (no real training)."""

    @dg.asset(name="default_risk_model")
    def stub(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]  # noqa: ANN001
        context.instance.add_dynamic_partitions("model_versions", [version])
        return dg.MaterializeResult(metadata={"model_version": version})

    job = dg.define_asset_job(job_name, selection=[stub])
    result = (
        dg.Definitions(assets=[stub], jobs=[job])
        .resolve_job_def(job_name)
        .execute_in_process(instance=instance, tags=tags)
    )
    assert result.success
    return result.run_id


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    result: dg.SensorResult = evaluate_sensor(model_version_sensor, defs(), instance, cursor)
    return result


def test_each_version_is_handed_to_the_job_after_its_training(platform_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        first = tick(instance, None)
        assert not first.run_requests and "no new model version" in (first.skip_message or "")
        trained_v1 = train_stub(instance, "training_job", "v1")
        trained_v2 = train_stub(instance, "retrain_and_deploy_job", "v2", tags={"loop/trigger": "drift"})
        second = tick(instance, first.cursor)
        requests = {r.partition_key: r for r in second.run_requests}
        assert set(requests) == {"v1", "v2"}
        assert requests["v1"].job_name == "model_version_job"
        assert requests["v1"].tags["platform/training_run_id"] == trained_v1
        assert requests["v2"].job_name == "release_job"
        assert requests["v2"].tags["platform/training_run_id"] == trained_v2
        assert requests["v2"].tags["loop/trigger"] == "drift", "the trigger's tags follow the version"
        # One trained version, one request: the cursor moves past both.
        third = tick(instance, second.cursor)
        assert not third.run_requests
        assert json.loads(third.cursor or "{}")["storage_id"] == json.loads(second.cursor or "{}")["storage_id"]


def test_a_version_already_evaluated_in_process_is_not_handed_on_again(platform_home: Path) -> None:
    """make demo runs the per-version job in process; the daemon's sensor must not run it a second time."""
    with dg.DagsterInstance.get() as instance:
        train_stub(instance, "training_job", "v1")

        @dg.asset(name="model_evaluation", partitions_def=dg.DynamicPartitionsDefinition(name="model_versions"))
        def evaluated() -> None:
            return None

        job = dg.define_asset_job("model_version_job", selection=[evaluated])
        dg.Definitions(assets=[evaluated], jobs=[job]).resolve_job_def("model_version_job").execute_in_process(
            instance=instance, partition_key="v1"
        )
        result = tick(instance, None)
    assert not result.run_requests
    assert json.loads(result.cursor or "{}")["storage_id"] > 0, "the cursor moves past the version"
