"""An S3 lake that is away: a clear, retriable error naming the endpoint, bucket and key, no hang, and a
partition write whose clean-up fails too still reports the first error (tests/prod/test_store_faults_s3.py
has the whole materialization)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from net_support import free_port

from platform_assets.dataplane import objects, partitions, tasks
from platform_assets.dataplane.objects import LakeUnavailable, LocalObjects, S3Objects
from platform_assets.retries import PERMANENT_ERRORS

CREDENTIALS = {"region_name": "us-east-1", "access_key_id": "unit", "secret_access_key": "unit"}


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in [*accepted, listener]:
            sock.close()


def test_a_refused_endpoint_raises_lake_unavailable_naming_endpoint_bucket_and_key() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = S3Objects(bucket="lake", prefix="prod", endpoint_url=endpoint, **CREDENTIALS)
    with pytest.raises(LakeUnavailable) as raised:
        store.write_bytes("raw/date=2026-10-05/part-1.parquet", b"rows")
    assert endpoint in str(raised.value) and "s3://lake/prod/raw/date=2026-10-05/part-1.parquet" in str(raised.value)
    # A ConnectionError: the steps' retry policy retries it (bad data fails at once, an outage may heal).
    assert isinstance(raised.value, ConnectionError) and not isinstance(raised.value, PERMANENT_ERRORS)
    with pytest.raises(LakeUnavailable, match="failed listing"):
        store.list_keys("raw")


def test_an_endpoint_that_never_answers_fails_after_the_read_timeout_instead_of_hanging(
    silent_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "S3_READ_TIMEOUT_SECONDS", 0.3)  # the configured timeout is what bounds it
    store = S3Objects(bucket="lake", endpoint_url=silent_endpoint, **CREDENTIALS)
    with pytest.raises(LakeUnavailable, match="Read timeout") as raised:
        store.read_bytes("raw/_manifest.json")
    assert silent_endpoint in str(raised.value)


class LakeGoneAfter:
    """A local lake that goes away after ``writes`` object writes: every later call raises LakeUnavailable."""

    def __init__(self, root: Path, writes: int) -> None:
        self.lake = LocalObjects(root=str(root))
        self.writes = writes

    def _check(self, doing: str, key: str) -> None:
        if self.writes <= 0:
            raise LakeUnavailable(f"lake gone {doing} {key}")

    def write_bytes(self, key: str, data: bytes) -> str:
        self._check("writing", key)
        self.writes -= 1
        return self.lake.write_bytes(key, data)

    def read_bytes(self, key: str) -> bytes:
        self._check("reading", key)
        return self.lake.read_bytes(key)

    def exists(self, key: str) -> bool:
        self._check("looking for", key)
        return self.lake.exists(key)

    def list_keys(self, prefix: str) -> list[str]:
        self._check("listing", prefix)
        return self.lake.list_keys(prefix)

    def delete(self, key: str) -> None:
        self._check("deleting", key)
        self.lake.delete(key)

    def uri(self, key: str) -> str:
        return self.lake.uri(key)


def test_a_failed_write_whose_clean_up_fails_too_reports_the_first_error(tmp_path: Path) -> None:
    store = LakeGoneAfter(tmp_path, writes=2)  # the in-flight marker and one part, then the lake is gone
    frames = [pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2]})]
    with pytest.raises(LakeUnavailable, match="lake gone writing raw/p/part-") as raised:
        partitions.write_partition(store, "raw/p", frames)
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "were not removed" in notes and "no manifest lists them" in notes
    store.writes = 10**6  # the lake is back: one part and the marker are left, nothing is committed
    assert not partitions.is_committed(store, "raw/p")
    assert len(store.list_keys("raw/p")) == 2


def test_a_spark_task_losing_the_lake_reaches_the_driver_as_lake_unavailable() -> None:
    java = RuntimeError(
        "py4j.protocol.Py4JJavaError: An error occurred while calling o71.collectToPython.\n"
        '  File "objects.py", line 160, in write_bytes\n'
        "platform_assets.dataplane.objects.LakeUnavailable: S3 lake at http://s3:9000 failed writing "
        "s3://lake/raw/part-1.parquet: Could not connect to the endpoint URL\n\tat org.apache.spark..."
    )
    named = tasks.named_failure(java)
    assert isinstance(named, LakeUnavailable)
    assert str(named) == (
        "S3 lake at http://s3:9000 failed writing s3://lake/raw/part-1.parquet: Could not connect to the endpoint URL"
    )
