"""Two runs materializing the same partition at the same time leave a consistent lake."""

from __future__ import annotations

from pathlib import Path

import ingest_support
import pytest

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.dataplane.objects import LocalObjects
from platform_assets.ml import synthetic

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PARTITION = "2026-10-07"


def test_two_concurrent_ingests_of_one_partition_leave_it_whole(platform_home: Path) -> None:
    """Both runs land raw and tensors for the same day at once; each commit sweeps while the other writes."""
    rows = 2 * synthetic.CHUNK_ROWS
    runs = [ingest_support.materialize("local[1]", rows, PARTITION) for _ in range(2)]
    reports = [ingest_support.report(run)[0] for run in runs]
    assert all(r["success"] for r in reports)

    store = LocalObjects(root=str(platform_home / "lake"))
    for folder in (lake_keys.raw(PARTITION), lake_keys.tensors(PARTITION)):
        manifest = partitions.read_manifest(store, folder)
        # Every part the last commit lists is there and intact (read_partition checks each sha256).
        assert len(partitions.read_partition(store, folder)) == rows == manifest.rows
        assert len(manifest.parts) == 2
        # No run is still writing: no marker is left, and a sweep leaves only the committed files.
        partitions.sweep(store, folder)
        listed = [lake_keys.part(folder, p.name) for p in manifest.parts]
        assert store.list_keys(folder) == sorted([lake_keys.manifest(folder), *listed])
    # Same seed and day: both runs wrote the same rows, so both report the data version that is committed.
    raw_digest = partitions.read_manifest(store, lake_keys.raw(PARTITION)).digest
    assert {r["raw_data_version"] for r in reports} == {raw_digest}
    assert {r["data_version"] for r in reports} == {
        partitions.read_manifest(store, lake_keys.tensors(PARTITION)).digest
    }
