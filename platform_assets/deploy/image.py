"""The service's container image, built here without a container registry.

1. The base image: Debian bookworm with its Python 3.11, made by ``debootstrap`` from Debian's mirror and
   ``docker import``-ed as ``credit-risk-base:<key>``, where the key is a hash of the recipe (``BaseRecipe``).
   An image with that tag already in the daemon is a cache hit: a machine builds its base once. It also
   carries ``uv``, which BentoML's Dockerfile would otherwise install with ``pip`` (Debian's Python has none).
2. The service image: the Bento (``deploy.bento``) built onto that base from the Dockerfile ``bentoml build``
   renders into it (``env/docker/Dockerfile``: BentoML's template for a custom base image with the changes in
   ``bentos/credit_risk/Dockerfile.template``), tagged ``credit-risk-service:<code version>``. Its Python
   packages are downloaded by this host's pip into a wheelhouse, which the build installs from as a package
   index on the host's loopback (``served_wheelhouse``); nothing downloads when the image runs.

``python -m platform_assets.deploy.image build`` (``make image``) builds both and prints their sizes and build
times. The image runs as uid 1034 on a read-only root filesystem with a tmpfs at /tmp (``RUN_OPTIONS``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from platform_assets.deploy.bento import BuiltBento, build_bento
from platform_assets.deploy.docker_engine import DockerEngine, docker_engine

BASE_REPOSITORY: Final = "credit-risk-base"
SERVICE_REPOSITORY: Final = "credit-risk-service"
#: The label that records which base recipe an image was built from (its cache key).
BASE_KEY_LABEL: Final = "io.credit-risk.base-key"
#: The user the image runs as (BentoML's ``bentoml`` user; k8s/base/rollout.yaml runs pods as it).
SERVICE_UID: Final = 1034
#: What a container of the service image needs besides the image: the root filesystem read-only, and a tmpfs
#: at /tmp for what the service writes (BentoML's home, model downloads). Kubernetes: an emptyDir at /tmp.
RUN_OPTIONS: Final = ("--read-only", "--tmpfs=/tmp:rw,nosuid,nodev,size=512m", f"--user={SERVICE_UID}:{SERVICE_UID}")
#: The Bento built for the image carries no model (the service loads it from the registry): its tag says so.
IMAGE_BENTO_VERSION: Final = "image"
#: Caches kept between builds: ``docker/`` (a dockerd started here: its images, the base among them) and
#: ``wheels/`` (the wheelhouse of the service's Python packages). Deleting them costs a rebuild, nothing else.
CACHE_DIR: Final = Path("/var/tmp/credit-risk-platform")


@dataclass(frozen=True)
class BaseRecipe:
    """Everything the base image is made from; equal recipes give the same key, hence the same image tag."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    #: Debian's Python 3.11, and CA certificates for TLS to the registry's and the database's servers.
    packages: tuple[str, ...] = ("python3", "ca-certificates")
    #: BentoML 1.4.40's Dockerfile installs uv 0.13.4 unless the image has a uv >= 0.13.4.
    uv_version: str = "0.13.4"
    #: Removed from the root filesystem before the import: package caches and lists, docs (copyright
    #: files stay), man pages and translations.
    prune: tuple[str, ...] = (
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "var/log/*",
    )
    #: ``docker import --change`` instructions: the image's environment and command.
    changes: tuple[str, ...] = (
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    )

    def key(self) -> str:
        """sha256 (first 12 hex) of the recipe: the base image's tag."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def tag(self) -> str:
        return f"{BASE_REPOSITORY}:{self.key()}"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    size_bytes: int
    #: Seconds the build took; 0 for a cache hit.
    build_seconds: float
    cached: bool

    def describe(self) -> str:
        how = "cache hit" if self.cached else f"built in {self.build_seconds:.1f} s"
        return f"{self.tag}: {self.size_bytes / 1e6:.0f} MB, {how}"


def _run(command: Sequence[str], what: str, timeout: float = 1800.0) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(command)}, exit {result.returncode}):\n{result.stderr[-3000:]}")


def _prune(rootfs: Path, patterns: Sequence[str]) -> None:
    """Delete what ``patterns`` match under ``rootfs``, and every package's docs but its copyright file.

    Debian links some packages' doc folders to another's (``libtinfo6 -> libncurses6``): a linked folder is left as
    it is (its files are the other package's, pruned there), never walked into, which would delete a file twice.
    """
    doomed = [path for pattern in patterns for path in rootfs.glob(pattern)]
    doc = rootfs / "usr/share/doc"
    packages = sorted(p for p in doc.iterdir() if p.is_dir() and not p.is_symlink()) if doc.is_dir() else []
    doomed += [path for package in packages for path in sorted(package.iterdir()) if path.name != "copyright"]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _add_uv(rootfs: Path, version: str) -> None:
    """uv from PyPI into ``rootfs``'s /opt/uv, on PATH as /usr/local/bin/uv (a static binary: no Python needed)."""
    target = rootfs / "opt" / "uv"
    _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:", "--target", str(target)]
        + [f"uv=={version}"],
        f"pip install uv=={version}",
    )
    (rootfs / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (rootfs / "usr/local/bin/uv").symlink_to("/opt/uv/bin/uv")


def build_base_image(engine: DockerEngine, recipe: BaseRecipe = BaseRecipe()) -> BuiltImage:
    """``credit-risk-base:<key>``: debootstrap, prune, add uv, ``docker import``; a cache hit when it exists.

    Needs root (debootstrap) for a build, not for a cache hit.
    """
    tag = recipe.tag()
    if engine.image_exists(tag):
        return BuiltImage(tag, engine.image_size(tag), 0.0, cached=True)
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: apt-get install -y debootstrap (make system-packages)")
    if os.geteuid() != 0:
        raise RuntimeError(f"building {tag} runs debootstrap, which needs root")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="credit-risk-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(
            ["debootstrap", f"--variant={recipe.variant}", f"--include={','.join(recipe.packages)}"]
            + [recipe.suite, str(rootfs), recipe.mirror],
            f"debootstrap {recipe.suite}",
        )
        _prune(rootfs, recipe.prune)
        _add_uv(rootfs, recipe.uv_version)
        changes = [*recipe.changes, f"LABEL {BASE_KEY_LABEL}={recipe.key()}"]
        archive = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], "tar of the root filesystem")
        engine.run("import", *(f"--change={change}" for change in changes), str(archive), tag)
    return BuiltImage(tag, engine.image_size(tag), time.monotonic() - started, cached=False)


def service_tag(bento: BuiltBento) -> str:
    return f"{SERVICE_REPOSITORY}:{bento.code_version}"


def download_wheels(bento: BuiltBento, wheelhouse: Path) -> None:
    """Wheels for every requirement of the Bento (and their dependencies) into ``wheelhouse``, by this host's
    pip: its index and certificate settings apply, and a wheel already there is not downloaded again."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    requirements = bento.path / "env" / "python" / "requirements.txt"
    _run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(wheelhouse)]
        + ["--requirement", str(requirements)],
        f"pip download of {requirements}",
    )


def _project(name: str) -> str:
    """A project name as a package index spells it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _WheelIndex(SimpleHTTPRequestHandler):
    """A package index (PEP 503 simple HTML) of the wheels in the served directory: ``/simple/<project>/``
    lists that project's wheels, which are served from the root."""

    def do_GET(self) -> None:
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] != "simple":
            super().do_GET()
            return
        project = parts[1]
        wheels = sorted(p.name for p in Path(self.directory).glob("*.whl") if _project(p.name.split("-")[0]) == project)
        if not wheels:
            self.send_error(404, f"no wheels of {project}")
            return
        body = "".join(f'<a href="/{name}">{name}</a><br>\n' for name in wheels).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # one line per wheel is noise
        pass


class _WheelServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # uv reads a wheel's metadata and drops the connection: the rest of that download is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def served_wheelhouse(wheelhouse: Path) -> Iterator[str]:
    """``wheelhouse`` as a package index on a free loopback port while the block runs; yields the index URL."""
    server = _WheelServer(("127.0.0.1", 0), functools.partial(_WheelIndex, directory=str(wheelhouse)))
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def build_service_image(engine: DockerEngine, bento: BuiltBento, base: BuiltImage, wheelhouse: Path) -> BuiltImage:
    """``credit-risk-service:<code version>`` from the Bento's generated Dockerfile on ``base``; a cache hit
    when that tag exists and was built on the same base.

    The build installs the Python packages from ``wheelhouse`` (``download_wheels``), served on the host's
    loopback: no package index and no certificate of this host is needed inside the build or kept in the image.
    """
    tag = service_tag(bento)
    base_key = base.tag.rsplit(":", 1)[1]
    if engine.image_label(tag, BASE_KEY_LABEL) == base_key:
        return BuiltImage(tag, engine.image_size(tag), 0.0, cached=True)
    started = time.monotonic()
    download_wheels(bento, wheelhouse)
    with served_wheelhouse(wheelhouse) as index_url:
        engine.run(
            "build",
            "--network=host",  # the wheelhouse is on the host's loopback (and the daemon has no bridge)
            f"--build-arg=BASE_IMAGE={base.tag}",
            f"--build-arg=UV_DEFAULT_INDEX={index_url}",
            f"--label={BASE_KEY_LABEL}={base_key}",
            f"--label=io.credit-risk.bento={bento.tag}",
            f"--tag={tag}",
            f"--file={bento.path / 'env' / 'docker' / 'Dockerfile'}",
            str(bento.path),
            timeout=3600,
            # The Bento's Dockerfile uses no BuildKit syntax; the classic builder needs no buildx plugin.
            env={"DOCKER_BUILDKIT": "0"},
        )
    return BuiltImage(tag, engine.image_size(tag), time.monotonic() - started, cached=False)


def build_images(
    engine: DockerEngine, bentoml_home: Path, cache_dir: Path = CACHE_DIR
) -> tuple[BuiltImage, BuiltImage]:
    """The base image (or its cache hit), the image's Bento, then the service image on them."""
    base = build_base_image(engine)
    bento = build_bento(IMAGE_BENTO_VERSION, bentoml_home, labels={"purpose": "container-image"})
    return base, build_service_image(engine, bento, base, cache_dir / "wheels")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.deploy.image", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the base image (cached) and the service image")
    build.add_argument("--bentoml-home", type=Path, default=Path(".platform_home") / "bentoml")
    build.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="docker/ and wheels/ caches")
    args = parser.parse_args(argv)
    with docker_engine(args.cache_dir / "docker") as engine:
        print(f"docker daemon: {engine.host}", flush=True)
        base, service = build_images(engine, args.bentoml_home.resolve(), args.cache_dir)
    print(f"base image    {base.describe()}")
    print(f"service image {service.describe()}")
    print(f"run it: docker run {' '.join(RUN_OPTIONS)} --network=host <CREDIT_RISK_* settings> {service.tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
