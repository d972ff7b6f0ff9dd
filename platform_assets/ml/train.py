"""Training: the CNN with class weighting and early stopping, and the two baselines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from platform_assets.ml.dataset import Split
from platform_assets.ml.model import CNNConfig, build_cnn

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Fitting knobs: epochs and patience in epochs, batch size in rows."""

    epochs: int = 60
    batch_size: int = 256
    patience: int = 8
    seed: int = 42
    cnn: CNNConfig = field(default_factory=CNNConfig)


@dataclass
class TrainedCNN:
    model: Any
    threshold: float
    history: dict[str, list[float]]
    best_epoch: int


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights: each class contributes half of the loss whatever its share of rows."""
    n = len(labels)
    positives = int(labels.sum())
    if positives in (0, n):
        raise ValueError("class weighting needs both classes in the training labels")
    return {0: n / (2.0 * (n - positives)), 1: n / (2.0 * positives)}


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The probability cut (one of the scores) that maximises F1 on the given (validation) labels.

    Every distinct score is tried as ``p >= cut`` in one pass over the scores sorted high to low.
    """
    order = np.argsort(-probabilities, kind="stable")
    scores, hits = probabilities[order], labels[order]
    true_positives = np.cumsum(hits)
    flagged = np.arange(1, len(scores) + 1)
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    f1 = 2 * true_positives[last_of_tie] / (flagged[last_of_tie] + labels.sum())
    return float(scores[last_of_tie][int(np.argmax(f1))])


def predict_cnn(model: Any, features: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Probabilities of default, computed with the model called directly (no ``model.predict``)."""
    n = len(features["static"])
    out = [
        np.asarray(model({k: v[i : i + batch_size] for k, v in features.items()}, training=False)).reshape(-1)
        for i in range(0, n, batch_size)
    ]
    return np.concatenate(out) if out else np.empty(0, dtype="float32")


def train_cnn(splits: dict[str, Split], config: TrainConfig, on_epoch: EpochCallback | None = None) -> TrainedCNN:
    """Fit the CNN on ``train``, stop early on validation AUC, pick the threshold on validation."""
    import keras

    keras.utils.set_random_seed(config.seed)
    train, validation = splits["train"], splits["validation"]
    tensor_shape = train.features.tensor.shape
    model = build_cnn(tensor_shape[1], tensor_shape[2], train.features.static.shape[1], config.cnn)

    class _Report(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if on_epoch is not None:
                on_epoch(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=config.patience, restore_best_weights=True
    )
    fit = model.fit(
        train.keras_inputs(),
        train.labels,
        validation_data=(validation.keras_inputs(), validation.labels),
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=class_weights(train.labels),
        callbacks=[stopper, _Report()],
        verbose=0,
    )
    history = {k: [float(x) for x in v] for k, v in fit.history.items()}
    best_epoch = int(np.argmax(history["val_auc"])) + 1
    threshold = choose_threshold(validation.labels, predict_cnn(model, validation.keras_inputs()))
    return TrainedCNN(model=model, threshold=threshold, history=history, best_epoch=best_epoch)


def train_baselines(train: Split, validation: Split, seed: int) -> dict[str, tuple[Pipeline, float]]:
    """Logistic regression and HistGradientBoosting on the CNN's inputs, each with its F1 threshold."""
    models: dict[str, Pipeline] = {
        "logistic_regression": make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
        ),
        "hist_gradient_boosting": make_pipeline(
            HistGradientBoostingClassifier(random_state=seed, class_weight="balanced", early_stopping=True)
        ),
    }
    fitted = {}
    for name, model in models.items():
        model.fit(train.flat(), train.labels)
        probabilities = model.predict_proba(validation.flat())[:, 1]
        fitted[name] = (model, choose_threshold(validation.labels, probabilities))
    return fitted
