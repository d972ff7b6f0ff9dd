"""Verify and load one registered model version: its signed manifest, sha256 and feature spec, then compile it.

A version that must not serve raises ``ModelRefused`` with the reason: its signed manifest does not verify
(``signature``), its artifact or its reason-code table does not match the registry's sha256 tags (or the signed
manifest's table), its feature spec or inputs are not the ones this service computes, or
(``CREDIT_RISK_INFERENCE_BACKEND=numpy``) it has no verified numpy graph.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from platform_assets.core import registry
from platform_assets.core.model_version import version_label
from platform_assets.core.reason_codes import ReasonCodes
from platform_assets.ml import features, reason_codes, schema
from platform_assets.serving.graph import UnsupportedModel, export_numpy_graph, verify
from platform_assets.serving.payloads import MATRIX_COLUMNS
from platform_assets.serving.settings import INFERENCE_BACKENDS
from platform_assets.serving.signature import SignatureRefused, VerifyKey, verify_version

logger = logging.getLogger(__name__)


class ModelRefused(Exception):
    """A registered version that must not serve (hash or feature-spec mismatch, bad tags, wrong inputs)."""


def configure_tensorflow(threads: int) -> None:
    """Fix TensorFlow's thread pools for this process; must run before TensorFlow executes anything."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:  # the runtime was already initialised in this process
        logger.warning("could not set TensorFlow threads to %d: %s", threads, exc)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    version: str  # registry version number
    label: str  # "v<version>": the model_version in responses, the log and metrics
    threshold: float
    sha256: str
    n_static: int
    include_protected: bool
    run_id: str
    tags: dict[str, str]
    predict_fn: Callable[[np.ndarray, np.ndarray], Any] = field(repr=False)
    keras_model: Any = field(repr=False)
    #: The version's reason-code table and reference applicant, over request rows (``payloads.MATRIX_COLUMNS``).
    explainer: reason_codes.Explainer = field(repr=False)
    #: "verified (...)" or "unverified: ..." (local environment without a verify key).
    signature: str = "unverified"
    #: What computes ``predict_fn``: "numpy-graph (max abs diff ... vs keras)" or "tensorflow[ (why not numpy)]".
    backend: str = "tensorflow"

    def predict(self, tensor: np.ndarray, static: np.ndarray) -> np.ndarray:
        """Probabilities of default (float32) for ``(n, 6, channels)`` and ``(n, >= n_static)`` inputs."""
        if len(tensor) == 0:
            return np.empty(0, dtype="float32")
        out = self.predict_fn(tensor, np.ascontiguousarray(static[:, : self.n_static]))
        return np.asarray(out).reshape(-1)

    def explain(self, rows: np.ndarray) -> reason_codes.Explanation:
        """Reasons for request rows (``payloads.MATRIX_COLUMNS``): every coalition in one ``predict`` call."""
        return self.explainer.explain(
            rows, reason_codes.model_predictor(self.predict, MATRIX_COLUMNS, self.include_protected)
        )


class CompiledModel(NamedTuple):
    predict_fn: Callable[[np.ndarray, np.ndarray], Any]
    n_static: int
    #: "numpy-graph (max abs diff 3e-08 vs keras)", "tensorflow", or "tensorflow (numpy graph unavailable: ...)".
    backend: str


def compile_model(keras_model: Any, backend: str = "auto", label: str = "model") -> CompiledModel:
    """The model's inference function for ``backend`` (see ``settings.INFERENCE_BACKENDS``), and the static width.

    ``auto`` and ``numpy`` export the model to a numpy graph (``graph.export_numpy_graph``) and compare it with
    ``model(x, training=False)`` (``graph.verify``); when that fails ``auto`` logs a warning and falls back to
    the traced TensorFlow function, ``numpy`` refuses the version (``ModelRefused``).
    """
    if backend not in INFERENCE_BACKENDS:
        raise ValueError(f"inference backend must be one of {', '.join(INFERENCE_BACKENDS)}, got {backend!r}")
    inputs = {t.name.split(":")[0]: t for t in keras_model.inputs}
    history, static = inputs.get("history"), inputs.get("static")
    expected = (schema.N_MONTHS, len(features.CHANNELS))
    if history is None or static is None or tuple(history.shape[1:]) != expected:
        raise ModelRefused(
            f"model inputs are {[(t.name, tuple(t.shape)) for t in keras_model.inputs]}; expected 'history' "
            f"(None, {expected[0]}, {expected[1]}) and 'static'"
        )
    n_static = int(static.shape[-1])
    if n_static not in (
        len(features.STATIC_FEATURES),
        len(features.STATIC_FEATURES) + len(features.PROTECTED_FEATURES),
    ):
        raise ModelRefused(f"model's static input has width {n_static}, which no feature spec produces")

    unavailable = ""
    if backend != "tensorflow":
        try:
            graph = export_numpy_graph(keras_model)
            diff = verify(graph, keras_model, n_static)  # also runs the graph once before it takes traffic
        except Exception as exc:  # UnsupportedModel / GraphMismatch, or an exporter bug: never serve it then
            unavailable = str(exc) if isinstance(exc, UnsupportedModel) else f"{type(exc).__name__}: {exc}"
            if backend == "numpy":
                raise ModelRefused(
                    f"{label}: CREDIT_RISK_INFERENCE_BACKEND=numpy but the model has no verified numpy graph: "
                    f"{unavailable}"
                ) from None
            logger.warning("%s: no numpy graph (%s); serving it with TensorFlow", label, unavailable)
        else:
            return CompiledModel(graph, n_static, f"numpy-graph (max abs diff {diff:.1g} vs keras)")
    run = _compile_tensorflow(keras_model, expected, n_static)
    return CompiledModel(
        run, n_static, f"tensorflow (numpy graph unavailable: {unavailable})" if unavailable else "tensorflow"
    )


def _compile_tensorflow(
    keras_model: Any, expected: tuple[int, int], n_static: int
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """A traced ``model(x, training=False)`` with a fixed input signature, called as its concrete function."""
    import tensorflow as tf

    @tf.function(  # type: ignore[untyped-decorator]
        input_signature=[
            tf.TensorSpec([None, *expected], tf.float32, name="history"),
            tf.TensorSpec([None, n_static], tf.float32, name="static"),
        ],
        reduce_retracing=True,
    )
    def predict(history: Any, static: Any) -> Any:
        return keras_model({"history": history, "static": static}, training=False)

    # The one concrete function of the signature: calling it skips tf.function's per-call dispatch
    # (argument binding and trace-cache lookup), about a third of a 1-row call.
    concrete = predict.get_concrete_function()

    def run(history: np.ndarray, static: np.ndarray) -> Any:
        return concrete(history, static).numpy()

    for n in (1, 2):  # trace once and exercise the graph before the model takes traffic
        run(np.zeros((n, *expected), "float32"), np.zeros((n, n_static), "float32"))
    return run


def _reason_codes(
    client: Any, tracking_uri: str, run_id: str, tags: dict[str, str], dst: Path, label: str
) -> ReasonCodes:
    """The version's ``reason_codes.json`` from its MLflow run, checked against the ``reason_codes_sha256`` tag."""
    import mlflow

    expected = tags.get(registry.REASON_CODES_SHA_TAG, "")
    if len(expected) != 64:
        raise ModelRefused(
            f"{label}: no {registry.REASON_CODES_SHA_TAG} tag: a version without a reason-code table cannot "
            "explain its declines (retrain it)"
        )
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=registry.REASON_CODES_FILE, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except Exception as exc:  # MlflowException or an OSError: the reason is the same for the operator
        raise ModelRefused(f"{label}: cannot read {registry.REASON_CODES_FILE} of run {run_id}: {exc}") from None
    body = Path(path).read_bytes()
    actual = hashlib.sha256(body).hexdigest()
    if actual != expected:
        raise ModelRefused(
            f"{label}: {registry.REASON_CODES_FILE} has sha256 {actual}, the {registry.REASON_CODES_SHA_TAG} tag "
            f"says {expected}: the table was altered"
        )
    try:
        return ReasonCodes.model_validate_json(body)
    except ValueError as exc:
        raise ModelRefused(f"{label}: {registry.REASON_CODES_FILE} is not a reason-code table: {exc}") from None


def load_version(
    client: Any,
    model_name: str,
    version: str,
    tracking_uri: str,
    verify_key: VerifyKey,
    backend: str = "auto",
) -> LoadedModel:
    """Download, verify and compile one registered version; ``ModelRefused`` when it must not serve.

    The signed manifest is checked first (``signature.verify_version`` with ``verify_key``), then the
    registry's sha256 tag, then the model's inputs; ``backend`` is the inference backend (``compile_model``).
    """
    import keras
    import mlflow

    mv = client.get_model_version(model_name, version)
    tags = dict(mv.tags or {})
    label = version_label(version)
    spec = tags.get(registry.FEATURE_SPEC_TAG)
    if spec != features.FEATURE_SPEC_VERSION:
        raise ModelRefused(
            f"{model_name} {label}: feature_spec_version tag is {spec!r}, this service applies "
            f"{features.FEATURE_SPEC_VERSION!r}"
        )
    expected_sha = tags.get(registry.SHA_TAG, "")
    if len(expected_sha) != 64:
        raise ModelRefused(f"{model_name} {label}: no {registry.SHA_TAG} tag to verify the artifact against")
    try:
        threshold = float(tags.get(registry.THRESHOLD_TAG, "nan"))
    except ValueError:
        threshold = math.nan
    if not 0.0 <= threshold <= 1.0:
        raise ModelRefused(f"{model_name} {label}: threshold tag {tags.get(registry.THRESHOLD_TAG)!r} is not in 0..1")
    with tempfile.TemporaryDirectory(prefix="credit-risk-model-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=client.get_model_version_download_uri(model_name, version),
                dst_path=tmp,
                tracking_uri=tracking_uri,
            )
        )
        path = local / registry.MODEL_FILE
        if not path.is_file():
            raise ModelRefused(f"{model_name} {label}: artifact has no {registry.MODEL_FILE}")
        model_bytes = path.read_bytes()
        codes = _reason_codes(client, tracking_uri, str(mv.run_id or ""), tags, Path(tmp), f"{model_name} {label}")
        try:
            signature = verify_version(
                client,
                tracking_uri,
                version=str(version),
                run_id=str(mv.run_id or ""),
                tags=tags,
                model_bytes=model_bytes,
                verify_key=verify_key,
                label=f"{model_name} {label}",
                signed_sections={"reason_codes": codes.model_dump(mode="json")},
            )
        except SignatureRefused as exc:
            raise ModelRefused(f"{model_name} {label}: {exc}") from None
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != expected_sha:
            raise ModelRefused(
                f"{model_name} {label}: {registry.MODEL_FILE} has sha256 {actual}, the registry says "
                f"{expected_sha}: the artifact was altered"
            )
        keras_model = keras.saving.load_model(path, compile=False, safe_mode=True)
    predict_fn, n_static, served_by = compile_model(keras_model, backend, label=f"{model_name} {label}")
    try:
        explainer = reason_codes.Explainer(codes, MATRIX_COLUMNS)
    except ValueError as exc:
        raise ModelRefused(f"{model_name} {label}: its reason-code table cannot serve: {exc}") from None
    return LoadedModel(
        version=str(version),
        label=label,
        threshold=threshold,
        sha256=actual,
        n_static=n_static,
        include_protected=n_static > len(features.STATIC_FEATURES),
        run_id=str(mv.run_id or ""),
        tags=tags,
        predict_fn=predict_fn,
        keras_model=keras_model,
        explainer=explainer,
        signature=signature,
        backend=served_by,
    )
