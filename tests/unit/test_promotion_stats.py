"""The promotion statistics: DeLong's AUC comparison, the swap set, PSI/CSI and the promotion gate."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from platform_assets.core import slo
from platform_assets.ml import fairness_metrics
from platform_assets.ml.auc_comparison import delong_covariance
from platform_assets.ml.promotion_stats import (
    AucComparison,
    compare_auc_paired,
    compare_auc_unpaired,
    csi,
    disparate_impact_ratios,
    non_inferiority,
    promotion_gate,
    psi,
    psi_alarm_threshold,
    swap_set,
)


def _scored(n: int, seed: int, challenger_signal: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (about 22 % defaulters, like UCI) and two correlated scores sharing an applicant effect."""
    rng = np.random.default_rng(seed)
    defaulted = rng.binomial(1, 0.22, n)
    shared = rng.normal(size=n)
    champion = defaulted + shared + 0.7 * rng.normal(size=n)
    challenger = challenger_signal * defaulted + shared + 0.7 * rng.normal(size=n)
    return defaulted, champion, challenger


def _brute_force_delong(defaulted: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong 1988 as written: the kernel psi(x, y) = 1 if x > y, 1/2 if equal, over every defaulter-repayer pair."""
    x, y = scores[:, defaulted == 1], scores[:, defaulted == 0]
    kernel = (x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])
    v10, v01 = kernel.mean(axis=2), kernel.mean(axis=1)
    covariance = np.cov(v10) / x.shape[1] + np.cov(v01) / y.shape[1]
    return kernel.mean(axis=(1, 2)), covariance


# -- DeLong -----------------------------------------------------------------------------------------------------
def test_fast_delong_equals_the_pairwise_definition_with_ties() -> None:
    defaulted, champion, challenger = _scored(300, seed=1)
    scores = np.round(np.vstack([champion, challenger]), 1)  # rounding makes many ties
    fast_aucs, fast_cov = delong_covariance(defaulted, scores)
    slow_aucs, slow_cov = _brute_force_delong(defaulted, scores)
    np.testing.assert_allclose(fast_aucs, slow_aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast_cov, slow_cov, rtol=1e-10, atol=1e-15)


def test_hand_computed_example() -> None:
    # Pairs (defaulter, repayer): 0.9>0.6, 0.9>0.1, 0.4<0.6, 0.4>0.1 -> AUC 3/4; V10 = (1, 1/2), V01 = (1/2, 1),
    # each with sample variance 1/8, so Var(AUC) = 1/8 / 2 + 1/8 / 2 = 1/8.
    aucs, covariance = delong_covariance(np.array([1, 1, 0, 0]), np.array([[0.9, 0.4, 0.6, 0.1]]))
    assert aucs[0] == pytest.approx(0.75)
    assert covariance[0, 0] == pytest.approx(0.125)


def test_paired_aucs_are_sklearns_and_the_variance_matches_a_bootstrap() -> None:
    defaulted, champion, challenger = _scored(2000, seed=2)
    result = compare_auc_paired(defaulted, champion, challenger)
    assert result.auc_champion == pytest.approx(roc_auc_score(defaulted, champion), abs=1e-12)
    assert result.auc_challenger == pytest.approx(roc_auc_score(defaulted, challenger), abs=1e-12)
    assert result.difference == pytest.approx(result.auc_challenger - result.auc_champion)
    rng = np.random.default_rng(3)
    differences = []
    for _ in range(2000):
        rows = rng.integers(0, len(defaulted), len(defaulted))
        y = defaulted[rows]
        differences.append(roc_auc_score(y, challenger[rows]) - roc_auc_score(y, champion[rows]))
    bootstrap_se = float(np.std(differences, ddof=1))
    assert result.standard_error == pytest.approx(bootstrap_se, rel=0.12)
    assert (result.n, result.n_positive, result.method) == (2000, int(defaulted.sum()), "delong_paired")


def test_unpaired_variance_of_each_auc_matches_a_bootstrap() -> None:
    defaulted, champion, _ = _scored(1500, seed=4)
    defaulted_b, _, challenger = _scored(1000, seed=5)
    result = compare_auc_unpaired(defaulted, champion, defaulted_b, challenger)
    rng = np.random.default_rng(6)
    variance = 0.0
    for y, p in ((defaulted, champion), (defaulted_b, challenger)):
        draws = []
        for _ in range(2000):
            rows = rng.integers(0, len(y), len(y))
            draws.append(roc_auc_score(y[rows], p[rows]))
        variance += float(np.var(draws, ddof=1))
    assert result.standard_error == pytest.approx(math.sqrt(variance), rel=0.12)
    assert result.auc_challenger == pytest.approx(roc_auc_score(defaulted_b, challenger), abs=1e-12)
    assert (result.n, result.n_positive) == (2500, int(defaulted.sum() + defaulted_b.sum()))
    assert result.method == "delong_unpaired"


def test_pairing_narrows_the_interval_of_correlated_models() -> None:
    defaulted, champion, challenger = _scored(1000, seed=7)
    paired = compare_auc_paired(defaulted, champion, challenger)
    unpaired = compare_auc_unpaired(defaulted, champion, defaulted, challenger)
    assert paired.difference == pytest.approx(unpaired.difference)
    assert paired.standard_error < 0.8 * unpaired.standard_error
    assert paired.ci_high - paired.ci_low < unpaired.ci_high - unpaired.ci_low


def test_p_value_holds_its_level_when_the_models_are_equally_good() -> None:
    rejections = sum(compare_auc_paired(*_scored(400, seed=100 + i)).p_value < 0.05 for i in range(300))
    assert 0.02 <= rejections / 300 <= 0.09


def test_interval_and_p_value_agree_and_a_better_challenger_is_detected() -> None:
    defaulted, champion, challenger = _scored(3000, seed=8, challenger_signal=1.6)
    result = compare_auc_paired(defaulted, champion, challenger, confidence=0.99)
    assert result.difference > 0 and result.ci_low > 0 and result.p_value < 0.01
    assert result.confidence == 0.99 and set(result.as_dict()) >= {"ci_low", "ci_high", "p_value", "method"}


def test_identical_scores_have_no_spread() -> None:
    defaulted, champion, _ = _scored(200, seed=9)
    result = compare_auc_paired(defaulted, champion, champion)
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("defaulted", "p_challenger", "message"),
    [
        ([0, 1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], r"p_challenger has shape \(4,\) but defaulted has \(5,\)"),
        ([0, 1, 2, 1, 0], [0.1] * 5, r"defaulted must be 0 \(repaid\) or 1 \(defaulted\), found \[2.0\]"),
        ([0, 1, math.nan, 1, 0], [0.1] * 5, "defaulted has 1 missing label"),
        ([0, 0, 0, 1, 0], [0.1] * 5, "at least 2 defaulters and 2 repayers, got 1 and 4"),
        ([0, 1, 0, 1, 0], [0.1, math.inf, 0.2, 0.3, 0.4], "p_challenger has 1 non-finite value"),
    ],
)
def test_bad_input_names_what_is_wrong(defaulted: list[float], p_challenger: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare_auc_paired(defaulted, [0.1, 0.2, 0.3, 0.4, 0.5], p_challenger)


def test_unpaired_errors_name_the_sample_and_confidence_is_checked() -> None:
    with pytest.raises(ValueError, match="defaulted_b needs at least 2 defaulters"):
        compare_auc_unpaired([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 95"):
        compare_auc_paired([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.1, 0.9, 0.2, 0.8], confidence=95)


# -- swap set ---------------------------------------------------------------------------------------------------
def test_swap_set_of_a_hand_made_case() -> None:
    champion = [False, False, False, True, True, False, True, False]
    challenger = [False, True, True, False, True, False, False, False]
    defaulted = pd.array([0, 1, None, None, None, 1, None, 0], dtype="Int64")  # the log's nullable outcomes
    swaps = swap_set(champion, challenger, defaulted)
    assert (swaps.both_approve.count, swaps.both_approve.labelled) == (3, 3)
    assert swaps.both_approve.bad_rate == pytest.approx(1 / 3)
    assert (swaps.approve_to_decline.count, swaps.approve_to_decline.labelled) == (2, 1)
    assert swaps.approve_to_decline.bad_rate == 1.0
    assert (swaps.decline_to_approve.count, swaps.decline_to_approve.labelled) == (2, 0)
    assert math.isnan(swaps.decline_to_approve.bad_rate)
    assert (swaps.both_decline.count, swaps.n) == (1, 8)
    assert swaps.approval_rate_champion == pytest.approx(5 / 8)
    assert swaps.approval_rate_challenger == pytest.approx(5 / 8)
    assert swaps.approval_rate_delta == pytest.approx(0.0)
    table = swaps.to_markdown()
    assert "| approve | decline | 2 | 1 | 100.0% |" in table and "| decline | approve | 2 | 0 | - |" in table
    assert swaps.as_dict()["approve_to_decline"] == {"count": 2, "labelled": 1, "bad_rate": 1.0}


def test_swap_set_without_labels_and_its_errors() -> None:
    swaps = swap_set(np.array([1, 0, 0, 0]), np.array([1, 1, 0, 0]))
    assert swaps.approval_rate_delta == pytest.approx(-0.25) and swaps.both_decline.labelled == 0
    with pytest.raises(ValueError, match="declined_challenger must be booleans or 0/1"):
        swap_set([0, 1], ["approve", "decline"])
    with pytest.raises(ValueError, match="declined_champion has 2 rows but declined_challenger has 3"):
        swap_set([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"defaulted must be 0, 1 or missing, found \[3.0\]"):
        swap_set([0, 1], [0, 1], [3, 0])


# -- PSI / CSI --------------------------------------------------------------------------------------------------
def test_psi_is_zero_for_identical_samples_and_grows_with_the_shift() -> None:
    reference = np.random.default_rng(10).normal(size=5000)
    assert psi(reference, reference.copy()) == pytest.approx(0.0, abs=1e-12)
    small, large = psi(reference, reference + 0.1), psi(reference, reference + 0.5)
    assert 0 < small < large


def test_alarm_threshold_falls_with_the_window_and_holds_its_false_alarm_rate() -> None:
    thresholds = [psi_alarm_threshold(n, n) for n in (200, 2000, 20000)]
    assert thresholds[0] > thresholds[1] > thresholds[2]
    assert thresholds[1] == pytest.approx(2 / 2000 * 21.666, rel=1e-3)  # chi2(9) 99 % quantile is 21.666
    rng = np.random.default_rng(11)
    threshold = psi_alarm_threshold(1000, 1000)
    alarms = sum(psi(rng.normal(size=1000), rng.normal(size=1000)) > threshold for _ in range(400))
    assert alarms / 400 <= 0.04  # 1 % expected when nothing shifted
    shifted = sum(psi(rng.normal(size=1000), rng.normal(0.3, size=1000)) > threshold for _ in range(50))
    assert shifted == 50


def test_csi_merges_tied_bins_and_names_missing_columns() -> None:
    rng = np.random.default_rng(12)
    reference = pd.DataFrame({"delay": rng.integers(-2, 3, 4000), "limit": rng.lognormal(11, 1, 4000)})
    current = pd.DataFrame({"delay": rng.integers(-2, 3, 4000) + 1, "limit": rng.lognormal(11, 1, 4000)})
    result = csi(reference, current, ["delay", "limit"])
    delay, delay_threshold = result["delay"]
    limit, limit_threshold = result["limit"]
    assert delay > delay_threshold  # every applicant one month later: a shift
    assert limit < limit_threshold  # same distribution
    assert delay_threshold == pytest.approx(psi_alarm_threshold(4000, 4000, bins=5))  # 5 codes -> 5 bins
    with pytest.raises(ValueError, match=r"current_frame lacks the column\(s\) \['limit'\]"):
        csi(reference, current.rename(columns={"limit": "age"}), ["delay", "limit"])
    with pytest.raises(ValueError, match="reference column 'delay' has 1 missing"):
        csi(reference.assign(delay=reference["delay"].where(reference.index != 0)), current, ["delay"])
    with pytest.raises(ValueError, match="single value"):
        psi(np.zeros(10), np.ones(10))


# -- fairness of decision vectors -------------------------------------------------------------------------------
def _protected(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sex": rng.integers(1, 3, n),
            "education": rng.integers(1, 4, n),
            "marriage": rng.integers(1, 3, n),
            "age": rng.integers(21, 70, n),
        }
    ).astype("Int64")
    frame.loc[:9, "sex"] = pd.NA  # not every caller sends every attribute
    return frame


def test_disparate_impact_ratios_are_the_fairness_reports() -> None:
    protected = _protected(3000, seed=13)
    declined = np.random.default_rng(14).random(3000) < np.where(protected["marriage"] == 1, 0.3, 0.2)
    ratios = disparate_impact_ratios(protected, declined)
    assert set(ratios) == {"sex", "education", "marriage", "age"}
    present = protected["sex"].notna().to_numpy()
    groups = np.asarray(["male" if s == 1 else "female" for s in protected.loc[present, "sex"]], dtype=object)
    report = fairness_metrics.attribute_report(
        np.zeros(int(present.sum()), dtype="int64"),
        np.zeros(int(present.sum())),
        declined[present].astype("int64"),
        groups,
        "sex",
        min_group_size=30,
    )
    assert ratios["sex"] == pytest.approx(report["summary"]["disparate_impact_ratio"])
    approval = [(~declined[protected["marriage"].to_numpy() == code]).mean() for code in (1, 2)]
    assert ratios["marriage"] == pytest.approx(min(approval) / max(approval))


def test_disparate_impact_needs_two_measurable_groups() -> None:
    protected = _protected(40, seed=15).assign(age=pd.array([None] * 40, dtype="Int64"))
    ratios = disparate_impact_ratios(protected, np.zeros(40, dtype=bool), min_group_size=30)
    assert ratios == {"sex": None, "education": None, "marriage": None, "age": None}
    with pytest.raises(ValueError, match=r"lacks the inference-log column\(s\) \['age'\]"):
        disparate_impact_ratios(protected.drop(columns="age"), np.zeros(40, dtype=bool))


# -- the gate ---------------------------------------------------------------------------------------------------
def _comparison(difference: float, half_width: float, confidence: float = 0.95) -> AucComparison:
    return AucComparison(
        auc_champion=0.77,
        auc_challenger=0.77 + difference,
        difference=difference,
        ci_low=difference - half_width,
        ci_high=difference + half_width,
        confidence=confidence,
        p_value=0.5,
        n=1000,
        n_positive=220,
        method="delong_paired",
        standard_error=half_width / 1.96,
    )


FAIR = {"sex": (0.95, 0.94), "age": (0.90, 0.91)}


def test_insufficient_sample_holds_with_the_exact_text() -> None:
    verdict = promotion_gate("shadow_to_canary", None, 150, 0.78, 0.79, FAIR)
    assert verdict.verdict == "hold"
    assert verdict.reasons == (f"insufficient sample (150 of {slo.PROMOTION.min_labelled})",)


def test_a_non_inferior_challenger_passes_with_every_number_in_its_inputs() -> None:
    auc = _comparison(0.004, 0.015)
    verdict = promotion_gate("canary_to_champion", auc, 800, 0.78, 0.80, FAIR)
    assert verdict.verdict == "pass"
    assert any("non-inferior" in reason and "-0.0110" in reason for reason in verdict.reasons)
    inputs = verdict.inputs
    assert inputs["auc"]["ci_low"] == pytest.approx(-0.011) and inputs["labelled"] == 800
    assert inputs["approval_rate_change"] == pytest.approx(0.02)
    assert inputs["policy"] == dataclasses.asdict(slo.PROMOTION)
    assert inputs["fairness"]["sex"] == {"champion": 0.95, "challenger": 0.94}
    assert verdict.as_dict()["verdict"] == "pass"


def test_a_challenger_worse_beyond_the_margin_fails() -> None:
    verdict = promotion_gate("canary_to_champion", _comparison(-0.06, 0.02), 800, 0.78, 0.78, FAIR)
    assert verdict.verdict == "fail"
    assert verdict.reasons[0].startswith("challenger ROC AUC worse beyond the 0.02 margin")


def test_an_inconclusive_comparison_holds_then_fails_after_enough_labels() -> None:
    auc = _comparison(-0.01, 0.03)  # [-0.04, +0.02] contains -0.02
    held = promotion_gate("shadow_to_canary", auc, 800, 0.78, 0.78, FAIR)
    assert held.verdict == "hold" and "inconclusive on 800 labels" in held.reasons[0]
    limit = slo.PROMOTION.max_labelled_inconclusive
    failed = promotion_gate("shadow_to_canary", auc, limit, 0.78, 0.78, FAIR)
    assert failed.verdict == "fail"
    assert failed.reasons[0].startswith(f"no evidence of non-inferiority after {limit} labels")


def test_the_point_estimate_alone_never_passes() -> None:
    # A challenger that looks better (+0.01) on few labels, with an interval reaching far below the margin.
    verdict = promotion_gate("shadow_to_canary", _comparison(0.01, 0.05), 300, 0.78, 0.78, FAIR)
    assert verdict.verdict == "hold"


def test_an_approval_rate_change_beyond_the_limit_fails() -> None:
    verdict = promotion_gate("canary_to_champion", _comparison(0.004, 0.015), 800, 0.78, 0.65, FAIR)
    assert verdict.verdict == "fail"
    assert verdict.reasons == (
        "approval rate changes too much (champion 78.0% -> challenger 65.0%, -13.0 points; limit 10.0)",
    )


def test_fairness_fails_below_the_floor_or_on_a_drop() -> None:
    auc = _comparison(0.004, 0.015)
    below = promotion_gate("canary_to_champion", auc, 800, 0.78, 0.78, {"sex": (0.85, 0.78)})
    assert below.verdict == "fail" and "the challenger alone is below 0.8" in below.reasons[0]
    dropped = promotion_gate("canary_to_champion", auc, 800, 0.78, 0.78, {"education": (0.97, 0.90)})
    assert dropped.verdict == "fail" and "a fall of more than 0.05" in dropped.reasons[0]
    both_low = promotion_gate("canary_to_champion", auc, 800, 0.78, 0.78, {"age": (0.75, 0.74)})
    assert both_low.verdict == "pass"  # no worse than the champion it replaces
    unmeasured = promotion_gate("canary_to_champion", auc, 800, 0.78, 0.78, {"age": (0.9, None)})
    assert unmeasured.verdict == "hold"


def test_a_fail_outranks_a_hold_and_shadow_traffic_is_counted() -> None:
    verdict = promotion_gate("shadow_to_canary", None, 10, 0.78, 0.50, FAIR)
    assert verdict.verdict == "fail" and len(verdict.reasons) == 1
    assert {c["level"] for c in verdict.inputs["checks"]} == {"fail", "hold", "pass"}
    few = promotion_gate("shadow_to_canary", _comparison(0.004, 0.015), 800, 0.78, 0.78, FAIR, predictions=900)
    assert few.verdict == "hold" and few.reasons == ("insufficient shadow predictions (900 of 1000)",)


def test_gate_input_errors() -> None:
    with pytest.raises(ValueError, match="stage must be one of"):
        promotion_gate("canary", None, 0, 0.5, 0.5, FAIR)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="approval_rate_challenger must be a fraction in"):
        promotion_gate("shadow_to_canary", None, 0, 0.5, 55.0, FAIR)
    with pytest.raises(ValueError, match="the AUC interval is at 90% confidence but the policy requires 95%"):
        promotion_gate("shadow_to_canary", _comparison(0.0, 0.01, confidence=0.9), 500, 0.5, 0.5, FAIR)


def test_non_inferiority_reading() -> None:
    assert non_inferiority(_comparison(0.0, 0.01), 0.02).conclusion == "non_inferior"
    assert non_inferiority(_comparison(-0.05, 0.01), 0.02).conclusion == "inferior"
    assert non_inferiority(_comparison(-0.02, 0.01), 0.02).conclusion == "inconclusive"
    with pytest.raises(ValueError, match="margin must be >= 0"):
        non_inferiority(_comparison(0.0, 0.01), -0.1)
