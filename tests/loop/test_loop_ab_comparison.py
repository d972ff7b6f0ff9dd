"""platform_assets.ml.ab_comparison: the A/B report's significance tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from loop_support import log_outcomes

from platform_assets.core.inference_log.reader import read_predictions
from platform_assets.ml import ab_comparison


def test_compare_versions_finds_a_clearly_better_version(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    log_outcomes(db, "v1", 500, quality=0.5, seed=1)
    log_outcomes(db, "v2", 500, quality=3.0, role="challenger", seed=2)
    frame = read_predictions(db)
    result = ab_comparison.compare_versions(frame[frame.model_version == "v1"], frame[frame.model_version == "v2"])
    assert result["roc_auc_difference"] > 0.2 and result["roc_auc_p_value"] < 1e-6
    assert result["verdict"] == "b is better on roc auc (p < 0.05)"
    same = ab_comparison.compare_versions(frame[frame.model_version == "v1"], frame[frame.model_version == "v1"])
    assert same["verdict"] == "no significant difference" and same["roc_auc_p_value"] == pytest.approx(1.0)


def test_hanley_mcneil_standard_error() -> None:
    # Hanley & McNeil (1982), table: AUC 0.8 with 50 positives and 50 negatives -> SE about 0.044.
    assert ab_comparison.auc_standard_error(0.8, 50, 50) == pytest.approx(0.0438, abs=0.001)
