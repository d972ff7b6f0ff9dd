"""One measured process of ``run_benchmark.py``: the Dagster run process, i.e. the Spark driver.

    worker.py ingest ROWS PARTITION [ONNX]   one day of ROWS synthetic rows: raw, its check, tensors; with
                                             ONNX (a model.onnx file) also the day rescored by it on Spark
    worker.py model ONNX                     the production CNN architecture exported to ONNX, written to ONNX
    worker.py uci                            the cold full graph over the 30 UCI days (PLATFORM_UCI_CSV)
    worker.py profile ROWS [ONNX]            one task's stages on one chunk of ROWS rows, in CPU seconds, no Spark

Prints ``phase NAME WALL_TIME`` lines as it goes (the parent tags its memory samples with them) and one JSON
summary line last. ``PLATFORM_HOME`` (a fresh folder) and ``SPARK_MASTER`` come from the parent.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

STARTED = time.time()
#: The rescoring's decision threshold: the exported model is untrained (what scoring costs does not depend on
#: the weights), so its decisions mean nothing; the threshold only has to be a valid one.
RESCORING_THRESHOLD = 0.5


def phase(name: str) -> None:
    print(f"phase {name} {time.time():.3f}", flush=True)


def steps(instance: Any, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step of the run: (start, end) wall times, seconds since the epoch."""
    import dagster as dg

    spans: dict[str, list[float]] = {}
    for record in instance.get_records_for_run(run_id).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS):
            spans.setdefault(event.step_key, []).append(entry.timestamp)
    return {key: (min(times), max(times)) for key, times in spans.items()}


def export_model(out: str) -> dict[str, Any]:
    """The production CNN architecture (``ml.model.build_cnn``, default config, untrained) exported to ONNX by
    Keras, as training exports a version's ``model.onnx``."""
    import numpy as np

    from platform_assets.ml import features, schema
    from platform_assets.ml.model import CNNConfig, build_cnn
    from platform_assets.ml.onnx_export import export_onnx

    months, channels, n_static = schema.N_MONTHS, len(features.CHANNELS), len(features.STATIC_FEATURES)
    model = build_cnn(months, channels, n_static, CNNConfig())
    # Keras exports only a model that has been called once (it traces the call).
    model({"history": np.zeros((1, months, channels), "float32"), "static": np.zeros((1, n_static), "float32")})
    Path(out).write_bytes(export_onnx(model))
    return {"onnx": out}


def scoring_model(lake: Any, onnx_file: str) -> Any:
    """``onnx_file`` stored in ``lake`` as version v1's ``model.onnx``, described as the rescoring reads it."""
    from platform_assets import model_store
    from platform_assets.core.model_version import ONNX_FILE
    from platform_assets.dataplane import scoring

    key = model_store.version_key("v1", ONNX_FILE)
    sha256 = lake.write_bytes(key, Path(onnx_file).read_bytes())
    return scoring.ScoringModel(version="v1", onnx_key=key, sha256=sha256, threshold=RESCORING_THRESHOLD)


def rescore(spark: Any, lake: Any, partition: str, onnx_file: str) -> tuple[float, float, int]:
    """``portfolio_scores``' work on the committed tensor partition, through the asset's own ``score_day``: every
    valid client scored by ONNX Runtime in the executors, the parts committed by a manifest. (start, end, rows)."""
    from platform_assets.defs.portfolio.assets import score_day

    model = scoring_model(lake, onnx_file)
    phase("rescoring")
    start = time.time()
    _, committed = score_day(spark, lake.executor_store(), partition, model)
    return start, time.time(), committed.rows


def ingest(rows: int, partition: str, onnx_file: str | None) -> dict[str, Any]:
    import dagster as dg
    from pyspark.sql import SparkSession

    from platform_assets import settings
    from platform_assets.definitions import bound_to
    from platform_assets.defs.resources import spark_config

    config = settings.PlatformSettings(rows_per_day=rows)
    definitions = bound_to(config)
    phase("spark_session")
    began = time.perf_counter()
    builder = SparkSession.builder
    for key, value in spark_config(config).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()  # the resource's getOrCreate finds this session: its start is measured here
    session_seconds = time.perf_counter() - began
    phase("job")
    with dg.DagsterInstance.ephemeral() as instance:
        result = definitions.resolve_job_def("daily_ingest_job").execute_in_process(
            partition_key=partition, instance=instance
        )
        spans = steps(instance, result.run_id)
    scored_rows = None
    if onnx_file is not None and result.success:
        start, end, scored_rows = rescore(spark, definitions.resources["lake"], partition, onnx_file)
        spans["portfolio_scores"] = (start, end)
    phase("done")
    spark.stop()
    return {
        "rows": rows,
        "scored_rows": scored_rows,
        "spark_master": config.spark_master,
        "session_seconds": session_seconds,
        "steps": spans,
        "driver_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "success": result.success,
    }


def uci() -> dict[str, Any]:
    import dagster as dg

    from platform_assets import settings
    from platform_assets.demo import run_pipeline

    start = date.fromisoformat(settings.PARTITIONS_START)
    partitions = [(start + timedelta(days=d)).isoformat() for d in range(settings.UCI_REPLAY_DAYS)]
    phase("graph")
    began = time.perf_counter()
    report = run_pipeline(partitions, deploy=False)
    graph_seconds = time.perf_counter() - began
    phase("done")
    with dg.DagsterInstance.get() as instance:
        runs = {}
        epochs: list[float] = []
        for record in instance.get_run_records():
            run = record.dagster_run
            runs.setdefault(run.job_name, []).append(record.end_time - record.start_time)
            if run.job_name == "training_job":
                epochs = [
                    r.event_log_entry.timestamp
                    for r in instance.get_records_for_run(run.run_id).records
                    if r.event_log_entry.user_message.startswith("epoch ")
                ]
    return {
        "partitions": len(partitions),
        "graph_seconds": graph_seconds,
        "since_process_start_seconds": time.time() - STARTED,
        "job_seconds": {job: sum(times) for job, times in runs.items()},
        "epochs": len(epochs),
        "seconds_per_epoch": (epochs[-1] - epochs[0]) / (len(epochs) - 1) if len(epochs) > 1 else None,
        "test_auc": report["metrics"]["cnn"]["roc_auc"] if "cnn" in report.get("metrics", {}) else None,
    }


def profile(rows: int, onnx_file: str | None) -> dict[str, Any]:
    """CPU seconds of each stage of a raw task and a tensor task on one chunk (and, with ``onnx_file``, a
    rescoring task on its tensors), run here without Spark: what a task costs a core, whatever else the machine
    runs (wall time on a shared machine is not)."""
    import tempfile

    import pyarrow as pa

    from platform_assets.core import lake_keys
    from platform_assets.dataplane import partitions, scoring, tensors
    from platform_assets.dataplane.objects import LocalObjects
    from platform_assets.ml import synthetic
    from platform_assets.resources.lake import LocalLake

    day = date(2026, 10, 5)
    stages: dict[str, float] = {}

    def timed(name: str, work: Any) -> Any:
        began = time.process_time()
        value = work()
        stages[name] = time.process_time() - began
        return value

    with tempfile.TemporaryDirectory() as root:
        store = LocalObjects(root=root)
        raw_folder = lake_keys.raw(day.isoformat())
        chunk = timed("generate", lambda: synthetic.generate_chunk(day, rows, 1, 0, chunk_rows=rows))
        part = timed("write raw part", lambda: partitions.write_part(store, raw_folder, "part-p-00000.parquet", chunk))
        table = timed("read raw part (sha256 + Parquet)", lambda: partitions.read_part(store, raw_folder, part))
        pieces = timed(
            "validate + featurize", lambda: list(tensors.featurize_table(table, "profile", include_protected=False))
        )
        out = pa.concat_tables([t for t, _ in pieces])
        tensor_part = timed(
            "write tensor part",
            lambda: partitions.write_part(store, lake_keys.tensors("p"), "part-p-00000.parquet", out),
        )
        if onnx_file is not None:
            model = scoring_model(LocalLake(root=root), onnx_file)
            scoring.score_part(store, lake_keys.tensors("p"), tensor_part, "scores", model, "warm", 0)  # loads it
            timed(
                "rescore tensor part (read + ONNX Runtime + write)",
                lambda: scoring.score_part(store, lake_keys.tensors("p"), tensor_part, "scores", model, "p", 1),
            )
    return {"rows": rows, "cpu_seconds": stages}


def main() -> int:
    mode = sys.argv[1]
    if mode == "ingest":
        summary = ingest(int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif mode == "model":
        summary = export_model(sys.argv[2])
    elif mode == "profile":
        summary = profile(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        summary = uci()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
