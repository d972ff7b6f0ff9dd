"""Shared fixtures for the unit suite: the real UCI file (found, never copied) and small raw frames."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from platform_assets.ml import synthetic, uci

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_UCI_CSV = REPO_ROOT.parent / "shared" / "data" / "uci_credit_default_taiwan.csv"


def find_uci_csv() -> Path | None:
    """``$PLATFORM_UCI_CSV`` when set, else ``../shared/data/uci_credit_default_taiwan.csv`` next to the repo."""
    configured = os.environ.get("PLATFORM_UCI_CSV")
    for candidate in (Path(configured) if configured else None, DEFAULT_UCI_CSV):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def uci_csv_path() -> Path:
    path = find_uci_csv()
    if path is None:
        pytest.skip(
            f"real UCI CSV not found: PLATFORM_UCI_CSV={os.environ.get('PLATFORM_UCI_CSV')!r} "
            f"and {DEFAULT_UCI_CSV} do not exist"
        )
    return path


@pytest.fixture(scope="session")
def uci_bytes(uci_csv_path: Path) -> bytes:
    return uci_csv_path.read_bytes()


@pytest.fixture(scope="session")
def uci_frame(uci_bytes: bytes) -> pd.DataFrame:
    return uci.read_uci_csv(uci_bytes, "uci")


@pytest.fixture(scope="session")
def synthetic_sample() -> pd.DataFrame:
    """About 20,000 synthetic rows: ten consecutive days of 2,000 rows with one seed."""
    start = date(2026, 3, 1)
    days = [synthetic.generate_partition(start + timedelta(days=d), 2_000, seed=11) for d in range(10)]
    return pd.concat(days, ignore_index=True)
