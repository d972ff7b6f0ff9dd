"""Replay of the UCI "default of credit card clients" CSV as daily batches."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pandas as pd

from platform_assets.ml import schema
from platform_assets.ml.features import RawSchemaError, coerce_raw_frame

# Knuth's multiplicative hash spreads consecutive IDs evenly and deterministically over the days.
_GOLDEN = 2654435761


def read_uci_csv(data: bytes, source: str) -> pd.DataFrame:
    """Parse and type-check the CSV; errors name ``source`` and the column."""
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RawSchemaError(f"{source}: unreadable CSV ({error})") from error
    return coerce_raw_frame(frame, source)


def replay_day(ids: pd.Series, days: int) -> np.ndarray:
    """The replay day (0..days-1) of each client ID: the same file always gives the same batches."""
    codes: npt.NDArray[np.uint64] = ids.to_numpy(dtype="uint64")  # pandas is untyped to mypy (no stubs)
    return ((codes * np.uint64(_GOLDEN)) % np.uint64(2**32) % np.uint64(days)).astype("int64")


def replay_partition(frame: pd.DataFrame, day_index: int, days: int) -> pd.DataFrame:
    """The rows of replay day ``day_index``, in ID order."""
    if not 0 <= day_index < days:
        raise ValueError(f"replay day {day_index} is outside the {days}-day replay window")
    batch = frame[replay_day(frame[schema.ID], days) == day_index]
    return batch.sort_values(schema.ID).reset_index(drop=True)
