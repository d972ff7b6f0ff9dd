"""The modelling dataset: the valid tensor rows of a source, split by a ``SplitPlan``, read as a stream.

A ``TensorSource`` hands out its rows piece by piece (the lake's Parquet parts), each in record batches of
bounded size. ``ModellingDataset`` reads a split as a stream of ``Chunk``s (what training iterates over),
materializes a split (validation and test, bounded by the fractions and ``max_holdout_rows``) or a seeded
sample of it (the baselines' training rows). Materialized splits are in client-ID order.

A dataset ``selected`` by the champion's ``Decisions`` keeps a training or validation row only when the champion
approved the client (outcomes exist only for approved loans); the test split stays through the door, every
outcome, so evaluation measures the whole applicant flow. The splits are planned on every row either way, so a
version trained on the approved and one trained on every outcome are tested on the same rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from platform_assets.ml import schema
from platform_assets.ml.features import CHANNELS, HISTORY, REASON, STATIC, FeatureBatch
from platform_assets.ml.splits import SPLITS, SplitPlan, assign_splits, plan_splits, split_hash

__all__ = [
    "SELECTED_SPLITS",
    "SPLITS",
    "Chunk",
    "Decisions",
    "FrameSource",
    "ModellingDataset",
    "Split",
    "TensorSource",
    "assign_splits",
]

INDEX_COLUMNS = (schema.ID, schema.TARGET, REASON)
#: Mixed into the sampling seed so a sample is not the split's own hash order (the head of a class).
_SAMPLE_SALT = 0x5EED
#: The splits whose outcomes a selection by the champion's decisions limits to the approved (the test split never).
SELECTED_SPLITS: tuple[str, ...] = ("train", "validation")


class TensorSource(Protocol):
    """Tensor rows (columns of ``credit_history_tensors``) in pieces read as record batches of bounded size."""

    def pieces(self) -> int: ...

    def read(self, piece: int, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Piece ``piece``'s rows, all columns or ``columns``, a record batch (row group) at a time."""
        ...


@dataclass(frozen=True)
class Split:
    """One split's inputs, labels (0/1) and client IDs, aligned row by row; ``frame`` has the scalar columns
    (ID, label, protected attributes, ...) of the same rows."""

    features: FeatureBatch
    labels: np.ndarray
    ids: np.ndarray
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.labels)

    def flat(self) -> np.ndarray:
        """Inputs as one matrix (tensor flattened, then static): what the baselines see."""
        return flat_inputs(self.features)

    def keras_inputs(self) -> dict[str, np.ndarray]:
        return {"history": self.features.tensor, "static": self.features.static}


@dataclass(frozen=True)
class Chunk:
    """Valid rows of one record batch: IDs, labels and inputs (and the scalar columns when asked for)."""

    ids: np.ndarray
    labels: np.ndarray
    features: FeatureBatch
    frame: pd.DataFrame | None


@dataclass(frozen=True)
class FrameSource:
    """Tensor rows already in memory (a ``featurize_rows`` frame) as a source of ``piece_rows``-row pieces."""

    frame: pd.DataFrame
    piece_rows: int = 65_536

    def pieces(self) -> int:
        return max(1, -(-len(self.frame) // self.piece_rows))

    def read(self, piece: int, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        rows = self.frame.iloc[piece * self.piece_rows : (piece + 1) * self.piece_rows]
        yield from pa.Table.from_pandas(
            rows if columns is None else rows[list(columns)], preserve_index=False
        ).to_batches()


def _members(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Boolean per ``ids`` row: is it in ``sorted_ids`` (sorted, unique)."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    found: np.ndarray = sorted_ids[at] == ids
    return found


@dataclass(frozen=True)
class Decisions:
    """One model version's decision per client, as sorted unique client IDs it approved and declined."""

    version: str
    approved: np.ndarray
    declined: np.ndarray

    @classmethod
    def of(cls, version: str, ids: np.ndarray, approved: np.ndarray) -> Decisions:
        """From client IDs and a boolean per ID (True = approved); a client with both decisions fails."""
        ids, approved = np.asarray(ids), np.asarray(approved, dtype=bool)
        yes, no = np.unique(ids[approved]), np.unique(ids[~approved])
        both = np.intersect1d(yes, no)
        if len(both):
            raise ValueError(
                f"{version} both approved and declined {len(both)} client(s) (IDs {both[:5].tolist()}): "
                "a client ID must appear once in the training window"
            )
        return cls(version, yes, no)

    def approved_mask(self, ids: np.ndarray) -> np.ndarray:
        """Boolean per client: approved; a client without a decision fails naming it (its scores are stale)."""
        approved = _members(self.approved, ids)
        undecided = ~approved & ~_members(self.declined, ids)
        if undecided.any():
            raise ValueError(
                f"{int(undecided.sum())} client(s) of the training window have no decision by {self.version} in "
                f"portfolio_scores (IDs {ids[undecided][:5].tolist()}): rescore those days with {self.version} "
                "(portfolio_scoring_job)"
            )
        return approved


def flat_inputs(features: FeatureBatch) -> np.ndarray:
    """Model inputs as one (rows x features) matrix: the history tensor flattened, then the static vector."""
    return np.concatenate([features.tensor.reshape(len(features.static), -1), features.static], axis=1)


def _valid(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.filter(pc.is_null(batch.column(REASON)))


def _list_values(column: pa.Array, n: int) -> np.ndarray:
    """A list<float> column of ``n`` equally long lists as an (n, width) float32 matrix."""
    values: np.ndarray = column.flatten().to_numpy(zero_copy_only=False).astype("float32", copy=False)
    return values.reshape(n, -1) if n else values.reshape(0, 0)


def _index(source: TensorSource) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """IDs and labels of the valid rows of ``source``, batch by batch."""
    for piece in range(source.pieces()):
        for batch in source.read(piece, INDEX_COLUMNS):
            valid = _valid(batch)
            yield valid.column(schema.ID).to_numpy(), valid.column(schema.TARGET).to_numpy()


def _chunk(batch: pa.RecordBatch, with_frame: bool) -> Chunk:
    n = batch.num_rows
    tensor = _list_values(batch.column(HISTORY), n).reshape(n, schema.N_MONTHS, len(CHANNELS))
    scalars = [name for name in batch.schema.names if name not in (HISTORY, STATIC)]
    return Chunk(
        ids=batch.column(schema.ID).to_numpy(),
        labels=batch.column(schema.TARGET).to_numpy().astype("int64"),
        features=FeatureBatch(tensor=tensor, static=_list_values(batch.column(STATIC), n)),
        frame=batch.select(scalars).to_pandas() if with_frame else None,
    )


@dataclass(frozen=True)
class ModellingDataset:
    """The valid rows of ``source`` assigned to splits by ``plan``; with ``selection``, the training and
    validation rows the selection's version approved (``labelled[split][label]`` counts them)."""

    source: TensorSource
    plan: SplitPlan
    selection: Decisions | None = None
    labelled: dict[str, dict[int, int]] | None = None

    @classmethod
    def planned(
        cls, source: TensorSource, validation: float, test: float, seed: int, max_holdout_rows: int | None = None
    ) -> ModellingDataset:
        """Plan the splits of ``source`` (two passes over its IDs and labels only)."""
        return cls(source, plan_splits(lambda: _index(source), validation, test, seed, max_holdout_rows))

    def selected(self, decisions: Decisions) -> ModellingDataset:
        """This dataset with only the approved clients' outcomes in the training and validation splits (one pass
        over the IDs and labels to count them); the test split keeps every row."""
        counts = {name: {label: 0 for label in self.plan.rows[name]} for name in SELECTED_SPLITS}
        for ids, labels in _index(self.source):
            codes = self.plan.codes(ids, labels)
            for name in SELECTED_SPLITS:
                mine = codes == SPLITS.index(name)
                kept = labels[mine][decisions.approved_mask(ids[mine])]
                for label in counts[name]:
                    counts[name][label] += int(np.count_nonzero(kept == label))
        for name, rows in counts.items():
            if sum(rows.values()) == 0 or 0 in rows.values():
                raise ValueError(
                    f"the {name} split keeps {rows} approved rows per class after {decisions.version}'s decisions: "
                    "both classes are needed to train on the approved (use outcomes='all' or a longer window)"
                )
        return dataclasses.replace(self, selection=decisions, labelled=counts)

    def through_the_door(self) -> ModellingDataset:
        """Every row of every split, whatever the champion decided (what the approval model is fitted on)."""
        return dataclasses.replace(self, selection=None, labelled=None)

    def class_rows(self, split: str) -> dict[int, int]:
        """Rows per class (0, 1) of ``split``, as ``chunks`` reads it."""
        return dict((self.labelled or {}).get(split) or self.plan.rows[split])

    def rows(self) -> dict[str, int]:
        """Rows per split (for a selected dataset: the approved training and validation rows)."""
        return {name: sum(self.class_rows(name).values()) for name in SPLITS}

    def declined_rows(self) -> dict[str, int]:
        """Training and validation rows left out because the selection's version declined them (0 without)."""
        return {name: self.plan.total(name) - self.rows()[name] for name in SELECTED_SPLITS}

    def chunks(self, split: str, order: Sequence[int] | None = None, with_frame: bool = False) -> Iterator[Chunk]:
        """The rows of ``split``, record batch by record batch, over the pieces in ``order`` (default: as stored)."""
        code = SPLITS.index(split)
        columns = None if with_frame else (*INDEX_COLUMNS, HISTORY, STATIC)
        for piece in range(self.source.pieces()) if order is None else order:
            for batch in self.source.read(piece, columns):
                valid = _valid(batch)
                ids, labels = valid.column(schema.ID).to_numpy(), valid.column(schema.TARGET).to_numpy()
                keep = self.plan.codes(ids, labels) == code
                if self.selection is not None and split in SELECTED_SPLITS:
                    rows = np.flatnonzero(keep)
                    keep[rows] = self.selection.approved_mask(ids[rows])
                mine = valid.filter(pa.array(keep))
                if mine.num_rows:
                    yield _chunk(mine, with_frame)

    def materialize(self, split: str) -> Split:
        """Every row of ``split`` in memory, in ID order: ``rows()[split]`` rows."""
        return _concat(list(self.chunks(split, with_frame=True)))

    def sample(self, split: str, max_rows: int, seed: int) -> Split:
        """``max_rows`` rows of ``split`` (all of them when it has fewer), chosen by a seeded hash of the ID:
        the same rows for the same seed whatever the reading order. Memory: about 2 x ``max_rows`` rows."""
        if max_rows < 1:
            raise ValueError(f"max_rows must be positive, got {max_rows}")
        kept: list[Chunk | Split] = []
        for chunk in self.chunks(split, with_frame=True):
            kept.append(chunk)
            if sum(len(c.ids) for c in kept) > 2 * max_rows:
                kept = [_smallest_hashes(_concat(kept), max_rows, seed)]
        split_rows = _concat(kept)
        return _smallest_hashes(split_rows, max_rows, seed) if len(split_rows) > max_rows else split_rows


def _concat(chunks: Sequence[Chunk | Split]) -> Split:
    """Chunks as one split in ID order."""
    if not chunks:
        raise ValueError("the split has no rows")
    ids = np.concatenate([c.ids for c in chunks])
    order = np.argsort(ids, kind="stable")
    frames = [c.frame for c in chunks if c.frame is not None]
    return Split(
        features=FeatureBatch(
            tensor=np.concatenate([c.features.tensor for c in chunks])[order],
            static=np.concatenate([c.features.static for c in chunks])[order],
        ),
        labels=np.concatenate([c.labels for c in chunks])[order],
        ids=ids[order],
        frame=pd.concat(frames, ignore_index=True).iloc[order].reset_index(drop=True) if frames else pd.DataFrame(),
    )


def _smallest_hashes(split: Split, rows: int, seed: int) -> Split:
    """The ``rows`` rows of ``split`` with the smallest sampling hash, in ID order."""
    hashes = split_hash(split.ids, seed ^ _SAMPLE_SALT)
    keep = np.sort(np.lexsort((split.ids, hashes))[:rows])
    return Split(
        features=FeatureBatch(tensor=split.features.tensor[keep], static=split.features.static[keep]),
        labels=split.labels[keep],
        ids=split.ids[keep],
        frame=split.frame.iloc[keep].reset_index(drop=True),
    )


def split_dataset(
    rows: pd.DataFrame, validation: float, test: float, seed: int, max_holdout_rows: int | None = None
) -> dict[str, Split]:
    """Tensor rows in memory (a ``featurize_rows`` frame; quarantined rows are left out) as the three splits."""
    data = ModellingDataset.planned(FrameSource(rows), validation, test, seed, max_holdout_rows)
    return {name: data.materialize(name) for name in SPLITS}
