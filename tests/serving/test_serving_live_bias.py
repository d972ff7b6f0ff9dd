"""Live bias gauges on a real ``bentoml serve``: selection rate per protected group and the disparate impact
ratio over the sliding window of recent predictions that carried the attributes."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from serving_support import Api, Server, Stores, rows_of

from platform_assets.core import observability
from platform_assets.ml import fairness_metrics
from platform_assets.serving import engine

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


def check_gauges(text: str, expected: dict[str, dict[str, tuple[int, float]]]) -> None:
    selection = samples(text, observability.LIVE_SELECTION_RATE)
    counts = samples(text, observability.LIVE_GROUP_PREDICTIONS)
    ratios = samples(text, observability.LIVE_DISPARATE_IMPACT_RATIO)
    assert set(ratios) == {(("attribute", a),) for a in fairness_metrics.ATTRIBUTES}
    for attribute, groups in expected.items():
        approvals = []
        for group, (n, rate) in groups.items():
            key = (("attribute", attribute), ("group", group))
            assert counts.get(key) == n, (attribute, group)
            assert selection[key] == pytest.approx(rate), (attribute, group)
            if n >= MIN_GROUP:
                approvals.append(1.0 - rate)
        ratio = ratios[(("attribute", attribute),)]
        if len(approvals) >= 2 and max(approvals) > 0:
            assert ratio == pytest.approx(min(approvals) / max(approvals)), attribute
        else:
            assert math.isnan(ratio), attribute


def test_live_bias_gauges_after_predictions_with_attributes(bias_server: Server, stores: Stores) -> None:
    api = Api(bias_server.url, stores.keys)
    rows = rows_of(stores.raw.iloc[:200])
    # 200 predictions with attributes in batches, then 30 without: the window keeps the last 120 with them.
    served = []
    for start in range(0, 200, 50):
        served += api.predict(rows[start : start + 50])
    bare = [{k: v for k, v in r.items() if k not in ("SEX", "AGE", "MARRIAGE", "EDUCATION")} for r in rows[:30]]
    api.predict(bare)

    in_window = rows[-WINDOW:]
    decisions = [p["decision"] for p in served][-WINDOW:]
    expected = expected_rates(in_window, decisions)
    # The gauges are published at most once a second (engine.BIAS_PUBLISH_SECONDS): poll briefly.
    deadline = time.monotonic() + 10 * engine.BIAS_PUBLISH_SECONDS
    while True:
        text = httpx.get(bias_server.url + "/metrics", timeout=10).text
        try:
            check_gauges(text, expected)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    sex = expected["sex"]
    assert set(sex) == {"male", "female"} and sum(n for n, _ in sex.values()) == WINDOW

    status = api.status(refresh=False)
    assert status["live_bias"]["window_predictions"] == WINDOW
    assert status["live_bias"]["attributes"]["sex"]["groups"]["male"]["predictions"] == sex["male"][0]
    # The tiny test models carry no manifest and no verify key is configured: served, marked unverified.
    assert status["models"]["champion"]["signature"].startswith("unverified")
