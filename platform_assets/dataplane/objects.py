"""Lake objects as executors see them: a local folder or an S3 bucket, picklable and Dagster-free.

The control plane's ``LakeStorage`` resources hand Spark tasks one of these (``LakeStorage.executor_store``)
with the same root, endpoint and credentials, so a task reads and writes the lake without the driver.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: How long an S3 call may wait, and how often it is tried, before it fails (``S3Objects``): connecting 5 s,
#: each read of the answer 30 s, 3 attempts in botocore's ``standard`` mode (exponential backoff with jitter,
#: at most 20 s apart). botocore's defaults (60 s, 60 s, 5 attempts in ``legacy`` mode) hang a step up to
#: ten minutes against an endpoint that accepts and never answers; a step's own retries (``retries.py``) and
#: the next run handle a longer outage.
S3_CONNECT_TIMEOUT_SECONDS = 5.0
S3_READ_TIMEOUT_SECONDS = 30.0
S3_MAX_ATTEMPTS = 3


class LakeUnavailable(ConnectionError):
    """The S3 lake could not be reached or failed a call (after botocore's retries); names the endpoint,
    bucket and key. A ``ConnectionError``: the step's retry policy retries it (``retries.PERMANENT_ERRORS``)."""


def content_hash(data: bytes) -> str:
    """The sha256 of ``data``: a lake object's data version."""
    return hashlib.sha256(data).hexdigest()


class ObjectStore(Protocol):
    """What the partition format needs of a lake; ``LakeStorage`` and the stores below all provide it."""

    def write_bytes(self, key: str, data: bytes) -> str: ...

    def read_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def uri(self, key: str) -> str: ...


@dataclass(frozen=True)
class LocalObjects:
    """A lake in a local (or shared) folder; writes go to a temporary file, then ``os.replace``."""

    root: str

    def _path(self, key: str) -> Path:
        root = Path(self.root).resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            raise ValueError(f"lake key {key!r} escapes the lake root {root}")
        return path

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return content_hash(data)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no lake object {key!r} (looked for {path})")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        root = Path(self.root).resolve()
        base = self._path(prefix) if prefix else root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


@dataclass(frozen=True)
class S3Objects:
    """A lake under ``s3://bucket/prefix`` through boto3; a single PUT is atomic.

    The credentials are the driver's, resolved by the lake resource, so executors need none of their own.
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            config=Config(
                connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
                read_timeout=S3_READ_TIMEOUT_SECONDS,
                retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
            ),
        )

    def _call(self, doing: str, key: str, call: Callable[[], T]) -> T:
        """``call()``; a connection, timeout or server-side failure becomes ``LakeUnavailable`` naming the
        endpoint, bucket and key (a Spark task's failure reaches the driver as this one line)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status < 500:
                raise  # access denied, no such bucket: the request is wrong, not the lake away
            raise self._unavailable(doing, key, error) from error
        except BotoCoreError as error:
            raise self._unavailable(doing, key, error) from error

    def _unavailable(self, doing: str, key: str, error: Exception) -> LakeUnavailable:
        endpoint = self.endpoint_url or "AWS S3"
        return LakeUnavailable(f"S3 lake at {endpoint} failed {doing} {self.uri(key)}: {error}")

    def _key(self, key: str) -> str:
        return f"{self.prefix.strip('/')}/{key}".lstrip("/")

    def write_bytes(self, key: str, data: bytes) -> str:
        digest = content_hash(data)
        client = self._client()
        self._call(
            "writing",
            key,
            lambda: client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, Metadata={"sha256": digest}),
        )
        return digest

    def read_bytes(self, key: str) -> bytes:
        client = self._client()
        try:
            data: bytes = self._call(
                "reading", key, lambda: client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            )
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no lake object {key!r} (looked for {self.uri(key)})") from None
        return data

    def exists(self, key: str) -> bool:
        client = self._client()
        response = self._call(
            "looking for",
            key,
            lambda: client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1),
        )
        return any(o["Key"] == self._key(key) for o in response.get("Contents", []))

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self._client().get_paginator("list_objects_v2")
        strip = len(self._key(""))
        folder = self._key(prefix.strip("/") + "/") if prefix.strip("/") else self._key("")
        return sorted(
            obj["Key"][strip:]
            for page in self._call(
                "listing", prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=folder))
            )
            for obj in page.get("Contents", [])
        )

    def delete(self, key: str) -> None:
        client = self._client()
        self._call("deleting", key, lambda: client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"
