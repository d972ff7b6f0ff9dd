"""Which tensor partitions a model is trained on, and how they are split."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from pydantic import Field

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions as lake_partitions
from platform_assets.ml.dataset import Split, split_dataset
from platform_assets.ml.features import REASON
from platform_assets.resources.lake import LakeStorage


class TrainingData(dg.ConfigurableResource["TrainingData"]):
    """One definition of the modelling dataset, shared by the CNN, the baselines and the evaluation."""

    window_days: int = Field(default=0, description="Newest N tensor partitions to use; 0 uses all.")
    validation_fraction: float = Field(default=0.1, description="Share of rows for early stopping/thresholds.")
    test_fraction: float = Field(default=0.2, description="Share of rows held out for evaluation.")
    split_seed: int = Field(default=42, description="Seed of the ID hash that assigns rows to splits.")

    def available_partitions(self, lake: LakeStorage) -> list[str]:
        # Committed partitions only: a folder without its manifest is a run that has not finished (or failed).
        partitions = sorted(
            {
                lake_keys.partition_of(k)
                for k in lake.list_keys(lake_keys.TENSORS_PREFIX)
                if k.endswith(f"/{lake_keys.MANIFEST_FILE}")
            }
        )
        if not partitions:
            raise ValueError("no credit_history_tensors partitions in the lake: materialize them first")
        return partitions[-self.window_days :] if self.window_days > 0 else partitions

    def load(self, lake: LakeStorage) -> tuple[pd.DataFrame, dict[str, str]]:
        """Valid tensor rows of the training window and ``{partition: digest}`` of what was read."""
        return _read_partitions(lake, self.available_partitions(lake), expected=None)

    def splits(self, rows: pd.DataFrame) -> dict[str, Split]:
        return split_dataset(rows, self.validation_fraction, self.test_fraction, self.split_seed)


def load_partitions(lake: LakeStorage, data_versions: dict[str, str]) -> pd.DataFrame:
    """Valid tensor rows of exactly the partitions in ``data_versions``; fails if any changed since."""
    return _read_partitions(lake, sorted(data_versions), expected=data_versions)[0]


def _read_partitions(
    lake: LakeStorage, partitions: list[str], expected: dict[str, str] | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    frames, versions = [], {}
    for partition in partitions:
        folder = lake_keys.tensors(partition)
        manifest = lake_partitions.read_manifest(lake, folder)
        versions[partition] = manifest.digest
        if expected is not None and versions[partition] != expected[partition]:
            raise ValueError(
                f"credit_history_tensors partition {partition} changed since training "
                f"(digest {versions[partition][:12]} != {expected[partition][:12]}): retrain first"
            )
        # Each part is checked against the manifest's sha256 as it is read.
        frames.append(lake_partitions.read_partition(lake, folder, manifest))
    rows = pd.concat(frames, ignore_index=True)
    return rows[rows[REASON].isna()].reset_index(drop=True), versions
