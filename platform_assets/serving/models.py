"""Champion and challenger models from the MLflow registry, verified, compiled and swapped atomically.

``ModelManager.current`` is one immutable ``ModelSet``; a refresh builds the next set completely (new
versions downloaded, hash- and spec-checked, compiled and warmed up) and then replaces that single
reference, so a request that picked up the old set finishes on it and none sees a half-built one.
A version that fails verification (its signed manifest, see ``signature``; its sha256 tag; its feature
spec) is refused with an error log line and the previous model of that role keeps serving; it is not
retried until its registry tags change (the ``model_manifest`` asset tags a version when it signs it).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from platform_assets.ml import features, schema
from platform_assets.serving import registry
from platform_assets.serving.config import INFERENCE_BACKENDS, ServingConfig
from platform_assets.serving.graph import UnsupportedModel, export_numpy_graph, verify
from platform_assets.serving.signature import SignatureRefused, VerifyKey, verify_version

logger = logging.getLogger(__name__)

# Downloads happen in a server process: no progress bars in its log.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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


@dataclass(frozen=True)
class ModelSet:
    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    #: Challenger traffic in percent as tagged in the registry (ignored without a challenger).
    weight_percent: float = 0.0

    @property
    def effective_weight(self) -> float:
        return self.weight_percent if self.challenger is not None else 0.0

    def find(self, label: str) -> tuple[LoadedModel, str] | None:
        """The loaded model whose label (``v3``, or ``3``) is ``label``, with its role."""
        for role, model in (("champion", self.champion), ("challenger", self.challenger)):
            if model is not None and label in (model.label, model.version):
                return model, role
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "champion": self.champion.label if self.champion else None,
            "challenger": self.challenger.label if self.challenger else None,
            "challenger_weight_percent": self.effective_weight,
        }


def parse_weight(raw: str | None) -> float:
    """The ``challenger_weight`` tag as a percent in 0..100; absent or invalid -> 0 (logged)."""
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 100.0:
        logger.error("ignoring registered-model tag %s=%r: must be a percent in 0..100", registry.WEIGHT_TAG, raw)
        return 0.0
    return value


class CompiledModel(NamedTuple):
    predict_fn: Callable[[np.ndarray, np.ndarray], Any]
    n_static: int
    #: "numpy-graph (max abs diff 3e-08 vs keras)", "tensorflow", or "tensorflow (numpy graph unavailable: ...)".
    backend: str


def compile_model(keras_model: Any, backend: str = "auto", label: str = "model") -> CompiledModel:
    """The model's inference function for ``backend`` (see ``config.INFERENCE_BACKENDS``), and the static width.

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


def load_version(
    client: Any,
    model_name: str,
    version: str,
    tracking_uri: str,
    verify_key: VerifyKey | None = None,
    backend: str = "auto",
) -> LoadedModel:
    """Download, verify and compile one registered version; ``ModelRefused`` when it must not serve.

    The signed manifest is checked first (``signature.verify_version``, with ``verify_key`` or the one the
    environment configures), then the registry's sha256 tag, then the model's inputs; ``backend`` is the
    inference backend (``compile_model``).
    """
    import keras
    import mlflow

    mv = client.get_model_version(model_name, version)
    tags = dict(mv.tags or {})
    label = registry.version_label(version)
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
        try:
            signature = verify_version(
                client,
                tracking_uri,
                version=str(version),
                run_id=str(mv.run_id or ""),
                tags=tags,
                model_bytes=model_bytes,
                verify_key=verify_key if verify_key is not None else VerifyKey.from_env(),
                label=f"{model_name} {label}",
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
        signature=signature,
        backend=served_by,
    )


class ModelManager:
    """Keeps ``current`` in step with the registry's aliases and weight tag; polls in a daemon thread."""

    def __init__(
        self,
        config: ServingConfig,
        on_swap: Callable[[ModelSet, ModelSet], None] | None = None,
        loader: Callable[..., LoadedModel] | None = None,
        verify_key: VerifyKey | None = None,
    ) -> None:
        self.config = config
        self.verify_key = verify_key if verify_key is not None else VerifyKey.from_env()
        if self.verify_key.error is not None:
            logger.error("every model version will be REFUSED: %s", self.verify_key.error)
        elif self.verify_key.key is None:
            logger.warning(
                "!!! no manifest verify key configured (PLATFORM_ENV=local): models are served UNVERIFIED; set %s !!!",
                "CREDIT_RISK_VERIFY_KEY_FILE",
            )
        else:
            logger.info("model manifests are verified with key %s (%s)", self.verify_key.key_id, self.verify_key.source)
        self.current = ModelSet()
        self._on_swap = on_swap
        self._loader = loader if loader is not None else self._load_verified
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        #: version -> (tags fingerprint, reason) of versions refused; retried only when their tags change.
        self.refused: dict[str, tuple[str, str]] = {}
        self.last_refresh: float | None = None
        self.last_error: str | None = None

    def _load_verified(self, client: Any, model_name: str, version: str, tracking_uri: str) -> LoadedModel:
        return load_version(
            client, model_name, version, tracking_uri, self.verify_key, backend=self.config.inference_backend
        )

    def client(self) -> Any:
        if self._client is None:
            import mlflow

            self._client = mlflow.MlflowClient(
                tracking_uri=self.config.tracking_uri, registry_uri=self.config.tracking_uri
            )
        return self._client

    def _resolve(self, role: str, version: str | None, old: ModelSet) -> LoadedModel | None:
        previous: LoadedModel | None = getattr(old, role)
        if version is None:
            return previous if role == "champion" else None  # a vanished champion alias keeps the last one
        for loaded in (old.champion, old.challenger):
            if loaded is not None and loaded.version == version:
                return loaded
        tags = dict(self.client().get_model_version(self.config.model_name, version).tags or {})
        fingerprint = repr(sorted(tags.items()))
        if version in self.refused and self.refused[version][0] == fingerprint:
            return previous
        try:
            model = self._loader(self.client(), self.config.model_name, version, self.config.tracking_uri)
        except ModelRefused as exc:
            self.refused[version] = (fingerprint, str(exc))
            keeping = f"keeping {previous.label}" if previous else "nothing else to serve"
            logger.error("REFUSED for %s: %s (%s)", role, exc, keeping)
            return previous
        self.refused.pop(version, None)
        logger.info(
            "loaded %s v%s for %s (threshold %.4f, %s)",
            self.config.model_name,
            version,
            role,
            model.threshold,
            model.backend,
        )
        return model

    def refresh(self) -> ModelSet:
        """Read aliases and the weight tag; load what changed; swap in one assignment. Returns the set."""
        from mlflow.exceptions import MlflowException

        with self._refresh_lock:
            old = self.current
            try:
                try:
                    registered = self.client().get_registered_model(self.config.model_name)
                    aliases = {alias: str(v) for alias, v in dict(registered.aliases or {}).items()}
                    model_tags = dict(registered.tags or {})
                except MlflowException as exc:
                    if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                        raise
                    aliases, model_tags = {}, {}
                champion_version = aliases.get(registry.CHAMPION)
                challenger_version = aliases.get(registry.CHALLENGER)
                if challenger_version == champion_version:
                    challenger_version = None
                champion = self._resolve("champion", champion_version, old)
                challenger = self._resolve("challenger", challenger_version, old)
                if challenger is not None and champion is not None and challenger.version == champion.version:
                    challenger = None
                new = ModelSet(champion, challenger, parse_weight(model_tags.get(registry.WEIGHT_TAG)))
                self.last_error = None
            except Exception as exc:  # the registry is unreachable or answers nonsense: keep serving
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("model refresh failed, keeping %s: %s", old.describe(), self.last_error)
                return old
            finally:
                self.last_refresh = time.time()
            if new != old:
                self.current = new  # the swap: one reference assignment
                logger.info("serving %s (was %s)", new.describe(), old.describe())
                if self._on_swap is not None:
                    self._on_swap(old, new)
            return new

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="model-refresh", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.config.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # never let the poller die
                logger.exception("model refresh crashed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def status(self) -> dict[str, Any]:
        current = self.current
        models = {}
        for role, model in (("champion", current.champion), ("challenger", current.challenger)):
            if model is not None:
                models[role] = {
                    "model_version": model.label,
                    "threshold": model.threshold,
                    "sha256": model.sha256,
                    "run_id": model.run_id,
                    "feature_spec_version": model.tags.get(registry.FEATURE_SPEC_TAG),
                    "signature": model.signature,
                    "backend": model.backend,
                }
        return {
            **current.describe(),
            "models": models,
            "refused": {f"v{v}": reason for v, (_, reason) in sorted(self.refused.items())},
            "last_refresh": self.last_refresh,
            "last_error": self.last_error,
            "ready": current.champion is not None,
            "verify_key": self.verify_key.describe(),
        }
