"""Fixtures shared by every test folder: an isolated platform home and the real UCI file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Retry policies are fixed when the asset modules are imported: a failing step in a test retries after
# one second instead of five minutes.
os.environ.setdefault("PLATFORM_RETRY_DELAY_SECONDS", "1")

REPO = Path(__file__).resolve().parents[1]
#: Settings of the whole test process: the data file, and the retry policy the assets were imported with.
KEPT_FOR_EVERY_TEST = frozenset({"PLATFORM_UCI_CSV", "PLATFORM_RETRIES", "PLATFORM_RETRY_DELAY_SECONDS"})


def uci_csv_path() -> Path | None:
    """``$PLATFORM_UCI_CSV`` or ``../shared/data/uci_credit_default_taiwan.csv`` beside the checkout."""
    candidate = Path(os.environ.get("PLATFORM_UCI_CSV") or REPO.parent / "shared/data/uci_credit_default_taiwan.csv")
    return candidate if candidate.is_file() else None


@pytest.fixture(scope="session")
def uci_csv() -> Path:
    path = uci_csv_path()
    if path is None:
        pytest.skip("UCI CSV not found: set PLATFORM_UCI_CSV or place it at ../shared/data/")
    return path


@pytest.fixture
def platform_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh PLATFORM_HOME (lake, MLflow store, Dagster home) with no other platform env vars set."""
    for name in list(os.environ):
        if name.startswith(("PLATFORM_", "MLFLOW_")) and name not in KEPT_FOR_EVERY_TEST:
            monkeypatch.delenv(name)
    home = tmp_path / "platform_home"
    monkeypatch.setenv("PLATFORM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    yield home


@pytest.fixture(scope="session")
def approval_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Signed versions v1 (trained by a person) and v2 (by a sensor) in a lake and a SQLite MLflow registry, with
    the key pair: built once (``approval_support.build_template``), copied by ``approval_platform``."""
    from approval_support import build_template

    root = tmp_path_factory.mktemp("approval-template")
    build_template(root)
    return root


@pytest.fixture
def approval_platform(approval_template: Path, platform_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh copy of ``approval_template`` as the staging platform the settings point at."""
    from approval_support import use_platform

    return use_platform(approval_template, platform_home, monkeypatch)
