"""Which versions serve: champion, challenger and shadow from the MLflow registry's aliases and tags, swapped at once.

``ModelManager.current`` is one immutable ``ModelSet``; a refresh builds the next set completely (new
versions downloaded, verified, opened in ONNX Runtime and warmed up by ``model_loading``) and then replaces that single
reference, so a request that picked up the old set finishes on it and none sees a half-built one.
A version that fails verification is refused with an error log line and the previous model of that role
keeps serving; it is not retried until its registry tags change (the ``model_manifest`` asset tags a
version when it signs it). A version holds one role: an alias naming the champion's (or the challenger's)
version again is ignored.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from platform_assets.core import registry
from platform_assets.serving import metrics
from platform_assets.serving.approvals import ApprovalBoard
from platform_assets.serving.model_loading import LoadedModel, ModelRefused, load_version
from platform_assets.serving.settings import ServingSettings
from platform_assets.serving.signature import VerifyKey

logger = logging.getLogger(__name__)

#: MLflow client settings (environment variables, the only way MLflow takes them): one retry, 30-s timeout.
REGISTRY_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


@dataclass(frozen=True)
class ModelSet:
    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    #: Challenger traffic in percent as tagged in the registry (ignored without a challenger).
    weight_percent: float = 0.0
    #: Scores served applications off the response path; never answers one.
    shadow: LoadedModel | None = None
    #: Percent of the served applications the shadow scores, as tagged (ignored without a shadow).
    shadow_share: float = registry.DEFAULT_SHADOW_SHARE

    @property
    def effective_weight(self) -> float:
        return self.weight_percent if self.challenger is not None else 0.0

    @property
    def effective_shadow_share(self) -> float:
        return self.shadow_share if self.shadow is not None else 0.0

    def roles(self) -> list[tuple[str, LoadedModel]]:
        """(role, model) of every loaded role, champion first."""
        pairs = (
            (registry.CHAMPION, self.champion),
            (registry.CHALLENGER, self.challenger),
            (registry.SHADOW, self.shadow),
        )
        return [(role, model) for role, model in pairs if model is not None]

    def find(self, label: str) -> tuple[LoadedModel, str] | None:
        """The answering model (champion or challenger, never the shadow) whose label (``v3``, or ``3``) is
        ``label``, with its role."""
        for role, model in self.roles():
            if role != registry.SHADOW and label in (model.label, model.version):
                return model, role
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "champion": self.champion.label if self.champion else None,
            "challenger": self.challenger.label if self.challenger else None,
            "challenger_weight_percent": self.effective_weight,
            "shadow": self.shadow.label if self.shadow else None,
            "shadow_share_percent": self.effective_shadow_share,
        }


def parse_percent(tags: dict[str, str], tag: str, default: float) -> float:
    """A percent tag (``challenger_weight``, ``shadow_share``) in 0..100; absent -> ``default``, invalid ->
    ``default`` (logged)."""
    raw = tags.get(tag)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 100.0:
        logger.error("ignoring registered-model tag %s=%r: must be a percent in 0..100", tag, raw)
        return default
    return value


class ModelManager:
    """Keeps ``current`` in step with the registry's aliases, weight and shadow-share tags; polls in a daemon
    thread.

    ``settings`` gives the model name, registry URI, poll interval and ONNX Runtime threads, and (unless
    ``verify_key`` is given) the manifest verify key; ``loader`` replaces ``model_loading.load_version``.
    """

    def __init__(
        self,
        settings: ServingSettings,
        on_swap: Callable[[ModelSet, ModelSet], None] | None = None,
        loader: Callable[..., LoadedModel] | None = None,
        verify_key: VerifyKey | None = None,
    ) -> None:
        self.settings = settings
        self.verify_key = verify_key if verify_key is not None else VerifyKey.from_settings(settings)
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
        #: The served versions' promotion approvals, re-read after each poll (shown in ``status``).
        self.approvals = ApprovalBoard(self.verify_key, settings.platform_env)
        self._on_swap = on_swap
        self._loader = loader if loader is not None else self._load_verified
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        #: version -> (tags fingerprint, reason) of versions refused; retried only when their tags change.
        self.refused: dict[str, tuple[str, str]] = {}
        #: Unix times (seconds) of the last registry read, and of the last one that succeeded.
        self.last_refresh: float | None = None
        self.last_success: float | None = None
        #: Why the last read failed (None once one succeeds), and the Unix time of the first failure in a row.
        self.last_error: str | None = None
        self.error_since: float | None = None
        #: Failed reads since this worker started (the ``credit_risk_registry_refresh_failures_total`` counter).
        self.failures = 0

    def _load_verified(self, client: Any, model_name: str, version: str, tracking_uri: str) -> LoadedModel:
        return load_version(
            client, model_name, version, tracking_uri, self.verify_key, threads=self.settings.onnx_threads
        )

    def client(self) -> Any:
        if self._client is None:
            import mlflow

            # MLflow retries an unreachable server 7 times with a doubling backoff (minutes) before it
            # raises; the registry is polled every few seconds anyway, so a poll fails fast and says why
            # (`not_ready_reasons`). An operator's own values win.
            for variable, value in REGISTRY_HTTP_DEFAULTS.items():
                os.environ.setdefault(variable, value)

            self._client = mlflow.MlflowClient(
                tracking_uri=self.settings.tracking_uri, registry_uri=self.settings.tracking_uri
            )
        return self._client

    def _resolve(self, role: str, version: str | None, old: ModelSet) -> LoadedModel | None:
        previous: LoadedModel | None = getattr(old, role)
        if version is None:
            return previous if role == "champion" else None  # a vanished champion alias keeps the last one
        for _, loaded in old.roles():
            if loaded.version == version:
                return loaded
        tags = dict(self.client().get_model_version(self.settings.model_name, version).tags or {})
        fingerprint = repr(sorted(tags.items()))
        if version in self.refused and self.refused[version][0] == fingerprint:
            return previous
        try:
            model = self._loader(self.client(), self.settings.model_name, version, self.settings.tracking_uri)
        except ModelRefused as exc:
            self.refused[version] = (fingerprint, str(exc))
            keeping = f"keeping {previous.label}" if previous else "nothing else to serve"
            logger.error("REFUSED for %s: %s (%s)", role, exc, keeping)
            return previous
        self.refused.pop(version, None)
        logger.info(
            "loaded %s v%s for %s (threshold %.4f, %s, signature %s)",
            self.settings.model_name,
            version,
            role,
            model.threshold,
            model.backend,
            model.signature,
        )
        return model

    def refresh(self) -> ModelSet:
        """Read aliases and the weight and share tags; load what changed; swap in one assignment. Returns the set."""
        from mlflow.exceptions import MlflowException

        with self._refresh_lock:
            old = self.current
            try:
                try:
                    registered = self.client().get_registered_model(self.settings.model_name)
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
                shadow_version = aliases.get(registry.SHADOW)
                if shadow_version in (champion_version, challenger_version):
                    shadow_version = None  # a version moving to an answering role: it answers, it does not shadow
                champion = self._resolve("champion", champion_version, old)
                challenger = self._resolve("challenger", challenger_version, old)
                if challenger is not None and champion is not None and challenger.version == champion.version:
                    challenger = None
                shadow = self._resolve("shadow", shadow_version, old)
                if shadow is not None and shadow.version in {m.version for m in (champion, challenger) if m}:
                    shadow = None
                new = ModelSet(
                    champion,
                    challenger,
                    parse_percent(model_tags, registry.WEIGHT_TAG, 0.0),
                    shadow,
                    parse_percent(model_tags, registry.SHADOW_SHARE_TAG, registry.DEFAULT_SHADOW_SHARE),
                )
                self.approvals.update(self.client(), self.settings.model_name, [m.version for _, m in new.roles()])
            except Exception as exc:  # the registry is unreachable or answers nonsense: keep serving
                self._failed(f"{type(exc).__name__}: {exc}")
                logger.warning("model refresh failed, keeping %s: %s", old.describe(), self.last_error)
                return old
            finally:
                self.last_refresh = time.time()
            self._succeeded()
            if new != old:
                self.current = new  # the swap: one reference assignment
                logger.info("serving %s (was %s)", new.describe(), old.describe())
                if self._on_swap is not None:
                    self._on_swap(old, new)
            return new

    def _failed(self, error: str) -> None:
        now = time.time()
        if self.error_since is None:
            logger.error("the model registry %s is failing: %s", self.settings.tracking_uri, error)
        self.last_error = error
        self.error_since = self.error_since or now
        self.failures += 1
        metrics.REGISTRY_REFRESH_FAILURES.inc()

    def _succeeded(self) -> None:
        now = time.time()
        if self.error_since is not None:
            logger.info("the model registry answers again after %.1f s of failures", now - self.error_since)
        self.last_error = None
        self.error_since = None
        self.last_success = now
        metrics.REGISTRY_LAST_SUCCESS.set(now)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="model-refresh", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.refresh_seconds):
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
        for role, model in current.roles():
            models[role] = {
                "model_version": model.label,
                "threshold": model.threshold,
                "sha256": model.sha256,
                "run_id": model.run_id,
                "feature_spec_version": model.tags.get(registry.FEATURE_SPEC_TAG),
                "signature": model.signature,
                "backend": model.backend,
                "approval": self.approvals.describe(model.version, model.tags),
            }
        return {
            **current.describe(),
            "models": models,
            "refused": {f"v{v}": reason for v, (_, reason) in sorted(self.refused.items())},
            "last_refresh": self.last_refresh,
            "last_successful_refresh": self.last_success,
            "last_error": self.last_error,
            "registry_error_since": self.error_since,
            "registry_refresh_failures": self.failures,
            "ready": current.champion is not None,
            "verify_key": self.verify_key.describe(),
        }
