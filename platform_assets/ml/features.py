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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
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


_MONTH_GROUPS: Final = (schema.PAY_COLUMNS, schema.BILL_COLUMNS, schema.PAY_AMT_COLUMNS)


class _Columns:
    """The raw columns as one float64 matrix, read by name: one conversion instead of one pandas lookup
    per column (which dominated a single request's cost). Exact for whole numbers below 2**53."""

    def __init__(self, values: np.ndarray, names: Sequence[str]):
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(f"expected an (n, {len(names)}) matrix for columns {list(names)}, got {values.shape}")
        self.values = np.asarray(values, dtype="float64")
        self.position = {name: i for i, name in enumerate(names)}
        self._month_index: np.ndarray | None = None

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> _Columns:
        return cls(frame.to_numpy(dtype="float64"), list(frame.columns))

    def __len__(self) -> int:
        return len(self.values)

    def __contains__(self, name: str) -> bool:
        return name in self.position

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, self.position[name]]

    def block(self, names: tuple[str, ...]) -> np.ndarray:
        """(n, len(names)) array of ``names``, in that order."""
        return self.values[:, [self.position[n] for n in names]]

    def month_index(self) -> np.ndarray:
        """Positions of the PAY, BILL_AMT and PAY_AMT columns, each group ordered oldest -> newest (the
        schema names them most recent first)."""
        if self._month_index is None:
            names = [c for group in _MONTH_GROUPS for c in reversed(group)]
            self._month_index = np.asarray([self.position[c] for c in names])
        return self._month_index

    def month_block(self, values: np.ndarray) -> np.ndarray:
        """(n, 3, 6) of ``values``' PAY, BILL_AMT and PAY_AMT columns, each ordered oldest -> newest:
        one gather for the 18 columns."""
        return values[:, self.month_index()].reshape(len(values), len(_MONTH_GROUPS), schema.N_MONTHS)


def _outside(values: np.ndarray, codes: frozenset[int]) -> np.ndarray:
    """Mask of values not in ``codes``; a contiguous code set is two comparisons (values are whole numbers)."""
    low, high = min(codes), max(codes)
    if high - low + 1 == len(codes):
        return (values < low) | (values > high)
    return ~np.isin(values, list(codes))


_PAY_RULES: Final = tuple(f"{c} not in -2..9" for c in schema.PAY_COLUMNS)
_PAY_AMT_RULES: Final = tuple(f"{c} is negative" for c in schema.PAY_AMT_COLUMNS)


def _range_rules(columns: _Columns) -> tuple[tuple[str, ...], np.ndarray]:
    """The rules' reasons, in the order they are reported, and the (n, rules) mask of violations.

    Plain numpy over whole blocks of columns: the service runs this for every request, and per-column
    overhead (pandas' first, then numpy's per call), not the arithmetic, dominated a single row's cost.
    """
    col = columns.__getitem__
    age = col("AGE")
    reasons: tuple[str, ...] = (
        "LIMIT_BAL must be positive",
        f"AGE outside {schema.AGE_RANGE[0]}..{schema.AGE_RANGE[1]}",
        "SEX not in {1, 2}",
        "EDUCATION not in 0..6",
        "MARRIAGE not in 0..3",
    )
    masks = [
        col("LIMIT_BAL") <= 0,
        (age < schema.AGE_RANGE[0]) | (age > schema.AGE_RANGE[1]),
        _outside(col("SEX"), schema.SEX_CODES),
        _outside(col("EDUCATION"), schema.EDUCATION_CODES),
        _outside(col("MARRIAGE"), schema.MARRIAGE_CODES),
    ]
    pay = columns.block(schema.PAY_COLUMNS)
    blocks = [np.stack(masks, axis=1), (pay < -2) | (pay > 9), columns.block(schema.PAY_AMT_COLUMNS) < 0]
    reasons += _PAY_RULES + _PAY_AMT_RULES
    if schema.TARGET in columns:
        blocks.append(_outside(col(schema.TARGET), schema.TARGET_CODES)[:, None])
        reasons += (f"{schema.TARGET!r} not in {{0, 1}}",)
    return reasons, np.concatenate(blocks, axis=1)


def quarantine_reasons(frame: pd.DataFrame) -> pd.Series:
    """For each row of a typed raw frame, the first rule it breaks, or ``None`` when it is valid.

    Negative BILL_AMT is a real quirk of the data (credit balances) and stays valid.
    """
    return pd.Series(_reasons(_Columns.of_frame(frame)), index=frame.index, dtype="object")


def _reasons(columns: _Columns) -> np.ndarray:
    """Per row: the first rule it breaks (in ``_range_rules`` order), or None."""
    reasons = np.full(len(columns), None, dtype=object)
    names, violated = _range_rules(columns)
    bad = violated.any(axis=1)
    if bad.any():
        reasons[bad] = np.asarray(names, dtype=object)[violated[bad].argmax(axis=1)]
    return reasons


def build_features(frame: pd.DataFrame, *, include_protected: bool = False) -> FeatureBatch:
    """Turn validated raw rows into model inputs (see the module docstring for the scaling)."""
    return _features(_Columns.of_frame(frame), slice(None), include_protected)


def _clip(x: npt.NDArray[np.float64], low: float, high: float) -> npt.NDArray[np.float64]:
    # np.clip's dispatch costs several times the arithmetic on a request's few values.
    return np.minimum(np.maximum(x, low), high)


def _features(columns: _Columns, rows: np.ndarray | slice, include_protected: bool) -> FeatureBatch:
    # ``CoalitionFeatures`` computes the same cells from their inputs' variants: change both together
    # (tests/unit/test_features.py compares them bit for bit).
    values = columns.values if isinstance(rows, slice) and rows == slice(None) else columns.values[rows]
    n = len(values)
    months = columns.month_block(values)  # (n, 3, 6): PAY, BILL_AMT, PAY_AMT, oldest -> newest
    pay, bill, paid = months[:, 0], months[:, 1], months[:, 2]
    limit = values[:, columns.position["LIMIT_BAL"]][:, None]
    # Oldest month: no earlier statement in the record, so compare with its own bill.
    previous_bill = np.concatenate([bill[:, :1], bill[:, :-1]], axis=1)
    delay = _clip(pay, 0, 9)
    # Computed in float64, stored as float32 (the assignment casts).
    tensor = np.empty((n, schema.N_MONTHS, len(CHANNELS)), dtype="float32")
    tensor[..., 0] = delay / 9.0
    tensor[..., 1] = pay == -1
    tensor[..., 2] = pay == -2
    tensor[..., 3] = pay == 0
    tensor[..., 4] = _clip(bill / limit, -1.0, 2.0)
    tensor[..., 5] = _clip(paid / np.maximum(previous_bill, 1.0), 0.0, 2.0) / 2.0
    tensor[..., 6] = np.log1p(paid) / _LOG_SCALE
    tensor[..., 7] = _clip(paid / limit, 0.0, 1.0)
    static = np.empty((n, len(STATIC_FEATURES) + (len(PROTECTED_FEATURES) if include_protected else 0)), "float32")
    static[:, 0] = np.log1p(limit[:, 0]) / _LOG_SCALE
    static[:, 1] = (pay > 0).mean(axis=1)
    static[:, 2] = delay.max(axis=1) / 9.0
    static[:, 3] = tensor[:, -1, 4]  # latest utilisation: the same float32 value as the channel
    if include_protected:
        col = columns.position
        static[:, 4] = values[:, col["SEX"]] == 2
        static[:, 5] = (values[:, col["AGE"]] - 18.0) / 82.0
        static[:, 6] = values[:, col["MARRIAGE"]] == 1
        static[:, 7] = values[:, col["EDUCATION"]] == 1
    return FeatureBatch(tensor=tensor, static=static)


#: Month m's previous month along the tensor's month axis (the oldest month is its own, see the module docstring).
_PREVIOUS_MONTH: Final = np.maximum(np.arange(schema.N_MONTHS) - 1, 0)


class CoalitionFeatures:
    """The model inputs of coalition rows ``where(keep[c], row, reference)``, bit for bit what ``featurize_matrix``
    gives for them, without building them: ``CoalitionFeatures(keep, columns)(rows, reference)`` is the batch of
    the (n * C) coalitions, row i's coalition c at position i * C + c.

    Every cell of ``_features`` reads at most two raw values: a month's PAY; a month's BILL_AMT and LIMIT_BAL;
    a month's PAY_AMT and the previous month's BILL_AMT; a month's PAY_AMT and LIMIT_BAL; LIMIT_BAL; one
    protected field; the share of months delayed and the worst delay read the six months' PAY. In a coalition
    each raw value is the row's or the reference's, so every cell takes one of a few values computed from the
    row and the reference alone (its "variants": four for a cell of two fields, 64 for the six PAY months),
    with the same element-wise formulas on the same float64 inputs. The variants are computed per row (about
    270 numbers) and one gather, whose index depends on ``keep`` only and is built here once, lays them out
    as the coalitions' tensors and static vectors. ``_features`` and this class change together:
    ``tests/unit/test_features.py`` compares them bit for bit.
    """

    #: Offsets of the sections of a row's variant vector, and its length.
    _PAY, _UTILISATION, _COVERAGE, _LOG_PAYMENT, _TO_LIMIT, _LOG_LIMIT, _SHARE, _WORST, _PROTECTED, _SIZE = (
        0, 48, 72, 96, 108, 132, 134, 198, 262, 270
    )  # fmt: skip
    _PROTECTED_FIELDS: Final = ("SEX", "AGE", "MARRIAGE", "EDUCATION")  # PROTECTED_FEATURES' fields, in order

    def __init__(self, keep: np.ndarray, columns: Sequence[str], *, include_protected: bool = False) -> None:
        keep = np.asarray(keep, dtype=bool)
        if keep.ndim != 2 or keep.shape[1] != len(columns):
            raise ValueError(f"keep must be a (coalitions, {len(columns)}) mask, got {keep.shape}")
        self.keep, self.columns, self.include_protected = keep, tuple(columns), include_protected
        self._table = _Columns(np.zeros((0, len(columns))), columns)  # positions only
        c, month = len(keep), np.arange(schema.N_MONTHS)[None, :]
        bits = keep[:, self._table.month_index()].reshape(c, len(_MONTH_GROUPS), schema.N_MONTHS).astype(np.intp)
        pay, bill, paid = bits[:, 0], bits[:, 1], bits[:, 2]  # (C, 6): 1 = the row's value
        limit = keep[:, self._table.position["LIMIT_BAL"], None].astype(np.intp)  # (C, 1)
        tensor = np.empty((c, schema.N_MONTHS, len(CHANNELS)), dtype=np.intp)
        tensor[..., :4] = self._PAY + ((pay * schema.N_MONTHS + month) * 4)[..., None] + np.arange(4)
        tensor[..., 4] = self._UTILISATION + (bill * 2 + limit) * schema.N_MONTHS + month
        tensor[..., 5] = self._COVERAGE + (paid * 2 + bill[:, _PREVIOUS_MONTH]) * schema.N_MONTHS + month
        tensor[..., 6] = self._LOG_PAYMENT + paid * schema.N_MONTHS + month
        tensor[..., 7] = self._TO_LIMIT + (paid * 2 + limit) * schema.N_MONTHS + month
        pay_code = (pay << np.arange(schema.N_MONTHS)).sum(axis=1)  # which of the 64 PAY variants
        static = [self._LOG_LIMIT + limit[:, 0], self._SHARE + pay_code, self._WORST + pay_code, tensor[:, -1, 4]]
        if include_protected:
            for j, name in enumerate(self._PROTECTED_FIELDS):
                static.append(self._PROTECTED + 2 * j + keep[:, self._table.position[name]])
        self._tensor_index = tensor.reshape(c, -1)
        self._static_index = np.stack(static, axis=1)
        self._pay_mix = (np.arange(64)[:, None] >> np.arange(schema.N_MONTHS)[None, :]) & 1 == 1  # (64, 6)

    def __call__(self, rows: np.ndarray, reference: np.ndarray) -> FeatureBatch:
        """``rows`` (n, columns) and ``reference`` (columns,) must be valid applications (``featurize_matrix``'s
        rules; the reference in the fields some coalition takes from it): every rule reads one field, so then
        every coalition is valid too."""
        rows, c = np.asarray(rows, dtype="float64"), len(self.keep)
        if rows.ndim != 2 or rows.shape[1] != len(self.columns):
            raise ValueError(
                f"expected (n, {len(self.columns)}) rows in columns {list(self.columns)}, got {rows.shape}"
            )
        n = len(rows)
        if n == 0:
            return _features(_Columns(rows, self.columns), slice(None), self.include_protected)
        # A field every coalition keeps never takes the reference's value: the first row's stands in for it.
        reference = np.where(self.keep.all(axis=0), rows[0], np.asarray(reference, dtype="float64"))
        table = _Columns(np.vstack([rows, reference[None, :]]), self.columns)
        reasons = _reasons(table)
        if (bad := np.flatnonzero(np.not_equal(reasons, _NO_REASON))).size:
            which = "the reference" if bad[0] == n else f"row {bad[0]}"
            raise ValueError(f"{which} is not a valid application: {reasons[bad[0]]}")
        both = np.empty((n, 2, len(self.columns)), dtype="float64")  # [reference's, row's]: index = keep bit
        both[:, 0], both[:, 1] = reference, rows
        months = both[:, :, table.month_index()].reshape(n, 2, len(_MONTH_GROUPS), schema.N_MONTHS)
        pay, bill, paid = months[:, :, 0], months[:, :, 1], months[:, :, 2]  # (n, 2, 6)
        limit = both[:, :, table.position["LIMIT_BAL"]]  # (n, 2)
        per_limit = limit[:, None, :, None]  # (n, 1, 2, 1): (value, limit) pairs on axes 1 and 2

        variants = np.empty((n, self._SIZE), dtype="float32")  # float64 formulas, stored as float32 as _features
        delay = _clip(pay, 0, 9)
        by_pay = variants[:, self._PAY : self._UTILISATION].reshape(n, 2, schema.N_MONTHS, 4)
        by_pay[..., 0] = delay / 9.0
        by_pay[..., 1] = pay == -1
        by_pay[..., 2] = pay == -2
        by_pay[..., 3] = pay == 0
        variants[:, self._UTILISATION : self._COVERAGE] = _clip(bill[:, :, None, :] / per_limit, -1.0, 2.0).reshape(
            n, -1
        )
        previous_bill = np.maximum(bill[:, None, :, _PREVIOUS_MONTH], 1.0)  # (n, 1, 2, 6)
        coverage = _clip(paid[:, :, None, :] / previous_bill, 0.0, 2.0) / 2.0
        variants[:, self._COVERAGE : self._LOG_PAYMENT] = coverage.reshape(n, -1)
        variants[:, self._LOG_PAYMENT : self._TO_LIMIT] = (np.log1p(paid) / _LOG_SCALE).reshape(n, -1)
        variants[:, self._TO_LIMIT : self._LOG_LIMIT] = _clip(paid[:, :, None, :] / per_limit, 0.0, 1.0).reshape(n, -1)
        variants[:, self._LOG_LIMIT : self._SHARE] = np.log1p(limit) / _LOG_SCALE
        mixed = np.where(self._pay_mix, pay[:, 1:2], pay[:, 0:1])  # (n, 64, 6): every mix of the months' PAY
        variants[:, self._SHARE : self._WORST] = (mixed > 0).mean(axis=2)
        variants[:, self._WORST : self._PROTECTED] = _clip(mixed, 0, 9).max(axis=2) / 9.0
        if self.include_protected:  # one field each: _features' own values on the rows and the reference
            own = _features(table, slice(None), include_protected=True).static[:, len(STATIC_FEATURES) :]
            protected = variants[:, self._PROTECTED :].reshape(n, len(self._PROTECTED_FIELDS), 2)
            protected[:, :, 0], protected[:, :, 1] = own[-1], own[:-1]
        width = self._static_index.shape[1]
        return FeatureBatch(
            tensor=np.take(variants, self._tensor_index, axis=1).reshape(n * c, schema.N_MONTHS, len(CHANNELS)),
            static=np.take(variants, self._static_index, axis=1).reshape(n * c, width),
        )


#: Columns of the tensor table besides the raw ones: the reason a row was quarantined (null when
#: valid), and the flattened (months x channels) tensor and static vector (empty when quarantined).
REASON = "quarantine_reason"
HISTORY = "history"
STATIC = "static"


@dataclass(frozen=True)
class Featurized:
    """Validation and features of n raw rows: ``reasons`` (object array, None for valid rows), the
    ``valid`` mask, and the ``batch`` of model inputs for the valid rows, in row order."""

    reasons: np.ndarray
    valid: np.ndarray
    batch: FeatureBatch


def featurize(frame: pd.DataFrame, *, include_protected: bool = False) -> Featurized:
    """Validate and featurize typed raw rows: THE transform of training (through ``featurize_rows`` on
    Spark) and of serving (through ``featurize_matrix``, the same code on arrays)."""
    return _featurize(_Columns.of_frame(frame), include_protected)


def featurize_matrix(values: np.ndarray, columns: Sequence[str], *, include_protected: bool = False) -> Featurized:
    """``featurize`` for rows already held as an (n, len(columns)) numeric matrix (whole numbers): what
    the service builds straight from a request body, without a DataFrame."""
    return _featurize(_Columns(values, columns), include_protected)


#: ``None`` as a 0-d object array, what each reason is compared with: numpy's stubs accept no bare ``None``
#: there, and converting it once here rather than on every request is also a little faster.
_NO_REASON: Final = np.array(None, dtype=object)


def _featurize(columns: _Columns, include_protected: bool) -> Featurized:
    reasons = _reasons(columns)
    valid = np.equal(reasons, _NO_REASON)
    if valid.all():  # the usual case: no row selection (a copy of every column) needed
        return Featurized(reasons=reasons, valid=valid, batch=_features(columns, slice(None), include_protected))
    return Featurized(reasons=reasons, valid=valid, batch=_features(columns, valid, include_protected))


def featurize_rows(frame: pd.DataFrame, *, include_protected: bool = False) -> pd.DataFrame:
    """``featurize`` as a table that keeps every row (what Spark maps over the lake partitions).

    Returns ``frame`` with ``quarantine_reason`` (None for valid rows), ``history`` (a list of
    6 x channels floats, row-major by month) and ``static`` (a list of floats), both empty for
    quarantined rows.
    """
    out = frame.reset_index(drop=True)
    result = featurize(out, include_protected=include_protected)
    history: list[list[float]] = [[] for _ in range(len(out))]
    static: list[list[float]] = [[] for _ in range(len(out))]
    flat = result.batch.tensor.reshape(len(result.batch), schema.N_MONTHS * len(CHANNELS)).tolist()
    vectors = result.batch.static.tolist()
    for position, row in enumerate(result.valid.nonzero()[0]):
        history[row] = flat[position]
        static[row] = vectors[position]
    return out.assign(**{REASON: result.reasons, HISTORY: history, STATIC: static})


def batch_from_rows(rows: pd.DataFrame) -> FeatureBatch:
    """Rebuild a ``FeatureBatch`` from the ``history`` / ``static`` list columns of valid rows."""
    n = len(rows)
    tensor = np.asarray(rows[HISTORY].tolist(), dtype="float32").reshape(n, schema.N_MONTHS, len(CHANNELS))
    static = np.asarray(rows[STATIC].tolist(), dtype="float32").reshape(n, -1)
    return FeatureBatch(tensor=tensor, static=static)
