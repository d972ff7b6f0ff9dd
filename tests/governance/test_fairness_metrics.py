"""The fairness metrics: hand-checked figures, agreement with Fairlearn on the UCI data, small groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import precision_score, roc_auc_score

from platform_assets.ml import fairness_metrics


def hand_made() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group A: 20 defaulters (15 flagged), 20 repayers (5 flagged); B: 10 (5 flagged), 30 (3 flagged); C: 5 rows."""

    def block(defaulters_flagged: int, defaulters: int, repayers_flagged: int, repayers: int) -> tuple[list, list]:
        labels = [1] * defaulters + [0] * repayers
        scores = (
            [0.9] * defaulters_flagged
            + [0.1] * (defaulters - defaulters_flagged)
            + [0.8] * repayers_flagged
            + [0.2] * (repayers - repayers_flagged)
        )
        return labels, scores

    (la, sa), (lb, sb), (lc, sc) = block(15, 20, 5, 20), block(5, 10, 3, 30), block(1, 2, 1, 3)
    labels = np.array(la + lb + lc)
    scores = np.array(sa + sb + sc)
    groups = np.array(["A"] * 40 + ["B"] * 40 + ["C"] * 5, dtype=object)
    return labels, scores, groups


def test_hand_made_example_gives_the_hand_computed_figures() -> None:
    labels, scores, groups = hand_made()
    report = fairness_metrics.fairness_report(
        labels, scores, 0.5, {"group": groups}, min_group_size=30, min_outcome_count=10
    )
    attribute = report["attributes"]["group"]
    rows = {r["group"]: r for r in attribute["groups"]}
    assert rows["A"]["count"] == 40 and rows["A"]["status"] == "ok"
    assert rows["A"]["selection_rate"] == pytest.approx(0.5)
    assert rows["A"]["approval_rate"] == pytest.approx(0.5)
    assert rows["A"]["tpr"] == pytest.approx(0.75)
    assert rows["A"]["fpr"] == pytest.approx(0.25)
    assert rows["A"]["precision"] == pytest.approx(0.75)
    assert rows["A"]["auc"] == pytest.approx(roc_auc_score(labels[:40], scores[:40]))
    assert rows["B"]["selection_rate"] == pytest.approx(0.2)
    assert rows["B"]["tpr"] == pytest.approx(0.5)
    assert rows["B"]["fpr"] == pytest.approx(0.1)
    assert rows["B"]["precision"] == pytest.approx(5 / 8)
    summary = attribute["summary"]
    assert summary["demographic_parity_difference"] == pytest.approx(0.3)
    assert summary["demographic_parity_ratio"] == pytest.approx(0.2 / 0.5)
    assert summary["disparate_impact_ratio"] == pytest.approx(0.5 / 0.8)  # approval rates A 0.5, B 0.8
    assert summary["four_fifths_rule_passed"] is False
    assert summary["equal_opportunity_difference"] == pytest.approx(0.25)
    assert summary["equalized_odds_difference"] == pytest.approx(max(0.25, 0.15))


def test_small_groups_are_reported_as_too_small_and_left_out_of_the_gaps() -> None:
    labels, scores, groups = hand_made()
    report = fairness_metrics.fairness_report(labels, scores, 0.5, {"group": groups}, min_group_size=30)
    attribute = report["attributes"]["group"]
    small = next(r for r in attribute["groups"] if r["group"] == "C")
    assert small["status"] == "too_small" and small["count"] == 5
    assert all(small[m] is None for m in fairness_metrics.GROUP_METRICS)
    assert "too small to measure: 5 rows < 30" in small["notes"][0]
    assert attribute["summary"]["groups_too_small"] == ["C"]
    assert attribute["summary"]["groups_measured"] == ["A", "B"]


def test_when_no_group_is_large_enough_every_gap_is_null_with_a_reason() -> None:
    labels, scores, groups = hand_made()
    report = fairness_metrics.fairness_report(labels, scores, 0.5, {"group": groups}, min_group_size=1000)
    summary = report["attributes"]["group"]["summary"]
    assert all(summary[m] is None for m in fairness_metrics.SUMMARY_METRICS)
    assert summary["four_fifths_rule_passed"] is None
    assert any("not measurable" in note for note in summary["notes"])
    assert fairness_metrics.flat_metrics(report) == {}


def test_single_class_and_unflagged_groups_get_null_rates_not_zero_division() -> None:
    labels = np.array([0] * 40 + [1] * 20 + [0] * 20)
    scores = np.array([0.1] * 40 + [0.9] * 10 + [0.1] * 10 + [0.7] * 5 + [0.1] * 15)
    groups = np.array(["no defaulters"] * 40 + ["mixed"] * 40, dtype=object)
    report = fairness_metrics.fairness_report(labels, scores, 0.5, {"g": groups}, min_group_size=30)
    rows = {r["group"]: r for r in report["attributes"]["g"]["groups"]}
    quiet = rows["no defaulters"]
    assert quiet["tpr"] is None and quiet["auc"] is None and quiet["precision"] is None
    assert quiet["fpr"] == 0.0 and quiet["selection_rate"] == 0.0
    assert {"no defaulters: TPR and AUC undefined", "nobody flagged: precision undefined"} <= set(quiet["notes"])
    summary = report["attributes"]["g"]["summary"]
    # Only one group holds both outcomes: TPR gaps are not measurable; parity gaps are.
    assert summary["equal_opportunity_difference"] is None and summary["equalized_odds_difference"] is None
    assert summary["demographic_parity_difference"] == pytest.approx(15 / 40)


def test_age_bands_default_to_five_bands_with_edges_starting_the_next_band() -> None:
    assert fairness_metrics.age_band_labels(fairness_metrics.DEFAULT_AGE_EDGES) == [
        "<25",
        "25-34",
        "35-44",
        "45-59",
        "60+",
    ]
    ages = np.array([21, 24, 25, 34, 35, 44, 45, 59, 60, 79])
    assert fairness_metrics.age_bands(ages).tolist() == [
        "<25", "<25", "25-34", "25-34", "35-44", "35-44", "45-59", "45-59", "60+", "60+"
    ]  # fmt: skip
    assert fairness_metrics.age_bands(np.array([29, 30]), [30]).tolist() == ["<30", "30+"]
    with pytest.raises(ValueError, match="strictly increasing"):
        fairness_metrics.age_band_labels([40, 30])


def test_on_uci_the_report_equals_fairlearn_computed_directly(
    uci_predictions: tuple[pd.DataFrame, np.ndarray, np.ndarray, float],
) -> None:
    frame, labels, scores, threshold = uci_predictions
    groups = fairness_metrics.protected_groups(frame)
    report = fairness_metrics.fairness_report(labels, scores, threshold, groups)
    sex = groups["sex"]
    decisions = (scores >= threshold).astype(int)
    direct = MetricFrame(
        metrics={
            "count": count,
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "precision": lambda y, p: precision_score(y, p, zero_division=0),
        },
        y_true=labels,
        y_pred=decisions,
        sensitive_features=sex,
    ).by_group
    auc = MetricFrame(metrics=roc_auc_score, y_true=labels, y_pred=scores, sensitive_features=sex).by_group
    rows = {r["group"]: r for r in report["attributes"]["sex"]["groups"]}
    assert set(rows) == {"female", "male"}
    for group, row in rows.items():
        assert row["count"] == direct.loc[group, "count"]
        for metric in ("selection_rate", "tpr", "fpr", "precision"):
            assert row[metric] == pytest.approx(direct.loc[group, metric], abs=1e-12), (group, metric)
        assert row["auc"] == pytest.approx(auc.loc[group], abs=1e-12)
    summary = report["attributes"]["sex"]["summary"]
    assert summary["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(labels, decisions, sensitive_features=sex)
    )
    assert summary["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(labels, decisions, sensitive_features=sex)
    )
    assert summary["disparate_impact_ratio"] == pytest.approx(
        demographic_parity_ratio(labels, 1 - decisions, sensitive_features=sex)
    )
    assert summary["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(labels, decisions, sensitive_features=sex)
    )
    assert summary["equal_opportunity_difference"] == pytest.approx(
        equal_opportunity_difference(labels, decisions, sensitive_features=sex)
    )
    # The real data has tiny undocumented codes; they are flagged, not measured.
    education = report["attributes"]["education"]["summary"]
    assert "undocumented (0)" in education["groups_too_small"]


def test_groups_with_few_defaulters_stay_in_the_table_but_out_of_the_tpr_gaps() -> None:
    labels, scores, groups = hand_made()  # A: 20 defaulters, B: 10 defaulters
    report = fairness_metrics.fairness_report(
        labels, scores, 0.5, {"group": groups}, min_group_size=30, min_outcome_count=15
    )
    attribute = report["attributes"]["group"]
    rows = {r["group"]: r for r in attribute["groups"]}
    assert rows["B"]["tpr"] == pytest.approx(0.5), "the rate is still shown"
    assert any("too few defaulters (10)" in note for note in rows["B"]["notes"])
    summary = attribute["summary"]
    assert summary["equal_opportunity_difference"] is None and summary["equalized_odds_difference"] is None
    assert summary["disparate_impact_ratio"] == pytest.approx(0.5 / 0.8), "selection-rate gaps still use B"


def test_gap_intervals_are_narrow_for_large_groups_and_wide_for_small_ones() -> None:
    # TPR 0.60 vs 0.48 (gap 0.12): over thousands of defaulters the gap is certain, over 40 it is noise.
    large = fairness_metrics.rate_gap_interval(np.array([4800, 3840]), np.array([8000, 8000]), "difference")
    small = fairness_metrics.rate_gap_interval(np.array([24, 19]), np.array([40, 40]), "difference")
    assert large is not None and small is not None
    assert 0.1 < large[0] < 0.12 < large[1] < 0.15
    assert small[0] < 0.1 < small[1] and small[1] - small[0] > 0.2
    assert fairness_metrics.rate_gap_interval(np.array([24, 19]), np.array([40, 40]), "difference") == small, "seeded"


def test_ratio_interval_brackets_the_disparate_impact_ratio() -> None:
    interval = fairness_metrics.rate_gap_interval(np.array([700, 560]), np.array([1000, 1000]), "ratio")
    assert interval is not None and interval[0] < 0.8 < interval[1]
    assert fairness_metrics.rate_gap_interval(np.array([0, 0]), np.array([50, 50]), "ratio") is None
