"""LocalLake: a lake in a folder whose every write is atomic."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from platform_assets.resources.lake import LocalLake, content_hash, lake_from_uri

KEY = "raw/credit_applications/date=2026-10-01/part.parquet"


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(root=str(tmp_path / "lake"))


def _files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_read_roundtrip_and_content_hash(lake: LocalLake, tmp_path: Path) -> None:
    data = b"\x00credit\xffhistory" * 1000
    digest = lake.write_bytes(KEY, data)
    assert digest == hashlib.sha256(data).hexdigest() == content_hash(data)
    assert lake.read_bytes(KEY) == data
    on_disk = tmp_path / "lake" / KEY
    assert on_disk.read_bytes() == data
    assert lake.exists(KEY)
    assert lake.uri(KEY) == on_disk.resolve().as_uri()


def test_overwrite_replaces_the_object(lake: LocalLake) -> None:
    lake.write_bytes(KEY, b"old")
    assert lake.write_bytes(KEY, b"new") == hashlib.sha256(b"new").hexdigest()
    assert lake.read_bytes(KEY) == b"new"


def test_text_and_frame_roundtrip(lake: LocalLake) -> None:
    lake.write_text("notes/readme.txt", "défaut de paiement")
    assert lake.read_text("notes/readme.txt") == "défaut de paiement"
    frame = pd.DataFrame({"ID": [1, 2, 3], "LIMIT_BAL": [10_000, 20_000, 30_000], "reason": [None, "AGE", None]})
    digest = lake.write_frame(KEY, frame)
    assert digest == hashlib.sha256(lake.read_bytes(KEY)).hexdigest()
    pd.testing.assert_frame_equal(lake.read_frame(KEY), frame)


def test_list_keys_is_sorted_and_skips_temporary_files(lake: LocalLake, tmp_path: Path) -> None:
    for key in ("b/2.parquet", "a/sub/3.parquet", "a/1.parquet", "ab/4.parquet"):
        lake.write_bytes(key, key.encode())
    # A writer that died mid-write leaves a hidden temporary file behind; it is not an object.
    (tmp_path / "lake" / "a" / ".1.parquet.x1y2.tmp").write_bytes(b"partial")
    assert lake.list_keys("a") == ["a/1.parquet", "a/sub/3.parquet"]
    assert lake.list_keys("") == ["a/1.parquet", "a/sub/3.parquet", "ab/4.parquet", "b/2.parquet"]
    assert lake.list_keys("missing") == []


def test_delete_removes_the_object(lake: LocalLake) -> None:
    lake.write_bytes(KEY, b"x")
    lake.delete(KEY)
    assert not lake.exists(KEY)
    assert KEY not in lake.list_keys("")
    lake.delete(KEY)  # deleting twice is not an error


def test_missing_key_raises_file_not_found_naming_the_key(lake: LocalLake) -> None:
    with pytest.raises(FileNotFoundError, match="date=2026-10-01"):
        lake.read_bytes(KEY)
    assert not lake.exists(KEY)


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "", "."])
def test_keys_escaping_the_root_are_refused(lake: LocalLake, tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="escapes the lake root"):
        lake.write_bytes(key, b"x")
    with pytest.raises(ValueError, match="escapes the lake root"):
        lake.read_bytes(key)
    assert not (tmp_path / "x").exists()


def test_lake_from_uri_gives_a_local_lake_for_a_path(tmp_path: Path) -> None:
    lake = lake_from_uri(str(tmp_path / "elsewhere"))
    assert isinstance(lake, LocalLake)
    lake.write_bytes("k", b"v")
    assert (tmp_path / "elsewhere" / "k").read_bytes() == b"v"


# --- atomicity ---------------------------------------------------------------------------------


def _fail(*_args: object, **_kwargs: object) -> None:
    raise OSError("disk went away")


@pytest.mark.parametrize("step", ["replace", "fsync"])
def test_failed_write_keeps_the_previous_object_and_no_temp_file(
    lake: LocalLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    lake.write_bytes(KEY, b"version 1")
    folder = (tmp_path / "lake" / KEY).parent
    monkeypatch.setattr(os, step, _fail)
    with pytest.raises(OSError, match="disk went away"):
        lake.write_bytes(KEY, b"version 2 " * 10_000)
    monkeypatch.undo()
    assert lake.read_bytes(KEY) == b"version 1"
    assert _files_in(folder) == ["part.parquet"]


def test_failed_first_write_leaves_nothing(lake: LocalLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(OSError):
        lake.write_bytes(KEY, b"data")
    monkeypatch.undo()
    assert not lake.exists(KEY)
    assert _files_in((tmp_path / "lake" / KEY).parent) == []
    assert lake.list_keys("") == []


def test_interrupted_write_cleans_up(lake: LocalLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake.write_bytes(KEY, b"version 1")

    def interrupt(_fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        lake.write_bytes(KEY, b"version 2")
    monkeypatch.undo()
    assert lake.read_bytes(KEY) == b"version 1"
    assert _files_in((tmp_path / "lake" / KEY).parent) == ["part.parquet"]


def test_concurrent_readers_never_see_a_partial_object(lake: LocalLake) -> None:
    size = 2 * 1024 * 1024
    versions = [bytes([i]) * size for i in range(51)]  # a torn or short read matches none of them
    digests = {hashlib.sha256(v).hexdigest(): i for i, v in enumerate(versions)}
    lake.write_bytes(KEY, versions[0])
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            start.wait()
            for version in versions[1:]:
                lake.write_bytes(KEY, version)
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    start.wait()
    seen = []
    try:
        for _ in range(200):
            data = lake.read_bytes(KEY)
            digest = hashlib.sha256(data).hexdigest()
            assert digest in digests, f"read {len(data)} bytes matching no written version"
            seen.append(digests[digest])
    finally:
        thread.join()
    assert not errors
    assert seen == sorted(seen)  # versions only move forward
    assert lake.read_bytes(KEY) == versions[-1]
    assert lake.list_keys("raw") == [KEY]
