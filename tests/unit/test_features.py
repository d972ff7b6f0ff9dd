"""Raw records -> validated rows -> (months x channels) tensors: the model's one definition of inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from raw_rows import raw_frame, valid_row

from platform_assets.ml import features, schema
from platform_assets.ml.features import CHANNELS, RawSchemaError

DELAY = CHANNELS.index("delay")
UTILISATION = CHANNELS.index("utilisation")
COVERAGE = CHANNELS.index("payment_coverage")
PAID_IN_FULL = CHANNELS.index("paid_in_full")
NO_CONSUMPTION = CHANNELS.index("no_consumption")
REVOLVING = CHANNELS.index("revolving")


# --- coerce_raw_frame -------------------------------------------------------------------------


def test_coerce_types_whole_numbers_as_int64() -> None:
    frame = pd.DataFrame([valid_row()]).astype("float64")
    frame["AGE"] = frame["AGE"].astype(str)  # "30.0" as text still is a whole number
    typed = features.coerce_raw_frame(frame, "upload.csv")
    assert list(typed.columns) == list(schema.RAW_COLUMNS)
    assert all(dtype == np.dtype("int64") for dtype in typed.dtypes)
    assert typed.loc[0, "AGE"] == 30


def test_coerce_missing_column_names_source_and_column() -> None:
    frame = pd.DataFrame([valid_row()]).drop(columns=["AGE"])
    with pytest.raises(RawSchemaError, match="upload.csv") as error:
        features.coerce_raw_frame(frame, "upload.csv")
    assert "AGE" in str(error.value)


def test_coerce_target_is_optional_when_not_required() -> None:
    frame = pd.DataFrame([valid_row()]).drop(columns=[schema.TARGET])
    typed = features.coerce_raw_frame(frame, "request", require_target=False)
    assert schema.TARGET not in typed.columns
    with pytest.raises(RawSchemaError, match=schema.TARGET):
        features.coerce_raw_frame(frame, "request")


@pytest.mark.parametrize("bad", ["abc", 1.5, np.nan, np.inf], ids=["text", "fraction", "nan", "inf"])
def test_coerce_non_integer_value_names_source_and_column(bad: object) -> None:
    frame = pd.DataFrame([valid_row(), valid_row(ID=2)]).astype("object")
    frame.loc[1, "BILL_AMT3"] = bad
    with pytest.raises(RawSchemaError, match="upload.csv") as error:
        features.coerce_raw_frame(frame, "upload.csv")
    message = str(error.value)
    assert "'BILL_AMT3'" in message
    assert "row 1" in message


@pytest.mark.parametrize("huge", [1e20, "99999999999999999999", -1e19], ids=["float", "text", "negative"])
def test_coerce_refuses_whole_numbers_beyond_int64(huge: object) -> None:
    """A corrupt amount must not wrap silently: today 1e20 becomes -9223372036854775808, which the
    range rules then accept as a credit balance (negative BILL_AMT is valid)."""
    frame = pd.DataFrame([valid_row()]).astype("object")
    frame.loc[0, "BILL_AMT1"] = huge
    with pytest.raises(RawSchemaError, match=r"upload.csv.*'BILL_AMT1'"):
        features.coerce_raw_frame(frame, "upload.csv")


def test_coerce_empty_frame_names_source() -> None:
    frame = pd.DataFrame(columns=list(schema.RAW_COLUMNS))
    with pytest.raises(RawSchemaError, match=r"upload.csv: no rows"):
        features.coerce_raw_frame(frame, "upload.csv")


def test_raw_schema_error_is_a_value_error() -> None:
    # Callers that catch ValueError (Dagster checks, the service) must also catch schema errors.
    with pytest.raises(ValueError):
        features.coerce_raw_frame(pd.DataFrame(), "nothing")


# --- quarantine_reasons ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ({"LIMIT_BAL": -10_000}, "LIMIT_BAL"),
        ({"LIMIT_BAL": 0}, "LIMIT_BAL"),
        ({"AGE": 17}, "AGE"),
        ({"AGE": 101}, "AGE"),
        ({"PAY_0": 10}, "PAY_0"),
        ({"PAY_6": -3}, "PAY_6"),
        ({"SEX": 3}, "SEX"),
        ({"EDUCATION": 7}, "EDUCATION"),
        ({"MARRIAGE": 4}, "MARRIAGE"),
        ({"PAY_AMT4": -1}, "PAY_AMT4"),
        ({schema.TARGET: 2}, schema.TARGET),
    ],
)
def test_quarantine_flags_out_of_range_values(overrides: dict[str, int], mentions: str) -> None:
    frame = raw_frame(valid_row(ID=1), valid_row(ID=2, **overrides), valid_row(ID=3))
    reasons = features.quarantine_reasons(frame)
    assert reasons.iloc[0] is None and reasons.iloc[2] is None
    assert isinstance(reasons.iloc[1], str) and mentions in reasons.iloc[1]


@pytest.mark.parametrize(
    "overrides",
    [
        {"BILL_AMT1": -5_000, "BILL_AMT6": -1},  # credit balances are real and valid
        {"AGE": 18},
        {"AGE": 100},
        {"EDUCATION": 0, "MARRIAGE": 0},  # undocumented but real codes
        {"EDUCATION": 6},
        {"PAY_0": -2, "PAY_2": 9},
    ],
)
def test_quirks_of_the_real_data_stay_valid(overrides: dict[str, int]) -> None:
    reasons = features.quarantine_reasons(raw_frame(valid_row(**overrides)))
    assert reasons.iloc[0] is None


def test_quarantine_reports_the_first_broken_rule() -> None:
    reasons = features.quarantine_reasons(raw_frame(valid_row(LIMIT_BAL=-1, AGE=17)))
    assert "LIMIT_BAL" in reasons.iloc[0]


def test_quarantine_works_on_a_non_default_index() -> None:
    frame = raw_frame(valid_row(ID=1), valid_row(ID=2, SEX=9))
    frame.index = [10, 5]
    reasons = features.quarantine_reasons(frame)
    assert reasons.loc[10] is None
    assert "SEX" in reasons.loc[5]


# --- featurize_rows / build_features -------------------------------------------------------------


def test_featurize_keeps_every_row_and_empties_quarantined_ones() -> None:
    frame = raw_frame(valid_row(ID=1), valid_row(ID=2, AGE=17), valid_row(ID=3))
    frame.index = [7, 8, 9]
    out = features.featurize_rows(frame)
    assert len(out) == len(frame)
    assert out[schema.ID].tolist() == [1, 2, 3]
    assert out[features.REASON].isna().tolist() == [True, False, True]
    assert out.loc[1, features.HISTORY] == [] and out.loc[1, features.STATIC] == []
    for row in (0, 2):
        assert len(out.loc[row, features.HISTORY]) == schema.N_MONTHS * len(CHANNELS)
        assert len(out.loc[row, features.STATIC]) == len(features.STATIC_FEATURES)


def test_featurize_with_every_row_quarantined() -> None:
    out = features.featurize_rows(raw_frame(valid_row(SEX=0), valid_row(ID=2, AGE=5)))
    assert out[features.REASON].notna().all()
    assert out[features.HISTORY].tolist() == [[], []]


def test_months_run_oldest_to_newest() -> None:
    frame = raw_frame(valid_row(PAY_6=2))  # PAY_6 is the oldest month (April in the UCI data)
    tensor = features.build_features(frame).tensor
    assert tensor.shape == (1, schema.N_MONTHS, len(CHANNELS))
    assert tensor[0, 0, DELAY] == pytest.approx(2 / 9)
    assert tensor[0, 5, DELAY] == 0.0
    np.testing.assert_array_equal(tensor[0, 1:, DELAY], 0.0)
    # The flattened history in the tensor table is row-major by month: the same value comes first.
    history = features.featurize_rows(frame).loc[0, features.HISTORY]
    assert history[DELAY] == pytest.approx(2 / 9)
    assert history[5 * len(CHANNELS) + DELAY] == 0.0


def test_repayment_status_channels() -> None:
    frame = raw_frame(valid_row(PAY_0=-1, PAY_2=-2, PAY_3=0, PAY_4=9, PAY_6=3))
    tensor = features.build_features(frame).tensor[0]
    # Newest (PAY_0) is month index 5, PAY_4 is month index 2.
    assert tensor[5, PAID_IN_FULL] == 1.0 and tensor[5, DELAY] == 0.0
    assert tensor[4, NO_CONSUMPTION] == 1.0 and tensor[4, PAID_IN_FULL] == 0.0
    assert tensor[3, REVOLVING] == 1.0
    assert tensor[2, DELAY] == pytest.approx(1.0)
    assert tensor[0, DELAY] == pytest.approx(3 / 9)


def test_utilisation_is_bill_over_limit_clipped() -> None:
    frame = raw_frame(valid_row(LIMIT_BAL=10_000, BILL_AMT1=5_000, BILL_AMT2=30_000, BILL_AMT3=-20_000))
    batch = features.build_features(frame)
    utilisation = batch.tensor[0, :, UTILISATION]
    assert utilisation[5] == pytest.approx(0.5)  # BILL_AMT1, newest
    assert utilisation[4] == pytest.approx(2.0)  # 3.0 clipped
    assert utilisation[3] == pytest.approx(-1.0)  # -2.0 clipped
    assert utilisation[0] == pytest.approx(0.1)  # BILL_AMT6 = 1000
    latest = features.STATIC_FEATURES.index("latest_utilisation")
    assert batch.static[0, latest] == pytest.approx(0.5)


def test_payment_settles_the_previous_months_bill() -> None:
    # PAY_AMT1 (September) settles BILL_AMT2 (August's statement).
    frame = raw_frame(valid_row(BILL_AMT1=100_000, BILL_AMT2=1_000, PAY_AMT1=500))
    coverage = features.build_features(frame).tensor[0, :, COVERAGE]
    assert coverage[5] == pytest.approx(0.5 / 2)
    # Oldest month: compared with its own bill (PAY_AMT6 100 / BILL_AMT6 1000).
    assert coverage[0] == pytest.approx(0.1 / 2)


def test_static_features_describe_the_history() -> None:
    frame = raw_frame(valid_row(PAY_0=2, PAY_3=5))
    static = features.build_features(frame).static[0]
    named = dict(zip(features.STATIC_FEATURES, static, strict=True))
    assert named["share_months_delayed"] == pytest.approx(2 / 6)
    assert named["worst_delay"] == pytest.approx(5 / 9)
    assert named["log_limit"] == pytest.approx(np.log1p(10_000) / np.log1p(1e6))


def test_include_protected_adds_four_static_features() -> None:
    frame = raw_frame(valid_row(SEX=2, AGE=100, MARRIAGE=1, EDUCATION=1), valid_row(ID=2, SEX=1, AGE=18))
    plain = features.build_features(frame)
    protected = features.build_features(frame, include_protected=True)
    assert plain.static.shape == (2, 4)
    assert protected.static.shape == (2, 4 + len(features.PROTECTED_FEATURES))
    np.testing.assert_array_equal(protected.static[:, :4], plain.static)
    named = dict(zip(features.PROTECTED_FEATURES, protected.static[0, 4:], strict=True))
    assert named == pytest.approx({"sex_female": 1.0, "age_scaled": 1.0, "married": 1.0, "education_graduate": 1.0})
    assert protected.static[1, 4 + features.PROTECTED_FEATURES.index("age_scaled")] == pytest.approx(0.0)
    rows = features.featurize_rows(frame, include_protected=True)
    assert len(rows.loc[0, features.STATIC]) == 8
    assert features.feature_spec(include_protected=True)["static"] == [
        *features.STATIC_FEATURES,
        *features.PROTECTED_FEATURES,
    ]


def test_batch_from_rows_rebuilds_the_batch() -> None:
    frame = raw_frame(valid_row(ID=1, PAY_6=2), valid_row(ID=2, BILL_AMT1=7_000))
    rows = features.featurize_rows(frame)
    rebuilt = features.batch_from_rows(rows)
    direct = features.build_features(frame)
    np.testing.assert_array_equal(rebuilt.tensor, direct.tensor)
    np.testing.assert_array_equal(rebuilt.static, direct.static)


def test_real_uci_file_has_no_quarantined_rows_and_finite_tensors(uci_frame: pd.DataFrame) -> None:
    out = features.featurize_rows(uci_frame)
    assert len(out) == 30_000
    assert out[features.REASON].isna().all(), out[features.REASON].value_counts().to_dict()
    batch = features.build_features(uci_frame)
    assert batch.tensor.shape == (30_000, schema.N_MONTHS, len(CHANNELS))
    assert np.isfinite(batch.tensor).all()
    assert np.isfinite(batch.static).all()
    # Every channel is dimensionless and roughly in [0, 1] (utilisation may reach -1..2).
    assert batch.tensor.min() >= -1.0 and batch.tensor.max() <= 2.0


# --- featurize_matrix: the service's path -----------------------------------------------------


@pytest.mark.parametrize("include_protected", [False, True])
def test_featurize_matrix_is_featurize_on_arrays(include_protected: bool) -> None:
    rows = [valid_row(ID=i, PAY_0=(i % 12) - 2, BILL_AMT1=1000 * i - 3000, PAY_AMT2=37 * i) for i in range(12)]
    rows[3]["LIMIT_BAL"] = 0
    rows[5]["SEX"] = 3
    rows[7]["PAY_AMT6"] = -1
    frame = raw_frame(*rows)
    columns = [c for c in reversed(frame.columns) if c != schema.TARGET]  # any column order
    expected = features.featurize(frame, include_protected=include_protected)
    got = features.featurize_matrix(frame[columns].to_numpy("float64"), columns, include_protected=include_protected)
    assert got.reasons.tolist() == expected.reasons.tolist()
    assert got.valid.tolist() == expected.valid.tolist() and got.valid.sum() == 9
    assert np.array_equal(got.batch.tensor, expected.batch.tensor)
    assert np.array_equal(got.batch.static, expected.batch.static)
    with pytest.raises(ValueError, match="matrix"):
        features.featurize_matrix(np.zeros((2, 3)), columns)


# --- CoalitionFeatures: the explainer's path --------------------------------------------------


def coalition_rows(rows: np.ndarray, reference: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The coalition rows themselves: what CoalitionFeatures must featurize without building."""
    return np.where(keep[None, :, :], rows[:, None, :], reference[None, None, :]).reshape(-1, rows.shape[1])


def random_valid_rows(generator: np.random.Generator, n: int, columns: list[str]) -> np.ndarray:
    """Valid raw rows over the whole ranges the features clip and branch on (delays -2..9, negative and zero
    bills, zero payments, small limits), in ``columns`` order."""
    values = {
        "LIMIT_BAL": generator.choice([1, 500, 10_000, 200_000, 1_000_000], n),
        "SEX": generator.integers(1, 3, n),
        "EDUCATION": generator.integers(0, 7, n),
        "MARRIAGE": generator.integers(0, 4, n),
        "AGE": generator.integers(schema.AGE_RANGE[0], schema.AGE_RANGE[1] + 1, n),
    }
    for name in schema.PAY_COLUMNS:
        values[name] = generator.integers(-2, 10, n)
    for name in schema.BILL_COLUMNS:
        values[name] = generator.choice([-5_000, 0, 1, 3_000, 150_000, 2_500_000], n)
    for name in schema.PAY_AMT_COLUMNS:
        values[name] = generator.choice([0, 1, 2_000, 90_000, 3_000_000], n)
    return np.stack([np.asarray(values[c], dtype="float64") for c in columns], axis=1)


@pytest.mark.parametrize("include_protected", [False, True])
def test_coalition_features_are_featurize_matrix_on_the_coalition_rows_bit_for_bit(include_protected: bool) -> None:
    generator = np.random.default_rng(7)
    columns = [c for c in reversed(schema.RAW_COLUMNS) if c not in (schema.TARGET, "ID")]  # any column order
    rows = random_valid_rows(generator, 40, columns)
    reference = random_valid_rows(generator, 1, columns)[0]
    # Any masks: per field, not per group (the months of one kind apart), protected fields too, all and none.
    keep = generator.random((200, len(columns))) < 0.5
    keep[0], keep[1] = False, True
    plan = features.CoalitionFeatures(keep, columns, include_protected=include_protected)
    got = plan(rows, reference)
    expected = features.featurize_matrix(
        coalition_rows(rows, reference, keep), columns, include_protected=include_protected
    )
    assert expected.valid.all()
    assert got.tensor.shape == (40 * 200, schema.N_MONTHS, len(CHANNELS)) and got.tensor.dtype == np.float32
    assert np.array_equal(got.tensor, expected.batch.tensor)
    assert np.array_equal(got.static, expected.batch.static) and got.static.dtype == np.float32
    empty = plan(rows[:0], reference)
    assert empty.tensor.shape == (0, schema.N_MONTHS, len(CHANNELS)) and len(empty.static) == 0


def test_coalition_features_refuse_an_invalid_row_or_reference_by_name() -> None:
    columns = [c for c in schema.RAW_COLUMNS if c not in (schema.TARGET, "ID")]
    rows = random_valid_rows(np.random.default_rng(1), 3, columns)
    keep = np.zeros((2, len(columns)), dtype=bool)
    keep[1, columns.index("PAY_0")] = True
    keep[:, columns.index("AGE")] = True  # every coalition keeps the row's AGE: the reference's is never read
    plan = features.CoalitionFeatures(keep, columns)
    reference = rows[0].copy()
    reference[columns.index("AGE")] = 0  # not a valid age, but never used
    assert len(plan(rows, reference)) == 6
    bad_row = rows.copy()
    bad_row[2, columns.index("PAY_3")] = 11
    with pytest.raises(ValueError, match=r"row 2 is not a valid application: PAY_3 not in -2\.\.9"):
        plan(bad_row, reference)
    reference[columns.index("LIMIT_BAL")] = 0
    with pytest.raises(ValueError, match="the reference is not a valid application: LIMIT_BAL must be positive"):
        plan(rows, reference)
    with pytest.raises(ValueError, match="keep must be"):
        features.CoalitionFeatures(keep[:, :3], columns)
