"""Where each asset keeps its data in the lake: one place for the layout."""

from __future__ import annotations

RAW_PREFIX = "raw/credit_applications"
TENSORS_PREFIX = "features/credit_history_tensors"
QUARANTINE_PREFIX = "quarantine/credit_history_tensors"
MODELS_PREFIX = "models"


def raw(partition: str) -> str:
    return f"{RAW_PREFIX}/date={partition}/part.parquet"


def tensors(partition: str) -> str:
    return f"{TENSORS_PREFIX}/date={partition}/part.parquet"


def quarantine(partition: str) -> str:
    return f"{QUARANTINE_PREFIX}/date={partition}/part.parquet"


def partition_of(key: str) -> str:
    """The partition date in a ``.../date=YYYY-MM-DD/...`` key."""
    for part in key.split("/"):
        if part.startswith("date="):
            return part[len("date=") :]
    raise ValueError(f"lake key {key!r} has no date= component")


def model_dir(model: str, version: str) -> str:
    return f"{MODELS_PREFIX}/{model}/{version}"
