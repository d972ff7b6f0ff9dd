"""Helpers of the serving tests: tiny models in a temporary MLflow store and real ``bentoml serve`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from net_support import free_port

REPO = Path(__file__).resolve().parents[2]
BENTO_DIR = REPO / "bentos" / "credit_risk"
BENTOML = Path(sys.executable).parent / "bentoml"
READY_TIMEOUT = 120.0

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass
class Stores:
    home: Path
    tracking_uri: str
    keys_file: Path
    keys: dict[str, str]
    raw: pd.DataFrame  # scoring rows (no target), IDs unique
    models: dict[str, Any]  # label -> in-process keras model
    thresholds: dict[str, float]
    versions: dict[str, str]  # label -> registry version
    calibrations: dict[str, Any]  # label -> the Calibration built into the served model
    reason_codes: dict[str, Any]  # label -> the ReasonCodes registered with the version

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PLATFORM_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "CREDIT_RISK_API_KEYS_FILE": str(self.keys_file),
            "CREDIT_RISK_REFRESH_SECONDS": "0.5",
            "BENTOML_HOME": str(self.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
        }
        env.update(overrides)
        return env


@dataclass
class Server:
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> Server:
        log = self.log_path.open("ab")
        # A BentoML home of its own: `bentoml serve` empties its home's Prometheus folder when it starts, which
        # would wipe the metrics of another server running on the same home.
        env = {**self.env, "BENTOML_HOME": str(self.log_path.parent / f"bentoml-{self.port}")}
        self.process = subprocess.Popen(
            [str(BENTOML), "serve", "service:CreditRiskService", "--port", str(self.port), "--host", "127.0.0.1"],
            cwd=BENTO_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait("/readyz" if wait_ready else "/livez")
        return self

    def wait(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"{path} not 200 within {READY_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def train_and_register(home: Path) -> Stores:
    import model_support

    from platform_assets.core import registry
    from platform_assets.core.api_keys import create_key
    from platform_assets.ml import schema

    tracking_uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    model_support.prepare_store(tracking_uri, home / "mlflow" / "artifacts")
    train = model_support.synthetic_rows(days=3, rows_per_day=1000, seed=7)
    inputs = model_support.keras_inputs(train)
    models, thresholds, versions, calibrations, reasons = {}, {}, {}, {}, {}
    # Both versions serve a calibrated model as training registers it: v1 Platt, v2 isotonic.
    for seed, method in ((1, "platt"), (2, "isotonic")):
        tiny = model_support.train_tiny(train, seed=seed, epochs=2, calibration_method=method)
        registered = model_support.register_tiny(tiny, inputs)
        models[registered.label] = tiny.model
        assert tiny.calibration is not None
        calibrations[registered.label] = tiny.calibration
        thresholds[registered.label] = tiny.threshold
        reasons[registered.label] = tiny.reason_codes
        versions[registered.label] = registered.version
    registry.set_alias(registry.CHAMPION, versions["v1"], tracking_uri=tracking_uri)
    keys_file = home / "api_keys.json"
    keys = {role: create_key(keys_file, [role])[0] for role in ("predict", "feedback", "admin")}
    raw = model_support.synthetic_rows(days=1, rows_per_day=3000, seed=99, start=pd.Timestamp("2027-01-01").date())
    raw = raw.drop(columns=[schema.TARGET])
    return Stores(home, tracking_uri, keys_file, keys, raw, models, thresholds, versions, calibrations, reasons)


class Api:
    """A small client with the test keys."""

    def __init__(self, base_url: str, keys: dict[str, str]) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self.keys = keys

    def post(self, path: str, body: Any = None, role: str | None = "predict", **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {self.keys[role]}"} if role else {})}
        if body is not None:
            kwargs["json"] = body
        return self.client.post(path, headers=headers, **kwargs)

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self.post("/predict", {"applications": rows})
        assert response.status_code == 200, response.text
        return list(response.json()["predictions"])

    def status(self, refresh: bool = True) -> dict[str, Any]:
        response = self.post("/admin/status", {"refresh": refresh}, role="admin")
        assert response.status_code == 200, response.text
        return dict(response.json())


def metric(server: Server, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` on /metrics whose labels include ``labels`` (0 when there is none)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: int(v) for k, v in row.items()} for row in frame.to_dict("records")]


def in_process(model: Any, frame: pd.DataFrame) -> np.ndarray:
    from model_support import keras_inputs

    from platform_assets.ml.train import predict_cnn

    return predict_cnn(model, keras_inputs(frame))


@contextmanager
def quiet() -> Iterator[None]:
    """Silence third-party warnings (keras/mlflow/protobuf) while training or logging a tiny model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def served_model(stores: Stores, label: str) -> Any:
    """The ``core.onnx_runtime.OnnxModel`` of the registered ``model.onnx`` of ``label``: what the service runs."""
    import mlflow

    from platform_assets.core import onnx_runtime, registry

    client = mlflow.MlflowClient(tracking_uri=stores.tracking_uri)
    version = stores.versions[label]
    path = local_path(client.get_model_version_download_uri(registry.MODEL_NAME, version)) / registry.MODEL_FILE
    sha = client.get_model_version(registry.MODEL_NAME, version).tags[registry.SHA_TAG]
    return onnx_runtime.load_model(path.read_bytes(), sha256=sha)


def local_path(uri: str) -> Path:
    """The folder of a ``file://`` artifact URI (the tests' MLflow store is local)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    assert parsed.scheme in ("", "file"), uri
    return Path(unquote(parsed.path))
