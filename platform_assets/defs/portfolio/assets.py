"""Batch rescoring of the portfolio: a model version's scores and decisions over past daily partitions."""

import re
from typing import Any

import dagster as dg
from pydantic import Field

from platform_assets import model_store
from platform_assets.core import lake_keys, registry
from platform_assets.core.model_version import ONNX_FILE
from platform_assets.dataplane import partitions, scoring
from platform_assets.defs.features.assets import credit_history_tensors
from platform_assets.partitions import daily_partitions
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.spark import CreditSparkResource
from platform_assets.retries import fail_fast, io_retry_policy


class PortfolioScoringConfig(dg.Config):
    model_version: str | None = Field(
        default=None,
        description="Version to score with, e.g. 'v4' (a candidate before any live traffic); default: the champion.",
    )


def scoring_model(lake: LakeStorage, version: str) -> scoring.ScoringModel:
    """The version's ONNX artifact, its trusted sha256 and its threshold, from its record in the lake."""
    record = model_store.load_record(lake, version)
    return scoring.ScoringModel(
        version=record.version,
        onnx_key=model_store.version_key(record.version, ONNX_FILE),
        sha256=record.artifacts[ONNX_FILE],
        threshold=record.threshold,
    )


def chosen_version(config: PortfolioScoringConfig, model_registry: ModelRegistry) -> str:
    """The configured version, or the registry's champion; a clear error when neither names one."""
    if config.model_version is not None:
        if not re.fullmatch(r"v[0-9]+", config.model_version):
            raise ValueError(f"model_version must be a version label like 'v4', got {config.model_version!r}")
        return config.model_version
    champion = model_registry.aliases().get(registry.CHAMPION)
    if champion is None:
        raise ValueError(
            f"{model_registry.model_name} has no '{registry.CHAMPION}' alias: promote a version or set "
            "model_version in the run config"
        )
    return champion


@dg.asset(
    partitions_def=daily_partitions,
    deps=[credit_history_tensors],
    group_name="portfolio",
    kinds={"spark", "onnx", "parquet"},
    retry_policy=io_retry_policy(),
    description=(
        "Every valid client of a tensor partition scored by one model version (the champion unless the run "
        "config names a candidate) on Spark executors with ONNX Runtime, the service's runtime: probability "
        "of default, the decision at the version's threshold and the version, written to "
        "scores/portfolio_scores/model_version=vN/ as parts committed by a manifest. Backfill a range of "
        "days to see a candidate's approval rate and score shift before any live traffic."
    ),
)
def portfolio_scores(
    context: dg.AssetExecutionContext,
    config: PortfolioScoringConfig,
    pyspark: CreditSparkResource,
    lake: LakeStorage,
    model_registry: ModelRegistry,
) -> dg.MaterializeResult[Any]:
    partition = context.partition_key
    store = lake.executor_store()
    with fail_fast():  # no champion, an unknown version or unscorable tensors will not fix themselves
        model = scoring_model(lake, chosen_version(config, model_registry))
        folder = lake_keys.portfolio_scores(model.version, partition)
        with partitions.writing(store, [folder]) as token:
            scored = scoring.score_partition(pyspark.spark_session, store, partition, model, token)
            committed = partitions.commit(store, folder, scored.parts, token)
    context.log.info(
        f"{committed.rows} clients of {partition} scored by {model.version}: approval rate {scored.approval_rate:.3f}"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(committed.digest),
        metadata={
            "dagster/row_count": committed.rows,
            "model_version": model.version,
            "threshold": model.threshold,
            "declined_rows": scored.declines,
            "approval_rate": scored.approval_rate,
            "mean_probability_of_default": scored.mean_probability,
            "unscored_quarantined_rows": scored.unscored,
            "model_onnx_sha256": model.sha256,
            "spark_master": pyspark.spark_session.sparkContext.master,
            "parts": len(committed.parts),
            "digest": committed.digest,
            "path": dg.MetadataValue.path(lake.uri(lake_keys.manifest(folder))),
        },
    )
