"""The retry policy of every step that touches the lake, MLflow or a source.

Defaults follow the Airflow DAG this replaces (2 retries, 5 minutes apart); ``PLATFORM_RETRIES``
and ``PLATFORM_RETRY_DELAY_SECONDS`` change them. Errors that cannot heal (a bad source file) raise
``dg.Failure(allow_retries=False)`` and are not retried.
"""

from __future__ import annotations

import os

import dagster as dg


def io_retry_policy() -> dg.RetryPolicy:
    return dg.RetryPolicy(
        max_retries=int(os.environ.get("PLATFORM_RETRIES", "2")),
        delay=float(os.environ.get("PLATFORM_RETRY_DELAY_SECONDS", "300")),
        backoff=dg.Backoff.LINEAR,
    )
