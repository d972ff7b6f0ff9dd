"""The default-risk CNN: Conv2D over the (months x channels) image, joined with the static vector."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

# TensorFlow logs every CPU feature at import; keep warnings and errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if TYPE_CHECKING:  # TensorFlow is imported lazily: it costs seconds at import time.
    import keras


@dataclass(frozen=True)
class CNNConfig:
    """Architecture and optimiser knobs. Filters and units are counts; learning rate per step."""

    conv_filters: int = 48
    dense_units: int = 64
    dropout: float = 0.3
    l2: float = 1e-4
    learning_rate: float = 1e-3


def build_cnn(months: int, channels: int, n_static: int, config: CNNConfig) -> keras.Model:
    """A compiled Keras model mapping ``(tensor, static)`` to the probability of default."""
    import keras
    from keras import layers, regularizers

    reg = regularizers.l2(config.l2)
    history = keras.Input(shape=(months, channels), name="history")
    static = keras.Input(shape=(n_static,), name="static")
    image = layers.Reshape((months, channels, 1))(history)
    # First layer reads every channel of 2 adjacent months; the second looks across 3 of those.
    x = layers.Conv2D(config.conv_filters, (2, channels), activation="relu", kernel_regularizer=reg)(image)
    x = layers.Conv2D(config.conv_filters, (3, 1), activation="relu", kernel_regularizer=reg)(x)
    x = layers.Flatten()(x)
    x = layers.Concatenate()([x, layers.Flatten()(history), static])
    x = layers.Dense(config.dense_units, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(config.dropout)(x)
    output = layers.Dense(1, activation="sigmoid", name="probability_of_default")(x)
    model = keras.Model(inputs={"history": history, "static": static}, outputs=output, name="default_risk_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model
