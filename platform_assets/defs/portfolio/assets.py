"""Batch rescoring of the portfolio: a model version's scores and decisions over past daily partitions."""

import re
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from platform_assets import model_store
from platform_assets.core import lake_keys, registry
from platform_assets.core.model_version import ONNX_FILE
from platform_assets.dataplane import partitions, scoring
from platform_assets.dataplane.objects import ObjectStore
from platform_assets.defs.features.assets import credit_history_tensors
from platform_assets.partitions import daily_partitions
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.spark import CreditSparkResource
from platform_assets.retries import fail_fast, io_retry_policy

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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


def score_day(
    spark: "SparkSession", store: ObjectStore, day: str, model: scoring.ScoringModel
) -> tuple[scoring.ScoredPartition, partitions.Manifest]:
    """Score one daily tensor partition and commit it in its own folder: visible whole or not at all."""
    folder = lake_keys.portfolio_scores(model.version, day)
    with partitions.writing(store, [folder]) as token:
        scored = scoring.score_partition(spark, store, day, model, token)
        return scored, partitions.commit(store, folder, scored.parts, token)


@dg.asset(
    partitions_def=daily_partitions,
    # A backfill or a sensor's range request scores all its days in one run: one process, one Spark session
    # and one model load instead of one of each per day (the run start is most of a day's cost).
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[credit_history_tensors],
    group_name="portfolio",
    kinds={"spark", "onnx", "parquet"},
    retry_policy=io_retry_policy(),
    description=(
        "Every valid client of the run's tensor partitions scored by one model version (the champion unless "
        "the run config names a candidate) on Spark executors with ONNX Runtime, the service's runtime: "
        "probability of default, the decision at the version's threshold and the version, written to "
        "scores/portfolio_scores/model_version=vN/date=D/ as parts committed by a manifest, day by day. "
        "Backfill a range of days (one run) to see a candidate's approval rate and score shift before any "
        "live traffic."
    ),
)
def portfolio_scores(
    context: dg.AssetExecutionContext,
    config: PortfolioScoringConfig,
    pyspark: CreditSparkResource,
    lake: LakeStorage,
    model_registry: ModelRegistry,
) -> dg.MaterializeResult[Any]:
    days = context.partition_keys
    store = lake.executor_store()
    with fail_fast():  # no champion, an unknown version or unscorable tensors will not fix themselves
        model = scoring_model(lake, chosen_version(config, model_registry))
        spark = pyspark.spark_session
        digests = []
        for day in days:
            # Each day commits before the next starts: a failure on a day leaves the earlier days committed
            # (the lake is right) and that day untouched; the run then fails and Dagster records none of them.
            scored, committed = score_day(spark, store, day, model)
            digests.append(committed.digest)
            context.log.info(
                f"{committed.rows} clients of {day} scored by {model.version}: approval rate {scored.approval_rate:.3f}"
            )
            context.add_asset_metadata(
                {
                    "dagster/row_count": committed.rows,
                    "declined_rows": scored.declines,
                    "approval_rate": scored.approval_rate,
                    "mean_probability_of_default": scored.mean_probability,
                    "unscored_quarantined_rows": scored.unscored,
                    "parts": len(committed.parts),
                    "digest": committed.digest,
                    "path": dg.MetadataValue.path(
                        lake.uri(lake_keys.manifest(lake_keys.portfolio_scores(model.version, day)))
                    ),
                },
                partition_key=day,
            )
    return dg.MaterializeResult(
        # One data version stands for every partition of the run, so only a one-day run can give its digest;
        # a range's days keep theirs in their "digest" metadata and Dagster derives the data version.
        data_version=dg.DataVersion(digests[0]) if len(digests) == 1 else None,
        metadata={
            "model_version": model.version,
            "threshold": model.threshold,
            "model_onnx_sha256": model.sha256,
            "spark_master": spark.sparkContext.master,
        },
    )
