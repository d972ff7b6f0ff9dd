"""The production profile's stores themselves: MLflow keeps its metadata in PostgreSQL and its artifacts in
S3 (through the server), and a stopped server comes back on the same address."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from prod_support import ARTIFACT_BUCKET, ProdStores


def test_mlflow_server_keeps_runs_in_postgresql_and_artifacts_in_s3(
    stores: ProdStores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=stores.mlflow.url)
    run = client.create_run(client.create_experiment("prod-stores-smoke"))
    artifact = tmp_path / "note.txt"
    artifact.write_text("kept in S3", encoding="utf-8")
    client.log_artifact(run.info.run_id, str(artifact))

    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    keys = [o["Key"] for o in stores.s3.client().list_objects_v2(Bucket=ARTIFACT_BUCKET).get("Contents", [])]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/note.txt") for key in keys), keys
    (row,) = stores.postgres.sql(f"SELECT status FROM runs WHERE run_uuid = '{run.info.run_id}'", db="mlflow")
    assert row == ("RUNNING",)
    assert sorted(os.listdir(tmp_path)) == ["note.txt"]  # no mlruns/ or mlflow.db beside the client


def test_a_stopped_mlflow_server_comes_back_on_its_address(stores: ProdStores) -> None:
    stores.mlflow.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stores.mlflow.url}/health", timeout=2)
    stores.mlflow.start()
    assert httpx.get(f"{stores.mlflow.url}/health", timeout=2).status_code == 200
