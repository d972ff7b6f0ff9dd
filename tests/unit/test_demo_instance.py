"""``make demo``'s Dagster instance: the daemon dequeues runs every second, and a user's own dagster.yaml is kept."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from platform_assets.demo import DEMO_INSTANCE, ensure_dagster_home


def test_the_demo_instance_dequeues_every_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = ensure_dagster_home(tmp_path)
    assert home == tmp_path / "dagster"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.dequeue_interval_seconds == 1  # type: ignore[attr-defined]
        assert not instance.telemetry_enabled


def test_an_earlier_demo_file_is_brought_up_to_date_and_a_users_own_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "dagster" / "dagster.yaml"
    config.parent.mkdir()
    config.write_text("telemetry:\n  enabled: false\n")  # what make demo wrote before
    monkeypatch.setenv("DAGSTER_HOME", str(config.parent))
    ensure_dagster_home(tmp_path)
    assert config.read_text() == DEMO_INSTANCE
    own = "telemetry:\n  enabled: true\n"
    config.write_text(own)
    ensure_dagster_home(tmp_path)
    assert config.read_text() == own
    assert not list(config.parent.glob(".*partial"))
