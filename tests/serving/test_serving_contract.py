"""The OpenAPI document at ``/docs.json`` is the service's exact contract: what it states against the code that
enforces it, and Schemathesis (every phase, every check) against a real ``bentoml serve``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_support import BENTO_DIR, Api, Server, Stores, rows_of

from platform_assets.ml import schema
from platform_assets.serving import openapi, payloads
from platform_assets.serving.settings import ServingSettings

SCHEMATHESIS = Path(sys.executable).parent / "st"
CONFIG = Path(__file__).with_name("schemathesis.toml")
#: Test cases per operation and phase: about 1,500 cases in all.
MAX_EXAMPLES = 120
MIN_CASES = 1000
ENDPOINTS = [operation.route for operation in openapi.OPERATIONS]


def test_the_document_states_the_rules_the_service_enforces() -> None:
    document = openapi.document(max_items=7)
    components = document["components"]["schemas"]
    application = components["Application"]
    assert set(application["properties"]) == payloads.APPLICATION_FIELDS
    assert set(application["required"]) == set(payloads.REQUIRED)
    # The feature code's ranges (features.quarantine_reasons), as bounds: exact, since the code sets are ranges.
    bounds = {
        **{column: schema.PAY_CODES for column in schema.PAY_COLUMNS},
        "SEX": schema.SEX_CODES,
        "EDUCATION": schema.EDUCATION_CODES,
        "MARRIAGE": schema.MARRIAGE_CODES,
        "AGE": frozenset(range(schema.AGE_RANGE[0], schema.AGE_RANGE[1] + 1)),
    }
    for column, codes in bounds.items():
        field = application["properties"][column]
        integer = field["anyOf"][0] if "anyOf" in field else field
        assert set(range(integer["minimum"], integer["maximum"] + 1)) == set(codes), column
    assert application["properties"]["LIMIT_BAL"]["minimum"] == 1
    for column in schema.PAY_AMT_COLUMNS:
        assert application["properties"][column]["minimum"] == 0
    for column in schema.BILL_COLUMNS:
        assert application["properties"][column]["minimum"] == payloads.INT64_MIN
    # Every body and every object in one, request or response, has exactly its declared fields.
    for name, model in components.items():
        assert model["type"] == "object" and model["additionalProperties"] is False, name
    for model, field in openapi.BATCH_LISTS:
        assert (
            components[model]["properties"][field]["minItems"],
            components[model]["properties"][field]["maxItems"],
        ) == (
            1,
            7,
        )
    for route in ENDPOINTS:
        responses = document["paths"][route]["post"]["responses"]
        assert {"400", "401", "403", "405", "413", "422"} <= set(responses), route
        for status, response in responses.items():
            if status != "200":
                assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
                assert openapi.REASON_HEADER in response["headers"]


def test_docs_json_is_the_contract_for_the_configured_limits(server: Server, stores: Stores) -> None:
    served = httpx.get(server.url + "/docs.json", timeout=10).json()
    settings = ServingSettings.model_validate({})  # the test server runs with the default limits
    assert served == openapi.document(settings.max_batch, settings.protected_paths)
    assert served["paths"]["/predict"]["post"]["responses"]["200"]["links"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_undeclared_methods_get_405_before_authentication(server: Server, path: str, method: str) -> None:
    response = httpx.request(method, server.url + path, timeout=10)  # no key at all
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.headers[openapi.REASON_HEADER] == "method_not_allowed"
    if method != "HEAD":
        assert response.json() == {"error": f"{path} takes POST, not {method}"}


def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    limit = ServingSettings.model_validate({}).max_body_bytes

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"applications": ['
        for _ in range(limit // 65536 + 1):
            yield b" " * 65536
        yield b"]}"

    response = api.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and str(limit) in response.json()["error"]
    small = api.post("/predict", content=iter([b'{"applications": ', b"[]}"]))
    assert small.status_code == 422 and small.json()["field"] == "applications"  # read whole, then validated


def test_a_state_error_answers_a_valid_body_only(api: Api, stores: Stores) -> None:
    """409 (a version not served now) is for valid bodies: an invalid row is the 422 (Schemathesis' find)."""
    rows = rows_of(stores.raw.iloc[:3])
    assert api.post("/predict", {"applications": rows, "model_version": "v99"}).status_code == 409
    rows[2]["PAY_3"] = 10
    refused = api.post("/predict", {"applications": rows, "model_version": "v99"})
    assert refused.status_code == 422 and (refused.json()["field"], refused.json()["row"]) == ("PAY_3", 2)


@pytest.mark.slow
def test_schemathesis_finds_no_contract_violation(
    stores: Stores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server of its own: the run stores feedback and moves counters the other tests read. Its own BentoML
    # home too: `bentoml serve` empties the home's Prometheus directory, the session server's metrics with it.
    env = stores.env(
        CREDIT_RISK_INFERENCE_DB=f"sqlite:///{tmp_path / 'contract.db'}", BENTOML_HOME=str(tmp_path / "bentoml")
    )
    server = Server(env, tmp_path / "server.log")
    events = tmp_path / "events.ndjson"
    server.start()
    try:
        run = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(CONFIG),
                "--no-color",
                "run",
                f"{server.url}/docs.json",
                "--header",
                f"Authorization: Bearer {stores.keys['admin']}",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(events),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1500,
        )
    finally:
        server.stop()
    cases = requests = 0
    for line in events.read_text().splitlines():
        event = json.loads(line)
        recorder = event.get("ScenarioFinished", {}).get("recorder") or {}  # none for a skipped scenario
        cases += len(recorder.get("cases", ()))
        requests += len(recorder.get("interactions", ()))
    tally = re.search(r"Test cases:\s*(.+)", run.stdout)
    seed = re.search(r"Seed: (\d+)", run.stdout)
    with capsys.disabled():
        print(
            f"\nSchemathesis against /docs.json: {cases} cases, {requests} requests "
            f"({tally.group(1) if tally else 'no summary'}; seed {seed.group(1) if seed else '?'})"
        )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:] + "\n" + server.log_tail()
    assert cases >= MIN_CASES, run.stdout[-3000:]


def test_bentoml_builds_its_own_spec_from_the_body_models() -> None:
    """``bentoml build`` writes BentoML's OpenAPI spec into the Bento from these models (``Bento.create``);
    a JSON-Schema keyword its ``Schema`` class does not take (``examples``) fails every build."""
    code = "import service; spec = service.CreditRiskService.openapi_spec; print(sorted(spec.paths))"
    done = subprocess.run([sys.executable, "-c", code], cwd=BENTO_DIR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "/predict" in done.stdout
