"""Every resource, bound once: from the settings (``platform_assets.settings``) and the environment's table.

Secrets never pass through here as values: the inference log's password is a ``dg.EnvVar`` resolved when a
run starts (the UI shows the variable's name, not its value), the signing key is read from the variable or
file the signer names, S3 credentials come from the AWS credential chain.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from platform_assets import settings
from platform_assets.core import registry
from platform_assets.resources.deployer import ServiceDeployer
from platform_assets.resources.gates import ModelGates
from platform_assets.resources.governance_gates import FairnessGates
from platform_assets.resources.lake import lake_from_uri
from platform_assets.resources.mlflow import ModelRegistry, mlflow_tracking
from platform_assets.resources.monitoring import LiveMonitoring
from platform_assets.resources.signer import ModelSigner
from platform_assets.resources.source import CreditHistorySource
from platform_assets.resources.spark import CreditSparkResource
from platform_assets.resources.training_data import TrainingData


def spark_config(config: settings.PlatformSettings) -> dict[str, str]:
    """Spark's settings; Arrow makes the pandas hand-off cheap."""
    return {
        "spark.master": config.spark_master,
        "spark.app.name": "credit-risk-platform",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": str(config.spark_shuffle_partitions),
        "spark.ui.enabled": str(config.spark_ui_enabled).lower(),
        "spark.driver.memory": config.spark_driver_memory,
    }


def signer(config: settings.PlatformSettings) -> ModelSigner:
    """The manifest signer of the environment (the audit CLI uses the same)."""
    return ModelSigner(
        private_key_file=config.signing_key_file,
        public_key_file=config.verify_key_file,
        demo_key_dir=str(config.home_dir / "keys"),
        environment=config.env.value,
    )


def inference_db_password(topology: settings.Topology) -> Any:
    """The inference log's password as a ``dg.EnvVar`` (resolved when a run starts), ``""`` when it has none."""
    return dg.EnvVar(topology.inference_db_password_env) if topology.inference_db_password_env else ""


def live_monitoring(config: settings.PlatformSettings, topology: settings.Topology) -> LiveMonitoring:
    local = topology.deploy_target == "local"
    scheme = "https" if config.service_tls_dir else "http"
    service_url = config.loop_service_url
    if service_url is None:
        service_url = f"{scheme}://127.0.0.1:{config.service_port}" if local else ""
    return LiveMonitoring(
        inference_db=topology.inference_db,
        inference_db_password=inference_db_password(topology),
        service_url=service_url,
        tls_client_dir=str(config.service_tls_dir / "client") if config.service_tls_dir else None,
        window_hours=config.loop_window_hours,
        drop_mode=config.loop_drop_mode,
        accuracy_floor=config.loop_accuracy_floor,
        max_auc_drop=config.loop_max_auc_drop,
        max_accuracy_drop=config.loop_max_accuracy_drop,
        min_labelled=config.loop_min_labelled,
        retrigger_hours=config.loop_retrigger_hours,
        use_estimate=config.loop_use_estimate,
        min_predictions_for_estimate=config.loop_min_predictions_for_estimate,
        max_estimated_auc_drop=config.loop_max_estimated_auc_drop,
        max_estimated_accuracy_drop=config.loop_max_estimated_accuracy_drop,
        drift_share=config.loop_drift_share,
        canary_steps=config.canary_steps(),
        canary_min_labelled=config.loop_canary_min_labelled,
        canary_max_auc_drop=config.loop_canary_max_auc_drop,
        canary_max_accuracy_drop=config.loop_canary_max_accuracy_drop,
        canary_max_error_rate=config.loop_canary_max_error_rate,
        canary_max_p99_seconds=config.loop_canary_max_p99_seconds,
        promotion_min_labelled=config.promotion_min_labelled,
        promotion_auc_margin=config.promotion_auc_margin,
        promotion_max_labelled_inconclusive=config.promotion_max_labelled_inconclusive,
        promotion_max_approval_rate_change=config.promotion_max_approval_rate_change,
        promotion_shadow_min_predictions=config.promotion_shadow_min_predictions,
        mode=config.loop_mode,
        ab_hours=config.loop_ab_hours,
    )


def resources_for(config: settings.PlatformSettings) -> dict[str, Any]:
    """The resources of ``config.env``; the one place they are bound."""
    topology = settings.topology(config)
    return {
        "lake": lake_from_uri(topology.lake_uri, endpoint_url=config.s3_endpoint),
        "credit_source": CreditHistorySource(
            kind=config.source,
            uci_csv=config.uci_csv,
            seed=config.seed,
            rows_per_day=config.rows_per_day,
            replay_start=config.uci_replay_start,
            replay_days=settings.UCI_REPLAY_DAYS,
            s3_endpoint_url=config.s3_endpoint,
        ),
        "pyspark": CreditSparkResource(spark_config=spark_config(config)),
        "mlflow_tracker": mlflow_tracking.configured(
            {
                "experiment_name": settings.EXPERIMENT_NAME,
                "mlflow_tracking_uri": topology.mlflow_tracking_uri,
                "artifact_location": topology.mlflow_artifacts,
                "extra_tags": {"platform_env": config.env.value},
            }
        ),
        "model_registry": ModelRegistry(tracking_uri=topology.mlflow_tracking_uri, model_name=registry.MODEL_NAME),
        "model_gates": ModelGates(
            auc_floor=config.auc_floor,
            baseline_margin=config.baseline_margin,
            max_quarantine_share=config.max_quarantine_share,
        ),
        "deployer": ServiceDeployer(
            target=topology.deploy_target,
            platform_home=str(config.home_dir),
            tracking_uri=topology.mlflow_tracking_uri,
            environment=config.env.value,
            inference_db=topology.inference_db,
            inference_db_password=inference_db_password(topology),
            verify_key_file=config.verify_key_file,
            port=config.service_port,
            workers=config.service_workers,
            tls_dir=str(config.service_tls_dir) if config.service_tls_dir else None,
            strategy=config.rollout_strategy,
            first_canary_weight=config.first_canary_weight,
            shadow_share=config.shadow_share,
            auto_approve_local=config.auto_approve_local,
            k8s_overlay=topology.k8s_overlay,
            k8s_namespace=topology.k8s_namespace,
        ),
        "training_data": TrainingData(window_days=config.training_window_days),
        "model_signer": signer(config),
        "live_monitoring": live_monitoring(config, topology),
        "fairness_gates": FairnessGates(
            min_disparate_impact_ratio=config.min_disparate_impact,
            max_equal_opportunity_difference=config.max_equal_opportunity_diff,
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    config = settings.load()
    settings.require_secrets(config)
    return dg.Definitions(resources=resources_for(config))
