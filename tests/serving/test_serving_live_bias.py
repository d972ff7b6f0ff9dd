"""Live bias on a real ``bentoml serve``: decisions counted per protected group and model version for the
Prometheus recording rules (fleet-wide), and the in-process sliding window shown by ``/admin/status``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from serving_support import Api, Server, Stores, rows_of

from platform_assets.core import observability
from platform_assets.ml import fairness_metrics

pytestmark = pytest.mark.slow

WINDOW, MIN_GROUP = 120, 5
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


@pytest.fixture(scope="module")
def bias_server(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = stores.env(
        CREDIT_RISK_BIAS_WINDOW=str(WINDOW),
        CREDIT_RISK_BIAS_MIN_GROUP=str(MIN_GROUP),
        CREDIT_RISK_INFERENCE_DB=f"sqlite:///{tmp_path_factory.mktemp('bias') / 'log.db'}",
    )
    server = Server(env, Path(tmp_path_factory.mktemp("bias_logs")) / "server.log").start()
    yield server
    server.stop()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match["name"] == name:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match["labels"])))
            out[labels] = float(match["value"])
    return out


def expected_rates(rows: list[dict[str, int]], decisions: list[str]) -> dict[str, dict[str, tuple[int, float]]]:
    """attribute -> group -> (predictions, declined share), computed independently of the service."""
    groups = fairness_metrics.protected_groups(
        pd.DataFrame(rows)[["SEX", "AGE", "MARRIAGE", "EDUCATION"]], fairness_metrics.DEFAULT_AGE_EDGES
    )
    out: dict[str, dict[str, tuple[int, float]]] = {}
    for attribute, labels in groups.items():
        for group in sorted(set(labels)):
            picked = [d for d, g in zip(decisions, labels, strict=True) if g == group]
            out.setdefault(attribute, {})[group] = (len(picked), sum(d == "decline" for d in picked) / len(picked))
    return out


def check_counters(text: str, expected: dict[tuple[str, str, str], int]) -> None:
    """``credit_risk_group_decisions_total`` equals ``(attribute, group, decision) -> applications`` (model v1)."""
    counted = samples(text, observability.GROUP_DECISIONS_TOTAL.removesuffix("_total") + "_total")
    found = {}
    for labels, value in counted.items():
        label = dict(labels)
        assert label["model_version"] == "v1"
        found[(label["attribute"], label["group"], label["decision"])] = int(value)
    assert found == expected


def test_group_decisions_are_counted_and_the_window_is_on_admin_status(bias_server: Server, stores: Stores) -> None:
    api = Api(bias_server.url, stores.keys)
    rows = rows_of(stores.raw.iloc[:200])
    # 200 predictions with attributes in batches, then 30 without: those count for no group.
    served = []
    for start in range(0, 200, 50):
        served += api.predict(rows[start : start + 50])
    bare = [{k: v for k, v in r.items() if k not in ("SEX", "AGE", "MARRIAGE", "EDUCATION")} for r in rows[:30]]
    api.predict(bare)

    decisions = [p["decision"] for p in served]
    everything = expected_rates(rows, decisions)
    expected = {}
    for attribute, groups in everything.items():
        for group, (n, declined_share) in groups.items():
            declined = round(n * declined_share)
            for decision, count in (("decline", declined), ("approve", n - declined)):
                if count:
                    expected[(attribute, group, decision)] = count
    check_counters(httpx.get(bias_server.url + "/metrics", timeout=10).text, expected)

    # The in-process window (the last WINDOW predictions with attributes) is for /admin/status only.
    window = expected_rates(rows[-WINDOW:], decisions[-WINDOW:])
    status = api.status(refresh=False)
    bias = status["live_bias"]
    assert bias["window_predictions"] == WINDOW
    for attribute, groups in window.items():
        approvals = []
        for group, (n, rate) in groups.items():
            shown = bias["attributes"][attribute]["groups"][group]
            assert shown["predictions"] == n and shown["selection_rate"] == pytest.approx(rate, abs=1e-6)
            if n >= MIN_GROUP:
                approvals.append(1.0 - rate)
        ratio = bias["attributes"][attribute]["disparate_impact_ratio"]
        if len(approvals) >= 2 and max(approvals) > 0:
            assert ratio == pytest.approx(min(approvals) / max(approvals), abs=1e-6), attribute
        else:
            assert ratio is None, attribute
    assert "credit_risk_live_" not in httpx.get(bias_server.url + "/metrics", timeout=10).text, "no window gauges"
    # The tiny test models carry no manifest and no verify key is configured: served, marked unverified.
    assert status["models"]["champion"]["signature"].startswith("unverified")
