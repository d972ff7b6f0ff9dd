"""Governance: fairness, drift and performance reports, the signed manifest and the model card.

Every asset is partitioned by ``model_versions`` and works on the version its partition key names: it
reloads exactly the partitions and split of that version's record (a changed partition fails with
"retrain first") and the model bytes checked against their recorded sha256. Reports go to the version's
folder in the lake (``models/default_risk_model/<version>/``) and are linked from the asset metadata.
"""

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

import platform_assets
from platform_assets import model_store
from platform_assets.core import manifest as manifests
from platform_assets.core import signing
from platform_assets.core.model_version import RECORD_FILE, ModelVersion
from platform_assets.core.registry import MANIFEST_SHA_TAG, MODEL_NAME
from platform_assets.defs.features.assets import credit_history_tensors
from platform_assets.defs.training.assets import EVALUATION_FILE, default_risk_model, model_evaluation, version_record
from platform_assets.ml import drift, evaluate, fairness_metrics, fairness_rendering, features
from platform_assets.ml.model_card import render_model_card
from platform_assets.ml.train import predict_cnn
from platform_assets.partitions import model_versions
from platform_assets.resources.lake import LakeStorage, content_hash
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.resources.signer import ModelSigner
from platform_assets.resources.training_data import TrainingData
from platform_assets.retries import fail_fast, io_retry_policy

GROUP = "governance"
FAIRNESS_JSON, FAIRNESS_HTML = "fairness.json", "fairness.html"
DRIFT_JSON, DRIFT_HTML = "data_drift.json", "data_drift.html"
PERFORMANCE_JSON, PERFORMANCE_HTML = "performance.json", "performance.html"
MODEL_CARD = "model_card.md"
REPO_DIR = Path(platform_assets.__file__).resolve().parents[1]


# -- shared loading -------------------------------------------------------------------------------------
def read_report(lake: LakeStorage, record: ModelVersion, filename: str, producer: str) -> dict[str, Any]:
    """A report of this model version, with a clear error when its producing asset has not run for it."""
    try:
        report = model_store.read_json(lake, model_store.version_key(record.version, filename))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no {filename} for {MODEL_NAME} {record.version}: materialize {producer} for {record.version} first"
        ) from None
    if report.get("model_version") != record.version:
        raise ValueError(
            f"{filename} of {MODEL_NAME} {record.version} belongs to {report.get('model_version')}: "
            f"rematerialize {producer}"
        )
    return report


def _log_to_mlflow(model_registry: ModelRegistry, run_id: str, files: dict[str, bytes]) -> None:
    client = model_registry.client()
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            client.log_artifact(run_id, str(path), artifact_path="governance")


# -- fairness -------------------------------------------------------------------------------------------
class FairnessConfig(dg.Config):
    age_band_edges: list[int] = Field(
        default=list(fairness_metrics.DEFAULT_AGE_EDGES),
        description="Lower edges of the age bands after the first: [25, 35, 45, 60] gives <25, 25-34, ..., 60+.",
    )
    min_group_size: int = Field(
        default=fairness_metrics.DEFAULT_MIN_GROUP_SIZE,
        description="Groups with fewer test rows are reported as too small.",
    )


@dg.asset(
    deps=[default_risk_model],
    partitions_def=model_versions,
    group_name=GROUP,
    kinds={"fairlearn", "mlflow"},
    retry_policy=io_retry_policy(),
    description=(
        "Fairlearn MetricFrame on the CNN's test-split decisions per sex, age band, marriage and education: "
        "selection rate, TPR, FPR, precision, AUC, count, and the demographic parity / disparate impact / "
        "equalized odds / equal opportunity gaps. JSON + HTML in the lake, logged to the model's MLflow run."
    ),
)
def fairness_report(
    context: dg.AssetExecutionContext, config: FairnessConfig, lake: LakeStorage, model_registry: ModelRegistry
) -> dg.MaterializeResult[Any]:
    with fail_fast():
        loaded = model_store.load_version(lake, context.partition_key)
    info, test = loaded.record, loaded.splits["test"]
    scores = predict_cnn(loaded.model, test.keras_inputs())
    groups = fairness_metrics.protected_groups(test.frame, config.age_band_edges)
    report = fairness_metrics.fairness_report(test.labels, scores, info.threshold, groups, config.min_group_size)
    report.update(
        model_version=info.version,
        age_band_edges=list(config.age_band_edges),
        computed_at=datetime.now(UTC).isoformat(),
    )
    png = fairness_rendering.bar_chart_png(report)
    html = fairness_rendering.report_html(report, png, f"Fairness of {MODEL_NAME} {info.version} (test split)")
    json_key, html_key = (
        model_store.version_key(info.version, FAIRNESS_JSON),
        model_store.version_key(info.version, FAIRNESS_HTML),
    )
    model_store.write_json(lake, json_key, report)
    lake.write_text(html_key, html)

    model_registry.client().log_dict(info.mlflow_run_id, report, f"governance/{FAIRNESS_JSON}")
    _log_to_mlflow(model_registry, info.mlflow_run_id, {FAIRNESS_HTML: html.encode("utf-8")})
    flat = fairness_metrics.flat_metrics(report)
    if flat:
        model_registry.log_metrics(info.mlflow_run_id, flat)

    summary = fairness_rendering.summary_table(report)
    context.log.info(f"fairness of {info.version} on {len(test)} test rows:\n{summary}")
    too_small = {name: a["summary"]["groups_too_small"] for name, a in report["attributes"].items()}
    return dg.MaterializeResult(
        metadata={
            "model_version": info.version,
            "test_rows": len(test),
            "threshold": float(info.threshold),
            "min_group_size": config.min_group_size,
            **{key.removeprefix("fairness_"): value for key, value in flat.items()},
            "groups_too_small": dg.MetadataValue.json(too_small),
            "summary": dg.MetadataValue.md(summary),
            "groups": dg.MetadataValue.md(fairness_rendering.groups_table(report)),
            "chart": dg.MetadataValue.md(evaluate.png_markdown(png, "per-group rates")),
            "report_json": dg.MetadataValue.path(lake.uri(json_key)),
            "report_html": dg.MetadataValue.path(lake.uri(html_key)),
        }
    )


# -- drift and performance ------------------------------------------------------------------------------
class DriftConfig(dg.Config):
    window_partitions: int = Field(default=1, description="Newest N credit_history_tensors partitions to compare.")
    method: str | None = Field(
        default=None, description="Evidently drift test for every column (e.g. 'ks', 'psi'); None picks per column."
    )
    threshold: float | None = Field(default=None, description="Drift threshold of that test; None uses its default.")
    drift_share: float = Field(default=0.5, description="Share of drifted features that counts as dataset drift.")
    reference_rows: int = Field(
        default=model_store.REFERENCE_ROWS,
        gt=0,
        description="Most rows of the model's training split in the reference: a seeded sample of a larger split.",
    )


def scored_frame(model: Any, batch: features.FeatureBatch, static_names: list[str]) -> pd.DataFrame:
    """The model's inputs as named columns (see ``drift.feature_frame``), and its score."""
    frame = drift.feature_frame(batch, static_names)
    frame[drift.SCORE] = predict_cnn(model, {"history": batch.tensor, "static": batch.static})
    return frame


@dg.asset(
    # The report of a version reads the newest tensor partitions (the drift window), whichever they are.
    deps=[default_risk_model, dg.AssetDep(credit_history_tensors, partition_mapping=dg.AllPartitionMapping())],
    partitions_def=model_versions,
    group_name=GROUP,
    kinds={"evidently"},
    retry_policy=io_retry_policy(),
    description=(
        "Evidently data drift of each model input (one column per month x channel cell and per static feature) "
        "and of the model score: the model's training split (reference) against the newest credit_history_tensors "
        "partition(s). HTML report in the lake; drift share, drifted features and per-column scores as metadata."
    ),
)
def data_drift_report(
    context: dg.AssetExecutionContext, config: DriftConfig, lake: LakeStorage
) -> dg.MaterializeResult[Any]:
    if config.window_partitions < 1:
        raise ValueError(f"window_partitions must be at least 1, got {config.window_partitions}")
    with fail_fast():
        loaded = model_store.load_version(lake, context.partition_key, splits=())
        info = loaded.record
        training_rows = model_store.reference_sample(lake, info, config.reference_rows)
    window = TrainingData(window_days=config.window_partitions)
    partitions = window.available_partitions(lake)
    current_rows, current_versions = window.load(lake)
    if current_rows.empty:
        raise drift.EmptyDriftWindowError(
            f"the drift window {partitions[0]}..{partitions[-1]} has no valid rows (all quarantined?): "
            "materialize newer credit_history_tensors partitions or widen window_partitions"
        )
    static_names = list(info.feature_spec.static)
    reference = scored_frame(loaded.model, training_rows.features, static_names)
    current = scored_frame(loaded.model, features.batch_from_rows(current_rows), static_names)
    columns = [c for c in reference.columns if c != drift.SCORE]
    result = drift.drift_report(
        reference, current, columns, method=config.method, threshold=config.threshold, drift_share=config.drift_share
    )
    overlap = sorted(set(partitions) & set(info.data_versions))
    report = {
        **result.summary,
        "model_version": info.version,
        "reference": f"train split of the model ({len(reference)} rows, at most {config.reference_rows})",
        "window": {"partitions": partitions, "data_versions": current_versions, "in_training_data": overlap},
        "computed_at": datetime.now(UTC).isoformat(),
    }
    json_key, html_key = (
        model_store.version_key(info.version, DRIFT_JSON),
        model_store.version_key(info.version, DRIFT_HTML),
    )
    model_store.write_json(lake, json_key, report)
    lake.write_text(html_key, result.html)
    if overlap:
        context.log.warning(f"the drift window overlaps the training data ({overlap}): drift is understated")
    table = drift.drift_table(result.summary)
    context.log.info(f"drift of {partitions} against the training split of {info.version}:\n{table}")
    score = result.summary["score"]
    return dg.MaterializeResult(
        metadata={
            "model_version": info.version,
            "drift_share": result.summary["drift_share"],
            "drifted_features": result.summary["drifted_features"],
            "dataset_drift": result.summary["dataset_drift"],
            "drift_share_threshold": config.drift_share,
            "score_drift": score["score"],
            "score_drifted": score["drifted"],
            "reference_rows": len(reference),
            "current_rows": len(current),
            "window_partitions": dg.MetadataValue.json(partitions),
            "window_overlaps_training": bool(overlap),
            "drifted_feature_names": dg.MetadataValue.json(result.summary["drifted_feature_names"]),
            **{f"drift_score/{column}": r["score"] for column, r in result.summary["features"].items()},
            "columns": dg.MetadataValue.md(table),
            "report_html": dg.MetadataValue.path(lake.uri(html_key)),
            "report_json": dg.MetadataValue.path(lake.uri(json_key)),
        }
    )


@dg.asset(
    deps=[default_risk_model],
    partitions_def=model_versions,
    group_name=GROUP,
    kinds={"evidently"},
    retry_policy=io_retry_policy(),
    description=(
        "Evidently ClassificationPreset on the CNN's test split at the model threshold (accuracy, precision, "
        "recall, F1, ROC AUC, log loss, TPR/TNR/FPR/FNR, confusion matrix and curves); HTML report in the lake."
    ),
)
def model_performance_report(context: dg.AssetExecutionContext, lake: LakeStorage) -> dg.MaterializeResult[Any]:
    with fail_fast():
        loaded = model_store.load_version(lake, context.partition_key)
    info, test = loaded.record, loaded.splits["test"]
    scores = predict_cnn(loaded.model, test.keras_inputs())
    result = drift.performance_report(test.labels, scores, info.threshold)
    report = {**result.summary, "model_version": info.version, "computed_at": datetime.now(UTC).isoformat()}
    json_key, html_key = (
        model_store.version_key(info.version, PERFORMANCE_JSON),
        model_store.version_key(info.version, PERFORMANCE_HTML),
    )
    model_store.write_json(lake, json_key, report)
    lake.write_text(html_key, result.html)
    metrics = result.summary["metrics"]
    context.log.info(f"test metrics of {info.version}: {json.dumps(metrics, sort_keys=True)}")
    return dg.MaterializeResult(
        metadata={
            "model_version": info.version,
            "test_rows": len(test),
            "threshold": float(info.threshold),
            **{f"test_{name}": value for name, value in metrics.items()},
            "report_html": dg.MetadataValue.path(lake.uri(html_key)),
            "report_json": dg.MetadataValue.path(lake.uri(json_key)),
        }
    )


# -- manifest and card ----------------------------------------------------------------------------------
def lineage_markdown(manifest: dict[str, Any], signature_status: str) -> str:
    """The auditor's chain: model version -> manifest -> runs -> data partitions."""
    lineage, data = manifest["lineage"], manifest["data"]
    lines = [
        f"- **model**: {manifest['model']} {manifest['version']} (registry version {manifest['registered_version']})",
        f"- **manifest**: {signature_status}",
        f"- **Dagster run** (training): `{lineage['training_dagster_run_id']}`",
        f"- **MLflow run**: `{lineage['mlflow_run_id']}`",
        "- **data partitions**:",
        *[f"  - {p}: `{data['data_versions'][p]}`" for p in data["partitions"]],
    ]
    return "\n".join(lines)


@dg.asset(
    deps=[default_risk_model, model_evaluation, fairness_report],
    partitions_def=model_versions,
    group_name=GROUP,
    kinds={"json"},
    retry_policy=io_retry_policy(),
    description=(
        "Ed25519-signed manifest of the model version: sha256 of every artifact, training date, feature spec, "
        "target, data partitions and versions, git commit, library versions, test metrics, fairness summary, "
        "MLflow and Dagster run ids. manifest.json + manifest.sig beside the model in the lake."
    ),
)
def model_manifest(
    context: dg.AssetExecutionContext, lake: LakeStorage, model_signer: ModelSigner, model_registry: ModelRegistry
) -> dg.MaterializeResult[Any]:
    info = version_record(context, lake)
    version = info.version
    with fail_fast():
        evaluation = read_report(lake, info, EVALUATION_FILE, "model_evaluation")
        fairness_doc = read_report(lake, info, FAIRNESS_JSON, "fairness_report")
    documents = {
        name: content_hash(lake.read_bytes(model_store.version_key(version, name)))
        for name in (RECORD_FILE, EVALUATION_FILE, FAIRNESS_JSON)
    }
    key = model_signer.signing_key(context.log)
    code = manifests.code_version(REPO_DIR)
    if not code["available"]:
        context.log.warning(f"no git checkout at {REPO_DIR}: code version recorded as 'unknown'")
    document = manifests.build_manifest(
        record=info,
        evaluation=evaluation,
        fairness_summary=manifests.fairness_summary(fairness_doc),
        documents=documents,
        code=code,
        libraries=manifests.library_versions(),
        key_id=signing.key_id(key),
        created_at=datetime.now(UTC).isoformat(),
        dagster_run_id=context.run.run_id,
    )
    body = manifests.canonical_json(document)
    signature = signing.sign(key, body)
    manifest_key = model_store.version_key(version, manifests.MANIFEST_FILE)
    lake.write_bytes(manifest_key, body)
    lake.write_bytes(model_store.version_key(version, manifests.SIGNATURE_FILE), signature)
    # The service downloads both from the model version's run (governance/) and verifies them before it
    # serves the version; the tag changes the version's tags, so a service that refused the version while
    # it had no manifest yet retries it.
    _log_to_mlflow(
        model_registry, info.mlflow_run_id, {manifests.MANIFEST_FILE: body, manifests.SIGNATURE_FILE: signature}
    )
    model_registry.client().set_model_version_tag(
        MODEL_NAME, info.registered_version, MANIFEST_SHA_TAG, content_hash(body)
    )
    status = f"signed with {signing.key_id(key)} ({model_signer.key_source()})"
    return dg.MaterializeResult(
        data_version=dg.DataVersion(content_hash(body)),
        metadata={
            "model_version": version,
            "model_sha256": info.model_sha256,
            "signature": status,
            "key_id": signing.key_id(key),
            "code_version": code["git_commit"],
            "code_version_known": code["available"],
            "mlflow_run_id": info.mlflow_run_id,
            "training_dagster_run_id": info.dagster_run_id,
            "partitions": dg.MetadataValue.json(info.data_versions),
            "artifacts": dg.MetadataValue.json(document["artifacts"]),
            "fairness_summary": dg.MetadataValue.md(fairness_rendering.summary_table(fairness_doc)),
            "lineage": dg.MetadataValue.md(lineage_markdown(document, status)),
            "manifest": dg.MetadataValue.path(lake.uri(manifest_key)),
        },
    )


def signature_status(lake: LakeStorage, info: ModelVersion, model_signer: ModelSigner) -> tuple[bool, str]:
    """(verified, human-readable status) of the version's manifest against the configured public key."""
    try:
        body = lake.read_bytes(model_store.version_key(info.version, manifests.MANIFEST_FILE))
        sig_key = model_store.version_key(info.version, manifests.SIGNATURE_FILE)
        signature = lake.read_bytes(sig_key) if lake.exists(sig_key) else None
        public_key = model_signer.verify_key()
        document = manifests.verify_manifest(body, signature, public_key, model_store.artifact_bytes(lake, info))
    except (FileNotFoundError, manifests.ManifestVerificationError, signing.SigningKeyError) as error:
        return False, f"NOT VERIFIED: {error}"
    return True, f"verified (Ed25519, key {document['signing']['key_id']}, {len(document['artifacts'])} artifact(s))"


@dg.asset(
    deps=[model_manifest, model_evaluation, fairness_report],
    partitions_def=model_versions,
    group_name=GROUP,
    kinds={"markdown"},
    retry_policy=io_retry_policy(),
    description=(
        "Markdown model card per version: intended use, data, test metrics vs baselines, fairness table, "
        "limitations and the manifest's signature status; shown here and stored beside the model in the lake."
    ),
)
def model_card(
    context: dg.AssetExecutionContext, lake: LakeStorage, model_signer: ModelSigner
) -> dg.MaterializeResult[Any]:
    info = version_record(context, lake)
    with fail_fast():
        evaluation = read_report(lake, info, EVALUATION_FILE, "model_evaluation")
        fairness_doc = read_report(lake, info, FAIRNESS_JSON, "fairness_report")
    verified, status = signature_status(lake, info, model_signer)
    manifest_key = model_store.version_key(info.version, manifests.MANIFEST_FILE)
    document = json.loads(lake.read_text(manifest_key)) if lake.exists(manifest_key) else None
    card = render_model_card(info, evaluation, fairness_doc, document, status)
    card_key = model_store.version_key(info.version, MODEL_CARD)
    lake.write_text(card_key, card)
    if not verified:
        context.log.warning(f"model card of {info.version}: {status}")
    return dg.MaterializeResult(
        metadata={
            "model_version": info.version,
            "signature_verified": verified,
            "signature_status": status,
            "card": dg.MetadataValue.md(card),
            "path": dg.MetadataValue.path(lake.uri(card_key)),
        }
    )
