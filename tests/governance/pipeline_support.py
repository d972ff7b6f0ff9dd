"""A platform home where the real pipeline trained and signed two model versions, for end-to-end tests.

Ingest + features for two synthetic partitions, then ``training_job`` and ``model_version_job`` (partition: the
new version) twice, so the MLflow registry holds ``v1`` and ``v2`` of ``default_risk_model``, each with a signed
manifest in the lake and on its MLflow run, and the Dagster instance under ``$PLATFORM_HOME/dagster`` has every
run and both partitions of ``model_versions``.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from platform_assets.core.model_version import ModelVersion

REPO = Path(__file__).resolve().parents[2]
SERVING_TESTS = REPO / "tests" / "serving"
PARTITIONS = ["2026-10-05", "2026-10-06"]
FAST_TRAINING = {"ops": {"default_risk_model": {"config": {"epochs": 3, "patience": 2}}}}


@dataclass
class PipelineHome:
    home: Path
    env: dict[str, str]  # the environment the pipeline ran with (PLATFORM_HOME, DAGSTER_HOME, ...)
    tracking_uri: str
    verify_key: Path
    versions: dict[str, ModelVersion]  # "v1"/"v2" -> record
    training_run_ids: dict[str, str]  # "v1"/"v2" -> training Dagster run id
    keys_file: Path
    api_keys: dict[str, str]  # role -> key

    def service_env(self, **overrides: str) -> dict[str, str]:
        env = {
            **self.env,
            "CREDIT_RISK_API_KEYS_FILE": str(self.keys_file),
            "CREDIT_RISK_REFRESH_SECONDS": "0.5",
            "CREDIT_RISK_VERIFY_KEY_FILE": str(self.verify_key),
            "BENTOML_HOME": str(self.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
        }
        env.update(overrides)
        return env


def pipeline_env(home: Path) -> dict[str, str]:
    """This process's environment without platform settings, pointed at ``home``; loose gates for tiny data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "MLFLOW_", "CREDIT_RISK_"))}
    env.update(
        {
            "PLATFORM_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "SPARK_MASTER": "local[2]",
            "PYSPARK_PYTHON": sys.executable,
            "PLATFORM_RETRY_DELAY_SECONDS": "1",
            "PLATFORM_ROWS_PER_DAY": "1000",
            "PLATFORM_AUC_FLOOR": "0.0",
            "PLATFORM_BASELINE_MARGIN": "1.0",
            "PLATFORM_MIN_DISPARATE_IMPACT": "0.0",
            "PLATFORM_MAX_EQUAL_OPPORTUNITY_DIFF": "1.0",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    return env


def build(home: Path) -> PipelineHome:
    """Run the pipeline into ``home``; the caller has already put ``pipeline_env(home)`` in ``os.environ``."""
    import dagster as dg

    from platform_assets import model_store, settings
    from platform_assets.core import lake_keys, registry, signing
    from platform_assets.core.api_keys import create_key
    from platform_assets.definitions import defs
    from platform_assets.demo import trained_version

    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    definitions = defs()
    lake = definitions.resources["lake"]
    versions: dict[str, ModelVersion] = {}
    training_runs: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dg.DagsterInstance.get() as instance:
            for partition in PARTITIONS:
                result = definitions.resolve_job_def("daily_ingest_job").execute_in_process(
                    partition_key=partition, instance=instance
                )
                assert result.success, f"ingest {partition} failed"
            for _ in range(2):
                training = definitions.resolve_job_def("training_job").execute_in_process(
                    instance=instance, run_config=FAST_TRAINING
                )
                assert training.success, "training_job failed"
                version = trained_version(training)
                governance = definitions.resolve_job_def("model_version_job").execute_in_process(
                    instance=instance, partition_key=version
                )
                assert governance.success, f"model_version_job failed for {version}"
                versions[version] = model_store.load_record(lake, version)
                training_runs[version] = training.run_id
    assert sorted(versions) == ["v1", "v2"], sorted(versions)
    for version in versions:
        assert lake.exists(f"{lake_keys.model_dir(registry.MODEL_NAME, version)}/manifest.sig")
    tracking_uri = settings.mlflow_tracking_uri()
    registry.set_alias(registry.CHAMPION, "1", tracking_uri=tracking_uri)
    keys_file = home / "api_keys.json"
    api_keys = {role: create_key(keys_file, [role])[0] for role in ("predict", "feedback", "admin")}
    return PipelineHome(
        home=home,
        env=dict(os.environ),
        tracking_uri=tracking_uri,
        verify_key=home / "keys" / signing.PUBLIC_KEY_FILE,
        versions=versions,
        training_run_ids=training_runs,
        keys_file=keys_file,
        api_keys=api_keys,
    )


def application_rows(n: int, seed: int = 99) -> list[dict[str, int]]:
    """``n`` valid raw applications (no target) with the protected attributes."""
    from model_support import synthetic_rows

    from platform_assets.ml import schema

    frame = synthetic_rows(days=1, rows_per_day=max(n, 50), seed=seed).drop(columns=[schema.TARGET])
    return [{k: int(v) for k, v in row.items()} for row in frame.iloc[:n].to_dict("records")]
