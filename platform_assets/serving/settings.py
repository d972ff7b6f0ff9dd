"""The serving runtime's settings: one typed object, read from the environment once, when a worker starts.

``bentos/credit_risk/service.py`` builds ``ServingSettings.from_environment()`` in the service's ``__init__``
and passes it (or the values it holds) to what needs it: the engine, the inference log, registry polling,
the API keys and body limit of the middleware, the live bias window. Nothing else in the serving runtime
reads the environment. The one earlier read is ``ServerSettings``: BentoML takes the worker count, the
access log and tracing from the ``@bentoml.service`` decorator, when the server loads ``service.py`` and
before any worker (or service instance) exists.

A value that does not parse or is out of range fails the start with an ``InvalidSettings`` naming the
variable, e.g. ``CREDIT_RISK_MAX_BATCH: Input should be greater than or equal to 1, got '0'``. An empty
variable counts as unset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from platform_assets.core import observability as obs
from platform_assets.core import slo
from platform_assets.core.environment import Environment
from platform_assets.core.inference_log.schema import inference_db_under
from platform_assets.core.registry import MODEL_NAME
from platform_assets.core.service_tls import TLSFiles, TLSFilesError

ENV_PREFIX: Final = "CREDIT_RISK_"
#: Bytes of JSON allowed per application when CREDIT_RISK_MAX_BODY_BYTES is not set (plus 1 KiB).
BYTES_PER_ROW: Final = 4096
#: ``CREDIT_RISK_FAULT_INJECTION`` tokens that break the shadow rather than a version: ``shadow`` makes its
#: scoring raise, ``shadow_slow`` (or ``shadow_slow=SECONDS``) makes it sleep before each pass.
SHADOW_FAULT: Final = "shadow"
SHADOW_SLOW_FAULT: Final = "shadow_slow"
SHADOW_SLOW_DEFAULT_SECONDS: Final = 5.0


class InvalidSettings(ValueError):
    """One or more serving settings are malformed; the message names each variable."""


def _max_body_bytes(data: dict[str, Any]) -> int:
    return int(data.get("max_batch", 1000)) * BYTES_PER_ROW + 1024


def _inference_db(data: dict[str, Any]) -> str:
    return inference_db_under(data["platform_home"])


def _tracking_uri(data: dict[str, Any]) -> str:
    # The same default as ``platform_assets.settings.mlflow_tracking_uri``, from this object's home.
    return f"sqlite:///{data['platform_home'] / 'mlflow' / 'mlflow.db'}"


class ServerSettings(BaseSettings):
    """The settings BentoML needs before a worker starts (the ``@bentoml.service`` decorator's arguments).

    ============================  ============================================================  ===========
    variable                      meaning                                                       default
    ============================  ============================================================  ===========
    CREDIT_RISK_WORKERS           worker processes of ``bentoml serve``                         ``1``
    CREDIT_RISK_ACCESS_LOG        one log line per request (BentoML's access log)               ``false``
    CREDIT_RISK_TRACING           run BentoML's tracing middleware on the API routes            ``false``
    CREDIT_RISK_TLS_DIR           serve HTTPS and require client certificates: ``ca.crt``,      (plain HTTP)
                                  ``tls.crt``, ``tls.key`` (``core.service_tls``)
    ============================  ============================================================  ===========

    Booleans take true/false, 1/0, yes/no, on/off (any case); anything else is an error.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        str_strip_whitespace=True,
        frozen=True,
        extra="forbid",
        validate_by_name=True,
    )

    workers: int = Field(default=1, ge=1, description="Worker processes of `bentoml serve`.")
    #: One access-log line per request costs a large share of the framework's time per request, and every
    #: prediction is in the inference log and every request in the metrics: off by default.
    access_log: bool = Field(default=False, description="One log line per request (BentoML's access log).")
    #: BentoML keeps no traces unless ``tracing.sample_rate`` (0 by default) and an exporter are configured,
    #: yet its tracing middleware still builds spans for every request: a third of a worker's time at full
    #: load. The API routes skip it unless this is true (then configure exporter and sample rate the
    #: BentoML way).
    tracing: bool = Field(default=False, description="Run BentoML's tracing middleware on the API routes.")
    tls_dir: Path | None = Field(default=None, description="Mutual TLS: directory with ca.crt, tls.crt, tls.key.")

    @field_validator("tls_dir")
    @classmethod
    def _tls_files_exist(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                TLSFiles(value).check()
            except TLSFilesError as error:
                raise ValueError(str(error)) from None
        return value

    def bentoml_ssl(self) -> dict[str, Any]:
        """BentoML's ``ssl`` service config: HTTPS requiring client certificates, or off."""
        return TLSFiles(self.tls_dir).bentoml_ssl() if self.tls_dir is not None else {"enabled": False}

    def bentoml_metrics(self) -> dict[str, Any]:
        """BentoML's ``metrics`` service config: its request-duration histogram with the millisecond buckets
        of ``observability.LATENCY_BUCKETS`` (BentoML's defaults start at 5 ms, coarser than a p99 of ~10 ms)."""
        return {
            "enabled": True,
            "namespace": obs.BENTOML_METRICS_NAMESPACE,
            "duration": {"buckets": list(obs.LATENCY_BUCKETS)},
        }

    @classmethod
    def from_environment(cls) -> Self:
        """The settings from the environment; ``InvalidSettings`` naming every malformed variable."""
        try:
            return cls()
        except ValidationError as error:
            raise InvalidSettings(cls._describe(error)) from None

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable a field is read from."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"

    @classmethod
    def _describe(cls, error: ValidationError) -> str:
        names = {field: cls.env_name(field) for field in cls.model_fields}
        names.update({name: name for name in names.values()})  # aliased fields report the alias
        lines = []
        for problem in error.errors():
            if problem["type"] == "default_factory_not_called":  # a default derived from a bad value
                continue
            if not problem["loc"]:  # a rule across settings: its message names them (never echo every input)
                lines.append(problem["msg"])
                continue
            where = str(problem["loc"][0])
            lines.append(f"{names.get(where, where)}: {problem['msg']}, got {problem['input']!r}")
        return "invalid serving settings:\n  " + "\n  ".join(lines)


class ServingSettings(ServerSettings):
    """Every setting of the serving runtime (including ``ServerSettings``'), with its variable and default.

    =================================  =====================================================  ====================
    variable                           meaning                                                default
    =================================  =====================================================  ====================
    CREDIT_RISK_WORKERS                worker processes of ``bentoml serve``                  ``1``
    CREDIT_RISK_ACCESS_LOG             one log line per request (BentoML's access log)        ``false``
    CREDIT_RISK_TRACING                BentoML's tracing middleware on the API routes         ``false``
    CREDIT_RISK_MAX_BATCH              most applications (or outcomes) per call (more: 413)   ``1000``
    CREDIT_RISK_MAX_BODY_BYTES         largest request body accepted (more: 413), >= 1024     4 KiB per row + 1 KiB
    CREDIT_RISK_ONNX_THREADS           ONNX Runtime intra-op (and BLAS) threads per worker    ``1``
    CREDIT_RISK_REFRESH_SECONDS        how often the registry is polled (seconds, >= 0.1)     ``5``
    CREDIT_RISK_MODEL_NAME             MLflow registered model                                ``default_risk_model``
    CREDIT_RISK_INFERENCE_DB           SQLAlchemy URL of the inference log                    SQLite under
                                                                                              ``$PLATFORM_HOME/serving``
    CREDIT_RISK_API_KEYS_FILE          JSON key file (hashes only), see ``auth``              (none)
    CREDIT_RISK_API_KEYS               the same JSON document inline                          (none)
    CREDIT_RISK_PROTECTED_PATHS        comma-separated extra paths that need an admin key,    (none)
                                       e.g. ``/metrics``
    CREDIT_RISK_VERIFY_KEY_FILE        Ed25519 public key that verifies model manifests       (none)
    PLATFORM_VERIFY_KEY_FILE           the platform's verify key, used when the one above     (none)
                                       is not set
    CREDIT_RISK_BIAS_WINDOW            predictions in the live bias window                    ``1000``
    CREDIT_RISK_BIAS_WINDOW_SECONDS    oldest prediction age in the live bias window (s)      ``600``
    CREDIT_RISK_BIAS_MIN_GROUP         predictions a group needs to enter the live DI ratio   ``30``
    CREDIT_RISK_SHADOW_QUEUE_BATCHES   served batches waiting for the shadow to score them;   ``64``
                                       a batch arriving at a full queue is not shadowed
                                       (counted, ``reason="queue_full"``)
    CREDIT_RISK_FAULT_INJECTION        test only: comma-separated model versions (``v3``)     (none)
                                       whose scoring raises (a 500), ``shadow`` (the
                                       shadow's scoring raises), ``shadow_slow[=SECONDS]``
                                       (it sleeps 5 s, or SECONDS, per pass); refused unless
                                       ``PLATFORM_ENV=local``
    PLATFORM_ENV                       ``local``, ``staging`` or ``prod``: without a verify   ``local``
                                       key, ``local`` serves unverified, others refuse
    PLATFORM_HOME                      default location of the inference log and the local    ``./.platform_home``
                                       demo verify key (``keys/verify_key.pem``)
    MLFLOW_TRACKING_URI                the registry the models come from                      SQLite under
                                                                                              ``$PLATFORM_HOME/mlflow``
    =================================  =====================================================  ====================

    Signed manifests (``signature``): the verify key is ``verify_key_file``, else ``platform_verify_key_file``,
    else in ``PLATFORM_ENV=local`` the demo key under ``PLATFORM_HOME``; see ``signature.VerifyKey``.
    """

    max_batch: int = Field(default=1000, ge=1, description="Most applications (or outcomes) per call.")
    max_body_bytes: int = Field(
        default_factory=_max_body_bytes, ge=1024, description="Largest request body accepted, in bytes."
    )
    #: One thread per worker: the worker's scorer thread runs the model on its own thread, and more workers (not
    #: more threads) use more cores, without the threads of one contending with the next worker's.
    onnx_threads: int = Field(default=1, ge=1, description="ONNX Runtime intra-op (and BLAS) threads per worker.")
    refresh_seconds: float = Field(
        default=5.0, ge=0.1, allow_inf_nan=False, description="Seconds between two registry polls."
    )
    model_name: str = Field(default=MODEL_NAME, min_length=1, description="MLflow registered model.")
    api_keys_file: Path | None = Field(default=None, description="JSON key file (hashes only).")
    api_keys: str | None = Field(default=None, description="The key document inline.")
    protected_paths: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), description="Extra paths that need an admin key."
    )
    verify_key_file: Path | None = Field(default=None, description="Public key that verifies model manifests.")
    platform_verify_key_file: Path | None = Field(
        default=None, validation_alias="PLATFORM_VERIFY_KEY_FILE", description="The platform's verify key."
    )
    bias_window: int = Field(default=1000, ge=1, description="Predictions in the live bias window.")
    bias_window_seconds: float = Field(
        default=600.0, ge=1.0, allow_inf_nan=False, description="Oldest prediction in the bias window, seconds."
    )
    bias_min_group: int = Field(
        default=slo.FAIRNESS.live_min_group_decisions,
        ge=1,
        description="Predictions a group needs to enter the DI ratio.",
    )
    #: Each worker's shadow queue holds at most this many served batches (a batch is one request's rows, up to
    #: ``max_batch``): a shadow slower than the traffic loses batches, never memory or response time.
    shadow_queue_batches: int = Field(
        default=64, ge=1, description="Served batches waiting for the shadow; a full queue drops the next."
    )
    #: A failure drill for the canary's per-version gates (tests/loop/test_loop_canary_rollback.py): a model
    #: that loads and verifies but fails every request routed to it; and for the shadow (tests/serving/
    #: test_serving_shadow.py): a shadow that raises or stalls. Never allowed outside local.
    fault_injection: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), description="Test only: model versions whose scoring raises; shadow, shadow_slow."
    )
    platform_env: Environment = Field(
        default=Environment.LOCAL, validation_alias="PLATFORM_ENV", description="Deployment environment."
    )
    platform_home: Path = Field(
        default=Path(".platform_home"), validation_alias="PLATFORM_HOME", description="The platform's local root."
    )
    # Fields below derive their defaults from the ones above (pydantic validates fields in this order).
    inference_db: str = Field(
        default_factory=_inference_db, min_length=1, description="SQLAlchemy URL of the inference log."
    )
    tracking_uri: str = Field(
        default_factory=_tracking_uri,
        min_length=1,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking and registry URI.",
    )

    @field_validator("protected_paths", "fault_injection", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(path.strip() for path in value.split(",") if path.strip())
        return value

    @field_validator("fault_injection", mode="after")
    @classmethod
    def _shadow_delay_is_seconds(cls, value: frozenset[str]) -> frozenset[str]:
        for token in value:
            if token.startswith(SHADOW_SLOW_FAULT + "="):
                seconds = token.partition("=")[2]
                try:
                    ok = float(seconds) >= 0
                except ValueError:
                    ok = False
                if not ok:
                    raise ValueError(f"{token!r}: {SHADOW_SLOW_FAULT}= takes seconds >= 0, e.g. shadow_slow=5")
        return value

    @property
    def shadow_fails(self) -> bool:
        """Whether the fault drill makes the shadow's scoring raise."""
        return SHADOW_FAULT in self.fault_injection

    @property
    def shadow_delay_seconds(self) -> float:
        """Seconds the fault drill makes the shadow sleep before each pass (0: none)."""
        for token in self.fault_injection:
            if token == SHADOW_SLOW_FAULT:
                return SHADOW_SLOW_DEFAULT_SECONDS
            if token.startswith(SHADOW_SLOW_FAULT + "="):
                return float(token.partition("=")[2])
        return 0.0

    @field_validator("api_keys_file", "verify_key_file", "platform_verify_key_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _faults_only_locally(self) -> Self:
        if self.fault_injection and self.platform_env != Environment.LOCAL:
            raise ValueError(
                f"{ENV_PREFIX}FAULT_INJECTION is a test-only failure drill and PLATFORM_ENV is "
                f"{self.platform_env.value!r}: it is refused outside 'local'"
            )
        return self

    @field_validator("platform_home", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()
