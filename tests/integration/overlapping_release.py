"""One of two overlapping retrains, run as its own process by test_version_concurrency.py.

Trains a version, waits until the other process has trained one too (so the newest version in the lake is
no longer necessarily its own), then evaluates, signs and builds the Bento for the version it trained.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

BARRIER_SECONDS = 600


def main(barrier: Path, name: str, seed: int) -> None:
    import dagster as dg

    from platform_assets.definitions import defs
    from platform_assets.demo import trained_version

    definitions = defs()
    fast = {"ops": {"default_risk_model": {"config": {"epochs": 3, "patience": 2, "seed": seed}}}}
    with dg.DagsterInstance.get() as instance:
        training = definitions.resolve_job_def("training_job").execute_in_process(instance=instance, run_config=fast)
        assert training.success, f"{name}: training failed"
        version = trained_version(training)
        (barrier / f"{name}.trained").write_text(version)
        deadline = time.monotonic() + BARRIER_SECONDS
        while len(list(barrier.glob("*.trained"))) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the other retrain did not finish training")
            time.sleep(0.5)
        release = definitions.resolve_job_def("release_job")
        selection = [key for key in release.asset_layer.executable_asset_keys if key.path != ["credit_risk_deployment"]]
        result = release.execute_in_process(instance=instance, partition_key=version, asset_selection=selection)
        assert result.success, f"{name}: release of {version} failed"
    document = {"version": version, "training_run_id": training.run_id, "release_run_id": result.run_id}
    (barrier / f"{name}.json").write_text(json.dumps(document))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
