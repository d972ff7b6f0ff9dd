"""The gate's evidence from scored applications: shadow pairs or past portfolios (paired), canary traffic."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from platform_assets.core import slo
from platform_assets.ml.promotion_evidence import paired_evidence, unpaired_evidence

POLICY = slo.PROMOTION


def applicants(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Protected columns with several well-filled groups, and a latent risk driving the outcome."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-(risk * 1.5 - 1.3)))).astype(int)
    frame = pd.DataFrame(
        {
            "sex": rng.integers(1, 3, n),
            "education": rng.integers(1, 4, n),
            "marriage": rng.integers(1, 3, n),
            "age": rng.integers(22, 65, n),
            "defaulted": pd.array(defaulted, dtype="Int64"),
        }
    )
    return frame, risk


def scores(risk: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(risk + rng.normal(scale=noise, size=len(risk)) - 1.3)))


def decisions(probabilities: np.ndarray, threshold: float = 0.5) -> list[str]:
    return ["decline" if p >= threshold else "approve" for p in probabilities]


def paired(n: int, champion_noise: float, candidate_noise: float, seed: int = 1) -> pd.DataFrame:
    frame, risk = applicants(n, seed)
    a, b = scores(risk, champion_noise, seed + 1), scores(risk, candidate_noise, seed + 2)
    return frame.assign(
        champion_probability=a,
        champion_decision=decisions(a),
        candidate_probability=b,
        candidate_decision=decisions(b),
    )


def test_an_equal_candidate_on_enough_labels_passes_with_every_number_recorded() -> None:
    evidence = paired_evidence(paired(6000, 0.5, 0.5), "shadow_to_canary")
    assert evidence.verdict.verdict == "pass", evidence.verdict.reasons
    document = evidence.document
    json.dumps(document, allow_nan=False)  # strict JSON: it goes into metadata and the lake
    assert document["applications"] == 6000 and document["labelled"] == 6000
    assert document["auc"]["method"] == "delong_paired"
    assert document["auc"]["ci_low"] < document["auc"]["difference"] < document["auc"]["ci_high"]
    assert document["score_psi"] < document["score_psi_threshold"]
    assert set(document["fairness"]) == {"sex", "education", "marriage", "age"}
    assert "| approve | decline |" in evidence.swap_table


def test_a_clearly_worse_candidate_fails_on_its_auc_interval() -> None:
    evidence = paired_evidence(paired(6000, 0.3, 2.5), "shadow_to_canary")
    assert evidence.verdict.verdict == "fail"
    assert any("worse beyond" in r for r in evidence.verdict.reasons), evidence.verdict.reasons


def test_few_labels_hold_with_the_sample_named() -> None:
    frame = paired(3000, 0.5, 0.5)
    frame.loc[frame.index[50:], "defaulted"] = pd.NA  # labels arrive late: 50 of 3,000 so far
    evidence = paired_evidence(frame, "shadow_to_canary")
    assert evidence.verdict.verdict == "hold"
    assert f"insufficient sample (50 of {POLICY.min_labelled})" in evidence.verdict.reasons
    assert evidence.document["label_coverage"] == pytest.approx(50 / 3000)


def canary(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each application answered by one version of equal skill."""
    champion, risk_a = applicants(n, 5)
    challenger, risk_b = applicants(n, 6)
    for frame, risk, seed in ((champion, risk_a, 7), (challenger, risk_b, 8)):
        p = scores(risk, 0.5, seed)
        frame["probability"], frame["decision"] = p, decisions(p)
    return champion, challenger


def test_a_canary_is_judged_on_two_populations_which_need_more_labels_than_pairs() -> None:
    # Unpaired, the two AUCs' sampling errors add up: 4,000 labels a version leave the interval wider than the
    # margin, so the gate holds rather than promote on noise; 20,000 a version settle it.
    evidence = unpaired_evidence(*canary(4000))
    assert evidence.document["auc"]["method"] == "delong_unpaired"
    assert evidence.document["labelled"] == {"champion": 4000, "challenger": 4000}
    assert evidence.verdict.verdict == "hold" and "inconclusive" in evidence.verdict.reasons[0]
    settled = unpaired_evidence(*canary(20_000))
    assert settled.verdict.verdict == "pass", settled.verdict.reasons


def test_missing_columns_and_empty_frames_are_named() -> None:
    with pytest.raises(ValueError, match="candidate_probability"):
        paired_evidence(paired(10, 0.5, 0.5).drop(columns="candidate_probability"), "shadow_to_canary")
    with pytest.raises(ValueError, match="no application was scored by both"):
        paired_evidence(paired(10, 0.5, 0.5).iloc[:0], "shadow_to_canary")
