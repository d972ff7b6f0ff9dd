"""``portfolio_scores`` on Spark: executors score tensor parts with a model version's ONNX artifact.

The driver sends each task a committed tensor part and the version's ``ScoringModel`` (where its
``model.onnx`` lives, the sha256 its record trusts, its threshold); a task loads the model once per Python
worker with ``core.onnx_runtime`` (the service's runtime; no TensorFlow), scores the part's valid rows,
decides at the version's threshold and writes one scores part. Back come per-part rows, declines and
unscored (quarantined) rows, summed by Spark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from platform_assets.core import decisions, lake_keys, onnx_runtime
from platform_assets.dataplane.objects import ObjectStore
from platform_assets.dataplane.partitions import Part, PartitionError, read_part, reading, write_part
from platform_assets.dataplane.tasks import Summary, run_part_tasks
from platform_assets.ml import features, schema

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCORES, DECLINES, UNSCORED, PD_MICROS = "scores", "declines", "unscored", "pd_micros"
#: Probabilities are summed by Spark as integers (the summary's rows are longs): in millionths.
_MICROS = 1_000_000
PROBABILITY, DECISION, MODEL_VERSION = "probability_of_default", "decision", "model_version"
SCORE_COLUMNS = (schema.ID, PROBABILITY, DECISION, MODEL_VERSION)
#: Models loaded in this Python worker, by sha256: a worker scores many parts with one session.
_LOADED: dict[str, onnx_runtime.OnnxModel] = {}


@dataclass(frozen=True)
class ScoringModel:
    """What a task needs of a model version (picklable)."""

    version: str  # "v3"
    onnx_key: str  # lake key of its model.onnx
    sha256: str  # of model.onnx, from the version's record
    threshold: float  # decline at or above this probability of default


@dataclass(frozen=True)
class ScoredPartition:
    """What one Spark run wrote (not yet committed) and what Spark counted."""

    run_token: str
    parts: tuple[Part, ...]
    declines: int
    unscored: int  # quarantined rows: no tensor to score
    probability_sum: float  # of the scored rows' probabilities of default

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def mean_probability(self) -> float:
        return self.probability_sum / self.rows if self.rows else float("nan")

    @property
    def approval_rate(self) -> float:
        return 1.0 - self.declines / self.rows if self.rows else float("nan")


def _model(store: ObjectStore, model: ScoringModel) -> onnx_runtime.OnnxModel:
    if model.sha256 not in _LOADED:
        _LOADED[model.sha256] = onnx_runtime.load_model(store.read_bytes(model.onnx_key), sha256=model.sha256)
    return _LOADED[model.sha256]


def _matrix(column: pa.ChunkedArray, width: int) -> np.ndarray:
    """A list<float> column of fixed ``width`` as an (n, width) float32 array."""
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(column), width)


def score_part(
    store: ObjectStore, folder: str, part: Part, output: str, model: ScoringModel, run_token: str, index: int
) -> list[Summary]:
    """One Spark task: score the valid rows of tensor part ``part``; one scores part and its counts back."""
    tensors = read_part(store, folder, part)
    valid = tensors.filter(pc.is_null(tensors.column(features.REASON)))
    onnx = _model(store, model)
    source = lake_keys.part(folder, part.name)
    try:
        history = _matrix(valid.column(features.HISTORY), onnx.months * onnx.channels)
        static = _matrix(valid.column(features.STATIC), onnx.n_static)
    except ValueError as error:
        raise PartitionError(
            f"{source}: its tensors do not fit {model.version}'s model "
            f"({onnx.months}x{onnx.channels} history, {onnx.n_static} static): {error}"
        ) from None
    probabilities = onnx.predict(history.reshape(-1, onnx.months, onnx.channels), static)
    declined = decisions.declines(probabilities, model.threshold)
    scores = pa.table(
        {
            schema.ID: valid.column(schema.ID),
            PROBABILITY: pa.array(probabilities, type=pa.float32()),
            DECISION: pa.array(decisions.labels(declined), type=pa.string()),
            MODEL_VERSION: pa.array([model.version] * valid.num_rows, type=pa.string()),
        }
    )
    written = write_part(store, output, lake_keys.part_name(run_token, index), scores)
    return [
        Summary(SCORES, written.name, written.sha256, None, written.rows),
        Summary(DECLINES, "", "", None, int(declined.sum())),
        Summary(UNSCORED, "", "", None, tensors.num_rows - valid.num_rows),
        Summary(PD_MICROS, "", "", None, int(np.rint(probabilities.astype(np.float64) * _MICROS).sum())),
    ]


def score_partition(
    spark: SparkSession, store: ObjectStore, partition: str, model: ScoringModel, run_token: str
) -> ScoredPartition:
    """Score the committed tensor partition with ``model`` on ``spark``'s executors; written, not committed."""
    folder, output = lake_keys.tensors(partition), lake_keys.portfolio_scores(model.version, partition)
    with reading(store, folder) as manifest:
        totals = run_part_tasks(
            spark,
            list(enumerate(manifest.parts)),
            lambda task: score_part(store, folder, task[1], output, model, run_token, task[0]),
        )
    return ScoredPartition(
        run_token=run_token,
        parts=tuple(Part(t.name, t.rows, t.sha256) for t in totals if t.output == SCORES),
        declines=sum(t.rows for t in totals if t.output == DECLINES),
        unscored=sum(t.rows for t in totals if t.output == UNSCORED),
        probability_sum=sum(t.rows for t in totals if t.output == PD_MICROS) / _MICROS,
    )
