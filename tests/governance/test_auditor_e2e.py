"""Governance end to end on models the real pipeline trained and signed (``pipeline_support``):

* the service verifies each version's signed manifest when it loads it, and refuses a tampered or unsigned
  one while the previous model keeps answering;
* the audit CLI walks from a prediction served by the endpoint to the data partitions;
* an auditor's walk through the Dagster UI in headless Chromium, with screenshots in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator

import httpx
import pytest
from browser_support import ARTIFACTS, ui_page
from net_support import dagster_webserver, wait_for_status
from pipeline_support import REPO, SERVING_TESTS, PipelineHome, application_rows, build, pipeline_env

sys.path.insert(0, str(SERVING_TESTS))
from serving_support import Api, Server, local_path  # noqa: E402

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineHome]:
    home = tmp_path_factory.mktemp("governed_home")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("PLATFORM_", "MLFLOW_", "CREDIT_RISK_")):
                patch.delenv(name)
        for name, value in pipeline_env(home).items():
            patch.setenv(name, value)
        yield build(home)


@pytest.fixture(scope="module")
def service(pipeline: PipelineHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(pipeline.service_env(), tmp_path_factory.mktemp("service") / "server.log").start()
    yield server
    server.stop()


def test_service_serves_signed_versions_and_refuses_tampered_or_unsigned(
    pipeline: PipelineHome, service: Server
) -> None:
    import mlflow
    import model_support

    from platform_assets.core import registry
    from platform_assets.core.registry import MODEL_NAME

    api = Api(service.url, pipeline.api_keys)
    status = api.status()
    champion = status["models"]["champion"]
    assert status["champion"] == "v1" and champion["signature"].startswith("verified (Ed25519"), status
    assert status["verify_key"]["key_id"] in champion["signature"]

    # Flip one byte of v2's model.onnx in the MLflow artifact store, then make v2 the champion.
    client = mlflow.MlflowClient(tracking_uri=pipeline.tracking_uri)
    path = local_path(client.get_model_version_download_uri(MODEL_NAME, "2")) / registry.MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    registry.set_alias(registry.CHAMPION, "2", tracking_uri=pipeline.tracking_uri)
    status = wait_for_status(api, lambda s: "v2" in s["refused"], timeout=60.0, poll_interval=0.3)
    reason = status["refused"]["v2"]
    assert "manifest verification failed (ArtifactHashMismatchError)" in reason and "model.onnx" in reason
    assert status["champion"] == "v1"
    served = api.predict(application_rows(3))
    assert {p["model_version"] for p in served} == {"v1"}
    assert httpx.get(service.url + "/readyz", timeout=10).status_code == 200

    # A version without a signed manifest (registered outside the pipeline) is refused as unsigned.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_support.prepare_store(pipeline.tracking_uri, pipeline.home / "mlflow" / "artifacts")
        rows = model_support.synthetic_rows(days=1, rows_per_day=600, seed=5)
        tiny = model_support.train_tiny(rows, seed=3, epochs=1)
        unsigned = model_support.register_tiny(tiny, model_support.keras_inputs(rows.iloc[:10]))
    registry.set_alias(registry.CHALLENGER, unsigned.version, tracking_uri=pipeline.tracking_uri)
    status = wait_for_status(api, lambda s: unsigned.label in s["refused"], timeout=60.0, poll_interval=0.3)
    assert "unsigned" in status["refused"][unsigned.label] and status["challenger"] is None
    log = service.log_path.read_text(errors="replace")
    assert re.search(r"REFUSED for champion: default_risk_model v2: manifest verification failed", log), log[-3000:]
    assert f"REFUSED for challenger: default_risk_model {unsigned.label}: unsigned" in log


def test_audit_cli_prints_the_chain_of_a_served_prediction(pipeline: PipelineHome, service: Server) -> None:
    api = Api(service.url, pipeline.api_keys)
    [prediction] = api.predict(application_rows(1, seed=123))
    # /feedback answers once queued predictions are committed: the prediction is in the inference log now.
    stored = api.post(
        "/feedback", {"outcomes": [{"prediction_id": prediction["prediction_id"], "defaulted": 0}]}, role="feedback"
    )
    assert stored.status_code == 200 and stored.json()["known"] == 1
    version = prediction["model_version"]
    info = pipeline.versions[version]
    audit = subprocess.run(
        [sys.executable, "-m", "platform_assets.audit", "--prediction-id", prediction["prediction_id"]],
        env=pipeline.service_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr + audit.stdout
    out = audit.stdout
    chain = [
        f"prediction     {prediction['prediction_id']}",
        f"model          default_risk_model {version}",
        "  signature    VERIFIED (Ed25519",
        f"dagster run    {pipeline.training_run_ids[version]}",
        f"mlflow run     {info.mlflow_run_id}",
        "data partitions",
        *[f"  {partition}  {digest}" for partition, digest in sorted(info.data_versions.items())],
    ]
    positions = [out.find(line) for line in chain]
    assert all(p >= 0 for p in positions), (
        f"missing {[c for c, p in zip(chain, positions, strict=True) if p < 0]}:\n{out}"
    )
    assert positions == sorted(positions), f"the chain is out of order:\n{out}"


@pytest.fixture(scope="module")
def webserver(pipeline: PipelineHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    with dagster_webserver(pipeline.env, log, until_assets_load=True, timeout=180) as url:
        yield url


def test_auditor_walks_from_the_manifest_to_the_raw_data_in_a_browser(pipeline: PipelineHome, webserver: str) -> None:
    from playwright.sync_api import expect

    from platform_assets.core import signing

    latest = max(pipeline.versions, key=lambda v: int(v.removeprefix("v")))
    key_id = signing.key_id(signing.load_public_key_file(pipeline.verify_key))
    with ui_page() as page:
        page.goto(f"{webserver}/assets/model_manifest", wait_until="networkidle")

        # The latest materialization's metadata: model version, signature, fairness summary.
        def metadata_row(key: str) -> str:
            row = page.locator("tr", has=page.get_by_text(key, exact=True)).first
            expect(row).to_be_visible()
            return row.inner_text()

        assert re.search(rf"\b{latest}\b", metadata_row("model_version")), metadata_row("model_version")
        assert f"signed with {key_id}" in metadata_row("signature")
        fairness_text = metadata_row("fairness_summary")
        assert "disparate_impact_ratio" in fairness_text and "four_fifths_rule_passed" in fairness_text
        assert re.search(r"\bsex\b", fairness_text) and re.search(r"\bage_band\b", fairness_text)
        assert pipeline.versions[latest].mlflow_run_id in metadata_row("lineage")
        page.screenshot(path=str(ARTIFACTS / "auditor_1_model_manifest.png"))
        fairness_row = page.locator("tr", has=page.get_by_text("fairness_summary", exact=True)).first
        fairness_row.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "auditor_1b_fairness_summary.png"))

        # Lineage, all the way upstream, then into the raw data asset.
        page.get_by_role("tab", name="Lineage").click()
        page.get_by_role("button", name="Upstream").click()
        page.get_by_role("button", name="All", exact=True).click()
        for name in ("fairness_report", "default_risk_model", "model_evaluation"):
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        raw = page.get_by_text(re.compile(r"^raw_.*applications$")).first  # long names are elided in nodes
        expect(raw).to_be_visible()
        page.wait_for_timeout(500)  # let the graph finish its layout animation for the screenshot
        page.screenshot(path=str(ARTIFACTS / "auditor_2_lineage_upstream.png"))
        raw.dblclick()
        page.wait_for_url(re.compile(r"/assets/raw_credit_applications"))
        expect(page.get_by_text("raw_credit_applications").first).to_be_visible()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "auditor_3_raw_credit_applications.png"))
    for name in (
        "auditor_1_model_manifest.png",
        "auditor_1b_fairness_summary.png",
        "auditor_2_lineage_upstream.png",
        "auditor_3_raw_credit_applications.png",
    ):
        assert (ARTIFACTS / name).stat().st_size > 10_000, name


def test_auditor_opens_each_version_of_the_manifest_in_a_browser(pipeline: PipelineHome, webserver: str) -> None:
    """Per-version lineage in the UI: model_manifest for v1 and for v2, each with its own model's sha256."""
    from playwright.sync_api import expect

    shown: dict[str, str] = {}
    with ui_page() as page:
        for version in ("v1", "v2"):
            page.goto(f"{webserver}/assets/model_manifest?view=partitions&partition={version}")
            row = page.locator("tr", has=page.get_by_text("model_sha256", exact=True)).first
            expect(row).to_be_visible()
            text = row.inner_text()
            match = re.search(r"\b[0-9a-f]{64}\b", text)
            assert match, text
            shown[version] = match.group(0)
            page.screenshot(path=str(ARTIFACTS / f"auditor_4_model_manifest_{version}.png"))
    assert shown == {version: record.model_sha256 for version, record in pipeline.versions.items()}
    assert shown["v1"] != shown["v2"]
