"""Spark's executors read the lake, featurize with the one row function and write the partition themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions, tensors
from platform_assets.dataplane.objects import LocalObjects
from platform_assets.dataplane.sources import SyntheticDays
from platform_assets.definitions import bound_to
from platform_assets.ml import features, schema
from platform_assets.ml.uci import read_uci_csv
from platform_assets.settings import PlatformSettings

pytestmark = pytest.mark.spark

DAY = "2026-10-01"


def with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.head(4).copy()
    bad[schema.ID] = bad[schema.ID] + 10_000_000
    bad.loc[bad.index[0], "LIMIT_BAL"] = -5
    bad.loc[bad.index[1], "AGE"] = 130
    bad.loc[bad.index[2], "PAY_0"] = 11
    bad.loc[bad.index[3], "EDUCATION"] = 9
    return pd.concat([frame, bad], ignore_index=True)


def write_raw(store: LocalObjects, raw: pd.DataFrame, parts: int = 3) -> partitions.Manifest:
    chunks = np.array_split(np.arange(len(raw)), parts)
    return partitions.write_partition(store, lake_keys.raw(DAY), [raw.iloc[c] for c in chunks])


def featurize_and_commit(spark: Any, store: LocalObjects, **options: Any) -> tensors.FeaturizedPartition:
    written = tensors.featurize_partition(spark, store, DAY, **options)
    partitions.commit(store, lake_keys.quarantine(DAY), written.quarantine_parts, written.run_token)
    partitions.commit(store, lake_keys.tensors(DAY), written.tensor_parts, written.run_token)
    return written


def test_spark_output_equals_the_row_function(spark: Any, uci_csv: Path, tmp_path: Path) -> None:
    store = LocalObjects(root=str(tmp_path / "lake"))
    raw = with_bad_rows(read_uci_csv(uci_csv.read_bytes(), str(uci_csv)).sample(3000, random_state=1))
    write_raw(store, raw)
    written = featurize_and_commit(spark, store)
    on_spark = partitions.read_partition(store, lake_keys.tensors(DAY)).sort_values(schema.ID).reset_index(drop=True)
    direct = features.featurize_rows(raw).sort_values(schema.ID).reset_index(drop=True)

    assert len(on_spark) == len(raw) == len(direct) == written.rows
    carried = list(tensors.CARRIED_COLUMNS)
    pd.testing.assert_frame_equal(on_spark[carried], direct[carried], check_dtype=False)
    assert on_spark[features.REASON].tolist() == direct[features.REASON].tolist()
    assert on_spark[features.REASON].notna().sum() == 4 == written.quarantined
    # Spark's counts, by reason, are the row function's.
    assert written.reasons == direct[features.REASON].value_counts().to_dict()
    quarantined = partitions.read_partition(store, lake_keys.quarantine(DAY))
    assert sorted(quarantined[schema.ID]) == sorted(direct[direct[features.REASON].notna()][schema.ID])
    # The lake carries float32: compare at float32 precision.
    for column in (features.HISTORY, features.STATIC):
        for spark_value, direct_value in zip(on_spark[column], direct[column], strict=True):
            np.testing.assert_array_equal(np.float32(spark_value), np.float32(direct_value))


def test_protected_attributes_can_be_included_on_spark(spark: Any, uci_csv: Path, tmp_path: Path) -> None:
    store = LocalObjects(root=str(tmp_path / "lake"))
    write_raw(store, read_uci_csv(uci_csv.read_bytes(), str(uci_csv)).head(200), parts=1)
    featurize_and_commit(spark, store, include_protected=True)
    out = partitions.read_partition(store, lake_keys.tensors(DAY))
    assert {len(v) for v in out[features.STATIC]} == {len(features.STATIC_FEATURES) + len(features.PROTECTED_FEATURES)}


def test_a_missing_raw_partition_fails_naming_its_manifest(spark: Any, tmp_path: Path) -> None:
    store = LocalObjects(root=str(tmp_path / "lake"))
    with pytest.raises(FileNotFoundError, match=f"{lake_keys.raw(DAY)}/_manifest.json"):
        tensors.featurize_partition(spark, store, DAY)


def test_a_corrupt_parquet_part_is_reported_by_name(spark: Any, uci_csv: Path, tmp_path: Path) -> None:
    store = LocalObjects(root=str(tmp_path / "lake"))
    manifest = write_raw(store, read_uci_csv(uci_csv.read_bytes(), str(uci_csv)).head(300))
    # Committed as it is (its sha256 in the manifest), but not Parquet: a bad writer, not a changed file.
    garbage = b"PAR1 this is not a parquet file"
    digest = store.write_bytes(lake_keys.part(lake_keys.raw(DAY), "part-bad-00001.parquet"), garbage)
    parts = [manifest.parts[0], partitions.Part("part-bad-00001.parquet", 10, digest)]
    partitions.commit(store, lake_keys.raw(DAY), parts, "bad")
    with pytest.raises(partitions.PartitionError, match=r"part-bad-00001\.parquet is not a readable Parquet file"):
        tensors.featurize_partition(spark, store, DAY)


def test_a_failed_run_leaves_the_committed_partition_whole(spark: Any, uci_csv: Path, tmp_path: Path) -> None:
    """A task fails mid-partition (after others wrote their parts): nothing is committed; a rerun succeeds."""
    store = LocalObjects(root=str(tmp_path / "lake"))
    raw = read_uci_csv(uci_csv.read_bytes(), str(uci_csv)).head(900)
    manifest = write_raw(store, raw)
    first = featurize_and_commit(spark, store)
    committed = partitions.read_manifest(store, lake_keys.tensors(DAY))

    # The last raw part changes under its manifest: its task fails, the others have written their parts.
    last = lake_keys.part(lake_keys.raw(DAY), manifest.parts[-1].name)
    good_bytes = store.read_bytes(last)
    store.write_bytes(last, good_bytes[:-40] + b"\0" * 40)
    with pytest.raises(partitions.PartitionError, match=f"{manifest.parts[-1].name} is corrupt"):
        tensors.featurize_partition(spark, store, DAY, run_token="failedrun")
    assert partitions.read_manifest(store, lake_keys.tensors(DAY)) == committed
    assert len(partitions.read_partition(store, lake_keys.tensors(DAY))) == len(raw)

    store.write_bytes(last, good_bytes)
    second = featurize_and_commit(spark, store)
    after = partitions.read_manifest(store, lake_keys.tensors(DAY))
    assert after.run_token != first.run_token and after.digest == committed.digest  # same rows, same version
    assert len(partitions.read_partition(store, lake_keys.tensors(DAY))) == len(raw) == second.rows
    # Only the committed parts and the manifest are left: the failed and the older run's files are gone.
    listed = {lake_keys.part(lake_keys.tensors(DAY), p.name) for p in after.parts}
    assert set(store.list_keys(lake_keys.tensors(DAY))) == listed | {lake_keys.manifest(lake_keys.tensors(DAY))}


def test_the_driver_never_collects_partition_rows(
    spark: Any, platform_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DataFrame the driver collects during the ingest run holds summaries, never the partition's rows,
    and the raw rows are generated by the executors."""
    collected: list[list[str]] = []
    # PySpark 4's DataFrame is an interface; the local session's frames are the classic implementation.
    frame_class = type(spark.range(1))
    assert issubclass(frame_class, DataFrame)
    originals = {name: getattr(frame_class, name) for name in ("collect", "toPandas", "toLocalIterator", "take")}

    def recording(name: str) -> Any:
        def method(self: DataFrame, *args: Any, **kwargs: Any) -> Any:
            collected.append(list(self.columns))
            return originals[name](self, *args, **kwargs)

        return method

    for name in originals:
        monkeypatch.setattr(frame_class, name, recording(name))

    def on_the_driver(*_: Any) -> pd.DataFrame:
        raise AssertionError("a raw chunk was generated on the driver, not in a Spark task")

    # Spark's Python workers import the class afresh: only a chunk generated in this process would fail.
    monkeypatch.setattr(SyntheticDays, "chunk", on_the_driver)
    definitions = bound_to(PlatformSettings(rows_per_day=2_000))
    with dg.DagsterInstance.ephemeral() as instance:
        result = definitions.resolve_job_def("daily_ingest_job").execute_in_process(
            partition_key="2026-10-05", instance=instance
        )
    assert result.success
    row_columns = {*schema.RAW_COLUMNS, features.HISTORY, features.STATIC}
    assert collected, "the summary is expected to be collected through DataFrame.collect"
    assert all(not row_columns & set(columns) for columns in collected), collected
    lake = definitions.resources["lake"]
    assert partitions.read_manifest(lake, lake_keys.tensors("2026-10-05")).rows == 2_000
