"""Serving benchmark: the project's Bento service vs a seed-style FastAPI app (``model.predict`` per
request) vs a trivial BentoML endpoint, with the same load tool (wrk) in one run, on loopback.

    .venv/bin/python benchmarks/serving/run_benchmark.py [--duration 15] [--workers 2] [--json out.json]

Needs ``wrk`` (Debian: ``apt-get install wrk``). Trains a model with the production architecture on
synthetic data (seconds), registers it in a temporary MLflow store, then runs each server alone.

``service`` scores with ONNX Runtime (the registered ``model.onnx``, one intra-op thread per worker).
``trivial`` is the framework floor the targets compare with: BentoML serving a constant on the same
server configuration as the service (no access log, ``bentoml_fixes``' request timeout).
``trivial-stock`` is the same endpoint on BentoML's defaults, and ``service-nofreeze`` the service without
``engine.freeze_heap`` (what freezing the heap after a model load buys at the tail); both are printed for
reference.

Scenarios, each after the previous one's inference-log backlog is written: ``c32`` one application the model
approves per request at 32 connections; ``c1`` the same at 1 connection; ``decline`` one application the model
declines per request at 32 connections (the service computes its four adverse-action reasons on every such
request); ``rows`` 1,000 applications per request at 4 connections (the synthetic day's own mix of approvals and
declines, every decline with its reasons). The targets printed at the end are issue #12's (``TARGETS``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
#: What the benchmark can run: the service (ONNX Runtime), the service without its heap freeze, the baseline,
#: the framework floor and the floor on BentoML's defaults.
SERVERS = ("service", "service-nofreeze", "baseline", "trivial", "trivial-stock")
#: Issue #12's targets: p99 at 32 connections (ms), the same with a decline's reasons on every request, p50 at
#: 1 connection (ms), the service's throughput at 32 connections as a multiple of the baseline's and a share of
#: the floor's, and its rows/s in 1,000-row batches as a share of the floor's.
TARGETS = {
    "p99_ms_c32": 10.0,
    "p99_ms_decline": 12.0,
    "p50_ms_c1": 1.0,
    "x_baseline": 100.0,
    "share_of_trivial": 1.00,
    "batch_share_of_trivial": 0.45,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> dict[str, Any]:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "wrk": (wrk or ["?"])[0]}


def train_model() -> tuple[Any, float, Any, dict[str, Any]]:
    """The production CNN architecture trained with the production training function on synthetic data (one
    epoch, seconds): the calibrated model, its threshold, its reason-code section as training records it, and
    the validation split's model inputs."""
    import pandas as pd

    from platform_assets.ml import dataset, features, synthetic
    from platform_assets.ml.model import CNNConfig
    from platform_assets.ml.train import TrainConfig, fit_reason_codes, train_cnn

    start = date(2026, 10, 1)
    days = [synthetic.generate_partition(start + timedelta(days=d), 1000, 7) for d in range(3)]
    rows = features.featurize_rows(pd.concat(days, ignore_index=True))
    data = dataset.ModellingDataset.planned(dataset.FrameSource(rows), validation=0.15, test=0.15, seed=7)
    validation = data.materialize("validation")
    trained = train_cnn(data, TrainConfig(epochs=1, seed=1, cnn=CNNConfig()), validation=validation)
    sample = data.sample("train", 10_000, 7)
    reasons = fit_reason_codes(
        trained.model, sample.frame, sample.keras_inputs(), trained.threshold, include_protected=False
    )
    return trained.model, trained.threshold, reasons, validation.keras_inputs()


def model_declines(model: Any, threshold: float, raw: Any) -> Any:
    """Per raw row, whether the model declines it (every row of the synthetic day is valid)."""
    from platform_assets.core.decisions import declines
    from platform_assets.ml import features
    from platform_assets.ml.train import predict_cnn

    featurized = features.featurize(raw)
    if not featurized.valid.all():
        raise ValueError("the synthetic benchmark day has invalid rows")
    batch = featurized.batch
    return declines(predict_cnn(model, {"history": batch.tensor, "static": batch.static}), threshold)


def prepare(home: Path) -> dict[str, Any]:
    """Train a model with the production CNN architecture and training function on synthetic data (one
    epoch, seconds), register it in a new MLflow store as the training asset does; create the keys."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

        from platform_assets.core import registry
        from platform_assets.core.api_keys import create_key
        from platform_assets.ml import schema, synthetic
        from platform_assets.resources.mlflow import register_model_version
        from platform_assets.settings import EXPERIMENT_NAME

        (home / "mlflow" / "artifacts").mkdir(parents=True)
        uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        artifacts = (home / "mlflow" / "artifacts").as_uri()
        mlflow.set_experiment(experiment_id=mlflow.MlflowClient().create_experiment(EXPERIMENT_NAME, artifacts))
        model, threshold, reasons, validation = train_model()
        start = date(2026, 10, 1)
        with mlflow.start_run():
            registered = register_model_version(
                model,
                threshold=threshold,
                reason_codes=reasons,
                example_inputs={k: v[:5] for k, v in validation.items()},
                check_inputs=validation,
                dagster_run_id="serving-benchmark",
            )
        registry.set_alias(registry.CHAMPION, registered.version, tracking_uri=uri)
        model_file = home / "baseline_model.keras"
        model_file.write_bytes(registered.keras_bytes)
        key, _ = create_key(home / "keys.json", ["predict"])
        admin_key, _ = create_key(home / "keys.json", ["admin"])
        raw = synthetic.generate_partition(start, 1000, 99).drop(columns=[schema.TARGET])
        requests = [{k: int(v) for k, v in row.items()} for row in raw.to_dict("records")]
        declined = model_declines(model, threshold, raw)
        del mlflow
    approved_row = requests[declined.tolist().index(False)]
    declined_row = requests[declined.tolist().index(True)]
    print(f"synthetic batch: {len(requests)} applications, {int(declined.sum())} declined by the model")
    (home / "one.json").write_text(json.dumps({"applications": [approved_row]}))
    (home / "decline.json").write_text(json.dumps({"applications": [declined_row]}))
    (home / "batch.json").write_text(json.dumps({"applications": requests[:1000]}))
    return {
        "tracking_uri": uri,
        "model_file": model_file,
        "key": key,
        "admin_key": admin_key,
        "threshold": threshold,
    }


def start(name: str, home: Path, setup: dict[str, Any], port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PLATFORM_HOME": str(home),
        "MLFLOW_TRACKING_URI": setup["tracking_uri"],
        "CREDIT_RISK_API_KEYS_FILE": str(home / "keys.json"),
        "CREDIT_RISK_WORKERS": str(workers),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "BASELINE_MODEL": str(setup["model_file"]),
        "BASELINE_THRESHOLD": repr(setup["threshold"]),
    }
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if name == "service":
        cmd, cwd = [str(BIN / "bentoml"), "serve", "service:CreditRiskService", *host], REPO / "bentos" / "credit_risk"
    elif name == "service-nofreeze":
        cmd, cwd = [str(BIN / "bentoml"), "serve", "service_without_heap_freeze:CreditRiskService", *host], HERE
    elif name in ("trivial", "trivial-stock"):
        env["TRIVIAL_STOCK"] = "true" if name == "trivial-stock" else "false"
        cmd, cwd = [str(BIN / "bentoml"), "serve", "trivial_service:TrivialService", *host], HERE
    else:
        cmd = [str(BIN / "uvicorn"), "baseline_app:app", *host, "--workers", str(workers), "--log-level", "warning"]
        cwd = HERE
    log = (home / f"{name}.log").open("ab")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def resident_mb(session: int) -> float:
    """Resident memory (MiB) of every process in ``session`` (the server and its workers), from /proc."""
    total_kib = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != session:  # the session id, after state, ppid and pgrp
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total_kib += int(match.group(1)) if match else 0
    return total_kib / 1024


def wait_ready(url: str, body: bytes, key: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.post(url + "/predict", content=body, headers=headers, timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready in {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wrk(url: str, body_file: Path, key: str, connections: int, duration: int) -> dict[str, Any]:
    threads = min(2, connections)
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_AUTH": key}
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    cmd += ["-s", str(HERE / "report.lua")]
    out = subprocess.run([*cmd, url + "/predict"], capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"WRK_JSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"no result from wrk:\n{out}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = result["status_errors"] + result["socket_errors"]
    return result


def status(url: str, setup: dict[str, Any]) -> dict[str, Any]:
    """``/admin/status`` of whichever worker answers."""
    headers = {"Authorization": f"Bearer {setup['admin_key']}"}
    answer: dict[str, Any] = httpx.post(url + "/admin/status", json={}, headers=headers, timeout=10).json()
    return answer


def settle(url: str, setup: dict[str, Any], timeout: float = 120.0) -> float:
    """Wait until the service has written what the previous scenario queued in its inference log, so
    that each scenario starts from an idle service. A status call reaches one worker at random: the
    backlog counts as gone after 8 answers in a row report none. Returns the seconds waited."""
    start = time.monotonic()
    quiet = 0
    while quiet < 8:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"the inference log still has a backlog after {timeout:.0f} s")
        quiet = quiet + 1 if status(url, setup)["inference_log_pending"] == 0 else 0
        time.sleep(0.05)
    return time.monotonic() - start


def measure(name: str, home: Path, setup: dict[str, Any], duration: int, workers: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(name, home, setup, port, workers)
    service = name.startswith("service")
    try:
        wait_ready(url, (home / "one.json").read_bytes(), setup["key"], process)
        if service:
            backend = status(url, setup)["models"]["champion"]["backend"]
            print(f"  {name}: champion on {backend}", flush=True)
        one, decline, batch = home / "one.json", home / "decline.json", home / "batch.json"
        results = {}
        warm_up = [(one, 8, 3), (decline, 8, 2), (batch, 2, 2)]
        scenarios = (("c32", one, 32), ("c1", one, 1), ("decline", decline, 32), ("rows", batch, 4))
        for scenario, body, connections in scenarios:
            for warm_body, warm_connections, seconds in warm_up:
                wrk(url, warm_body, setup["key"], warm_connections, seconds)
            warm_up = []
            if service:
                print(f"  {scenario}: inference log drained in {settle(url, setup):.1f} s", flush=True)
            results[scenario] = wrk(url, body, setup["key"], connections, duration)
        c32, c1, rows, declined = results["c32"], results["c1"], results["rows"], results["decline"]
        rss = resident_mb(process.pid)  # started with start_new_session: its pid is the session id
    finally:
        stop(process)
    return {
        "rps_c32": c32["rps"],
        "p99_ms_c32": c32["p99_us"] / 1000,
        "p50_ms_c1": c1["p50_us"] / 1000,
        "rps_c1": c1["rps"],
        "rps_decline": declined["rps"],
        "p99_ms_decline": declined["p99_us"] / 1000,
        "batch_rows_per_s": rows["rps"] * 1000,
        "batch_p50_ms": rows["p50_us"] / 1000,
        "errors": sum(r["errors"] for r in results.values()),
        "rss_mb": rss,
        "requests": sum(r["requests"] for r in results.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per scenario")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes, the same for all three")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary platform home (logs)")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset to measure (default: all; service-nofreeze and trivial-stock are for reference)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    info = machine()
    print(f"machine: nproc={info['nproc']}  cpu={info['cpu']}  python={info['python']}  {info['wrk']}")
    print(f"load average before: {os.getloadavg()}")
    setup = prepare(home)
    results = {}
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s) {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    names = [n for n in SERVERS if n in args.servers.split(",")]
    for name in names:
        print(f"measuring {name} ...", flush=True)
        results[name] = measure(name, home, setup, args.duration, args.workers)
    print(f"load average after: {os.getloadavg()}")
    header = f"{'':16} {'req/s c32':>10} {'p99 ms c32':>11} {'p50 ms c1':>10} {'req/s c1':>9} "
    header += f"{'req/s decl':>11} {'p99 ms decl':>12} {'rows/s 1000':>12} {'errors':>7} {'RSS MiB':>8}"
    print(header)
    for name, r in results.items():
        print(
            f"{name:16} {r['rps_c32']:10.1f} {r['p99_ms_c32']:11.2f} {r['p50_ms_c1']:10.2f} {r['rps_c1']:9.1f} "
            f"{r['rps_decline']:11.1f} {r['p99_ms_decline']:12.2f} {r['batch_rows_per_s']:12.0f} {r['errors']:7d} "
            f"{r['rss_mb']:8.0f}"
        )
    print("decl: one application the model declines per request, at 32 connections (the service adds its reasons)")
    print("RSS MiB: resident memory of all the server's processes (supervisor and workers) after its last scenario")
    if not {"service", "baseline", "trivial"} <= set(results):
        print("(a subset was measured: no ratios or target checks)")
        ratios: dict[str, float] = {}
        checks: dict[str, bool] = {}
    else:
        service = results["service"]
        ratios = {
            "x_baseline": service["rps_c32"] / max(results["baseline"]["rps_c32"], 1e-9),
            "share_of_trivial": service["rps_c32"] / max(results["trivial"]["rps_c32"], 1e-9),
            "batch_share_of_trivial": service["batch_rows_per_s"] / max(results["trivial"]["batch_rows_per_s"], 1e-9),
        }
        t = TARGETS
        checks = {
            f"throughput at 32 conns >= {t['x_baseline']:.0f}x baseline": ratios["x_baseline"] >= t["x_baseline"],
            f"throughput at 32 conns >= {t['share_of_trivial']:.0%} of trivial": ratios["share_of_trivial"]
            >= t["share_of_trivial"],
            f"p99 <= {t['p99_ms_c32']:g} ms at 32 conns": service["p99_ms_c32"] <= t["p99_ms_c32"],
            f"p99 <= {t['p99_ms_decline']:g} ms at 32 conns, reasons on every request": service["p99_ms_decline"]
            <= t["p99_ms_decline"],
            f"p50 <= {t['p50_ms_c1']:g} ms at 1 conn": service["p50_ms_c1"] <= t["p50_ms_c1"],
            f"1000-row batches >= {t['batch_share_of_trivial']:.0%} of trivial's rows/s": ratios[
                "batch_share_of_trivial"
            ]
            >= t["batch_share_of_trivial"],
            "zero errors": service["errors"] == 0,
        }
        print(
            f"service vs baseline: {ratios['x_baseline']:.1f}x   service vs trivial: {ratios['share_of_trivial']:.0%}"
            f"   batch rows/s vs trivial: {ratios['batch_share_of_trivial']:.1%}"
        )
        for check, ok in checks.items():
            print(f"  [{'PASS' if ok else 'MISS'}] {check}")
    if args.json:
        document = {"machine": info, "results": results, "ratios": ratios, "checks": checks}
        args.json.write_text(json.dumps(document, indent=2))
    if args.keep:
        print(f"logs in {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
