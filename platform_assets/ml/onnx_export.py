"""The served model as ONNX: Keras' own exporter, checked against Keras before a version may exist.

``export_onnx`` runs ``model.export(path, format="onnx")`` (on the TensorFlow backend Keras converts its traced
function with tf2onnx's ``from_function``; tf2onnx's ``from_keras`` does not handle Keras 3 models).
``check_onnx`` scores rows with ONNX Runtime (``core.onnx_runtime``, what the service and the Spark rescoring
run) and with ``model(x, training=False)``, and fails the version when any probability differs by more than
``slo.MODEL_QUALITY.onnx_max_abs_diff``.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from platform_assets.core import onnx_runtime, slo
from platform_assets.ml.train import predict_cnn


class OnnxMismatch(ValueError):
    """The ONNX export does not compute what the Keras model computes."""


def export_onnx(model: Any) -> bytes:
    """The bytes of ``model`` exported by Keras to ONNX (inputs ``history`` and ``static``, float32)."""
    with tempfile.TemporaryDirectory(prefix="credit-risk-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        model.export(str(path), format="onnx", verbose=False)
        return path.read_bytes()


def check_onnx(
    onnx_bytes: bytes,
    model: Any,
    inputs: dict[str, np.ndarray],
    *,
    max_abs_diff: float = slo.MODEL_QUALITY.onnx_max_abs_diff,
    label: str = "model.onnx",
) -> float:
    """The largest absolute difference in probability between ONNX Runtime and Keras on ``inputs`` (the
    validation split); ``OnnxMismatch`` naming the worst row when it exceeds ``max_abs_diff`` or any output
    is not finite."""
    if len(inputs["static"]) == 0:
        raise ValueError(f"{label}: no rows to check the ONNX export on")
    session = onnx_runtime.load_model(onnx_bytes, sha256=hashlib.sha256(onnx_bytes).hexdigest())
    served = session.predict(inputs["history"], inputs["static"]).astype("float64")
    expected = predict_cnn(model, inputs).astype("float64")
    if served.shape != expected.shape:
        raise OnnxMismatch(f"{label}: ONNX Runtime returned {served.shape} probabilities, Keras {expected.shape}")
    diff = np.abs(served - expected)
    if not np.isfinite(diff).all():
        row = int(np.flatnonzero(~np.isfinite(diff))[0])
        raise OnnxMismatch(f"{label}: row {row}: ONNX Runtime gives {served[row]}, Keras {expected[row]}")
    worst = int(np.argmax(diff))
    if diff[worst] > max_abs_diff:
        raise OnnxMismatch(
            f"{label} differs from the Keras model by {diff[worst]:.3g} in probability of default on row {worst} "
            f"of {len(diff)} (ONNX Runtime {served[worst]:.7f}, Keras {expected[worst]:.7f}); at most "
            f"{max_abs_diff:g} is allowed: the version is not registered"
        )
    return float(diff[worst])


def served_session(model: Any, threads: int = 1) -> onnx_runtime.OnnxModel:
    """``model`` exported to ONNX and opened in ONNX Runtime as the service opens a version (``threads`` intra-op
    threads): the served runtime for offline recomputation and benchmarks."""
    onnx_bytes = export_onnx(model)
    return onnx_runtime.load_model(onnx_bytes, sha256=hashlib.sha256(onnx_bytes).hexdigest(), intra_op_threads=threads)
