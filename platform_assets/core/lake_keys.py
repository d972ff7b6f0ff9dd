"""Where each asset keeps its data in the lake: one place for the layout.

A daily partition of a data asset is a folder ``<prefix>/date=YYYY-MM-DD/`` holding Parquet part files
and the manifest ``_manifest.json``, written last: the manifest is the commit. Readers read only the parts
the manifest lists; part names carry the writing run's token, so a failed run never overwrites committed
parts (see ``platform_assets.dataplane.partitions``).
"""

from __future__ import annotations

RAW_PREFIX = "raw/credit_applications"
TENSORS_PREFIX = "features/credit_history_tensors"
QUARANTINE_PREFIX = "quarantine/credit_history_tensors"
PORTFOLIO_SCORES_PREFIX = "scores/portfolio_scores"
MODELS_PREFIX = "models"
MANIFEST_FILE = "_manifest.json"
#: ``_inflight-<run token>.json``: a run writing parts into the folder (see ``dataplane.partitions.writing``).
IN_FLIGHT_PREFIX = "_inflight-"
_PART_PREFIX, _PART_SUFFIX = "part-", ".parquet"


def raw(partition: str) -> str:
    """The folder of one raw daily partition."""
    return f"{RAW_PREFIX}/date={partition}"


def tensors(partition: str) -> str:
    """The folder of one tensor daily partition."""
    return f"{TENSORS_PREFIX}/date={partition}"


def quarantine(partition: str) -> str:
    """The folder of one day's quarantined raw rows."""
    return f"{QUARANTINE_PREFIX}/date={partition}"


def portfolio_scores(version: str, partition: str) -> str:
    """The folder of one day's scores by one model version (each version's scores side by side)."""
    return f"{PORTFOLIO_SCORES_PREFIX}/model_version={version}/date={partition}"


def manifest(folder: str) -> str:
    """The commit object of a partition folder."""
    return f"{folder}/{MANIFEST_FILE}"


def part_name(run_token: str, index: int) -> str:
    """A part file's name inside its partition folder: unique per writing run."""
    return f"{_PART_PREFIX}{run_token}-{index:05d}{_PART_SUFFIX}"


def run_token_of(name: str) -> str | None:
    """The writing run's token in a part file's name (``part_name``'s inverse), None for any other file."""
    if not (name.startswith(_PART_PREFIX) and name.endswith(_PART_SUFFIX)):
        return None
    token, _, index = name[len(_PART_PREFIX) : -len(_PART_SUFFIX)].rpartition("-")
    return token if token and index.isdigit() else None


def in_flight(folder: str, run_token: str) -> str:
    """The marker of a run writing into ``folder``: its parts are not garbage while the marker lives."""
    return f"{folder}/{IN_FLIGHT_PREFIX}{run_token}.json"


def part(folder: str, name: str) -> str:
    return f"{folder}/{name}"


def partition_of(key: str) -> str:
    """The partition date in a ``.../date=YYYY-MM-DD/...`` key."""
    for segment in key.split("/"):
        if segment.startswith("date="):
            return segment[len("date=") :]
    raise ValueError(f"lake key {key!r} has no date= component")


def model_dir(model: str, version: str) -> str:
    return f"{MODELS_PREFIX}/{model}/{version}"
