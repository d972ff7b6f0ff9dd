"""Training: the CNN with class weighting and early stopping, and the two baselines, each calibrated on the
validation split, with the decision threshold set by the version's threshold policy.

The CNN reads its training split as a stream (``training_stream``): the pieces of the source in a seeded order
per epoch, record batch by record batch, through a shuffle buffer of ``TrainConfig.shuffle_rows`` rows, so its
memory does not grow with the training rows. The validation split is materialized (calibration and the
threshold need all of it at once); its size is bounded by the split fraction and ``max_holdout_rows``.

Every streamed row carries a sample weight: the balanced class weight of its label (from the split's rows per
class) times, with reject inference, its inverse approval-probability weight (``ml.reject_inference``), computed
from the row's own features as it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from platform_assets.core.model_version import Calibration, InverseApprovalWeights, ThresholdPolicy
from platform_assets.core.reason_codes import ReasonCodes
from platform_assets.ml import calibration, reason_codes, reject_inference
from platform_assets.ml.dataset import ModellingDataset, Split, flat_inputs
from platform_assets.ml.model import CNNConfig, build_cnn

EpochCallback = Callable[[int, dict[str, float]], None]


#: Loss given default 0.45 (the Basel foundation-IRB value for senior unsecured exposures) against a margin of
#: 0.15 of the exposure on a loan that is repaid: decline from a PD of 0.15 / 0.60 = 0.25.
DEFAULT_LOSS_GIVEN_DEFAULT = 0.45
DEFAULT_MARGIN = 0.15
DEFAULT_POLICY: ThresholdPolicy = ThresholdPolicy(
    kind="expected_cost", loss_given_default=DEFAULT_LOSS_GIVEN_DEFAULT, margin=DEFAULT_MARGIN
)


@dataclass(frozen=True)
class TrainConfig:
    """Fitting knobs: epochs and patience in epochs, batch size in rows."""

    epochs: int = 60
    batch_size: int = 256
    patience: int = 8
    seed: int = 42
    #: Rows in the shuffle buffer of the training stream: the whole training split when it has fewer rows.
    shuffle_rows: int = 65_536
    cnn: CNNConfig = field(default_factory=CNNConfig)
    policy: ThresholdPolicy = DEFAULT_POLICY
    #: "platt" or "isotonic" to force a calibration method; None chooses by cross-validated log-loss.
    calibration_method: str | None = None


@dataclass
class TrainedCNN:
    """``model`` outputs the calibrated probability of default (``calibration`` is built into it)."""

    model: Any
    threshold: float
    history: dict[str, list[float]]
    best_epoch: int
    calibration: Calibration


@dataclass
class TrainedBaseline:
    """A fitted baseline; ``calibration`` maps its ``decision_function`` to a probability of default."""

    model: Pipeline
    calibration: Calibration
    threshold: float

    def predict_default(self, flat: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of default."""
        return calibration.apply(self.calibration, self.model.decision_function(flat))


def make_deterministic(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TensorFlow's ops deterministic: the same seed on the same
    machine gives the same weights. (Process-wide: TensorFlow has no per-model switch.)"""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def policy_threshold(
    policy: ThresholdPolicy, validation_probabilities: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """The decision threshold on the calibrated PD: decline when ``PD >= threshold``.

    ``expected_cost``: ``margin / (margin + loss_given_default)``, where a decline's avoided loss equals an
    approval's expected margin (no rows involved). ``approval_rate``: the validation-split PD quantile that approves
    ``target_approval_rate`` of the rows; with ``sample_weight`` (reject-inference weights, one per row) of the
    weighted rows, the smallest PD whose weighted share of rows at or below it reaches the target (numpy's
    ``inverted_cdf``: a row of weight k counts as k rows).
    """
    if policy.kind == "expected_cost":
        assert policy.margin is not None and policy.loss_given_default is not None
        return policy.margin / (policy.margin + policy.loss_given_default)
    assert policy.target_approval_rate is not None
    if sample_weight is None:
        return float(np.quantile(validation_probabilities, policy.target_approval_rate, method="higher"))
    if np.shape(sample_weight) != np.shape(validation_probabilities):
        raise ValueError(
            f"threshold sample_weight has shape {np.shape(sample_weight)}, "
            f"the validation probabilities {np.shape(validation_probabilities)}"
        )
    return float(
        np.quantile(validation_probabilities, policy.target_approval_rate, method="inverted_cdf", weights=sample_weight)
    )


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights: each class contributes half of the loss whatever its share of rows."""
    positives = int(labels.sum())
    return balanced_weights({0: len(labels) - positives, 1: positives})


def balanced_weights(rows: dict[int, int]) -> dict[int, float]:
    """Balanced weights from the rows per class (0 and 1)."""
    n, positives = sum(rows.values()), rows.get(1, 0)
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


def training_stream(data: ModellingDataset, config: TrainConfig, weights: InverseApprovalWeights | None = None) -> Any:
    """The training split as a ``tf.data.Dataset`` of ``(inputs, labels, sample weights)`` batches, reshuffled
    every epoch. A row's weight is its label's balanced class weight, times its reject-inference weight when
    ``weights`` is given.

    Each epoch reads the source's pieces in an order drawn from ``config.seed`` and the epoch, and shuffles rows
    through a buffer of ``config.shuffle_rows``: deterministic for a seed, bounded in memory.
    """
    import tensorflow as tf

    sample = next(data.chunks("train"), None)
    if sample is None:
        raise ValueError("the training split has no rows")
    months, channels = sample.features.tensor.shape[1:]
    epochs = iter(range(2**31))
    per_class = balanced_weights(data.class_rows("train"))
    class_weight = np.array([per_class[0], per_class[1]], dtype="float64")

    def batches() -> Any:
        order = np.random.default_rng([config.seed, next(epochs)]).permutation(data.source.pieces())
        for chunk in data.chunks("train", order=order.tolist()):
            row_weights = class_weight[chunk.labels]
            if weights is not None:
                row_weights = row_weights * reject_inference.weights_of(weights, flat_inputs(chunk.features))
            inputs = {"history": chunk.features.tensor, "static": chunk.features.static}
            yield inputs, chunk.labels, row_weights.astype("float32")

    signature = (
        {
            "history": tf.TensorSpec((None, months, channels), tf.float32),
            "static": tf.TensorSpec((None, sample.features.static.shape[1]), tf.float32),
        },
        tf.TensorSpec((None,), tf.int64),
        tf.TensorSpec((None,), tf.float32),
    )
    n = data.rows()["train"]
    rows = tf.data.Dataset.from_generator(batches, output_signature=signature).unbatch()
    shuffled = rows.shuffle(min(config.shuffle_rows, n), seed=config.seed).batch(config.batch_size)
    # A known length lets Keras count steps (and fails the epoch if the stream yields another number of rows).
    steps = -(-n // config.batch_size)
    return shuffled.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def train_cnn(
    data: ModellingDataset,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    validation: Split | None = None,
    weights: InverseApprovalWeights | None = None,
) -> TrainedCNN:
    """Fit the CNN on the ``train`` stream (class-balanced; reweighted by ``weights`` for reject inference), stop
    early on validation AUC, calibrate it on validation and set the threshold by ``config.policy`` (both weighted by
    the validation rows' ``weights`` when given). The returned model outputs the calibrated probability.
    ``validation`` is ``data``'s validation split when the caller already holds it (else it is read here)."""
    import keras

    make_deterministic(config.seed)
    validation = data.materialize("validation") if validation is None else validation
    tensor_shape = validation.features.tensor.shape
    model = build_cnn(tensor_shape[1], tensor_shape[2], validation.features.static.shape[1], config.cnn)

    class _Report(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if on_epoch is not None:
                on_epoch(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=config.patience, restore_best_weights=True
    )
    fit = model.fit(
        training_stream(data, config, weights),
        validation_data=(validation.keras_inputs(), validation.labels),
        epochs=config.epochs,
        shuffle=False,  # the stream shuffles itself and carries the class weights in its sample weights
        callbacks=[stopper, _Report()],
        verbose=0,
    )
    history = {k: [float(x) for x in v] for k, v in fit.history.items()}
    best_epoch = int(np.argmax(history["val_auc"])) + 1
    logits = calibration.logits_of(predict_cnn(model, validation.keras_inputs()))
    validation_weight = None if weights is None else reject_inference.weights_of(weights, validation.flat())
    fitted = calibration.fit(
        logits, validation.labels, config.calibration_method, seed=config.seed, sample_weight=validation_weight
    )
    served = calibration.calibrated_model(model, fitted)
    threshold = policy_threshold(config.policy, predict_cnn(served, validation.keras_inputs()), validation_weight)
    return TrainedCNN(model=served, threshold=threshold, history=history, best_epoch=best_epoch, calibration=fitted)


def fit_reason_codes(
    model: Any, frame: pd.DataFrame, inputs: dict[str, np.ndarray], threshold: float, *, include_protected: bool
) -> ReasonCodes:
    """The version's reason section (``reason_codes.fit``) for ``model`` trained on the rows of ``frame`` (raw
    columns) whose model inputs are ``inputs``: the reference applicant comes from the rows it approves."""

    def predict(tensor: np.ndarray, static: np.ndarray) -> np.ndarray:
        return predict_cnn(model, {"history": tensor, "static": static})

    raw = reason_codes.model_predictor(predict, reason_codes.LOG_COLUMNS, include_protected)
    return reason_codes.fit(frame, predict_cnn(model, inputs), threshold, raw)


def train_baselines(
    train: Split,
    validation: Split,
    seed: int,
    policy: ThresholdPolicy = DEFAULT_POLICY,
    sample_weight: np.ndarray | None = None,
    validation_weight: np.ndarray | None = None,
) -> dict[str, TrainedBaseline]:
    """Logistic regression and HistGradientBoosting on the CNN's inputs, each calibrated on ``validation`` and
    thresholded by ``policy``; ``sample_weight`` (one per ``train`` row, e.g. reject-inference weights) multiplies
    the balanced class weights, and ``validation_weight`` (one per ``validation`` row, the same weights) weights
    the calibration and the threshold."""
    if sample_weight is not None and sample_weight.shape != (len(train),):
        raise ValueError(f"sample_weight has shape {sample_weight.shape}, the training rows are {len(train)}")
    if validation_weight is not None and validation_weight.shape != (len(validation),):
        raise ValueError(
            f"validation_weight has shape {validation_weight.shape}, the validation rows are {len(validation)}"
        )
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
        # A pipeline routes fit parameters by step name: the weights go to the estimator, not the scaler.
        weighted = {} if sample_weight is None else {f"{model.steps[-1][0]}__sample_weight": sample_weight}
        model.fit(train.flat(), train.labels, **weighted)
        scores = model.decision_function(validation.flat())
        fit = calibration.fit(scores, validation.labels, seed=seed, sample_weight=validation_weight)
        probabilities = calibration.apply(fit, scores)
        fitted[name] = TrainedBaseline(model, fit, policy_threshold(policy, probabilities, validation_weight))
    return fitted
