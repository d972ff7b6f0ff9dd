"""Calibration: from a model's raw score (its logit) to a probability of default that means what it says.

Class weighting trains every model on balanced classes, so its scores overstate the default rate. A
calibration is fitted on the validation split, Platt (a logistic curve on the logit) or isotonic (a
non-decreasing piecewise-linear curve), whichever has the lower cross-validated log-loss there; the test
split is never used. With reject inference the validation split holds the approved only, so every fit and the
cross-validated log-loss take the validation rows' inverse-approval weights (``sample_weight``): the curve then
lands on the applicant flow's default rate, not the approved population's. For the CNN it becomes the last
layers of the served Keras model (``calibrated_model``), built from layers the serving runtime already runs,
so ``/predict`` returns the calibrated probability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from platform_assets.core.model_version import Calibration

if TYPE_CHECKING:
    import keras

#: Cross-validation folds (within the validation split) that choose the method.
FOLDS: Final = 5
#: Isotonic knots closer than this (in logit) are merged: it bounds the curve's slope, so float32 rounding
#: of the logit moves the served probability by well under 1e-5.
MIN_KNOT_GAP: Final = 0.1
#: A calibrated PD is never 0 or 1: the isotonic curve is kept inside [EPS, 1 - EPS].
EPS: Final = 1e-4
#: Layer names in the served model.
LOGIT_LAYER: Final = "default_logit"
OUTPUT_LAYER: Final = "calibrated_probability_of_default"


def logits_of(probabilities: np.ndarray) -> np.ndarray:
    """The logit of probabilities (clipped to [1e-7, 1 - 1e-7]), in float64."""
    p = np.clip(np.asarray(probabilities, dtype="float64"), 1e-7, 1 - 1e-7)
    logits: np.ndarray = np.log(p) - np.log1p(-p)
    return logits


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, in float64, without overflow."""
    probabilities: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype="float64")))
    return probabilities


def apply(calibration: Calibration, logits: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of default (float64) for raw logits."""
    z = np.asarray(logits, dtype="float64").reshape(-1)
    if calibration.method == "platt":
        assert calibration.slope is not None and calibration.intercept is not None
        return sigmoid(calibration.slope * z + calibration.intercept)
    return np.asarray(np.interp(z, calibration.knots_logit, calibration.knots_probability), dtype="float64")


def _platt(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Slope and intercept of the logistic curve on the logit, constrained to be non-decreasing.

    A calibration maps scores to probabilities; it must never reverse a model's ranking. When the free fit
    has a negative slope (the model ranks defaults backwards), the best non-decreasing logistic curve is the
    constant base rate (slope 0): such a model then scores ROC AUC 0.5, and the quality gates and the canary
    see it for what it is instead of a reversed copy of a good model.
    """
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logits.reshape(-1, 1), labels, sample_weight=weights)
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if slope < 0.0:
        rate = float(np.clip(np.mean(labels) if weights is None else np.average(labels, weights=weights), EPS, 1 - EPS))
        return 0.0, float(np.log(rate) - np.log1p(-rate))
    return slope, intercept


def _isotonic(
    logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    fit = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(logits, labels, sample_weight=weights)
    candidates = np.asarray(fit.X_thresholds_, dtype="float64")
    kept = [candidates[0]]
    for x in candidates[1:]:
        if x - kept[-1] >= MIN_KNOT_GAP:
            kept.append(x)
    if len(kept) == 1:  # a constant curve still needs two knots
        kept.append(kept[0] + MIN_KNOT_GAP)
    knots = np.asarray(kept)
    return tuple(float(x) for x in knots), tuple(float(y) for y in fit.predict(knots))


def _sample_weight(sample_weight: np.ndarray | None, rows: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype="float64")
    if w.shape != (rows,):
        raise ValueError(f"calibration sample_weight has shape {w.shape}, the validation rows are {rows}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("calibration sample_weight must be finite, non-negative and not all 0")
    return w


def fit(
    logits: np.ndarray,
    labels: np.ndarray,
    method: str | None = None,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> Calibration:
    """Fit Platt and isotonic on (validation) ``logits`` and ``labels``; keep ``method``, or the one with the lower
    ``FOLDS``-fold cross-validated log-loss (each fold scored by a curve fitted on the other folds).

    ``sample_weight`` (one non-negative weight per row, e.g. reject-inference weights) weights every fit and every
    log-loss, as if each row stood for that many applicants; None weights rows equally (``Calibration.weighted``
    records which)."""
    z = np.asarray(logits, dtype="float64").reshape(-1)
    y = np.asarray(labels).astype("int64").reshape(-1)
    w = _sample_weight(sample_weight, len(z))
    out_of_fold = {"platt": np.empty_like(z), "isotonic": np.empty_like(z)}
    for fit_rows, score_rows in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(z, y):
        fit_weights = None if w is None else w[fit_rows]
        slope, intercept = _platt(z[fit_rows], y[fit_rows], fit_weights)
        out_of_fold["platt"][score_rows] = sigmoid(slope * z[score_rows] + intercept)
        knots_x, knots_y = _isotonic(z[fit_rows], y[fit_rows], fit_weights)
        out_of_fold["isotonic"][score_rows] = np.interp(z[score_rows], knots_x, knots_y)
    losses = {name: float(log_loss(y, np.clip(p, EPS, 1 - EPS), sample_weight=w)) for name, p in out_of_fold.items()}
    losses["uncalibrated"] = float(log_loss(y, np.clip(sigmoid(z), EPS, 1 - EPS), sample_weight=w))
    chosen = method or min(("platt", "isotonic"), key=lambda name: losses[name])
    curve: dict[str, Any]
    if chosen == "platt":
        slope, intercept = _platt(z, y, w)
        curve = {"slope": slope, "intercept": intercept}
    elif chosen == "isotonic":
        knots_x, knots_y = _isotonic(z, y, w)
        curve = {"knots_logit": knots_x, "knots_probability": knots_y}
    else:
        raise ValueError(f"calibration method must be 'platt' or 'isotonic', got {chosen!r}")
    return Calibration.model_validate(
        {"method": chosen, **curve, "validation_log_loss": losses, "validation_rows": len(z), "weighted": w is not None}
    )


def calibrated_model(model: keras.Model, calibration: Calibration) -> keras.Model:
    """``model`` (output: a Dense sigmoid layer) with its output replaced by the calibrated probability.

    The sigmoid head is re-expressed as a linear Dense named ``default_logit`` with the same weights, followed by
    Platt as one Dense sigmoid unit, or the isotonic curve as three Dense layers: per segment k the share
    ``s_k = clip((z - x_k) / (x_{k+1} - x_k), 0, 1)`` (a relu, then ``1 - relu(1 - .)`` to saturate at 1), and
    ``p = y_0 + sum_k (y_{k+1} - y_k) s_k``. Every intermediate value stays in [0, 1] after the first layer,
    so float32 rounding stays far below 1e-5.
    """
    import keras
    from keras import layers

    head = model.layers[-1]
    if (
        not isinstance(head, layers.Dense)
        or head.units != 1
        or keras.activations.serialize(head.activation) != ("sigmoid")
    ):
        raise ValueError(f"{model.name}: the last layer must be a Dense(1, sigmoid), not {head!r}")
    kernel, bias = (np.asarray(w) for w in head.get_weights())
    logit_layer = layers.Dense(1, name=LOGIT_LAYER)
    z = logit_layer(head.input)
    logit_layer.set_weights([kernel, bias])
    if calibration.method == "platt":
        platt = layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)
        output = platt(z)
        platt.set_weights([np.array([[calibration.slope]], "float32"), np.array([calibration.intercept], "float32")])
    else:
        x = np.asarray(calibration.knots_logit, "float64")
        y = np.asarray(calibration.knots_probability, "float64")
        width, rise, k = np.diff(x), np.diff(y), len(x) - 1
        share = layers.Dense(k, activation="relu", name="isotonic_segment_share")
        saturated = layers.Dense(k, activation="relu", name="isotonic_segment_remainder")
        curve = layers.Dense(1, name=OUTPUT_LAYER)
        output = curve(saturated(share(z)))
        share.set_weights([(1.0 / width).reshape(1, k).astype("float32"), (-x[:-1] / width).astype("float32")])
        saturated.set_weights([-np.eye(k, dtype="float32"), np.ones(k, "float32")])
        # p = y_last - sum_k rise_k * remainder_k, remainder_k = 1 - s_k.
        curve.set_weights([(-rise).reshape(k, 1).astype("float32"), np.array([y[-1]], "float32")])
    served = keras.Model(inputs=model.inputs, outputs=output, name=f"{model.name}_calibrated")
    served.compile(loss="binary_crossentropy")
    return served


def raw_logits(served: keras.Model, inputs: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """The uncalibrated logits of a ``calibrated_model`` (the output of its ``default_logit`` layer)."""
    import keras

    logit_model = keras.Model(inputs=served.inputs, outputs=served.get_layer(LOGIT_LAYER).output)
    n = len(inputs["static"])
    parts: list[Any] = [
        np.asarray(logit_model({k: v[i : i + batch_size] for k, v in inputs.items()}, training=False)).reshape(-1)
        for i in range(0, n, batch_size)
    ]
    return np.concatenate(parts).astype("float64") if parts else np.empty(0)
