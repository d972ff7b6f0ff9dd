"""The exported numpy graph (``serving.graph``) against ``model(x, training=False)``, and the inference
backend selection of ``serving.model_loading``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from model_support import keras_inputs, synthetic_rows, train_tiny
from serving_support import Stores, in_process, quiet

from platform_assets.ml import features, schema
from platform_assets.ml.model import CNNConfig, build_cnn
from platform_assets.serving import model_loading
from platform_assets.serving.graph import GraphMismatch, NumpyGraph, UnsupportedModel, export_numpy_graph, verify
from platform_assets.serving.registry_polling import ModelManager
from platform_assets.serving.settings import ServingSettings
from platform_assets.serving.signature import VerifyKey

MONTHS, CHANNELS = schema.N_MONTHS, len(features.CHANNELS)
#: Static width by ``include_protected``.
STATIC_WIDTH = {
    False: len(features.STATIC_FEATURES),
    True: len(features.STATIC_FEATURES) + len(features.PROTECTED_FEATURES),
}


def randomise(model: Any, seed: int) -> Any:
    """He-scaled random kernels and non-zero biases, so that the relu units are neither all dead nor all alive."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) == 1:
            values = rng.normal(0.0, 0.1, shape)
        else:
            values = rng.normal(0.0, math.sqrt(2.0 / math.prod(shape[:-1])), shape)
        variable.assign(values.astype("float32"))
    return model


def random_cnn(include_protected: bool, seed: int = 0) -> Any:
    """The project's CNN at its default size with random weights."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_cnn(MONTHS, CHANNELS, STATIC_WIDTH[include_protected], CNNConfig())
    return randomise(model, seed)


def random_inputs(n: int, n_static: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    history = rng.uniform(-1.0, 2.0, (n, MONTHS, CHANNELS)).astype("float32")
    return history, rng.uniform(0.0, 1.0, (n, n_static)).astype("float32")


def keras_predict(model: Any, history: np.ndarray, static: np.ndarray) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model({"history": history, "static": static}, training=False)))


def inputs() -> tuple[Any, Any]:
    import keras

    return keras.Input((MONTHS, CHANNELS), name="history"), keras.Input((STATIC_WIDTH[False],), name="static")


def model_of(history: Any, static: Any, x: Any) -> Any:
    """``x`` joined with ``static`` into the usual sigmoid head."""
    import keras
    from keras import layers

    x = layers.Concatenate()([x, static])
    output = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs={"history": history, "static": static}, outputs=output)


def assert_not_degenerate(model: Any, n_static: int) -> None:
    """The parity below means something only if the outputs depend on the inputs."""
    out = keras_predict(model, *random_inputs(1000, n_static, seed=5))
    assert float(np.std(out)) > 0.02, "outputs barely depend on the inputs: dead relu units?"


@pytest.fixture(scope="module", params=[False, True], ids=["static", "with-protected"])
def cnn(request: pytest.FixtureRequest) -> tuple[Any, int]:
    include_protected = bool(request.param)
    model = random_cnn(include_protected, seed=3 if include_protected else 2)
    assert_not_degenerate(model, STATIC_WIDTH[include_protected])
    return model, STATIC_WIDTH[include_protected]


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_graph_equals_keras_for_the_project_cnn(cnn: tuple[Any, int], n: int) -> None:
    model, n_static = cnn
    graph = export_numpy_graph(model)
    history, static = random_inputs(n, n_static, seed=n)
    expected = keras_predict(model, history, static)
    actual = graph(history, static)
    assert actual.shape == expected.shape == (n, 1)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    # The graph's layout: every build_cnn layer became one op (Reshape/Flatten/Dropout as free aliases).
    assert [op.split(": ")[1].split(" ")[0] for op in graph.ops] == [
        "Reshape",
        "Conv2D",
        "Conv2D",
        "Flatten",
        "Flatten",
        "Concatenate",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert verify(graph, model, n_static) <= 1e-5


def test_graph_equals_a_briefly_trained_cnn_on_real_features() -> None:
    raw = synthetic_rows(days=1, rows_per_day=600, seed=11)
    with quiet():
        tiny = train_tiny(raw, seed=4, epochs=2)
    batch = keras_inputs(raw)
    graph = export_numpy_graph(tiny.model)
    expected = keras_predict(tiny.model, batch["history"], batch["static"])
    assert float(np.std(expected)) > 1e-3
    np.testing.assert_allclose(graph(batch["history"], batch["static"]), expected, rtol=0, atol=1e-5)


def test_graph_is_generic_over_the_supported_layers() -> None:
    """Windows overlapping in both directions (the gather path), Dense over a sequence, a rank-3 concat,
    Activation layers, a kernel without bias, linear and tanh activations, and an unusual node order."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(8)
    history, static = inputs()
    image = layers.Reshape((MONTHS, CHANNELS, 1))(history)
    a = layers.Conv2D(5, (2, 3), activation="tanh", use_bias=False)(image)  # (5, 6, 5)
    a = layers.Conv2D(4, (2, 2))(a)  # (4, 5, 4), linear
    a = layers.Activation("relu")(a)
    per_month = layers.Dense(3, activation="sigmoid")(history)  # Dense over the last axis of (6, 8)
    months = layers.Concatenate(axis=-1)([per_month, history])  # (6, 11)
    x = layers.Concatenate()([layers.Flatten()(months), layers.Flatten()(a)])
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    model = randomise(model_of(history, static, x), seed=8)
    assert_not_degenerate(model, STATIC_WIDTH[False])
    graph = export_numpy_graph(model)
    for n in (1, 7, 300):
        h, s = random_inputs(n, STATIC_WIDTH[False], seed=n)
        np.testing.assert_allclose(graph(h, s), keras_predict(model, h, s), rtol=0, atol=1e-5)
    assert graph(*random_inputs(0, STATIC_WIDTH[False])).shape == (0, 1)  # (Keras itself fails on 0 rows here)
    kinds = {op.split(": ")[1].split(" ")[0] for op in graph.ops}
    assert {"Conv2D", "Activation", "Dense", "Concatenate", "Flatten", "Reshape", "Dropout"} <= kinds


def _lstm() -> Any:
    from keras import layers

    history, static = inputs()
    return model_of(history, static, layers.LSTM(4)(history))


def _conv(**options: Any) -> Callable[[], Any]:
    def build() -> Any:
        from keras import layers

        history, static = inputs()
        image = layers.Reshape((MONTHS, CHANNELS, 1))(history)
        return model_of(history, static, layers.Flatten()(layers.Conv2D(4, (2, 2), **options)(image)))

    return build


def _elu_dense() -> Any:
    from keras import layers

    history, static = inputs()
    return model_of(history, static, layers.Dense(4, activation="elu")(layers.Flatten()(history)))


def _concat_on_months() -> Any:
    from keras import layers

    history, static = inputs()
    return model_of(history, static, layers.Flatten()(layers.Concatenate(axis=1)([history, history])))


def _other_input_names() -> Any:
    import keras
    from keras import layers

    history = keras.Input((MONTHS, CHANNELS), name="months")
    static = keras.Input((STATIC_WIDTH[False],), name="static")
    x = layers.Concatenate()([layers.Flatten()(history), static])
    return keras.Model(inputs=[history, static], outputs=layers.Dense(1, activation="sigmoid")(x))


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_lstm, "LSTM is not supported"),
        (_conv(padding="same"), "padding 'same'"),
        (_conv(strides=2), r"strides \(2, 2\)"),
        (_conv(dilation_rate=2), "dilation_rate"),
        (_elu_dense, "activation 'elu'"),
        (_concat_on_months, "last axis"),
        (_other_input_names, "model inputs are"),
    ],
    ids=["lstm", "padding-same", "strides-2", "dilation-2", "elu", "concat-axis-1", "input-names"],
)
def test_unsupported_models_are_refused_with_the_reason(build: Callable[[], Any], reason: str) -> None:
    with pytest.raises(UnsupportedModel, match=reason):
        export_numpy_graph(build())


def test_verify_catches_a_tampered_graph_and_a_changed_model() -> None:
    from keras import layers

    model = random_cnn(include_protected=False, seed=4)
    n_static = STATIC_WIDTH[False]
    assert verify(export_numpy_graph(model), model, n_static) <= 1e-5

    graph = export_numpy_graph(model)
    graph.weights["probability_of_default/bias"][0] += 0.05
    with pytest.raises(GraphMismatch, match="differs from the Keras model"):
        verify(graph, model, n_static)

    graph = export_numpy_graph(model)
    first_conv = next(layer for layer in model.layers if isinstance(layer, layers.Conv2D))
    graph.weights[f"{first_conv.name}/kernel"][1, 3, 0, 5] += 0.5  # one weight of one filter
    with pytest.raises(GraphMismatch):
        verify(graph, model, n_static)

    # The graph holds copies: changing the Keras model after the export is a mismatch too.
    graph = export_numpy_graph(model)
    head = model.get_layer("probability_of_default")
    head.bias.assign(head.bias.numpy() + 0.05)
    with pytest.raises(GraphMismatch):
        verify(graph, model, n_static)


# -- backend selection in serving.model_loading ------------------------------------------------------
def _unsupported_but_valid_inputs() -> Any:
    """A model the service would accept (right inputs) that has no numpy graph: Conv2D padding='same'."""
    model = _conv(padding="same", activation="relu")()
    return randomise(model, seed=6)


def test_auto_backend_serves_the_numpy_graph() -> None:
    model = random_cnn(include_protected=True, seed=5)
    compiled = model_loading.compile_model(model, "auto")
    assert isinstance(compiled.predict_fn, NumpyGraph)
    assert compiled.backend.startswith("numpy-graph (max abs diff ")
    assert compiled.n_static == STATIC_WIDTH[True]
    h, s = random_inputs(40, compiled.n_static)
    np.testing.assert_allclose(compiled.predict_fn(h, s), keras_predict(model, h, s), rtol=0, atol=1e-5)


def test_tensorflow_backend_is_the_traced_function() -> None:
    model = random_cnn(include_protected=False, seed=5)
    compiled = model_loading.compile_model(model, "tensorflow")
    assert compiled.backend == "tensorflow"
    assert not isinstance(compiled.predict_fn, NumpyGraph)
    h, s = random_inputs(40, compiled.n_static)
    np.testing.assert_allclose(compiled.predict_fn(h, s), keras_predict(model, h, s), rtol=0, atol=1e-6)


def test_numpy_backend_refuses_a_model_without_graph_and_auto_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    model = _unsupported_but_valid_inputs()
    with pytest.raises(model_loading.ModelRefused, match="CREDIT_RISK_INFERENCE_BACKEND=numpy.*padding 'same'"):
        model_loading.compile_model(model, "numpy", label="credit_risk v9")

    with caplog.at_level(logging.WARNING, logger=model_loading.__name__):
        compiled = model_loading.compile_model(model, "auto", label="credit_risk v9")
    assert compiled.backend.startswith("tensorflow (numpy graph unavailable: ")
    assert "padding 'same'" in compiled.backend
    assert any("credit_risk v9" in r.getMessage() and "padding 'same'" in r.getMessage() for r in caplog.records)
    h, s = random_inputs(5, compiled.n_static)
    np.testing.assert_allclose(compiled.predict_fn(h, s), keras_predict(model, h, s), rtol=0, atol=1e-6)


def test_a_graph_failing_verification_never_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    real_export = model_loading.export_numpy_graph

    def tampered(keras_model: Any) -> NumpyGraph:
        graph = real_export(keras_model)
        graph.weights["probability_of_default/bias"][0] += 0.05
        return graph

    monkeypatch.setattr(model_loading, "export_numpy_graph", tampered)
    model = random_cnn(include_protected=False, seed=7)
    compiled = model_loading.compile_model(model, "auto")
    assert compiled.backend.startswith("tensorflow (numpy graph unavailable: graph differs from the Keras model")
    with pytest.raises(model_loading.ModelRefused, match="differs from the Keras model"):
        model_loading.compile_model(model, "numpy")


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="inference backend"):
        model_loading.compile_model(random_cnn(include_protected=False), "onnx")


@pytest.mark.parametrize(("backend", "served_by"), [("auto", "numpy-graph"), ("tensorflow", "tensorflow")])
def test_manager_loads_registered_versions_with_the_configured_backend(
    stores: Stores, backend: str, served_by: str
) -> None:
    settings = ServingSettings(tracking_uri=stores.tracking_uri, inference_backend=backend)
    manager = ModelManager(settings, verify_key=VerifyKey(None, "none (test)"))
    manager.refresh()
    champion = manager.current.champion
    assert champion is not None and champion.label == "v1"
    assert champion.backend.startswith(served_by)
    assert manager.status()["models"]["champion"]["backend"] == champion.backend
    frame = stores.raw.iloc[:50]
    batch = keras_inputs(frame)
    np.testing.assert_allclose(
        champion.predict(batch["history"], batch["static"]), in_process(stores.models["v1"], frame), rtol=0, atol=1e-5
    )
