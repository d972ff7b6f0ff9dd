"""The live bias window and the service's choice of manifest verify key, without a server."""

from __future__ import annotations

import math
import random
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from platform_assets.core import signing
from platform_assets.ml import fairness_metrics
from platform_assets.serving.bias import (
    ATTRIBUTE_OF_COLUMN,
    BiasWindow,
    group_decisions,
    group_labels,
    protected_groups,
)
from platform_assets.serving.settings import ServingSettings
from platform_assets.serving.signature import PLATFORM_VERIFY_KEY_ENV, VERIFY_KEY_ENV, VerifyKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_group_labels_follow_the_fairness_report() -> None:
    assert group_labels("sex", [1, 2, None], (25, 35, 45, 60)) == ["male", "female", None]
    assert group_labels("age", [24, 25, 60, None], (25, 35, 45, 60)) == ["<25", "25-34", "60+", None]
    assert group_labels("education", [2, 9], (25,)) == ["university", "code 9"]
    # Every age banded exactly as the fairness report bands it (numpy there, bisect here).
    ages = list(range(0, 121))
    for edges in ((25, 35, 45, 60), (30,), (18, 19, 20)):
        assert group_labels("age", ages, edges) == fairness_metrics.age_bands(np.asarray(ages), edges).tolist(), edges


def test_selection_rates_and_disparate_impact_over_the_window() -> None:
    window = BiasWindow(max_predictions=100, max_age_seconds=60, min_group_size=2, clock=Clock())
    # men: 3 of 4 approved; women: 1 of 4 approved; the last row carries no attribute and is ignored.
    sex = [1, 1, 1, 1, 2, 2, 2, 2, None]
    decisions = ["approve"] * 3 + ["decline"] + ["approve"] + ["decline"] * 3 + ["decline"]
    assert window.observe({"sex": sex, "age": [None] * 9}, decisions)
    rates = window.rates()["sex"]
    assert rates["male"].selection_rate == pytest.approx(0.25) and rates["female"].selection_rate == pytest.approx(0.75)
    assert rates["male"].predictions == 4 and len(window) == 8
    assert window.disparate_impact()["sex"] == pytest.approx(0.25 / 0.75)
    assert "age_band" not in window.rates()
    assert not window.observe({"sex": [None]}, ["approve"])


def test_window_evicts_by_count_and_by_age() -> None:
    clock = Clock()
    window = BiasWindow(max_predictions=4, max_age_seconds=60, min_group_size=1, clock=clock)
    window.observe({"sex": [1, 1, 2, 2]}, ["decline", "decline", "approve", "approve"])
    window.observe({"sex": [1, 2]}, ["approve", "approve"])  # pushes out the two declined men
    assert window.rates()["sex"]["male"].predictions == 1
    assert window.disparate_impact()["sex"] == pytest.approx(1.0)
    clock.now += 61
    assert len(window) == 0 and window.rates()["sex"]["male"].predictions == 0
    assert math.isnan(window.disparate_impact()["sex"])


def test_window_matches_a_row_by_row_reference_under_random_batches() -> None:
    """Counting per batch (chunks, partial eviction) gives exactly the per-row window's rates."""
    rng = random.Random(5)
    clock = Clock()
    window = BiasWindow(max_predictions=50, max_age_seconds=30, min_group_size=1, clock=clock)
    reference: deque[tuple[float, bool, dict[str, str]]] = deque()
    for _ in range(300):
        clock.now += rng.choice([0.0, 0.5, 3.0, 12.0])
        n = rng.choice([1, 2, 7, 40])
        columns = {
            "sex": [rng.choice([1, 2, None]) for _ in range(n)],
            "age": [rng.choice([22, 30, 50, 70, None]) for _ in range(n)],
            "marriage": [None] * n if rng.random() < 0.5 else [rng.choice([1, 2, 3]) for _ in range(n)],
        }
        decisions = [rng.choice(["approve", "decline"]) for _ in range(n)]
        window.observe(columns, decisions)
        labels = {c: group_labels(c, v, fairness_metrics.DEFAULT_AGE_EDGES) for c, v in columns.items()}
        for i, decision in enumerate(decisions):
            groups = {ATTRIBUTE_OF_COLUMN[c]: labels[c][i] for c in columns if labels[c][i] is not None}
            if groups:
                reference.append((clock.now, decision == "decline", groups))  # type: ignore[arg-type]
        while reference and (len(reference) > 50 or clock.now - reference[0][0] > 30):
            reference.popleft()
        expected: dict[str, dict[str, list[int]]] = {}
        for _, declined, groups in reference:
            for attribute, group in groups.items():
                cell = expected.setdefault(attribute, {}).setdefault(group, [0, 0])
                cell[0] += 1
                cell[1] += declined
        got = {
            attribute: {
                g: [r.predictions, round(r.selection_rate * r.predictions)] for g, r in groups.items() if r.predictions
            }
            for attribute, groups in window.rates().items()
        }
        assert len(window) == len(reference)
        assert {a: g for a, g in got.items() if g} == expected


def test_small_groups_are_not_measured_and_never_divide_by_zero() -> None:
    window = BiasWindow(max_predictions=100, min_group_size=3, clock=Clock())
    window.observe({"sex": [1, 1, 1, 2]}, ["approve", "approve", "approve", "decline"])
    assert not window.rates()["sex"]["female"].measured
    assert math.isnan(window.disparate_impact()["sex"])  # one measurable group
    everyone_declined = BiasWindow(min_group_size=1, clock=Clock())
    everyone_declined.observe({"sex": [1, 2]}, ["decline", "decline"])
    assert math.isnan(everyone_declined.disparate_impact()["sex"])
    snapshot = everyone_declined.snapshot()
    assert snapshot["attributes"]["sex"]["disparate_impact_ratio"] is None
    with pytest.raises(ValueError, match="at least 1"):
        BiasWindow(max_predictions=0)


def test_verify_key_from_settings(tmp_path: Path) -> None:
    def key(**settings: object) -> VerifyKey:
        chosen = {"verify_key_file": None, "platform_verify_key_file": None, "platform_home": tmp_path / "empty"}
        return VerifyKey.from_settings(ServingSettings(**{**chosen, **settings}))  # type: ignore[arg-type]

    _, public = signing.write_key_pair(tmp_path / "keys")
    configured = key(verify_key_file=public, platform_env="prod")
    assert configured.key is not None and configured.error is None and configured.key_id.startswith("ed25519:")
    assert configured.source == f"{VERIFY_KEY_ENV}={public}"
    fallback = key(platform_verify_key_file=public, platform_env="prod")
    assert fallback.key_id == configured.key_id and fallback.source.startswith(PLATFORM_VERIFY_KEY_ENV)
    missing = key(verify_key_file=tmp_path / "nope.pem")
    assert missing.key is None and "does not exist" in (missing.error or "")
    prod_without = key(platform_env="prod")
    assert prod_without.key is None and "no manifest verify key configured" in (prod_without.error or "")
    local_without = key(platform_env="local")
    assert local_without.key is None and local_without.error is None  # served unverified, with a warning
    local_demo = key(platform_env="local", platform_home=tmp_path)
    assert local_demo.key_id == configured.key_id and "demo" in local_demo.source
    not_a_key = tmp_path / "bad.pem"
    not_a_key.write_text("hello")
    assert "not a PEM public key" in (key(verify_key_file=not_a_key).error or "")


def test_group_decisions_count_per_attribute_group_decision_and_version() -> None:
    groups = protected_groups({"sex": [1, 2, 2, None], "age": [25, 25, 61, 40]}, fairness_metrics.DEFAULT_AGE_EDGES)
    counts = group_decisions(groups, ["approve", "decline", "decline", "approve"], ["v1", "v1", "v2", "v2"])
    young = groups["age_band"][0]
    assert counts[("sex", "male", "approve", "v1")] == 1
    assert counts[("sex", "female", "decline", "v1")] == 1 and counts[("sex", "female", "decline", "v2")] == 1
    assert counts[("age_band", young, "approve", "v1")] == 1 and counts[("age_band", young, "decline", "v1")] == 1
    # The row without SEX counts for its age band only; every row is counted once per attribute it carried.
    assert sum(n for (attribute, *_), n in counts.items() if attribute == "sex") == 3
    assert sum(n for (attribute, *_), n in counts.items() if attribute == "age_band") == 4
