"""A real Prometheus (Debian's `prometheus`) scrapes a stand-in for the service that exports the contract's
metrics with prometheus_client, evaluates grafana/prometheus/rules.yml, and answers every recording rule,
the canary AnalysisTemplate's queries and the dashboard's queries. Loopback only; bounded in time."""

from __future__ import annotations

import itertools
import json
import math
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_support import DASHBOARD_JSON, K8S, RULES, load_yaml, prometheus, recording_rules
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from platform_assets.core import observability as obs

pytestmark = pytest.mark.slow

JOB = "credit-risk-service"
CHAMPION, CHALLENGER, SHADOW = "3", "4", "5"
POD_TEMPLATE_HASH = "6f7d9c8b4"
SCRAPE_SECONDS = 1
#: Bound on every wait: Prometheus start, first scrape, first rule evaluation.
DEADLINE_SECONDS = 30


class FakeService:
    """The contract's metrics with their documented labels, fed steady healthy traffic by a thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            obs.REQUESTS_TOTAL, "requests", ["endpoint", "status", "model_version", "role"], registry=r
        )
        self.latency = Histogram(
            obs.REQUEST_LATENCY_SECONDS,
            "latency",
            ["endpoint", "model_version", "role"],
            buckets=obs.LATENCY_BUCKETS,
            registry=r,
        )
        self.bentoml_latency = Histogram(
            obs.BENTOML_REQUEST_DURATION_SECONDS,
            "BentoML's",
            ["endpoint", "service_name", "service_version", "http_response_code"],
            buckets=obs.LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            obs.REQUEST_ERRORS_TOTAL, "errors", ["endpoint", "status", "reason", "model_version", "role"], registry=r
        )
        self.predictions = Counter(
            obs.PREDICTIONS_TOTAL, "predictions", ["model_version", "role", "decision"], registry=r
        )
        self.score = Histogram(obs.SCORE, "score", ["model_version", "role"], buckets=obs.SCORE_BUCKETS, registry=r)
        self.feedback = Counter(obs.FEEDBACK_TOTAL, "feedback", ["known"], registry=r)
        self.weight = Gauge(obs.TRAFFIC_WEIGHT, "weight", ["role"], registry=r)
        self.info = Gauge(obs.MODEL_INFO, "info", ["role", "model_version"], registry=r)
        self.groups = Counter(
            obs.GROUP_DECISIONS_TOTAL, "groups", ["attribute", "group", "decision", "model_version"], registry=r
        )
        self.shadow_failures = Counter(
            obs.SHADOW_FAILURES_TOTAL, "shadow failures", ["model_version", "reason"], registry=r
        )
        self.registry_failures = Counter(
            obs.REGISTRY_REFRESH_FAILURES_TOTAL.removesuffix("_total"), "registry read failures", registry=r
        )
        self.registry_last_success = Gauge(
            obs.REGISTRY_LAST_SUCCESS_TIMESTAMP_SECONDS, "last successful registry read", registry=r
        )
        self.weight.labels(role="challenger").set(0.2)
        self.weight.labels(role="champion").set(0.8)
        self.info.labels(role="champion", model_version=CHAMPION).set(1)
        self.info.labels(role="challenger", model_version=CHALLENGER).set(1)
        self.weight.labels(role=obs.SHADOW_ROLE).set(1.0)
        self.info.labels(role=obs.SHADOW_ROLE, model_version=SHADOW).set(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._traffic, name="fake-credit-risk-traffic", daemon=True)
        self._counter = itertools.count()
        self._reads = itertools.count()

    def _answered(self, endpoint: str, status: int, seconds: float, version: str, role: str) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status), model_version=version, role=role).inc()
        self.latency.labels(endpoint=endpoint, model_version=version, role=role).observe(seconds)
        self.bentoml_latency.labels(
            endpoint=endpoint, service_name="credit_risk", service_version="test", http_response_code=str(status)
        ).observe(seconds)

    def tick(self) -> None:
        """Ten requests: one 422, one 500 in twenty ticks; latency 2-8 ms; a fifth of scores by the challenger;
        the shadow re-scores the answered applications, but for one in seven its queue was full."""
        for _ in range(10):
            i = next(self._counter)
            role, version = ("challenger", CHALLENGER) if i % 5 == 0 else ("champion", CHAMPION)
            if i % 10 == 9:
                self._answered("/predict", 422, 0.001, obs.NO_MODEL, obs.NO_MODEL)
                self.errors.labels(
                    endpoint="/predict", status="422", reason="invalid", model_version=obs.NO_MODEL, role=obs.NO_MODEL
                ).inc()
                continue
            if i % 200 == 199:
                self._answered("/predict", 500, 0.002, version, role)
                self.errors.labels(
                    endpoint="/predict", status="500", reason="model_error", model_version=version, role=role
                ).inc()
                continue
            self._answered("/predict", 200, (2, 4, 8)[i % 3] / 1000, version, role)
            score = (i % 17) / 17
            self.score.labels(model_version=version, role=role).observe(score)
            decision = "decline" if score > 0.5 else "approve"
            self.predictions.labels(model_version=version, role=role, decision=decision).inc()
            if i % 7 == 3:
                self.shadow_failures.labels(model_version=SHADOW, reason="queue_full").inc()
            else:
                self.score.labels(model_version=SHADOW, role=obs.SHADOW_ROLE).observe(score)
                self.predictions.labels(model_version=SHADOW, role=obs.SHADOW_ROLE, decision=decision).inc()
            # Two sexes, each approved about as often: a fair live ratio.
            self.groups.labels(
                attribute="sex", group=("male", "female")[i % 2], decision=decision, model_version=version
            ).inc()
        self._answered("/feedback", 200, 0.001, obs.NO_MODEL, obs.NO_MODEL)
        self.feedback.labels(known="true").inc()
        # The registry is read on every tick; one read in thirty fails (the service polls every few seconds).
        if next(self._reads) % 30 == 29:
            self.registry_failures.inc()
        else:
            self.registry_last_success.set(time.time())

    def _traffic(self) -> None:
        deadline = time.monotonic() + 2 * DEADLINE_SECONDS + 30  # stops by itself whatever happens
        while not self._stop.wait(0.1) and time.monotonic() < deadline:
            self.tick()

    def start(self) -> None:
        self.tick()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def query(self, expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def rules(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/rules", timeout=5) as response:
            body = json.load(response)
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def wait_for(self, expr: str, what: str, deadline: float) -> list[dict[str, Any]]:
        last_error = ""
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                result = self.query(expr)
            except OSError as error:  # not listening yet
                last_error = str(error)
                result = []
            if result:
                return result
            time.sleep(0.25)
        pytest.fail(
            f"{what}: no result for {expr!r} within {DEADLINE_SECONDS}s {last_error}\n{self.log.read_text()[-3000:]}"
        )


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[FakeService, int]]:
    fake = FakeService()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=fake.registry)
    fake.start()
    try:
        yield fake, server.server_port
    finally:
        fake.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def prom(service: tuple[FakeService, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    binary = prometheus()
    _, metrics_port = service
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
                "rule_files": [str(RULES)],
                # The label kubernetes-scrape.yml copies from each pod's rollouts-pod-template-hash.
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "static_configs": [
                            {
                                "targets": [f"127.0.0.1:{metrics_port}"],
                                "labels": {"rollouts_pod_template_hash": POD_TEMPLATE_HASH},
                            }
                        ],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    port = _free_port()
    log = work / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield PrometheusServer(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def scraped(prom: PrometheusServer) -> PrometheusServer:
    """Prometheus has scraped the service at least three times (enough samples for every rate())."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    (up,) = prom.wait_for(f'up{{job="{JOB}"}} == 1', "first scrape", deadline)
    assert up["metric"]["instance"].startswith("127.0.0.1:")
    prom.wait_for(f'count_over_time(up{{job="{JOB}"}}[1m]) >= 3', "three scrapes", deadline)
    return prom


def test_every_recording_rule_has_results(scraped: PrometheusServer) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    values = {}
    for rule in recording_rules():
        result = scraped.wait_for(rule["record"], f"recording rule {rule['record']}", deadline)
        values[rule["record"]] = {json.dumps(s["metric"], sort_keys=True): float(s["value"][1]) for s in result}
    assert all(math.isfinite(v) for series in values.values() for v in series.values()), values
    # Each role's requests under its own version; the 422s (no model answered) under neither.
    per_version = scraped.query("model_version_role:credit_risk_requests:rate5m")
    assert {(s["metric"]["model_version"], s["metric"]["role"]) for s in per_version} == {
        (CHAMPION, "champion"),
        (CHALLENGER, "challenger"),
    }
    (ratio,) = scraped.query("job:credit_risk_request_errors:ratio_rate5m")
    assert 0 <= float(ratio["value"][1]) < 0.02  # one 500 in 200; the 422s do not count
    (p99,) = scraped.query(
        f'model_version_role:credit_risk_request_latency_seconds:p99_5m{{model_version="{CHAMPION}"}}'
    )
    assert 0.005 < float(p99["value"][1]) <= 0.01  # observations of 2, 4 and 8 ms
    (slo_p99,) = scraped.query("job:bentoml_service_request_duration_seconds:p99_5m")
    assert 0.005 < float(slo_p99["value"][1]) <= 0.01
    roles = {s["metric"]["role"] for s in scraped.query("model_version_role:credit_risk_predictions:rate5m")}
    assert roles == {"champion", "challenger", obs.SHADOW_ROLE}
    (sex,) = scraped.query(obs.LIVE_DISPARATE_IMPACT_RATIO)
    assert sex["metric"]["attribute"] == "sex" and 0.8 <= float(sex["value"][1]) <= 1.0


def test_no_rule_fails_to_evaluate(scraped: PrometheusServer) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    rules = scraped.rules()
    while any(rule["health"] == "unknown" for rule in rules) and time.monotonic() < deadline:
        time.sleep(0.25)  # not evaluated yet
        rules = scraped.rules()
    assert len(rules) == sum(len(group["rules"]) for group in load_yaml(RULES)["groups"])
    unhealthy = [(rule["name"], rule["health"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert not unhealthy
    active = [rule["name"] for rule in rules if rule["type"] == "alerting" and rule["state"] != "inactive"]
    assert not active, "healthy traffic raises no alert"


def _evaluate_condition(condition: str, result: list[float]) -> bool:
    """An Argo Rollouts (expr-lang) success/failure condition of the form the template uses, in Python."""
    python = re.sub(r"!(?!=)", " not ", condition.replace("&&", " and ").replace("||", " or "))
    return bool(eval(python, {"__builtins__": {}}, {"len": len, "isNaN": math.isnan, "result": result}))  # noqa: S307


def test_canary_analysis_queries_pass_on_healthy_traffic(scraped: PrometheusServer) -> None:
    template = load_yaml(K8S / "base" / "analysis-template.yaml")
    args = {arg["name"]: arg.get("value") for arg in template["spec"]["args"]}
    args["canary-hash"] = POD_TEMPLATE_HASH
    deadline = time.monotonic() + DEADLINE_SECONDS

    def resolve(text: str) -> str:
        return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: str(args[m.group(1)]), text)

    for metric in template["spec"]["metrics"]:
        query = resolve(metric["provider"]["prometheus"]["query"])
        result = [float(s["value"][1]) for s in scraped.wait_for(query, metric["name"], deadline)]
        assert len(result) == 1
        assert _evaluate_condition(resolve(metric["successCondition"]), result), (metric["name"], result)
        assert not _evaluate_condition(resolve(metric["failureCondition"]), result), (metric["name"], result)
        # Pods of a ReplicaSet that does not exist have no data: neither success nor failure (inconclusive).
        args["canary-hash"] = "does-not-exist"
        assert scraped.query(resolve(metric["provider"]["prometheus"]["query"])) == []
        assert not _evaluate_condition(resolve(metric["successCondition"]), [])
        assert not _evaluate_condition(resolve(metric["failureCondition"]), [])
        args["canary-hash"] = POD_TEMPLATE_HASH


def test_every_dashboard_query_returns_data(scraped: PrometheusServer) -> None:
    dashboard = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    variables = {"$__rate_interval": "30s", "$model_version": ".*", "$job": JOB}
    deadline = time.monotonic() + DEADLINE_SECONDS
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, expr
            scraped.wait_for(expr, f"panel {panel['title']!r}", deadline)
