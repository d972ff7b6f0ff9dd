"""``make loop-demo``: drifted traffic until the loop has decided the rollout it starts, and its timeline.

    python -m platform_assets.loop_demo --api-key-file .platform_home/serving/loop-demo.key

With ``make demo`` running (the service, and the Dagster UI whose daemon runs the sensors), it sends
applications with their true outcomes to the service (``platform_assets.replay``; every outcome, or with
``--labels realistic`` approved applications' only, as a lender learns them) in a thread, at a modest
rate, and keeps sending until the rollout is decided: first drifted ones (``--shift``), which degrade the
champion until a sensor requests a retrain; from then on applicants like those the models are trained on
(``--shift-after``, default 0): the retrain learns from the lake's partitions, not from the drifted
traffic, so only on such traffic can the shadow, the canary and the promotion gates tell the two versions
apart. Each event is printed when it is seen (``platform_assets.loop_timeline``: sensor requests, versions
trained, deployments, shadow reports, approvals, promotion and canary decisions, registry moves, failed
runs), in seconds since drift onset; at the end the whole table and the requests sent and failed.

Exit 0 when the rollout is decided (promoted, or retired / rolled back) with no failed request; 1 on a
failed request, a failed run or the ``--timeout`` (the timeline so far is printed); 2 when nothing serves.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from platform_assets.core.service_tls import TLSFiles, verify
from platform_assets.loop_timeline import (
    REASON_CHARS,
    Outcome,
    Timeline,
    read_registry,
    run_table,
    runs_in_progress,
    sensor_waits,
)
from platform_assets.replay import (
    LABEL_MODES,
    LabelMode,
    PendingOutcomes,
    ReplayStats,
    apply_shift,
    replay,
    synthetic_source,
)

#: Seconds of traffic per replay call (one synthetic day each); its outcomes not yet due move on to the next call.
CHUNK_SECONDS = 5.0


def add_up(total: ReplayStats, part: ReplayStats) -> ReplayStats:
    """``total`` with ``part`` added: counts summed, per-version and per-decision counts merged, the first 20
    errors kept."""
    merged: dict[str, Any] = {}
    for entry in fields(ReplayStats):
        mine, theirs = getattr(total, entry.name), getattr(part, entry.name)
        if isinstance(mine, dict):
            merged[entry.name] = {k: mine.get(k, 0) + theirs.get(k, 0) for k in sorted({*mine, *theirs})}
        elif isinstance(mine, list):
            merged[entry.name] = (mine + theirs)[:20]
        else:
            merged[entry.name] = mine + theirs
    return ReplayStats(**merged)


class Traffic:
    """Applications with outcomes sent to ``url`` in a thread, ``CHUNK_SECONDS`` at a time, until ``stop()``.

    ``rate`` is applications per second, ``label_delay`` the seconds before an outcome is posted, ``labels``
    which outcomes are (``replay.labelled``: all, or approved applications' only); ``shift``
    (0..1, ``replay.apply_shift``) may be changed while it runs and applies from the next chunk. Each chunk
    is a new synthetic day, so application IDs do not repeat.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        rate: float,
        shift: float,
        label_delay: float,
        labels: LabelMode = "all",
        batch_size: int = 25,
        seed: int = 2027,
        first_day: date = date(2027, 1, 1),
        tls: TLSFiles | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive applications per second, got {rate}")
        self.url, self.key, self.rate, self.shift, self.label_delay = url, key, rate, shift, label_delay
        self.labels = labels
        self.batch_size, self.seed, self.first_day, self.tls = batch_size, seed, first_day, tls
        self._stats = ReplayStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-traffic", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> ReplayStats:
        """Stop after the chunk being sent, once every pending outcome is posted; what was sent."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the traffic thread did not stop within {timeout:g} s")
        return self.snapshot()

    def snapshot(self) -> ReplayStats:
        """What was sent so far: every finished chunk's ``ReplayStats`` added up."""
        with self._lock:
            return add_up(ReplayStats(), self._stats)

    def _run(self) -> None:
        rows = max(self.batch_size, int(self.rate * CHUNK_SECONDS))
        # Outcomes not yet due move on to the next chunk, which starts at once: waiting for the last ones at each
        # chunk's end sent 5/(5 + delay) of ``rate`` (83 applications/s of 100 with outcomes 1 s later).
        pending: PendingOutcomes = deque()
        with httpx.Client(base_url=self.url.rstrip("/"), timeout=30, verify=verify(self.tls)) as client:
            chunk = 0
            while True:
                stopping = self._stop.is_set()
                day = self.first_day + timedelta(days=chunk)
                frame = apply_shift(synthetic_source(rows, self.seed, day), self.shift, seed=self.seed + chunk)
                if stopping:  # no more applications: post the outcomes still pending once due
                    frame = frame.iloc[:0]
                try:
                    sent = replay(
                        self.url,
                        frame,
                        self.key,
                        self.key,
                        rate=self.rate,
                        batch_size=self.batch_size,
                        feedback_delay=self.label_delay,
                        max_seconds=4 * CHUNK_SECONDS,
                        labels=self.labels,
                        seed=self.seed + chunk,
                        client=client,
                        pending=pending,
                        wait_for_outcomes=stopping,
                    )
                except Exception as error:  # noqa: BLE001 - counted as failures; the thread must go on
                    sent = ReplayStats(
                        sent=len(frame), predict_failures=len(frame), errors=[f"{type(error).__name__}: {error}"]
                    )
                    if not stopping:
                        time.sleep(1.0)
                with self._lock:
                    self._stats = add_up(self._stats, sent)
                if stopping:
                    return
                chunk += 1


def wait_for_key(url: str, key: str, *, timeout: float = 30.0, tls: TLSFiles | None = None) -> None:
    """Return once the service accepts ``key`` on /predict and /feedback (it re-reads its key file at most once a
    second, so a key created just now may be unknown for a moment). Each probe sends an empty body, which the
    service refuses as invalid (422) only after it has authenticated the key: nothing is predicted or logged.

    Raises ``RuntimeError`` naming the endpoint when the key lacks its role (403) or is still unknown (401) after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url.rstrip("/"), timeout=10, verify=verify(tls)) as client:
        probes: list[tuple[str, dict[str, list[Any]]]] = [
            ("/predict", {"applications": []}),
            ("/feedback", {"outcomes": []}),
        ]
        for endpoint, body in probes:
            while True:
                status = client.post(endpoint, json=body, headers=headers).status_code
                if status == 403:
                    raise RuntimeError(f"{endpoint} refuses the key (403): create one with the role it needs")
                if status != 401:
                    break
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{endpoint} does not know the key (401) after {timeout:g} s")
                time.sleep(0.5)


def failed_requests(stats: ReplayStats) -> int:
    """Applications and outcomes that were not answered with a 200."""
    return stats.predict_failures + stats.feedback_failures


def describe_traffic(stats: ReplayStats) -> str:
    answered = ", ".join(f"{v}: {n}" for v, n in sorted(stats.by_version.items())) or "none"
    withheld = sum(stats.labels_withheld.values())
    return (
        f"requests: {stats.sent} applications sent, {stats.predict_failures} failed; outcomes: "
        f"{stats.feedback_sent} posted, {stats.feedback_failures} failed"
        + (f", {withheld} withheld (no outcome for a decline)" if withheld else "")
        + f"; answered by {answered}"
    )


def watch(
    instance: Any,
    tracking_uri: str,
    timeline: Timeline,
    *,
    timeout: float,
    poll_seconds: float,
    on_event: Callable[[str], None],
    on_poll: Callable[[Timeline], None] | None = None,
) -> Outcome | None:
    """Poll the instance and the registry every ``poll_seconds`` until the rollout is decided (the outcome) or
    ``timeout`` seconds pass (None); ``on_event`` gets each new event's line and each sensor's new reason for
    waiting (its newest tick's), ``on_poll`` the timeline."""
    deadline = time.monotonic() + timeout
    waiting: dict[str, str] = {}
    while True:
        for event in timeline.poll(instance, read_registry(tracking_uri), datetime.now(UTC)):
            on_event(timeline.line(event))
        for sensor, reason in sorted(sensor_waits(instance, timeline.onset).items()):
            if waiting.get(sensor) != reason:
                waiting[sensor] = reason
                on_event(f"{'':11} {sensor} waits: {reason[:REASON_CHARS]}")
        if on_poll is not None:
            on_poll(timeline)
        outcome = timeline.outcome(runs_in_progress(instance))
        if outcome is not None or time.monotonic() >= deadline:
            return outcome
        time.sleep(poll_seconds)


def retrain_requested(timeline: Timeline) -> bool:
    """Whether a sensor requested a run since onset (the first is the retrain the drift provokes)."""
    return any(e.kind == "run" for e in timeline.events)


def sensor_intervals(definitions: Any) -> str:
    """``name N s`` for each sensor of the code location, as this process's settings give them."""
    return ", ".join(
        f"{s.name} {s.minimum_interval_seconds} s" for s in sorted(definitions.sensors, key=lambda s: s.name)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.loop_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-key-file", type=Path, required=True, help="file with a key with predict and feedback")
    parser.add_argument("--url", help="service base URL (default: the local deployment's)")
    parser.add_argument("--rate", type=float, default=50.0, help="applications per second")
    parser.add_argument("--shift", type=float, default=0.7, help="drifted share 0..1 until a retrain is requested")
    parser.add_argument("--shift-after", type=float, default=0.0, help="drifted share 0..1 after that")
    parser.add_argument("--label-delay", type=float, default=2.0, help="seconds before an outcome is posted")
    parser.add_argument(
        "--labels", choices=LABEL_MODES, default="all", help="outcomes of every application or approved ones only"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between reads of the instance and registry")
    args = parser.parse_args(argv)
    for name in ("shift", "shift_after"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be within 0..1")
    key = args.api_key_file.read_text().strip() if args.api_key_file.is_file() else ""
    if not key:
        parser.error(f"--api-key-file {args.api_key_file}: no key in it (make loop-demo creates one)")

    import dagster as dg

    from platform_assets.definitions import defs
    from platform_assets.demo import ensure_dagster_home
    from platform_assets.settings import load, platform_home, topology

    ensure_dagster_home(platform_home())
    definitions = defs()
    deployer = (definitions.resources or {})["deployer"]
    state = deployer.local_manager().current() if deployer.target == "local" else None
    url = args.url or (state.url if state is not None else None)
    tracking_uri = topology(load()).mlflow_tracking_uri
    start = read_registry(tracking_uri)
    if url is None or "champion" not in start.aliases:
        print("nothing serves: run `make demo` first (and keep it running)", file=sys.stderr)
        return 2
    print(f"service {url}; registry: {start.describe()}")
    print(f"sensor intervals (minimum, as this shell's settings give them): {sensor_intervals(definitions)}")
    try:
        wait_for_key(url, key, tls=deployer.client_tls())
    except (RuntimeError, httpx.HTTPError) as error:
        print(f"the service at {url} cannot be used: {error}", file=sys.stderr)
        return 2

    onset = datetime.now(UTC)
    timeline = Timeline(onset, start)
    traffic = Traffic(
        url,
        key,
        rate=args.rate,
        shift=args.shift,
        label_delay=args.label_delay,
        labels=args.labels,
        tls=deployer.client_tls(),
    ).start()
    started = f"shift {args.shift:g}, {args.rate:g}/s, {args.labels} labels {args.label_delay:g} s later"
    print(timeline.line(timeline.note("drifted traffic started", started)))

    def after_retrain(current: Timeline) -> None:
        if traffic.shift != args.shift_after and retrain_requested(current):
            traffic.shift = args.shift_after
            event = current.note("traffic back to the training distribution", f"shift {args.shift_after:g}")
            print(current.line(event), flush=True)

    outcome: Outcome | None = None
    try:
        with dg.DagsterInstance.get() as instance:
            outcome = watch(
                instance,
                tracking_uri,
                timeline,
                timeout=args.timeout,
                poll_seconds=args.poll,
                on_event=lambda line: print(line, flush=True),
                on_poll=after_retrain,
            )
            in_progress = runs_in_progress(instance)
            runs = run_table(instance, onset)
    finally:
        stats = traffic.stop()
    timeline.note("traffic stopped", describe_traffic(stats))
    print("\n" + timeline.render() + "\n")
    print(f"Runs since drift onset (queued: from the request to the run's start):\n{runs}\n")
    print(describe_traffic(stats))
    for failure in stats.errors[:5]:
        print(f"  error: {failure}")
    if outcome is None:
        running = f"; runs in progress: {', '.join(in_progress)}" if in_progress else ""
        print(f"undecided after {args.timeout:g} s{running}", file=sys.stderr)
        return 1
    print(f"{outcome.result}: {outcome.reason} ({(outcome.at - onset).total_seconds():.0f} s after drift onset)")
    return 0 if outcome.result != "failed" and failed_requests(stats) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
