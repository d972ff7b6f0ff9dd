"""The lake's partition format: a folder of Parquet parts committed by a manifest written last.

``<folder>/part-<run token>-<index>.parquet`` are the parts; ``<folder>/_manifest.json`` lists each
part's name, rows and sha256 and the partition digest. Writing the manifest is the commit (one atomic
object write); until then no reader sees a new part, and since part names carry the writing run's token,
a failed run never overwrites a committed part. After a commit the files of runs that are neither
committed nor still writing are removed: a writing run marks itself in the folder first
(``_inflight-<token>.json``, see ``writing``), so two runs writing the same partition at once never delete
each other's parts and the last commit wins whole. The digest combines the parts' sha256s in order, not
their names, so the same rows written twice give the same digest: it is the partition's Dagster data
version and what a model version records in ``data_versions``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from platform_assets.core import lake_keys
from platform_assets.dataplane.objects import ObjectStore, content_hash

FORMAT_VERSION = 1
#: How long a run's in-flight marker protects its uncommitted parts, seconds. A marker older than this is
#: a run that died without cleaning up (a killed process): its parts become garbage for the next commit.
#: Far above any partition write (minutes at 10M rows), since expiring a live run would lose its parts.
IN_FLIGHT_LEASE_SECONDS = 24 * 3600


class PartitionError(ValueError):
    """A partition cannot be read as committed: a part is missing, corrupt or not Parquet. Names the object."""


@dataclass(frozen=True)
class Part:
    name: str  # inside the partition folder
    rows: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    parts: tuple[Part, ...]
    run_token: str

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def digest(self) -> str:
        return partition_digest(self.parts)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "run_token": self.run_token,
                "rows": self.rows,
                "digest": self.digest,
                "parts": [{"name": p.name, "rows": p.rows, "sha256": p.sha256} for p in self.parts],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> Manifest:
        try:
            document = json.loads(text)
            manifest = cls(
                parts=tuple(Part(str(p["name"]), int(p["rows"]), str(p["sha256"])) for p in document["parts"]),
                run_token=str(document["run_token"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise PartitionError(f"{source}: not a readable partition manifest ({error})") from None
        if document.get("digest") != manifest.digest:
            raise PartitionError(f"{source}: its digest does not match its parts (edited by hand?)")
        return manifest


def partition_digest(parts: Iterable[Part]) -> str:
    """sha256 over the parts' sha256s in order: the partition's data version."""
    return hashlib.sha256("\n".join(p.sha256 for p in parts).encode()).hexdigest()


def new_run_token() -> str:
    """A token unique to one write of a partition; it goes into every part name of that write."""
    return uuid.uuid4().hex[:16]


def parquet_bytes(table: pa.Table | pd.DataFrame) -> bytes:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_part(store: ObjectStore, folder: str, name: str, table: pa.Table | pd.DataFrame) -> Part:
    """Write one part file (not yet visible to readers: commit it with the others)."""
    data = parquet_bytes(table)
    digest = store.write_bytes(lake_keys.part(folder, name), data)
    return Part(name=name, rows=len(table), sha256=digest)


@contextmanager
def writing(
    store: ObjectStore, folders: Sequence[str], run_token: str | None = None, *, now: float | None = None
) -> Iterator[str]:
    """Mark a run as writing into ``folders`` for the ``with`` block, which gets the run's token.

    The marker goes first, before any part, so a concurrent commit's sweep spares the run's parts; it is
    removed when the block ends. A block that raises also removes the run's parts that no manifest lists.
    When that clean-up fails too (the lake went away: the usual reason the block raised), the block's own
    error is raised with a note naming what was left: uncommitted parts no reader sees, removed by a later
    commit's sweep once the marker's lease ends (``IN_FLIGHT_LEASE_SECONDS``).
    """
    token = run_token or new_run_token()
    started = time.time() if now is None else now
    marker = json.dumps({"run_token": token, "started_at": started, "expires_at": started + IN_FLIGHT_LEASE_SECONDS})
    for folder in folders:
        store.write_bytes(lake_keys.in_flight(folder, token), marker.encode())
    try:
        yield token
    except BaseException as failure:
        for folder in folders:
            try:
                _remove_uncommitted(store, folder, token)
                store.delete(lake_keys.in_flight(folder, token))
            except Exception as cleanup:  # the first error is the one to report, not the clean-up's
                failure.add_note(
                    f"run {token}'s uncommitted parts and in-flight marker in {folder} were not removed "
                    f"({type(cleanup).__name__}: {cleanup}); no manifest lists them"
                )
        raise
    for folder in folders:
        store.delete(lake_keys.in_flight(folder, token))


@contextmanager
def reading(store: ObjectStore, folder: str, *, attempts: int = 20) -> Iterator[Manifest]:
    """The committed manifest of ``folder``, its parts spared by every sweep for the ``with`` block.

    A reader marks the manifest's run in flight under a token of its own, then reads the manifest again: if
    it is still the same, any later commit's sweep lists the marker (its manifest write would have shown in
    the second read), so the parts stay until the block ends; if not, it tries the newer manifest.
    """
    reader = new_run_token()
    marker = lake_keys.in_flight(folder, reader)
    manifest = read_manifest(store, folder)
    for _ in range(attempts):
        expires = time.time() + IN_FLIGHT_LEASE_SECONDS
        store.write_bytes(marker, json.dumps({"run_token": manifest.run_token, "expires_at": expires}).encode())
        again = read_manifest(store, folder)
        if again == manifest:
            break
        manifest = again
    else:
        store.delete(marker)
        raise PartitionError(f"partition {folder} was recommitted {attempts} times while a reader opened it")
    try:
        yield manifest
    finally:
        store.delete(marker)


def commit(store: ObjectStore, folder: str, parts: Iterable[Part], run_token: str) -> Manifest:
    """Write the manifest (the commit), then sweep the folder (``sweep``)."""
    manifest = Manifest(parts=tuple(parts), run_token=run_token)
    store.write_bytes(lake_keys.manifest(folder), manifest.to_json().encode())
    sweep(store, folder, committed_by=run_token)
    return manifest


def sweep(store: ObjectStore, folder: str, committed_by: str | None = None, *, now: float | None = None) -> list[str]:
    """Delete the committed folder's files that belong to no live run: not listed by the current manifest,
    not written by a run whose in-flight marker is live (expired markers go too). Returns the deleted keys.

    ``committed_by``: the run that just committed; its own parts the current manifest does not list (another
    run committed after it) are garbage at once, since no one else commits its token.
    """
    # The order matters under concurrency: keys, markers, manifest, markers again. A part of run X that a
    # reader may hold is spared by one of the three reads after the listing:
    # - X's own marker predates its parts (so the listing); if X commits after the manifest read, the
    #   marker is still there at the first marker read;
    # - a reader that saw X's manifest before or at the manifest read finds X in that read;
    # - a reader whose marker came after the first marker read but before the deletes is in the second.
    # (With only the first marker read, a reader marking X between it and a newer commit lost X's parts.)
    keys = store.list_keys(folder)
    # The committing run's own marker does not spare its parts: it has committed (readers' markers still do).
    own = lake_keys.in_flight(folder, committed_by) if committed_by else None
    clock = time.time() if now is None else now
    live, _ = _in_flight(store, folder, clock, ignore=own)
    manifest_key = lake_keys.manifest(folder)
    listed = {lake_keys.part(folder, p.name) for p in read_manifest(store, folder).parts}
    live_after, expired = _in_flight(store, folder, clock, ignore=own)
    live |= live_after
    deleted = []
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        if key == manifest_key or key in listed or name.startswith(lake_keys.IN_FLIGHT_PREFIX):
            continue
        token = lake_keys.run_token_of(name)
        if token is not None and token in live:
            continue
        store.delete(key)
        deleted.append(key)
    for marker in expired:
        store.delete(marker)
    return deleted


def _in_flight(store: ObjectStore, folder: str, now: float, ignore: str | None) -> tuple[set[str], list[str]]:
    """The run tokens that live markers in ``folder`` spare (but ``ignore``'s), and the expired markers' keys."""
    live: set[str] = set()
    expired: list[str] = []
    for key in store.list_keys(folder):
        if key == ignore or not key.rsplit("/", 1)[-1].startswith(lake_keys.IN_FLIGHT_PREFIX):
            continue
        try:
            marker = json.loads(store.read_bytes(key))
            token, expires = str(marker["run_token"]), float(marker["expires_at"])
        except FileNotFoundError:
            continue  # the run just ended: its commit is what the manifest shows
        except (ValueError, KeyError, TypeError):
            expired.append(key)  # unreadable: no run can rely on it
            continue
        if expires > now:
            live.add(token)
        else:
            expired.append(key)
    return live, expired


def _remove_uncommitted(store: ObjectStore, folder: str, run_token: str) -> None:
    """A failed run's own parts, unless a manifest already lists them."""
    current = read_manifest(store, folder) if store.exists(lake_keys.manifest(folder)) else None
    if current is not None and current.run_token == run_token:
        return
    for key in store.list_keys(folder):
        if lake_keys.run_token_of(key.rsplit("/", 1)[-1]) == run_token:
            store.delete(key)


def is_committed(store: ObjectStore, folder: str) -> bool:
    return lake_keys.manifest(folder) in store.list_keys(folder)


def _named(store: ObjectStore, key: str) -> str:
    """A lake object as a message names it: where it lives, readable (``date=`` not ``date%3D``)."""
    return unquote(store.uri(key))


def read_manifest(store: ObjectStore, folder: str) -> Manifest:
    """The committed manifest; ``FileNotFoundError`` naming it when the partition was never committed."""
    key = lake_keys.manifest(folder)
    try:
        text = store.read_bytes(key).decode("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"partition {folder} is not committed: no manifest {_named(store, key)}") from None
    except UnicodeDecodeError:
        raise PartitionError(f"{_named(store, key)}: not a readable partition manifest (not UTF-8)") from None
    return Manifest.from_json(text, _named(store, key))


def _verified_bytes(store: ObjectStore, folder: str, part: Part) -> tuple[bytes, str]:
    """A listed part's bytes, checked against its sha256, and its name for messages."""
    key = lake_keys.part(folder, part.name)
    name = _named(store, key)
    try:
        data = store.read_bytes(key)
    except FileNotFoundError as error:
        raise PartitionError(f"{name} is listed in the manifest but missing ({error})") from None
    except OSError as error:
        raise PartitionError(f"{name} is unreadable: {error}") from None
    actual = content_hash(data)
    if actual != part.sha256:
        raise PartitionError(
            f"{name} is corrupt or was changed after its commit "
            f"(sha256 {actual[:12]} != {part.sha256[:12]} in the manifest)"
        )
    return data, name


def read_part(store: ObjectStore, folder: str, part: Part) -> pa.Table:
    """One listed part, checked against its sha256; ``PartitionError`` naming the object otherwise."""
    data, name = _verified_bytes(store, folder, part)
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as error:
        raise PartitionError(f"{name} is not a readable Parquet file: {error}") from None
    if table.num_rows != part.rows:
        raise PartitionError(f"{name} holds {table.num_rows} rows, its manifest says {part.rows}")
    return table


def iter_part_batches(
    store: ObjectStore, folder: str, part: Part, columns: Sequence[str] | None = None, batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """One listed part (checked against its sha256) as record batches of at most ``batch_rows`` rows, decoded
    row group by row group: memory is the part's encoded bytes plus one batch."""
    data, name = _verified_bytes(store, folder, part)
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        if parquet.metadata.num_rows != part.rows:
            raise PartitionError(f"{name} holds {parquet.metadata.num_rows} rows, its manifest says {part.rows}")
        yield from parquet.iter_batches(batch_size=batch_rows, columns=None if columns is None else list(columns))
    except (pa.ArrowException, OSError) as error:
        raise PartitionError(f"{name} is not a readable Parquet file: {error}") from None


@dataclass(frozen=True)
class PartsSource:
    """Committed parts of one or more partitions as pieces read batch by batch (a ``dataset.TensorSource``)."""

    store: ObjectStore
    parts: tuple[tuple[str, Part], ...]  # (partition folder, part)

    @classmethod
    def of(cls, store: ObjectStore, manifests: dict[str, Manifest]) -> PartsSource:
        """Every part ``{folder: manifest}`` lists, folder by folder in key order."""
        return cls(store, tuple((folder, part) for folder in sorted(manifests) for part in manifests[folder].parts))

    def pieces(self) -> int:
        return len(self.parts)

    def read(self, piece: int, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        folder, part = self.parts[piece]
        return iter_part_batches(self.store, folder, part, columns)


def iter_partition(store: ObjectStore, folder: str, manifest: Manifest | None = None) -> Iterator[pd.DataFrame]:
    """The committed partition part by part (memory bounded by one part)."""
    manifest = manifest or read_manifest(store, folder)
    for part in manifest.parts:
        yield read_part(store, folder, part).to_pandas()


def read_partition(store: ObjectStore, folder: str, manifest: Manifest | None = None) -> pd.DataFrame:
    """The whole committed partition as one frame (for small partitions and tests)."""
    frames = list(iter_partition(store, folder, manifest))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_partition(
    store: ObjectStore, folder: str, frames: Iterable[pd.DataFrame], run_token: str | None = None
) -> Manifest:
    """Write ``frames`` as the parts of ``folder`` and commit them (marked in flight meanwhile)."""
    with writing(store, [folder], run_token) as token:
        parts = [write_part(store, folder, lake_keys.part_name(token, i), f) for i, f in enumerate(frames)]
        return commit(store, folder, parts, token)
