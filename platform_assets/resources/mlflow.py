"""MLflow: run tracking through dagster-mlflow, and the model registry."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from platform_assets.core import registry
from platform_assets.core.model_version import version_label
from platform_assets.core.reason_codes import ReasonCodes
from platform_assets.core.registry import WEIGHT_TAG as CHALLENGER_WEIGHT_TAG
from platform_assets.deploy.rollout import RolloutPlan
from platform_assets.ml import features

#: Where MLflow's tensorflow flavor keeps the .keras file inside a logged model.
KERAS_MODEL_FILE = "data/model.keras"
#: The distributions the logged Keras model needs to load again, pinned at this environment's versions: what MLflow
#: infers (it names ``tensorflow`` besides ``tensorflow-cpu``), given explicitly because inferring them loads the
#: model in a Python subprocess that imports TensorFlow: 7.0 of the 8.1 s ``register_model_version`` took.
KERAS_REQUIREMENTS = ("tensorflow-cpu", "keras", "numpy", "cloudpickle")


def prepare_tracking_store(tracking_uri: str, experiment_name: str, artifact_location: str | None) -> None:
    """Create the SQLite folder and the experiment (with its artifact root) before anyone uses them.

    Without this, MLflow creates the experiment with artifacts under ``./mlruns`` of whatever folder
    the process happens to run in.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if artifact_location and artifact_location.startswith("file://"):
        Path(artifact_location[len("file://") :]).mkdir(parents=True, exist_ok=True)
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri[len("sqlite:///") :])
        database.parent.mkdir(parents=True, exist_ok=True)
        # Two runs starting at once on a fresh home would both run MLflow's schema migrations on the same
        # SQLite file and one fails ("Online migration expected to match one row"): create it under a lock.
        with open(database.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mlflow.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(experiment_name) is None:
        try:
            client.create_experiment(experiment_name, artifact_location=artifact_location)
        except MlflowException:
            if client.get_experiment_by_name(experiment_name) is None:  # not a lost race: a real failure
                raise


@dg.resource(
    config_schema={
        **CONFIG_SCHEMA,
        "artifact_location": dg.Field(
            dg.Noneable(dg.StringSource), default_value=None, description="Artifact root of the experiment."
        ),
    },
    description="dagster-mlflow tracking: one MLflow run per Dagster run, tagged with its dagster_run_id.",
)
def mlflow_tracking(context: dg.InitResourceContext) -> MlFlow:
    import mlflow

    config = context.resource_config
    if config.get("mlflow_tracking_uri"):
        prepare_tracking_store(config["mlflow_tracking_uri"], config["experiment_name"], config["artifact_location"])
        # The registry lives in the tracking store: never in whatever registry URI the process set before.
        mlflow.set_registry_uri(config["mlflow_tracking_uri"])
    return MlFlow(context)  # type: ignore[no-untyped-call]  # dagster-mlflow leaves MlFlow.__init__ unannotated


@contextmanager
def tracking_run(tracker: MlFlow) -> Iterator[str]:
    """Make the Dagster run's MLflow run active for one asset, and finish it when the asset is done.

    Several assets of one Dagster run share its MLflow run; each reopens it and leaves it FINISHED,
    so a run materialized from the UI without a job hook is not left RUNNING.
    """
    import mlflow

    active = mlflow.active_run()
    # dagster-mlflow starts a fresh run without recording its id; adopt it so later assets reopen it.
    run_id = tracker.mlflow_run_id or (active.info.run_id if active is not None else None)
    if run_id is None:
        raise RuntimeError("dagster-mlflow started no MLflow run for this Dagster run")
    tracker.mlflow_run_id = run_id
    if active is None or active.info.run_id != run_id:
        if active is not None:
            mlflow.end_run()
        mlflow.start_run(run_id=run_id)
    try:
        yield run_id
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()


class ModelRegistry(dg.ConfigurableResource["ModelRegistry"]):
    """The MLflow model registry, for reading runs and versions and moving aliases."""

    tracking_uri: str
    model_name: str

    def client(self) -> Any:
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def aliases(self) -> dict[str, str]:
        """``{"champion": "v3", ...}`` for the registered model; empty when it has no aliases (or no versions)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client().get_registered_model(self.model_name)
        except MlflowException:
            return {}
        return {alias: f"v{version}" for alias, version in model.aliases.items()}

    def state(self) -> RolloutPlan | None:
        """The rollout state the registry holds now (action ``unchanged``; the share tag left as it is); None
        without a champion. ``ValueError`` when one version holds two roles (an alias set by hand)."""
        aliases = self.aliases()
        if registry.CHAMPION not in aliases:
            return None
        challenger = aliases.get(registry.CHALLENGER)
        return RolloutPlan(
            aliases[registry.CHAMPION],
            challenger,
            self.challenger_weight() if challenger else 0.0,
            "unchanged",
            shadow=aliases.get(registry.SHADOW),
        )

    def challenger_weight(self) -> float:
        """The challenger's traffic share in percent (0 when unset)."""
        return float(self._tags().get(CHALLENGER_WEIGHT_TAG, 0.0))

    def step_started(self) -> datetime | None:
        """When the challenger's current canary step began (UTC); None without a challenger or a recorded start."""
        value = self._tags().get(registry.STEP_SINCE_TAG, "")
        return datetime.fromisoformat(value) if value else None

    def shadow_share(self) -> float:
        """Percent of the served applications the shadow scores (``registry.DEFAULT_SHADOW_SHARE`` when unset)."""
        value = self._tags().get(registry.SHADOW_SHARE_TAG, "")
        return float(value) if value else registry.DEFAULT_SHADOW_SHARE

    def shadow_started(self) -> datetime | None:
        """When the current shadow began (UTC); None without a shadow (its alias removed by hand too) or a
        recorded start."""
        model = self._registered()
        if model is None or registry.SHADOW not in model.aliases:
            return None
        value = dict(model.tags).get(registry.SHADOW_SINCE_TAG, "")
        return datetime.fromisoformat(value) if value else None

    def _registered(self) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_registered_model(self.model_name)
        except MlflowException:
            return None

    def _tags(self) -> dict[str, str]:
        model = self._registered()
        return dict(model.tags) if model is not None else {}

    def apply(self, plan: RolloutPlan) -> None:
        """Move the aliases, weight and shadow share to ``plan`` (``restore``)."""
        self.restore(plan.aliases(), plan.challenger_weight, plan.shadow_share)

    def restore(self, aliases: dict[str, str], weight: float, shadow_share: float | None = None) -> None:
        """Set exactly ``aliases`` (champion/challenger/shadow), the challenger ``weight`` and, unless None, the
        ``shadow_share`` (percent).

        The challenger weight goes to 0 first and the aliases that go away are removed before any is moved, so no
        request is routed to a version that is about to stop being the challenger, and a version moving to
        another role (shadow to challenger, challenger to champion) never holds two on the way. A challenger's
        step starts now (``step_started``), so its measurements cover this state only; a shadow's start
        (``shadow_started``) is kept while the same version stays the shadow.
        """
        client = self.client()
        before = self.aliases()
        client.set_registered_model_tag(self.model_name, CHALLENGER_WEIGHT_TAG, "0.0")
        for alias in registry.ROLES:
            if alias in before and alias not in aliases:
                client.delete_registered_model_alias(self.model_name, alias)
        for alias in registry.ROLES:
            if alias in aliases and aliases[alias] != before.get(alias):
                client.set_registered_model_alias(self.model_name, alias, aliases[alias].removeprefix("v"))
        now = datetime.now(UTC).isoformat()
        step_since = now if registry.CHALLENGER in aliases else ""
        client.set_registered_model_tag(self.model_name, registry.STEP_SINCE_TAG, step_since)
        shadow = aliases.get(registry.SHADOW)
        if shadow is None:
            client.set_registered_model_tag(self.model_name, registry.SHADOW_SINCE_TAG, "")
        elif shadow != before.get(registry.SHADOW) or self.shadow_started() is None:
            client.set_registered_model_tag(self.model_name, registry.SHADOW_SINCE_TAG, now)
        if shadow_share is not None:
            share = registry.check_percent("shadow share", shadow_share)
            client.set_registered_model_tag(self.model_name, registry.SHADOW_SHARE_TAG, repr(share))
        client.set_registered_model_tag(self.model_name, CHALLENGER_WEIGHT_TAG, repr(float(weight)))

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        client = self.client()
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def retire(self, version: str, reason: str) -> str:
        """Mark ``version`` (``v3`` or ``3``) retired (tags ``retired_at``, ``retired_reason``); return when it was.

        Call it once the version holds no alias any more: after the champion was replaced, or after a rollback from
        shadow or canary. A retired version cannot be approved for promotion (``core.approval``). Retiring it again
        keeps the first time. Raises ``ValueError`` for an unknown version, an empty reason, or a version that still
        holds an alias.
        """
        from mlflow.exceptions import MlflowException

        label = version_label(version)
        if not reason.strip():
            raise ValueError(f"retiring {self.model_name} {label} needs a reason")
        holding = sorted(alias for alias, held in self.aliases().items() if held == label)
        if holding:
            raise ValueError(
                f"{self.model_name} {label} still holds the alias {', '.join(holding)}: move it before retiring {label}"
            )
        client = self.client()
        try:
            tags = dict(client.get_model_version(self.model_name, label.removeprefix("v")).tags or {})
        except MlflowException as error:
            raise ValueError(f"cannot retire {self.model_name} {label}: {error.message}") from None
        if tags.get(registry.RETIRED_TAG):
            return str(tags[registry.RETIRED_TAG])
        retired_at = datetime.now(UTC).isoformat()
        client.set_model_version_tag(self.model_name, label.removeprefix("v"), registry.RETIRED_REASON_TAG, reason)
        client.set_model_version_tag(self.model_name, label.removeprefix("v"), registry.RETIRED_TAG, retired_at)
        return retired_at


@dataclass(frozen=True)
class RegisteredVersion:
    version: str  # registry version number, e.g. "3"
    label: str  # "v3": the model_version label used in the lake, responses, the log and metrics
    model_uri: str  # the registered (served) ONNX model
    keras_model_uri: str
    onnx_sha256: str
    onnx_bytes: bytes
    keras_sha256: str
    keras_bytes: bytes
    #: Largest |ONNX Runtime - Keras| probability on the rows the export was checked on.
    onnx_max_abs_diff: float


def register_model_version(
    model: Any,
    *,
    threshold: float,
    reason_codes: ReasonCodes,
    example_inputs: dict[str, Any],
    check_inputs: dict[str, Any],
    model_name: str = registry.MODEL_NAME,
    dagster_run_id: str = "",
    extra_tags: dict[str, str] | None = None,
) -> RegisteredVersion:
    """Log the Keras ``model``, its ONNX export and its ``reason_codes`` (``reason_codes.json``) to the active
    MLflow run, check the ONNX model MLflow stored against Keras on ``check_inputs`` (the validation split;
    ``ml.onnx_export.OnnxMismatch`` when it differs), and only then register the ONNX model as a version tagged
    for serving.

    Tags: ``threshold``, ``feature_spec_version``, ``model_onnx_sha256`` (of the bytes MLflow stored),
    ``keras_model_uri``, ``reason_codes_sha256``, ``lake_version`` and ``dagster_run_id``, plus ``extra_tags``.
    """
    import mlflow
    import onnx

    from platform_assets.ml.onnx_export import check_onnx, export_onnx
    from platform_assets.ml.train import predict_cnn

    signature = mlflow.models.infer_signature(example_inputs, predict_cnn(model, example_inputs))
    keras_logged = mlflow.tensorflow.log_model(
        model,
        name="keras_model",
        signature=signature,
        pip_requirements=[f"{d}=={importlib.metadata.version(d)}" for d in KERAS_REQUIREMENTS],
    )
    onnx_logged = mlflow.onnx.log_model(
        onnx.load_from_string(export_onnx(model)),
        name="model",
        signature=signature,
        # One self-contained file: the service and the manifest hash exactly one artifact.
        save_as_external_data=False,
        # Explicit, so MLflow does not load the model in a subprocess to infer them.
        pip_requirements=[f"onnxruntime=={importlib.metadata.version('onnxruntime')}"],
    )
    reasons = reason_codes.model_dump_json(indent=2)
    mlflow.log_text(reasons, registry.REASON_CODES_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_bytes = (
            Path(mlflow.artifacts.download_artifacts(onnx_logged.model_uri, dst_path=f"{tmp}/onnx"))
            / registry.MODEL_FILE
        ).read_bytes()
        keras_bytes = (
            Path(mlflow.artifacts.download_artifacts(keras_logged.model_uri, dst_path=f"{tmp}/keras"))
            / KERAS_MODEL_FILE
        ).read_bytes()
    # The very bytes that will serve are checked, before any version exists.
    diff = check_onnx(onnx_bytes, model, check_inputs)
    registered = mlflow.register_model(onnx_logged.model_uri, model_name)
    version = str(registered.version)
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    tags = {
        registry.THRESHOLD_TAG: repr(float(threshold)),
        registry.FEATURE_SPEC_TAG: features.FEATURE_SPEC_VERSION,
        registry.SHA_TAG: sha,
        registry.KERAS_MODEL_URI_TAG: keras_logged.model_uri,
        registry.REASON_CODES_SHA_TAG: hashlib.sha256(reasons.encode("utf-8")).hexdigest(),
        "lake_version": version_label(version),
        "dagster_run_id": dagster_run_id,
        **(extra_tags or {}),
    }
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    return RegisteredVersion(
        version=version,
        label=version_label(version),
        model_uri=onnx_logged.model_uri,
        keras_model_uri=keras_logged.model_uri,
        onnx_sha256=sha,
        onnx_bytes=onnx_bytes,
        keras_sha256=hashlib.sha256(keras_bytes).hexdigest(),
        keras_bytes=keras_bytes,
        onnx_max_abs_diff=diff,
    )
