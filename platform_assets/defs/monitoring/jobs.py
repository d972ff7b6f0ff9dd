"""Small jobs of the closed loop: each canary step and each report is a run of its own in the UI."""

import dagster as dg

canary_job = dg.define_asset_job(
    name="canary_job",
    selection=dg.AssetSelection.assets("canary_decision"),
    description="Measure the canary and step, promote or roll back the challenger (requested by canary_sensor).",
)

ab_report_job = dg.define_asset_job(
    name="ab_report_job",
    selection=dg.AssetSelection.assets("ab_comparison_report"),
    description="Compare champion and challenger of an A/B split (requested by canary_sensor in A/B mode).",
)

live_performance_job = dg.define_asset_job(
    name="live_performance_job",
    selection=dg.AssetSelection.assets("live_model_performance"),
    description="Live accuracy, ROC AUC, calibration and per-group metrics of the served versions.",
)

estimated_performance_job = dg.define_asset_job(
    name="estimated_performance_job",
    selection=dg.AssetSelection.assets("estimated_performance"),
    description="Estimated quality of the served versions before outcomes arrive, and their score and input PSI.",
)
