"""The Bento ships the serving runtime and nothing else: no Dagster, no defs/, no training or governance code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from platform_assets.deploy import bento
from platform_assets.deploy.bento import build_runtime_wheel, code_version, runtime_files

CONTROL_PLANE = ("defs", "resources", "governance", "deploy", "settings.py", "model_store.py", "definitions.py")
#: Top-level packages the serving runtime must never import.
NOT_SERVED = ("dagster", "dagster_mlflow", "pyspark", "tensorflow", "keras", "tf2onnx")
REPO = Path(__file__).resolve().parents[2]


def _distribution(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_the_bento_installs_no_tensorflow_and_the_projects_pins() -> None:
    bentofile = yaml.safe_load((REPO / "bentos" / "credit_risk" / "bentofile.yaml").read_text(encoding="utf-8"))
    packages = {_distribution(spec): spec for spec in bentofile["python"]["packages"]}
    assert not {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx"} & set(packages), packages
    assert "onnxruntime" in packages
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = {_distribution(spec): spec for spec in project}
    # One pin per package: what the Bento installs is what the project is tested with.
    assert {name: spec for name, spec in packages.items() if name in pins} == {
        name: pins[name] for name in packages if name in pins
    }


def test_runtime_files_are_the_serving_import_closure() -> None:
    files = {path.as_posix() for path in runtime_files()}
    assert {
        "platform_assets/serving/http.py",
        "platform_assets/core/registry.py",
        "platform_assets/ml/features.py",
    } <= files
    for name in CONTROL_PLANE:
        assert not any(f.startswith(f"platform_assets/{name}") for f in files), name
    assert "platform_assets/ml/train.py" not in files, "training code is not served"


def test_the_runtime_wheel_imports_on_its_own_without_dagster(tmp_path: Path) -> None:
    wheel = build_runtime_wheel(tmp_path / "wheels", dict(os.environ))
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith("platform_assets/")]
        archive.extractall(tmp_path / "site")
    assert sorted(names) == sorted(p.as_posix() for p in runtime_files())
    # Every module of the wheel imports from the extracted copy (not the checkout), and none loads Dagster,
    # Spark, TensorFlow or Keras (the Bento does not install them: the model runs in ONNX Runtime).
    probe = (
        "import importlib, pkgutil, sys, platform_assets\n"
        "assert platform_assets.__file__.startswith(sys.argv[1]), platform_assets.__file__\n"
        "modules = [m.name for m in pkgutil.walk_packages(platform_assets.__path__, 'platform_assets.')]\n"
        "for name in modules: importlib.import_module(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {NOT_SERVED!r})\n"
        "assert not loaded, loaded\n"
        "assert 'onnxruntime' in sys.modules\n"
        # The schema revisions travel with the runtime: the service can upgrade its own SQLite log.
        "from platform_assets.core.inference_log import migrate, schema\n"
        "engine = schema.make_engine('sqlite:///' + sys.argv[1] + '/log.db')\n"
        "migrate.upgrade(engine)\n"
        "assert migrate.schema_problem(engine) is None\n"
        "print(len(modules))\n"
    )
    site = str(tmp_path / "site")
    result = subprocess.run(
        [sys.executable, "-c", probe, site],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": site},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip()) == len([n for n in names if n.endswith(".py")]) - 1  # all but the root


def test_code_outside_the_runtime_does_not_change_the_code_version(tmp_path: Path) -> None:
    repo = REPO
    copy = tmp_path / "repo"
    for relative in [*runtime_files(repo), Path("platform_assets/defs/serving/assets.py")]:
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        (copy / relative).write_bytes((repo / relative).read_bytes())
    (copy / "bentos").mkdir()
    (copy / "bentos" / "credit_risk").symlink_to(repo / "bentos" / "credit_risk", target_is_directory=True)
    before = code_version(copy)
    (copy / "platform_assets/defs/serving/assets.py").write_text("# control-plane change\n")
    assert code_version(copy) == before
    served = copy / "platform_assets/serving/routing.py"
    served.write_text(served.read_text() + "\n# served change\n")
    assert code_version(copy) != before


def test_bentos_of_the_same_code_share_one_runtime_wheel_built_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[str] = []
    run = bento._run

    def counted(command: list[str], cwd: Path, env: dict[str, str]) -> str:
        commands.append(" ".join(command[1:4]))
        return run(command, cwd, env)

    monkeypatch.setattr(bento, "_run", counted)
    home = tmp_path / "bentoml"
    first = bento.build_bento("v1", home, labels={"model_version": "v1"})
    second = bento.build_bento("v2", home, labels={"model_version": "v2"})
    assert commands == ["-m pip wheel", "-m bentoml build", "-m bentoml build"]
    assert first.code_version == second.code_version and first.tag != second.tag
    shipped = [
        next(b.path.rglob(bento.WHEEL)).read_bytes() for b in (first, second)
    ]  # the wheel inside each built Bento
    assert shipped[0] == shipped[1]
    with zipfile.ZipFile(next(second.path.rglob(bento.WHEEL))) as archive:
        assert sorted(n for n in archive.namelist() if n.startswith("platform_assets/")) == sorted(
            p.as_posix() for p in runtime_files()
        )
    assert not list((home / "runtime-wheels").glob(".partial-*"))
