"""Added latency of adverse-action reasons: exact group Shapley values per declined row, on the served runtime.

    .venv/bin/python benchmarks/serving/reason_codes.py [--repeats 200]

Trains the production CNN architecture on synthetic data (one epoch, seconds), opens it the way the
service does (exported to ONNX, one ONNX Runtime session with one intra-op thread) and derives its reason
table as training does. Then, for requests of 1, 10 and 100 declined rows, it times side by side what the
service's scorer pass does without reasons (featurize + one model call on the request's rows: the
baseline) and the reason step it adds (coalitions of the declined rows, featurize, ONE model call on all
of them, Shapley values, ranking). Prints, over ``--repeats`` runs, the median wall time and the median CPU
time of this process in milliseconds (on a shared machine the CPU time is the cost, the wall time also
counts waiting for a core), the added CPU time per declined row in microseconds, and the machine with its
load average. Not asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DECLINED_ROWS = (1, 10, 100)


def timed(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time of ``run`` in milliseconds, after 5 warm-up calls."""
    for _ in range(5):
        run()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per case")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from run_benchmark import machine, train_model

        from platform_assets.ml import features, reason_codes, synthetic
        from platform_assets.ml.onnx_export import served_session
        from platform_assets.serving.payloads import MATRIX_COLUMNS

        model, _, codes, _ = train_model()
        session = served_session(model)  # the service's per-worker setting: CREDIT_RISK_ONNX_THREADS=1
    applicants = synthetic.generate_partition(date(2026, 11, 1), 2000, 99)
    matrix = applicants[list(MATRIX_COLUMNS)].to_numpy("float64")

    def predict(tensor: np.ndarray, static: np.ndarray) -> np.ndarray:
        return session.predict(tensor, static[:, : session.n_static])

    explainer = reason_codes.Explainer(codes, MATRIX_COLUMNS)
    predictor = reason_codes.model_predictor(predict, MATRIX_COLUMNS, include_protected=False)

    def score(rows: np.ndarray) -> np.ndarray:
        batch = features.featurize_matrix(rows, MATRIX_COLUMNS).batch
        return predict(batch.tensor, batch.static)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {machine()}, load average {load}")
    print("baseline: the scorer's pass without reasons on the same rows (featurize + one model call)")
    print(f"model: production CNN architecture, served by {session.describe()}; {explainer.coalitions} coalitions")
    header = ("declined rows", "score only ms (wall/CPU)", "+ reasons ms (wall/CPU)", "added CPU µs/row")
    print(f"{header[0]:>13} | {header[1]:>24} | {header[2]:>23} | {header[3]:>16}")
    for n in DECLINED_ROWS:
        rows = matrix[:n]
        base = timed(lambda rows=rows: score(rows), args.repeats)
        extra = timed(lambda rows=rows: explainer.explain(rows, predictor), args.repeats)
        print(
            f"{n:>13} | {base[0]:>11.3f} / {base[1]:>10.3f} | {extra[0]:>10.3f} / {extra[1]:>10.3f} | "
            f"{extra[1] / n * 1000:>16.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
