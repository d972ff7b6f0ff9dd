"""The local service's health: a service that is down or lost its supervisor is served again.

Inside one supervisor, ``bentoml serve`` dying is repaired in seconds (``deploy.supervisor``); this
sensor covers what the supervisor cannot: the supervisor itself killed, or everything gone (a reboot,
an OOM kill of the whole session). In Kubernetes the pods' probes and the Deployment do this, and the
sensor only says so.
"""

import dagster as dg

from platform_assets.deploy.local import DeploymentFailed
from platform_assets.resources.deployer import ServiceDeployer


@dg.sensor(
    name="service_health_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Checks the local model service every 30 s; when the deployed Bento is down or runs without its "
        "supervisor, starts it again under a supervisor (the tick says what it found and did)."
    ),
)
def service_health_sensor(context: dg.SensorEvaluationContext, deployer: ServiceDeployer) -> dg.SkipReason:
    if deployer.target != "local":
        return dg.SkipReason(f"target {deployer.target}: the cluster's probes restart the service")
    health = deployer.local_manager().health()
    if health in ("serving", "retired"):
        return dg.SkipReason(f"local service: {health}")
    context.log.warning(f"local service is {health}: restoring it")
    try:
        state = deployer.restore_local()
    except DeploymentFailed as failure:
        context.log.error(f"restoring the local service failed: {failure}")
        return dg.SkipReason(f"local service {health}; restoring it failed (will retry): {failure}")
    if state is None:
        return dg.SkipReason(f"local service: {deployer.local_manager().health()}")
    return dg.SkipReason(f"local service was {health}: restored {state.bento} (supervisor pid {state.pid})")
