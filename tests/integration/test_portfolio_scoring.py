"""Batch rescoring on Spark: executors score tensor parts with a version's model.onnx through ONNX Runtime."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from onnx_support import graph_bytes, reference

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions, scoring, tensors
from platform_assets.dataplane.objects import LocalObjects
from platform_assets.ml import features, schema, synthetic

pytestmark = pytest.mark.spark

DAY = "2026-10-01"
MODEL_KEY = "models/default_risk_model/v7/model.onnx"


@pytest.fixture
def lake(spark: Any, tmp_path: Path) -> LocalObjects:
    """A committed tensor partition of 3 parts with 2 quarantined rows, and a model.onnx beside it."""
    store = LocalObjects(root=str(tmp_path / "lake"))
    raw = synthetic.generate_partition(date.fromisoformat(DAY), 3_000, seed=4)
    raw.loc[[5, 2_500], "LIMIT_BAL"] = -1
    partitions.write_partition(store, lake_keys.raw(DAY), [raw.iloc[:1_000], raw.iloc[1_000:2_000], raw.iloc[2_000:]])
    written = tensors.featurize_partition(spark, store, DAY)
    partitions.commit(store, lake_keys.tensors(DAY), written.tensor_parts, written.run_token)
    store.write_bytes(MODEL_KEY, graph_bytes())
    return store


def score(spark: Any, store: LocalObjects, model: scoring.ScoringModel) -> scoring.ScoredPartition:
    folder = lake_keys.portfolio_scores(model.version, DAY)
    with partitions.writing(store, [folder]) as token:
        scored = scoring.score_partition(spark, store, DAY, model, token)
        partitions.commit(store, folder, scored.parts, token)
    return scored


def test_executors_score_every_valid_row_with_the_onnx_model(spark: Any, lake: LocalObjects) -> None:
    model = scoring.ScoringModel("v7", MODEL_KEY, hashlib.sha256(graph_bytes()).hexdigest(), threshold=0.3)
    scored = score(spark, lake, model)

    tensor_rows = partitions.read_partition(lake, lake_keys.tensors(DAY))
    valid = tensor_rows[tensor_rows[features.REASON].isna()].sort_values(schema.ID).reset_index(drop=True)
    history = np.stack(valid[features.HISTORY].to_numpy()).reshape(len(valid), schema.N_MONTHS, -1)
    expected = reference(history, np.stack(valid[features.STATIC].to_numpy()))
    out = partitions.read_partition(lake, lake_keys.portfolio_scores("v7", DAY)).sort_values(schema.ID)
    out = out.reset_index(drop=True)

    assert list(out.columns) == list(scoring.SCORE_COLUMNS)
    assert out[schema.ID].tolist() == valid[schema.ID].tolist() and scored.rows == 2_998 == len(out)
    np.testing.assert_allclose(out[scoring.PROBABILITY], expected, atol=1e-6)
    declines = expected >= 0.3
    assert out[scoring.DECISION].tolist() == np.where(declines, "decline", "approve").tolist()
    assert set(out[scoring.MODEL_VERSION]) == {"v7"}
    # Spark's counts are the rows': declines, the quarantined rows left unscored, the mean score.
    assert scored.declines == int(declines.sum()) and 0 < scored.declines < scored.rows
    assert scored.unscored == 2 and scored.approval_rate == pytest.approx(1 - declines.mean())
    assert scored.mean_probability == pytest.approx(expected.mean(), abs=1e-6)


def test_an_altered_model_is_refused_naming_the_artifact(spark: Any, lake: LocalObjects) -> None:
    model = scoring.ScoringModel("v7", MODEL_KEY, "0" * 64, threshold=0.3)
    with pytest.raises(
        partitions.PartitionError, match="model.onnx has sha256 .* expected 0{64}: the artifact was altered"
    ):
        score(spark, lake, model)
    # Nothing committed, and the failed run's parts and marker are gone.
    assert lake.list_keys(lake_keys.portfolio_scores("v7", DAY)) == []


def test_scores_of_two_versions_sit_side_by_side(spark: Any, lake: LocalObjects) -> None:
    sha = hashlib.sha256(graph_bytes()).hexdigest()
    champion = score(spark, lake, scoring.ScoringModel("v7", MODEL_KEY, sha, threshold=0.3))
    candidate = score(spark, lake, scoring.ScoringModel("v8", MODEL_KEY, sha, threshold=0.6))
    assert candidate.approval_rate > champion.approval_rate  # same scores, a higher threshold approves more
    both = [partitions.read_partition(lake, lake_keys.portfolio_scores(v, DAY)) for v in ("v7", "v8")]
    assert [set(frame[scoring.MODEL_VERSION]) for frame in both] == [{"v7"}, {"v8"}]
    pd.testing.assert_series_equal(
        both[0].sort_values(schema.ID)[scoring.PROBABILITY].reset_index(drop=True),
        both[1].sort_values(schema.ID)[scoring.PROBABILITY].reset_index(drop=True),
    )
