"""Confidence-based performance estimation (CBPE): a model's ROC AUC and accuracy before the outcomes arrive.

Method (NannyML's CBPE: https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html): if the
probabilities of default ``p_i`` are calibrated on the population being scored, applicant ``i`` defaults with
probability ``p_i``, so each applicant contributes ``p_i`` of a defaulter and ``1 - p_i`` of a repayer to every
cell of the confusion matrix. At a threshold ``t`` (declined when ``p >= t``) the expected counts are
``TP = sum p [p >= t]``, ``FP = sum (1 - p) [p >= t]``, ``FN = sum p [p < t]``, ``TN = sum (1 - p) [p < t]``;
the expected accuracy is ``(TP + TN) / n``. The ROC curve is the expected TPR and FPR at every threshold (the
scores in decreasing order), and its area (trapezoids) is the estimated ROC AUC.

What it assumes, and when it is wrong: calibration on the *current* population (P(default | score) unchanged).
Covariate shift is fine (that is what it is for: the score distribution moves, the estimate follows it); a
concept shift (the same score now means another default rate) or a model that was never calibrated makes it
wrong with no warning from the method itself. ``estimate_auc_interval`` gives the spread of the realized AUC
around the estimate under the same assumption: a realized AUC well outside it means the calibration no longer
holds.

Measured on UCI (``tests/unit/test_performance_estimation.py``: HistGradientBoosting on 12,000 rows, Platt or
isotonic on 6,000, 7,000 test rows): over six random splits the estimate was within 0.003-0.036 of the realized
test AUC, within 0.03 in five. Two ways to get it wrong, measured in the same setup: (1) a subset selected on
information the probability does not carry is not calibrated: on the applicants a *champion* approved, CBPE
overestimated the challenger's labelled AUC by 0.005-0.06 over four splits (among the approved, fewer default
than ``p`` says), so estimate on every scored applicant, not on the labelled ones; (2) probabilities calibrated
only on approved applicants understate the risk of those usually declined, and the estimate on everyone came
out 0.02-0.05 too low in our runs: calibrate on a sample that covers the scored population.

NannyML itself is not a dependency: 0.13.1 needs FLAML, LightGBM < 4.6, gcsfs/s3fs, kaleido and more, and pip
finds no resolution with this project's pins (``fsspec`` among others); the method is a few lines of numpy.
No Dagster and no I/O here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

#: The method's name in ``EstimatedPerformance.method``.
CBPE: Final = "cbpe"


@dataclass(frozen=True)
class EstimatedPerformance:
    """Expected quality of decisions at ``threshold`` (declined when ``p >= threshold``) on ``n`` applicants.

    ``roc_auc``, ``accuracy`` and ``expected_default_rate`` are fractions; the confusion-matrix cells are expected
    numbers of applicants (not integers).
    """

    roc_auc: float
    accuracy: float
    n: int
    method: str
    threshold: float
    expected_true_positives: float
    expected_false_positives: float
    expected_false_negatives: float
    expected_true_negatives: float
    expected_default_rate: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probabilities(probabilities: Any) -> np.ndarray:
    p = np.asarray(probabilities, dtype="float64")
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"probabilities must be a non-empty one-dimensional vector, got shape {p.shape}")
    bad = int(np.count_nonzero(~((p >= 0.0) & (p <= 1.0))))
    if bad:
        raise ValueError(f"probabilities must be probabilities of default in [0, 1]: {bad} value(s) are not")
    return p


def expected_roc_auc(probabilities: Any) -> float:
    """CBPE's ROC AUC: the area under the expected ROC curve of calibrated probabilities of default."""
    p = _probabilities(probabilities)
    positives, negatives = float(p.sum()), float((1.0 - p).sum())
    if positives == 0.0 or negatives == 0.0:
        raise ValueError("ROC AUC cannot be estimated: every probability is 0 (or every one is 1)")
    ordered = np.sort(p)[::-1]
    # One point per distinct score: tied applicants move the curve together, as tied scores do in roc_curve.
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    tpr = np.r_[0.0, np.cumsum(ordered)[last_of_tie] / positives]
    fpr = np.r_[0.0, np.cumsum(1.0 - ordered)[last_of_tie] / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def estimate_performance(probabilities: Any, threshold: float) -> EstimatedPerformance:
    """CBPE of calibrated ``probabilities`` of default: expected confusion matrix, accuracy at ``threshold`` and
    ROC AUC, without any outcome."""
    p = _probabilities(probabilities)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
    declined = p >= threshold
    tp, fp = float(p[declined].sum()), float((1.0 - p[declined]).sum())
    fn, tn = float(p[~declined].sum()), float((1.0 - p[~declined]).sum())
    return EstimatedPerformance(
        roc_auc=expected_roc_auc(p),
        accuracy=(tp + tn) / len(p),
        n=len(p),
        method=CBPE,
        threshold=float(threshold),
        expected_true_positives=tp,
        expected_false_positives=fp,
        expected_false_negatives=fn,
        expected_true_negatives=tn,
        expected_default_rate=float(p.mean()),
    )


def estimate_auc_interval(
    probabilities: Any, confidence: float = 0.95, draws: int = 400, seed: int = 0
) -> tuple[float, float]:
    """Where the realized ROC AUC of these applicants falls with probability ``confidence`` if the probabilities
    are calibrated: quantiles of the AUC over ``draws`` simulated outcome vectors ``y ~ Bernoulli(p)`` (seeded,
    so one input always gives one interval). The scores are fixed, so each draw's AUC is the Mann-Whitney
    statistic from one midranking: O(draws * n)."""
    from scipy import stats

    p = _probabilities(probabilities)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if draws < 10:
        raise ValueError(f"draws must be at least 10, got {draws}")
    ranks = stats.rankdata(p)
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(draws):
        outcome = rng.random(len(p)) < p
        m = int(outcome.sum())
        if 0 < m < len(p):
            aucs.append((float(ranks[outcome].sum()) - m * (m + 1) / 2.0) / (m * (len(p) - m)))
    if len(aucs) < draws // 2:
        raise ValueError(f"only {len(aucs)} of {draws} simulated samples had both outcomes: too few applicants")
    low, high = np.quantile(aucs, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)
