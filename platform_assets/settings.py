"""Environment switch and platform constants. Reads environment variables only; does no work.

=====================  ===========================================  ================================
variable               meaning                                      default
=====================  ===========================================  ================================
PLATFORM_ENV           ``local`` | ``staging`` | ``prod``           ``local``
PLATFORM_HOME          lake, MLflow store and Dagster home (local)   ``./.platform_home``
PLATFORM_SOURCE        ``synthetic`` | ``uci_csv``                   ``synthetic``
PLATFORM_UCI_CSV       path or ``s3://`` URI of the UCI CSV          (required for ``uci_csv``)
PLATFORM_SEED          synthetic generator seed                      ``2005``
PLATFORM_ROWS_PER_DAY  synthetic rows per daily partition            ``1000``
PLATFORM_LAKE_URI      ``s3://bucket/prefix`` to put the lake on S3  ``$PLATFORM_HOME/lake``
PLATFORM_S3_ENDPOINT   S3 endpoint URL (MinIO, moto)                 AWS
SPARK_MASTER           Spark master URL                              ``local[*]``
MLFLOW_TRACKING_URI    MLflow tracking store                         ``sqlite:///$PLATFORM_HOME/...``
=====================  ===========================================  ================================
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Final

PARTITIONS_START: Final = os.environ.get("PLATFORM_PARTITIONS_START", "2026-10-01")
#: Days of the UCI replay: 30,000 rows become 30 daily batches of about 1,000.
UCI_REPLAY_DAYS: Final = 30
MODEL_NAME: Final = "default_risk_model"
EXPERIMENT_NAME: Final = "credit_risk"
OWNER: Final = "team:ml-platform"


class Environment(StrEnum):
    LOCAL = "local"
    STAGING = "staging"
    PROD = "prod"


def environment() -> Environment:
    """The deployment environment named by ``PLATFORM_ENV``."""
    value = os.environ.get("PLATFORM_ENV", "local")
    try:
        return Environment(value)
    except ValueError:
        raise ValueError(f"PLATFORM_ENV must be one of {[e.value for e in Environment]}, got {value!r}") from None


def platform_home() -> Path:
    """Root of everything the platform keeps on local disk."""
    return Path(os.environ.get("PLATFORM_HOME", ".platform_home")).resolve()


def lake_uri() -> str:
    return os.environ.get("PLATFORM_LAKE_URI") or str(platform_home() / "lake")


def mlflow_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{platform_home() / 'mlflow' / 'mlflow.db'}"


def mlflow_artifact_root() -> str:
    return os.environ.get("PLATFORM_MLFLOW_ARTIFACTS") or (platform_home() / "mlflow" / "artifacts").as_uri()
