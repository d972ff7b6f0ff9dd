"""The audit chain on a hand-built lake: model version -> signed manifest -> runs -> partitions."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from record_support import model_version, publish_signed

from platform_assets import audit
from platform_assets.core import lake_keys, signing
from platform_assets.core.inference_log import schema as inference_log
from platform_assets.ml import drift, features, reason_codes, schema
from platform_assets.ml.onnx_export import export_onnx
from platform_assets.ml.train import predict_cnn
from platform_assets.resources.lake import LocalLake
from platform_assets.resources.signer import ModelSigner

MODEL = "default_risk_model"
MODEL_BYTES = b"PK\x03\x04 model bytes" * 50
ONNX_BYTES = b"\x08\x08 onnx bytes" * 50


@pytest.fixture
def signed_lake(tmp_path: Path) -> tuple[LocalLake, ModelSigner]:
    lake = LocalLake(root=str(tmp_path / "lake"))
    private, public = signing.write_key_pair(tmp_path / "keys")
    folder = lake_keys.model_dir(MODEL, "v3")
    info = model_version(
        "v3",
        model_sha256=lake.write_bytes(f"{folder}/model.keras", MODEL_BYTES),
        onnx_sha256=lake.write_bytes(f"{folder}/model.onnx", ONNX_BYTES),
        mlflow_run_id="mlflow-run-9",
        dagster_run_id="dagster-run-9",
    )
    publish_signed(lake, info, signing.load_private_key_file(private))
    return lake, ModelSigner(public_key_file=str(public), environment="prod")


def test_chain_of_a_model_version(signed_lake: tuple[LocalLake, ModelSigner]) -> None:
    lake, signer = signed_lake
    chain = audit.audit_model_version("v3", lake=lake, signer=signer)
    assert chain.verified
    text = audit.format_chain(chain)
    for expected in ("default_risk_model v3", "VERIFIED", "dagster-run-9", "mlflow-run-9", "2026-10-05  " + "a" * 64):
        assert expected in text
    assert audit.audit_model_version("3", lake=lake, signer=signer).model_version == "v3"


def test_unknown_version_and_missing_manifest_are_clear(signed_lake: tuple[LocalLake, ModelSigner]) -> None:
    lake, signer = signed_lake
    with pytest.raises(audit.AuditError, match="no default_risk_model v4"):
        audit.audit_model_version("v4", lake=lake, signer=signer)
    lake.delete(f"{lake_keys.model_dir(MODEL, 'v3')}/manifest.json")
    with pytest.raises(audit.AuditError, match="has no manifest"):
        audit.audit_model_version("v3", lake=lake, signer=signer)


def test_wrong_key_is_reported_not_verified(signed_lake: tuple[LocalLake, ModelSigner], tmp_path: Path) -> None:
    lake, _ = signed_lake
    _, other_public = signing.write_key_pair(tmp_path / "other")
    chain = audit.audit_model_version("v3", lake=lake, signer=ModelSigner(public_key_file=str(other_public)))
    assert not chain.verified and "was signed with key" in chain.signature_status
    assert chain.as_dict()["mlflow_run_id"] == "mlflow-run-9", "the unverified chain is still shown"


def test_chain_from_a_prediction_in_the_inference_log(
    signed_lake: tuple[LocalLake, ModelSigner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platform_assets.core.inference_log import migrate
    from platform_assets.core.inference_log import schema as inference_log

    lake, signer = signed_lake
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = inference_log.make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(inference_log.predictions).values(
                prediction_id="p-1",
                created_at=datetime(2026, 10, 7, 9, 0),
                model_version="v3",
                role="champion",
                application_id=42,
                probability=0.61,
                threshold=0.4,
                decision="decline",
            )
        )
    engine.dispose()
    monkeypatch.setenv("CREDIT_RISK_INFERENCE_DB", url)
    chain = audit.audit_prediction("p-1", lake=lake, signer=signer)
    assert chain.verified and chain.prediction is not None and chain.prediction["application_id"] == 42
    assert audit.format_chain(chain).startswith("prediction     p-1")
    with pytest.raises(audit.AuditError, match="no prediction 'p-2'"):
        audit.audit_prediction("p-2", lake=lake, signer=signer)


def test_drift_feature_columns_name_the_tensor_cells() -> None:
    rng = np.random.default_rng(0)
    batch = features.FeatureBatch(
        tensor=rng.random((3, 6, len(features.CHANNELS))).astype("float32"),
        static=rng.random((3, len(features.STATIC_FEATURES))).astype("float32"),
    )
    frame = drift.feature_frame(batch, features.STATIC_FEATURES)
    assert frame.shape == (3, 6 * len(features.CHANNELS) + len(features.STATIC_FEATURES))
    np.testing.assert_allclose(frame["delay_m6"], batch.tensor[:, 5, 0])
    np.testing.assert_allclose(frame["payment_to_limit_m1"], batch.tensor[:, 0, 7])
    np.testing.assert_allclose(frame["worst_delay"], batch.static[:, 2])


@pytest.mark.slow
def test_a_logged_declines_reasons_are_recomputed_offline_with_the_signed_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_support

    from platform_assets.core.inference_log import migrate

    raw = model_support.synthetic_rows(days=2, rows_per_day=1000, seed=4)
    tiny = model_support.train_tiny(raw, seed=2, epochs=3, calibration_method="platt")
    lake = LocalLake(root=str(tmp_path / "lake"))
    tiny.model.save(tmp_path / "model.keras")
    model_file = f"{lake_keys.model_dir(MODEL, 'v5')}/model.keras"
    sha = lake.write_bytes(model_file, (tmp_path / "model.keras").read_bytes())
    # The manifest signs both artifacts of a version: the Keras model (which the audit recomputes with) and
    # the ONNX model the service ran.
    onnx_sha = lake.write_bytes(f"{lake_keys.model_dir(MODEL, 'v5')}/model.onnx", export_onnx(tiny.model))
    private, public = signing.write_key_pair(tmp_path / "keys")
    record = model_version(
        "v5", model_sha256=sha, onnx_sha256=onnx_sha, threshold=tiny.threshold, reason_codes=tiny.reason_codes
    )
    publish_signed(lake, record, signing.load_private_key_file(private))
    signer = ModelSigner(public_key_file=str(public), environment="prod")

    # What the service logs for a decline: its reasons and the raw fields they were computed from.
    rows = raw[list(reason_codes.LOG_COLUMNS)].to_numpy("float64")
    predict = reason_codes.model_predictor(
        lambda t, s: predict_cnn(tiny.model, {"history": t, "static": s}), reason_codes.LOG_COLUMNS, False
    )
    explanation = reason_codes.Explainer(tiny.reason_codes, reason_codes.LOG_COLUMNS).explain(rows[:200], predict)
    declined = int(np.flatnonzero(explanation.probability >= tiny.threshold)[0])
    applicant = raw.iloc[declined]
    served = explanation.reasons[declined]
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = inference_log.make_engine(url)
    migrate.upgrade(engine)
    base = {
        "created_at": datetime(2026, 10, 7, 9, 0),
        "model_version": "v5",
        "role": "champion",
        "application_id": int(applicant["ID"]),
        "probability": float(explanation.probability[declined]),
        "threshold": tiny.threshold,
        "decision": "decline",
        **{name: int(applicant[column]) for column, name in inference_log.PROTECTED_LOG_COLUMNS.items()},
        "inputs": json.dumps({f: int(applicant[f]) for f in schema.FEATURE_COLUMNS}),
    }
    altered = [dict(served[0], contribution=served[0]["contribution"] + 0.01), *served[1:]]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(inference_log.predictions),
            [
                {**base, "prediction_id": "as-served", "reasons": json.dumps(served)},
                {**base, "prediction_id": "altered", "reasons": json.dumps(altered)},
                {**base, "prediction_id": "approved", "decision": "approve", "reasons": None, "inputs": None},
            ],
        )
    engine.dispose()
    monkeypatch.setenv("CREDIT_RISK_INFERENCE_DB", url)

    chain = audit.audit_prediction("as-served", lake=lake, signer=signer, recompute_reasons=True)
    assert chain.verified and chain.reasons_recomputed == "identical"
    text = audit.format_chain(chain)
    first = served[0]
    assert f"  reason       {first['code']} {first['text']}" in text and "  recomputed   identical" in text
    different = audit.audit_prediction("altered", lake=lake, signer=signer, recompute_reasons=True)
    assert different.reasons_recomputed == f"DIFFERENT: {first['code']}: contribution " + (
        f"{altered[0]['contribution']} != {first['contribution']}"
    )
    with pytest.raises(audit.AuditError, match="was not explained"):
        audit.audit_prediction("approved", lake=lake, signer=signer, recompute_reasons=True)
