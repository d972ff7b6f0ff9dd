"""Performance estimated before outcomes arrive: ``ml/estimated_quality`` on a real inference log, the
``estimated_performance`` asset on a real lake (a committed tensor partition, a version whose model.onnx scores it),
and the accuracy-drop sensor firing on the estimate and later judging it by the outcomes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from loop_support import FakeRegistry, empty_log, lake_at, log_scored, monitoring, post_outcomes, publish_validation
from onnx_support import graph_bytes, reference
from record_support import model_version
from sklearn.metrics import roc_auc_score

from platform_assets import model_store
from platform_assets.core import lake_keys
from platform_assets.core.inference_log.reader import read_predictions
from platform_assets.core.model_version import ONNX_FILE
from platform_assets.dataplane import partitions, tensors
from platform_assets.defs.monitoring.assets import ESTIMATED_PERFORMANCE_KEY, estimated_performance
from platform_assets.defs.monitoring.sensors import accuracy_drop_sensor
from platform_assets.ml import estimated_quality, features, schema, synthetic
from platform_assets.replay import apply_shift
from platform_assets.resources.lake import LakeStorage

TRAINING_DAY = "2026-10-05"
#: Declines about the riskiest fifth of the reference.
DECLINE_SHARE = 0.2


def scores_of(raw: pd.DataFrame) -> np.ndarray:
    """What the hand-built model.onnx answers for raw rows (its formula in numpy)."""
    batch = features.build_features(raw)
    return reference(batch.tensor, batch.static)


def raw_inputs(raw: pd.DataFrame) -> list[dict[str, int]]:
    return [{c: int(v) for c, v in row.items()} for row in raw[list(schema.FEATURE_COLUMNS)].to_dict("records")]


@pytest.fixture
def lake(tmp_path: Path) -> LakeStorage:
    """v1: its training partition committed in the lake as the tensor table, and the hand-built model.onnx; the
    threshold declines about a fifth of the training rows."""
    lake = lake_at(tmp_path / "lake")
    raw = synthetic.generate_partition(date.fromisoformat(TRAINING_DAY), 3000, seed=5)
    [(table, quarantined)] = list(tensors.featurize_table(pa_table(raw), "test", include_protected=False))
    assert quarantined.num_rows == 0
    manifest = partitions.write_partition(lake.executor_store(), lake_keys.tensors(TRAINING_DAY), [table])
    onnx_sha256 = lake.write_bytes(model_store.version_key("v1", ONNX_FILE), graph_bytes())
    threshold = float(np.quantile(scores_of(raw), 1 - DECLINE_SHARE))
    record = model_version(
        "v1", onnx_sha256=onnx_sha256, threshold=threshold, data_versions={TRAINING_DAY: manifest.digest}
    )
    model_store.publish(lake, record)
    return lake


def pa_table(frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def log_window(db: str, raw: pd.DataFrame, threshold: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Score ``raw`` with v1, draw each outcome from its probability (calibrated by construction), log every
    prediction with the declined rows' inputs, and post the approved rows' outcomes only; returns the
    probabilities and outcomes."""
    probabilities = scores_of(raw)
    outcomes = (np.random.default_rng(seed).random(len(raw)) < probabilities).astype(int)
    log_scored(
        db,
        "v1",
        probabilities,
        outcomes,
        labelled=probabilities < threshold,
        threshold=threshold,
        inputs=raw_inputs(raw),
    )
    return probabilities, outcomes


def materialize(lake: LakeStorage, db: str) -> tuple[dict[str, Any], dict[str, Any]]:
    result = dg.materialize([estimated_performance], resources={"lake": lake, "live_monitoring": monitoring(db)})
    [materialization] = result.asset_materializations_for_node("estimated_performance")
    return {k: v.value for k, v in materialization.metadata.items()}, json.loads(
        lake.read_text(ESTIMATED_PERFORMANCE_KEY)
    )


# -- the asset on a real lake and log -------------------------------------------------------------------------
def test_estimate_beside_partial_labels_and_a_stable_population(lake: LakeStorage, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    threshold = model_store.load_record(lake, "v1").threshold
    window = synthetic.generate_partition(date(2027, 1, 1), 2500, seed=9)
    probabilities, outcomes = log_window(db, window, threshold, seed=2)
    metadata, document = materialize(lake, db)

    v1 = document["versions"]["v1"]
    assert v1["predictions"] == 2500 and v1["estimated"]["n"] == 2500 and v1["estimated"]["method"] == "cbpe"
    # Outcomes drawn from the probabilities: the estimate is the AUC every outcome would give, up to sampling noise
    # (its standard deviation over outcome draws is 0.010 on these 2,500 rows: the bound is three of them).
    assert abs(v1["estimated"]["roc_auc"] - roc_auc_score(outcomes, probabilities)) < 0.03
    realized = v1["realized"]
    declined = int((probabilities >= threshold).sum())
    assert realized["labels_cover"] == "approved_only" and realized["labelled"] == 2500 - declined
    assert realized["decisions"]["decline"] == {"predictions": declined, "labelled": 0, "coverage": 0.0}
    # Like for like: the estimate on the labelled (approved) rows against their realized values.
    on_labelled = v1["estimated_on_labelled"]
    assert on_labelled["n"] == realized["labelled"]
    assert abs(v1["realized_minus_estimated_on_labelled"]["roc_auc"]) < 0.05
    # Same population as the training day: the score and the inputs are stable.
    score = v1["score_psi"]
    assert not score["alarm"] and score["psi"] < score["threshold"]
    assert (score["current_rows"], score["reference_rows"]) == (2500, len(reference_rows(lake)))
    csi = v1["inputs_csi"]
    assert csi["current_rows"] == declined and 0 < csi["reference_rows"] < score["reference_rows"]
    assert set(csi["columns"]) == set(schema.FEATURE_COLUMNS)
    assert len(csi["alarms"]) <= 1  # 19 columns at 99 % confidence each: one false alarm is possible
    assert "train split of v1" in v1["reference"]

    assert isinstance(metadata["v1/estimated_roc_auc"], float) and isinstance(metadata["v1/score_psi"], float)
    assert metadata["v1/realized_coverage"] == pytest.approx(realized["coverage"])
    assert metadata["labels_cover"] == {"v1": "approved_only"}
    assert "| v1 | 2500 |" in metadata["versions"]


def reference_rows(lake: LakeStorage) -> Any:
    return model_store.reference_sample(lake, model_store.load_record(lake, "v1")).ids


def test_a_shifted_population_raises_the_score_and_input_alarms(lake: LakeStorage, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    threshold = model_store.load_record(lake, "v1").threshold
    window = apply_shift(synthetic.generate_partition(date(2027, 1, 1), 1500, seed=9), 1.0, seed=2)
    log_window(db, window, threshold, seed=1)
    metadata, document = materialize(lake, db)
    v1 = document["versions"]["v1"]
    assert v1["score_psi"]["alarm"] and v1["alarm"]
    # The shift adds two months of delay to the three latest repayment statuses (and 30 % to every bill).
    assert {"PAY_0", "PAY_2", "PAY_3"} <= set(v1["inputs_csi"]["alarms"])
    assert "score" in metadata["alarms"]["v1"] and "PAY_0" in metadata["alarms"]["v1"]


def test_an_empty_window_writes_an_empty_document(lake: LakeStorage, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    empty_log(db)
    metadata, document = materialize(lake, db)
    assert document["versions"] == {} and metadata["predictions"] == 0


def test_a_served_version_without_a_record_fails_naming_it(lake: LakeStorage, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    log_scored(db, "v9", np.array([0.1, 0.7]), np.array([0, 1]), labelled=np.array([True, False]))
    result = dg.materialize(
        [estimated_performance], resources={"lake": lake, "live_monitoring": monitoring(db)}, raise_on_error=False
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "no default_risk_model v9 in the lake" in failure.step_failure_data.error.message


# -- the pure pieces --------------------------------------------------------------------------------------------
def test_logged_inputs_and_their_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    raw = synthetic.generate_partition(date(2027, 1, 1), 10, seed=3)
    log_scored(db, "v1", np.linspace(0.05, 0.95, 10), np.zeros(10), labelled=np.zeros(10, bool), inputs=raw_inputs(raw))
    frame = read_predictions(db)
    inputs = estimated_quality.logged_inputs(frame)
    assert list(inputs.columns) == list(schema.FEATURE_COLUMNS) and len(inputs) == 5  # the declined half
    frame.loc[frame["inputs"].notna().idxmax(), "inputs"] = json.dumps({"LIMIT_BAL": 1})
    with pytest.raises(ValueError, match="logged inputs lack"):
        estimated_quality.logged_inputs(frame)


def test_one_threshold_per_version() -> None:
    rows = pd.DataFrame({"threshold": [0.3, 0.3], "model_version": ["v1", "v1"]})
    assert estimated_quality.decision_threshold(rows) == 0.3
    with pytest.raises(ValueError, match="decided at 2 thresholds"):
        estimated_quality.decision_threshold(pd.DataFrame({"threshold": [0.3, 0.4], "model_version": ["v1", "v1"]}))


def test_stability_policy_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="bins"):
        estimated_quality.StabilityPolicy(bins=1)
    with pytest.raises(ValueError, match="confidence"):
        estimated_quality.StabilityPolicy(confidence=1.0)


# -- the accuracy-drop sensor on the estimate ---------------------------------------------------------------------
@pytest.fixture
def instance() -> Any:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def evaluate(instance: Any, cursor: str | None = None, **resources: Any) -> Any:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return accuracy_drop_sensor.evaluate_tick(context)


def sensor_resources(db: str, lake: LakeStorage, **overrides: Any) -> dict[str, Any]:
    settings = {"use_estimate": True, "min_predictions_for_estimate": 1000, **overrides}
    return {
        "live_monitoring": monitoring(db, **settings),
        "model_registry": FakeRegistry(current={"champion": "v1"}),
        "lake": lake,
    }


def flat_scores(n: int, seed: int = 0) -> np.ndarray:
    """Probabilities that barely separate anyone: calibrated, they promise a ROC AUC near 0.5."""
    return np.random.default_rng(seed).uniform(0.20, 0.24, n)


def test_estimate_mode_is_off_by_default(tmp_path: Path, instance: Any) -> None:
    db, lake = f"sqlite:///{tmp_path / 'log.db'}", lake_at(tmp_path / "lake")
    publish_validation(lake, "v1")
    log_scored(db, "v1", flat_scores(1500), np.zeros(1500), labelled=np.arange(1500) < 50)
    result = evaluate(instance, **sensor_resources(db, lake, use_estimate=False))
    assert not result.run_requests and "only 50 of the 200 labelled outcomes" in result.skip_message


def test_estimate_waits_for_enough_predictions(tmp_path: Path, instance: Any) -> None:
    db, lake = f"sqlite:///{tmp_path / 'log.db'}", lake_at(tmp_path / "lake")
    publish_validation(lake, "v1")
    log_scored(db, "v1", flat_scores(600), np.zeros(600), labelled=np.zeros(600, bool))
    result = evaluate(instance, **sensor_resources(db, lake))
    assert not result.run_requests
    assert "0 of the 200 labelled outcomes" in result.skip_message
    assert "600 of the 1000 predictions an estimate needs" in result.skip_message


def test_estimate_that_holds_does_not_fire(tmp_path: Path, instance: Any) -> None:
    db, lake = f"sqlite:///{tmp_path / 'log.db'}", lake_at(tmp_path / "lake")
    publish_validation(lake, "v1", roc_auc=0.80, accuracy=0.80)
    probabilities = np.random.default_rng(1).beta(0.6, 2.0, 1200)  # well-separated scores: estimated AUC ~0.8
    log_scored(db, "v1", probabilities, np.zeros(1200), labelled=np.zeros(1200, bool))
    result = evaluate(instance, **sensor_resources(db, lake))
    assert not result.run_requests and "holds by its estimate over 1200 predictions" in result.skip_message


@pytest.mark.parametrize(("separable", "verdict"), [(True, "contradicted"), (False, "confirmed")])
def test_fires_on_the_estimate_then_outcomes_judge_it(
    tmp_path: Path, instance: Any, separable: bool, verdict: str
) -> None:
    db, lake = f"sqlite:///{tmp_path / 'log.db'}", lake_at(tmp_path / "lake")
    publish_validation(lake, "v1", roc_auc=0.80, accuracy=0.80)
    probabilities = flat_scores(1500)
    ids = log_scored(db, "v1", probabilities, np.zeros(1500), labelled=np.zeros(1500, bool))
    resources = sensor_resources(db, lake)

    fired = evaluate(instance, **resources)
    [request] = fired.run_requests
    assert request.tags["loop/basis"] == "estimate" and request.tags["loop/predictions"] == "1500"
    assert float(request.tags["loop/estimated_roc_auc"]) < 0.6 and "estimated ROC AUC" in request.tags["loop/reason"]
    cursor = json.loads(fired.cursor)
    [pending] = cursor["pending_estimates"]
    assert (cursor["basis"], pending["model_version"], pending["run_key"]) == ("estimate", "v1", request.run_key)

    # Too few outcomes of that window yet: still pending, nothing observed.
    post_outcomes(db, ids[:100], np.zeros(100))
    waiting = evaluate(instance, cursor=fired.cursor, **resources)
    assert not waiting.run_requests and not waiting.asset_events
    assert len(json.loads(waiting.cursor)["pending_estimates"]) == 1

    # The outcomes arrive: the 22 % with the highest scores default (separable, realized ROC AUC 1.0), or defaults
    # fall at random (realized ROC AUC about 0.5, as estimated).
    rng = np.random.default_rng(4)
    if separable:
        outcomes = (probabilities >= np.quantile(probabilities, 0.78)).astype(int)
    else:
        outcomes = (rng.random(1500) < 0.22).astype(int)
    post_outcomes(db, ids[100:], outcomes[100:])
    post_outcomes(db, ids[:100], outcomes[:100])  # the latest outcome of a prediction counts
    judged = evaluate(instance, cursor=waiting.cursor, **resources)
    [observation] = judged.asset_events
    assert isinstance(observation, dg.AssetObservation) and observation.asset_key.path == ["estimated_performance"]
    metadata = {k: v.value for k, v in observation.metadata.items()}
    assert metadata["accuracy_drop_verdict"] == verdict and metadata["run_key"] == request.run_key
    assert metadata["labelled"] == 1500.0 and metadata["labels_cover"] == "approved_only"
    assert metadata["estimated_roc_auc"] < 0.6
    if separable:
        assert metadata["realized_roc_auc"] == pytest.approx(1.0) and metadata["realized_reasons"] == []
    else:
        assert metadata["realized_roc_auc"] < 0.6 and metadata["realized_reasons"]
    after = json.loads(judged.cursor)
    assert after["pending_estimates"] == [] and [v["verdict"] for v in after["verdicts"]] == [verdict]
    # One drop, one retrain: the realized drop of the same champion within the retrigger period asks for none.
    assert not judged.run_requests
    assert not evaluate(instance, cursor=judged.cursor, **resources).asset_events
