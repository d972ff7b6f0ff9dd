"""Soak: the service under 64 connections until it has answered a million requests, with its workers' RSS
sampled along the way (``make bench-soak``).

    .venv/bin/python benchmarks/serving/soak.py [--requests 1000000] [--connections 64] [--segment 15]

Uses the serving benchmark's model, keys and load tool (``run_benchmark.py``: a production-architecture
CNN on synthetic data, wrk with single-row ``/predict`` bodies). After a warm-up of ``--warm-up`` requests
it runs wrk in segments of ``--segment`` seconds and prints, after each, the requests so far, the
segment's throughput and errors, and every worker's RSS. It ends with the first segment's figures (the
"64 connections for N s with zero errors" check) and the RSS drift: the workers' RSS at the end against
their RSS after the warm-up (target: within 5 %). ``tests/serving/test_soak.py`` runs a short variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_benchmark import free_port, machine, prepare, start, stop, wait_ready, wrk  # noqa: E402

RSS_TARGET = 0.05


def worker_rss_mb(server_pid: int) -> dict[int, float]:
    """RSS (MB) of each process below ``bentoml serve`` (its workers)."""
    workers = psutil.Process(server_pid).children(recursive=True)
    return {p.pid: p.memory_info().rss / 2**20 for p in workers if p.is_running()}


def soak(requests: int, connections: int, segment: int, warm_up: int, workers: int, home: Path) -> dict[str, Any]:
    setup = prepare(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start("service", home, setup, port, workers)
    body = home / "one.json"
    curve: list[dict[str, Any]] = []
    try:
        wait_ready(url, body.read_bytes(), setup["key"], process)
        sent = 0
        while sent < warm_up:
            sent += wrk(url, body, setup["key"], connections, 3)["requests"]
        baseline = worker_rss_mb(process.pid)
        print(f"warm-up: {sent:,} requests; worker RSS {fmt(baseline)}", flush=True)
        total, errors = 0, 0
        while total < requests:
            result = wrk(url, body, setup["key"], connections, segment)
            total += result["requests"]
            errors += result["errors"]
            rss = worker_rss_mb(process.pid)
            curve.append({"requests": total, "rps": round(result["rps"]), "errors": result["errors"], "rss_mb": rss})
            print(f"{total:>10,} requests  {result['rps']:>7,.0f} req/s  {result['errors']} errors  RSS {fmt(rss)}",
                  flush=True)  # fmt: skip
    finally:
        stop(process)
    final = curve[-1]["rss_mb"]
    common = sorted(set(baseline) & set(final))
    drift = {pid: final[pid] / baseline[pid] - 1 for pid in common}
    return {
        "machine": machine(),
        "connections": connections,
        "segment_seconds": segment,
        "first_segment": curve[0],
        "requests": total,
        "errors": errors,
        "rss_after_warm_up_mb": baseline,
        "rss_drift": drift,
        "workers_replaced": sorted(set(baseline) ^ set(final)),
        "curve": curve,
    }


def fmt(rss: dict[int, float]) -> str:
    return ", ".join(f"{mb:.0f} MB" for _, mb in sorted(rss.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--segment", type=int, default=15, help="seconds of load between RSS samples")
    parser.add_argument("--warm-up", type=int, default=10_000, help="requests before the RSS baseline")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = soak(args.requests, args.connections, args.segment, args.warm_up, args.workers, Path(tmp))
    first = result["first_segment"]
    worst = max(result["rss_drift"].values(), default=float("nan"))
    print(f"\nmachine: {result['machine']}")
    print(f"first segment: {args.connections} connections for {args.segment} s: {first['rps']:,} req/s, "
          f"{first['errors']} errors")  # fmt: skip
    print(f"{result['requests']:,} requests, {result['errors']} errors; worker RSS drift after warm-up: "
          + ", ".join(f"{d:+.1%}" for d in result["rss_drift"].values())
          + f" (target within {RSS_TARGET:.0%}: {'PASS' if abs(worst) <= RSS_TARGET else 'MISS'})")  # fmt: skip
    if result["workers_replaced"]:
        print(f"workers replaced during the run: {result['workers_replaced']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
