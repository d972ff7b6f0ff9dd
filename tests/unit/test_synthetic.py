"""The seeded synthetic generator: reproducible, UCI-shaped, valid and learnable."""

from __future__ import annotations

import hashlib
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from platform_assets.ml import features, schema, synthetic

DAY = date(2026, 10, 1)


def test_same_seed_and_day_give_identical_frames() -> None:
    first = synthetic.generate_partition(DAY, 500, seed=3)
    second = synthetic.generate_partition(DAY, 500, seed=3)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize(("day", "seed"), [(date(2026, 10, 2), 3), (DAY, 4)], ids=["other-day", "other-seed"])
def test_other_day_or_seed_gives_other_records(day: date, seed: int) -> None:
    reference = synthetic.generate_partition(DAY, 500, seed=3)
    other = synthetic.generate_partition(day, 500, seed=seed)
    values = [c for c in schema.RAW_COLUMNS if c != schema.ID]
    # Not just different IDs: the records themselves differ.
    assert not reference[values].equals(other[values])
    assert (reference["LIMIT_BAL"].to_numpy() != other["LIMIT_BAL"].to_numpy()).mean() > 0.5


def test_columns_and_dtypes_match_the_schema() -> None:
    frame = synthetic.generate_partition(DAY, 200, seed=1)
    assert list(frame.columns) == list(schema.RAW_COLUMNS)
    assert all(dtype == np.dtype("int64") for dtype in frame.dtypes), frame.dtypes.to_dict()
    assert len(frame) == 200


def test_code_sets_include_the_undocumented_codes(synthetic_sample: pd.DataFrame) -> None:
    education = set(synthetic_sample["EDUCATION"].unique())
    marriage = set(synthetic_sample["MARRIAGE"].unique())
    pay = set(np.unique(synthetic_sample[list(schema.PAY_COLUMNS)].to_numpy()))
    assert {0, 5, 6} <= education <= schema.EDUCATION_CODES
    assert 0 in marriage and marriage <= schema.MARRIAGE_CODES
    assert {-2, -1, 0} <= pay <= schema.PAY_CODES
    assert set(synthetic_sample["SEX"].unique()) == schema.SEX_CODES
    # Credit balances: the real data has negative bills, and so must the generator.
    assert (synthetic_sample[list(schema.BILL_COLUMNS)] < 0).any().any()


def test_default_rate_is_close_to_the_real_data(synthetic_sample: pd.DataFrame) -> None:
    assert len(synthetic_sample) >= 20_000
    rate = synthetic_sample[schema.TARGET].mean()
    assert 0.19 <= rate <= 0.25, rate
    assert set(synthetic_sample[schema.TARGET].unique()) == {0, 1}


def test_ids_are_unique_across_days(synthetic_sample: pd.DataFrame) -> None:
    assert synthetic_sample[schema.ID].is_unique
    # IDs encode the day: YYYYMMDD * 10**10 + row, 64-bit.
    first = synthetic.generate_partition(DAY, 3, seed=1)
    assert first[schema.ID].tolist() == [20261001_0000000001, 20261001_0000000002, 20261001_0000000003]
    assert first[schema.ID].dtype == np.dtype("int64")


def test_a_day_of_any_size_comes_in_bounded_chunks_with_day_unique_ids() -> None:
    chunks = list(synthetic.generate_chunks(DAY, 2_500, seed=1, chunk_rows=1_000))
    assert [len(c) for c in chunks] == [1_000, 1_000, 500]
    ids = pd.concat(chunks)[schema.ID]
    assert ids.tolist() == list(range(20261001_0000000001, 20261001_0000002501))
    # Chunk 0 is the one-frame generator's rows: small days did not change.
    pd.testing.assert_frame_equal(chunks[0], synthetic.generate_partition(DAY, 1_000, seed=1))
    # Later chunks are new draws, not copies of the first.
    assert not chunks[1]["LIMIT_BAL"].reset_index(drop=True).equals(chunks[0]["LIMIT_BAL"])
    # Any chunk alone (one Spark task each) is the streamed chunk.
    assert synthetic.chunk_count(2_500, chunk_rows=1_000) == 3
    pd.testing.assert_frame_equal(synthetic.generate_chunk(DAY, 2_500, 1, 2, chunk_rows=1_000), chunks[2])
    with pytest.raises(ValueError, match=r"chunk must be in \[0, 3\)"):
        synthetic.generate_chunk(DAY, 2_500, 1, 3, chunk_rows=1_000)


def _stream_digest(rows: int, seed: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    for chunk in synthetic.generate_chunks(DAY, rows, seed):
        digest.update(pd.util.hash_pandas_object(chunk, index=False).to_numpy().tobytes())
    return digest.hexdigest(), rows


@pytest.mark.slow
def test_a_million_rows_are_generated_deterministically() -> None:
    """1M rows, twice, streamed in chunks: same seed and day give the same rows, another seed does not."""
    first, second = _stream_digest(1_000_000, seed=3), _stream_digest(1_000_000, seed=3)
    assert first == second
    assert _stream_digest(1_000, seed=4) != _stream_digest(1_000, seed=3)


def test_no_generated_row_is_quarantined(synthetic_sample: pd.DataFrame) -> None:
    reasons = features.quarantine_reasons(synthetic_sample)
    assert reasons.isna().all(), reasons.value_counts().to_dict()


def test_signal_is_learnable_by_a_linear_model(synthetic_sample: pd.DataFrame) -> None:
    batch = features.build_features(synthetic_sample)
    x = np.concatenate([batch.tensor.reshape(len(batch), -1), batch.static], axis=1)
    y = synthetic_sample[schema.TARGET].to_numpy()
    cut = int(len(y) * 0.75)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000))
    model.fit(x[:cut], y[:cut])
    auc = roc_auc_score(y[cut:], model.predict_proba(x[cut:])[:, 1])
    assert auc > 0.7, auc


@pytest.mark.parametrize("rows", [0, -5, 10**10])
def test_invalid_row_counts_raise(rows: int) -> None:
    with pytest.raises(ValueError, match="rows must"):
        synthetic.generate_partition(DAY, rows, seed=1)
