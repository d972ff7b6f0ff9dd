"""The closed loop's pure compute, in one plain process: no Dagster, no MLflow, no BentoML (checked at the end).

    python benchmarks/loop/pure.py SPEC.json      # written by run_benchmark.py; prints one JSON document

The same steps as the orchestrated loop, on the same data, with the same configuration, each timed:

* detection: the champion's labelled predictions read from the inference log over the sensor's window, and
  the live-quality drop test on them (``ml.live_quality``);
* trained: the CNN trained on the retrained version's partitions and split with its training config
  (``ml.train``; deterministic per seed, so the same weights), its reason codes, the ONNX export and its check
  against Keras (``ml.onnx_export``);
* released: the baselines and the test-set evaluation of all three (``ml.evaluate``), the fairness report
  (``ml.fairness_metrics``), the drift report of the newest partition against the training split and the
  performance report (``ml.drift``, Evidently), the manifest built and signed (``core.manifest``,
  ``core.signing``) and the ONNX model opened in ONNX Runtime as the service opens it (``core.onnx_runtime``);
* challenger serving (the shadow gate): the newest tensor days scored by both versions in ONNX Runtime (what
  ``portfolio_scores`` does on Spark, without writing the scores), the shadow pairs read from the inference log
  (``core.inference_log.reader``), and the paired evidence and gate verdict of both (``ml.promotion_evidence``:
  swap set, PSI, paired DeLong, disparate impact);
* decision: both versions' live quality over the canary's rows and the canary rule (``ml.canary``), then the
  final gate's evidence on the same pairs (stage ``canary_to_champion``).

What has no pure counterpart is left out and said so by run_benchmark.py: the Bento build, the service
loading the version, the model card and the HTML renderings. Imports are timed apart.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

Timings = dict[str, dict[str, float]]


def timed(timings: Timings, stage: str, part: str, work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = work()
    timings.setdefault(stage, {})[part] = round(time.perf_counter() - started, 3)
    return result


def read_rows(db: str, start: datetime, end: datetime, versions: list[str], labelled_only: bool) -> Any:
    from platform_assets.core.inference_log.reader import read_predictions

    return read_predictions(db, start=start, end=end, model_versions=versions, labelled_only=labelled_only)


def detection(spec: dict[str, Any], policies: dict[str, Any], timings: Timings) -> list[str]:
    from platform_assets.ml import live_quality

    at = datetime.fromisoformat(spec["detected_at"])
    start = at - timedelta(hours=spec["window_hours"])
    frame = timed(
        timings,
        "detection",
        "read the inference log",
        lambda: read_rows(spec["inference_db"], start, at, [spec["champion"]], True),
    )
    live = timed(timings, "detection", "live quality", lambda: live_quality.frame_quality(frame))
    return timed(
        timings,
        "detection",
        "drop test",
        lambda: live_quality.quality_breach(live, spec["champion_validation"], policies["drop_policy"]),
    )


def open_data(spec: dict[str, Any], record: Any) -> Any:
    from platform_assets.core import lake_keys
    from platform_assets.dataplane import partitions
    from platform_assets.dataplane.objects import LocalObjects
    from platform_assets.ml.dataset import ModellingDataset

    store = LocalObjects(root=spec["lake_root"])
    manifests = {}
    for partition, digest in sorted(record.data_versions.items()):
        folder = lake_keys.tensors(partition)
        manifests[folder] = partitions.read_manifest(store, folder)
        if manifests[folder].digest != digest:
            raise ValueError(f"tensor partition {partition} changed since {record.version} was trained")
    split = record.split
    source = partitions.PartsSource.of(store, manifests)
    return ModellingDataset.planned(source, split.validation, split.test, split.seed, split.max_holdout_rows)


def training(spec: dict[str, Any], policies: dict[str, Any], record: Any, timings: Timings) -> dict[str, Any]:
    from platform_assets.ml import evaluate, onnx_export, reason_codes
    from platform_assets.ml.train import fit_reason_codes, predict_cnn, train_cnn

    config = policies["train_config"]
    data = timed(timings, "trained", "open the partitions", lambda: open_data(spec, record))
    validation = timed(timings, "trained", "read the validation split", lambda: data.materialize("validation"))
    trained = timed(timings, "trained", "train the CNN", lambda: train_cnn(data, config, validation=validation))
    metrics = evaluate.classification_metrics(
        validation.labels, predict_cnn(trained.model, validation.keras_inputs()), trained.threshold
    )

    def reasons() -> Any:
        sample = data.sample("train", reason_codes.REFERENCE_SAMPLE_ROWS, config.seed)
        return fit_reason_codes(
            trained.model,
            sample.frame,
            sample.keras_inputs(),
            trained.threshold,
            include_protected=record.feature_spec.include_protected,
        )

    timed(timings, "trained", "reason codes", reasons)
    onnx_bytes = timed(timings, "trained", "ONNX export", lambda: onnx_export.export_onnx(trained.model))
    timed(
        timings,
        "trained",
        "ONNX check",
        lambda: onnx_export.check_onnx(onnx_bytes, trained.model, validation.keras_inputs()),
    )
    return {"data": data, "validation": validation, "trained": trained, "onnx": onnx_bytes, "val": metrics}


def release(spec: dict[str, Any], record: Any, model: dict[str, Any], timings: Timings) -> None:
    from platform_assets.core import manifest, onnx_runtime, signing
    from platform_assets.ml import drift, evaluate, fairness_metrics
    from platform_assets.ml.train import predict_cnn, train_baselines

    data, validation, trained = model["data"], model["validation"], model["trained"]
    seed = spec["baseline_seed"]
    train = timed(timings, "released", "baselines' sample", lambda: data.sample("train", spec["baseline_rows"], seed))
    baselines = timed(
        timings, "released", "baselines", lambda: train_baselines(train, validation, seed, record.threshold_policy)
    )
    test = timed(timings, "released", "read the test split", lambda: data.materialize("test"))

    def evaluation() -> dict[str, Any]:
        scores = {"cnn": (predict_cnn(trained.model, test.keras_inputs()), trained.threshold)}
        for name, baseline in baselines.items():
            scores[name] = (baseline.predict_default(test.flat()), baseline.threshold)
        metrics = {n: evaluate.classification_metrics(test.labels, p, t) for n, (p, t) in scores.items()}
        best = max((n for n in metrics if n != "cnn"), key=lambda n: metrics[n]["roc_auc"])
        return {"model_version": record.version, "metrics": metrics, "best_baseline": best}

    report = timed(timings, "released", "evaluation", evaluation)

    def fairness() -> dict[str, Any]:
        groups = fairness_metrics.protected_groups(test.frame)
        scores = predict_cnn(trained.model, test.keras_inputs())
        return fairness_metrics.fairness_report(test.labels, scores, trained.threshold, groups)

    fairness_doc = timed(timings, "released", "fairness", fairness)
    timed(timings, "released", "drift report", lambda: drift_report(spec, record, trained.model, data))
    timed(
        timings,
        "released",
        "performance report",
        lambda: drift.performance_report(
            test.labels, predict_cnn(trained.model, test.keras_inputs()), trained.threshold
        ),
    )

    def sign() -> bytes:
        key = signing.generate_private_key()
        document = manifest.build_manifest(
            record=record,
            evaluation=report,
            fairness_summary=manifest.fairness_summary(fairness_doc),
            documents={},
            code=manifest.code_version(spec["repo"]),
            libraries=manifest.library_versions(),
            key_id=signing.key_id(key),
            created_at=datetime.now(UTC).isoformat(),
            dagster_run_id="",
        )
        return signing.sign(key, manifest.canonical_json(document))

    timed(timings, "released", "manifest signed", sign)
    onnx_bytes = model["onnx"]
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    timed(timings, "released", "ONNX Runtime load", lambda: onnx_runtime.load_model(onnx_bytes, sha256=sha))


def drift_report(spec: dict[str, Any], record: Any, model: Any, data: Any) -> Any:
    """``data_drift_report``'s compute: the model's inputs and score on a seeded sample of its training split
    against the newest tensor partition(s), Evidently's per-column tests."""
    import pandas as pd

    from platform_assets.core import lake_keys
    from platform_assets.dataplane import partitions
    from platform_assets.dataplane.objects import LocalObjects
    from platform_assets.ml import drift, features
    from platform_assets.ml.train import predict_cnn

    config, static = spec["drift_config"], list(record.feature_spec.static)

    def scored(batch: Any) -> Any:
        frame = drift.feature_frame(batch, static)
        frame[drift.SCORE] = predict_cnn(model, {"history": batch.tensor, "static": batch.static})
        return frame

    reference = scored(data.sample("train", config["reference_rows"], seed=record.split.seed).features)
    store = LocalObjects(root=spec["lake_root"])
    rows = pd.concat([partitions.read_partition(store, lake_keys.tensors(p)) for p in spec["drift_window"]])
    rows = rows[rows[features.REASON].isna()]
    current = scored(features.batch_from_rows(rows))
    columns = [c for c in reference.columns if c != drift.SCORE]
    return drift.drift_report(
        reference,
        current,
        columns,
        method=config["method"],
        threshold=config["threshold"],
        drift_share=config["drift_share"],
    )


def portfolio_pairs(spec: dict[str, Any], records: dict[str, Any]) -> Any:
    """Champion and candidate scores of every valid client of the newest tensor days, with outcome and protected
    columns (``paired_scores``' frame), scored here in ONNX Runtime."""
    import pandas as pd

    from platform_assets.core import decisions, lake_keys, onnx_runtime
    from platform_assets.core.model_version import ONNX_FILE
    from platform_assets.dataplane import partitions
    from platform_assets.dataplane.objects import LocalObjects
    from platform_assets.ml import features, schema

    store = LocalObjects(root=spec["lake_root"])
    models = {
        role: onnx_runtime.load_model(
            store.read_bytes(f"{lake_keys.model_dir(r.model, r.version)}/{ONNX_FILE}"), sha256=r.onnx_sha256
        )
        for role, r in records.items()
    }
    frames = []
    for day in spec["portfolio_days"]:
        rows = partitions.read_partition(store, lake_keys.tensors(day))
        rows = rows[rows[features.REASON].isna()].reset_index(drop=True)
        batch = features.batch_from_rows(rows)
        frame = rows[[schema.ID, schema.TARGET, *schema.PROTECTED_COLUMNS]].rename(
            columns={schema.ID: "application_id", schema.TARGET: "defaulted"}
            | {c: c.lower() for c in schema.PROTECTED_COLUMNS}
        )
        for role, model in models.items():
            probabilities = model.predict(batch.tensor, batch.static)
            frame[f"{role}_probability"] = probabilities
            frame[f"{role}_decision"] = decisions.labels(decisions.declines(probabilities, records[role].threshold))
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    frame["defaulted"] = frame["defaulted"].astype("Int64")
    return frame


def shadow_pairs(spec: dict[str, Any]) -> Any:
    """The shadow phase's pairs from the inference log, in the evidence's columns."""
    from platform_assets.core.inference_log.reader import read_shadow_pairs
    from platform_assets.ml.promotion_evidence import from_shadow_pairs

    pairs = read_shadow_pairs(spec["inference_db"], spec["candidate"])
    return from_shadow_pairs(pairs[pairs["served_model_version"] == spec["champion"]])


def shadow_gate(spec: dict[str, Any], policies: dict[str, Any], records: dict[str, Any], timings: Timings) -> Any:
    """The shadow gate's compute, timed in the stage it ended (``gate_stage``: the challenger's start, or the
    decision when the gate retired the version); returns the frames the final gate judges again."""
    from platform_assets.ml import promotion_evidence

    policy = policies["promotion_policy"]
    stage = spec["gate_stage"]
    portfolio = timed(timings, stage, "portfolio scored by both", lambda: portfolio_pairs(spec, records))
    live = timed(timings, stage, "read the shadow pairs", lambda: shadow_pairs(spec))
    for name, frame in (("live", live), ("portfolio", portfolio)):
        if frame.empty:  # no shadow phase (or no portfolio days): the gate had nothing of this kind either
            continue
        timed(
            timings,
            stage,
            f"{name} evidence and verdict",
            lambda f=frame: promotion_evidence.paired_evidence(f, "shadow_to_canary", policy),
        )
    return live, portfolio


def live_comparison(spec: dict[str, Any], stage: str, start: str | None, end: str | None, timings: Timings) -> Any:
    """Both versions' live quality over ``[start, end)`` (the rows a gate judges)."""
    from platform_assets.ml import live_quality

    if not start or not end:
        return None
    versions = [spec["champion"], spec["candidate"]]
    frame = timed(
        timings,
        stage,
        "read the inference log",
        lambda: read_rows(
            spec["inference_db"], datetime.fromisoformat(start), datetime.fromisoformat(end), versions, True
        ),
    )

    def quality() -> dict[str, Any]:
        return {v: live_quality.frame_quality(frame[frame["model_version"] == v]) for v in versions}

    return timed(timings, stage, "live quality of both", quality)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    timings: Timings = {}
    started = time.perf_counter()
    import keras  # noqa: F401
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401
    import pandas  # noqa: F401
    import sklearn  # noqa: F401
    import tensorflow  # noqa: F401

    from platform_assets.core.model_version import ModelVersion
    from platform_assets.ml import canary, promotion_evidence

    imports = round(time.perf_counter() - started, 3)
    policies = pickle.loads(Path(spec["policies"]).read_bytes())
    record = ModelVersion.from_json(Path(spec["candidate_record"]).read_text(), spec["candidate_record"])
    reasons = detection(spec, policies, timings)
    model = training(spec, policies, record, timings)
    release(spec, record, model, timings)
    champion_record = ModelVersion.from_json(Path(spec["champion_record"]).read_text(), spec["champion_record"])
    frames = shadow_gate(spec, policies, {"champion": champion_record, "candidate": record}, timings)
    quality = live_comparison(spec, "decision", spec.get("challenger_at"), spec.get("decided_at"), timings)
    if quality is not None:
        timed(
            timings,
            "decision",
            "canary rule",
            lambda: canary.canary_decision(
                spec["last_weight"], quality[spec["champion"]], quality[spec["candidate"]], policies["canary_policy"]
            ),
        )
    if quality is not None:
        for name, frame in zip(("live", "portfolio"), frames, strict=True):
            if frame.empty:
                continue
            timed(
                timings,
                "decision",
                f"final {name} evidence and verdict",
                lambda f=frame: promotion_evidence.paired_evidence(
                    f, "canary_to_champion", policies["promotion_policy"]
                ),
            )
    loaded = sorted(m for m in ("dagster", "mlflow", "bentoml") if m in sys.modules)
    print(
        json.dumps(
            {
                "imports_seconds": imports,
                "timings": timings,
                "drop_reasons": reasons,
                "validation_roc_auc": model["val"]["roc_auc"],
                "orchestrated_validation_roc_auc": record.validation_metrics.get("roc_auc"),
                "loaded_frameworks": loaded,
            }
        )
    )
    return 0 if not loaded else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
