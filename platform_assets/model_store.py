"""Model versions in the lake: one immutable folder per version, its typed record, verified reads.

``models/<model>/<version>/`` holds ``model_version.json`` (a ``ModelVersion``), the artifacts the record
hashes and the per-version reports. A version is addressed by its label, never through a pointer to
the newest one, so two overlapping runs can never read each other's version.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_assets.core import lake_keys
from platform_assets.core.model_version import (
    MODEL_FILE,
    ONNX_FILE,
    RECORD_FILE,
    BaselineSet,
    ModelVersion,
    version_label,
)
from platform_assets.core.registry import MODEL_NAME
from platform_assets.ml.dataset import ModellingDataset, Split
from platform_assets.resources.lake import LakeStorage, content_hash

if TYPE_CHECKING:
    from platform_assets.core.onnx_runtime import OnnxModel

BASELINES_FILE = "baselines.json"


def write_json(lake: LakeStorage, key: str, document: dict[str, Any]) -> str:
    return lake.write_text(key, json.dumps(document, indent=2, sort_keys=True, default=str))


def read_json(lake: LakeStorage, key: str) -> dict[str, Any]:
    return json.loads(lake.read_text(key))  # type: ignore[no-any-return]


def version_key(version: str, filename: str, model: str = MODEL_NAME) -> str:
    """The lake key of ``filename`` in ``version``'s folder."""
    return f"{lake_keys.model_dir(model, version)}/{filename}"


def publish(lake: LakeStorage, record: ModelVersion) -> str:
    """Write ``record`` once (atomically); return its sha256. A version is immutable: writing a different
    record for a label that already has one fails instead of rewriting history."""
    key = version_key(record.version, RECORD_FILE, record.model)
    body = record.to_json().encode("utf-8")
    if lake.exists(key) and lake.read_bytes(key) != body:
        raise FileExistsError(f"{lake.uri(key)} already holds a different record: model versions are immutable")
    return lake.write_bytes(key, body)


def versions(lake: LakeStorage, model: str = MODEL_NAME) -> list[str]:
    """Labels of every version with a record, in registry order (v1, v2, ..., v10)."""
    prefix = f"{lake_keys.MODELS_PREFIX}/{model}/"
    labels = {k[len(prefix) :].split("/", 1)[0] for k in lake.list_keys(prefix) if k.endswith(f"/{RECORD_FILE}")}
    return sorted(labels, key=lambda label: int(label[1:]) if label[1:].isdigit() else -1)


def load_record(lake: LakeStorage, version: str, model: str = MODEL_NAME) -> ModelVersion:
    """The record of ``version`` (``v3`` or ``3``); a missing one fails naming the key and the known versions."""
    label = version_label(version)
    key = version_key(label, RECORD_FILE, model)
    try:
        text = lake.read_text(key)
    except FileNotFoundError:
        known = versions(lake, model)
        raise FileNotFoundError(
            f"no {model} {label} in the lake ({lake.uri(key)} is missing); known versions: {', '.join(known) or 'none'}"
        ) from None
    record = ModelVersion.from_json(text, lake.uri(key))
    if record.version != label or record.model != model:
        raise ValueError(f"{lake.uri(key)} describes {record.model} {record.version}, not {model} {label}")
    return record


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


def artifact_bytes(lake: LakeStorage, record: ModelVersion) -> dict[str, bytes]:
    """The bytes of every artifact the record lists that is present in the lake (missing ones are left out,
    so that signature verification names them)."""
    out = {}
    for name in record.artifacts:
        key = version_key(record.version, name, record.model)
        if lake.exists(key):
            out[name] = lake.read_bytes(key)
    return out


def open_dataset(lake: LakeStorage, record: ModelVersion | BaselineSet) -> ModellingDataset:
    """The exact rows ``record`` was trained on, split as it was (read on demand); a partition that changed since
    fails with "retrain first"."""
    from platform_assets.resources.training_data import open_partitions

    return open_partitions(lake, record.data_versions, record.split)


#: Most rows of a version's training split in a drift or stability reference (a seeded sample of a larger split).
REFERENCE_ROWS = 100_000


def reference_sample(lake: LakeStorage, record: ModelVersion, max_rows: int = REFERENCE_ROWS) -> Split:
    """The reference of ``record``'s drift and stability reports: at most ``max_rows`` rows of its training split,
    sampled with the split's seed (the same rows every time)."""
    return open_dataset(lake, record).sample("train", max_rows, seed=record.split.seed)


def load_onnx(lake: LakeStorage, record: ModelVersion) -> OnnxModel:
    """``record``'s served artifact, ``model.onnx``, in ONNX Runtime (bytes checked against the recorded sha256)."""
    from platform_assets.core import onnx_runtime

    data = read_verified(lake, version_key(record.version, ONNX_FILE, record.model), record.onnx_sha256)
    return onnx_runtime.load_model(data, sha256=record.onnx_sha256)


def load_splits(
    lake: LakeStorage, record: ModelVersion | BaselineSet, names: tuple[str, ...] = ("validation", "test")
) -> dict[str, Split]:
    """The splits ``names`` of ``record``'s rows in memory (the held-out ones by default: their size is bounded
    by the split spec; the training split is read as a stream, see ``open_dataset``)."""
    data = open_dataset(lake, record)
    return {name: data.materialize(name) for name in names}


@dataclass(frozen=True)
class LoadedVersion:
    """A model version with its Keras model (bytes verified) and the held-out splits asked for."""

    record: ModelVersion
    model: Any
    splits: dict[str, Split]


def load_version(
    lake: LakeStorage, version: str, model: str = MODEL_NAME, splits: tuple[str, ...] = ("test",)
) -> LoadedVersion:
    """The one loader every per-version asset uses: record, verified model, exact ``splits`` (the test split)."""
    record = load_record(lake, version, model)
    data = read_verified(lake, version_key(record.version, MODEL_FILE, model), record.model_sha256)
    return LoadedVersion(record=record, model=keras_from_bytes(data), splits=load_splits(lake, record, splits))


def publish_baselines(lake: LakeStorage, baselines: BaselineSet, model: str = MODEL_NAME) -> str:
    return lake.write_text(
        version_key(baselines.model_version, BASELINES_FILE, model), baselines.model_dump_json(indent=2)
    )


def load_baselines(lake: LakeStorage, version: str, model: str = MODEL_NAME) -> tuple[BaselineSet, dict[str, Any]]:
    """The baseline set of ``version`` and its fitted models (bytes verified against the recorded sha256)."""
    import skops.io

    key = version_key(version, BASELINES_FILE, model)
    try:
        baselines = BaselineSet.model_validate_json(lake.read_text(key))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no baseline_models for {model} {version} ({lake.uri(key)}): materialize them"
        ) from None
    models = {}
    for filename, sha in baselines.artifacts.items():
        data = read_verified(lake, version_key(version, f"baselines/{filename}", model), sha)
        # The bytes are ours (hash checked above), so the sklearn types they name can be trusted.
        models[filename.removesuffix(".skops")] = skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
    return baselines, models
