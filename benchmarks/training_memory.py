"""Peak memory of CNN training against the number of training rows: streamed (production) vs in memory.

    .venv/bin/python benchmarks/training_memory.py [--rows 100000,1000000] [--epochs 1] [--holdout-rows 20000]

For each size, writes one synthetic tensor partition to a throw-away local lake (``ml/synthetic`` in chunks,
featurized with the data plane's ``featurize_table``, one part per chunk), then trains the CNN in a fresh
process, twice: ``streamed`` is the production path (``train_cnn`` over the lake's parts, shuffle buffer
``TrainConfig.shuffle_rows``); ``in memory`` is the baseline the streaming replaced (the whole training split
materialized as arrays and given to ``model.fit``). The validation and test splits are capped at
``--holdout-rows`` each (``SplitSpec.max_holdout_rows``) so that every size holds the same validation rows and
any growth is the training split's. Prints, per size and mode, the peak RSS of the process (``ru_maxrss``), its
RSS after the imports, the split plan and the validation split (so the growth is visible), the seconds per
epoch, the machine and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    """Current resident set size of this process, MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_lake(root: str, rows: int) -> None:
    """One tensor partition of ``rows`` synthetic rows, written part by part."""
    import pyarrow as pa

    from platform_assets.core import lake_keys
    from platform_assets.dataplane.objects import LocalObjects
    from platform_assets.dataplane.partitions import commit, new_run_token, write_part
    from platform_assets.dataplane.tensors import featurize_table
    from platform_assets.ml import synthetic

    store, day = LocalObjects(root), date(2026, 10, 1)
    folder, token, parts = lake_keys.tensors(day.isoformat()), new_run_token(), []
    for index, chunk in enumerate(synthetic.generate_chunks(day, rows, seed=11)):
        tables = [t for t, _ in featurize_table(pa.Table.from_pandas(chunk), "synthetic", include_protected=False)]
        parts.append(write_part(store, folder, lake_keys.part_name(token, index), pa.concat_tables(tables)))
    commit(store, folder, parts, token)


def train(root: str, mode: str, epochs: int, holdout_rows: int) -> dict[str, float]:
    """Train in this process; peak and baseline RSS in MB, seconds per epoch."""
    from platform_assets.core import lake_keys
    from platform_assets.dataplane.objects import LocalObjects
    from platform_assets.dataplane.partitions import PartsSource, read_manifest
    from platform_assets.ml.dataset import ModellingDataset
    from platform_assets.ml.train import TrainConfig, balanced_weights, make_deterministic, train_cnn

    store = LocalObjects(root)
    folder = lake_keys.tensors("2026-10-01")
    source = PartsSource.of(store, {folder: read_manifest(store, folder)})
    data = ModellingDataset.planned(source, 0.1, 0.2, seed=42, max_holdout_rows=holdout_rows)
    config = TrainConfig(epochs=epochs, patience=epochs, seed=1)
    import keras  # noqa: F401  (imported before the baseline reading: its own memory is not the data's)

    validation = data.materialize("validation")
    before = _rss_mb()
    began = time.perf_counter()
    if mode == "streamed":
        train_cnn(data, config, validation=validation)
    else:
        from platform_assets.ml.model import build_cnn

        make_deterministic(config.seed)
        split = data.materialize("train")
        shape = split.features.tensor.shape
        model = build_cnn(shape[1], shape[2], split.features.static.shape[1], config.cnn)
        model.fit(
            split.keras_inputs(),
            split.labels,
            validation_data=(validation.keras_inputs(), validation.labels),
            epochs=epochs,
            batch_size=config.batch_size,
            class_weight=balanced_weights(data.plan.rows["train"]),
            verbose=0,
        )
    seconds = (time.perf_counter() - began) / epochs
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"train_rows": data.plan.total("train"), "rss_before_mb": before, "peak_mb": peak, "s_per_epoch": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated rows per partition")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--holdout-rows", type=int, default=20_000, help="cap on the validation and test rows")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "MODE", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, mode, epochs = args.child
        print(json.dumps(train(root, mode, int(epochs), args.holdout_rows)))
        return 0

    import keras
    import tensorflow as tf
    from uci_auc import machine  # the sibling script's description of the machine (this folder is on sys.path)

    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        with tempfile.TemporaryDirectory(prefix="training_memory_") as root:
            write_lake(root, rows)
            for mode in ("streamed", "in memory"):
                child = [sys.executable, __file__, "--holdout-rows", str(args.holdout_rows)]
                child += ["--child", root, mode, str(args.epochs)]
                out = subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout
                figures = json.loads(out.strip().splitlines()[-1])
                results.append((rows, mode, figures))
                print(f"{rows:>9} rows {mode:>9}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)

    print(
        "\n| rows | training rows | mode | RSS after plan + validation (MB) | peak RSS (MB) | growth (MB) | s/epoch |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|")
    for rows, mode, f in results:
        print(
            f"| {rows:,} | {int(f['train_rows']):,} | {mode} | {f['rss_before_mb']:.0f} | {f['peak_mb']:.0f} "
            f"| {f['peak_mb'] - f['rss_before_mb']:.0f} | {f['s_per_epoch']:.1f} |"
        )
    print(f"\nvalidation and test capped at {args.holdout_rows:,} rows each, {args.epochs} epoch(s)")
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, TensorFlow {tf.__version__}, Keras {keras.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
