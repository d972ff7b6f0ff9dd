"""S3Lake and the s3:// UCI source against a real moto server process (not the in-process mock)."""

from __future__ import annotations

import hashlib
import http.client
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd
import partition_races
import pytest
from record_support import model_version

from platform_assets import model_store
from platform_assets.core import lake_keys
from platform_assets.dataplane import tensors
from platform_assets.dataplane.objects import S3Objects
from platform_assets.dataplane.partitions import commit, read_manifest, read_partition, write_partition
from platform_assets.ml import features, schema, synthetic, uci
from platform_assets.ml.dataset import split_dataset
from platform_assets.resources.lake import S3Lake, lake_from_uri
from platform_assets.resources.source import CreditHistorySource
from platform_assets.resources.training_data import TrainingData

BUCKET = "credit-lake"


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if process.poll() is not None:
                pytest.fail(f"moto server exited with code {process.returncode} before answering")
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer on port {port} within 30 s")
            time.sleep(0.1)
        with pytest.MonkeyPatch.context() as env:
            # Dummy credentials for the fake server; keep any real AWS configuration out of the way.
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
                env.delenv(name, raising=False)
            env.setenv("NO_PROXY", "127.0.0.1,localhost")
            env.setenv("no_proxy", "127.0.0.1,localhost")
            server = MotoServer(endpoint_url=f"http://127.0.0.1:{port}")
            server.client().create_bucket(Bucket=BUCKET)
            yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def prefix() -> str:
    """A fresh prefix per test so that tests sharing the bucket cannot see each other's objects."""
    return f"lake-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def lake(moto_server: MotoServer, prefix: str) -> S3Lake:
    return S3Lake(bucket=BUCKET, prefix=prefix, endpoint_url=moto_server.endpoint_url)


def test_roundtrip_stores_under_the_prefix(lake: S3Lake, moto_server: MotoServer, prefix: str) -> None:
    data = b"\x00credit\xff" * 5_000
    digest = lake.write_bytes("raw/a.bin", data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert lake.read_bytes("raw/a.bin") == data
    stored = moto_server.client().get_object(Bucket=BUCKET, Key=f"{prefix}/raw/a.bin")
    assert stored["Body"].read() == data
    assert stored["Metadata"]["sha256"] == digest
    assert lake.uri("raw/a.bin") == f"s3://{BUCKET}/{prefix}/raw/a.bin"


@pytest.mark.parametrize("spelling", ["{p}", "{p}/", "/{p}/"])
def test_prefix_slashes_are_normalised(moto_server: MotoServer, prefix: str, spelling: str) -> None:
    lake = S3Lake(bucket=BUCKET, prefix=spelling.format(p=prefix), endpoint_url=moto_server.endpoint_url)
    lake.write_bytes("k.txt", b"v")
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert keys == [f"{prefix}/k.txt"]
    assert lake.list_keys("") == ["k.txt"]


def test_no_prefix_uses_the_bucket_root(moto_server: MotoServer, prefix: str) -> None:
    lake = S3Lake(bucket=BUCKET, endpoint_url=moto_server.endpoint_url)
    key = f"{prefix}/top.txt"
    lake.write_bytes(key, b"top")
    assert moto_server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"top"
    assert lake.list_keys(prefix) == [key]
    assert lake.uri(key) == f"s3://{BUCKET}/{key}"


def test_list_keys_sorted_relative_and_isolated(moto_server: MotoServer, lake: S3Lake, prefix: str) -> None:
    for key in ("b/2", "a/sub/3", "a/1"):
        lake.write_bytes(key, key.encode())
    neighbour = S3Lake(bucket=BUCKET, prefix=f"{prefix}-other", endpoint_url=moto_server.endpoint_url)
    neighbour.write_bytes("a/9", b"not mine")
    assert lake.list_keys("a/") == ["a/1", "a/sub/3"]
    assert lake.list_keys("") == ["a/1", "a/sub/3", "b/2"]
    assert lake.list_keys("zzz") == []
    assert neighbour.list_keys("") == ["a/9"]


def test_list_keys_treats_the_prefix_as_a_folder_like_the_local_lake(lake: S3Lake) -> None:
    """``LakeStorage.list_keys`` promises the keys *below* ``prefix``; LocalLake lists a folder.

    On S3 a bare string prefix also matches siblings (``a`` matches ``ab/4``), so the same caller,
    e.g. ``TrainingData`` listing ``features/credit_history_tensors``, would see a sibling dataset
    such as ``features/credit_history_tensors_v2/...`` on S3 but not on a local lake.
    """
    for key in ("a/1", "ab/4"):
        lake.write_bytes(key, key.encode())
    assert lake.list_keys("a") == ["a/1"]


def test_exists_and_delete(lake: S3Lake) -> None:
    lake.write_bytes("dir/object", b"x")
    assert lake.exists("dir/object")
    assert not lake.exists("dir")  # a "folder" is not an object
    assert not lake.exists("dir/obj")  # nor is a key prefix
    lake.delete("dir/object")
    assert not lake.exists("dir/object")
    assert lake.list_keys("") == []


def test_missing_key_raises_file_not_found_naming_the_key(lake: S3Lake) -> None:
    with pytest.raises(FileNotFoundError, match="models/cnn/latest.json"):
        lake.read_bytes("models/cnn/latest.json")


def test_frame_roundtrip(lake: S3Lake) -> None:
    frame = features.featurize_rows(synthetic.generate_partition(date(2026, 10, 1), 20, seed=1))
    lake.write_frame("features/frame.parquet", frame)
    back = lake.read_frame("features/frame.parquet")
    pd.testing.assert_frame_equal(
        back.drop(columns=[features.HISTORY, features.STATIC]), frame.drop(columns=[features.HISTORY, features.STATIC])
    )
    assert [list(h) for h in back[features.HISTORY]] == frame[features.HISTORY].tolist()


def test_lake_from_uri_gives_an_s3_lake(moto_server: MotoServer, prefix: str) -> None:
    lake = lake_from_uri(f"s3://{BUCKET}/{prefix}/nested", endpoint_url=moto_server.endpoint_url)
    assert isinstance(lake, S3Lake)
    assert (lake.bucket, lake.prefix, lake.endpoint_url) == (BUCKET, f"{prefix}/nested", moto_server.endpoint_url)
    lake.write_text("hello.txt", "world")
    got = moto_server.client().get_object(Bucket=BUCKET, Key=f"{prefix}/nested/hello.txt")["Body"].read()
    assert got == b"world"


def test_model_store_and_training_data_work_on_s3(lake: S3Lake) -> None:
    model_store.publish(lake, model_version("v1"))
    assert model_store.load_record(lake, "v1") == model_version("v1")
    for offset in range(2):
        day = date(2026, 10, 1) + timedelta(days=offset)
        rows = features.featurize_rows(synthetic.generate_partition(day, 30, seed=2))
        write_partition(lake, lake_keys.tensors(day.isoformat()), [rows])
    rows, versions = TrainingData().load(lake)
    assert len(rows) == 60
    assert sorted(versions) == ["2026-10-01", "2026-10-02"]
    # Training reads the same rows from S3 as a stream of parts, split exactly as in memory.
    data, _ = TrainingData().open(lake)
    expected = split_dataset(rows, 0.1, 0.2, seed=42)
    for name in ("train", "validation", "test"):
        assert list(data.materialize(name).ids) == list(expected[name].ids)
    assert sum(len(chunk.ids) for chunk in data.chunks("train")) == len(expected["train"])


def test_credit_history_source_reads_a_csv_from_s3(moto_server: MotoServer, prefix: str) -> None:
    frame = pd.concat(
        [synthetic.generate_partition(date(2026, 1, 1) + timedelta(days=d), 100, seed=4) for d in range(3)],
        ignore_index=True,
    )
    key = f"{prefix}/uci.csv"
    moto_server.client().put_object(Bucket=BUCKET, Key=key, Body=frame.to_csv(index=False).encode())
    source = CreditHistorySource(
        kind="uci_csv",
        uci_csv=f"s3://{BUCKET}/{key}",
        s3_endpoint_url=moto_server.endpoint_url,
        replay_start="2026-10-01",
        replay_days=3,
    )
    batches = [source.load_day(date(2026, 10, 1) + timedelta(days=d)) for d in range(3)]
    for index, batch in enumerate(batches):
        pd.testing.assert_frame_equal(batch, uci.replay_partition(frame, index, 3))
        assert list(batch.columns) == list(schema.RAW_COLUMNS)
    assert sorted(pd.concat(batches)[schema.ID]) == sorted(frame[schema.ID])
    with pytest.raises(ValueError, match="outside the UCI replay window"):
        source.load_day(date(2026, 10, 4))


def test_an_executor_reads_and_writes_the_s3_lake_itself(lake: S3Lake, moto_server: MotoServer) -> None:
    """What a Spark task does, in process: the executor store carries the endpoint and credentials."""
    store = lake.executor_store()
    assert isinstance(store, S3Objects) and store.endpoint_url == moto_server.endpoint_url
    assert store.access_key_id == "testing" and "testing" not in repr(store)
    raw = synthetic.generate_partition(date(2026, 10, 1), 50, seed=3)
    raw.loc[0, "AGE"] = 140
    manifest = write_partition(lake, lake_keys.raw("2026-10-01"), [raw])
    summary = tensors.featurize_part(
        store,
        lake_keys.raw("2026-10-01"),
        manifest.parts[0],
        0,
        (lake_keys.tensors("2026-10-01"), lake_keys.quarantine("2026-10-01")),
        "run1",
        False,
    )
    assert [row[0] for row in summary] == [tensors.TENSORS, tensors.QUARANTINE, tensors.REASONS]
    assert lake.exists(f"{lake_keys.tensors('2026-10-01')}/part-run1-00000.parquet")
    # Written but not committed: no reader sees it yet.
    with pytest.raises(FileNotFoundError, match="not committed"):
        read_manifest(lake, lake_keys.tensors("2026-10-01"))
    assert len(read_partition(store, lake_keys.raw("2026-10-01"))) == 50


@pytest.mark.spark
def test_spark_executors_featurize_a_partition_on_s3(lake: S3Lake) -> None:
    """The tensor job against the S3 lake: tasks read and write the bucket through boto3, not the driver."""
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # The suite's shared local session if one is running, else a small one (left for the others to reuse).
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    raw = synthetic.generate_partition(date(2026, 10, 1), 3_000, seed=5)
    raw.loc[[1, 2], "LIMIT_BAL"] = -1
    write_partition(lake, lake_keys.raw("2026-10-01"), [raw.iloc[:1_000], raw.iloc[1_000:]])
    written = tensors.featurize_partition(spark, lake.executor_store(), "2026-10-01")
    assert written.rows == 3_000 and written.reasons == {"LIMIT_BAL must be positive": 2}
    assert len(written.tensor_parts) == 2 and len(written.quarantine_parts) == 1
    committed = commit(lake, lake_keys.tensors("2026-10-01"), written.tensor_parts, written.run_token)
    rows, versions = TrainingData().load(lake)
    assert len(rows) == 2_998 and versions == {"2026-10-01": committed.digest}


def test_a_commit_on_s3_spares_the_parts_of_a_run_still_writing(lake: S3Lake) -> None:
    partition_races.a_commit_spares_the_parts_of_a_run_still_writing(lake.executor_store())


def test_a_reader_on_s3_keeps_its_partition_through_a_newer_commit(lake: S3Lake) -> None:
    partition_races.a_reader_s_partition_outlives_a_newer_commit(lake.executor_store())


def test_a_reader_on_s3_marking_during_a_sweep_keeps_its_parts(lake: S3Lake) -> None:
    partition_races.a_reader_marking_during_a_sweep_keeps_its_parts(lake.executor_store())


def test_concurrent_writers_on_s3_leave_one_whole_commit(lake: S3Lake) -> None:
    partition_races.concurrent_writers_leave_one_whole_commit(lake.executor_store(), writers=3, rounds=3)
