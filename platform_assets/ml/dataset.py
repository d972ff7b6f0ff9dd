"""The modelling dataset: valid tensor rows from chosen partitions, split deterministically."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from platform_assets.ml import schema
from platform_assets.ml.features import FeatureBatch, batch_from_rows

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """One split's inputs, labels (0/1) and client IDs, aligned row by row."""

    features: FeatureBatch
    labels: np.ndarray
    ids: np.ndarray
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.labels)

    def flat(self) -> np.ndarray:
        """Inputs as one matrix (tensor flattened, then static): what the baselines see."""
        return np.concatenate([self.features.tensor.reshape(len(self), -1), self.features.static], axis=1)

    def keras_inputs(self) -> dict[str, np.ndarray]:
        return {"history": self.features.tensor, "static": self.features.static}


def _mix(ids: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each ID (splitmix64 finaliser): uniform, and different per seed."""
    z = ids.astype("uint64") + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def assign_splits(ids: np.ndarray, labels: np.ndarray, validation: float, test: float, seed: int) -> np.ndarray:
    """Stratified, deterministic split names per row.

    Within each class, rows are ranked by a seeded hash of their ID and cut at the fractions, so the
    class balance is exactly the same in each split and the same rows always give the same split.
    """
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise ValueError(f"validation ({validation}) and test ({test}) fractions must be in (0, 1) with sum < 1")
    with np.errstate(over="ignore"):  # the hash multiplies modulo 2**64 on purpose
        hashed = _mix(ids, seed)
    out = np.empty(len(ids), dtype=object)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ordered = members[np.argsort(hashed[members], kind="stable")]
        n_test = round(len(ordered) * test)
        n_validation = round(len(ordered) * validation)
        out[ordered[:n_test]] = "test"
        out[ordered[n_test : n_test + n_validation]] = "validation"
        out[ordered[n_test + n_validation :]] = "train"
    return out


def split_dataset(rows: pd.DataFrame, validation: float, test: float, seed: int) -> dict[str, Split]:
    """Split valid tensor rows (quarantined rows must already be removed) into train/validation/test."""
    if rows.empty:
        raise ValueError("no valid rows to train on: materialize credit_history_tensors first")
    rows = rows.sort_values(schema.ID).reset_index(drop=True)
    labels = rows[schema.TARGET].to_numpy(dtype="int64")
    if len(np.unique(labels)) < 2:
        raise ValueError(f"{schema.TARGET!r} has a single class in {len(rows)} rows: cannot train or evaluate")
    names = assign_splits(rows[schema.ID].to_numpy(), labels, validation, test, seed)
    splits = {}
    for name in SPLITS:
        part = rows[names == name].reset_index(drop=True)
        splits[name] = Split(
            features=batch_from_rows(part),
            labels=part[schema.TARGET].to_numpy(dtype="int64"),
            ids=part[schema.ID].to_numpy(),
            frame=part,
        )
    return splits
