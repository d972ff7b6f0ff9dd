"""``credit_history_tensors`` on Spark: executors read the raw parts, featurize and write the tensor parts.

The driver reads only the raw partition's manifest and sends each task a part name; a task reads its raw
part from the lake (checked against the manifest's sha256), validates and featurizes it with
``platform_assets.ml.features.featurize`` (the function serving uses) and writes one tensor part and, when
rows fail validation, one quarantine part. What comes back to the driver is a Spark aggregate of small
summary rows (per written file: rows and sha256; per quarantine reason: a count), never the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from platform_assets.core import lake_keys
from platform_assets.dataplane.objects import ObjectStore
from platform_assets.dataplane.partitions import (
    Part,
    PartitionError,
    new_run_token,
    read_part,
    reading,
    write_part,
)
from platform_assets.dataplane.tasks import Summary, run_part_tasks
from platform_assets.ml import features, schema

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Raw columns the tensor table carries along: all of them. The key, the label, the protected attributes (fairness
#: audit) and the raw inputs (a model version's reference applicant for reason codes is a set of raw values).
CARRIED_COLUMNS = schema.RAW_COLUMNS
TENSOR_COLUMNS = (
    *CARRIED_COLUMNS,
    features.REASON,
    features.HISTORY,
    features.STATIC,
)
QUARANTINE_COLUMNS = (*schema.RAW_COLUMNS, features.REASON)
#: Rows featurized at a time inside a task: bounds the task's working memory beyond its part.
BATCH_ROWS = 65_536

TENSORS, QUARANTINE, REASONS = "tensors", "quarantine", "reason"


@dataclass(frozen=True)
class FeaturizedPartition:
    """What one Spark run wrote (not yet committed) and what Spark counted."""

    run_token: str
    tensor_parts: tuple[Part, ...]
    quarantine_parts: tuple[Part, ...]
    reasons: dict[str, int]  # quarantine reason -> rows

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.tensor_parts)

    @property
    def quarantined(self) -> int:
        return sum(self.reasons.values())


def _list_array(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    """(n_valid, width) float32 values as a list<float> column of n rows, empty lists where not ``valid``."""
    width = values.shape[1] if values.ndim == 2 else 0
    lengths = np.where(valid, width, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype("int32")
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1).astype("float32")))


def featurize_table(raw: pa.Table, source: str, *, include_protected: bool) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(tensor rows, quarantined raw rows) per batch of ``raw``; a schema problem raises naming ``source``."""
    for batch in raw.to_batches(max_chunksize=BATCH_ROWS):
        try:
            frame = features.coerce_raw_frame(batch.to_pandas(), source)
        except features.RawSchemaError as error:
            raise PartitionError(str(error)) from None
        result = features.featurize(frame, include_protected=include_protected)
        history = result.batch.tensor.reshape(len(result.batch), -1)
        reasons = pa.array(result.reasons.tolist(), type=pa.string())
        columns = {c: pa.array(frame[c].to_numpy()) for c in CARRIED_COLUMNS}
        tensors = pa.table(
            {
                **columns,
                features.REASON: reasons,
                features.HISTORY: _list_array(history, result.valid),
                features.STATIC: _list_array(result.batch.static, result.valid),
            }
        )
        bad = ~result.valid
        quarantined = pa.Table.from_pandas(frame[bad], preserve_index=False).append_column(
            features.REASON, pa.array(result.reasons[bad].tolist(), type=pa.string())
        )
        yield tensors, quarantined


def featurize_part(
    store: ObjectStore,
    raw_folder: str,
    raw_part: Part,
    index: int,
    outputs: tuple[str, str],
    run_token: str,
    include_protected: bool,
) -> list[Summary]:
    """One Spark task: raw part ``index`` -> a tensor part and maybe a quarantine part; summary rows back."""
    tensor_folder, quarantine_folder = outputs
    raw = read_part(store, raw_folder, raw_part)
    source = lake_keys.part(raw_folder, raw_part.name)
    pieces = list(featurize_table(raw, source, include_protected=include_protected))
    if not pieces:
        raise PartitionError(f"{source} has no rows")
    del raw
    name = lake_keys.part_name(run_token, index)
    tensor_part = write_part(store, tensor_folder, name, pa.concat_tables([t for t, _ in pieces]))
    summary = [Summary(TENSORS, tensor_part.name, tensor_part.sha256, None, tensor_part.rows)]
    quarantined = pa.concat_tables([q for _, q in pieces])
    if quarantined.num_rows:
        part = write_part(store, quarantine_folder, name, quarantined)
        summary.append(Summary(QUARANTINE, part.name, part.sha256, None, part.rows))
        reasons, counts = np.unique(np.asarray(quarantined.column(features.REASON).to_pylist()), return_counts=True)
        summary.extend(Summary(REASONS, "", "", str(r), int(c)) for r, c in zip(reasons, counts, strict=True))
    return summary


def featurize_partition(
    spark: SparkSession,
    store: ObjectStore,
    partition: str,
    *,
    include_protected: bool = False,
    run_token: str | None = None,
) -> FeaturizedPartition:
    """Featurize the committed raw partition on ``spark``'s executors; the outputs are written, not committed."""
    raw_folder = lake_keys.raw(partition)
    token = run_token or new_run_token()
    outputs = (lake_keys.tensors(partition), lake_keys.quarantine(partition))
    # Spared by a concurrent raw commit's sweep while the tasks read it.
    with reading(store, raw_folder) as manifest:
        if not manifest.parts:
            raise PartitionError(f"raw partition {partition} is committed with no rows: {store.uri(raw_folder)}")
        totals = run_part_tasks(
            spark,
            list(enumerate(manifest.parts)),
            lambda task: featurize_part(store, raw_folder, task[1], task[0], outputs, token, include_protected),
        )
    return FeaturizedPartition(
        run_token=token,
        tensor_parts=tuple(Part(t.name, t.rows, t.sha256) for t in totals if t.output == TENSORS),
        quarantine_parts=tuple(Part(t.name, t.rows, t.sha256) for t in totals if t.output == QUARANTINE),
        reasons={str(t.reason): t.rows for t in totals if t.output == REASONS},
    )
