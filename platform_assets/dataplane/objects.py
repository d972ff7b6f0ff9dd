"""Lake objects as executors see them: a local folder or an S3 bucket, picklable and Dagster-free.

The control plane's ``LakeStorage`` resources hand Spark tasks one of these (``LakeStorage.executor_store``)
with the same root, endpoint and credentials, so a task reads and writes the lake without the driver.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


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

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix.strip('/')}/{key}".lstrip("/")

    def write_bytes(self, key: str, data: bytes) -> str:
        digest = content_hash(data)
        self._client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data, Metadata={"sha256": digest})
        return digest

    def read_bytes(self, key: str) -> bytes:
        client = self._client()
        try:
            return client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()  # type: ignore[no-any-return]
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no lake object {key!r} (looked for {self.uri(key)})") from None

    def exists(self, key: str) -> bool:
        response = self._client().list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1)
        return any(o["Key"] == self._key(key) for o in response.get("Contents", []))

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self._client().get_paginator("list_objects_v2")
        strip = len(self._key(""))
        folder = self._key(prefix.strip("/") + "/") if prefix.strip("/") else self._key("")
        return sorted(
            obj["Key"][strip:]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder)
            for obj in page.get("Contents", [])
        )

    def delete(self, key: str) -> None:
        self._client().delete_object(Bucket=self.bucket, Key=self._key(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"
