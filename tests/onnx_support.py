"""A hand-built ONNX model with a known formula, shaped like the exported default-risk model."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MONTHS, CHANNELS, N_STATIC = 6, 8, 4
RNG = np.random.default_rng(3)
W_HISTORY = RNG.normal(size=(MONTHS * CHANNELS, 1)).astype("float32") * 0.1
W_STATIC = RNG.normal(size=(N_STATIC, 1)).astype("float32")
BIAS = np.array([-0.5], "float32")


def graph_bytes(history: str = "history", static: str = "static", n_static: int = N_STATIC) -> bytes:
    """``sigmoid(flatten(history) @ W_HISTORY + static @ W_STATIC + BIAS)``, shaped (n, 1), as Keras exports it."""
    nodes = [
        helper.make_node("Flatten", [history], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w_history"], ["from_history"]),
        helper.make_node("MatMul", [static, "w_static"], ["from_static"]),
        helper.make_node("Add", ["from_history", "from_static"], ["summed"]),
        helper.make_node("Add", ["summed", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_default_risk",
        [
            helper.make_tensor_value_info(history, TensorProto.FLOAT, ["n", MONTHS, CHANNELS]),
            helper.make_tensor_value_info(static, TensorProto.FLOAT, ["n", n_static]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n", 1])],
        initializer=[
            numpy_helper.from_array(W_HISTORY, "w_history"),
            numpy_helper.from_array(W_STATIC[:n_static], "w_static"),
            numpy_helper.from_array(BIAS, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def reference(history: np.ndarray, static: np.ndarray) -> np.ndarray:
    z = history.reshape(len(history), -1).astype("float64") @ W_HISTORY + static @ W_STATIC + BIAS
    return (1.0 / (1.0 + np.exp(-z))).reshape(-1)
