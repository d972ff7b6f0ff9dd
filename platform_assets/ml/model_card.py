"""A Markdown model card per model version, assembled from its record, evaluation, fairness and manifest.

No Dagster here: the ``model_card`` asset reads the documents from the lake and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from platform_assets.core.model_version import ModelVersion
from platform_assets.ml import evaluate, fairness_rendering

INTENDED_USE = (
    "Scores the probability that a credit-card client defaults on next month's payment, from six months of "
    "repayment status, bills and payments plus the credit limit. Intended as decision support for credit "
    "officers and automated pre-screening with human review of declines; not for setting prices, limits or "
    "for any use on populations unlike the training data."
)
LIMITATIONS = (
    "- Trained on Taiwanese card clients of 2005 (UCI) or synthetic data shaped like them; behaviour on other "
    "markets, periods or products is unknown.",
    "- Protected attributes (sex, age, marriage, education) are not inputs by default, but the repayment "
    "history can be correlated with them: see the fairness table; groups below the minimum size are not measured.",
    "- The threshold follows the version's threshold policy (above); other costs of errors need another policy "
    "and a new version.",
    "- Probabilities are calibrated on the validation split of the training period only; watch the data drift "
    "report for shifts.",
)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _policy(info: ModelVersion) -> str:
    policy = info.threshold_policy
    if policy.kind == "expected_cost":
        return (
            f"expected cost (decline when PD x {policy.loss_given_default} loss given default > "
            f"(1 - PD) x {policy.margin} margin)"
        )
    return f"a target approval rate of {policy.target_approval_rate} on the validation split"


def render_model_card(
    info: ModelVersion,
    evaluation: Mapping[str, Any],
    fairness_report: Mapping[str, Any],
    manifest: Mapping[str, Any] | None,
    signature_status: str,
) -> str:
    """The card as Markdown. ``signature_status`` is e.g. ``verified (key ed25519:...)`` or the failure."""
    lineage = (manifest or {}).get("lineage", {})
    code = (manifest or {}).get("code_version", {})
    rows = info.rows
    partitions = info.partitions
    spec = info.feature_spec
    lines = [
        f"# Model card: {info.model} {info.version}",
        "",
        f"- **Trained**: {info.trained_at.isoformat()} (best epoch {info.best_epoch})",
        f"- **Decision threshold**: {_fmt(info.threshold)} (PD >= threshold -> flagged as likely default), set by "
        f"{_policy(info)}",
        f"- **Calibration**: {info.calibration.method}, fitted on {info.calibration.validation_rows} validation rows "
        + ("weighted by their inverse-approval weights (reject inference) " if info.calibration.weighted else "")
        + "and built into the model: its output is the calibrated probability of default",
        f"- **Feature spec**: version {spec.version}, {len(spec.channels)} channels x {spec.months} months + "
        f"{len(spec.static)} static features; protected attributes as inputs: {_fmt(spec.include_protected)}",
        f"- **Target**: `{spec.target}`",
        f"- **Signature**: {signature_status}",
        f"- **Code version**: {code.get('git_commit', 'unknown')}"
        + (" (uncommitted changes)" if code.get("dirty") else ""),
        f"- **MLflow run**: {info.mlflow_run_id}; **Dagster run**: {info.dagster_run_id}"
        + (f"; manifest run {lineage['manifest_dagster_run_id']}" if lineage.get("manifest_dagster_run_id") else ""),
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Data",
        "",
        f"{len(partitions)} credit_history_tensors partition(s), {partitions[0]} .. {partitions[-1]}; split by a "
        f"seeded hash of the client ID (validation {info.split.validation}, test {info.split.test}, "
        f"seed {info.split.seed}); rows: " + ", ".join(f"{name} {count}" for name, count in rows.items()),
        "",
        "| partition | data version (sha256) |",
        "|---|---|",
        *[f"| {p} | `{info.data_versions[p][:16]}` |" for p in partitions],
        "",
        "## Metrics (test split) vs baselines",
        "",
        f"{evaluation['test_rows']} test rows, default rate {_fmt(evaluation['test_default_rate'])}; best baseline: "
        f"{evaluation['best_baseline']}.",
        "",
        evaluate.metrics_table(evaluation["metrics"]),
        "",
        "## Fairness (test split)",
        "",
        f"Groups under {fairness_report['min_group_size']} rows are not measured. Disparate impact ratio = lowest "
        "group approval rate / highest (four-fifths rule: >= 0.8).",
        "",
        fairness_rendering.summary_table(fairness_report),
        "",
        "## Limitations",
        "",
        *LIMITATIONS,
        "",
    ]
    return "\n".join(lines)
