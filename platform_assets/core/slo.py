"""Every service-level objective and gate threshold of the platform, defined once.

``python grafana/generate.py`` writes them into the Prometheus rules (``grafana/prometheus/rules.yml``), the
Argo image-rollout analysis (``k8s/base/analysis-template.yaml``) and the Grafana dashboard; the Dagster resources
(``platform_assets/resources``) and the loop's policies (``platform_assets/ml``) take their defaults from
here. ``tests/ops/test_ops_slo.py`` fails when a generated file or a default disagrees.

Units: latency in seconds; shares, error rates, ROC AUC and accuracy as fractions in [0, 1] (0.01 is 1 %);
traffic weights in percent (0..100); waiting times in hours. Each family is a frozen record without
defaults of its own, so the constants below are the only place a value is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: How the accuracy-drop sensor compares live quality: against validation (``relative``), against an
#: absolute floor (``absolute``) or both, one breach being enough (``either``).
DropMode = Literal["relative", "absolute", "either"]


@dataclass(frozen=True)
class ServiceObjectives:
    """What the credit-risk service promises its callers, over any 5-minute window."""

    #: 99th percentile of request latency, seconds.
    latency_p99_seconds: float
    #: The endpoints the latency objective covers: the ones callers use (not /metrics, the probes, /admin).
    latency_endpoints: tuple[str, ...]
    #: Share of requests answered with a server error (5xx), a ratio; 4xx are the callers' mistakes.
    error_ratio: float


@dataclass(frozen=True)
class CanaryGate:
    """When a challenger model version's traffic may grow (the canary sensor; images have slo.SERVICE)."""

    #: Challenger traffic weights, percent, increasing; reaching 100 is the promotion.
    steps: tuple[float, ...]
    #: Labelled outcomes each version needs in a step before quality is judged, rows.
    min_labelled: int
    #: Largest allowed challenger ROC AUC below the champion's, AUC points (a difference of fractions).
    max_auc_drop: float
    #: Largest allowed challenger accuracy below the champion's, accuracy points (a difference of fractions).
    max_accuracy_drop: float
    #: Largest allowed share of 5xx answers of the challenger's ``/predict`` requests, a ratio.
    max_error_rate: float
    #: ... and by how much it may exceed the champion's before the challenger is blamed, ratio points (a
    #: service-wide incident fails both roles alike: that pauses the canary, it does not roll it back).
    max_error_rate_excess: float
    #: Largest allowed ``/predict`` latency p99 of the challenger's requests, seconds.
    max_p99_seconds: float
    #: Requests the challenger needs before its error rate and latency count, requests.
    min_requests: int


@dataclass(frozen=True)
class DriftGate:
    """When input drift requests a retrain."""

    #: Share of drifted model inputs in a ``data_drift_report`` that counts as dataset drift, a ratio.
    drift_share: float
    #: Confidence of the PSI/CSI alarm's critical value (``ml/population_stability.py``): a stable population
    #: raises a false alarm with probability 1 - this, a fraction.
    psi_confidence: float


@dataclass(frozen=True)
class AccuracyDropGate:
    """When the champion's live quality counts as dropped (the accuracy-drop sensor)."""

    #: ``relative``, ``absolute`` or ``either`` (see ``DropMode``).
    mode: DropMode
    #: Lowest acceptable live accuracy in ``absolute`` mode, a fraction.
    accuracy_floor: float
    #: Largest allowed live ROC AUC below the validation ROC AUC, AUC points.
    max_auc_drop: float
    #: Largest allowed live accuracy below the validation accuracy, accuracy points.
    max_accuracy_drop: float
    #: Labelled outcomes before the test applies, rows.
    min_labelled: int
    #: Hours before a still-dropped model may request another retrain.
    retrigger_hours: float
    #: With fewer than ``min_labelled`` outcomes, test the performance estimated from the calibrated
    #: probabilities instead (``estimated_performance``); False: wait for outcomes.
    use_estimate: bool
    #: Predictions of the champion in the window before its estimate is tested, rows.
    min_predictions_for_estimate: int
    #: Largest allowed estimated ROC AUC below the validation ROC AUC, AUC points.
    max_estimated_auc_drop: float
    #: Largest allowed estimated accuracy below the validation accuracy, accuracy points.
    max_estimated_accuracy_drop: float


@dataclass(frozen=True)
class ModelQualityGate:
    """The blocking checks between training and deployment."""

    #: Lowest test ROC AUC of the CNN, a fraction.
    auc_floor: float
    #: Largest amount the CNN's test ROC AUC may trail the best baseline's by, AUC points.
    baseline_margin: float
    #: Largest share of a partition's rows that may be quarantined, a ratio.
    max_quarantine_share: float
    #: Largest difference between the served ONNX model and Keras on any validation row, a probability.
    onnx_max_abs_diff: float


@dataclass(frozen=True)
class FairnessGate:
    """The blocking fairness gate on the test split, and the live-bias alert."""

    #: Lowest group approval rate / highest, a ratio (the four-fifths rule).
    min_disparate_impact_ratio: float
    #: Largest gap in true positive rate between groups, a difference of rates.
    max_equal_opportunity_difference: float
    #: The live ratio's window (the recording rules' range), minutes.
    live_window_minutes: int
    #: Decisions a group needs in that window to enter the live ratio, applications.
    live_min_group_decisions: int


@dataclass(frozen=True)
class PromotionGate:
    """When a challenger may go from shadow scoring to canary traffic, and from canary to champion
    (``ml/promotion_stats.promotion_gate``)."""

    #: Labelled outcomes the AUC comparison needs before it is judged at all, applicants.
    min_labelled: int
    #: Non-inferiority margin: the challenger's ROC AUC may be at most this much below the champion's, AUC points.
    auc_margin: float
    #: Two-sided confidence of the interval of the AUC difference, a fraction (0.95 is a one-sided 2.5 % test).
    confidence: float
    #: Labelled outcomes after which an inconclusive comparison fails instead of holding, applicants.
    max_labelled_inconclusive: int
    #: Largest change of the approval rate, challenger - champion, in either direction, rate points.
    max_approval_rate_change: float
    #: Lowest disparate-impact ratio (lowest group approval rate / highest) the challenger may have when the
    #: champion's is at least this, a ratio.
    min_disparate_impact: float
    #: Largest fall of the challenger's disparate-impact ratio below the champion's, ratio points.
    max_disparate_impact_drop: float
    #: Applications both versions scored in shadow before its approval rates and ratios count, applications.
    shadow_min_predictions: int
    #: How long a signed human approval of a promotion stays valid, hours.
    approval_valid_hours: float
    #: Longest validity an approver may give a promotion approval (``core.approval``), hours.
    approval_max_valid_hours: float


@dataclass(frozen=True)
class RegistryObjectives:
    """How long a service replica may go without reading the model registry (MLflow) before it is an alert."""

    #: Longest time since a replica's last successful registry read, seconds. Until then it keeps serving the
    #: versions it loaded, but a promotion or a rollback (an alias change) does not reach it.
    max_staleness_seconds: float


@dataclass(frozen=True)
class ChallengerAlerts:
    """Alerts comparing a live challenger with the champion (``grafana/prometheus/rules.yml``)."""

    #: A challenger's 5xx ratio may exceed the champion's by this much before paging, ratio points.
    max_error_ratio_excess: float
    #: Below this fraction of its configured traffic weight, the challenger is falling short, a ratio.
    min_prediction_share_of_weight: float
    #: Largest difference between the two roles' mean probability of default, a probability.
    max_mean_score_shift: float


#: The measured p99 of /predict at 32 concurrent connections is 13 ms (README, serving benchmark), so a
#: 25 ms objective leaves about twice the headroom and still means something. The 5xx ratio is 1 %, the
#: stricter of the two values found: a healthy service answers no 5xx at all (only a model error or a
#: model not loaded does), and one unscored application in a hundred is already an incident. With 2 % the
#: fleet could sit at 1.9 % without paging while every canary at that rate was rolled back.
SERVICE: Final = ServiceObjectives(
    latency_p99_seconds=0.025, latency_endpoints=("/predict", "/feedback"), error_ratio=0.01
)

#: The canary is held to the service's own objectives: the 0.5 s p99 it had before would have let a
#: challenger 20x slower than the service's p99 through to promotion.
CANARY: Final = CanaryGate(
    steps=(10.0, 50.0, 100.0),
    min_labelled=200,
    max_auc_drop=0.03,
    max_accuracy_drop=0.03,
    max_error_rate=SERVICE.error_ratio,
    max_error_rate_excess=0.01,
    max_p99_seconds=SERVICE.latency_p99_seconds,
    min_requests=20,
)

#: 0.99: a PSI alarm per hundred stable windows is as often as anyone will look at one without ignoring it.
DRIFT: Final = DriftGate(drift_share=0.5, psi_confidence=0.99)

#: The estimate is tested against the same margins as the realized metrics: it estimates those metrics. It stays
#: off by default (a retrain on an estimate is an operator's choice). On 1,000 UCI applications scored by a
#: calibrated model the estimated ROC AUC varies by 0.005 (standard deviation over samples) and those
#: applications' realized AUC by 0.017 around it, so the 0.05 margin is about three of the larger spread.
ACCURACY_DROP: Final = AccuracyDropGate(
    mode="relative",
    accuracy_floor=0.85,
    max_auc_drop=0.05,
    max_accuracy_drop=0.10,
    min_labelled=200,
    retrigger_hours=24.0,
    use_estimate=False,
    min_predictions_for_estimate=1000,
    max_estimated_auc_drop=0.05,
    max_estimated_accuracy_drop=0.10,
)

#: 1e-5 in probability is far below any threshold's resolution, and float32 rounding of the same graph in two
#: runtimes stays near 1e-7: a larger gap means the export computes something else.
MODEL_QUALITY: Final = ModelQualityGate(
    auc_floor=0.70, baseline_margin=0.02, max_quarantine_share=0.05, onnx_max_abs_diff=1e-5
)

#: The live window is the in-process window's old default (600 s); 30 decisions per group keep one odd
#: decision from moving a group's rate by more than a few points.
FAIRNESS: Final = FairnessGate(
    min_disparate_impact_ratio=0.8,
    max_equal_opportunity_difference=0.1,
    live_window_minutes=10,
    live_min_group_decisions=30,
)

#: Measured on UCI for two HistGradientBoosting models trained on different halves (similar models, the usual
#: challenger): the paired DeLong standard error of the AUC difference is 0.033 at 200 labels, 0.010 at 2,000 and
#: 0.0066 at 5,000 (median of 20 samples each). 200 labels (the canary's own minimum) cannot show non-inferiority
#: within 0.02 unless the challenger is clearly better; at 5,000 an equally good challenger is shown non-inferior
#: with about 86 % probability (0.02 / 0.0066 = 3.0 standard errors against 1.96), so an interval still
#: straddling the margin there is evidence against it. The 10-point approval-rate change is a credit-policy
#: change, not a model change; the disparate-impact floor is the fairness gate's four-fifths rule.
PROMOTION: Final = PromotionGate(
    min_labelled=200,
    auc_margin=0.02,
    confidence=0.95,
    max_labelled_inconclusive=5000,
    max_approval_rate_change=0.10,
    min_disparate_impact=FAIRNESS.min_disparate_impact_ratio,
    max_disparate_impact_drop=0.05,
    shadow_min_predictions=1000,
    approval_valid_hours=72.0,
    # An approval older than a month approves a situation nobody has looked at recently.
    approval_max_valid_hours=720.0,
)

#: Five minutes is 60 polls at the default 5-s interval: an MLflow server restart (about 30 s on the prod
#: profile) stays quiet, while a rollback that has not reached the replicas for five minutes is worth a look.
REGISTRY: Final = RegistryObjectives(max_staleness_seconds=300.0)

#: The alert pages at the excess the canary rolls back at.
CHALLENGER_ALERTS: Final = ChallengerAlerts(
    max_error_ratio_excess=CANARY.max_error_rate_excess, min_prediction_share_of_weight=0.5, max_mean_score_shift=0.1
)
