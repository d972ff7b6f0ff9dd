"""Calibration: fitted on validation scores, chosen by cross-validated log-loss, and the same curve in numpy
(``calibration.apply``) as in the Keras model (``calibration.calibrated_model``) and its served ONNX export."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from platform_assets.core import onnx_runtime
from platform_assets.core.model_version import Calibration
from platform_assets.ml import calibration, evaluate
from platform_assets.ml.model import CNNConfig, build_cnn
from platform_assets.ml.onnx_export import check_onnx, export_onnx
from platform_assets.ml.train import predict_cnn


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a class-weighted-like model: true log-odds z, reported as 2 z + 1.5 (too high, too steep)."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-1.3, 1.2, n)
    labels = (rng.random(n) < calibration.sigmoid(true_logit)).astype(int)
    return 2.0 * true_logit + 1.5, labels


def test_platt_recovers_a_logistic_distortion_and_is_chosen() -> None:
    logits, labels = _overconfident(20_000, seed=1)
    fitted = calibration.fit(logits, labels)
    assert fitted.method == "platt"  # the distortion is exactly logistic: Platt's shape
    assert fitted.slope == pytest.approx(0.5, abs=0.05) and fitted.intercept == pytest.approx(-0.75, abs=0.1)
    assert fitted.validation_log_loss["platt"] < fitted.validation_log_loss["uncalibrated"]
    fresh_logits, fresh_labels = _overconfident(20_000, seed=2)
    assert evaluate.expected_calibration_error(fresh_labels, calibration.sigmoid(fresh_logits)) > 0.1
    assert evaluate.expected_calibration_error(fresh_labels, calibration.apply(fitted, fresh_logits)) < 0.02


def test_calibration_never_reverses_a_ranking() -> None:
    """A model that ranks defaults backwards stays useless (AUC 0.5) instead of being turned into a good one."""
    from sklearn.metrics import roc_auc_score

    logits, labels = _overconfident(20_000, seed=3)
    backwards = -logits
    assert roc_auc_score(labels, backwards) < 0.3
    for method in ("platt", "isotonic"):
        fitted = calibration.fit(backwards, labels, method=method)
        scores = calibration.apply(fitted, backwards)
        assert np.ptp(scores) < 1e-6, method  # the best non-decreasing curve is the constant base rate
        assert scores[0] == pytest.approx(labels.mean(), abs=0.01), method
        assert roc_auc_score(labels, scores) == pytest.approx(0.5), method
    assert calibration.fit(backwards, labels, method="platt").slope == 0.0


def test_isotonic_is_chosen_when_the_distortion_is_not_logistic() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, 20_000)
    truth = np.where(logits < 0, 0.05, 0.6)  # a step: no logistic curve fits it
    labels = (rng.random(len(logits)) < truth).astype(int)
    fitted = calibration.fit(logits, labels)
    assert fitted.method == "isotonic"
    assert np.all(np.diff(fitted.knots_logit) >= calibration.MIN_KNOT_GAP)
    assert calibration.apply(fitted, np.array([-3.0, 3.0])) == pytest.approx([0.05, 0.6], abs=0.03)


def test_a_calibration_record_refuses_parameters_of_the_other_method() -> None:
    with pytest.raises(ValueError, match="platt"):
        Calibration(method="platt", knots_logit=(0.0, 1.0), validation_log_loss={}, validation_rows=1)
    with pytest.raises(ValueError, match="increase"):
        Calibration(
            method="isotonic",
            knots_logit=(1.0, 0.0),
            knots_probability=(0.1, 0.2),
            validation_log_loss={},
            validation_rows=1,
        )


def _scored(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, n)
    labels = (rng.random(n) < calibration.sigmoid(0.8 * logits - 1.0)).astype("int64")
    return logits, labels


#: sha256 of ``calibration.fit(*_scored(2026), method, seed=3).model_dump_json(exclude={"weighted"})`` computed by
#: the code before calibration took weights (main at 0090b2d): the unweighted fit must not move by one bit.
UNWEIGHTED_FIT_DIGEST = {
    None: "1a462986eca105e5479b2e8a652f9d119b2af161bb3b5b5a63624b60d80286ab",
    "platt": "1a462986eca105e5479b2e8a652f9d119b2af161bb3b5b5a63624b60d80286ab",
    "isotonic": "255e1ed9da3f4ca13522d269d588546b434560dae208a006118f7392b2208f6b",
}


@pytest.mark.parametrize("method", [None, "platt", "isotonic"])
def test_the_unweighted_fit_is_bit_identical_to_the_fit_before_weights(method: str | None) -> None:
    logits, labels = _scored(2026)
    fitted = calibration.fit(logits, labels, method, seed=3)
    assert fitted == calibration.fit(logits, labels, method, seed=3, sample_weight=None)
    assert not fitted.weighted
    digest = hashlib.sha256(fitted.model_dump_json(exclude={"weighted"}).encode()).hexdigest()
    assert digest == UNWEIGHTED_FIT_DIGEST[method]


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_a_weighted_fit_equals_the_fit_on_rows_repeated_by_their_weight(method: str) -> None:
    logits, labels = _scored(7, n=800)
    counts = np.random.default_rng(8).integers(1, 5, len(logits))
    weighted = calibration.fit(logits, labels, method, sample_weight=counts)
    repeated = calibration.fit(np.repeat(logits, counts), np.repeat(labels, counts), method)
    assert weighted.weighted and not repeated.weighted
    assert weighted.validation_rows == len(logits)  # rows, not the total weight
    if method == "platt":
        assert weighted.slope == pytest.approx(repeated.slope, rel=1e-4)
        assert weighted.intercept == pytest.approx(repeated.intercept, rel=1e-4, abs=1e-6)
    else:
        np.testing.assert_allclose(weighted.knots_logit, repeated.knots_logit, rtol=1e-12)
        np.testing.assert_allclose(weighted.knots_probability, repeated.knots_probability, rtol=1e-9)
    # The raw score's log-loss has no folds: weighted it is exactly the repeated rows' mean.
    assert weighted.validation_log_loss["uncalibrated"] == pytest.approx(
        repeated.validation_log_loss["uncalibrated"], rel=1e-12
    )
    unweighted = calibration.fit(logits, labels, method)
    assert weighted.validation_log_loss["uncalibrated"] != pytest.approx(
        unweighted.validation_log_loss["uncalibrated"], rel=1e-6
    )


def test_a_weighted_platt_fit_lands_on_the_weighted_default_rate() -> None:
    """Where the curve cannot follow the truth (Platt on a step), the rows that weigh most decide where it lands:
    weighted, its mean PD over the weighted rows is their default rate; unweighted, it misses it."""
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, 20_000)
    labels = (rng.random(len(logits)) < np.where(logits < 0, 0.05, 0.6)).astype(int)
    weights = np.where(logits > 2.0, 5.0, 1.0)  # the riskiest approved stand for many declined
    weighted = calibration.fit(logits, labels, "platt", sample_weight=weights)
    unweighted = calibration.fit(logits, labels, "platt")
    weighted_rate = np.average(labels, weights=weights)
    assert weighted_rate > labels.mean() + 0.05
    # A logistic fit with an intercept matches the (weighted) mean of its labels.
    assert np.average(calibration.apply(weighted, logits), weights=weights) == pytest.approx(weighted_rate, abs=1e-4)
    assert abs(np.average(calibration.apply(unweighted, logits), weights=weights) - weighted_rate) > 0.02


def test_bad_calibration_weights_name_sample_weight() -> None:
    logits, labels = _scored(1, n=100)
    with pytest.raises(ValueError, match="sample_weight has shape"):
        calibration.fit(logits, labels, sample_weight=np.ones(99))
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        calibration.fit(logits, labels, sample_weight=np.r_[np.ones(99), np.nan])
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        calibration.fit(logits, labels, sample_weight=np.r_[np.ones(99), -1.0])


def test_a_record_from_before_weights_loads_as_unweighted() -> None:
    old = {"method": "platt", "slope": 1.0, "intercept": 0.0, "validation_log_loss": {}, "validation_rows": 5}
    assert Calibration.model_validate(old).weighted is False


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_the_served_model_outputs_the_offline_calibrated_probability(method: str) -> None:
    base = build_cnn(6, 8, 4, CNNConfig(conv_filters=4, dense_units=8))
    rng = np.random.default_rng(5)
    inputs = {"history": rng.uniform(-1, 2, (2000, 6, 8)).astype("float32"), "static": rng.random((2000, 4), "float32")}
    base_logits = calibration.logits_of(predict_cnn(base, inputs))
    labels = (rng.random(2000) < calibration.sigmoid(0.5 * base_logits - 1.0)).astype(int)
    fitted = calibration.fit(base_logits, labels, method=method)
    served = calibration.calibrated_model(base, fitted)

    expected = calibration.apply(fitted, calibration.raw_logits(served, inputs))
    np.testing.assert_allclose(predict_cnn(served, inputs), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(calibration.raw_logits(served, inputs), base_logits, rtol=0, atol=1e-4)
    # The served ONNX export runs the calibration layers too, within the training check's tolerance of Keras.
    onnx_bytes = export_onnx(served)
    assert check_onnx(onnx_bytes, served, inputs) <= 1e-5
    session = onnx_runtime.load_model(onnx_bytes, sha256=hashlib.sha256(onnx_bytes).hexdigest())
    np.testing.assert_allclose(session.predict(inputs["history"], inputs["static"]), expected, atol=1e-5)
