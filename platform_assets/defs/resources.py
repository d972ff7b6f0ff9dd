"""Resources for the current environment (``PLATFORM_ENV``); secrets and endpoints come from env vars."""

import os

import dagster as dg

from platform_assets import settings
from platform_assets.resources.deployer import ServiceDeployer
from platform_assets.resources.gates import ModelGates
from platform_assets.resources.governance_gates import FairnessGates
from platform_assets.resources.lake import lake_from_uri
from platform_assets.resources.mlflow import ModelRegistry, mlflow_tracking
from platform_assets.resources.monitoring import LiveMonitoring
from platform_assets.resources.signer import signer_from_env
from platform_assets.resources.source import CreditHistorySource
from platform_assets.resources.spark import CreditSparkResource, spark_config
from platform_assets.resources.training_data import TrainingData


@dg.definitions
def resources() -> dg.Definitions:
    env = settings.environment()
    s3_endpoint = os.environ.get("PLATFORM_S3_ENDPOINT") or None
    return dg.Definitions(
        resources={
            "lake": lake_from_uri(settings.lake_uri(), endpoint_url=s3_endpoint),
            "credit_source": CreditHistorySource(
                kind=os.environ.get("PLATFORM_SOURCE", "synthetic"),
                uci_csv=os.environ.get("PLATFORM_UCI_CSV") or None,
                seed=int(os.environ.get("PLATFORM_SEED", "2005")),
                rows_per_day=int(os.environ.get("PLATFORM_ROWS_PER_DAY", "1000")),
                replay_start=os.environ.get("PLATFORM_UCI_REPLAY_START", settings.PARTITIONS_START),
                replay_days=settings.UCI_REPLAY_DAYS,
                s3_endpoint_url=s3_endpoint,
            ),
            "pyspark": CreditSparkResource(spark_config=spark_config()),
            "mlflow_tracker": mlflow_tracking.configured(
                {
                    "experiment_name": settings.EXPERIMENT_NAME,
                    "mlflow_tracking_uri": settings.mlflow_tracking_uri(),
                    "artifact_location": settings.mlflow_artifact_root(),
                    "extra_tags": {"platform_env": env.value},
                }
            ),
            "model_registry": ModelRegistry(
                tracking_uri=settings.mlflow_tracking_uri(), model_name=settings.MODEL_NAME
            ),
            "model_gates": ModelGates(
                auc_floor=float(os.environ.get("PLATFORM_AUC_FLOOR", "0.70")),
                baseline_margin=float(os.environ.get("PLATFORM_BASELINE_MARGIN", "0.02")),
                max_quarantine_share=float(os.environ.get("PLATFORM_MAX_QUARANTINE_SHARE", "0.05")),
            ),
            "deployer": ServiceDeployer(
                target=os.environ.get("PLATFORM_DEPLOY_TARGET", "local"),
                port=int(os.environ.get("PLATFORM_SERVICE_PORT", "3001")),
                strategy=os.environ.get("PLATFORM_ROLLOUT_STRATEGY", "replace"),
                first_canary_weight=float(os.environ.get("PLATFORM_FIRST_CANARY_WEIGHT", "10")),
                k8s_overlay=os.environ.get("PLATFORM_K8S_OVERLAY", "k8s/overlays/staging"),
                k8s_namespace=os.environ.get("PLATFORM_K8S_NAMESPACE", "credit-risk"),
            ),
            "training_data": TrainingData(
                window_days=int(os.environ.get("PLATFORM_TRAINING_WINDOW_DAYS", "0")),
            ),
            "model_signer": signer_from_env(),
            "live_monitoring": LiveMonitoring.from_env(),
            "fairness_gates": FairnessGates(
                min_disparate_impact_ratio=float(os.environ.get("PLATFORM_MIN_DISPARATE_IMPACT", "0.8")),
                max_equal_opportunity_difference=float(os.environ.get("PLATFORM_MAX_EQUAL_OPPORTUNITY_DIFF", "0.1")),
            ),
        }
    )
