"""Retention: move what is older than the retention period to cold storage, never what a model needs.

* Lake partitions under ``raw/``, ``features/`` and ``quarantine/`` whose ``date=`` is before the cutoff are
  copied to ``<archive_prefix>/<original key>`` (read back and hash-checked, manifest last) and only then
  deleted (manifest first).
* Inference-log predictions created, and feedback received, before the cutoff are written as Parquet to
  ``<archive_prefix>/inference_log/<table>/archived_on=<day>/<id>.parquet`` and then deleted from the log.
* Dagster runs that ended before the cutoff are deleted with their event logs (``instance.delete_run``).

What a model's manifest references is never touched: every partition date listed in a
``models/<model>/<version>/manifest.json`` (and, for versions not signed yet, in ``model_version.json``) keeps its
raw, feature and quarantine files, and the Dagster runs a manifest names (training and signing) stay.
Manifests are read without verifying their signatures: that only errs towards keeping more.

The ``data_retention`` asset (``defs/governance/retention.py``) runs these weekly and passes the Dagster instance in.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd

from platform_assets.core import lake_keys
from platform_assets.core import manifest as manifests
from platform_assets.core.model_version import RECORD_FILE
from platform_assets.resources.lake import LakeStorage, content_hash

DATA_PREFIXES: Final = (lake_keys.RAW_PREFIX, lake_keys.TENSORS_PREFIX, lake_keys.QUARANTINE_PREFIX)
DEFAULT_RETENTION_DAYS: Final = 365
DEFAULT_ARCHIVE_PREFIX: Final = "archive"


@dataclass
class References:
    """What the models in the lake reference: partition dates and Dagster run ids, with who references them."""

    partitions: dict[str, list[str]] = field(default_factory=dict)  # date -> ["default_risk_model v3", ...]
    runs: dict[str, list[str]] = field(default_factory=dict)  # run id -> [...]
    unreadable: list[str] = field(default_factory=list)  # model documents that could not be parsed


def model_references(lake: LakeStorage) -> References:
    """Partitions and runs named by every model version's manifest (or record when it has none)."""
    refs = References()
    keys = lake.list_keys(lake_keys.MODELS_PREFIX)
    folders = sorted(
        {k.rsplit("/", 1)[0] for k in keys if k.endswith((f"/{RECORD_FILE}", f"/{manifests.MANIFEST_FILE}"))}
    )
    for folder in folders:
        label = " ".join(folder.split("/")[1:3])
        for name in (manifests.MANIFEST_FILE, RECORD_FILE):
            key = f"{folder}/{name}"
            if key not in keys:
                continue
            try:
                document = json.loads(lake.read_text(key))
            except (ValueError, UnicodeDecodeError):
                refs.unreadable.append(key)
                continue
            if name == manifests.MANIFEST_FILE:
                partitions = (document.get("data") or {}).get("data_versions") or {}
                lineage = document.get("lineage") or {}
                runs = [lineage.get("training_dagster_run_id"), lineage.get("manifest_dagster_run_id")]
            else:
                partitions = document.get("data_versions") or {}
                runs = [document.get("dagster_run_id")]
            for partition in partitions:
                refs.partitions.setdefault(str(partition), []).append(label)
            for run in runs:
                if run:
                    refs.runs.setdefault(str(run), []).append(label)
    for table in (refs.partitions, refs.runs):
        for key, labels in table.items():
            table[key] = sorted(set(labels))
    return refs


@dataclass
class LakeResult:
    archived: dict[str, int] = field(default_factory=dict)  # prefix -> files archived
    archived_partitions: dict[str, list[str]] = field(default_factory=dict)  # prefix -> dates
    kept_referenced: dict[str, list[str]] = field(default_factory=dict)  # prefix -> dates kept for a model


def archive_lake_partitions(
    lake: LakeStorage,
    cutoff: date,
    references: References,
    *,
    archive_prefix: str = DEFAULT_ARCHIVE_PREFIX,
    prefixes: Iterable[str] = DATA_PREFIXES,
    dry_run: bool = False,
) -> LakeResult:
    """Move the files of partitions dated before ``cutoff`` to ``archive_prefix`` (copy, verify, delete)."""
    archive_prefix = archive_prefix.strip("/")
    if not archive_prefix or any(archive_prefix == p.split("/")[0] for p in (*DATA_PREFIXES, lake_keys.MODELS_PREFIX)):
        raise ValueError(f"archive prefix {archive_prefix!r} must be a folder of its own, e.g. 'archive'")
    result = LakeResult()
    for prefix in prefixes:
        archived, dates, kept = 0, set(), set()
        folders: dict[str, list[str]] = {}
        for key in lake.list_keys(prefix):
            try:
                day = date.fromisoformat(lake_keys.partition_of(key))
            except ValueError:
                continue  # not a partition file (no date= or not a date): not ours to judge
            if day >= cutoff:
                continue
            if day.isoformat() in references.partitions:
                kept.add(day.isoformat())
                continue
            dates.add(day.isoformat())
            archived += 1
            folders.setdefault(key.rsplit("/", 1)[0], []).append(key)
        for keys in ({} if dry_run else folders).values():
            # A partition moves like a commit: into the archive its parts first and its manifest last, out of
            # the lake its manifest first, so neither side ever shows a manifest whose parts are missing.
            ordered = sorted(keys, key=lambda k: k.endswith(f"/{lake_keys.MANIFEST_FILE}"))
            for key in ordered:
                data = lake.read_bytes(key)
                target = f"{archive_prefix}/{key}"
                lake.write_bytes(target, data)
                if content_hash(lake.read_bytes(target)) != content_hash(data):
                    raise OSError(f"archived copy {lake.uri(target)} does not match {lake.uri(key)}: not deleting it")
            for key in reversed(ordered):
                lake.delete(key)
        result.archived[prefix] = archived
        result.archived_partitions[prefix] = sorted(dates)
        result.kept_referenced[prefix] = sorted(kept)
    return result


@dataclass
class InferenceLogResult:
    predictions: int = 0
    feedback: int = 0
    files: list[str] = field(default_factory=list)
    note: str | None = None


def archive_inference_log(
    lake: LakeStorage,
    url: str,
    cutoff: date,
    *,
    archive_prefix: str = DEFAULT_ARCHIVE_PREFIX,
    dry_run: bool = False,
    today: date | None = None,
) -> InferenceLogResult:
    """Archive and delete inference-log predictions and feedback older than ``cutoff`` (UTC midnight)."""
    import sqlalchemy as sa

    from platform_assets.core.inference_log import migrate
    from platform_assets.core.inference_log import schema as inference_log

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not Path(url[len("sqlite:///") :]).is_file():
        return InferenceLogResult(note=f"no inference log at {url}: nothing served yet")
    engine = inference_log.make_engine(url)
    moment = datetime.combine(cutoff, time.min)
    stamp = (today or datetime.now(UTC).date()).isoformat()
    result = InferenceLogResult()
    try:
        # The control plane reads a server database as the operator migrated it, and upgrades only an
        # embedded SQLite file (as the service that owns it would).
        migrate.prepare(engine, migrate=migrate.owns_schema(url))
        tables = (
            ("predictions", inference_log.predictions, inference_log.predictions.c.created_at),
            ("feedback", inference_log.feedback, inference_log.feedback.c.received_at),
        )
        with engine.begin() as connection:  # one transaction: archived rows are deleted, or nothing is
            for name, table, column in tables:
                condition = column < moment
                frame = pd.DataFrame(connection.execute(sa.select(table).where(condition)).mappings().all())
                setattr(result, name, len(frame))
                if frame.empty or dry_run:
                    continue
                key = f"{archive_prefix.strip('/')}/inference_log/{name}/archived_on={stamp}/{uuid.uuid4().hex}.parquet"
                buffer = io.BytesIO()
                frame.to_parquet(buffer, index=False)
                lake.write_bytes(key, buffer.getvalue())
                result.files.append(key)
                connection.execute(sa.delete(table).where(condition))
    finally:
        engine.dispose()
    return result


@dataclass
class RunsResult:
    deleted: list[str] = field(default_factory=list)
    kept_referenced: list[str] = field(default_factory=list)


def delete_old_runs(
    instance: Any, cutoff: date, references: References, *, current_run_id: str | None = None, dry_run: bool = False
) -> RunsResult:
    """Delete Dagster runs (and their event logs) that finished before ``cutoff``, except referenced ones."""
    import dagster as dg

    before = datetime.combine(cutoff, time.min, tzinfo=UTC)
    finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=finished, created_before=before))
    result = RunsResult()
    for record in records:
        run_id = record.dagster_run.run_id
        if run_id == current_run_id:
            continue
        if run_id in references.runs:
            result.kept_referenced.append(run_id)
            continue
        if not dry_run:
            instance.delete_run(run_id)
        result.deleted.append(run_id)
    return result


def cutoff_date(retention_days: int, today: date | None = None) -> date:
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    return (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
