"""The lake's partition format: parts committed by a manifest written last, read only as committed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import partition_races
import pytest

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.dataplane.objects import LocalObjects

FOLDER = lake_keys.raw("2026-10-01")


@pytest.fixture
def store(tmp_path: Path) -> LocalObjects:
    return LocalObjects(root=str(tmp_path / "lake"))


def frames() -> list[pd.DataFrame]:
    return [pd.DataFrame({"ID": [1, 2]}), pd.DataFrame({"ID": [3]})]


def test_a_partition_reads_back_as_committed(store: LocalObjects) -> None:
    manifest = partitions.write_partition(store, FOLDER, frames())
    assert manifest.rows == 3 and len(manifest.parts) == 2
    assert partitions.read_partition(store, FOLDER)["ID"].tolist() == [1, 2, 3]
    assert partitions.read_manifest(store, FOLDER) == manifest


def test_the_digest_depends_on_the_rows_not_on_the_run(store: LocalObjects) -> None:
    first = partitions.write_partition(store, FOLDER, frames(), run_token="a")
    again = partitions.write_partition(store, FOLDER, frames(), run_token="b")
    assert first.parts[0].name != again.parts[0].name and first.digest == again.digest
    other = partitions.write_partition(store, FOLDER, [pd.DataFrame({"ID": [1, 2, 4]})])
    assert other.digest != first.digest


def test_parts_are_invisible_until_the_commit_and_older_files_go_after_it(store: LocalObjects) -> None:
    partitions.write_partition(store, FOLDER, frames(), run_token="old")
    written = partitions.write_part(store, FOLDER, lake_keys.part_name("new", 0), pd.DataFrame({"ID": [9]}))
    assert partitions.read_partition(store, FOLDER)["ID"].tolist() == [1, 2, 3]  # still the old commit
    partitions.commit(store, FOLDER, [written], "new")
    assert partitions.read_partition(store, FOLDER)["ID"].tolist() == [9]
    assert store.list_keys(FOLDER) == [f"{FOLDER}/{lake_keys.MANIFEST_FILE}", f"{FOLDER}/{written.name}"]


def test_an_uncommitted_partition_fails_naming_the_manifest(store: LocalObjects) -> None:
    partitions.write_part(store, FOLDER, lake_keys.part_name("x", 0), frames()[0])
    assert not partitions.is_committed(store, FOLDER)
    with pytest.raises(FileNotFoundError, match=f"not committed: no manifest .*{FOLDER}/_manifest.json"):
        partitions.read_partition(store, FOLDER)


def test_a_missing_part_fails_naming_it(store: LocalObjects) -> None:
    manifest = partitions.write_partition(store, FOLDER, frames())
    store.delete(lake_keys.part(FOLDER, manifest.parts[1].name))
    with pytest.raises(
        partitions.PartitionError, match=f"{manifest.parts[1].name} is listed in the manifest but missing"
    ):
        partitions.read_partition(store, FOLDER)


def test_a_hand_edited_manifest_is_refused(store: LocalObjects) -> None:
    partitions.write_partition(store, FOLDER, frames())
    key = lake_keys.manifest(FOLDER)
    document = json.loads(store.read_bytes(key))
    document["parts"] = document["parts"][:1]
    store.write_bytes(key, json.dumps(document).encode())
    with pytest.raises(partitions.PartitionError, match="digest does not match its parts"):
        partitions.read_manifest(store, FOLDER)
    store.write_bytes(key, b"{not json")
    with pytest.raises(partitions.PartitionError, match="_manifest.json: not a readable partition manifest"):
        partitions.read_manifest(store, FOLDER)


def test_a_commit_spares_the_parts_of_a_run_still_writing(store: LocalObjects) -> None:
    partition_races.a_commit_spares_the_parts_of_a_run_still_writing(store)


def test_a_reader_s_partition_outlives_a_newer_commit(store: LocalObjects) -> None:
    partition_races.a_reader_s_partition_outlives_a_newer_commit(store)


def test_a_reader_marking_during_a_sweep_keeps_its_parts(store: LocalObjects) -> None:
    partition_races.a_reader_marking_during_a_sweep_keeps_its_parts(store)


def test_concurrent_writers_leave_one_whole_commit(store: LocalObjects) -> None:
    partition_races.concurrent_writers_leave_one_whole_commit(store)


def test_a_dead_run_s_parts_are_swept_once_its_lease_expires(store: LocalObjects) -> None:
    """A run killed mid-write leaves its marker; its parts are spared until the lease runs out, then swept."""
    partitions.write_partition(store, FOLDER, frames(), run_token="committed")
    started = time.time()
    for token in ("dead", "alive"):
        store.write_bytes(
            lake_keys.in_flight(FOLDER, token),
            json.dumps({"run_token": token, "started_at": started, "expires_at": started + 60}).encode(),
        )
        partitions.write_part(store, FOLDER, lake_keys.part_name(token, 0), frames()[0])
    assert partitions.sweep(store, FOLDER, now=started + 1) == []
    store.write_bytes(
        lake_keys.in_flight(FOLDER, "alive"), json.dumps({"run_token": "alive", "expires_at": started + 600}).encode()
    )
    assert partitions.sweep(store, FOLDER, now=started + 61) == [lake_keys.part(FOLDER, lake_keys.part_name("dead", 0))]
    assert not store.exists(lake_keys.in_flight(FOLDER, "dead"))
    assert store.exists(lake_keys.part(FOLDER, lake_keys.part_name("alive", 0)))
    assert partitions.read_partition(store, FOLDER)["ID"].tolist() == [1, 2, 3]


def test_a_failed_run_removes_its_parts_and_its_marker(store: LocalObjects) -> None:
    committed = partitions.write_partition(store, FOLDER, frames())
    with pytest.raises(RuntimeError, match="task lost"), partitions.writing(store, [FOLDER]) as token:
        partitions.write_part(store, FOLDER, lake_keys.part_name(token, 0), frames()[0])
        assert store.exists(lake_keys.in_flight(FOLDER, token))
        raise RuntimeError("task lost")
    assert partitions.read_manifest(store, FOLDER) == committed
    assert store.list_keys(FOLDER) == sorted(
        [lake_keys.manifest(FOLDER), *(lake_keys.part(FOLDER, p.name) for p in committed.parts)]
    )


@pytest.mark.parametrize(
    ("name", "token"),
    [("part-0a1b-00003.parquet", "0a1b"), ("part-failed-run-00000.parquet", "failed-run"), ("_manifest.json", None)]
    + [("part-x.parquet", None), ("part--00001.parquet", None)],
)
def test_the_run_token_is_read_back_from_a_part_name(name: str, token: str | None) -> None:
    assert lake_keys.run_token_of(name) == token
