"""The service's container image (``platform_assets.deploy.image``), built here and run on the production profile.

The image is built (the base is a cache hit after its first build on a machine) and run as Kubernetes runs
it: uid 1034, read-only root filesystem, a tmpfs at /tmp, configuration by environment and the API keys and
verify key as read-only files. Its registry is the profile's MLflow server (PostgreSQL backend, artifacts in
moto S3) and its inference log the profile's PostgreSQL database, both reached over the host's loopback
(``--network=host``). The model version it serves was registered with an Ed25519-signed manifest; the
container must verify it itself before it is ready.

Docker: the daemon that answers, else a dockerd this module starts as root (``deploy.docker_engine``). Not root
and no daemon: the tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from net_support import free_port
from prod_support import ProdStores

from platform_assets.deploy.docker_engine import DockerEngine, DockerUnavailable, docker_engine
from platform_assets.deploy.image import CACHE_DIR, RUN_OPTIONS, SERVICE_UID, BuiltImage, build_images

#: A registered model of its own: other tests of the tier share the MLflow server.
MODEL_NAME = "credit_risk_image_test"
KEYS_MOUNT = "/var/run/secrets/credit-risk"
VERIFY_MOUNT = "/var/run/secrets/credit-risk-verify"
READY_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    try:
        with docker_engine(CACHE_DIR / "docker") as running:
            yield running
    except DockerUnavailable as error:
        if os.geteuid() == 0:
            raise  # root can always start dockerd (make system-packages installs it): a real failure
        pytest.skip(f"no Docker daemon for the image tests: {error}")


@pytest.fixture(scope="module")
def service_image(engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    base, service = build_images(engine, tmp_path_factory.mktemp("image-bentoml"), CACHE_DIR)
    print(f"\nbase image    {base.describe()}\nservice image {service.describe()}")
    return service


def in_container(engine: DockerEngine, image: BuiltImage, *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a fresh container of ``image``, run the way the service runs (``RUN_OPTIONS``)."""
    return subprocess.run(
        engine.command("run", "--rm", "--network=none", *RUN_OPTIONS, "--entrypoint", command[0], image.tag)
        + list(command[1:]),
        env=engine.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_image_runs_as_non_root_on_a_read_only_root(engine: DockerEngine, service_image: BuiltImage) -> None:
    config = json.loads(engine.run("image", "inspect", "--format", "{{json .Config}}", service_image.tag))
    assert config["User"] == f"{SERVICE_UID}:{SERVICE_UID}"  # numeric: runAsNonRoot can check it

    who = in_container(engine, service_image, "id", "-u")
    assert who.stdout.strip() == str(SERVICE_UID), who.stderr
    written = in_container(engine, service_image, "touch", "/home/bentoml/bento/written")
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    assert in_container(engine, service_image, "touch", "/tmp/written").returncode == 0


def test_the_image_ships_no_tensorflow(engine: DockerEngine, service_image: BuiltImage) -> None:
    # Not `pip show tensorflow`: the image's venv (uv's) has no pip, so that would fail with TensorFlow too.
    probe = (
        "import importlib.metadata as m, importlib.util as u\n"
        "names = sorted(d.metadata['Name'] for d in m.distributions())\n"
        "assert 'bentoml' in names, names\n"
        "print(sorted(n for n in names if n.lower().startswith('tensorflow')), u.find_spec('tensorflow'))\n"
    )
    found = in_container(engine, service_image, "python", "-c", probe)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[] None", f"the image ships TensorFlow: {found.stdout}"


@dataclass
class SignedVersion:
    version: str
    label: str
    manifest_sha256: str
    key_id: str


def register_signed_version(tracking_uri: str, verify_dir: Path) -> SignedVersion:
    """A tiny model registered as ``MODEL_NAME`` v1 on ``tracking_uri`` with a signed manifest on its run (as
    the ``model_manifest`` asset logs it) and the champion alias; the public key in ``verify_dir``."""
    import mlflow
    import model_support
    import record_support

    from platform_assets.core import manifest as manifests
    from platform_assets.core import registry, signing
    from platform_assets.core.model_version import MODEL_FILE, ONNX_FILE
    from platform_assets.settings import EXPERIMENT_NAME

    key = signing.generate_private_key()
    (verify_dir / signing.PUBLIC_KEY_FILE).write_bytes(signing.public_pem(key.public_key()))
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)  # register_model_version logs to the active run of the global client
    mlflow.set_registry_uri(tracking_uri)
    try:
        if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
            client.create_experiment(EXPERIMENT_NAME)  # the server's artifact root: S3 behind the server
        mlflow.set_experiment(EXPERIMENT_NAME)
        rows = model_support.synthetic_rows(days=3, rows_per_day=1000, seed=7)  # the serving tests' model
        with warnings.catch_warnings():  # keras' and mlflow's notices while training and logging
            warnings.simplefilter("ignore")
            tiny = model_support.train_tiny(rows, seed=1, epochs=2, calibration_method="platt")
            registered = model_support.register_tiny(tiny, model_support.keras_inputs(rows), model_name=MODEL_NAME)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    run_id = str(client.get_model_version(MODEL_NAME, registered.version).run_id)
    record = record_support.model_version(
        registered.label,
        model=MODEL_NAME,
        registered_version=registered.version,
        mlflow_run_id=run_id,
        model_sha256=registered.keras_sha256,
        onnx_sha256=registered.onnx_sha256,
        threshold=tiny.threshold,
        reason_codes=tiny.reason_codes,  # the service checks the signed ones against the version's
    )
    body = manifests.canonical_json(
        manifests.build_manifest(
            record=record,
            evaluation={"model_version": record.version, "metrics": {}, "best_baseline": {}},
            fairness_summary={},
            documents={},
            code={"available": False},
            libraries={},
            key_id=signing.key_id(key),
            created_at=datetime.now(UTC).isoformat(),
            dagster_run_id="image-test",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in ((manifests.MANIFEST_FILE, body), (manifests.SIGNATURE_FILE, signing.sign(key, body))):
            (Path(tmp) / name).write_bytes(data)
            client.log_artifact(run_id, str(Path(tmp) / name), artifact_path="governance")
    manifest_sha = manifests.sha256(body)
    client.set_model_version_tag(MODEL_NAME, registered.version, registry.MANIFEST_SHA_TAG, manifest_sha)
    client.set_registered_model_alias(MODEL_NAME, registry.CHAMPION, registered.version)
    assert record.artifacts == {MODEL_FILE: registered.keras_sha256, ONNX_FILE: registered.onnx_sha256}
    return SignedVersion(registered.version, registered.label, manifest_sha, signing.key_id(key))


def readable_by_the_service(directory: Path) -> Path:
    """``directory`` and its files readable by the container's user (as the Secret volumes' modes make them)."""
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o444)
    return directory


def wait_ready(url: str, container: str, engine: DockerEngine) -> float:
    """Seconds until ``url``/readyz answers 200; fails with the container's log when it exits or times out."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        state = engine.run("inspect", "--format", "{{.State.Status}}", container).strip()
        if state != "running":
            pytest.fail(f"the container is {state}:\n{container_log(engine, container)}")
        time.sleep(0.25)
    pytest.fail(f"/readyz not 200 within {READY_TIMEOUT:g} s:\n{container_log(engine, container)}")


def container_log(engine: DockerEngine, container: str) -> str:
    result = subprocess.run(
        engine.command("logs", container), env=engine.env(), capture_output=True, text=True, check=False
    )
    return result.stdout + result.stderr


def test_the_image_serves_a_verified_model_from_the_production_stores(
    engine: DockerEngine,
    service_image: BuiltImage,
    stores: ProdStores,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from platform_assets.core.api_keys import create_key

    keys_dir, verify_dir = (tmp_path / "keys").resolve(), (tmp_path / "verify").resolve()
    keys_dir.mkdir()
    verify_dir.mkdir()
    signed = register_signed_version(stores.mlflow.url, verify_dir)
    predict_key = create_key(keys_dir / "api-keys.json", ["predict"])[0]
    admin_key = create_key(keys_dir / "api-keys.json", ["admin"])[0]
    readable_by_the_service(keys_dir)
    readable_by_the_service(verify_dir)

    # The operator migrates the shared inference log before a release (the inference-log-migrate Job's command);
    # the service itself only checks it.
    migrated = subprocess.run(
        [sys.executable, "-m", "platform_assets.migrate", "upgrade"],
        env={**os.environ, **stores.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    container = f"credit-risk-image-test-{os.getpid()}"
    settings = {
        "PLATFORM_ENV": "prod",
        "MLFLOW_TRACKING_URI": stores.mlflow.url,
        "CREDIT_RISK_MODEL_NAME": MODEL_NAME,
        "CREDIT_RISK_INFERENCE_DB": stores.inference_db_without_password,
        "PGPASSWORD": stores.inference_db_password,
        "CREDIT_RISK_API_KEYS_FILE": f"{KEYS_MOUNT}/api-keys.json",
        "CREDIT_RISK_VERIFY_KEY_FILE": f"{VERIFY_MOUNT}/verify_key.pem",
    }
    started = time.monotonic()
    engine.run(
        "run",
        "--detach",
        f"--name={container}",
        "--network=host",
        *RUN_OPTIONS,
        f"--volume={keys_dir}:{KEYS_MOUNT}:ro",
        f"--volume={verify_dir}:{VERIFY_MOUNT}:ro",
        *(f"--env={name}={value}" for name, value in settings.items()),
        service_image.tag,
        *("--host", "127.0.0.1", "--port", str(port)),
    )
    try:
        cold_start = time.monotonic() - started
        cold_start += wait_ready(url, container, engine)
        with capsys.disabled():
            print(
                f"\n{service_image.tag}: {service_image.size_bytes / 1e6:.0f} MB; cold start (docker run -> /readyz "
                f"200) {cold_start:.1f} s"
            )

        status = httpx.post(
            f"{url}/admin/status", json={"refresh": False}, headers={"Authorization": f"Bearer {admin_key}"}
        ).json()
        champion = status["models"]["champion"]
        assert champion["model_version"] == signed.label
        assert champion["signature"].startswith(f"verified (Ed25519, key {signed.key_id}, manifest of")
        assert champion["signature"].endswith(f"sha256 {signed.manifest_sha256})"), champion
        assert f"signature verified (Ed25519, key {signed.key_id}" in container_log(engine, container)

        import model_support

        from platform_assets.ml import schema

        frame = model_support.synthetic_rows(days=1, rows_per_day=3, seed=11).drop(columns=[schema.TARGET])
        rows = [{name: int(value) for name, value in row.items()} for row in frame.to_dict("records")]
        response = httpx.post(
            f"{url}/predict", json={"applications": rows}, headers={"Authorization": f"Bearer {predict_key}"}
        )
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert [p["model_version"] for p in predictions] == [signed.label] * 3
        assert all(0.0 <= p["probability_of_default"] <= 1.0 for p in predictions)
        unauthorized = httpx.post(f"{url}/predict", json={"applications": rows}, headers={"Authorization": "Bearer x"})
        assert unauthorized.status_code == 401

        # The container logged them to the profile's PostgreSQL inference log.
        wanted = ", ".join(f"'{p['prediction_id']}'" for p in predictions)
        deadline = time.monotonic() + 30
        while True:
            logged = stores.postgres.sql(
                f"SELECT model_version FROM predictions WHERE prediction_id IN ({wanted})", db="inference_log"
            )
            if len(logged) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert logged == [(signed.label,)] * 3
    finally:
        subprocess.run(engine.command("rm", "--force", container), env=engine.env(), capture_output=True, check=False)
