"""Fixtures of the governance suite: small frames shaped like the tensor table's raw columns."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from platform_assets.ml import synthetic


@pytest.fixture(scope="session")
def synthetic_rows() -> pd.DataFrame:
    """4,000 synthetic raw rows over four days (one seed), the raw columns the drift report reads."""
    days = [date(2026, 10, 1) + timedelta(days=d) for d in range(4)]
    return pd.concat([synthetic.generate_partition(day, 1000, 11) for day in days], ignore_index=True)
