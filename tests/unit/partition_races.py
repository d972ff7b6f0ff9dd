"""Two runs writing the same partition at once, as scenarios any lake (local folder, S3) must pass."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack

import pandas as pd

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.dataplane.objects import ObjectStore

FOLDER = lake_keys.tensors("2026-10-01")


def frames(first_id: int) -> list[pd.DataFrame]:
    return [pd.DataFrame({"ID": [first_id, first_id + 1]}), pd.DataFrame({"ID": [first_id + 2]})]


def a_commit_spares_the_parts_of_a_run_still_writing(store: ObjectStore) -> None:
    """A writes its parts, B writes and commits the whole partition, then A commits: A's commit is whole."""
    with partitions.writing(store, [FOLDER]) as slow:
        parts = [partitions.write_part(store, FOLDER, lake_keys.part_name(slow, i), f) for i, f in enumerate(frames(1))]
        partitions.write_partition(store, FOLDER, frames(100))
        assert partitions.read_partition(store, FOLDER)["ID"].tolist() == [100, 101, 102]
        assert all(store.exists(lake_keys.part(FOLDER, p.name)) for p in parts), "B's commit deleted A's parts"
        partitions.commit(store, FOLDER, parts, slow)
    assert partitions.read_partition(store, FOLDER)["ID"].tolist() == [1, 2, 3]
    # B's parts (committed, then superseded) and both markers are gone: the manifest and A's parts are left.
    assert store.list_keys(FOLDER) == sorted(
        [lake_keys.manifest(FOLDER), *(lake_keys.part(FOLDER, p.name) for p in parts)]
    )


def a_reader_s_partition_outlives_a_newer_commit(store: ObjectStore) -> None:
    """A reader (a Spark job over the parts) opens the partition; a rerun commits: the reader's parts stay."""
    partitions.write_partition(store, FOLDER, frames(1))
    with partitions.reading(store, FOLDER) as opened:
        partitions.write_partition(store, FOLDER, frames(100))
        assert [partitions.read_part(store, FOLDER, p)["ID"].to_pylist() for p in opened.parts] == [[1, 2], [3]]
    partitions.write_partition(store, FOLDER, frames(200))  # the reader is gone: its parts are swept now
    assert store.list_keys(FOLDER) == sorted(
        [
            lake_keys.manifest(FOLDER),
            *(lake_keys.part(FOLDER, p.name) for p in partitions.read_manifest(store, FOLDER).parts),
        ]
    )


class _OnManifestRead:
    """``store``, but the first read of the partition's manifest runs ``before`` first (once)."""

    def __init__(self, store: ObjectStore, before: Callable[[], None]) -> None:
        self.store, self.before, self.fired = store, before, False

    def write_bytes(self, key: str, data: bytes) -> str:
        return self.store.write_bytes(key, data)

    def read_bytes(self, key: str) -> bytes:
        if key == lake_keys.manifest(FOLDER) and not self.fired:
            self.fired = True
            self.before()
        return self.store.read_bytes(key)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def list_keys(self, prefix: str) -> list[str]:
        return self.store.list_keys(prefix)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def uri(self, key: str) -> str:
        return self.store.uri(key)


def a_reader_marking_during_a_sweep_keeps_its_parts(store: ObjectStore) -> None:
    """The interleaving the threaded test below once hit in CI, made certain: run A committed and ended;
    run B's sweep has read the markers (none) and is about to read the manifest; a reader opens A's
    partition and marks it; run C commits. B's sweep then reads C's manifest: A's parts are not listed
    and were not marked when it first looked, but the reader still needs them."""
    partitions.write_partition(store, FOLDER, frames(1))
    with ExitStack() as stack:

        def reader_opens_then_c_commits() -> None:
            stack.enter_context(partitions.reading(store, FOLDER))
            partitions.write_partition(store, FOLDER, frames(100))

        opened = partitions.read_manifest(store, FOLDER)
        partitions.sweep(_OnManifestRead(store, reader_opens_then_c_commits), FOLDER, committed_by="b" * 16)
        assert [partitions.read_part(store, FOLDER, p)["ID"].to_pylist() for p in opened.parts] == [[1, 2], [3]]
    assert partitions.read_partition(store, FOLDER)["ID"].tolist() == [100, 101, 102]


def concurrent_writers_leave_one_whole_commit(store: ObjectStore, writers: int = 4, rounds: int = 10) -> None:
    """Writers rewrite the partition at once, each with its own rows, while a reader reads it again and again:
    every read is one writer's rows, and the partition ends as one writer's rows."""
    errors: list[BaseException] = []
    start = threading.Barrier(writers + 1)
    expected = [[i, i + 1, i + 2] for i in range(1000, 1000 * (writers + 1), 1000)]
    partitions.write_partition(store, FOLDER, frames(1000))

    def write(first_id: int) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                partitions.write_partition(store, FOLDER, frames(first_id))
        except BaseException as error:  # reported below, with the writer's rows
            errors.append(error)

    def read() -> None:
        try:
            start.wait()
            for _ in range(rounds * writers):
                with partitions.reading(store, FOLDER) as opened:
                    ids = [i for p in opened.parts for i in partitions.read_part(store, FOLDER, p)["ID"].to_pylist()]
                assert ids in expected, ids
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(1000 * (w + 1),)) for w in range(writers)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    ids = partitions.read_partition(store, FOLDER)["ID"].tolist()
    assert ids in expected, ids
    # A last sweep (the next commit's) leaves exactly the committed files.
    partitions.sweep(store, FOLDER)
    listed = [lake_keys.part(FOLDER, p.name) for p in partitions.read_manifest(store, FOLDER).parts]
    assert store.list_keys(FOLDER) == sorted([lake_keys.manifest(FOLDER), *listed])
