"""Which split a row belongs to: stratified by label, by a seeded hash of the client ID, in bounded memory.

Within each class, rows ranked by the hash of their ID are cut at the fractions: the first ``round(n_c * test)``
go to test, the next ``round(n_c * validation)`` to validation, the rest to train. A cut is stored as the hash
value it falls on (a ``SplitPlan``), so a row's split is decided by comparing its own hash with its class's
cuts, in any order and one chunk at a time. Finding those values exactly takes two passes over the IDs and
labels only: the first counts each class's hashes in 2**16 buckets by their leading bits, the second keeps
just the hashes of the buckets a cut falls in (about ``n_c / 65536`` each) and sorts them. Memory does not
grow with the rows beyond those counters. The hash is a bijection of the 64-bit ID, so distinct IDs never tie;
rows that share an ID share a split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "validation", "test")
_BUCKET_BITS = 16
_FULL = 2**64  # a cut above every hash: the whole class

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def check_fractions(validation: float, test: float) -> None:
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise ValueError(f"validation ({validation}) and test ({test}) fractions must be in (0, 1) with sum < 1")


def split_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each ID (splitmix64 finaliser, a bijection): uniform, and different per seed."""
    with np.errstate(over="ignore"):  # the hash multiplies modulo 2**64 on purpose
        z = np.asarray(ids).astype("uint64") + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def below(hashes: np.ndarray, cut: int) -> np.ndarray:
    """``hashes < cut`` for a cut in [0, 2**64] (2**64 does not fit a uint64)."""
    if cut >= _FULL:
        return np.ones(len(hashes), dtype=bool)
    return np.asarray(hashes < np.uint64(cut))


@dataclass(frozen=True)
class SplitPlan:
    """Per label: rows whose hash is below ``test_cut`` are test, below ``validation_cut`` validation, else train.

    ``rows[split][label]`` counts the rows of each class in each split.
    """

    seed: int
    test_cut: dict[int, int]
    validation_cut: dict[int, int]
    rows: dict[str, dict[int, int]]

    def total(self, split: str) -> int:
        return sum(self.rows[split].values())

    def codes(self, ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Each row's split as an index into ``SPLITS`` (0 train, 1 validation, 2 test)."""
        hashes = split_hash(ids, self.seed)
        out = np.zeros(len(ids), dtype="int8")
        for label in np.unique(labels):
            if int(label) not in self.test_cut:
                raise ValueError(f"label {label} is not one the split plan was made for ({sorted(self.test_cut)})")
            members = labels == label
            validation = below(hashes, self.validation_cut[int(label)]) & members
            out[validation] = 1
            out[below(hashes, self.test_cut[int(label)]) & members] = 2
        return out


def plan_splits(
    chunks: Chunks, validation: float, test: float, seed: int, max_holdout_rows: int | None = None
) -> SplitPlan:
    """The plan for the rows ``chunks()`` yields as ``(ids, labels)`` arrays (called twice: two passes).

    ``max_holdout_rows`` caps the validation and the test split at that many rows each: per class the count is
    then ``min(round(n_c * fraction), floor(n_c * max_holdout_rows / n))``, the rest going to train.
    """
    check_fractions(validation, test)
    if max_holdout_rows is not None and max_holdout_rows < 2:
        raise ValueError(f"max_holdout_rows must be at least 2 (one row of each class), got {max_holdout_rows}")
    buckets: dict[int, np.ndarray] = {}
    for ids, labels in chunks():
        hashes = split_hash(ids, seed) >> np.uint64(64 - _BUCKET_BITS)
        for label in np.unique(labels):
            counts = np.bincount(hashes[labels == label].astype("int64"), minlength=2**_BUCKET_BITS)
            buckets[int(label)] = buckets.get(int(label), 0) + counts
    n = {label: int(counts.sum()) for label, counts in buckets.items()}
    if not n:
        raise ValueError("no valid rows to train on: materialize credit_history_tensors first")
    if len(n) < 2:
        raise ValueError(f"the target has a single class in {sum(n.values())} rows: cannot train or evaluate")
    total = sum(n.values())

    def holdout(label: int, fraction: float) -> int:
        count = round(n[label] * fraction)
        return count if max_holdout_rows is None else min(count, n[label] * max_holdout_rows // total)

    ranks = {}
    for label in n:
        n_test = holdout(label, test)
        ranks[label] = (n_test, n_test + holdout(label, validation))
    cuts = _exact_cuts(chunks, seed, buckets, ranks)
    rows = {
        "test": {label: ranks[label][0] for label in n},
        "validation": {label: ranks[label][1] - ranks[label][0] for label in n},
        "train": {label: n[label] - ranks[label][1] for label in n},
    }
    return SplitPlan(
        seed=seed,
        test_cut={label: cuts[label, ranks[label][0]] for label in n},
        validation_cut={label: cuts[label, ranks[label][1]] for label in n},
        rows=rows,
    )


def _exact_cuts(
    chunks: Chunks, seed: int, buckets: dict[int, np.ndarray], ranks: dict[int, tuple[int, int]]
) -> dict[tuple[int, int], int]:
    """``{(label, k): the k-th smallest hash of the class}`` (2**64 when k is the class size): the second pass."""
    cuts: dict[tuple[int, int], int] = {}
    wanted: dict[tuple[int, int], tuple[int, int]] = {}  # (label, k) -> (bucket, rank inside the bucket)
    for label, ks in ranks.items():
        before = np.concatenate([[0], np.cumsum(buckets[label])])
        for k in ks:
            if k >= before[-1]:
                cuts[label, k] = _FULL
            else:
                bucket = int(np.searchsorted(before, k, side="right")) - 1
                wanted[label, k] = (bucket, k - int(before[bucket]))
    if not wanted:
        return cuts
    kept: dict[tuple[int, int], list[np.ndarray]] = {(label, b): [] for (label, _), (b, _) in wanted.items()}
    for ids, labels in chunks():
        hashes = split_hash(ids, seed)
        top = hashes >> np.uint64(64 - _BUCKET_BITS)
        for label, bucket in kept:
            kept[label, bucket].append(hashes[(labels == label) & (top == bucket)])
    for (label, k), (bucket, rank) in wanted.items():
        cuts[label, k] = int(np.sort(np.concatenate(kept[label, bucket]))[rank])
    return cuts


def in_memory(ids: np.ndarray, labels: np.ndarray) -> Chunks:
    """``chunks`` for rows already in memory: one chunk."""

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield ids, labels

    return chunks


def assign_splits(ids: np.ndarray, labels: np.ndarray, validation: float, test: float, seed: int) -> np.ndarray:
    """Split names per row (``"train"``, ``"validation"``, ``"test"``) for rows in memory."""
    plan = plan_splits(in_memory(ids, labels), validation, test, seed)
    names: np.ndarray = np.asarray(SPLITS, dtype=object)[plan.codes(ids, labels)]
    return names
