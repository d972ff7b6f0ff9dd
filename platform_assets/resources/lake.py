"""Data-lake storage: a local folder by default, S3 (or MinIO) through boto3. Every write is atomic."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd


def content_hash(data: bytes) -> str:
    """The sha256 of ``data``: a lake object's data version."""
    return hashlib.sha256(data).hexdigest()


class LakeStorage(dg.ConfigurableResource["LakeStorage"], ABC):
    """Keys are ``/``-separated paths below the lake root, e.g. ``raw/credit_applications/date=.../part.parquet``."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` atomically under ``key``; return its content hash."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` naming the key when it is absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key below ``prefix``, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where ``key`` lives, for people and for metadata links."""

    def write_frame(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(key, buffer.getvalue())

    def read_frame(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(key)))

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")


class LocalLake(LakeStorage):
    """A lake in a local folder. Writes go to a temporary file in the same folder, then ``os.replace``."""

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


class S3Lake(LakeStorage):
    """A lake under ``s3://bucket/prefix``. A single PUT is atomic: readers see the old or the new object."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str | None = None

    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region_name)

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
        # Like a folder: "a" lists "a/..." but not "ab/...".
        folder = self._key(prefix.strip("/") + "/") if prefix.strip("/") else self._key("")
        keys = [
            obj["Key"][strip:]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder)
            for obj in page.get("Contents", [])
        ]
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._client().delete_object(Bucket=self.bucket, Key=self._key(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def lake_from_uri(uri: str, endpoint_url: str | None = None) -> LakeStorage:
    """``s3://bucket/prefix`` gives an ``S3Lake``; anything else is a local folder."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        return S3Lake(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url)
    return LocalLake(root=uri)
