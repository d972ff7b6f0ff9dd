"""Serving settings, read from the environment once per worker (see the package docstring)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from platform_assets import settings

#: Bytes of JSON allowed per application when CREDIT_RISK_MAX_BODY_BYTES is not set.
BYTES_PER_ROW = 4096

#: CREDIT_RISK_INFERENCE_BACKEND: ``auto`` serves the exported numpy graph when it exports and matches the
#: Keras model, else TensorFlow; ``numpy`` refuses a version that cannot; ``tensorflow`` always uses TensorFlow.
INFERENCE_BACKENDS = ("auto", "numpy", "tensorflow")


def _int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = raw.lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def flag(name: str, default: bool) -> bool:
    """A boolean setting: true/false, 1/0, yes/no (any case); anything else is an error naming ``name``."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    return raw in ("1", "true", "yes")


def default_inference_db() -> str:
    return f"sqlite:///{settings.platform_home() / 'serving' / 'inference_log.db'}"


@dataclass(frozen=True)
class ServingConfig:
    max_batch: int = 1000
    max_body_bytes: int = 1000 * BYTES_PER_ROW
    tf_threads: int = 1
    refresh_seconds: float = 5.0
    model_name: str = settings.MODEL_NAME
    tracking_uri: str = ""
    inference_db: str = ""
    api_keys_file: Path | None = None
    api_keys_inline: str | None = None
    protected_paths: frozenset[str] = field(default_factory=frozenset)
    bias_window: int = 1000
    bias_window_seconds: float = 600.0
    bias_min_group: int = 30
    inference_backend: str = "auto"

    @classmethod
    def from_env(cls) -> ServingConfig:
        max_batch = _int("CREDIT_RISK_MAX_BATCH", 1000, 1)
        keys_file = os.environ.get("CREDIT_RISK_API_KEYS_FILE", "").strip()
        protected = os.environ.get("CREDIT_RISK_PROTECTED_PATHS", "")
        return cls(
            max_batch=max_batch,
            max_body_bytes=_int("CREDIT_RISK_MAX_BODY_BYTES", max_batch * BYTES_PER_ROW + 1024, 1024),
            tf_threads=_int("CREDIT_RISK_TF_THREADS", 1, 1),
            refresh_seconds=_float("CREDIT_RISK_REFRESH_SECONDS", 5.0, 0.1),
            model_name=os.environ.get("CREDIT_RISK_MODEL_NAME", "").strip() or settings.MODEL_NAME,
            tracking_uri=settings.mlflow_tracking_uri(),
            inference_db=os.environ.get("CREDIT_RISK_INFERENCE_DB", "").strip() or default_inference_db(),
            api_keys_file=Path(keys_file) if keys_file else None,
            api_keys_inline=os.environ.get("CREDIT_RISK_API_KEYS") or None,
            protected_paths=frozenset(p.strip() for p in protected.split(",") if p.strip()),
            bias_window=_int("CREDIT_RISK_BIAS_WINDOW", 1000, 1),
            bias_window_seconds=_float("CREDIT_RISK_BIAS_WINDOW_SECONDS", 600.0, 1.0),
            bias_min_group=_int("CREDIT_RISK_BIAS_MIN_GROUP", 30, 1),
            inference_backend=_choice("CREDIT_RISK_INFERENCE_BACKEND", "auto", INFERENCE_BACKENDS),
        )
