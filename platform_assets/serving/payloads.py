"""Request bodies -> typed columns, with 4xx errors that name the field and the row index.

Shape and types are checked here (known fields only, whole numbers within int64, no NaN/inf/strings/booleans);
value ranges are the feature code's job (``features.quarantine_reasons`` via ``featurize_rows``), so serving
and training reject exactly the same rows. ``schemas`` states the same rules for clients.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pydantic_core

from platform_assets.ml import schema

#: Columns every application must carry: the ID and the model's raw inputs.
REQUIRED = (schema.ID, *schema.FEATURE_COLUMNS)
#: Protected attributes: for monitoring only, optional. When absent, a valid placeholder lets the row
#: pass the feature validation; the placeholder is never logged and never reaches a model that does
#: not take protected inputs.
OPTIONAL = schema.PROTECTED_COLUMNS
#: Column order of ``Applications.matrix``.
MATRIX_COLUMNS = (*REQUIRED, *OPTIONAL)
#: The fields an application may carry.
APPLICATION_FIELDS = frozenset(MATRIX_COLUMNS)
OUTCOME_FIELDS = frozenset({"prediction_id", "application_id", "defaulted"})
PLACEHOLDER = {"SEX": 1, "EDUCATION": 0, "MARRIAGE": 0, "AGE": 35}
#: The ``reasons`` request option: adverse-action reasons for declines only (the default), or for every row.
REASONS_OPTIONS = ("declines", "all")
#: Whole numbers are int64 (the inference log's and the feature code's type).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Longest ``prediction_id`` and ``model_version`` accepted (characters).
MAX_ID_CHARS = 64


class RequestError(Exception):
    """A request the service refuses: HTTP status, message and, where it applies, field and row."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, row: int | None = None, reason: str = "invalid"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.row = row
        self.reason = reason

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.row is not None:
            out["row"] = self.row
        return out


@dataclass
class Applications:
    """A validated batch: int64 columns (placeholders filled in), the same values as one float64
    ``matrix`` in ``MATRIX_COLUMNS`` order (what the feature code reads), and which protected values
    were sent."""

    columns: dict[str, np.ndarray]
    sent: dict[str, np.ndarray]
    ids: list[int]
    matrix: np.ndarray
    model_version: str | None = None
    #: Reasons for approvals too (``"reasons": "all"``), not only for declines.
    explain_all: bool = False

    def __len__(self) -> int:
        return len(self.ids)


def _describe(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("nan", "NaN")
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value: Any) -> int | None:
    """``value`` as an int if it is a whole number (int, or integral finite float); None otherwise."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def parse_json(body: bytes) -> Any:
    if not body:
        raise RequestError(400, "empty request body: send a JSON document", reason="malformed_json")
    try:
        # pydantic-core's parser (jiter): about twice as fast as the stdlib's; NaN/Infinity parse to
        # floats, which the type checks below then refuse with the row and field.
        return pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError as exc:
        raise RequestError(400, f"malformed JSON: {exc}", reason="malformed_json") from None


def _object(document: Any, allowed: set[str], expected: str) -> dict[str, Any]:
    """``document`` if it is a JSON object with no fields but ``allowed``."""
    if not isinstance(document, dict):
        raise RequestError(422, f"expected a JSON object {expected}, got {_describe(document)}")
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise RequestError(422, f"unknown field(s) {unknown}; expected {sorted(allowed)}", field=unknown[0])
    return document


def _items(document: Any, key: str, allowed: set[str]) -> tuple[list[Any], dict[str, Any]]:
    document = _object(document, allowed | {key}, f'{{"{key}": [...]}}')
    if key not in document:
        raise RequestError(422, f"missing field {key!r}", field=key)
    items = document[key]
    if not isinstance(items, list):
        raise RequestError(422, f"{key!r} must be a list, got {type(items).__name__}", field=key)
    return items, document


def _check_size(items: list[Any], key: str, max_items: int) -> None:
    if not items:
        raise RequestError(422, f"empty batch: {key!r} needs at least one item", field=key, reason="empty_batch")
    if len(items) > max_items:
        raise RequestError(
            413, f"batch of {len(items)} {key} exceeds the limit of {max_items}", field=key, reason="batch_too_large"
        )


def _column(rows: list[dict[str, Any]], name: str, required: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """An int64 column (and, for optional columns, the mask of rows that sent it)."""
    if required:
        try:
            values = [row[name] for row in rows]
        except KeyError:
            first = next(i for i, row in enumerate(rows) if name not in row)
            raise RequestError(422, f"row {first}: missing field {name!r}", field=name, row=first) from None
        mask = None
    else:
        values = [row.get(name) for row in rows]
        mask = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        values = [PLACEHOLDER[name] if v is None else v for v in values]
    if not all(type(v) is int for v in values):
        converted = []
        for i, value in enumerate(values):
            whole = _whole(value)
            if whole is None:
                raise RequestError(
                    422, f"row {i}: field {name!r} must be a whole number, got {_describe(value)}", field=name, row=i
                )
            converted.append(whole)
        values = converted
    try:
        return np.array(values, dtype=np.int64), mask
    except OverflowError:
        first = next(i for i, v in enumerate(values) if not INT64_MIN <= v <= INT64_MAX)
        raise RequestError(422, f"row {first}: field {name!r} is out of range", field=name, row=first) from None


_REQUIRED_GETTER = operator.itemgetter(*REQUIRED)


def _required_table(rows: list[dict[str, Any]]) -> np.ndarray | None:
    """(n, len(REQUIRED)) int64 when every row has every required field as an int; None otherwise."""
    try:
        table = list(map(_REQUIRED_GETTER, rows))
    except KeyError:
        return None
    if set(map(type, chain.from_iterable(table))) != {int}:
        return None
    try:
        return np.array(table, dtype=np.int64)
    except OverflowError:
        return None


def parse_predict(body: bytes, max_batch: int) -> Applications:
    """Validate the shape and types of a ``/predict`` body (ranges are checked by the feature code)."""
    items, document = _items(parse_json(body), "applications", {"model_version", "reasons"})
    _check_size(items, "applications", max_batch)
    if set(map(type, items)) != {dict}:
        i = next(i for i, row in enumerate(items) if not isinstance(row, dict))
        raise RequestError(422, f"row {i}: an application must be a JSON object", field="applications", row=i)
    if not set().union(*items) <= APPLICATION_FIELDS:  # one C-level pass over the keys: about 1 us per row
        i = next(i for i, row in enumerate(items) if not APPLICATION_FIELDS.issuperset(row))
        unknown = sorted(set(items[i]) - APPLICATION_FIELDS)
        raise RequestError(422, f"row {i}: unknown field {unknown[0]!r}", field=unknown[0], row=i)
    model_version = document.get("model_version")
    if model_version is not None and (not isinstance(model_version, str) or not 0 < len(model_version) <= MAX_ID_CHARS):
        raise RequestError(
            422,
            f"'model_version' must be a string of 1..{MAX_ID_CHARS} characters such as 'v3', "
            f"got {_describe(model_version)}",
            field="model_version",
        )
    reasons = document.get("reasons", REASONS_OPTIONS[0])
    if reasons not in REASONS_OPTIONS:
        raise RequestError(
            422, f"'reasons' must be one of {list(REASONS_OPTIONS)}, got {_describe(reasons)}", field="reasons"
        )
    columns: dict[str, np.ndarray] = {}
    sent: dict[str, np.ndarray] = {}
    table = _required_table(items)
    if table is not None:  # the fast path: every required field present and an int
        columns.update(zip(REQUIRED, table.T, strict=True))
    else:  # find and name the first offending row and field
        for name in REQUIRED:
            columns[name], _ = _column(items, name, required=True)
    ids = columns[schema.ID]
    if (ids < 0).any():
        first = int(np.flatnonzero(ids < 0)[0])
        raise RequestError(422, f"row {first}: field 'ID' must not be negative", field="ID", row=first)
    for name in OPTIONAL:
        columns[name], mask = _column(items, name, required=False)
        assert mask is not None
        sent[name] = mask
    matrix = np.empty((len(items), len(MATRIX_COLUMNS)), dtype="float64")
    if table is not None:
        matrix[:, : len(REQUIRED)] = table
    else:
        for position, name in enumerate(REQUIRED):
            matrix[:, position] = columns[name]
    for position, name in enumerate(OPTIONAL, start=len(REQUIRED)):
        matrix[:, position] = columns[name]
    return Applications(
        columns=columns,
        sent=sent,
        ids=ids.tolist(),
        matrix=matrix,
        model_version=model_version,
        explain_all=reasons == "all",
    )


def parse_feedback(body: bytes, max_items: int) -> list[dict[str, Any]]:
    """Validate a ``/feedback`` body: items with ``prediction_id`` and/or ``application_id``, ``defaulted`` 0/1."""
    items, _ = _items(parse_json(body), "outcomes", set())
    _check_size(items, "outcomes", max_items)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestError(422, f"row {i}: an outcome must be a JSON object", field="outcomes", row=i)
        unknown = sorted(set(item) - OUTCOME_FIELDS)
        if unknown:
            raise RequestError(422, f"row {i}: unknown field {unknown[0]!r}", field=unknown[0], row=i)
        prediction_id = item.get("prediction_id")
        application_id = item.get("application_id")
        if prediction_id is None and application_id is None:
            raise RequestError(422, f"row {i}: send 'prediction_id' or 'application_id'", field="prediction_id", row=i)
        if prediction_id is not None and (
            not isinstance(prediction_id, str) or not 0 < len(prediction_id) <= MAX_ID_CHARS
        ):
            raise RequestError(
                422,
                f"row {i}: field 'prediction_id' must be a string of 1..{MAX_ID_CHARS} characters, "
                f"got {_describe(prediction_id)}",
                field="prediction_id",
                row=i,
            )
        if application_id is not None:
            whole = _whole(application_id)
            if whole is None or not 0 <= whole <= INT64_MAX:
                raise RequestError(
                    422,
                    f"row {i}: field 'application_id' must be a non-negative whole number, got "
                    f"{_describe(application_id)}",
                    field="application_id",
                    row=i,
                )
            application_id = whole
        if "defaulted" not in item:
            raise RequestError(422, f"row {i}: missing field 'defaulted'", field="defaulted", row=i)
        defaulted = _whole(item["defaulted"])
        if defaulted not in (0, 1):
            raise RequestError(
                422,
                f"row {i}: field 'defaulted' must be 0 or 1, got {_describe(item['defaulted'])}",
                field="defaulted",
                row=i,
            )
        out.append({"prediction_id": prediction_id, "application_id": application_id, "defaulted": defaulted})
    return out


def parse_status(body: bytes) -> bool:
    """Validate an ``/admin/status`` body (empty means ``{}``); whether to re-read the registry first."""
    document = _object(parse_json(body) if body else {}, {"refresh"}, '{"refresh": true|false}')
    refresh = document.get("refresh", False)
    if not isinstance(refresh, bool):
        raise RequestError(422, f"'refresh' must be true or false, got {_describe(refresh)}", field="refresh")
    return refresh
