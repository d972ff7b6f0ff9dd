"""core.onnx_runtime: a hand-built ONNX graph with a known formula, scored and refused the ways callers see it."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from onnx_support import CHANNELS, MONTHS, N_STATIC, RNG, graph_bytes, reference

from platform_assets.core.onnx_runtime import OnnxModelError, load_model


def loaded(data: bytes | None = None, **threads: int):  # type: ignore[no-untyped-def]
    data = graph_bytes() if data is None else data
    return load_model(data, sha256=hashlib.sha256(data).hexdigest(), **threads)


def test_predict_matches_the_graphs_formula_in_float32() -> None:
    model = loaded()
    history = RNG.normal(size=(257, MONTHS, CHANNELS))  # float64 in: cast to the graph's float32
    static = RNG.normal(size=(257, N_STATIC))
    out = model.predict(history, static)
    assert out.dtype == np.float32 and out.shape == (257,)
    np.testing.assert_allclose(out, reference(history, static), atol=1e-6)
    assert (model.months, model.channels, model.n_static) == (MONTHS, CHANNELS, N_STATIC)
    one = model.predict(history[:1], static[:1])
    assert one.shape == (1,) and one[0] == pytest.approx(out[0], abs=1e-7)
    assert model.predict(history[:0], static[:0]).shape == (0,)


def test_the_session_runs_with_exactly_the_threads_it_is_given() -> None:
    model = loaded(intra_op_threads=2, inter_op_threads=1)
    options = model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert "2 intra-op / 1 inter-op threads" in model.describe()
    with pytest.raises(ValueError, match="threads must be >= 1"):
        loaded(intra_op_threads=0)


def test_altered_bytes_are_refused_before_onnx_runtime_parses_them() -> None:
    data = graph_bytes()
    with pytest.raises(OnnxModelError, match=f"expected {hashlib.sha256(data).hexdigest()}: the artifact was altered"):
        load_model(data[:-1] + bytes([data[-1] ^ 1]), sha256=hashlib.sha256(data).hexdigest())


def test_bytes_that_are_not_onnx_are_refused_with_the_runtimes_reason() -> None:
    with pytest.raises(OnnxModelError, match="does not load in ONNX Runtime"):
        loaded(b"PK\x03\x04 a zip file, perhaps a .keras model")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (graph_bytes(history="input_1"), "expected 'history' and 'static'"),
        (graph_bytes(static="static_features"), "expected 'history' and 'static'"),
    ],
)
def test_a_graph_with_other_inputs_is_refused_naming_them(data: bytes, message: str) -> None:
    with pytest.raises(OnnxModelError, match=message):
        loaded(data)


def test_inputs_that_do_not_fit_name_the_input() -> None:
    model = loaded()
    history, static = np.zeros((3, MONTHS, CHANNELS)), np.zeros((3, N_STATIC))
    with pytest.raises(ValueError, match=r"'history' has shape \(3, 5, 8\)"):
        model.predict(history[:, 1:], static)
    with pytest.raises(ValueError, match=r"'static' has shape \(3, 5\), the model takes \(n, 4\)"):
        model.predict(history, np.zeros((3, N_STATIC + 1)))
    with pytest.raises(ValueError, match="3 'history' rows but 2 'static' rows"):
        model.predict(history, static[:2])


def test_importing_it_loads_no_tensorflow_keras_or_dagster() -> None:
    code = (
        "import sys, platform_assets.core.onnx_runtime; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'dagster', 'bentoml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
