"""Build the credit-risk Bento offline: the project as a wheel plus ``bentos/credit_risk``."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICE_DIR = REPO / "bentos" / "credit_risk"


@dataclass(frozen=True)
class BuiltBento:
    tag: str
    path: Path
    size_bytes: int
    code_version: str


def code_version(repo: Path = REPO) -> str:
    """sha256 (first 12 hex) over the service and package sources: equal code, equal version."""
    digest = hashlib.sha256()
    files = sorted([*(repo / "platform_assets").rglob("*.py"), *(repo / "bentos" / "credit_risk").glob("*")])
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts and path.parent.name != "wheels":
            digest.update(path.relative_to(repo).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def build_bento(model_version: str, bentoml_home: Path, labels: dict[str, str]) -> BuiltBento:
    """``bentoml build`` in a scratch copy of the service folder, tagged ``credit_risk:<model>-<code>``.

    Building the same model version from the same code again returns the existing Bento.
    """
    version = f"{model_version}-{code_version()}"
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    existing = bentoml_home / "bentos" / "credit_risk" / version
    if not (existing / "bento.yaml").exists():
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp) / "credit_risk"
            shutil.copytree(SERVICE_DIR, context, ignore=shutil.ignore_patterns("__pycache__", "wheels"))
            python = sys.executable
            _run(
                [python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "wheels", str(REPO)],
                context,
                env,
            )
            label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
            _run([python, "-m", "bentoml", "build", ".", "--version", version, "-o", "tag", *label_args], context, env)
    size = sum(p.stat().st_size for p in existing.rglob("*") if p.is_file())
    return BuiltBento(
        tag=f"credit_risk:{version}", path=existing, size_bytes=size, code_version=version.split("-", 1)[1]
    )
