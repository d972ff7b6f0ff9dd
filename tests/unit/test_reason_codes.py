"""Reason codes: exact group Shapley values, efficiency, ranking, protected attributes, and a real model's reasons."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from platform_assets.core.reason_codes import REASON_TABLE, ReasonCode, ReasonCodes
from platform_assets.ml import reason_codes, schema
from tests import model_support

COLUMNS = reason_codes.LOG_COLUMNS
GROUP_ORDER = list(reason_codes.GROUPS)


def reference() -> dict[str, int]:
    return {f: 0 if f in schema.PAY_COLUMNS else 20_000 for f in schema.FEATURE_COLUMNS} | {"LIMIT_BAL": 100_000}


def codes(values: dict[str, int] | None = None) -> ReasonCodes:
    return reason_codes.reason_codes(values or reference(), 0.1, 100)


def applicants(n: int, seed: int = 0) -> np.ndarray:
    """Valid raw rows in ``COLUMNS`` order."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, len(COLUMNS)))
    for c, name in enumerate(COLUMNS):
        if name in schema.PAY_COLUMNS:
            rows[:, c] = rng.integers(-2, 8, n)
        elif name == "LIMIT_BAL":
            rows[:, c] = rng.integers(10, 50, n) * 10_000
        elif name == "SEX":
            rows[:, c] = rng.integers(1, 3, n)
        elif name == "AGE":
            rows[:, c] = rng.integers(20, 70, n)
        elif name in ("EDUCATION", "MARRIAGE"):
            rows[:, c] = rng.integers(0, 4, n)
        else:
            rows[:, c] = rng.integers(0, 80_000, n)
    return rows


def column(rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, COLUMNS.index(name)]


def nonlinear_pd(rows: np.ndarray) -> np.ndarray:
    """A PD with interactions between groups, and a strong dependence on SEX (a protected attribute)."""
    delay = np.maximum(column(rows, "PAY_0"), 0) * (1 + 0.3 * np.maximum(column(rows, "PAY_2"), 0))
    utilisation = column(rows, "BILL_AMT1") / column(rows, "LIMIT_BAL")
    history = sum(np.maximum(column(rows, c), 0) for c in schema.PAY_COLUMNS[2:]) * utilisation
    repaid = np.log1p(column(rows, "PAY_AMT1")) * np.log1p(column(rows, "PAY_AMT3")) / 100
    z = -2 + 0.7 * delay + 0.8 * utilisation + 0.2 * history - repaid + 1.5 * (column(rows, "SEX") == 2)
    return 1 / (1 + np.exp(-z))


def brute_force_shapley(values: np.ndarray, k: int) -> np.ndarray:
    """Shapley values by their definition: the mean marginal contribution over all k! orders of the groups."""
    out = np.zeros(k)
    for order in itertools.permutations(range(k)):
        coalition = 0
        for group in order:
            out[group] += values[coalition | 1 << group] - values[coalition]
            coalition |= 1 << group
    return out / math.factorial(k)


def test_groups_cover_every_model_input_once_and_no_protected_attribute() -> None:
    fields = [f for group in reason_codes.GROUPS.values() for f in group]
    assert sorted(fields) == sorted(schema.FEATURE_COLUMNS)
    assert not set(fields) & set(schema.PROTECTED_COLUMNS)
    assert set(reason_codes.GROUPS) == set(REASON_TABLE)
    assert [c.code for c in codes().codes] == [f"R0{i}" for i in range(1, 8)]


def test_shapley_values_are_exact_and_add_up_to_the_pd_gap() -> None:
    explainer = reason_codes.Explainer(codes(), COLUMNS)
    rows = applicants(5)
    calls: list[int] = []

    def predict(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return nonlinear_pd(matrix)

    explanation = explainer.explain(rows, predict)
    assert calls == [5 * 2**7]  # every coalition of every row in ONE model call
    k = len(reason_codes.GROUPS)
    coalitions = nonlinear_pd(explainer.coalition_rows(rows)).reshape(5, 2**k)
    for r in range(5):
        np.testing.assert_allclose(explanation.shapley[r], brute_force_shapley(coalitions[r], k), atol=1e-12)
    # Efficiency: f(applicant) - f(reference, the applicant's own protected attributes).
    np.testing.assert_allclose(explanation.probability, nonlinear_pd(rows), atol=1e-15)
    np.testing.assert_allclose(
        explanation.shapley.sum(axis=1), explanation.probability - explanation.reference_probability, atol=1e-12
    )


@pytest.mark.parametrize("include_protected", [False, True])
def test_a_model_predictor_gives_the_same_values_as_the_coalition_rows_it_does_not_build(
    include_protected: bool,
) -> None:
    """``ModelPredictor`` featurizes the coalitions without building them: the same Shapley values, to the bit,
    as the model called on the coalition rows through ``featurize_matrix``."""
    weights = np.random.default_rng(5).normal(size=(schema.N_MONTHS * 8 + 8,))

    def model(tensor: np.ndarray, static: np.ndarray) -> np.ndarray:  # non-linear in every input
        x = np.concatenate([tensor.reshape(len(tensor), -1), static], axis=1).astype("float64")
        return 1 / (1 + np.exp(-np.tanh(x) @ weights[: x.shape[1]]))

    explainer = reason_codes.Explainer(codes(), COLUMNS)
    rows = applicants(30, seed=4)
    fast = reason_codes.model_predictor(model, COLUMNS, include_protected=include_protected)
    explanation = explainer.explain(rows, fast)
    plain = explainer.explain(rows, lambda matrix: fast(matrix))  # a RawPredict: the coalition rows are built
    assert np.array_equal(explanation.shapley, plain.shapley) and explanation.reasons == plain.reasons
    assert any(explanation.reasons)
    with pytest.raises(ValueError, match="row 1 is not a valid application: LIMIT_BAL must be positive"):
        rows[1, COLUMNS.index("LIMIT_BAL")] = 0
        explainer.explain(rows, fast)


def test_protected_attributes_are_held_at_the_applicants_values_and_never_a_reason() -> None:
    explainer = reason_codes.Explainer(codes(), COLUMNS)
    rows = applicants(40, seed=3)
    coalitions = explainer.coalition_rows(rows).reshape(40, 2**7, len(COLUMNS))
    for name in schema.PROTECTED_COLUMNS:
        assert (coalitions[:, :, COLUMNS.index(name)] == column(rows, name)[:, None]).all()
    # The PD depends strongly on SEX, yet no reason names a protected attribute.
    flipped = rows.copy()
    flipped[:, COLUMNS.index("SEX")] = 3 - flipped[:, COLUMNS.index("SEX")]
    assert np.abs(nonlinear_pd(flipped) - nonlinear_pd(rows)).max() > 0.2
    explanation = explainer.explain(rows, nonlinear_pd)
    named = {f for reasons in explanation.reasons for reason in reasons for f in reason["fields"]}
    assert named and not named & set(schema.PROTECTED_COLUMNS)


def test_a_table_with_a_protected_or_unknown_field_is_refused() -> None:
    table = codes()
    protected = ReasonCode(code="R09", group="age", text="Age", fields=("AGE",))
    with_age = table.model_copy(update={"codes": (*table.codes, protected)})
    with pytest.raises(ValueError, match=r"'age' contains protected attribute\(s\) \['AGE'\]"):
        reason_codes.Explainer(with_age, COLUMNS)
    with pytest.raises(ValueError, match=r"needs column\(s\) \['LIMIT_BAL'\]"):
        reason_codes.Explainer(table, [c for c in COLUMNS if c != "LIMIT_BAL"])


def test_reasons_are_the_positive_groups_largest_first_at_most_four_ties_to_the_earlier_group() -> None:
    explainer = reason_codes.Explainer(codes(), COLUMNS)
    rows = applicants(1)
    # An additive model: each group's Shapley value is its own term. Weights per group, in GROUPS order.
    terms = [0.05, -0.02, 0.03, 0.03, 0.0, 0.2, 0.01]
    indicator = {g: COLUMNS.index(f[0]) for g, f in reason_codes.GROUPS.items()}
    reference_row = explainer.coalition_rows(rows)[0]

    def additive(matrix: np.ndarray) -> np.ndarray:
        return 0.1 + sum(
            w * (matrix[:, indicator[g]] != reference_row[indicator[g]])
            for g, w in zip(GROUP_ORDER, terms, strict=True)
        )

    rows[0, [indicator[g] for g in GROUP_ORDER]] = reference_row[[indicator[g] for g in GROUP_ORDER]] + 1
    (reasons,) = explainer.explain(rows, additive).reasons
    assert [r["code"] for r in reasons] == ["R06", "R01", "R03", "R04"]  # R03 and R04 tie: table order
    assert [r["contribution"] for r in reasons] == [0.2, 0.05, 0.03, 0.03]
    first = reasons[0]
    assert first["text"] == REASON_TABLE["repayment_history"][1]
    assert first["fields"] == {f: int(rows[0, COLUMNS.index(f)]) for f in schema.PAY_AMT_COLUMNS[1:]}
    assert first["reference"] == {f: reference()[f] for f in schema.PAY_AMT_COLUMNS[1:]}
    negative = explainer.explain(rows, lambda m: 1.0 - additive(m)).reasons[0]
    assert [r["code"] for r in negative] == ["R02"]  # only groups that push the PD up


def test_the_reference_is_the_lower_median_of_the_approved_rows() -> None:
    frame = pd.DataFrame({c: [1, 2, 3, 4, 100] for c in schema.RAW_COLUMNS})
    values, rows = reason_codes.reference_values(frame, np.array([0.1, 0.2, 0.3, 0.4, 0.9]), threshold=0.5)
    assert rows == 4 and values == {f: 2 for group in reason_codes.GROUPS.values() for f in group}
    with pytest.raises(ValueError, match="no training row is approved"):
        reason_codes.reference_values(frame, np.ones(5), threshold=0.5)
    with pytest.raises(ValueError, match="rematerialize credit_history_tensors"):
        reason_codes.reference_values(frame.drop(columns=["PAY_AMT6"]), np.zeros(5), threshold=0.5)


@pytest.fixture(scope="module")
def tiny() -> tuple[model_support.TinyModel, pd.DataFrame]:
    raw = model_support.synthetic_rows(days=2, rows_per_day=1500, seed=11)
    return model_support.train_tiny(raw, seed=3, epochs=3, calibration_method="platt"), raw


def real_predictor(model: Any) -> reason_codes.RawPredict:
    from platform_assets.ml.train import predict_cnn

    return reason_codes.model_predictor(
        lambda t, s: predict_cnn(model, {"history": t, "static": s}), COLUMNS, include_protected=False
    )


@pytest.mark.slow
def test_a_later_payment_delay_raises_the_pd_and_becomes_the_first_reason(
    tiny: tuple[model_support.TinyModel, pd.DataFrame],
) -> None:
    model, raw = tiny
    table = model.reason_codes
    assert table.reference.probability < model.threshold  # the reference is approved
    explainer = reason_codes.Explainer(table, COLUMNS)
    predict = real_predictor(model.model)
    applicant = raw.iloc[[0]].copy()
    for field, value in table.reference.values.items():
        applicant[field] = value
    pds, firsts = [], []
    for delay in (0, 2, 4, 6):
        applicant["PAY_0"] = delay
        explanation = explainer.explain(applicant[list(COLUMNS)].to_numpy("float64"), predict)
        pds.append(float(explanation.probability[0]))
        firsts.append(explanation.reasons[0][0]["code"] if explanation.reasons[0] else None)
    assert pds[0] < pds[1] < pds[2] < pds[3]
    assert firsts == [None, "R01", "R01", "R01"]  # at the reference's own values nothing raises the PD
    assert explanation.reasons[0][0]["fields"] == {"PAY_0": 6}


@pytest.mark.slow
def test_a_real_models_declines_all_have_reasons_that_add_up(
    tiny: tuple[model_support.TinyModel, pd.DataFrame],
) -> None:
    model, raw = tiny
    explainer = reason_codes.Explainer(model.reason_codes, COLUMNS)
    rows = raw[list(COLUMNS)].to_numpy("float64")[:300]
    explanation = explainer.explain(rows, real_predictor(model.model))
    declined = explanation.probability >= model.threshold
    assert declined.any()
    gap = explanation.probability - explanation.reference_probability
    np.testing.assert_allclose(explanation.shapley.sum(axis=1), gap, atol=1e-9)
    for row in np.flatnonzero(declined):
        reasons = explanation.reasons[row]
        assert 1 <= len(reasons) <= 4
        contributions = [r["contribution"] for r in reasons]
        assert contributions == sorted(contributions, reverse=True) and contributions[-1] > 0
    # Deterministic: the same rows give the same reasons.
    assert explainer.explain(rows, real_predictor(model.model)).reasons == explanation.reasons


@pytest.mark.slow
def test_a_reference_the_model_declines_is_refused(tiny: tuple[model_support.TinyModel, pd.DataFrame]) -> None:
    model, raw = tiny
    with pytest.raises(ValueError, match="the model declines it"):
        reason_codes.fit(raw, np.zeros(len(raw)), 0.0001, real_predictor(model.model))
