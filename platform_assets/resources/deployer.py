"""Rolls the Bento out: a managed local ``bentoml serve`` (default) or a Kubernetes rollout."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import httpx
from pydantic import Field

from platform_assets.core import registry
from platform_assets.core.service_tls import TLSFiles, verify
from platform_assets.deploy.local import DeploymentFailed, LocalServiceManager, ServiceState
from platform_assets.deploy.rollout import RolloutPlan, Strategy


class ServiceDeployer(dg.ConfigurableResource["ServiceDeployer"]):
    """Where and how the credit-risk service runs. Ports are TCP ports; timeouts are seconds."""

    target: Literal["local", "kubernetes"] = Field(default="local", description="local process or Kubernetes.")
    platform_home: str = Field(description="Local state: serving/ (pid, keys) and bentoml/ live below it.")
    tracking_uri: str = Field(description="MLflow tracking URI the service reads its registry from.")
    environment: str = Field(default="local", description="PLATFORM_ENV of the service (prod refuses unverified).")
    inference_db: str = Field(default="", description="Inference log URL (no password) the service writes.")
    inference_db_password: str = Field(default="", description="Its password (a dg.EnvVar), PGPASSWORD.")
    verify_key_file: str | None = Field(default=None, description="Public key the service verifies manifests with.")
    host: str = Field(default="127.0.0.1", description="Interface the local service listens on.")
    port: int = Field(default=3001, description="Port of the local service.")
    workers: int = Field(default=2, ge=1, description="Workers of the local service; with 2+ a dead one costs nothing.")
    tls_dir: str | None = Field(
        default=None, description="Mutual TLS: service/ and client/ (ca.crt, tls.crt, tls.key) below it; none: HTTP."
    )
    strategy: Strategy = Field(
        default="replace", description="replace the champion, or start a canary (the new version first as shadow)."
    )
    first_canary_weight: float = Field(default=10.0, description="Challenger traffic share when a canary starts.")
    shadow_share: float = Field(
        default=registry.DEFAULT_SHADOW_SHARE,
        ge=0.0,
        le=100.0,
        description="Percent of the served applications a new shadow version scores.",
    )
    auto_approve_local: bool = Field(
        default=True,
        description=(
            "Local environment only: a promotion whose gate passed records the labelled auto-approval when no "
            "approval is in force (staging and prod always wait for a named approver)."
        ),
    )
    ready_timeout_seconds: float = Field(default=180.0, description="How long a new service may take to be ready.")
    refresh_seconds: float = Field(default=2.0, description="How often the service polls the registry.")
    k8s_overlay: str = Field(default="k8s/overlays/staging", description="Kustomize overlay for the kubernetes target.")
    k8s_namespace: str = Field(default="credit-risk", description="Namespace of the Rollout.")
    image_repository: str = Field(default="credit-risk-service", description="Image the Bento is containerized as.")

    def state_dir(self) -> Path:
        return Path(self.platform_home) / "serving"

    def api_keys_file(self) -> Path:
        return self.state_dir() / "api_keys.json"

    def bentoml_home(self) -> Path:
        return Path(self.platform_home) / "bentoml"

    def client_tls(self) -> TLSFiles | None:
        """The deployer's client certificate (``<tls_dir>/client``) when the service requires one."""
        return TLSFiles(Path(self.tls_dir) / "client").check() if self.tls_dir else None

    def local_manager(self) -> LocalServiceManager:
        return LocalServiceManager(self.state_dir(), host=self.host, port=self.port, tls=self.client_tls())

    def admin_key(self) -> str:
        """The deployer's own admin key (created once, file mode 0600); only its hash is in the key file."""
        from platform_assets.core.api_keys import create_key

        secret = self.state_dir() / "deployer.key"
        if not secret.exists():
            self.state_dir().mkdir(parents=True, exist_ok=True)
            key, _ = create_key(self.api_keys_file(), ["admin"], note="credit_risk_deployment")
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(key)
        return secret.read_text().strip()

    def service_env(self, bentoml_home: Path) -> dict[str, str]:
        """The local service's environment: the same registry, inference log and verify key as the pipeline's
        table (so what it logs is what monitoring reads), and the service's own keys and BentoML home."""
        self.admin_key()  # the key file must exist before the service reads it
        stores = {"CREDIT_RISK_INFERENCE_DB": self.inference_db} if self.inference_db else {}
        if self.inference_db_password:
            stores["PGPASSWORD"] = self.inference_db_password  # libpq's variable, as the Rollout sets it
        if self.verify_key_file:
            stores["CREDIT_RISK_VERIFY_KEY_FILE"] = self.verify_key_file
        return {
            **stores,
            "PLATFORM_ENV": self.environment,
            "PLATFORM_HOME": self.platform_home,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "BENTOML_HOME": str(bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "CREDIT_RISK_API_KEYS_FILE": str(self.api_keys_file()),
            "CREDIT_RISK_REFRESH_SECONDS": str(self.refresh_seconds),
            "CREDIT_RISK_WORKERS": str(self.workers),
            **({"CREDIT_RISK_TLS_DIR": str(Path(self.tls_dir) / "service")} if self.tls_dir else {}),
        }

    def deploy_local(self, bento: str, code_version: str, bentoml_home: Path) -> tuple[ServiceState, bool]:
        """Serve ``bento``; a running service with the same code is kept (model changes need no restart)."""
        manager = self.local_manager()
        current = manager.current()
        if current is not None and current.bento.rsplit("-", 1)[-1] == code_version:
            return current, False
        return manager.deploy(bento, self.service_env(bentoml_home), self.ready_timeout_seconds)

    def restore_local(self) -> ServiceState | None:
        """Serve the deployed Bento again when the local service is down or lost its supervisor."""
        return self.local_manager().restore(self.service_env(self.bentoml_home()), self.ready_timeout_seconds)

    def wait_for_models(self, state: ServiceState, plan: RolloutPlan) -> dict[str, Any]:
        """Poll ``/admin/status`` until every worker serves what ``plan`` says (champion, challenger and its
        weight, shadow); return the last status.

        Each worker polls the registry on its own: a canary step is only in force once all of them route at
        the new weight, so the answers are told apart by ``worker_pid`` until ``workers`` of them agree.
        """
        headers = {"Authorization": f"Bearer {self.admin_key()}"}
        deadline = time.monotonic() + self.ready_timeout_seconds
        status: dict[str, Any] = {}
        switched: set[Any] = set()
        while time.monotonic() < deadline:
            try:
                response = httpx.post(
                    f"{state.url}/admin/status",
                    json={"refresh": True},
                    headers=headers,
                    timeout=30,
                    verify=verify(self.client_tls()),
                )
                status = response.json() if response.status_code == 200 else {"http_status": response.status_code}
            except httpx.TransportError as error:
                status = {"error": str(error)}
            weight = status.get("challenger_weight_percent")
            if (
                status.get("champion") == plan.champion
                and status.get("challenger") == plan.challenger
                and status.get("shadow") == plan.shadow
                and weight is not None
                and abs(float(weight) - (plan.challenger_weight if plan.challenger else 0.0)) < 1e-9
            ):
                switched.add(status.get("worker_pid"))
                if len(switched) >= self.workers:
                    return status
                time.sleep(0.1)  # the next connection may reach another worker
                continue
            time.sleep(1)
        raise DeploymentFailed(
            f"service at {state.url} did not switch to champion={plan.champion} challenger={plan.challenger} "
            f"shadow={plan.shadow} within {self.ready_timeout_seconds:.0f} s; last status: {status}"
        )
