"""The fairness report rendered: Markdown tables, the bar chart and the HTML page, on the UCI data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from platform_assets.ml import fairness_metrics, fairness_rendering


def test_tables_chart_and_html_render(uci_predictions: tuple[pd.DataFrame, np.ndarray, np.ndarray, float]) -> None:
    frame, labels, scores, threshold = uci_predictions
    report = fairness_metrics.fairness_report(labels, scores, threshold, fairness_metrics.protected_groups(frame))
    png = fairness_rendering.bar_chart_png(report)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = fairness_rendering.report_html(report, png, "UCI fairness")
    assert "<table>" in page and "data:image/png;base64," in page and "disparate_impact_ratio" in page
    assert fairness_rendering.summary_table(report).count("\n") == 1 + len(fairness_metrics.ATTRIBUTES)
    assert "too small to measure" in fairness_rendering.groups_table(report)
