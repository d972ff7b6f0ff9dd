"""``portfolio_scores`` as an asset: the version comes from the run config or the champion alias, the metadata
says what the committed scores in the lake say, a run over a range of days commits each day in its own folder,
and a run without a usable version fails naming why."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from onnx_support import graph_bytes
from record_support import model_version

from platform_assets import model_store
from platform_assets.core import lake_keys, registry
from platform_assets.core.model_version import ONNX_FILE
from platform_assets.dataplane import partitions, scoring, tensors
from platform_assets.defs.portfolio.assets import portfolio_scores
from platform_assets.defs.promotion.sensors import RANGE_END_TAG, RANGE_START_TAG
from platform_assets.ml import synthetic
from platform_assets.resources.lake import LocalLake
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.spark import CreditSparkResource

pytestmark = pytest.mark.spark

DAY = "2026-10-01"
THRESHOLD = 0.3
#: Three consecutive days after DAY, scored by one range run.
DAYS = ["2026-10-02", "2026-10-03", "2026-10-04"]


@pytest.fixture
def lake(spark: Any, tmp_path: Path) -> LocalLake:
    """A committed tensor partition of 400 clients (one quarantined) and v7's record with the ONNX graph."""
    lake = LocalLake(root=str(tmp_path / "lake"))
    store = lake.executor_store()
    raw = synthetic.generate_partition(date.fromisoformat(DAY), 400, seed=5)
    raw.loc[7, "LIMIT_BAL"] = -1
    partitions.write_partition(store, lake_keys.raw(DAY), [raw])
    written = tensors.featurize_partition(spark, store, DAY)
    partitions.commit(store, lake_keys.tensors(DAY), written.tensor_parts, written.run_token)
    onnx_sha256 = lake.write_bytes(model_store.version_key("v7", ONNX_FILE), graph_bytes())
    model_store.publish(lake, model_version("v7", onnx_sha256=onnx_sha256, threshold=THRESHOLD))
    return lake


def commit_tensor_day(spark: Any, lake: LocalLake, day: str, clients: int, seed: int) -> None:
    store = lake.executor_store()
    partitions.write_partition(
        store, lake_keys.raw(day), [synthetic.generate_partition(date.fromisoformat(day), clients, seed=seed)]
    )
    written = tensors.featurize_partition(spark, store, day)
    partitions.commit(store, lake_keys.tensors(day), written.tensor_parts, written.run_token)


def empty_registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", model_name=registry.MODEL_NAME)


def champion_registry(tmp_path: Path, version: int) -> ModelRegistry:
    """A real MLflow registry whose champion alias points at ``v{version}``."""
    model_registry = empty_registry(tmp_path)
    client = model_registry.client()
    client.create_registered_model(registry.MODEL_NAME)
    for _ in range(version):
        client.create_model_version(registry.MODEL_NAME, source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, str(version))
    return model_registry


def materialize(
    lake: LocalLake, model_registry: ModelRegistry, model_version: str | None, days: tuple[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    """One run of ``portfolio_scores``: of DAY, or of the range ``days`` (first, last) as a backfill runs it."""
    config = {} if model_version is None else {"model_version": model_version}
    return dg.materialize(
        [portfolio_scores],
        partition_key=DAY if days is None else None,
        tags=None if days is None else dict(zip((RANGE_START_TAG, RANGE_END_TAG), days, strict=True)),
        resources={
            # The session is the test run's local[2] one (getOrCreate hands it back).
            "pyspark": CreditSparkResource(spark_config={"spark.master": "local[2]"}),
            "lake": lake,
            "model_registry": model_registry,
        },
        run_config={"ops": {"portfolio_scores": {"config": config}}},
        raise_on_error=False,
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    return failure.step_failure_data.error.message  # type: ignore[no-any-return]


@pytest.mark.parametrize("source", ["run_config", "champion"])
def test_metadata_says_what_the_committed_scores_say(spark: Any, lake: LocalLake, tmp_path: Path, source: str) -> None:
    if source == "run_config":
        result = materialize(lake, empty_registry(tmp_path), "v7")
    else:
        result = materialize(lake, champion_registry(tmp_path, 7), None)
    assert result.success
    [materialization] = result.asset_materializations_for_node("portfolio_scores")
    metadata = {key: value.value for key, value in materialization.metadata.items()}

    scores = partitions.read_partition(lake.executor_store(), lake_keys.portfolio_scores("v7", DAY))
    approved = (scores[scoring.DECISION] == "approve").mean()
    assert metadata["dagster/row_count"] == len(scores) == 399  # the quarantined client has no score
    assert metadata["unscored_quarantined_rows"] == 1
    assert metadata["model_version"] == "v7" and set(scores[scoring.MODEL_VERSION]) == {"v7"}
    assert metadata["threshold"] == THRESHOLD
    assert 0 < metadata["declined_rows"] == (scores[scoring.DECISION] == "decline").sum() < len(scores)
    assert metadata["approval_rate"] == pytest.approx(approved)
    assert metadata["mean_probability_of_default"] == pytest.approx(scores[scoring.PROBABILITY].mean(), abs=1e-6)
    assert metadata["model_onnx_sha256"] == hashlib.sha256(graph_bytes()).hexdigest()
    manifest = partitions.read_manifest(lake.executor_store(), lake_keys.portfolio_scores("v7", DAY))
    assert metadata["digest"] == manifest.digest and materialization.tags["dagster/data_version"] == manifest.digest


def test_a_range_run_commits_every_day_and_reports_each(spark: Any, lake: LocalLake, tmp_path: Path) -> None:
    for seed, day in enumerate(DAYS):
        commit_tensor_day(spark, lake, day, 120 + 30 * seed, seed)
    result = materialize(lake, empty_registry(tmp_path), "v7", (DAYS[0], DAYS[-1]))
    assert result.success

    store = lake.executor_store()
    materializations = result.asset_materializations_for_node("portfolio_scores")
    assert [m.partition for m in materializations] == DAYS, "one materialization per day of the one run"
    for day, materialization in zip(DAYS, materializations, strict=True):
        metadata = {key: value.value for key, value in materialization.metadata.items()}
        scores = partitions.read_partition(store, lake_keys.portfolio_scores("v7", day))
        manifest = partitions.read_manifest(store, lake_keys.portfolio_scores("v7", day))
        # Each day's figures are its own, not the run's totals.
        assert metadata["dagster/row_count"] == len(scores) == manifest.rows
        assert metadata["digest"] == manifest.digest and metadata["model_version"] == "v7"
        assert metadata["declined_rows"] == (scores[scoring.DECISION] == "decline").sum()
        assert metadata["approval_rate"] == pytest.approx((scores[scoring.DECISION] == "approve").mean())
    assert len({m.metadata["digest"].value for m in materializations}) == len(DAYS)
    assert [m.metadata["dagster/row_count"].value for m in materializations] == [120, 150, 180]


def test_a_failure_on_a_day_leaves_the_earlier_days_committed_and_that_day_not(
    spark: Any, lake: LocalLake, tmp_path: Path
) -> None:
    for seed, day in enumerate(DAYS):
        commit_tensor_day(spark, lake, day, 100, seed)
    store = lake.executor_store()
    # The second day's tensors change after their commit: its scoring fails on the part's sha256.
    tensor_manifest = partitions.read_manifest(store, lake_keys.tensors(DAYS[1]))
    part = lake_keys.part(lake_keys.tensors(DAYS[1]), tensor_manifest.parts[0].name)
    store.write_bytes(part, store.read_bytes(part) + b"tampered")

    message = failure_message(materialize(lake, empty_registry(tmp_path), "v7", (DAYS[0], DAYS[-1])))
    assert "is corrupt or was changed after its commit" in message
    first = partitions.read_partition(store, lake_keys.portfolio_scores("v7", DAYS[0]))
    assert len(first) == 100 and set(first[scoring.MODEL_VERSION]) == {"v7"}
    # Nothing of the failed day or after it: no manifest, no parts, no in-flight marker.
    assert store.list_keys(lake_keys.portfolio_scores("v7", DAYS[1])) == []
    assert not partitions.is_committed(store, lake_keys.portfolio_scores("v7", DAYS[2]))


def test_a_model_version_that_is_not_a_label_fails_naming_the_field(lake: LocalLake, tmp_path: Path) -> None:
    message = failure_message(materialize(lake, empty_registry(tmp_path), "latest"))
    assert "model_version must be a version label like 'v4', got 'latest'" in message
    assert lake.list_keys(lake_keys.PORTFOLIO_SCORES_PREFIX) == []


def test_an_unknown_version_fails_naming_the_known_ones(lake: LocalLake, tmp_path: Path) -> None:
    message = failure_message(materialize(lake, empty_registry(tmp_path), "v8"))
    assert "no default_risk_model v8 in the lake" in message and "known versions: v7" in message


def test_without_a_champion_or_a_model_version_it_fails_naming_the_alias(lake: LocalLake, tmp_path: Path) -> None:
    message = failure_message(materialize(lake, empty_registry(tmp_path), None))
    assert f"{registry.MODEL_NAME} has no '{registry.CHAMPION}' alias" in message
    assert "set model_version in the run config" in message
    assert lake.list_keys(lake_keys.PORTFOLIO_SCORES_PREFIX) == []
