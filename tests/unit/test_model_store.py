"""Model versions in the lake: typed records addressed by version, verified reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from record_support import model_version

from platform_assets import model_store
from platform_assets.resources.lake import LocalLake


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(root=str(tmp_path / "lake"))


def test_publish_then_load_each_version_by_its_label(lake: LocalLake) -> None:
    first, second = model_version("v1", threshold=0.31), model_version("v2", threshold=0.29)
    model_store.publish(lake, first)
    model_store.publish(lake, second)
    # Each version is read by its own label; publishing v2 changes nothing about v1.
    assert model_store.load_record(lake, "v1") == first
    assert model_store.load_record(lake, "2") == second
    assert model_store.versions(lake) == ["v1", "v2"]
    assert not any(k.endswith("latest.json") for k in lake.list_keys("models"))


def test_a_published_version_is_immutable(lake: LocalLake) -> None:
    model_store.publish(lake, model_version("v1"))
    model_store.publish(lake, model_version("v1"))  # the same record again is fine
    with pytest.raises(FileExistsError, match="model versions are immutable"):
        model_store.publish(lake, model_version("v1", threshold=0.5))


def test_an_unknown_version_names_the_key_and_the_known_ones(lake: LocalLake) -> None:
    model_store.publish(lake, model_version("v1"))
    with pytest.raises(FileNotFoundError, match=r"no default_risk_model v9 .*model_version\.json.*known versions: v1"):
        model_store.load_record(lake, "v9")
    with pytest.raises(ValueError, match="is not a model version"):
        model_store.load_record(lake, "latest")


def test_a_malformed_record_names_the_field(lake: LocalLake) -> None:
    lake.write_text(model_store.version_key("v1", "model_version.json"), '{"model": "default_risk_model"}')
    with pytest.raises(ValueError, match=r"model_version\.json is not a valid model-version record: .*threshold"):
        model_store.load_record(lake, "v1")


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
