"""The retry policy of every step that touches the lake, MLflow or a source.

Defaults follow the Airflow DAG this replaces (2 retries, 5 minutes apart); ``PLATFORM_RETRIES``
and ``PLATFORM_RETRY_DELAY_SECONDS`` change them. Errors that cannot heal (a bad source file) raise
``dg.Failure(allow_retries=False)`` and are not retried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

#: Errors that retrying cannot heal: bad input data, a broken configuration, an upstream not materialized.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError)


def io_retry_policy() -> dg.RetryPolicy:
    return dg.RetryPolicy(
        max_retries=int(os.environ.get("PLATFORM_RETRIES", "2")),
        delay=float(os.environ.get("PLATFORM_RETRY_DELAY_SECONDS", "300")),
        backoff=dg.Backoff.LINEAR,
    )


@contextmanager
def fail_fast(*errors: type[BaseException]) -> Iterator[None]:
    """Turn ``errors`` (default: bad data or configuration, a missing upstream) into a failure that is not
    retried: waiting five minutes will not fix them, and the message should reach the user at once."""
    caught = errors or PERMANENT_ERRORS
    try:
        yield
    except caught as error:
        raise dg.Failure(description=f"{type(error).__name__}: {error}", allow_retries=False) from error
