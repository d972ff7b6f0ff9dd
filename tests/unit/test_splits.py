"""The split plan: exact stratified cuts by ID hash, found in two bounded passes over chunks in any order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from platform_assets.ml import splits


def _ranked(ids: np.ndarray, labels: np.ndarray, validation: float, test: float, seed: int) -> np.ndarray:
    """The definition, written the direct way: within a class, rank rows by hash and cut at the fractions."""
    hashes = splits.split_hash(ids, seed)
    out = np.empty(len(ids), dtype=object)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ordered = members[np.argsort(hashes[members], kind="stable")]
        n_test, n_validation = round(len(ordered) * test), round(len(ordered) * validation)
        out[ordered[:n_test]] = "test"
        out[ordered[n_test : n_test + n_validation]] = "validation"
        out[ordered[n_test + n_validation :]] = "train"
    return out


def _chunked(ids: np.ndarray, labels: np.ndarray, size: int) -> splits.Chunks:
    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(ids), size):
            yield ids[start : start + size], labels[start : start + size]

    return chunks


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    ids = rng.choice(2**62, size=50_000, replace=False).astype("int64")
    return ids, (rng.random(len(ids)) < 0.22).astype("int64")


@pytest.mark.parametrize(("validation", "test", "seed"), [(0.1, 0.2, 42), (0.15, 0.15, 7), (0.01, 0.5, 1)])
def test_the_streamed_plan_cuts_exactly_where_ranking_does(
    rows: tuple[np.ndarray, np.ndarray], validation: float, test: float, seed: int
) -> None:
    ids, labels = rows
    plan = splits.plan_splits(_chunked(ids, labels, 977), validation, test, seed)
    names = np.asarray(splits.SPLITS, dtype=object)[plan.codes(ids, labels)]
    expected = _ranked(ids, labels, validation, test, seed)
    np.testing.assert_array_equal(names, expected)
    for name in splits.SPLITS:
        assert plan.total(name) == int((expected == name).sum())
        assert plan.rows[name][1] == int(((expected == name) & (labels == 1)).sum())


def test_the_plan_does_not_depend_on_chunking_or_order(rows: tuple[np.ndarray, np.ndarray]) -> None:
    ids, labels = rows
    order = np.random.default_rng(1).permutation(len(ids))
    whole = splits.plan_splits(splits.in_memory(ids, labels), 0.1, 0.2, 42)
    assert splits.plan_splits(_chunked(ids[order], labels[order], 333), 0.1, 0.2, 42) == whole


def test_max_holdout_rows_caps_validation_and_test_and_trains_the_rest(rows: tuple[np.ndarray, np.ndarray]) -> None:
    ids, labels = rows
    capped = splits.plan_splits(_chunked(ids, labels, 5000), 0.1, 0.2, 42, max_holdout_rows=1000)
    assert capped.total("test") <= 1000 and capped.total("validation") <= 1000
    assert capped.total("test") >= 998 and capped.total("validation") >= 998  # floor per class
    assert sum(capped.total(name) for name in splits.SPLITS) == len(ids)
    # Still stratified: each class keeps its share in each split.
    share = labels.mean()
    for name in splits.SPLITS:
        assert capped.rows[name][1] / capped.total(name) == pytest.approx(share, abs=0.002)
    # The capped test split is the head of the uncapped one: the same ranking, cut sooner.
    free = splits.plan_splits(splits.in_memory(ids, labels), 0.1, 0.2, 42)
    capped_test = capped.codes(ids, labels) == 2
    assert (free.codes(ids, labels)[capped_test] == 2).all()
    # A cap above the fractions changes nothing.
    assert splits.plan_splits(splits.in_memory(ids, labels), 0.1, 0.2, 42, max_holdout_rows=10**9) == free


def test_a_cut_at_the_end_of_a_class_takes_the_whole_class() -> None:
    # Two defaulters, validation 0.45 and test 0.5: one goes to test, round(0.9) = 1 to validation, none trains.
    ids, labels = np.arange(1, 23), np.array([0] * 20 + [1] * 2)
    plan = splits.plan_splits(splits.in_memory(ids, labels), 0.45, 0.5, 3)
    assert plan.validation_cut[1] == 2**64
    assert sorted(plan.codes(ids, labels)[labels == 1]) == [1, 2]
    assert plan.rows["train"] == {0: 20 - 10 - 9, 1: 0}


def test_rows_with_unknown_labels_are_refused(rows: tuple[np.ndarray, np.ndarray]) -> None:
    ids, labels = rows
    plan = splits.plan_splits(splits.in_memory(ids, labels), 0.1, 0.2, 42)
    with pytest.raises(ValueError, match="label 2"):
        plan.codes(ids[:3], np.array([0, 1, 2]))


def test_a_tiny_cap_is_refused(rows: tuple[np.ndarray, np.ndarray]) -> None:
    ids, labels = rows
    with pytest.raises(ValueError, match="max_holdout_rows"):
        splits.plan_splits(splits.in_memory(ids, labels), 0.1, 0.2, 42, max_holdout_rows=1)
