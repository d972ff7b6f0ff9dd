"""The model version: one frozen, typed record of what was trained, on what, and how.

Training writes it once, as ``models/<model>/<version>/model_version.json`` in the lake, and every
per-version asset (evaluation, reports, manifest, card, Bento, rollout) reads exactly the version its
partition key names. Nothing moves after it is written: there is no "latest" pointer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: The lake document of one version, beside its artifacts.
RECORD_FILE: Final = "model_version.json"
#: The Keras artifact of a version (its sha256 is in ``artifacts``).
MODEL_FILE: Final = "model.keras"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureSpec(_Frozen):
    """The model's inputs: ``months`` x ``channels`` history tensor plus the ``static`` vector."""

    version: str = Field(description="Feature-spec version; serving refuses a model built on another one.")
    months: int = Field(gt=0, description="Months of history per client, oldest to newest.")
    month_order: str = "oldest_to_newest"
    channels: tuple[str, ...] = Field(min_length=1, description="Per-month channels of the history tensor.")
    static: tuple[str, ...] = Field(description="Static features, in input order.")
    raw_columns: tuple[str, ...] = Field(description="Raw application columns the features are computed from.")
    include_protected: bool = Field(description="Whether protected attributes are model inputs.")
    target: str = Field(description="Label column (1 = default next month).")


class SplitSpec(_Frozen):
    """How rows are assigned to splits: stratified by label, by a seeded hash of the client ID."""

    validation: float = Field(gt=0, lt=1, description="Share of rows for early stopping and the threshold.")
    test: float = Field(gt=0, lt=1, description="Share of rows held out for evaluation.")
    seed: int = Field(description="Seed of the ID hash.")


class ModelVersion(_Frozen):
    """One trained version of ``model``. Probabilities and thresholds are in [0, 1]; rows are counts."""

    model: str
    version: str = Field(pattern=r"^v[0-9]+$", description="Registry label, e.g. 'v3'.")
    registered_version: str = Field(description="MLflow model-registry version number, e.g. '3'.")
    mlflow_run_id: str
    mlflow_model_uri: str
    dagster_run_id: str = Field(description="The Dagster run that trained this version.")
    trained_at: datetime
    artifacts: dict[str, str] = Field(description="Artifact file name -> sha256 of its bytes.")
    threshold: float = Field(ge=0, le=1, description="Decision threshold on the probability of default.")
    best_epoch: int = Field(ge=0)
    feature_spec: FeatureSpec
    data_versions: dict[str, str] = Field(
        min_length=1, description="Training partition (YYYY-MM-DD) -> sha256 of its credit_history_tensors file."
    )
    split: SplitSpec
    rows: dict[str, int] = Field(description="Rows per split: train, validation, test.")
    validation_metrics: dict[str, float]
    training_config: dict[str, Any]

    @field_validator("artifacts")
    @classmethod
    def _has_model(cls, value: dict[str, str]) -> dict[str, str]:
        if MODEL_FILE not in value:
            raise ValueError(f"artifacts must include {MODEL_FILE}")
        return value

    @property
    def partitions(self) -> list[str]:
        """Training partitions, oldest first."""
        return sorted(self.data_versions)

    @property
    def model_sha256(self) -> str:
        return self.artifacts[MODEL_FILE]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_document(self) -> dict[str, Any]:
        """JSON-compatible dict (for manifests and reports)."""
        document: dict[str, Any] = json.loads(self.model_dump_json())
        return document

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> ModelVersion:
        """Parse a record; a malformed one fails naming ``source`` and the offending field."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            raise ValueError(f"{source} is not a valid model-version record: {fields}") from None


class BaselineSet(_Frozen):
    """The comparison models trained for one model version, on its data and split."""

    model_version: str
    mlflow_run_id: str
    dagster_run_id: str
    artifacts: dict[str, str] = Field(description="<name>.skops -> sha256.")
    thresholds: dict[str, float]
    validation_roc_auc: dict[str, float]
    data_versions: dict[str, str]
    split: SplitSpec


def version_label(value: str | int) -> str:
    """``v3`` for ``v3``, ``"3"`` or ``3``; a clear error for anything else."""
    text = str(value)
    label = text if text.startswith("v") else f"v{text}"
    if not label[1:].isdigit():
        raise ValueError(f"{value!r} is not a model version: expected vN (e.g. v3) or a registry number")
    return label


def record_from_mapping(document: Mapping[str, Any], source: str) -> ModelVersion:
    """A record from an already-parsed document (e.g. a manifest section)."""
    return ModelVersion.from_json(json.dumps(dict(document), default=str), source)
