"""Raw credit records -> validated rows -> (months x channels) tensors and a static vector.

This module is the ONE definition of the model's inputs. Spark applies it to the lake partitions
(``credit_history_tensors``) and the Bento service applies it to live requests, so training and
serving cannot drift apart.

Scaling (all channels are dimensionless and roughly in [0, 1]; months run oldest -> newest along
axis 1 so that a convolution sees them in time order):

====  ======================  ==============================================================
idx   channel                 definition for month m
====  ======================  ==============================================================
0     ``delay``               ``clip(PAY_m, 0, 9) / 9`` (months of payment delay)
1     ``paid_in_full``        ``PAY_m == -1``
2     ``no_consumption``      ``PAY_m == -2``
3     ``revolving``           ``PAY_m == 0``
4     ``utilisation``         ``clip(BILL_AMT_m / LIMIT_BAL, -1, 2)``
5     ``payment_coverage``    ``clip(PAY_AMT_m / max(previous month's bill, 1), 0, 2) / 2``
6     ``log_payment``         ``log1p(PAY_AMT_m) / log1p(1e6)``
7     ``payment_to_limit``    ``clip(PAY_AMT_m / LIMIT_BAL, 0, 1)``
====  ======================  ==============================================================

The payment made in month m settles the statement of the month before it (UCI: PAY_AMT1, paid in
September, settles BILL_AMT2, August's bill); the oldest month has no earlier bill in the record
and is compared with its own.

Static vector: ``log1p(LIMIT_BAL) / log1p(1e6)``, share of months in delay, worst delay / 9, latest
utilisation. Protected attributes are not inputs unless ``include_protected`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from platform_assets.ml import schema

CHANNELS: Final = (
    "delay",
    "paid_in_full",
    "no_consumption",
    "revolving",
    "utilisation",
    "payment_coverage",
    "log_payment",
    "payment_to_limit",
)
STATIC_FEATURES: Final = ("log_limit", "share_months_delayed", "worst_delay", "latest_utilisation")
PROTECTED_FEATURES: Final = ("sex_female", "age_scaled", "married", "education_graduate")
#: Bumped whenever the transform changes; recorded with every model so serving can refuse a mismatch.
FEATURE_SPEC_VERSION: Final = "1"

_LOG_SCALE = float(np.log1p(1e6))


class RawSchemaError(ValueError):
    """A raw source does not have the UCI schema (a missing column or a non-integer value)."""


@dataclass(frozen=True)
class FeatureBatch:
    """Model inputs for n clients: ``tensor`` (n, 6, channels) and ``static`` (n, features), float32."""

    tensor: np.ndarray
    static: np.ndarray

    def __len__(self) -> int:
        return int(self.tensor.shape[0])


def feature_spec(*, include_protected: bool = False) -> dict[str, object]:
    """A JSON-able description of the inputs, stored with every model version."""
    static = list(STATIC_FEATURES) + (list(PROTECTED_FEATURES) if include_protected else [])
    return {
        "version": FEATURE_SPEC_VERSION,
        "months": schema.N_MONTHS,
        "month_order": "oldest_to_newest",
        "channels": list(CHANNELS),
        "static": static,
        "raw_columns": list(schema.FEATURE_COLUMNS),
        "include_protected": include_protected,
        "target": schema.TARGET,
    }


def coerce_raw_frame(frame: pd.DataFrame, source: str, *, require_target: bool = True) -> pd.DataFrame:
    """Check that ``frame`` has every raw column as whole numbers and return it typed as int64.

    Raises ``RawSchemaError`` naming ``source`` and the offending column; values are not range-checked
    here (that is ``quarantine_reasons``' job, so bad rows are kept and counted, not lost).
    """
    required = [c for c in schema.RAW_COLUMNS if require_target or c != schema.TARGET]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RawSchemaError(f"{source}: missing column(s) {missing}")
    if frame.empty:
        raise RawSchemaError(f"{source}: no rows")
    out = pd.DataFrame(index=frame.index)
    for column in required:
        values = pd.to_numeric(frame[column], errors="coerce")
        as_float = values.astype("float64")
        # Beyond int64 a cast would wrap silently into a plausible (even valid) value.
        bad = values.isna() | ~np.isfinite(as_float) | (values % 1 != 0) | (as_float.abs() >= 2.0**63)
        if bad.any():
            first = bad.to_numpy().nonzero()[0][0]
            raise RawSchemaError(
                f"{source}: column {column!r} must hold whole numbers; row {first} has "
                f"{frame[column].iloc[first]!r} ({int(bad.sum())} bad value(s) in all)"
            )
        out[column] = values.astype("int64")
    return out.reset_index(drop=True)


def _range_rules(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """(reason, violated mask) per rule, in the order reasons are reported."""
    rules: list[tuple[str, pd.Series]] = [
        ("LIMIT_BAL must be positive", frame["LIMIT_BAL"] <= 0),
        (
            f"AGE outside {schema.AGE_RANGE[0]}..{schema.AGE_RANGE[1]}",
            ~frame["AGE"].between(*schema.AGE_RANGE),
        ),
        ("SEX not in {1, 2}", ~frame["SEX"].isin(schema.SEX_CODES)),
        ("EDUCATION not in 0..6", ~frame["EDUCATION"].isin(schema.EDUCATION_CODES)),
        ("MARRIAGE not in 0..3", ~frame["MARRIAGE"].isin(schema.MARRIAGE_CODES)),
    ]
    rules += [(f"{c} not in -2..9", ~frame[c].isin(schema.PAY_CODES)) for c in schema.PAY_COLUMNS]
    rules += [(f"{c} is negative", frame[c] < 0) for c in schema.PAY_AMT_COLUMNS]
    if schema.TARGET in frame.columns:
        rules.append((f"{schema.TARGET!r} not in {{0, 1}}", ~frame[schema.TARGET].isin(schema.TARGET_CODES)))
    return rules


def quarantine_reasons(frame: pd.DataFrame) -> pd.Series:
    """For each row of a typed raw frame, the first rule it breaks, or ``None`` when it is valid.

    Negative BILL_AMT is a real quirk of the data (credit balances) and stays valid.
    """
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    for reason, violated in _range_rules(frame):
        reasons = reasons.mask(reasons.isna() & violated.to_numpy(), reason)
    return reasons


def _chronological(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """(n, 6) float64 array of ``columns`` (given most recent first) ordered oldest -> newest."""
    return frame[list(columns)].to_numpy(dtype="float64")[:, ::-1]


def build_features(frame: pd.DataFrame, *, include_protected: bool = False) -> FeatureBatch:
    """Turn validated raw rows into model inputs (see the module docstring for the scaling)."""
    limit = frame["LIMIT_BAL"].to_numpy(dtype="float64")[:, None]
    pay = _chronological(frame, schema.PAY_COLUMNS)
    bill = _chronological(frame, schema.BILL_COLUMNS)
    paid = _chronological(frame, schema.PAY_AMT_COLUMNS)
    # Oldest month: no earlier statement in the record, so compare with its own bill.
    previous_bill = np.concatenate([bill[:, :1], bill[:, :-1]], axis=1)
    channels = [
        np.clip(pay, 0, 9) / 9.0,
        (pay == -1).astype("float64"),
        (pay == -2).astype("float64"),
        (pay == 0).astype("float64"),
        np.clip(bill / limit, -1.0, 2.0),
        np.clip(paid / np.maximum(previous_bill, 1.0), 0.0, 2.0) / 2.0,
        np.log1p(paid) / _LOG_SCALE,
        np.clip(paid / limit, 0.0, 1.0),
    ]
    tensor = np.stack(channels, axis=-1).astype("float32")
    static_columns = [
        np.log1p(limit[:, 0]) / _LOG_SCALE,
        (pay > 0).mean(axis=1),
        np.clip(pay, 0, 9).max(axis=1) / 9.0,
        np.clip(bill[:, -1] / limit[:, 0], -1.0, 2.0),
    ]
    if include_protected:
        static_columns += [
            (frame["SEX"].to_numpy() == 2).astype("float64"),
            (frame["AGE"].to_numpy(dtype="float64") - 18.0) / 82.0,
            (frame["MARRIAGE"].to_numpy() == 1).astype("float64"),
            (frame["EDUCATION"].to_numpy() == 1).astype("float64"),
        ]
    static = np.stack(static_columns, axis=1).astype("float32")
    return FeatureBatch(tensor=tensor, static=static)


#: Columns of the tensor table besides the raw ones: the reason a row was quarantined (null when
#: valid), and the flattened (months x channels) tensor and static vector (empty when quarantined).
REASON = "quarantine_reason"
HISTORY = "history"
STATIC = "static"


def featurize_rows(frame: pd.DataFrame, *, include_protected: bool = False) -> pd.DataFrame:
    """Validate and featurize typed raw rows, keeping every row.

    Returns ``frame`` with ``quarantine_reason`` (None for valid rows), ``history`` (a list of
    6 x channels floats, row-major by month) and ``static`` (a list of floats). This is the function
    Spark maps over the lake partitions and the function the service applies to requests.
    """
    out = frame.reset_index(drop=True).copy()
    reasons = quarantine_reasons(out)
    valid = reasons.isna().to_numpy()
    history: list[list[float]] = [[] for _ in range(len(out))]
    static: list[list[float]] = [[] for _ in range(len(out))]
    if valid.any():
        batch = build_features(out[valid], include_protected=include_protected)
        flat = batch.tensor.reshape(len(batch), -1)
        for position, row in enumerate(valid.nonzero()[0]):
            history[row] = flat[position].tolist()
            static[row] = batch.static[position].tolist()
    out[REASON] = reasons.astype("object")
    out[HISTORY] = history
    out[STATIC] = static
    return out


def batch_from_rows(rows: pd.DataFrame) -> FeatureBatch:
    """Rebuild a ``FeatureBatch`` from the ``history`` / ``static`` list columns of valid rows."""
    n = len(rows)
    tensor = np.asarray(rows[HISTORY].tolist(), dtype="float32").reshape(n, schema.N_MONTHS, len(CHANNELS))
    static = np.asarray(rows[STATIC].tolist(), dtype="float32").reshape(n, -1)
    return FeatureBatch(tensor=tensor, static=static)
