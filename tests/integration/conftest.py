from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A real local Spark session (Java 17), shared by the tests of one run."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from platform_assets import settings
    from platform_assets.defs.resources import spark_config

    builder = SparkSession.builder
    for key, value in {**spark_config(settings.load()), "spark.master": "local[2]"}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()
