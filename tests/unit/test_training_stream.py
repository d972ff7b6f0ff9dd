"""The CNN's training stream: every training row exactly once per epoch, in a seeded order that changes
between epochs, and nothing of the held-out splits."""

from __future__ import annotations

import numpy as np
import pytest
from model_support import synthetic_rows

from platform_assets.ml import dataset, features
from platform_assets.ml.train import TrainConfig, training_stream


@pytest.fixture(scope="module")
def data() -> dataset.ModellingDataset:
    rows = features.featurize_rows(synthetic_rows(days=2, rows_per_day=1000, seed=3))
    return dataset.ModellingDataset.planned(dataset.FrameSource(rows, piece_rows=250), 0.2, 0.2, seed=42)


def _epoch(stream: object) -> tuple[np.ndarray, np.ndarray]:
    batches = list(stream)  # type: ignore[call-overload]
    flat = [np.concatenate([x["history"].numpy().reshape(len(y), -1), x["static"].numpy()], 1) for x, y, _ in batches]
    return np.concatenate(flat), np.concatenate([y.numpy() for _, y, _ in batches])


def _sorted_rows(flat: np.ndarray) -> np.ndarray:
    return flat[np.lexsort(flat.T[::-1])]


def test_each_training_row_once_per_epoch_reshuffled(data: dataset.ModellingDataset) -> None:
    train = data.materialize("train")
    stream = training_stream(data, TrainConfig(batch_size=64, shuffle_rows=128, seed=5))
    assert int(stream.cardinality()) == -(-len(train) // 64)
    first, first_labels = _epoch(stream)
    second, _ = _epoch(stream)
    np.testing.assert_array_equal(_sorted_rows(first), _sorted_rows(train.flat()))
    np.testing.assert_array_equal(_sorted_rows(second), _sorted_rows(train.flat()))
    assert first_labels.sum() == train.labels.sum()
    assert not np.array_equal(first, second), "the order must change between epochs"


def test_the_same_seed_streams_the_same_order(data: dataset.ModellingDataset) -> None:
    config = TrainConfig(batch_size=64, shuffle_rows=128, seed=5)
    import keras

    keras.utils.set_random_seed(5)
    first, _ = _epoch(training_stream(data, config))
    keras.utils.set_random_seed(5)
    again, _ = _epoch(training_stream(data, config))
    np.testing.assert_array_equal(first, again)
