"""The closed loop measured: drift onset -> sensor -> retrain -> released -> challenger serving -> decision, per
stage, beside the pure compute of the same steps in one plain process.

    make bench-loop                                               # 3 partitions of 1,000 rows, 100 applications/s
    .venv/bin/python benchmarks/loop/run_benchmark.py --smoke   # smaller (tests/loop/test_bench_loop.py)

In a temporary PLATFORM_HOME: version v1 is ingested, trained, governed, built and served by a real
``bentoml serve`` (``platform_assets.demo.run_pipeline``, the setup, timed apart). Then a thread sends
drifted synthetic applications with their outcomes (``platform_assets.loop_demo.Traffic``; back to the
training distribution once a retrain is requested, as ``make loop-demo`` does), counting every failed
request, while this process stands in for the Dagster daemon: every ``--tick`` second it evaluates every
sensor of the code location (cursors kept, run keys deduplicated, as the daemon does) and executes the runs
they request in process, one after the other, with the request's run config, tags and partition, until the
rollout is decided (``platform_assets.loop_timeline``). The stages come from the instance's timeline.

The emulation's tick is not the daemon's: the daemon evaluates each sensor at most once per its minimum
interval and launches each run in a new process that loads the code location. The report adds, per sensor
hop, what the configured intervals would add (half an interval on average, a whole one at worst) and the
measured code-location load of a fresh process. Then ``pure.py`` repeats the stages' compute in a fresh
process without Dagster, MLflow or BentoML, on the same rows with the same configuration. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from uci_auc import machine  # noqa: E402  (the sibling script's description of the machine)

PARTITIONS = ("2026-10-05", "2026-10-06", "2026-10-07", "2026-10-08")
STAGES = ("detection", "trained", "released", "challenger serving", "decision")
#: What each stage measures, from the previous stage's end.
STAGE_TEXT = {
    "detection": "drift onset -> a sensor requests the retrain",
    "trained": "-> the retrained version is materialized",
    "released": "-> it is deployed (shadow, or challenger without a shadow phase)",
    "challenger serving": "-> it serves as challenger at the first canary weight",
    "decision": "-> promoted, or retired / rolled back",
}
#: The canary's p99 gate in this run, seconds (see ``configure``).
P99_GATE_SECONDS = 5.0
#: The issue's targets on 2 cores: detection -> challenger serving.
TARGET_SECONDS = 60.0
TARGET_RATIO = 2.0


@dataclass
class Executed:
    """One run request the emulated daemon executed, and its steps' wall seconds (from the run's events)."""

    sensor: str
    job: str
    partition: str | None
    requested_at: datetime
    seconds: float
    success: bool
    steps: dict[str, float] = field(default_factory=dict)
    #: The emulated tick that requested it: the daemon would wait for each sensor tick once, not once per run.
    tick: int = 0


def step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Each step's wall seconds in a run: from its STEP_START to its STEP_SUCCESS or STEP_FAILURE event."""
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id, of_type=kinds):
        if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif entry.step_key in started:
            seconds[entry.step_key] = round(entry.timestamp - started[entry.step_key], 2)
    return seconds


@dataclass
class Daemon:
    """The Dagster daemon's sensor loop in this process: each tick evaluates every sensor (its cursor kept) and
    executes each new run request in process, one after the other."""

    definitions: Any
    instance: Any
    cursors: dict[str, str | None] = field(default_factory=dict)
    run_keys: set[tuple[str, str]] = field(default_factory=set)
    executed: list[Executed] = field(default_factory=list)
    tick_errors: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    ticks: int = 0

    def evaluate(self, sensor: Any) -> Any:
        import dagster as dg
        from dagster._core.definitions.partitions.context import partition_loading_context

        resources = {k: self.definitions.resources[k] for k in sensor.required_resource_keys}
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sensor.name),
            resources=resources,
            definitions=self.definitions,
        )
        # The daemon checks a partitioned request's key against the instance's dynamic partitions.
        with partition_loading_context(dynamic_partitions_store=self.instance):
            return sensor.evaluate_tick(context)

    def tick(self, before_run: Any, after_run: Any) -> None:
        """One tick of every sensor; ``before_run(request)`` and ``after_run()`` around each run it executes."""
        from platform_assets.loop_timeline import REASON_CHARS

        self.ticks += 1
        for sensor in self.definitions.sensors:
            try:
                result = self.evaluate(sensor)
            except Exception as error:  # noqa: BLE001 - a failed tick is recorded, as the daemon does
                self.tick_errors.append(f"{sensor.name}: {type(error).__name__}: {error}")
                continue
            if result.cursor:
                self.cursors[sensor.name] = result.cursor
            if result.skip_message and self.waiting.get(sensor.name) != result.skip_message:
                self.waiting[sensor.name] = result.skip_message
                print(f"{'':11} {sensor.name} waits: {result.skip_message[:REASON_CHARS]}", flush=True)
            for request in result.run_requests or []:
                if request.run_key and (sensor.name, request.run_key) in self.run_keys:
                    continue
                if request.run_key:
                    self.run_keys.add((sensor.name, request.run_key))
                before_run(request)
                self.run(sensor, request)
                after_run()

    def run(self, sensor: Any, request: Any) -> None:
        from platform_assets.demo import CONSOLE
        from platform_assets.loop_timeline import partitions_of

        job_name = request.job_name or sensor.job_name
        tags = {**request.tags, "dagster/sensor_name": sensor.name}
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
        requested, started = datetime.now(UTC), time.monotonic()
        result = self.definitions.resolve_job_def(job_name).execute_in_process(
            instance=self.instance,
            # The request's run config; the console logger at INFO only keeps this output readable.
            run_config={**CONSOLE, **(request.run_config or {})},
            tags=tags,
            partition_key=request.partition_key,
            raise_on_error=False,
        )
        seconds = round(time.monotonic() - started, 2)
        steps = step_seconds(self.instance, result.run_id)
        partition = request.partition_key or partitions_of(tags)  # a key, or a range's first...last
        self.executed.append(
            Executed(sensor.name, job_name, partition, requested, seconds, result.success, steps, self.ticks)
        )
        print(
            f"  ran {job_name}{f' [{partition}]' if partition else ''} for {sensor.name}: "
            f"{'success' if result.success else 'FAILED'} in {seconds:.1f} s",
            flush=True,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def configure(home: Path, args: argparse.Namespace) -> None:
    """The temporary home's settings (before anything reads them)."""
    for name in list(os.environ):
        if name.startswith(("PLATFORM_", "CREDIT_RISK_", "MLFLOW_")):
            del os.environ[name]
    os.environ.update(
        {
            "PLATFORM_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "PLATFORM_ROWS_PER_DAY": str(args.rows_per_day),
            "PLATFORM_SERVICE_PORT": str(free_port()),
            "PLATFORM_ROLLOUT_STRATEGY": "canary",
            # A failing I/O step retries after 1 s, not 5 min: a retry would be the figure otherwise.
            "PLATFORM_RETRY_DELAY_SECONDS": "1",
            # The sensors judge this run's traffic only (the home is new anyway).
            "PLATFORM_LOOP_WINDOW_HOURS": "1",
            # The canary's p99 gate is the service's 25 ms objective, which a shared machine misses for champion
            # and challenger alike, and the canary then waits for ever ("a service-wide incident"). This run
            # measures the loop's time; bench-serving measures the latency.
            "PLATFORM_LOOP_CANARY_MAX_P99_SECONDS": str(P99_GATE_SECONDS),
            "SPARK_MASTER": "local[2]",
            "PYSPARK_PYTHON": sys.executable,
        }
    )


def setup(args: argparse.Namespace) -> tuple[str, str]:
    """v1 ingested, trained, governed and served; the service URL and an API key for the traffic."""
    from platform_assets.core.api_keys import create_key
    from platform_assets.definitions import defs
    from platform_assets.demo import run_pipeline

    config = {"ops": {"default_risk_model": {"config": {"epochs": args.v1_epochs, "patience": 2, "seed": 1}}}}
    run_pipeline(list(PARTITIONS[: args.days]), config, deploy=True)
    deployer = defs().resources["deployer"]
    key, _ = create_key(deployer.api_keys_file(), ["predict", "feedback"], note="bench-loop traffic")
    return deployer.local_manager().current().url, key


def stage_times(timeline: Any, outcome: Any) -> tuple[dict[str, datetime | None], str | None, float]:
    """When each stage ended (UTC; None when not reached), the candidate version, and its last canary weight."""
    events = timeline.events
    requests = [e for e in events if e.kind == "run"]
    ends: dict[str, datetime | None] = dict.fromkeys(STAGES)
    ends["detection"] = requests[0].at if requests else None
    trained = [e for e in events if e.title.startswith("version trained") and ends["detection"]]
    candidate = trained[0].model_version if trained else None
    ends["trained"] = trained[0].at if trained else None
    deployed = [e for e in events if e.title.startswith("deployed") and e.model_version == candidate]
    ends["released"] = deployed[0].at if deployed else None
    weight = 0.0
    for at, state in timeline.moves:
        if state.aliases.get("challenger") == candidate and float(state.tags.get("challenger_weight", 0)) > 0:
            ends["challenger serving"] = ends["challenger serving"] or at
            weight = float(state.tags["challenger_weight"])
    ends["decision"] = outcome.at if outcome is not None else None
    return ends, candidate, weight


def code_location_load_seconds() -> float:
    """What a run process the daemon launches pays before its first step: a fresh interpreter loading the code
    location (measured once, in this environment)."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "from platform_assets.definitions import defs; defs()"],
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
    )
    return round(time.monotonic() - started, 2)


def pure_compute(home: Path, spec: dict[str, Any], policies: dict[str, Any]) -> dict[str, Any]:
    spec_file, policies_file = home / "pure_spec.json", home / "pure_policies.pickle"
    policies_file.write_bytes(pickle.dumps(policies))
    spec_file.write_text(json.dumps({**spec, "policies": str(policies_file)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "DAGSTER_", "MLFLOW_"))}
    run = subprocess.run(
        [sys.executable, str(HERE / "pure.py"), str(spec_file)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO)},
    )
    if run.returncode != 0:
        raise RuntimeError(f"pure.py failed ({run.returncode}):\n{run.stderr[-3000:]}\n{run.stdout[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def fmt(value: float | None) -> str:
    """Seconds: one decimal, two below a second (a pure read takes hundredths)."""
    return "-" if value is None else f"{value:.2f}" if value < 1 else f"{value:.1f}"


def report(
    args: argparse.Namespace,
    ends: dict[str, datetime | None],
    onset: datetime,
    pure: dict[str, Any],
    daemon: Daemon,
    intervals: dict[str, int],
    policies: dict[str, Any],
) -> list[str]:
    """The figures as Markdown lines."""
    wait = evidence_wait(args, policies)
    lines = ["| stage | what | orchestrated s | pure s | ratio |", "|---|---|---|---|---|"]
    previous = onset  # the last stage reached: without a challenger phase, the decision follows the release
    orchestrated: dict[str, float | None] = {}
    for stage in STAGES:
        end = ends[stage]
        orchestrated[stage] = (end - previous).total_seconds() if end else None
        previous = end or previous
        parts = pure["timings"].get(stage, {})
        pure_s = sum(parts.values()) if parts else None
        ratio = f"{orchestrated[stage] / pure_s:.1f}x" if orchestrated[stage] and pure_s else "-"
        lines.append(f"| {stage} | {STAGE_TEXT[stage]} | {fmt(orchestrated[stage])} | {fmt(pure_s)} | {ratio} |")
    total = sum(v for v in orchestrated.values() if v is not None)
    pure_total = sum(sum(p.values()) for p in pure["timings"].values())
    lines.append(f"| total | drift onset -> decision | {total:.1f} | {pure_total:.1f} | {total / pure_total:.1f}x |")
    lines.append("")
    lines.append(
        "Pure compute, by part (s): "
        + "; ".join(
            f"{stage}: " + ", ".join(f"{part} {s:.2f}" for part, s in parts.items())
            for stage, parts in pure["timings"].items()
        )
        + f"; imports (apart) {pure['imports_seconds']:.1f}."
    )
    detected, serving = ends["detection"], ends["challenger serving"] or ends["released"]
    if detected and serving:
        span = (serving - detected).total_seconds()
        pure_span = sum(sum(pure["timings"].get(s, {}).values()) for s in ("trained", "released", "challenger serving"))
        reached = "challenger serving" if ends["challenger serving"] else "released (no challenger phase reached)"
        within = "met" if span <= TARGET_SECONDS else "missed"
        ratio_met = "met" if span <= TARGET_RATIO * pure_span else "missed"
        lines.append(
            f"Detection -> {reached}: {span:.1f} s (target <= {TARGET_SECONDS:g} s: {within}); pure compute "
            f"{pure_span:.1f} s, ratio {span / pure_span:.2f}x (target <= {TARGET_RATIO:g}x: {ratio_met})."
        )
        if ends["challenger serving"]:
            net = span - wait.shadow
            lines.append(
                f"The same less the shadow gate's least wait for evidence ({wait.shadow:.1f} s, below): {net:.1f} s, "
                f"ratio {net / pure_span:.2f}x."
            )
    lines.append(wait.text)
    lines.append("")
    lines.append("Where the orchestrated runs' time goes (wall s; run = the whole in-process execution):")
    lines.append("")
    lines.append("| job | run s | steps (s) |")
    lines.append("|---|---|---|")
    for run in daemon.executed:
        where = f" [{run.partition}]" if run.partition else ""
        steps = ", ".join(f"{step} {s:.1f}" for step, s in sorted(run.steps.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {run.job}{where} | {run.seconds:.1f} | {steps} |")
    lines.append("")
    hops: dict[str, int] = {}  # sensor -> ticks that requested runs
    for sensor, _ in sorted({(run.sensor, run.tick) for run in daemon.executed}):
        hops[sensor] = hops.get(sensor, 0) + 1
    expected = sum(n * intervals[s] / 2 for s, n in hops.items())
    worst = sum(n * intervals[s] for s, n in hops.items())
    lines.append(
        f"Emulated daemon: every sensor every {args.tick:g} s, runs in this process. Under the daemon each request "
        "waits for its sensor's next tick (ticks that requested runs): "
        + ", ".join(f"{s} {intervals[s]} s x {n}" for s, n in sorted(hops.items()))
        + f" add about {expected:.0f} s on average, {worst:.0f} s at worst; and each of the {len(daemon.executed)} "
        f"runs starts a process that loads the code location ({daemon_load_seconds(args):.1f} s measured)."
    )
    return lines


@dataclass(frozen=True)
class EvidenceWait:
    """The least seconds the gates' minimum samples take to gather at the run's traffic: outcomes, not compute."""

    detection: float
    shadow: float
    canary: float
    text: str


def evidence_wait(args: argparse.Namespace, policies: dict[str, Any]) -> EvidenceWait:
    rate = args.rate  # the traffic thread sends at its rate: outcomes due later do not hold the next chunk back
    drop, canary, promotion = policies["drop_policy"], policies["canary_policy"], policies["promotion_policy"]
    detection = drop.min_labelled / rate + args.label_delay
    # The shadow scores every application: its minimum predictions, and outcomes for the minimum labelled pairs.
    shadow = max(promotion.shadow_min_predictions / rate, promotion.min_labelled / rate + args.label_delay)
    steps = [w for w in canary.steps if w < 100]
    canary_wait = sum(
        max(canary.min_labelled / (rate * w / 100), canary.min_labelled / (rate * (1 - w / 100))) + args.label_delay
        for w in steps
    )
    text = (
        f"Outcomes the gates wait for at {args.rate:g} applications/s (labels {args.label_delay:g} s later): "
        f"detection >= {detection:.1f} s ({drop.min_labelled} labelled), shadow gate >= {shadow:.1f} s "
        f"({promotion.shadow_min_predictions} shadow predictions, {promotion.min_labelled} labelled pairs), canary "
        f">= {canary_wait:.1f} s ({canary.min_labelled} labelled per version at {', '.join(f'{w:g} %' for w in steps)})"
        ": traffic, not compute."
    )
    return EvidenceWait(detection, shadow, canary_wait, text)


_LOAD: dict[str, float] = {}


def daemon_load_seconds(args: argparse.Namespace) -> float:
    if "load" not in _LOAD:
        _LOAD["load"] = code_location_load_seconds()
    return _LOAD["load"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-per-day", type=int, default=1000, help="synthetic rows per daily partition")
    parser.add_argument("--days", type=int, default=3, choices=range(1, len(PARTITIONS) + 1), help="partitions")
    parser.add_argument("--v1-epochs", type=int, default=4, help="epochs of the setup's v1 (the retrain: defaults)")
    parser.add_argument("--rate", type=float, default=100.0, help="applications per second of the traffic")
    parser.add_argument("--shift", type=float, default=0.7, help="drifted share until a retrain is requested")
    parser.add_argument("--label-delay", type=float, default=1.0, help="seconds before an outcome is posted")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between the emulated daemon's ticks")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds of loop")
    parser.add_argument("--smoke", action="store_true", help="smaller: 2 partitions of 500 rows, v1 2 epochs")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary PLATFORM_HOME")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows_per_day, args.days, args.v1_epochs = 500, 2, 2
    command = "python benchmarks/loop/run_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = os.getloadavg()
    started_at = datetime.now(UTC)
    home = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    configure(home, args)
    try:
        return run(args, home, command, load_start, started_at)
    finally:
        stop_service()
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"home kept: {home}")


def stop_service() -> None:
    try:
        from platform_assets.definitions import defs

        manager = defs().resources["deployer"].local_manager()
        state = manager.current()
        if state is not None:
            manager.stop(state)
    except Exception as error:  # noqa: BLE001 - reported, the figures are printed already
        print(f"stopping the service failed: {error}", file=sys.stderr)


def run(args: argparse.Namespace, home: Path, command: str, load_start: tuple[float, ...], started_at: datetime) -> int:
    import dagster as dg

    from platform_assets import model_store
    from platform_assets.core.model_version import RECORD_FILE
    from platform_assets.defs.governance.assets import DriftConfig
    from platform_assets.defs.promotion.assets import PORTFOLIO_DAYS, newest_tensor_days
    from platform_assets.defs.training.assets import BaselineConfig, CNNTrainingConfig
    from platform_assets.loop_demo import Traffic, describe_traffic, failed_requests, wait_for_key
    from platform_assets.loop_timeline import Timeline, read_registry, runs_in_progress
    from platform_assets.resources.training_data import TrainingData
    from platform_assets.settings import load, topology

    t0 = time.monotonic()
    url, key = setup(args)
    wait_for_key(url, key)  # a key created just now is known to the service within a second
    setup_seconds = time.monotonic() - t0
    from platform_assets.definitions import defs

    definitions = defs()
    tracking_uri = topology(load()).mlflow_tracking_uri
    intervals = {s.name: s.minimum_interval_seconds for s in definitions.sensors}
    with dg.DagsterInstance.get() as instance:
        daemon = Daemon(definitions, instance)
        timeline = Timeline(datetime.now(UTC), read_registry(tracking_uri))
        traffic = Traffic(url, key, rate=args.rate, shift=args.shift, label_delay=args.label_delay).start()
        timeline.onset = datetime.now(UTC)
        print(
            f"setup {setup_seconds:.0f} s; drifted traffic from now, {args.rate:g}/s, shift {args.shift:g}", flush=True
        )

        def observe() -> None:
            for event in timeline.poll(instance, read_registry(tracking_uri), datetime.now(UTC)):
                print(timeline.line(event), flush=True)

        def before_run(request: Any) -> None:
            # The first request is the retrain the drift provoked: from now on, applicants like the training data.
            if traffic.shift:
                traffic.shift = 0.0
                print(timeline.line(timeline.note("traffic back to the training distribution")), flush=True)

        deadline, outcome = time.monotonic() + args.timeout, None
        try:
            while time.monotonic() < deadline:
                tick_started = time.monotonic()
                daemon.tick(before_run, observe)
                observe()
                outcome = timeline.outcome(runs_in_progress(instance))
                if outcome is not None:
                    break
                time.sleep(max(0.0, args.tick - (time.monotonic() - tick_started)))
        finally:
            stats = traffic.stop()
    ends, candidate, weight = stage_times(timeline, outcome)
    print("\n" + timeline.render() + "\n", flush=True)
    if candidate is None:
        print("no version was retrained: nothing to compare", file=sys.stderr)
        return 1
    lake_root = Path(topology(load()).lake_uri)
    lake = definitions.resources["lake"]
    champion = timeline.start.aliases["champion"]
    policies = {
        "train_config": CNNTrainingConfig(**model_store.load_record(lake, candidate).training_config).to_train_config(),
        "drop_policy": definitions.resources["live_monitoring"].drop_policy(),
        "promotion_policy": definitions.resources["live_monitoring"].promotion_policy(),
        "canary_policy": definitions.resources["live_monitoring"].canary_policy(),
    }

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    spec = {
        "repo": str(REPO),
        "lake_root": str(lake_root),
        "inference_db": topology(load()).inference_db,
        "window_hours": load().loop_window_hours,
        "champion": champion,
        "champion_validation": dict(model_store.load_record(lake, champion).validation_metrics),
        "candidate": candidate,
        "candidate_record": str(lake_root / model_store.version_key(candidate, RECORD_FILE)),
        "champion_record": str(lake_root / model_store.version_key(champion, RECORD_FILE)),
        "portfolio_days": newest_tensor_days(lake, PORTFOLIO_DAYS),
        "baseline_rows": BaselineConfig().max_train_rows,
        "drift_config": DriftConfig().model_dump(),
        "drift_window": TrainingData(window_days=DriftConfig().window_partitions).available_partitions(lake),
        "baseline_seed": BaselineConfig().seed,
        "detected_at": iso(ends["detection"]),
        "challenger_at": iso(ends["challenger serving"]),
        # The shadow gate ended the challenger's wait, or (retired in shadow) the rollout itself.
        "gate_stage": "challenger serving" if ends["challenger serving"] else "decision",
        "decided_at": iso(ends["decision"]),
        "last_weight": weight,
    }
    pure = pure_compute(home, spec, policies)
    lines = report(args, ends, timeline.onset, pure, daemon, intervals, policies)
    load_end = os.getloadavg()
    decided = f"{outcome.result} ({outcome.reason})" if outcome else f"undecided after {args.timeout:g} s"
    print("\n".join(lines))
    print(f"Rollout: {decided}. Traffic: {describe_traffic(stats)}.")
    for error in stats.errors[:5]:
        print(f"  failed: {error}")
    print(
        f"Same model in both: validation ROC AUC {pure['validation_roc_auc']:.4f} (pure) and "
        f"{pure['orchestrated_validation_roc_auc']:.4f} (orchestrated); pure process loaded "
        f"{', '.join(pure['loaded_frameworks']) or 'no Dagster, MLflow or BentoML'}."
    )
    print(f"Setup (v1 ingested, trained, governed, served; not in the table): {setup_seconds:.0f} s.")
    print(
        f"Settings of this run: PLATFORM_LOOP_CANARY_MAX_P99_SECONDS={P99_GATE_SECONDS:g} (the service's objective "
        "is 25 ms; see configure()), window 1 h, retries 1 s apart; every other gate and interval at its default."
    )
    if daemon.tick_errors:
        print(f"Failed sensor ticks: {len(daemon.tick_errors)}, first: {daemon.tick_errors[0]}")
    print(
        f"Machine: {platform.platform()}, {machine()}; load average {' / '.join(f'{x:.1f}' for x in load_start)} "
        f"(1 / 5 / 15 min) at the start, {' / '.join(f'{x:.1f}' for x in load_end)} at the end."
    )
    print(f"Date: {started_at:%Y-%m-%d %H:%M} UTC. Command: {command}")
    failed = failed_requests(stats)
    return 0 if outcome is not None and outcome.result != "failed" and failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
