"""Hand-made raw records for the unit tests."""

from __future__ import annotations

import pandas as pd

from platform_assets.ml import schema


def valid_row(**overrides: int) -> dict[str, int]:
    """One raw record that passes every range rule; ``overrides`` replace single columns."""
    row: dict[str, int] = {
        schema.ID: 1,
        "LIMIT_BAL": 10_000,
        "SEX": 1,
        "EDUCATION": 1,
        "MARRIAGE": 1,
        "AGE": 30,
        schema.TARGET: 0,
    }
    row.update({c: 0 for c in schema.PAY_COLUMNS})
    row.update({c: 1_000 for c in schema.BILL_COLUMNS})
    row.update({c: 100 for c in schema.PAY_AMT_COLUMNS})
    row.update(overrides)
    return row


def raw_frame(*rows: dict[str, int]) -> pd.DataFrame:
    """A typed raw frame (columns in schema order, int64) from row dicts."""
    return pd.DataFrame(list(rows))[list(schema.RAW_COLUMNS)].astype("int64")
