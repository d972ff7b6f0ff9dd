"""Acceptance: a failing challenger model version is rolled back by the per-version gates, with real processes,
while the champion's clients never see a failed request.

A real ``bentoml serve`` serves champion v1 and challenger v2 at 50 % (sticky by application ID) from a real
MLflow registry. v2 loads and verifies like any version, but ``CREDIT_RISK_FAULT_INJECTION=v2`` (a test-only
failure drill, refused outside ``PLATFORM_ENV=local``) makes its scoring raise, so every request routed to it
gets a 500. Clients keep sending single applications throughout: some with IDs routed to the champion, one
with IDs routed to the challenger. The real ``canary_sensor`` reads the service's /metrics, where each
request is counted under the model version and role that answered, sees the challenger's 5xx share against
the champion's and requests the rollback; ``canary_decision`` applies it in the registry; the service drops
the challenger on its next poll, and the challenger's IDs are answered by the champion from then on.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from loop_support import monitoring

from platform_assets.core import observability as obs
from platform_assets.core.registry import MODEL_NAME
from platform_assets.deploy.rollout import RolloutPlan
from platform_assets.resources.mlflow import ModelRegistry
from platform_assets.serving import routing

SERVING_TESTS = Path(__file__).resolve().parents[1] / "serving"
sys.path.insert(0, str(SERVING_TESTS))
from serving_support import Api, Server, Stores, quiet, rows_of, train_and_register  # noqa: E402

pytestmark = pytest.mark.slow

WEIGHT = 50.0
#: Bound on each wait (the service answers in milliseconds and polls the registry every 0.5 s).
DEADLINE_SECONDS = 60.0


@dataclass
class Client:
    """Sends its rows one application per request, round and round, until stopped; keeps every answer."""

    api: Api
    rows: list[dict[str, Any]]
    answers: list[tuple[int, str | None]] = field(default_factory=list)  # (status, model version or None)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            response = self.api.post("/predict", {"applications": [self.rows[i % len(self.rows)]]})
            version = response.json()["predictions"][0]["model_version"] if response.status_code == 200 else None
            self.answers.append((response.status_code, version))
            i += 1

    def wait_for(self, count: int, what: str) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.answers) >= count, f"{what}: only {len(self.answers)} answers"

    def wait_until_answered(self, status: int, since: int, what: str) -> None:
        """Wait until an answer after the first ``since`` has ``status`` (bounded by ``DEADLINE_SECONDS``)."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not any(s == status for s, _ in self.answers[since:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = Counter(s for s, _ in self.answers[since:])
        assert seen[status], f"{what}: no {status} within {DEADLINE_SECONDS:.0f} s, only {dict(seen)}"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    with quiet():
        return train_and_register(tmp_path_factory.mktemp("canary_home"))


@pytest.fixture
def canary(stores: Stores, tmp_path: Path) -> Iterator[tuple[Server, ModelRegistry, str]]:
    """The service with champion v1 and a broken challenger v2 at 50 %, the registry, the inference log URL."""
    registry = ModelRegistry(tracking_uri=stores.tracking_uri, model_name=MODEL_NAME)
    registry.apply(RolloutPlan("v1", "v2", WEIGHT, "canary_started"))
    db = f"sqlite:///{tmp_path / 'inference_log.db'}"
    server = Server(stores.env(CREDIT_RISK_INFERENCE_DB=db, CREDIT_RISK_FAULT_INJECTION="v2"), tmp_path / "server.log")
    server.start()
    try:
        yield server, registry, db
    finally:
        server.stop()
        registry.apply(RolloutPlan("v1", None, 0.0, "unchanged"))


def evaluate_canary_sensor(resources: dict[str, Any]) -> Any:
    from platform_assets.defs.monitoring.sensors import canary_sensor

    with dg.DagsterInstance.ephemeral() as instance:
        return canary_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))


def test_a_failing_challenger_is_rolled_back_and_the_champions_clients_never_fail(
    canary: tuple[Server, ModelRegistry, str], stores: Stores, tmp_path: Path
) -> None:
    from platform_assets.defs.monitoring.assets import canary_decision
    from platform_assets.resources.deployer import ServiceDeployer

    server, registry, db = canary
    api = Api(server.url, stores.keys)
    status = api.status()
    assert (status["champion"], status["challenger"]) == ("v1", "v2"), status
    rows = rows_of(stores.raw.iloc[:400])
    to_challenger = routing.to_challenger([row["ID"] for row in rows], WEIGHT)
    champion_rows = [row for row, flag in zip(rows, to_challenger, strict=True) if not flag]
    challenger_rows = [row for row, flag in zip(rows, to_challenger, strict=True) if flag]
    champions = [Client(Api(server.url, stores.keys), champion_rows[k::2]) for k in range(2)]
    challenger = Client(Api(server.url, stores.keys), challenger_rows)
    threads = [threading.Thread(target=c.run, name=f"client-{i}") for i, c in enumerate([*champions, challenger])]
    for thread in threads:
        thread.start()
    try:
        # Enough challenger requests for the gate (slo.CANARY.min_requests), all failed by the fault.
        live = monitoring(db, service_url=server.url)
        challenger.wait_for(live.canary_policy().min_requests + 5, "challenger requests")
        assert {status for status, _ in challenger.answers} == {500}

        # The per-version gate: the challenger's own 5xx share against the champion's, from /metrics.
        tick = evaluate_canary_sensor({"live_monitoring": live, "model_registry": registry})
        assert tick.run_requests, tick.skip_message
        [request] = tick.run_requests
        assert (request.tags["loop/action"], request.tags["loop/challenger"]) == ("rollback", "v2")
        deployer = ServiceDeployer(target="kubernetes", platform_home=str(tmp_path), tracking_uri=stores.tracking_uri)
        result = dg.materialize(
            [canary_decision],
            resources={"model_registry": registry, "live_monitoring": live, "deployer": deployer},
            run_config=request.run_config,
        )
        [decision] = result.asset_materializations_for_node("canary_decision")
        assert decision.metadata["action"].value == "rollback"
        [reason] = decision.metadata["reasons"].value
        assert "challenger server error rate 1.0000 > 0.0100" in reason and "champion's 0.0000" in reason
        measured = decision.metadata["measured"].value
        assert measured["champion_error_rate"] == 0.0 and measured["challenger_error_rate"] == 1.0
        # The rollout's whole state is the registry's: back to the champion alone.
        assert (registry.aliases(), registry.challenger_weight(), registry.step_started()) == (
            {"champion": "v1"},
            0.0,
            None,
        )

        # The service drops the challenger on its next poll; its IDs are then answered by the champion. Waited
        # for by time, not by a count of requests: a failed request takes milliseconds, a poll on a busy machine
        # may take longer than 40 of them.
        failed_before = len(challenger.answers)
        challenger.wait_until_answered(200, failed_before, "a challenger ID answered by the champion")
        challenger.wait_for(len(challenger.answers) + 40, "requests after the rollback")
        after = challenger.answers[failed_before:]
        first_ok = next(i for i, (status, _) in enumerate(after) if status == 200)
        assert set(after[first_ok:]) == {(200, "v1")}, "once dropped, the challenger never answers again"
        for client in champions:
            client.wait_for(len(client.answers) + 20, "champion requests after the rollback")
    finally:
        for client in (*champions, challenger):
            client.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    # Zero failed requests for the champion's clients, before, during and after the rollback.
    for client in champions:
        assert len(client.answers) > 50
        assert set(client.answers) == {(200, "v1")}, {a for a in client.answers if a != (200, "v1")}
    text = httpx.get(server.url + "/metrics", timeout=10).text
    errors = [line for line in text.splitlines() if line.startswith(obs.REQUEST_ERRORS_TOTAL + "{")]
    assert any('model_version="v2"' in line and 'reason="model_error"' in line for line in errors)
    assert not any('role="champion"' in line and 'status="5' in line for line in errors)
