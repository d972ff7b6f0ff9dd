"""Model artifacts in the lake: info documents, the latest pointer, verified reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from platform_assets import lake_keys, model_store
from platform_assets.resources.lake import LocalLake


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(root=str(tmp_path / "lake"))


def test_publish_then_latest_info(lake: LocalLake) -> None:
    first = {"version": "v1", "metrics": {"roc_auc": 0.76}, "threshold": 0.31}
    model_store.publish(lake, "cnn", "v1", first)
    assert model_store.latest_info(lake, "cnn") == first
    second = {"version": "v2", "metrics": {"roc_auc": 0.78}, "threshold": 0.29}
    model_store.publish(lake, "cnn", "v2", second)
    assert model_store.latest_info(lake, "cnn") == second
    # Older versions stay readable and the pointer only names the newest.
    assert model_store.read_json(lake, f"{lake_keys.model_dir('cnn', 'v1')}/info.json") == first
    assert model_store.read_json(lake, lake_keys.latest_pointer("cnn")) == {"version": "v2"}


def test_models_do_not_share_a_pointer(lake: LocalLake) -> None:
    model_store.publish(lake, "cnn", "v1", {"kind": "cnn"})
    model_store.publish(lake, "baselines", "b7", {"kind": "baselines"})
    assert model_store.latest_info(lake, "cnn") == {"kind": "cnn"}
    assert model_store.latest_info(lake, "baselines") == {"kind": "baselines"}


def test_latest_info_on_an_empty_lake_says_what_to_do(lake: LocalLake) -> None:
    with pytest.raises(FileNotFoundError, match=r"no trained cnn in the lake: materialize it first"):
        model_store.latest_info(lake, "cnn")


def test_read_verified_returns_matching_bytes(lake: LocalLake) -> None:
    data = bytes(range(256)) * 40
    digest = lake.write_bytes("models/cnn/v1/model.keras", data)
    assert model_store.read_verified(lake, "models/cnn/v1/model.keras", digest) == data


def test_read_verified_refuses_an_altered_artifact(lake: LocalLake, tmp_path: Path) -> None:
    key = "models/cnn/v1/model.keras"
    data = bytes(range(256)) * 40
    digest = lake.write_bytes(key, data)
    path = tmp_path / "lake" / key
    tampered = bytearray(path.read_bytes())
    tampered[1234] ^= 0x01  # flip one bit of one byte
    path.write_bytes(bytes(tampered))
    with pytest.raises(ValueError, match="altered") as error:
        model_store.read_verified(lake, key, digest)
    message = str(error.value)
    assert digest in message and hashlib.sha256(tampered).hexdigest() in message
    assert "model.keras" in message


def test_json_is_deterministic_and_tolerates_dates(lake: LocalLake) -> None:
    import datetime

    digest_a = model_store.write_json(lake, "a.json", {"b": 1, "a": datetime.date(2026, 10, 1)})
    digest_b = model_store.write_json(lake, "b.json", {"a": datetime.date(2026, 10, 1), "b": 1})
    assert digest_a == digest_b  # key order does not change the data version
    assert model_store.read_json(lake, "a.json") == {"a": "2026-10-01", "b": 1}
