"""Spark through dagster-pyspark, with the Python workers pinned to this interpreter."""

from __future__ import annotations

import os
import sys

import dagster as dg
from dagster_pyspark import PySparkResource


class CreditSparkResource(PySparkResource):
    """``PySparkResource`` whose local Python workers run this interpreter (the one with the platform).

    PySpark starts workers with ``$PYSPARK_PYTHON`` (default: whatever ``python3`` is on PATH), which
    lacks pandas and this package outside the virtualenv. On a cluster, set ``PYSPARK_PYTHON`` to the
    executors' interpreter.
    """

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        super().setup_for_execution(context)
