"""Data-lake storage: a local folder by default, S3 (or MinIO) through boto3. Every write is atomic."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod

import dagster as dg
import pandas as pd

from platform_assets.dataplane.objects import LocalObjects, ObjectStore, S3Objects, content_hash

__all__ = ["LakeStorage", "LocalLake", "S3Lake", "content_hash", "lake_from_uri"]


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

    @abstractmethod
    def executor_store(self) -> ObjectStore:
        """The same lake as a picklable, Dagster-free store that Spark tasks read and write themselves."""

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

    def executor_store(self) -> LocalObjects:
        return LocalObjects(root=self.root)

    def write_bytes(self, key: str, data: bytes) -> str:
        return self.executor_store().write_bytes(key, data)

    def read_bytes(self, key: str) -> bytes:
        return self.executor_store().read_bytes(key)

    def exists(self, key: str) -> bool:
        return self.executor_store().exists(key)

    def list_keys(self, prefix: str) -> list[str]:
        return self.executor_store().list_keys(prefix)

    def delete(self, key: str) -> None:
        self.executor_store().delete(key)

    def uri(self, key: str) -> str:
        return self.executor_store().uri(key)


class S3Lake(LakeStorage):
    """A lake under ``s3://bucket/prefix``. A single PUT is atomic: readers see the old or the new object."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str | None = None

    def _objects(self) -> S3Objects:
        """This process's own view: boto3 resolves the credential chain at every call (tokens rotate)."""
        return S3Objects(
            bucket=self.bucket, prefix=self.prefix, endpoint_url=self.endpoint_url, region_name=self.region_name
        )

    def executor_store(self) -> S3Objects:
        """Executors get the endpoint and the credentials this process resolved (AWS credential chain)."""
        import boto3

        credentials = boto3.Session(region_name=self.region_name).get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        return S3Objects(
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            access_key_id=frozen.access_key if frozen else None,
            secret_access_key=frozen.secret_key if frozen else None,
            session_token=frozen.token if frozen else None,
        )

    def write_bytes(self, key: str, data: bytes) -> str:
        return self._objects().write_bytes(key, data)

    def read_bytes(self, key: str) -> bytes:
        return self._objects().read_bytes(key)

    def exists(self, key: str) -> bool:
        return self._objects().exists(key)

    def list_keys(self, prefix: str) -> list[str]:
        return self._objects().list_keys(prefix)

    def delete(self, key: str) -> None:
        self._objects().delete(key)

    def uri(self, key: str) -> str:
        return self._objects().uri(key)


def lake_from_uri(uri: str, endpoint_url: str | None = None) -> LakeStorage:
    """``s3://bucket/prefix`` gives an ``S3Lake``; anything else is a local folder."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        return S3Lake(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url)
    return LocalLake(root=uri)
