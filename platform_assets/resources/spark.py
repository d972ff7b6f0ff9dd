"""Spark through dagster-pyspark, with the Python workers pinned to this interpreter."""

from __future__ import annotations

import os
import sys

import dagster as dg
from dagster_pyspark import PySparkResource


class CreditSparkResource(PySparkResource):  # type: ignore[misc]
    """``PySparkResource`` whose local Python workers run this interpreter (the one with the platform).

    PySpark starts workers with ``$PYSPARK_PYTHON`` (default: whatever ``python3`` is on PATH), which
    lacks pandas and this package outside the virtualenv. On a cluster, set ``PYSPARK_PYTHON`` to the
    executors' interpreter.
    """

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        super().setup_for_execution(context)


def spark_config() -> dict[str, str]:
    """Local Spark by default; ``SPARK_MASTER`` points at a cluster. Arrow makes the pandas hand-off cheap."""
    return {
        "spark.master": os.environ.get("SPARK_MASTER", "local[*]"),
        "spark.app.name": "credit-risk-platform",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8"),
        "spark.ui.enabled": os.environ.get("SPARK_UI_ENABLED", "false"),
        "spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY", "2g"),
    }
