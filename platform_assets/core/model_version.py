"""The model version: one frozen, typed record of what was trained, on what, and how.

Training writes it once, as ``models/<model>/<version>/model_version.json`` in the lake, and every
per-version asset (evaluation, reports, manifest, card, Bento, rollout) reads exactly the version its
partition key names. Nothing moves after it is written: there is no "latest" pointer.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from platform_assets.core.reason_codes import ReasonCodes

#: The lake document of one version, beside its artifacts.
RECORD_FILE: Final = "model_version.json"
#: The Keras artifact of a version (its sha256 is in ``artifacts``): what evaluation and governance load.
MODEL_FILE: Final = "model.keras"
#: The same calibrated model exported to ONNX (its sha256 is in ``artifacts``): what the service and the batch
#: rescoring run (``core.onnx_runtime``), checked against the Keras model when the version is trained.
ONNX_FILE: Final = "model.onnx"


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
    max_holdout_rows: int | None = Field(
        default=None,
        ge=2,
        description=(
            "Cap on the validation and on the test split, rows each: per class min(round(n_c x fraction), "
            "floor(n_c x cap / n)); the rest train. None: the fractions alone."
        ),
    )


class Calibration(_Frozen):
    """Maps a model's raw score (its logit) to a calibrated probability of default; fitted on the validation split.

    ``platt``: ``sigmoid(slope * logit + intercept)``. ``isotonic``: linear interpolation through
    ``(knots_logit, knots_probability)``, constant outside the first and last knot. The method is the one with
    the lower cross-validated log-loss on the validation split (``validation_log_loss``, per method, plus
    ``uncalibrated`` for the raw score). ``weighted``: fits and log-losses weighted each validation row by its
    reject-inference weight (training on the approved with ``reject_inference='reweight'``).
    """

    method: Literal["platt", "isotonic"]
    slope: float | None = Field(default=None, description="Platt: multiplies the logit.")
    intercept: float | None = Field(default=None, description="Platt: added to the scaled logit.")
    knots_logit: tuple[float, ...] = Field(default=(), description="Isotonic: increasing logits.")
    knots_probability: tuple[float, ...] = Field(default=(), description="Isotonic: non-decreasing, in (0, 1).")
    validation_log_loss: dict[str, float] = Field(
        description="Cross-validated log-loss (nats per row) by method; when ``weighted``, the weighted mean over the "
        "rows (nats per unit of weight)."
    )
    validation_rows: int = Field(gt=0, description="Validation rows the calibration was fitted on.")
    weighted: bool = Field(
        default=False,
        description="Fits and validation log-losses weighted by the rows' inverse-approval weights (reject "
        "inference); False: every row counts once. Records from before this field load as False.",
    )

    @model_validator(mode="after")
    def _parameters_match_method(self) -> Calibration:
        if self.method == "platt" and (self.slope is None or self.intercept is None or self.knots_logit):
            raise ValueError("a platt calibration has a slope and an intercept and no knots")
        if self.method == "isotonic":
            x, y = self.knots_logit, self.knots_probability
            if len(x) < 2 or len(x) != len(y) or self.slope is not None or self.intercept is not None:
                raise ValueError("an isotonic calibration has >= 2 knots (logit, probability) and no slope")
            if any(b <= a for a, b in itertools.pairwise(x)) or any(b < a for a, b in itertools.pairwise(y)):
                raise ValueError("isotonic knots must increase in logit and not decrease in probability")
            if not (0.0 < y[0] and y[-1] < 1.0):
                raise ValueError("isotonic knot probabilities must lie in (0, 1)")
        return self


class ThresholdPolicy(_Frozen):
    """How the decision threshold on the calibrated probability of default was set.

    ``expected_cost``: decline when the expected loss exceeds the expected margin,
    ``PD * loss_given_default > (1 - PD) * margin``, i.e. threshold ``margin / (margin + loss_given_default)``
    (both per unit of exposure). ``approval_rate``: the threshold that approves ``target_approval_rate`` of the
    validation split.
    """

    kind: Literal["expected_cost", "approval_rate"]
    loss_given_default: float | None = Field(default=None, gt=0, le=1, description="Share of exposure lost.")
    margin: float | None = Field(default=None, gt=0, description="Share of exposure earned on a good loan.")
    target_approval_rate: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _parameters_match_kind(self) -> ThresholdPolicy:
        cost = self.loss_given_default is not None and self.margin is not None
        if (self.kind == "expected_cost") != cost or (self.kind == "approval_rate") != (
            self.target_approval_rate is not None
        ):
            raise ValueError(f"threshold policy {self.kind!r} has the wrong parameters")
        return self


class InverseApprovalWeights(_Frozen):
    """Reject-inference sample weights (``ml.reject_inference``): ``1 / max(P(approved | x), min_probability)``
    divided by ``normaliser``, with ``P(approved | x) = sigmoid(((x - feature_means) / feature_scales) .
    coefficients + intercept)`` over the flat features (history tensor flattened, then static)."""

    feature_means: tuple[float, ...] = Field(min_length=1, description="Standardisation: mean per flat feature.")
    feature_scales: tuple[float, ...] = Field(min_length=1, description="Standardisation: scale per flat feature.")
    coefficients: tuple[float, ...] = Field(min_length=1, description="Logistic regression on the scaled features.")
    intercept: float
    min_probability: float = Field(gt=0, le=1, description="Floor on the approval probability (caps a weight).")
    normaliser: float = Field(gt=0, description="Mean raw weight over the labelled training rows: weights mean 1.")
    fitted_rows: int = Field(gt=0, description="Training-split applicants (approved and declined) it was fitted on.")
    approval_rate: float = Field(ge=0, le=1, description="Share of those applicants the champion approved.")
    effective_sample_size: float = Field(
        gt=0, description="Kish's (sum w)^2 / sum w^2 over the labelled training rows, applicants."
    )

    @model_validator(mode="after")
    def _same_width(self) -> InverseApprovalWeights:
        widths = {len(self.feature_means), len(self.feature_scales), len(self.coefficients)}
        if len(widths) != 1:
            raise ValueError("feature_means, feature_scales and coefficients must have one value per flat feature")
        return self


class LabelSelection(_Frozen):
    """Which outcomes a version learnt from. ``outcomes="all"``: every row's outcome (records written before
    the setting existed). ``"approved"``: a training or validation row kept its outcome only if ``selected_by``
    (the champion when it was trained) approved it in its committed ``portfolio_scores``; the test split kept
    every outcome (through the door). ``reject_inference="reweight"``: the kept training rows were weighted by
    ``weights``."""

    outcomes: Literal["all", "approved"] = "all"
    reject_inference: Literal["none", "reweight"] = "none"
    selected_by: str | None = Field(
        default=None, pattern=r"^v[0-9]+$", description="The champion version whose decisions selected the labels."
    )
    scores_versions: dict[str, str] = Field(
        default_factory=dict, description="Training partition -> digest of selected_by's portfolio_scores of it."
    )
    labelled_rows: dict[str, int] = Field(
        default_factory=dict, description="Train and validation rows that kept their outcome (champion approved)."
    )
    declined_rows: dict[str, int] = Field(
        default_factory=dict, description="Train and validation rows left out: the champion declined them."
    )
    weights: InverseApprovalWeights | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LabelSelection:
        if self.reject_inference == "reweight" and self.outcomes != "approved":
            raise ValueError("reject_inference 'reweight' needs outcomes 'approved'")
        if (self.reject_inference == "reweight") != (self.weights is not None):
            raise ValueError("weights are recorded exactly when reject_inference is 'reweight'")
        if (self.outcomes == "approved") != (self.selected_by is not None and bool(self.scores_versions)):
            raise ValueError("selected_by and scores_versions are recorded exactly when outcomes is 'approved'")
        return self


class ModelVersion(_Frozen):
    """One trained version of ``model``. Probabilities and thresholds are in [0, 1]; rows are counts."""

    model: str
    version: str = Field(pattern=r"^v[0-9]+$", description="Registry label, e.g. 'v3'.")
    registered_version: str = Field(description="MLflow model-registry version number, e.g. '3'.")
    mlflow_run_id: str
    mlflow_model_uri: str
    dagster_run_id: str = Field(description="The Dagster run that trained this version.")
    launched_by: str | None = Field(
        default=None,
        description=(
            "Who launched that run: sensor:<name>, schedule:<name> or user:<name> (core.approval); None in records "
            "written before it was recorded."
        ),
    )
    trained_at: datetime
    artifacts: dict[str, str] = Field(description="Artifact file name -> sha256 of its bytes.")
    threshold: float = Field(ge=0, le=1, description="Decision threshold on the calibrated probability of default.")
    threshold_policy: ThresholdPolicy
    calibration: Calibration = Field(description="Built into the served model: its output is the calibrated PD.")
    reason_codes: ReasonCodes = Field(description="Adverse-action reason table, groups and reference applicant.")
    best_epoch: int = Field(ge=0)
    feature_spec: FeatureSpec
    data_versions: dict[str, str] = Field(
        min_length=1, description="Training partition (YYYY-MM-DD) -> sha256 of its credit_history_tensors file."
    )
    split: SplitSpec
    rows: dict[str, int] = Field(
        description="Rows per split: train, validation, test (train and validation: the labelled rows it learnt from)."
    )
    validation_metrics: dict[str, float]
    training_config: dict[str, Any]
    label_selection: LabelSelection = Field(
        default_factory=LabelSelection,
        description="Which outcomes it learnt from (default for records written before: every outcome).",
    )

    @field_validator("artifacts")
    @classmethod
    def _has_model(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [name for name in (MODEL_FILE, ONNX_FILE) if name not in value]
        if missing:
            raise ValueError(f"artifacts must include {' and '.join(missing)}")
        return value

    @property
    def partitions(self) -> list[str]:
        """Training partitions, oldest first."""
        return sorted(self.data_versions)

    @property
    def model_sha256(self) -> str:
        """sha256 of ``model.keras``."""
        return self.artifacts[MODEL_FILE]

    @property
    def onnx_sha256(self) -> str:
        """sha256 of ``model.onnx``, the served artifact."""
        return self.artifacts[ONNX_FILE]

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


class TrainingSample(_Frozen):
    """Which training rows a model was fitted on: all of the split, or a seeded sample of ``max_rows`` of them."""

    rows: int = Field(gt=0, description="Rows fitted on.")
    split_rows: int = Field(gt=0, description="Rows in the training split.")
    max_rows: int = Field(gt=0, description="The cap: a split with more rows is sampled to this many.")
    seed: int = Field(description="Seed of the ID hash that picks the sampled rows.")


class BaselineSet(_Frozen):
    """The comparison models trained for one model version, on its data and split."""

    model_version: str
    mlflow_run_id: str
    dagster_run_id: str
    artifacts: dict[str, str] = Field(description="<name>.skops -> sha256.")
    thresholds: dict[str, float] = Field(description="Per model, by the version's threshold policy.")
    calibrations: dict[str, Calibration] = Field(description="Per model, applied to its decision_function.")
    validation_roc_auc: dict[str, float]
    data_versions: dict[str, str]
    split: SplitSpec
    training_sample: TrainingSample | None = Field(
        default=None, description="The training rows the baselines were fitted on (None: the whole split)."
    )


def version_label(value: str | int) -> str:
    """``v3`` for ``v3``, ``"3"`` or ``3``; a clear error for anything else."""
    text = str(value)
    label = text if text.startswith("v") else f"v{text}"
    if not label[1:].isdigit():
        raise ValueError(f"{value!r} is not a model version: expected vN (e.g. v3) or a registry number")
    return label
