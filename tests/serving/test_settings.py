"""The serving settings: the variables they are read from, the errors for bad values, derived defaults, and
their effect on the request gate (API keys, protected paths, body limit) without a server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pydantic
import pytest

from platform_assets.core import api_keys as auth
from platform_assets.core.environment import Environment
from platform_assets.core.registry import MODEL_NAME
from platform_assets.serving.http import AccessPolicy, ServingMiddleware
from platform_assets.serving.settings import BYTES_PER_ROW, InvalidSettings, ServerSettings, ServingSettings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No serving variable from the surrounding shell leaks into the settings under test."""
    for name in list(os.environ):
        if name.startswith(("CREDIT_RISK_", "PLATFORM_", "MLFLOW_TRACKING_URI")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_environment_variables_map_to_settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "CREDIT_RISK_WORKERS": "2",
        "CREDIT_RISK_ACCESS_LOG": "TRUE",
        "CREDIT_RISK_MAX_BATCH": " 50 ",
        "CREDIT_RISK_ONNX_THREADS": " 2 ",
        "CREDIT_RISK_REFRESH_SECONDS": "0.5",
        "CREDIT_RISK_MODEL_NAME": "other_model",
        "CREDIT_RISK_API_KEYS_FILE": str(tmp_path / "keys.json"),
        "CREDIT_RISK_PROTECTED_PATHS": "/metrics, /docs,",
        "CREDIT_RISK_VERIFY_KEY_FILE": "",  # empty is unset
        "CREDIT_RISK_BIAS_WINDOW_SECONDS": "60",
        "PLATFORM_ENV": "staging",
        "PLATFORM_HOME": str(tmp_path / "home"),
        "PLATFORM_VERIFY_KEY_FILE": str(tmp_path / "verify_key.pem"),
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }.items():
        clean_env.setenv(name, value)
    settings = ServingSettings.from_environment()
    assert (settings.workers, settings.access_log, settings.tracing) == (2, True, False)
    assert settings.max_batch == 50 and settings.max_body_bytes == 50 * BYTES_PER_ROW + 1024
    assert settings.onnx_threads == 2 and settings.refresh_seconds == 0.5
    assert settings.model_name == "other_model" and settings.api_keys_file == tmp_path / "keys.json"
    assert settings.protected_paths == {"/metrics", "/docs"} and settings.verify_key_file is None
    assert settings.bias_window_seconds == 60.0 and settings.bias_window == 1000
    assert settings.platform_env is Environment.STAGING and settings.platform_home == tmp_path / "home"
    assert settings.platform_verify_key_file == tmp_path / "verify_key.pem"
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.inference_db == f"sqlite:///{tmp_path / 'home' / 'serving' / 'inference_log.db'}"
    assert ServerSettings.from_environment() == ServerSettings(workers=2, access_log=True)
    # Booleans: true/false, 1/0, yes/no in any case; empty is the default.
    for raw, expected in (("", False), ("TRUE", True), ("yes", True), ("1", True), ("false", False), ("No", False)):
        clean_env.setenv("CREDIT_RISK_TRACING", raw)
        assert ServerSettings.from_environment().tracing is expected, raw


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("CREDIT_RISK_MAX_BATCH", "0", "CREDIT_RISK_MAX_BATCH: Input should be greater than or equal to 1, got '0'"),
        ("CREDIT_RISK_MAX_BATCH", "many", "CREDIT_RISK_MAX_BATCH: Input should be a valid integer"),
        ("CREDIT_RISK_ACCESS_LOG", "maybe", "CREDIT_RISK_ACCESS_LOG: Input should be a valid boolean.*got 'maybe'"),
        ("CREDIT_RISK_ONNX_THREADS", "0", "CREDIT_RISK_ONNX_THREADS: Input should be greater than or equal to 1"),
        ("CREDIT_RISK_MAX_BODY_BYTES", "100", "CREDIT_RISK_MAX_BODY_BYTES: Input should be greater than or equal to"),
        ("CREDIT_RISK_REFRESH_SECONDS", "nan", "CREDIT_RISK_REFRESH_SECONDS: Input should be a finite number"),
        ("PLATFORM_ENV", "dev", "PLATFORM_ENV: Input should be 'local', 'staging' or 'prod', got 'dev'"),
    ],
)
def test_a_bad_value_fails_naming_its_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str, error: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(InvalidSettings, match=error):
        ServingSettings.from_environment()


def test_defaults_and_the_ones_derived_from_other_settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = ServingSettings(platform_home=tmp_path)
    assert settings.max_batch == 1000 and settings.max_body_bytes == 1000 * BYTES_PER_ROW + 1024
    assert settings.model_name == MODEL_NAME and settings.onnx_threads == 1
    assert settings.platform_env is Environment.LOCAL and settings.protected_paths == frozenset()
    assert settings.inference_db == f"sqlite:///{tmp_path / 'serving' / 'inference_log.db'}"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    # A smaller batch limit shrinks the default body limit; explicit values are kept as given.
    assert ServingSettings(max_batch=10).max_body_bytes == 10 * BYTES_PER_ROW + 1024
    explicit = ServingSettings(platform_home=tmp_path, max_batch=10, max_body_bytes=2048, inference_db="sqlite://")
    assert (explicit.max_body_bytes, explicit.inference_db) == (2048, "sqlite://")
    with pytest.raises(pydantic.ValidationError):
        settings.max_batch = 5  # type: ignore[misc]  # built once, never changed


def _call(
    middleware: ServingMiddleware, path: str, body: bytes, key: str | None, method: str = "POST"
) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(run())


def test_the_gate_takes_keys_paths_and_body_limit_from_the_settings() -> None:
    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    predict, admin = "predict-key", "admin-key"
    keys = [
        {"sha256": auth.hash_key(predict), "roles": ["predict"]},
        {"sha256": auth.hash_key(admin), "roles": ["admin"]},
    ]
    settings = ServingSettings(api_keys=json.dumps(keys), protected_paths=frozenset({"/metrics"}), max_body_bytes=1024)
    calls: list[int] = []

    def policy() -> AccessPolicy:
        calls.append(1)
        return AccessPolicy.from_settings(settings)

    gate = ServingMiddleware(app, policy=policy)
    assert _call(gate, "/predict", b"{}", predict).status_code == 200
    assert _call(gate, "/predict", b"x" * 1025, predict).status_code == 413
    assert _call(gate, "/predict", b"{}", None).status_code == 401
    assert _call(gate, "/metrics", b"", predict, "GET").status_code == 403
    assert _call(gate, "/metrics", b"", admin, "GET").status_code == 200
    refused = _call(gate, "/metrics", b"", None, "POST")  # a method it does not take: 405 before the key
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert _call(gate, "/livez", b"", None, "GET").status_code == 200
    # The document states the settings' limits and that /metrics needs a key.
    document = _call(gate, "/docs.json", b"", None, "GET").json()
    assert document["components"]["schemas"]["PredictInput"]["properties"]["applications"]["maxItems"] == 1000
    assert document["paths"]["/metrics"]["get"]["security"]
    assert calls == [1]  # the policy is taken once, at the first request
