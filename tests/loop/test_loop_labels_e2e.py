"""Delayed, partial labels on replayed UCI data with real processes: a CNN trained by the pipeline on 20 of the 30
UCI replay days serves under ``bentoml serve``; the other 10 days (clients it never saw) are replayed with realistic
labels (outcomes of approved applications only, 2 s after each decision). live_model_performance states the
coverage per decision, and estimated_performance's ROC AUC, from the served calibrated probabilities alone, is
within 0.03 of the ROC AUC realized on every replayed application's true outcome (issue #13's acceptance)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from loop_support import local_service_replay_key
from net_support import free_port
from sklearn.metrics import roc_auc_score

from platform_assets import model_store, settings
from platform_assets.core.inference_log.reader import read_predictions
from platform_assets.definitions import defs
from platform_assets.defs.monitoring.assets import ESTIMATED_PERFORMANCE_KEY
from platform_assets.demo import run_pipeline
from platform_assets.ml import features, schema, uci
from platform_assets.replay import replay

pytestmark = [pytest.mark.spark, pytest.mark.slow]

START = date(2026, 10, 1)
TRAINING_DAYS = 20
LABEL_DELAY_SECONDS = 2.0
#: Issue #13: the estimate within 0.03 ROC AUC of the realized value.
MAX_AUC_GAP = 0.03
TRAINING = {"ops": {"default_risk_model": {"config": {"epochs": 12, "patience": 3, "seed": 1}}}}


@pytest.fixture
def uci_env(platform_home: Path, uci_csv: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from local_service_replay_key(
        monkeypatch,
        {
            "PLATFORM_SOURCE": "uci_csv",
            "PLATFORM_UCI_CSV": str(uci_csv),
            "PLATFORM_UCI_REPLAY_START": START.isoformat(),
            "PLATFORM_SERVICE_PORT": str(free_port()),
            # This test is about labels and estimates: the fairness gate must not stop the release of a model
            # trained on two thirds of the data.
            "PLATFORM_MIN_DISPARATE_IMPACT": "0.0",
            "PLATFORM_MAX_EQUAL_OPPORTUNITY_DIFF": "1.0",
            "PLATFORM_LOOP_WINDOW_HOURS": "1",
        },
        "labels e2e replay",
    )


def unseen_applications(csv: Path) -> Any:
    """The valid rows of the replay days after the training days: clients the model never saw."""
    frame = uci.read_uci_csv(csv.read_bytes(), str(csv))
    days = uci.replay_day(frame[schema.ID], settings.UCI_REPLAY_DAYS)
    unseen = frame[(days >= TRAINING_DAYS) & features.quarantine_reasons(frame).isna().to_numpy()]
    return unseen.reset_index(drop=True)


def materialized(definitions: dg.Definitions, instance: Any, job: str, asset: str) -> dict[str, Any]:
    result = definitions.resolve_job_def(job).execute_in_process(instance=instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def test_realistic_labels_coverage_and_the_estimate_within_003_auc(uci_env: str, uci_csv: Path) -> None:
    key = uci_env
    days = [(START + timedelta(days=d)).isoformat() for d in range(TRAINING_DAYS)]
    report = run_pipeline(days, TRAINING, deploy=True)
    version = report["model_version"]
    definitions = defs()
    url = definitions.resources["deployer"].local_manager().current().url
    frame = unseen_applications(uci_csv)
    assert len(frame) > 8000

    stats = replay(
        url,
        frame,
        key,
        key,
        rate=1000,
        batch_size=100,
        feedback_delay=LABEL_DELAY_SECONDS,
        labels="realistic",
        max_seconds=600,
    )
    assert stats.predict_failures == 0 and stats.feedback_failures == 0, stats.errors
    assert stats.sent == len(frame) and stats.by_version == {version: len(frame)}

    # Only approved predictions have an outcome, posted by prediction id at least the delay after the decision.
    log = read_predictions(definitions.resources["live_monitoring"].database())
    assert len(log) == len(frame)
    approved, declined = log[log["decision"] == "approve"], log[log["decision"] == "decline"]
    assert len(approved) and len(declined)
    assert approved["defaulted"].notna().all() and declined["defaulted"].isna().all()
    assert stats.labels_posted == {"approve": len(approved)} and stats.labels_withheld == {"decline": len(declined)}
    waited = (approved["feedback_at"] - approved["created_at"]).dt.total_seconds()
    assert waited.min() >= LABEL_DELAY_SECONDS
    truth = dict(zip(frame[schema.ID], frame[schema.TARGET], strict=True))
    assert (approved["defaulted"].astype(int) == approved["application_id"].map(truth)).all()

    with dg.DagsterInstance.get() as instance:
        live = materialized(definitions, instance, "live_performance_job", "live_model_performance")
        assert live[f"{version}/approve/coverage"] == 1.0 and live[f"{version}/decline/coverage"] == 0.0
        assert live[f"{version}/decline/predictions"] == float(len(declined))
        assert live["labels_cover"] == {version: "approved_only"}
        estimated = materialized(definitions, instance, "estimated_performance_job", "estimated_performance")

    lake = definitions.resources["lake"]
    document = model_store.read_json(lake, ESTIMATED_PERFORMANCE_KEY)
    served = document["versions"][version]
    assert served["realized"]["labels_cover"] == "approved_only"
    assert served["realized"]["labelled"] == len(approved)
    # The acceptance point: the estimate from the served probabilities against the AUC on every replayed row's
    # true outcome (which the service never saw for the declined ones).
    outcome = log["application_id"].map(truth)
    realized_on_all = float(roc_auc_score(outcome, log["probability"]))
    gap = served["estimated"]["roc_auc"] - realized_on_all
    print(
        json.dumps(
            {
                "rows": len(log),
                "approved": len(approved),
                "estimated_roc_auc": served["estimated"]["roc_auc"],
                "realized_roc_auc_all_rows": realized_on_all,
                "realized_roc_auc_approved_only": served["realized"]["roc_auc"],
                "estimated_roc_auc_approved_only": served["estimated_on_labelled"]["roc_auc"],
                "gap": gap,
                "estimated_accuracy": served["estimated"]["accuracy"],
                "score_psi": served["score_psi"],
                "csi_alarms": served["inputs_csi"]["alarms"],
            },
            indent=2,
        )
    )
    assert abs(gap) <= MAX_AUC_GAP, f"estimate {served['estimated']['roc_auc']:.4f} vs realized {realized_on_all:.4f}"
    assert estimated[f"{version}/estimated_roc_auc"] == pytest.approx(served["estimated"]["roc_auc"])
    # Clients of the same file and period as the training rows: the score's population is stable.
    assert not served["score_psi"]["alarm"], served["score_psi"]
    assert served["inputs_csi"]["current_rows"] == len(declined)
