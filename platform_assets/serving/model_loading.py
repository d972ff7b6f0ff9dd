"""Verify and load one registered model version: its signed manifest, sha256 and feature spec, then its ONNX session.

A version that must not serve raises ``ModelRefused`` with the reason: its signed manifest does not verify
(``signature``), its ``model.onnx`` or its reason-code table does not match the registry's sha256 tags (or the
signed manifest), its ``model.onnx`` does not load in ONNX Runtime, or its feature spec or inputs are not the
ones this service computes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from platform_assets.core import onnx_runtime, registry
from platform_assets.core.model_version import version_label
from platform_assets.core.reason_codes import ReasonCodes
from platform_assets.ml import features, reason_codes, schema
from platform_assets.serving.payloads import MATRIX_COLUMNS
from platform_assets.serving.signature import SignatureRefused, VerifyKey, verify_version

logger = logging.getLogger(__name__)


class ModelRefused(Exception):
    """A registered version that must not serve (hash or feature-spec mismatch, bad tags, wrong inputs)."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    version: str  # registry version number
    label: str  # "v<version>": the model_version in responses, the log and metrics
    threshold: float
    sha256: str  # of model.onnx
    n_static: int
    include_protected: bool
    run_id: str
    tags: dict[str, str]
    session: onnx_runtime.OnnxModel = field(repr=False)
    #: The version's reason-code table and reference applicant, over request rows (``payloads.MATRIX_COLUMNS``).
    explainer: reason_codes.Explainer = field(repr=False)
    #: "verified (...)" or "unverified: ..." (local environment without a verify key).
    signature: str = "unverified"

    @property
    def backend(self) -> str:
        """What computes the probabilities, e.g. "onnxruntime 1.32.0 (CPUExecutionProvider, 1 intra-op ...)"."""
        return self.session.describe()

    def predict(self, tensor: np.ndarray, static: np.ndarray) -> np.ndarray:
        """Probabilities of default (float32) for ``(n, 6, channels)`` and ``(n, >= n_static)`` inputs."""
        if len(tensor) == 0:
            return np.empty(0, dtype="float32")
        return self.session.predict(tensor, static[:, : self.n_static])

    @cached_property
    def _predictor(self) -> reason_codes.ModelPredictor:
        """One per version: it keeps the coalitions' feature layout it builds on the first explanation."""
        return reason_codes.model_predictor(self.predict, MATRIX_COLUMNS, self.include_protected)

    def explain(self, rows: np.ndarray) -> reason_codes.Explanation:
        """Reasons for request rows (``payloads.MATRIX_COLUMNS``): every coalition in one ``predict`` call."""
        return self.explainer.explain(rows, self._predictor)


def open_session(model_bytes: bytes, sha256: str, threads: int, label: str) -> onnx_runtime.OnnxModel:
    """The ONNX Runtime session of a version's ``model.onnx`` with ``threads`` intra-op threads; ``ModelRefused``
    when the bytes do not load or its inputs are not the ``history`` and ``static`` this service computes."""
    try:
        session = onnx_runtime.load_model(model_bytes, sha256=sha256, intra_op_threads=threads, inter_op_threads=1)
    except onnx_runtime.OnnxModelError as exc:
        raise ModelRefused(f"{label}: {exc}") from None
    expected = (schema.N_MONTHS, len(features.CHANNELS))
    if (session.months, session.channels) != expected:
        raise ModelRefused(
            f"{label}: model.onnx takes history (n, {session.months}, {session.channels}); this service computes "
            f"(n, {expected[0]}, {expected[1]})"
        )
    if session.n_static not in (
        len(features.STATIC_FEATURES),
        len(features.STATIC_FEATURES) + len(features.PROTECTED_FEATURES),
    ):
        raise ModelRefused(
            f"{label}: model's static input has width {session.n_static}, which no feature spec produces"
        )
    return session


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
    threads: int = 1,
) -> LoadedModel:
    """Download, verify and open one registered version; ``ModelRefused`` when it must not serve.

    The signed manifest is checked first (``signature.verify_version`` with ``verify_key``), then the
    registry's sha256 tag (by ``core.onnx_runtime.load_model``), then the model's inputs; the session runs
    with ``threads`` intra-op threads.
    """
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
    # The registry's sha256 tag is checked before ONNX Runtime parses a byte.
    session = open_session(model_bytes, expected_sha, threads, f"{model_name} {label}")
    try:
        explainer = reason_codes.Explainer(codes, MATRIX_COLUMNS)
    except ValueError as exc:
        raise ModelRefused(f"{model_name} {label}: its reason-code table cannot serve: {exc}") from None
    return LoadedModel(
        version=str(version),
        label=label,
        threshold=threshold,
        sha256=session.sha256,
        n_static=session.n_static,
        include_protected=session.n_static > len(features.STATIC_FEATURES),
        run_id=str(mv.run_id or ""),
        tags=tags,
        session=session,
        explainer=explainer,
        signature=signature,
    )
