"""Model artifacts in the lake: versioned folders, an info document each, and a ``latest`` pointer."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from platform_assets import lake_keys
from platform_assets.resources.lake import LakeStorage, content_hash


def write_json(lake: LakeStorage, key: str, document: dict[str, Any]) -> str:
    return lake.write_text(key, json.dumps(document, indent=2, sort_keys=True, default=str))


def read_json(lake: LakeStorage, key: str) -> dict[str, Any]:
    return json.loads(lake.read_text(key))  # type: ignore[no-any-return]


def publish(lake: LakeStorage, model: str, version: str, info: dict[str, Any]) -> None:
    """Write ``info.json`` for ``version``, then move the ``latest`` pointer to it (both atomic)."""
    write_json(lake, f"{lake_keys.model_dir(model, version)}/info.json", info)
    write_json(lake, lake_keys.latest_pointer(model), {"version": version})


def latest_info(lake: LakeStorage, model: str) -> dict[str, Any]:
    """The info document of the newest version; a clear error when nothing was trained yet."""
    try:
        version = read_json(lake, lake_keys.latest_pointer(model))["version"]
    except FileNotFoundError:
        raise FileNotFoundError(f"no trained {model} in the lake: materialize it first") from None
    return read_json(lake, f"{lake_keys.model_dir(model, version)}/info.json")


def read_verified(lake: LakeStorage, key: str, sha256: str) -> bytes:
    """An artifact's bytes, refused when they do not hash to ``sha256``."""
    data = lake.read_bytes(key)
    actual = content_hash(data)
    if actual != sha256:
        raise ValueError(f"{lake.uri(key)} has sha256 {actual}, expected {sha256}: the artifact was altered")
    return data


def keras_from_bytes(data: bytes) -> Any:
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(data)
        return keras.saving.load_model(path, compile=False, safe_mode=True)
