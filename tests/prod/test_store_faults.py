"""Store faults with real servers: PostgreSQL restarted under load while the service writes its inference
log there. The writer reconnects, no acknowledged outcome is lost, every prediction answered is logged
(or counted as dropped in /admin/status), and /predict keeps answering throughout (its log writes are
off the request path). Feedback waits for the log (its 200 means committed): during the outage it waits,
or gets a 503 to retry, never a 500. The figures are printed (run with ``-s``)."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prod_support import postgres_server

SERVING_TESTS = Path(__file__).resolve().parents[1] / "serving"
sys.path.insert(0, str(SERVING_TESTS))
from serving_support import Server, Stores, quiet, train_and_register  # noqa: E402

from platform_assets.core.inference_log import migrate  # noqa: E402
from platform_assets.core.inference_log.schema import make_engine  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.prod_profile]


@dataclass
class Load:
    """Clients predicting and reporting outcomes back to back; what the service acknowledged."""

    server: Server
    stores: Stores
    predicted: list[str] = field(default_factory=list)
    acknowledged_feedback: list[int] = field(default_factory=list)
    predict_failures: list[str] = field(default_factory=list)
    feedback_refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, offset: int) -> None:
        rows = self.stores.raw.iloc[offset::4].head(2000).to_dict(orient="records")
        keys = self.stores.keys
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            for i, row in enumerate(rows):
                if self.stop.is_set():
                    return
                answer = client.post("/predict", json={"applications": [row]},
                                     headers={"Authorization": f"Bearer {keys['predict']}"})  # fmt: skip
                if answer.status_code != 200:
                    self.predict_failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                prediction_id = answer.json()["predictions"][0]["prediction_id"]
                self.predicted.append(prediction_id)
                outcome = {"outcomes": [{"prediction_id": prediction_id, "defaulted": i % 2}]}
                answer = client.post("/feedback", json=outcome, headers={"Authorization": f"Bearer {keys['feedback']}"})
                if answer.status_code == 200:
                    self.acknowledged_feedback.append(answer.json()["outcomes"][0]["feedback_id"])
                else:
                    assert answer.status_code == 503, answer.text  # refused, to be retried: never a 500
                    self.feedback_refused += 1
                time.sleep(0.01)


def test_postgres_restarted_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with quiet():
        stores = train_and_register(tmp_path / "home")
    with postgres_server() as postgres:  # its own folder: the postgres user cannot enter pytest's tmp_path
        url = postgres.create_database("inference_log", "credit_risk", "store-faults")
        migrate.upgrade(make_engine(url))
        env = stores.env(CREDIT_RISK_INFERENCE_DB=url, CREDIT_RISK_WORKERS="1")
        server = Server(env, tmp_path / "server.log").start()
        load = Load(server, stores)
        clients = [threading.Thread(target=load.run, args=(offset,)) for offset in range(2)]
        try:
            for client in clients:
                client.start()
            time.sleep(3)
            before = len(load.predicted)
            down_at = time.monotonic()
            postgres.stop()
            time.sleep(5)
            postgres.start()
            up_after = time.monotonic() - down_at
            time.sleep(5)
            load.stop.set()
            for client in clients:
                client.join()
            admin = {"Authorization": f"Bearer {stores.keys['admin']}"}
            deadline = time.monotonic() + 60
            while True:
                status = httpx.post(f"{server.url}/admin/status", json={}, headers=admin, timeout=30).json()
                if status["inference_log_pending"] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            load.stop.set()
            server.stop()
        engine = make_engine(url)
        with engine.connect() as connection:
            logged = set(connection.execute(sa.text("SELECT prediction_id FROM predictions")).scalars())
            stored = set(connection.execute(sa.text("SELECT feedback_id FROM feedback")).scalars())
        engine.dispose()
    print(
        f"\nPostgreSQL down {up_after:.1f} s under load: {len(load.predicted)} predictions answered "
        f"({before} before the restart), {len(load.predict_failures)} failed; {len(load.acknowledged_feedback)} "
        f"outcomes acknowledged, {load.feedback_refused} refused with 503 (to retry); write retries "
        f"{status['inference_log_write_retries']}, dropped {status['inference_log_dropped']}"
    )
    assert load.predict_failures == [], load.predict_failures[:3]
    assert set(load.acknowledged_feedback) <= stored, "an acknowledged outcome is missing from the log"
    missing = set(load.predicted) - logged
    assert len(missing) == status["inference_log_dropped"] == 0, f"{len(missing)} answered predictions not logged"
    assert status["inference_log_write_retries"] > 0, "the restart did not reach the writer: the test proves nothing"
    assert len(load.predicted) > before, "no request was answered after the restart"
