"""ROC AUC of a challenger against the champion's, with DeLong's variance: paired (shadow) or unpaired (canary).

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver operating
characteristic curves: a nonparametric approach", Biometrics 44(3). The AUC is the Mann-Whitney statistic
``P(score of a defaulter > score of a repayer)`` (ties count one half), the same number as sklearn's
``roc_auc_score(defaulted, p)``. Its variance comes from the *structural components*: for each defaulter the
share of repayers it outscores (V10), for each repayer the share of defaulters that outscore it (V01), and
``Var(AUC) = Var(V10) / m + Var(V01) / n`` with ``m`` defaulters and ``n`` repayers. Sun & Xu (2014), "Fast
implementation of DeLong's algorithm", IEEE Signal Processing Letters 21(11), obtain the components from three
midrankings, so the cost is O(N log N) instead of O(m n).

*Paired* (``compare_auc_paired``): the same applicants scored by both models (shadow scoring). The two AUCs are
correlated and the variance of the difference takes the covariance of the components,
``Var(d) = Var(A) + Var(B) - 2 Cov(A, B)``: far tighter than treating them as independent.
*Unpaired* (``compare_auc_unpaired``): each model scored other applicants (canary traffic split), the AUCs are
independent and ``Var(d) = Var(A) + Var(B)``.

The interval is the normal (Wald) interval of the difference at ``confidence`` and the p-value is two-sided for
H0: difference = 0. No Dagster and no I/O here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
from scipy import stats

AucMethod = Literal["delong_paired", "delong_unpaired"]

#: Defaulters and repayers each sample needs: the components' variances divide by (count - 1).
MIN_CLASS_COUNT: Final = 2


@dataclass(frozen=True)
class AucComparison:
    """Challenger against champion on ROC AUC (fractions in [0, 1]; the difference and interval in AUC points).

    ``n`` and ``n_positive`` count the labelled applicants and the defaulters among them over both samples
    when unpaired; ``standard_error`` is the difference's DeLong standard error, AUC points.
    """

    auc_champion: float
    auc_challenger: float
    #: challenger - champion, AUC points.
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    #: Two-sided, H0: difference = 0.
    p_value: float
    n: int
    n_positive: int
    method: AucMethod
    standard_error: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _validated(
    defaulted: Any, scores: dict[str, Any], confidence: float, name: str = "defaulted"
) -> tuple[np.ndarray, list[np.ndarray]]:
    """0/1 labels and finite float64 scores of equal length, or a ValueError naming the offending input
    (``name`` is the labels' argument name)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    labels = np.asarray(defaulted, dtype="float64")
    if labels.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {labels.shape}")
    unlabelled = int(np.count_nonzero(~np.isfinite(labels)))
    if unlabelled:
        raise ValueError(f"{name} has {unlabelled} missing label(s): pass only the labelled applicants")
    unexpected = sorted(set(np.unique(labels).tolist()) - {0.0, 1.0})
    if unexpected:
        raise ValueError(f"{name} must be 0 (repaid) or 1 (defaulted), found {unexpected[:5]}")
    positives = int(labels.sum())
    if min(positives, len(labels) - positives) < MIN_CLASS_COUNT:
        raise ValueError(
            f"{name} needs at least {MIN_CLASS_COUNT} defaulters and {MIN_CLASS_COUNT} repayers, "
            f"got {positives} and {len(labels) - positives}"
        )
    arrays = []
    for score_name, values in scores.items():
        array = np.asarray(values, dtype="float64")
        if array.shape != labels.shape:
            raise ValueError(f"{score_name} has shape {array.shape} but {name} has {labels.shape}: one score per label")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{score_name} has {int(np.count_nonzero(~np.isfinite(array)))} non-finite value(s)")
        arrays.append(array)
    return labels.astype("int64"), arrays


def delong_components(defaulted: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and structural components V10 ``(k, m)`` and V01 ``(k, n)`` of ``k`` score rows ``(k, N)``.

    Sun & Xu's midranks: with ``T_Z`` the midrank of a score among all N, ``T_X`` among the defaulters and
    ``T_Y`` among the repayers, ``V10 = (T_Z - T_X) / n`` and ``V01 = 1 - (T_Z - T_Y) / m``.
    """
    positive = defaulted == 1
    defaulters, repayers = scores[:, positive], scores[:, ~positive]
    m, n = defaulters.shape[1], repayers.shape[1]
    rank_z = stats.rankdata(np.concatenate([defaulters, repayers], axis=1), axis=1)
    rank_x = stats.rankdata(defaulters, axis=1)
    rank_y = stats.rankdata(repayers, axis=1)
    aucs = (rank_z[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (rank_z[:, :m] - rank_x) / n
    v01 = 1.0 - (rank_z[:, m:] - rank_y) / m
    return aucs, v10, v01


def delong_covariance(defaulted: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and their DeLong covariance matrix ``(k, k)``, AUC points squared."""
    aucs, v10, v01 = delong_components(defaulted, scores)
    covariance = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, covariance


def z_score(confidence: float) -> float:
    """The standard normal quantile of a two-sided interval at ``confidence`` (1.96 at 0.95)."""
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def _comparison(
    aucs: tuple[float, float], variance: float, confidence: float, n: int, n_positive: int, method: AucMethod
) -> AucComparison:
    difference = aucs[1] - aucs[0]
    se = math.sqrt(max(variance, 0.0))
    if se > 0.0:
        half_width = z_score(confidence) * se
        p_value = float(math.erfc(abs(difference) / se / math.sqrt(2.0)))
    else:  # identical rankings (or a perfect separation by both): no sampling spread of the difference
        half_width, p_value = 0.0, 1.0 if difference == 0.0 else 0.0
    return AucComparison(
        auc_champion=aucs[0],
        auc_challenger=aucs[1],
        difference=difference,
        ci_low=difference - half_width,
        ci_high=difference + half_width,
        confidence=confidence,
        p_value=p_value,
        n=n,
        n_positive=n_positive,
        method=method,
        standard_error=se,
    )


def compare_auc_paired(defaulted: Any, p_champion: Any, p_challenger: Any, confidence: float = 0.95) -> AucComparison:
    """DeLong's paired test: ``defaulted`` (0/1) of applicants that both models scored (probabilities of default)."""
    labels, (champion, challenger) = _validated(
        defaulted, {"p_champion": p_champion, "p_challenger": p_challenger}, confidence
    )
    aucs, covariance = delong_covariance(labels, np.vstack([champion, challenger]))
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    auc_pair = (float(aucs[0]), float(aucs[1]))
    return _comparison(auc_pair, variance, confidence, len(labels), int(labels.sum()), "delong_paired")


def compare_auc_unpaired(
    defaulted_a: Any, p_a: Any, defaulted_b: Any, p_b: Any, confidence: float = 0.95
) -> AucComparison:
    """DeLong's variance of each AUC on independent samples: ``a`` the champion's applicants, ``b`` the
    challenger's; the difference's variance is the sum."""
    aucs, variance, n, positives = [], 0.0, 0, 0
    for side, defaulted, p in (("a", defaulted_a, p_a), ("b", defaulted_b, p_b)):
        labels, (scores,) = _validated(defaulted, {f"p_{side}": p}, confidence, name=f"defaulted_{side}")
        auc, covariance = delong_covariance(labels, scores.reshape(1, -1))
        aucs.append(float(auc[0]))
        variance += float(covariance[0, 0])
        n, positives = n + len(labels), positives + int(labels.sum())
    return _comparison((aucs[0], aucs[1]), variance, confidence, n, positives, "delong_unpaired")
