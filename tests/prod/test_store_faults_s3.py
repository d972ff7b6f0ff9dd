"""Store faults with real servers: S3 goes away in the middle of a materialization of the raw partition.

The lake is the production profile's moto S3 server, reached through a TCP proxy in this process that cuts
S3 off deterministically: at the partition's commit (the manifest PUT, after Spark wrote the parts) it drops
the connection and stops listening, so every later call is refused. The run fails with an error naming the
endpoint, bucket and key; Dagster retried the step as ``retries.io_retry_policy`` says; the partition is not
committed (no manifest, no part a reader could see). With S3 back, a rerun commits the partition whole, with
the digest of a clean run. The figures are printed (run with ``-s``).
"""

from __future__ import annotations

import re
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest
from dagster._utils.error import SerializableErrorInfo
from net_support import free_port
from prod_support import AWS_ENV, LAKE_BUCKET, ProdStores

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.dataplane.objects import ObjectStore
from platform_assets.definitions import bound_to
from platform_assets.settings import PlatformSettings

pytestmark = [pytest.mark.slow, pytest.mark.prod_profile]

PARTITION = "2026-10-05"
RAW = dg.AssetKey("raw_credit_applications")
REQUEST_LINE = re.compile(rb"^(PUT|GET|HEAD|POST|DELETE) (\S+) HTTP/1\.[01]\r?$", re.MULTILINE)


class S3CutProxy:
    """A TCP proxy to ``upstream`` on a free loopback port that goes down (drops every connection and stops
    listening: clients get "connection refused") when a request line's path contains ``cut_on``.
    ``restore()`` listens again on the same port. Counts the requests it forwarded."""

    def __init__(self, upstream: tuple[str, int], cut_on: bytes) -> None:
        self.upstream = upstream
        self.cut_on = cut_on
        self.port = free_port()
        self.forwarded: list[str] = []
        self.cut_at: float | None = None
        self.cut_on_armed = True
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Listen (again) and accept connections in a thread."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener, self.cut_on_armed = listener, self.cut_at is None
        threading.Thread(target=self._accept, args=(listener,), name="s3-proxy-accept", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut down: S3 is "down"
            if listener is not self._listener:  # accepted as the cut happened: refuse it like the closed port
                client.close()
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), name="s3-proxy-pipe", daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        for _, path in REQUEST_LINE.findall(data):
                            if self.cut_on_armed and self.cut_on in path:
                                self.cut()
                                return
                            self.forwarded.append(path.decode())
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                sock.close()

    def cut(self) -> None:
        """S3 goes away: no more listening, every open connection dropped."""
        self.cut_at = time.monotonic()
        self.cut_on_armed = False
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept() (close() alone would leave it accepting).
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._sockets.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()


@pytest.fixture
def s3_proxy(stores: ProdStores, prefix: str) -> Iterator[S3CutProxy]:
    host, port = stores.s3.endpoint_url.removeprefix("http://").split(":")
    # The path as botocore sends it (``=`` is %3D).
    manifest = quote(f"{prefix}/{lake_keys.manifest(lake_keys.raw(PARTITION))}", safe="/~").encode()
    proxy = S3CutProxy((host, int(port)), cut_on=manifest)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def prefix() -> str:
    return f"store-faults-{uuid.uuid4().hex[:8]}"


def ingest(lake_uri: str, endpoint: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    definitions = bound_to(PlatformSettings(lake_uri=lake_uri, s3_endpoint=endpoint, rows_per_day=600))
    return definitions.resolve_job_def("daily_ingest_job").execute_in_process(
        partition_key=PARTITION, instance=instance, asset_selection=[RAW], raise_on_error=False
    )


def step_events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == kind]


def test_s3_down_during_a_materialization_fails_clearly_retries_and_a_rerun_commits(
    stores: ProdStores, s3_proxy: S3CutProxy, prefix: str, platform_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platform_assets.retries import io_retry_policy

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    folder = lake_keys.raw(PARTITION)
    direct = partitions_store(stores, prefix)
    policy = io_retry_policy()

    with dg.DagsterInstance.ephemeral() as instance:
        started = time.monotonic()
        failed = ingest(f"s3://{LAKE_BUCKET}/{prefix}", s3_proxy.url, instance)
        failed_after = time.monotonic() - started
        assert s3_proxy.cut_at is not None, "the proxy never saw the commit: the test proves nothing"
        cut_to_failure = time.monotonic() - s3_proxy.cut_at
        failures = step_events(failed, dg.DagsterEventType.STEP_FAILURE)
        retries = step_events(failed, dg.DagsterEventType.STEP_UP_FOR_RETRY)
        attempts_parts = [p for p in s3_proxy.forwarded if "/part-" in p]

        # What is in the bucket with S3 "down" (read directly from moto, around the proxy).
        left = direct.list_keys(folder)
        committed = partitions.is_committed(direct, folder)
        with pytest.raises(FileNotFoundError, match="is not committed"):
            partitions.read_manifest(direct, folder)  # what a reader gets: no partition at all

        s3_proxy.restore()
        rerun = ingest(f"s3://{LAKE_BUCKET}/{prefix}", s3_proxy.url, instance)
        clean_prefix = f"{prefix}-clean"
        clean = ingest(f"s3://{LAKE_BUCKET}/{clean_prefix}", stores.s3.endpoint_url, instance)

    error = root_error(failures[0].step_failure_data.error) if failures else None
    message = error.message if error else ""
    print(
        f"\nS3 cut at the commit of {folder}: the run failed {cut_to_failure:.1f} s after the cut "
        f"({failed_after:.1f} s in all, Spark's start included) with {len(retries)} retries "
        f"({policy.max_retries} allowed, {policy.delay:g} s x attempt apart); {len(attempts_parts)} part PUT(s) "
        f"had reached S3; left in the folder: {len(left)} object(s) no manifest lists, committed: {committed}; "
        f"error: {message.strip()[:300]}"
    )
    assert not failed.success and len(failures) == 1
    # The error names the endpoint, bucket and key, not only a Java or botocore stack.
    assert error is not None and error.cls_name == "LakeUnavailable", error.to_string() if error else failures
    assert s3_proxy.url in message and f"s3://{LAKE_BUCKET}/{prefix}/{folder}/" in message, message
    # Retried as the policy says, then failed.
    assert len(retries) == policy.max_retries
    assert len(step_events(failed, dg.DagsterEventType.STEP_RESTARTED)) == policy.max_retries
    # Not committed: no manifest, and what is left are the failed attempt's parts (and its marker), listed
    # by no manifest: a reader sees no partition at all.
    assert attempts_parts, "S3 was cut before any part was written"
    assert not committed and lake_keys.manifest(folder) not in left, left

    # S3 back: the rerun commits the whole partition, the same rows as a clean run.
    assert rerun.success and clean.success
    manifest = partitions.read_manifest(direct, folder)
    clean_manifest = partitions.read_manifest(partitions_store(stores, clean_prefix), folder)
    assert manifest.digest == clean_manifest.digest and manifest.rows == clean_manifest.rows == 600
    assert len(partitions.read_partition(direct, folder)) == 600
    # The failed attempt's leftovers (its part, spared by sweeps while its in-flight marker lasts) are not read.
    assert {lake_keys.part(folder, part.name) for part in manifest.parts}.isdisjoint(left)
    materialized = rerun.asset_materializations_for_node(RAW.path[-1])
    assert materialized[0].tags["dagster/data_version"] == manifest.digest


def root_error(error: SerializableErrorInfo | None) -> SerializableErrorInfo | None:
    """The step's own error under Dagster's ``RetryRequestedFromPolicy`` wrapper ("Exceeded max_retries")."""
    while error is not None and error.cls_name == "RetryRequestedFromPolicy":
        error = error.cause or error.context
    return error


def partitions_store(stores: ProdStores, prefix: str) -> ObjectStore:
    """The lake under ``prefix`` straight on moto (not through the proxy), as a reader sees it."""
    from platform_assets.dataplane.objects import S3Objects

    return S3Objects(
        bucket=LAKE_BUCKET,
        prefix=prefix,
        endpoint_url=stores.s3.endpoint_url,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
