"""Score a model version's ONNX artifact with ONNX Runtime: no TensorFlow, no Keras, no Dagster.

The service (``serving/model_loading.py``) and the data plane's Spark tasks both load the same
``model.onnx`` bytes with ``load_model`` and call ``OnnxModel.predict``. The bytes are checked against the
sha256 the caller trusts (the signed manifest's, or the model-version record's) before ONNX Runtime parses
them, and the session's thread pools are set explicitly: a worker or an executor task owns exactly the
threads it is given and does not contend with its neighbours.

The graph has two float32 inputs, ``history`` ``(n, months, channels)`` and ``static`` ``(n, n_static)``,
and one output, the calibrated probability of default ``(n, 1)``, as Keras' exporter writes it
(``ml/onnx_export.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import onnxruntime as ort

#: The graph's input names, in the order ``predict`` takes them.
HISTORY_INPUT: Final = "history"
STATIC_INPUT: Final = "static"
#: The only execution provider used: the CPU one ships in the ``onnxruntime`` wheel, needs nothing else.
PROVIDER: Final = "CPUExecutionProvider"


class OnnxModelError(ValueError):
    """The bytes are not an ONNX model this module runs: altered (sha256), unparsable, or other inputs."""


@dataclass(frozen=True, eq=False)
class OnnxModel:
    """One ONNX Runtime session over a verified ``model.onnx``; thread-safe (``run`` may be called concurrently)."""

    session: ort.InferenceSession = field(repr=False)
    #: Hex sha256 of the bytes the session was built from.
    sha256: str
    months: int
    channels: int
    n_static: int
    intra_op_threads: int
    inter_op_threads: int
    output_name: str

    def predict(self, history: np.ndarray, static: np.ndarray) -> np.ndarray:
        """Probabilities of default, float32 ``(n,)``, for ``history`` ``(n, months, channels)`` and ``static``
        ``(n, n_static)`` (cast to float32). A shape that does not fit raises ``ValueError`` naming the input."""
        history = np.ascontiguousarray(history, dtype=np.float32)
        static = np.ascontiguousarray(static, dtype=np.float32)
        if history.ndim != 3 or history.shape[1:] != (self.months, self.channels):
            raise ValueError(
                f"input {HISTORY_INPUT!r} has shape {history.shape}, "
                f"the model takes (n, {self.months}, {self.channels})"
            )
        if static.ndim != 2 or static.shape[1] != self.n_static:
            raise ValueError(f"input {STATIC_INPUT!r} has shape {static.shape}, the model takes (n, {self.n_static})")
        if len(history) != len(static):
            raise ValueError(f"{len(history)} {HISTORY_INPUT!r} rows but {len(static)} {STATIC_INPUT!r} rows")
        if len(history) == 0:
            return np.empty(0, dtype=np.float32)
        (out,) = self.session.run([self.output_name], {HISTORY_INPUT: history, STATIC_INPUT: static})
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def describe(self) -> str:
        """What runs the model, for status pages and logs."""
        return (
            f"onnxruntime {ort.__version__} ({PROVIDER}, {self.intra_op_threads} intra-op / "
            f"{self.inter_op_threads} inter-op threads)"
        )


def session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    """Sequential execution with exactly the given thread counts, all graph optimisations, warnings only."""
    if intra_op_threads < 1 or inter_op_threads < 1:
        raise ValueError(
            f"ONNX Runtime threads must be >= 1, got intra_op_threads={intra_op_threads}, "
            f"inter_op_threads={inter_op_threads}"
        )
    options = ort.SessionOptions()
    # Left at 0, ONNX Runtime starts one thread per core in every session: two workers on two cores
    # would each spin up two and fight over them.
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 2  # warnings and errors; its info lines name every fused node
    return options


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) else None  # symbolic ("unk__70", "batch") or unknown -> None


def load_model(model_bytes: bytes, *, sha256: str, intra_op_threads: int = 1, inter_op_threads: int = 1) -> OnnxModel:
    """An ``OnnxModel`` over ``model_bytes``, which must hash to ``sha256`` (hex); warmed up with 1 and 2 rows.

    Raises ``OnnxModelError`` when the bytes were altered, are not an ONNX model, or do not have the
    ``history`` (n, months, channels) and ``static`` (n, k) float inputs and one output.
    """
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != sha256.lower():
        raise OnnxModelError(f"model.onnx has sha256 {actual}, expected {sha256}: the artifact was altered")
    options = session_options(intra_op_threads, inter_op_threads)
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=[PROVIDER])
    except Exception as error:  # onnxruntime raises its own exception types for unparsable graphs
        raise OnnxModelError(f"model.onnx does not load in ONNX Runtime: {type(error).__name__}: {error}") from None
    inputs = {node.name: node for node in session.get_inputs()}
    history, static = inputs.get(HISTORY_INPUT), inputs.get(STATIC_INPUT)
    described = [(node.name, node.shape, node.type) for node in session.get_inputs()]
    if len(inputs) != 2 or history is None or static is None:
        raise OnnxModelError(f"model.onnx has inputs {described}; expected {HISTORY_INPUT!r} and {STATIC_INPUT!r}")
    months, channels = (_dim(d) for d in history.shape[1:]) if len(history.shape) == 3 else (None, None)
    n_static = _dim(static.shape[1]) if len(static.shape) == 2 else None
    if months is None or channels is None or n_static is None or {history.type, static.type} != {"tensor(float)"}:
        raise OnnxModelError(
            f"model.onnx has inputs {described}; expected float {HISTORY_INPUT!r} (n, months, channels) and "
            f"float {STATIC_INPUT!r} (n, k) with fixed months, channels and k"
        )
    outputs = session.get_outputs()
    if len(outputs) != 1:
        raise OnnxModelError(f"model.onnx has {len(outputs)} outputs; expected one (the probability of default)")
    model = OnnxModel(
        session=session,
        sha256=actual,
        months=months,
        channels=channels,
        n_static=n_static,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        output_name=outputs[0].name,
    )
    for n in (1, 2):  # the first run allocates and plans; it should not land on a request
        (out,) = session.run(
            None,
            {
                HISTORY_INPUT: np.zeros((n, months, channels), np.float32),
                STATIC_INPUT: np.zeros((n, n_static), np.float32),
            },
        )
        if np.size(out) != n:
            raise OnnxModelError(f"model.onnx answers {np.shape(out)} for {n} rows; expected one probability per row")
    return model
