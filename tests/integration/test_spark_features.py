"""Spark computes exactly what the one row function computes: no training/serving skew."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from platform_assets.ml import features, schema
from platform_assets.ml.spark_features import featurize_on_spark
from platform_assets.ml.uci import read_uci_csv

pytestmark = pytest.mark.spark


def with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.head(4).copy()
    bad[schema.ID] = bad[schema.ID] + 10_000_000
    bad.loc[bad.index[0], "LIMIT_BAL"] = -5
    bad.loc[bad.index[1], "AGE"] = 130
    bad.loc[bad.index[2], "PAY_0"] = 11
    bad.loc[bad.index[3], "EDUCATION"] = 9
    return pd.concat([frame, bad], ignore_index=True)


def test_spark_output_equals_the_row_function(spark: Any, uci_csv: Path) -> None:
    raw = with_bad_rows(read_uci_csv(uci_csv.read_bytes(), str(uci_csv)).sample(3000, random_state=1))
    on_spark = featurize_on_spark(spark, raw)
    direct = features.featurize_rows(raw).sort_values(schema.ID).reset_index(drop=True)

    assert len(on_spark) == len(raw) == len(direct)
    pd.testing.assert_frame_equal(
        on_spark[list(schema.RAW_COLUMNS)], direct[list(schema.RAW_COLUMNS)], check_dtype=False
    )
    assert on_spark[features.REASON].tolist() == direct[features.REASON].tolist()
    assert on_spark[features.REASON].notna().sum() == 4
    # Spark carries float32: compare at float32 precision.
    for column in (features.HISTORY, features.STATIC):
        for spark_value, direct_value in zip(on_spark[column], direct[column], strict=True):
            np.testing.assert_array_equal(np.float32(spark_value), np.float32(direct_value))


def test_protected_attributes_can_be_included_on_spark(spark: Any, uci_csv: Path) -> None:
    raw = read_uci_csv(uci_csv.read_bytes(), str(uci_csv)).head(200)
    out = featurize_on_spark(spark, raw, include_protected=True)
    widths = {len(v) for v in out[features.STATIC]}
    assert widths == {len(features.STATIC_FEATURES) + len(features.PROTECTED_FEATURES)}
