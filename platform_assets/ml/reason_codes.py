"""Adverse-action reasons: exact Shapley values of named groups of raw application fields.

The value of a coalition S of groups is the model's probability of default (PD) for the applicant with
the fields of the groups in S kept and every other group's fields set to the reference applicant's values
(the per-field lower median of the training rows the model approves, in a seeded sample of at most
``REFERENCE_SAMPLE_ROWS``: an approved-typical applicant, real values of whole numbers, recorded in the model
version). With k groups, all 2^k coalitions of a batch of applicants go to the model in ONE call, and the
Shapley value of group i is

    phi_i = sum over S not containing i of |S|! (k - |S| - 1)! / k! * (v(S + i) - v(S)),

so the values add up exactly to ``PD(applicant) - PD(reference)`` (efficiency). The computation only
calls a predict function on raw rows: it works for any model the runtime serves.

Reasons are the groups with a positive value (they push the PD up), largest first, at most
``ReasonCodes.max_reasons``; values are rounded to 1e-6 (PD units) before ranking and ties go to the
group listed first, so the same applicant and model always give the same reasons, also offline.

Protected attributes (``schema.PROTECTED_COLUMNS``: SEX, EDUCATION, MARRIAGE, AGE) are never a group, so
never a reason. A model that takes them as inputs sees them held at the applicant's OWN values in every
coalition: setting them to a reference value would hand their effect to the groups (or, were they a
group, let them become a reason), and ECOA forbids declining on those grounds. The comparison is then
"this applicant with the reference's credit file", and efficiency holds against that reference PD.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from platform_assets.core.inference_log.schema import PROTECTED_LOG_COLUMNS
from platform_assets.core.reason_codes import (
    MAX_REASONS,
    REASON_TABLE,
    TABLE_VERSION,
    ReasonCode,
    ReasonCodes,
    ReferenceApplicant,
)
from platform_assets.ml import features, schema

#: The field groups that can be reasons, in table order (ties in ranking go to the earlier group).
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "recent_delay": schema.PAY_COLUMNS[:1],
    "delay_history": schema.PAY_COLUMNS[1:],
    "current_balance": schema.BILL_COLUMNS[:1],
    "balance_history": schema.BILL_COLUMNS[1:],
    "recent_repayment": schema.PAY_AMT_COLUMNS[:1],
    "repayment_history": schema.PAY_AMT_COLUMNS[1:],
    "credit_limit": ("LIMIT_BAL",),
}
#: Contributions are rounded to this many decimals (PD units) before they are ranked and reported.
DECIMALS: Final = 6
#: Columns of the raw rows offline recomputation builds from the inference log.
LOG_COLUMNS: Final = (*schema.FEATURE_COLUMNS, *schema.PROTECTED_COLUMNS)
#: Contributions recomputed offline may differ from the served ones by this much (PD units): another runtime of
#: the same model (Keras against the service's) rounds float32 differently.
RECOMPUTE_TOLERANCE: Final = 1e-5
#: Values a model without protected inputs never reads, for rows whose protected fields were not sent:
#: the feature code validates them, so they must lie in the code sets.
_UNREAD_PROTECTED: Final = {"SEX": 1, "EDUCATION": 0, "MARRIAGE": 0, "AGE": schema.AGE_RANGE[0]}
#: Training rows the reference applicant is derived from at most (a seeded sample: training streams its rows).
REFERENCE_SAMPLE_ROWS: Final = 100_000
REFERENCE_RULE: Final = (
    f"per-field lower median of the training rows the model approves (PD < threshold), in a seeded sample of at "
    f"most {REFERENCE_SAMPLE_ROWS:,} training rows"
)

#: PDs (float) for raw rows given as a matrix in the explainer's column order.
RawPredict = Callable[[np.ndarray], np.ndarray]


def reference_values(frame: pd.DataFrame, probabilities: np.ndarray, threshold: float) -> tuple[dict[str, int], int]:
    """The reference applicant's raw values (``REFERENCE_RULE``) and how many rows they come from."""
    approved = np.asarray(probabilities) < threshold
    if not approved.any():
        raise ValueError(f"no training row is approved at threshold {threshold}: there is no reference applicant")
    fields = [f for group in GROUPS.values() for f in group]
    if missing := [f for f in (*fields, *schema.PROTECTED_COLUMNS) if f not in frame.columns]:
        raise ValueError(
            f"the training rows carry no raw field(s) {missing}: rematerialize credit_history_tensors (its rows "
            "carry the raw application fields since reason codes)"
        )
    values = frame.loc[approved, fields].to_numpy(dtype="int64")
    medians = np.quantile(values, 0.5, axis=0, method="lower")
    return {f: int(v) for f, v in zip(fields, medians, strict=True)}, int(approved.sum())


def fit(frame: pd.DataFrame, probabilities: np.ndarray, threshold: float, predict: RawPredict) -> ReasonCodes:
    """The reason section of a trained model: the reference applicant from the training rows in ``frame``
    (raw columns) and their PDs, and its own PD by ``predict`` over ``LOG_COLUMNS`` rows.

    For a model with protected inputs the reference PD is taken at the approved rows' median protected
    values (at serving each applicant keeps their own). A reference the model would decline is refused:
    against it a decline could have no reason that raises its PD.
    """
    reference, rows = reference_values(frame, probabilities, threshold)
    approved = frame.loc[np.asarray(probabilities) < threshold, list(schema.PROTECTED_COLUMNS)].to_numpy("int64")
    protected = np.quantile(approved, 0.5, axis=0, method="lower")
    row = [reference[c] if c in reference else int(protected[schema.PROTECTED_COLUMNS.index(c)]) for c in LOG_COLUMNS]
    probability = float(predict(np.asarray([row], dtype="float64"))[0])
    if probability >= threshold:
        raise ValueError(
            f"the reference applicant ({REFERENCE_RULE}) has PD {probability:.4f} >= the threshold {threshold:.4f}: "
            "the model declines it, so it cannot explain declines"
        )
    return reason_codes(reference, probability, rows)


def reason_codes(reference: dict[str, int], reference_probability: float, rows: int) -> ReasonCodes:
    """The version's reason section: ``REASON_TABLE`` over ``GROUPS``, against ``reference``."""
    if set(GROUPS) != set(REASON_TABLE):
        raise ValueError(
            f"reason table v{TABLE_VERSION} covers {sorted(REASON_TABLE)}, the groups are {sorted(GROUPS)}"
        )
    return ReasonCodes(
        table_version=TABLE_VERSION,
        codes=tuple(
            ReasonCode(code=REASON_TABLE[g][0], group=g, text=REASON_TABLE[g][1], fields=f) for g, f in GROUPS.items()
        ),
        reference=ReferenceApplicant(
            rule=REFERENCE_RULE, values=reference, probability=float(reference_probability), rows=rows
        ),
        max_reasons=MAX_REASONS,
    )


class ModelPredictor:
    """A ``RawPredict`` over a model's ``predict(tensor, static)``: raw rows in ``columns`` go through
    ``features.featurize_matrix``. ``coalitions`` gives the same PDs for an explainer's coalitions of rows,
    featurized by ``features.CoalitionFeatures`` (bit for bit the same inputs) without building them."""

    def __init__(
        self, predict: Callable[[np.ndarray, np.ndarray], np.ndarray], columns: Sequence[str], include_protected: bool
    ) -> None:
        self.predict = predict
        self.columns = tuple(columns)
        self.include_protected = include_protected
        self._coalition_features: features.CoalitionFeatures | None = None

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        featurized = features.featurize_matrix(matrix, self.columns, include_protected=self.include_protected)
        if not featurized.valid.all():
            first = int(np.flatnonzero(~featurized.valid)[0])
            raise ValueError(f"coalition row {first} is not a valid application: {featurized.reasons[first]}")
        return self._scores(featurized.batch)

    def coalitions(self, rows: np.ndarray, reference: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """PDs of ``where(keep[c], rows[i], reference)`` for every row i and coalition c, i-major."""
        plan = self._coalition_features
        if plan is None or not np.array_equal(plan.keep, keep):  # built once per explainer's coalitions
            plan = features.CoalitionFeatures(keep, self.columns, include_protected=self.include_protected)
            self._coalition_features = plan
        return self._scores(plan(rows, reference))

    def _scores(self, batch: features.FeatureBatch) -> np.ndarray:
        return np.asarray(self.predict(batch.tensor, batch.static), dtype="float64").reshape(-1)


def model_predictor(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray], columns: Sequence[str], include_protected: bool
) -> ModelPredictor:
    """A ``RawPredict`` over ``predict(tensor, static)`` (see ``ModelPredictor``)."""
    return ModelPredictor(predict, columns, include_protected)


@dataclass(frozen=True)
class Explanation:
    """Shapley values (n, groups) in PD units, the PDs of the applicants and of their references, and the
    reasons of each applicant (dicts: code, text, contribution, fields, reference)."""

    shapley: np.ndarray
    probability: np.ndarray
    reference_probability: np.ndarray
    reasons: list[list[dict[str, Any]]]


class Explainer:
    """Exact group Shapley values and ranked reasons for raw rows whose columns are ``columns``."""

    def __init__(self, codes: ReasonCodes, columns: Sequence[str]) -> None:
        position = {name: i for i, name in enumerate(columns)}
        for code in codes.codes:
            if protected := sorted(set(code.fields) & set(schema.PROTECTED_COLUMNS)):
                raise ValueError(f"reason group {code.group!r} contains protected attribute(s) {protected}")
            if unknown := sorted(set(code.fields) - set(schema.FEATURE_COLUMNS)):
                raise ValueError(f"reason group {code.group!r} names {unknown}, which are not model input fields")
            if missing := sorted(set(code.fields) - set(position)):
                raise ValueError(f"reason group {code.group!r} needs column(s) {missing}, not in {list(columns)}")
        self.codes = codes
        self.columns = tuple(columns)
        k = len(codes.codes)
        # Coalition s holds group i when bit i of s is set: row 0 is the reference, the last the applicant.
        members = (np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1 == 1
        keep = np.ones((2**k, len(columns)), dtype=bool)
        self._reference = np.zeros(len(columns), dtype="float64")
        self._field_index: list[list[int]] = []
        for i, code in enumerate(codes.codes):
            index = [position[f] for f in code.fields]
            self._field_index.append(index)
            keep[:, index] = members[:, [i]]
            self._reference[index] = [codes.reference.values[f] for f in code.fields]
        self._keep = keep
        size = members.sum(axis=1)
        weight = [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]
        with_i = np.asarray([weight[s - 1] if s else 0.0 for s in size])[:, None]
        without_i = np.asarray([weight[s] if s < k else 0.0 for s in size])[:, None]
        # phi = v @ weights: +w(|S|-1) where i is in S, -w(|S|) where it is not.
        self._weights = np.where(members, with_i, -without_i)
        self._references = [
            {f: codes.reference.values[f] for f in code.fields} for code in codes.codes
        ]  # shared by every reason of the group: never mutated

    @property
    def coalitions(self) -> int:
        return int(self._keep.shape[0])

    def coalition_rows(self, rows: np.ndarray) -> np.ndarray:
        """(n * 2^k, columns): each row's coalitions, the groups outside a coalition at the reference's values."""
        n, m = rows.shape
        out = np.where(self._keep[None, :, :], rows[:, None, :], self._reference[None, None, :])
        return out.reshape(n * self.coalitions, m)

    def explain(self, rows: np.ndarray, predict: RawPredict) -> Explanation:
        """Shapley values and reasons of ``rows`` (n, columns), with one ``predict`` call on all coalitions."""
        rows = np.asarray(rows, dtype="float64")
        if rows.ndim != 2 or rows.shape[1] != len(self.columns):
            raise ValueError(
                f"expected (n, {len(self.columns)}) rows in columns {list(self.columns)}, got {rows.shape}"
            )
        if len(rows) == 0:
            empty = np.empty(0, dtype="float64")
            return Explanation(np.empty((0, len(self.codes.codes))), empty, empty, [])
        if isinstance(predict, ModelPredictor) and predict.columns == self.columns:  # featurized without the rows
            flat = predict.coalitions(rows, self._reference, self._keep)
        else:
            flat = predict(self.coalition_rows(rows))
        values = np.asarray(flat, dtype="float64").reshape(len(rows), self.coalitions)
        shapley = values @ self._weights
        return Explanation(shapley, values[:, -1], values[:, 0], self.rank(rows, shapley))

    def rank(self, rows: np.ndarray, shapley: np.ndarray) -> list[list[dict[str, Any]]]:
        """Per row: the groups with a positive (rounded) value, largest first, at most ``max_reasons``."""
        rounded = np.round(shapley, DECIMALS)
        order = np.argsort(-rounded, axis=1, kind="stable")  # stable: ties go to the earlier group
        limit = self.codes.max_reasons
        out: list[list[dict[str, Any]]] = []
        for row, ranked, values in zip(rows.tolist(), order.tolist(), rounded.tolist(), strict=True):
            reasons = []
            for i in ranked[:limit]:
                if values[i] <= 0.0:
                    break
                code = self.codes.codes[i]
                reasons.append(
                    {
                        "code": code.code,
                        "text": code.text,
                        "contribution": values[i],
                        "fields": {f: int(row[j]) for f, j in zip(code.fields, self._field_index[i], strict=True)},
                        "reference": self._references[i],
                    }
                )
            out.append(reasons)
        return out


def log_rows(
    inputs: Sequence[dict[str, int]], protected: Sequence[dict[str, int | None]], *, include_protected: bool
) -> np.ndarray:
    """Raw rows in ``LOG_COLUMNS`` order from the inference log's ``inputs`` and protected columns.

    A protected value the applicant did not send becomes a valid code that a model without protected
    inputs never reads; a model with them needs every value (the service refuses rows without).
    """
    matrix = np.empty((len(inputs), len(LOG_COLUMNS)), dtype="float64")
    for r, (fields, attributes) in enumerate(zip(inputs, protected, strict=True)):
        for c, name in enumerate(LOG_COLUMNS):
            if name in schema.PROTECTED_COLUMNS:
                value = attributes.get(name)
                if value is None and include_protected:
                    raise ValueError(f"row {r}: no {name} in the log, an input of this model")
                matrix[r, c] = _UNREAD_PROTECTED[name] if value is None else value
            else:
                matrix[r, c] = fields[name]
    return matrix


def recompute_from_log(
    logged: Sequence[Mapping[str, Any]],
    codes: ReasonCodes,
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    include_protected: bool,
) -> list[list[dict[str, Any]]]:
    """The reasons of explained inference-log rows (``inputs`` and the protected columns), recomputed with the
    version's ``codes`` and the model's ``predict(tensor, static)``: one model call for all of them."""
    if missing := [i for i, row in enumerate(logged) if not row.get("inputs")]:
        raise ValueError(f"log row(s) {missing} have no inputs: only explained predictions can be recomputed")
    inputs = [json.loads(row["inputs"]) for row in logged]
    protected = [{column: row.get(name) for column, name in PROTECTED_LOG_COLUMNS.items()} for row in logged]
    rows = log_rows(inputs, protected, include_protected=include_protected)
    explainer = Explainer(codes, LOG_COLUMNS)
    return explainer.explain(rows, model_predictor(predict, LOG_COLUMNS, include_protected)).reasons


def difference(served: Sequence[Mapping[str, Any]], recomputed: Sequence[Mapping[str, Any]]) -> str | None:
    """How two reason lists differ (codes, order, fields, or a contribution by more than ``RECOMPUTE_TOLERANCE``),
    or None when they are the same."""
    codes = ([r["code"] for r in served], [r["code"] for r in recomputed])
    if codes[0] != codes[1]:
        return f"codes {codes[0]} != {codes[1]}"
    for a, b in zip(served, recomputed, strict=True):
        if a["fields"] != b["fields"] or a["reference"] != b["reference"] or a["text"] != b["text"]:
            return f"{a['code']}: text or fields differ"
        if abs(a["contribution"] - b["contribution"]) > RECOMPUTE_TOLERANCE:
            return f"{a['code']}: contribution {a['contribution']} != {b['contribution']}"
    return None
