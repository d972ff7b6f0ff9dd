"""ml.onnx_export: Keras' ONNX export of the served (calibrated) CNN matches Keras, and a graph that does not
fails the version with the row and the difference."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from model_support import keras_inputs, synthetic_rows, train_tiny

from platform_assets.core import onnx_runtime, slo
from platform_assets.ml.onnx_export import OnnxMismatch, check_onnx, export_onnx
from platform_assets.ml.train import predict_cnn

METHODS = ("platt", "isotonic")


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    return keras_inputs(synthetic_rows(days=1, rows_per_day=800, seed=11))


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    """The served (calibrated) CNN per calibration method, trained with different seeds."""
    raw = synthetic_rows(days=1, rows_per_day=800, seed=3)
    return {method: train_tiny(raw, seed=seed, calibration_method=method).model for seed, method in enumerate(METHODS)}


@pytest.mark.parametrize("method", METHODS)
def test_the_export_of_the_calibrated_cnn_scores_like_keras(
    rows: dict[str, np.ndarray], served: dict[str, Any], method: str
) -> None:
    model = served[method]
    onnx_bytes = export_onnx(model)
    diff = check_onnx(onnx_bytes, model, rows)
    assert diff <= slo.MODEL_QUALITY.onnx_max_abs_diff
    session = onnx_runtime.load_model(onnx_bytes, sha256=hashlib.sha256(onnx_bytes).hexdigest())
    assert (session.months, session.channels, session.n_static) == (6, rows["history"].shape[2], 4)
    probabilities = session.predict(rows["history"], rows["static"])
    np.testing.assert_allclose(probabilities, predict_cnn(model, rows), atol=slo.MODEL_QUALITY.onnx_max_abs_diff)
    assert 0.0 < probabilities.min() and probabilities.max() < 1.0


def test_an_export_of_another_model_fails_naming_the_row_and_the_gap(
    rows: dict[str, np.ndarray], served: dict[str, Any]
) -> None:
    first, second = served["platt"], served["isotonic"]
    gap = np.abs(predict_cnn(first, rows) - predict_cnn(second, rows))
    worst = int(np.argmax(gap))
    with pytest.raises(OnnxMismatch, match=rf"by {gap[worst]:.3g} .* on row {worst} of {len(gap)} .*not registered"):
        check_onnx(export_onnx(first), second, rows)


def test_a_tighter_tolerance_than_the_observed_gap_fails(rows: dict[str, np.ndarray], served: dict[str, Any]) -> None:
    onnx_bytes = export_onnx(served["isotonic"])
    diff = check_onnx(onnx_bytes, served["isotonic"], rows)
    assert diff > 0.0  # two runtimes, float32: not bit-identical, so a tighter bound does fail
    with pytest.raises(OnnxMismatch, match="at most"):
        check_onnx(onnx_bytes, served["isotonic"], rows, max_abs_diff=diff / 2)
