"""The container image's build pieces without a Docker daemon: the base recipe's cache key, the Dockerfile the
Bento renders, the wheelhouse index the build installs from, and how a missing daemon is reported."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from platform_assets.deploy import docker_engine
from platform_assets.deploy.bento import build_bento
from platform_assets.deploy.image import (
    BASE_REPOSITORY,
    IMAGE_BENTO_VERSION,
    SERVICE_UID,
    BaseRecipe,
    _prune,
    served_wheelhouse,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_base_key_is_the_recipe_and_changes_with_it() -> None:
    recipe = BaseRecipe()
    assert recipe.key() == BaseRecipe().key() and len(recipe.key()) == 12
    assert recipe.tag() == f"{BASE_REPOSITORY}:{recipe.key()}"
    changed = {
        dataclasses.replace(recipe, suite="trixie").key(),
        dataclasses.replace(recipe, packages=(*recipe.packages, "curl")).key(),
        dataclasses.replace(recipe, uv_version="0.13.5").key(),
        dataclasses.replace(recipe, prune=recipe.prune[1:]).key(),
    }
    assert recipe.key() not in changed and len(changed) == 4


def test_the_bento_renders_a_dockerfile_for_the_local_base_non_root_and_read_only(tmp_path: Path) -> None:
    bento = build_bento(IMAGE_BENTO_VERSION, tmp_path / "bentoml", labels={})
    dockerfile = (bento.path / "env" / "docker" / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    assert lines.index(f"ARG BASE_IMAGE={BASE_REPOSITORY}") < lines.index("FROM ${BASE_IMAGE} AS base-container")
    # The index build argument is declared before the step that installs the packages, which then reads it.
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN") and "install.sh" in line)
    assert lines.index("ARG UV_DEFAULT_INDEX") < install and lines.index("ARG UV_NO_CACHE=1") < install
    # What a read-only root needs: BentoML's and the user's home on the tmpfs at /tmp.
    assert "ENV BENTOML_HOME=/tmp/bentoml" in lines and "ENV HOME=/tmp/home" in lines
    assert [line for line in lines if line.startswith("USER")] == [f"USER {SERVICE_UID}:{SERVICE_UID}"]
    assert "--mount=" not in dockerfile, "the classic builder (no BuildKit) must be able to build it"


def test_the_rollout_runs_pods_as_the_images_user() -> None:
    rollout = yaml.safe_load((REPO / "k8s" / "base" / "rollout.yaml").read_text())
    context = rollout["spec"]["template"]["spec"]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == context["runAsGroup"] == SERVICE_UID


def _wheel(directory: Path, project: str, version: str) -> Path:
    """A minimal valid wheel of ``project`` (a distribution with metadata and nothing else)."""
    name = project.replace("-", "_")
    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


def test_the_wheelhouse_is_an_index_pip_installs_from(tmp_path: Path) -> None:
    house = tmp_path / "wheels"
    house.mkdir()
    wanted = _wheel(house, "credit-probe", "1.2")
    _wheel(house, "other-probe", "0.1")
    out = tmp_path / "out"
    with served_wheelhouse(house) as index_url:
        import httpx

        listing = httpx.get(f"{index_url}credit-probe/").text
        assert wanted.name in listing and "other_probe" not in listing
        assert httpx.get(f"{index_url}no-such-project/").status_code == 404
        # --isolated: this machine's pip configuration (its own indexes and find-links) plays no part.
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--isolated", "-q", "--no-deps", "--index-url", index_url]
            + ["--dest", str(out), "Credit_Probe==1.2"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.iterdir()] == [wanted.name]
    assert (out / wanted.name).read_bytes() == wanted.read_bytes()


def test_a_configured_daemon_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    with pytest.raises(docker_engine.DockerUnavailable, match="DOCKER_HOST=unix://.*nothing.sock does not answer"):
        with docker_engine.docker_engine(tmp_path / "state"):
            pass


def test_without_a_daemon_and_without_root_it_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker_engine, "SYSTEM_SOCKET", f"unix://{tmp_path / 'system.sock'}")
    monkeypatch.setattr(docker_engine.os, "geteuid", lambda: 1000)
    with pytest.raises(docker_engine.DockerUnavailable, match="starting one needs root"):
        with docker_engine.docker_engine(tmp_path / "state"):
            pass


def test_pruning_keeps_each_packages_copyright_and_leaves_linked_doc_folders_alone(tmp_path: Path) -> None:
    """Debian links some packages' doc folders to another's (bookworm's libtinfo6): walking into the link deleted
    the other package's files a second time and failed the base image's build."""
    doc = tmp_path / "usr/share/doc"
    for package in ("libncurses6", "zlib1g"):
        (doc / package / "examples").mkdir(parents=True)
        for name in ("copyright", "changelog.Debian.gz", "examples/a.c"):
            (doc / package / name).write_text(name)
    (doc / "libtinfo6").symlink_to("libncurses6")
    (doc / "README").write_text("not a package")
    (tmp_path / "usr/share/man/man1").mkdir(parents=True)
    (tmp_path / "usr/share/man/man1/ls.1.gz").write_text("man")
    _prune(tmp_path, ("usr/share/man/*", "var/log/*"))
    assert sorted(p.relative_to(doc).as_posix() for p in doc.rglob("*")) == [
        "README",
        "libncurses6",
        "libncurses6/copyright",
        "libtinfo6",
        "zlib1g",
        "zlib1g/copyright",
    ]
    assert (doc / "libtinfo6").is_symlink() and (doc / "libtinfo6/copyright").read_text() == "copyright"
    assert list((tmp_path / "usr/share/man").iterdir()) == []
