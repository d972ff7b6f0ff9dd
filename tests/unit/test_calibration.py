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
