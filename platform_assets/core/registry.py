"""The MLflow model registry as a contract: the model's name, the aliases that say who serves, the tags the
service verifies when it loads a version, and the moves of aliases, traffic weight and shadow share.

A rollout's whole state is three aliases and four registered-model tags: ``champion`` answers, ``challenger``
answers ``challenger_weight`` percent of application IDs (since ``challenger_step_since``), and ``shadow``
scores ``shadow_share`` percent of the applications the others answered, off the response path, without ever
deciding one (since ``shadow_since``). A version holds at most one of the three roles.

A registered version is the served model, ``model.onnx`` in MLflow's onnx flavor; the Keras model it was
exported from is logged in the same run (``KERAS_MODEL_URI_TAG``). Training writes these tags
(``platform_assets.resources.mlflow.register_model_version``); the service reads
them (``platform_assets.serving.registry_polling``); the rollout moves the aliases. MLflow is imported
only when a function runs.
"""

from __future__ import annotations

from typing import Any, Final

#: The registered model of the platform.
MODEL_NAME: Final = "default_risk_model"
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
#: A candidate that scores served applications for comparison only; its decisions are logged, never returned.
SHADOW: Final = "shadow"
#: Every role a version can hold, in order of authority.
ROLES: Final = (CHAMPION, CHALLENGER, SHADOW)
#: Registered-model tag: the challenger's share of traffic in percent (0..100).
WEIGHT_TAG: Final = "challenger_weight"
#: Registered-model tag: when the challenger's current canary step began (ISO 8601, UTC; empty without a
#: challenger). With the aliases and the weight it is the whole state of a model-version rollout.
STEP_SINCE_TAG: Final = "challenger_step_since"
#: Registered-model tag: percent (0..100) of the served applications the shadow also scores; absent -> 100.
SHADOW_SHARE_TAG: Final = "shadow_share"
DEFAULT_SHADOW_SHARE: Final = 100.0
#: Registered-model tag: when the current shadow began (ISO 8601, UTC; empty without a shadow).
SHADOW_SINCE_TAG: Final = "shadow_since"
#: Version tags the service reads (and verifies) when it loads a version.
THRESHOLD_TAG: Final = "threshold"
FEATURE_SPEC_TAG: Final = "feature_spec_version"
SHA_TAG: Final = "model_onnx_sha256"
#: Version tag (lineage only): the logged Keras model the ONNX model was exported from.
KERAS_MODEL_URI_TAG: Final = "keras_model_uri"
#: Run artifact: the version's reason section (``core.reason_codes.ReasonCodes`` as JSON), and the version tag
#: with its sha256; the service explains declines with exactly this document.
REASON_CODES_FILE: Final = "reason_codes.json"
REASON_CODES_SHA_TAG: Final = "reason_codes_sha256"
#: Version tag: sha256 of the version's signed manifest.json (set by model_manifest).
MANIFEST_SHA_TAG: Final = "manifest_sha256"
#: Where MLflow's onnx flavor keeps the model inside a logged model (always one file: no external data).
MODEL_FILE: Final = "model.onnx"


def client(tracking_uri: str | None) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def set_alias(alias: str, version: str | int, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> None:
    """Point ``alias`` (champion, challenger or shadow) at ``version`` (``3`` or ``"v3"``)."""
    client(tracking_uri).set_registered_model_alias(model_name, alias, str(version).removeprefix("v"))


def remove_alias(alias: str, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> None:
    client(tracking_uri).delete_registered_model_alias(model_name, alias)


def set_challenger_weight(percent: float, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> None:
    """Route ``percent`` (0..100) of application IDs to the challenger."""
    weight = check_percent("challenger weight", percent)
    client(tracking_uri).set_registered_model_tag(model_name, WEIGHT_TAG, repr(weight))


def check_percent(name: str, percent: float) -> float:
    """``percent`` as a float; ``ValueError`` naming ``name`` unless it is within 0..100."""
    value = float(percent)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be within 0..100 percent, got {percent}")
    return value


def set_shadow_share(percent: float, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> None:
    """Let the shadow score ``percent`` (0..100) of the served applications (by application ID)."""
    share = check_percent("shadow share", percent)
    client(tracking_uri).set_registered_model_tag(model_name, SHADOW_SHARE_TAG, repr(share))


#: Version tag: who launched the training run that created the version (``core.approval.launcher_from_run_tags``:
#: ``sensor:<name>``, ``schedule:<name>`` or ``user:<name>``); the maker of maker-checker.
LAUNCHED_BY_TAG: Final = "launched_by"
#: Version tag: the version's signed promotion approval (``core.approval.PromotionApproval``, compact JSON).
PROMOTION_APPROVAL_TAG: Final = "promotion_approval"
#: Version tags: when (ISO 8601, UTC) and why a version was retired: it was champion and was replaced, or it was
#: rolled back from shadow or canary. A retired version cannot be approved for promotion.
RETIRED_TAG: Final = "retired_at"
RETIRED_REASON_TAG: Final = "retired_reason"
