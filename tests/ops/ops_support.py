"""Shared helpers of the ops tests: paths, required binaries, PromQL metric names, kustomize rendering."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_assets.core import observability

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
PROMETHEUS_DIR = GRAFANA / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
RUNBOOK = GRAFANA / "RUNBOOK.md"
DASHBOARD_JSON = GRAFANA / "dashboards" / "credit_risk_service.json"
K8S = REPO / "k8s"
OVERLAYS = ("staging", "prod")

# --- binaries ------------------------------------------------------------------------------------------


def require_binary(name: str, how: str) -> str:
    """The path of `name`, or FAIL (never skip): CI must provide it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: {how}", pytrace=False)
    return path


def promtool() -> str:
    return require_binary(
        "promtool", "`.ci/run` must install the Debian package `prometheus` (apt-get install -y prometheus)"
    )


def prometheus() -> str:
    return require_binary(
        "prometheus", "`.ci/run` must install the Debian package `prometheus` (apt-get install -y prometheus)"
    )


def run(
    cmd: list[str], *, cwd: Path | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


# --- PromQL metric names -------------------------------------------------------------------------------

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
#: Names in PromQL that are not metrics (keywords, binary operators, literals).
PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
    | {"inf", "nan", "atan2", "start", "end"}
)
#: Series Prometheus itself makes for every target.
PROMETHEUS_SERIES = frozenset({"up"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_LABEL_VALUES = re.compile(r"\blabel_values\(\s*([^,()]*?)\s*(?:,\s*[A-Za-z_]\w*\s*)?\)")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression (PromQL, or a Grafana `label_values(metric, label)` query) reads.

    Strings, label matchers, ranges, grouping label lists and Grafana variables are removed first; what is
    left is function names (followed by `(`), keywords, numbers and metric names.
    """
    text = _GRAFANA_LABEL_VALUES.sub(lambda m: f" {m.group(1)} ", expr)
    text = _STRING.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def exported_name(name: str) -> str | None:
    """The observability.EXPORTED name that `name` is a series of, or None."""
    if name in observability.EXPORTED:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in observability.EXPORTED:
            return name.removesuffix(suffix)
    return None


def unknown_names(expr: str, also_allowed: Iterable[str] = ()) -> set[str]:
    allowed = PROMETHEUS_SERIES | set(also_allowed)
    return {name for name in metric_names(expr) if name not in allowed and exported_name(name) is None}


# --- rules and runbook ---------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


# --- kustomize -----------------------------------------------------------------------------------------


def kustomize_command() -> list[str]:
    """A real kustomize: standalone `kustomize build`, else `kubectl kustomize` (kustomize v5 built in)."""
    if standalone := shutil.which("kustomize"):
        return [standalone, "build"]
    kubectl = require_binary(
        "kubectl",
        "the ops tests render k8s/ with `kubectl kustomize`. The machine image ships kubectl (apt package "
        "`kubectl`); elsewhere `.ci/run` must install a kubectl >= 1.27 or a kustomize >= 5.",
    )
    return [kubectl, "kustomize"]


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    result = run([*kustomize_command(), str(path)])
    assert result.returncode == 0, f"kustomize build {path.relative_to(REPO)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert name in found, f"no {kind} {name} among {sorted(found)}"
    return found[name]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) for every Rollout, Deployment and Job."""
    for obj in objects:
        if obj["kind"] in ("Rollout", "Deployment", "Job"):
            yield obj, obj["spec"]["template"]


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload, template in pod_specs(objects):
        for container in template["spec"]["containers"]:
            yield workload, container


def env_value(container: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry
    raise AssertionError(f"container {container['name']} has no env {name}")
