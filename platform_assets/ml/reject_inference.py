"""Reject inference by reweighting: train on the approved applicants as if they were the whole applicant flow.

Outcomes exist only for applications the champion approved, so a model retrained on them learns the approved
population: fewer high-risk applicants than arrive at the door. Inverse probability weighting (IPW) gives each
labelled applicant the weight ``1 / P(approved | features)``: an approved applicant who looked like those usually
declined stands in for them. The approval probability comes from a model of the champion's decisions
(``fit_approval_model``: logistic regression of approved ~ features on *every* applicant, labelled or not; the
features of the declined are known, only their outcome is not).

What it cannot do: IPW corrects for who was selected only where the champion sometimes approves (positivity).
A deterministic cut-off declines everyone beyond it, so no weight recovers that region; the logistic approval
model smooths the cut-off and gives the approved near it large weights, which is all it can do. Random
exploration (approving a small share of would-be declines) is what makes the weights valid there.

Weights are clipped: approval probabilities below ``min_probability`` (default 0.05, so a weight is at most 20
before normalisation) are raised to it, trading a little bias for a bounded variance (weight truncation, Cole &
Hernan 2008, "Constructing inverse probability weights for marginal structural models", Am J Epidemiol 168(6)).
Weights are then scaled to mean 1, so a learner's regularisation sees the same total weight as unweighted rows.

Training on a lake-sized split (``inverse_approval_weights_of``): the approval model is fitted on a seeded sample
of every training applicant (at most ``max_fit_rows``, like the baselines' cap), then one streamed pass over the
labelled training rows sets the normaliser and the effective sample size; each row's weight is then computed from
its own features as it is read (``weights_of``), so memory does not grow with the training split.

No Dagster and no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from platform_assets.core.model_version import InverseApprovalWeights
from platform_assets.ml.dataset import ModellingDataset, flat_inputs

#: Floor on the approval probability behind a weight: weights stay at most 1 / 0.05 = 20 before normalisation.
DEFAULT_MIN_APPROVAL_PROBABILITY: Final = 0.05
#: Most training applicants the approval model is fitted on (a seeded sample of a larger split): the baselines' cap.
DEFAULT_APPROVAL_FIT_ROWS: Final = 200_000


@dataclass(frozen=True)
class ApprovalModel:
    """P(approved | features) of the champion's decisions: standardised features, logistic regression."""

    pipeline: Pipeline
    #: Applicants it was fitted on, and the share the champion approved among them (a fraction).
    rows: int
    approval_rate: float


def _features(features: Any, name: str = "features") -> np.ndarray:
    array = np.asarray(features, dtype="float64")
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty (applicants x features) matrix, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has {int(np.count_nonzero(~np.isfinite(array)))} non-finite value(s)")
    return array


def _approved(approved: Any, rows: int) -> np.ndarray:
    array = np.asarray(approved)
    if array.shape != (rows,):
        raise ValueError(f"approved has shape {array.shape} but features have {rows} rows")
    if array.dtype != bool and not set(np.unique(array).tolist()) <= {0, 1}:
        raise ValueError(f"approved must be booleans or 0/1 (1 = approved), found {sorted(set(array.tolist()))[:5]}")
    flags = array.astype(bool)
    if flags.all() or not flags.any():
        raise ValueError(f"approved must hold both decisions to model them, got {int(flags.sum())} of {rows} approved")
    return flags


def fit_approval_model(features: Any, approved: Any, regularization: float = 1.0) -> ApprovalModel:
    """Logistic regression of the champion's decisions (``approved``, one per applicant) on ``features`` of all
    applicants; ``regularization`` is sklearn's ``C`` (inverse L2 strength)."""
    x = _features(features)
    flags = _approved(approved, len(x))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=2000))
    pipeline.fit(x, flags.astype("int64"))
    return ApprovalModel(pipeline=pipeline, rows=len(x), approval_rate=float(flags.mean()))


def approval_probability(model: ApprovalModel, features: Any) -> np.ndarray:
    """P(approved | features) per applicant, a probability in (0, 1)."""
    probabilities: np.ndarray = model.pipeline.predict_proba(_features(features))[:, 1]
    return probabilities


def inverse_approval_weights(
    approval_probabilities: Any, min_probability: float = DEFAULT_MIN_APPROVAL_PROBABILITY
) -> np.ndarray:
    """``1 / max(p, min_probability)`` per approved applicant, scaled to mean 1 (see the module docstring)."""
    if not 0.0 < min_probability <= 1.0:
        raise ValueError(f"min_probability must be in (0, 1], got {min_probability}")
    p = np.asarray(approval_probabilities, dtype="float64")
    if p.ndim != 1 or len(p) == 0 or not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError("approval_probabilities must be a non-empty vector of probabilities in [0, 1]")
    weights = 1.0 / np.maximum(p, min_probability)
    normalised: np.ndarray = weights / weights.mean()
    return normalised


def reject_inference_weights(
    features: Any,
    approved: Any,
    min_probability: float = DEFAULT_MIN_APPROVAL_PROBABILITY,
    regularization: float = 1.0,
) -> np.ndarray:
    """Sample weights for the labelled (approved) applicants, in their order in ``features[approved]``: fit the
    approval model on every applicant, then ``inverse_approval_weights`` of the approved ones."""
    x = _features(features)
    flags = _approved(approved, len(x))
    model = fit_approval_model(x, flags, regularization)
    return inverse_approval_weights(approval_probability(model, x[flags]), min_probability)


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``, applicants: what the weights leave of the sample."""
    w = np.asarray(weights, dtype="float64")
    if w.ndim != 1 or len(w) == 0 or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("weights must be a non-empty vector of non-negative numbers, not all 0")
    return float(w.sum() ** 2 / np.sum(w * w))


def _raw_weights(spec: InverseApprovalWeights, flat: np.ndarray) -> np.ndarray:
    scaled = (np.asarray(flat, dtype="float64") - np.asarray(spec.feature_means)) / np.asarray(spec.feature_scales)
    probability = 1.0 / (1.0 + np.exp(-(scaled @ np.asarray(spec.coefficients) + spec.intercept)))
    raw: np.ndarray = 1.0 / np.maximum(probability, spec.min_probability)
    return raw


def weights_of(spec: InverseApprovalWeights, flat: np.ndarray) -> np.ndarray:
    """The recorded weights of applicants with flat inputs ``flat`` (rows x features): mean 1 over the labelled
    training rows they were normalised on."""
    if flat.ndim != 2 or flat.shape[1] != len(spec.coefficients):
        raise ValueError(f"flat inputs have shape {flat.shape}; the approval model takes {len(spec.coefficients)}")
    return _raw_weights(spec, flat) / spec.normaliser


def inverse_approval_weights_of(
    data: ModellingDataset,
    seed: int,
    max_fit_rows: int = DEFAULT_APPROVAL_FIT_ROWS,
    min_probability: float = DEFAULT_MIN_APPROVAL_PROBABILITY,
    regularization: float = 1.0,
) -> InverseApprovalWeights:
    """The weights of ``data``'s labelled training rows (``data`` selected by the champion's decisions): the
    approval model fitted on at most ``max_fit_rows`` training applicants, approved or not (a seeded sample), then
    one pass over the labelled rows for the mean-1 normaliser and Kish's effective sample size."""
    if data.selection is None:
        raise ValueError("reweighting needs a dataset selected by the champion's decisions (outcomes='approved')")
    if not 0.0 < min_probability <= 1.0:
        raise ValueError(f"min_probability must be in (0, 1], got {min_probability}")
    applicants = data.through_the_door().sample("train", max_fit_rows, seed)
    model = fit_approval_model(applicants.flat(), data.selection.approved_mask(applicants.ids), regularization)
    scaler, logistic = model.pipeline[0], model.pipeline[-1]
    unnormalised = InverseApprovalWeights(
        feature_means=tuple(float(v) for v in scaler.mean_),
        feature_scales=tuple(float(v) for v in scaler.scale_),
        coefficients=tuple(float(v) for v in logistic.coef_[0]),
        intercept=float(logistic.intercept_[0]),
        min_probability=min_probability,
        normaliser=1.0,
        fitted_rows=model.rows,
        approval_rate=model.approval_rate,
        effective_sample_size=1.0,
    )
    total, squares, rows = 0.0, 0.0, 0
    for chunk in data.chunks("train"):
        raw = _raw_weights(unnormalised, flat_inputs(chunk.features))
        total, squares, rows = total + float(raw.sum()), squares + float(np.square(raw).sum()), rows + len(raw)
    if rows == 0:
        raise ValueError("the training split has no labelled (approved) rows to weight")
    return unnormalised.model_copy(update={"normaliser": total / rows, "effective_sample_size": total**2 / squares})
