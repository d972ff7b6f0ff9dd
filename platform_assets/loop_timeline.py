"""The closed loop's timeline: what happened since drift onset, in order, in seconds since it.

Read from the Dagster instance (``read_events``): the runs the sensors requested (run tags
``dagster/sensor_name`` and ``loop/*``), every run that failed, and the materializations of the loop's
assets (``TRACKED``: version trained, deployed, shadow report, approval, promotion decision, canary step)
with the metadata that says what they decided. An asset key the code location does not define has no
materializations, so it simply does not appear. The MLflow registry keeps no history of its aliases, so
their moves are observed by polling (``read_registry`` and ``registry_change``): such an event carries the
time it was seen, at the poll's resolution.

``Timeline`` gathers the events of successive polls without repeating one, and ``Timeline.outcome`` says
when the rollout of the versions trained since onset is decided: a new champion (promoted) or no candidate
left in any role (retired or rolled back), with no run still in progress. ``make loop-demo``
(``platform_assets.loop_demo``) and ``make bench-loop`` (``benchmarks/loop``) print it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import dagster as dg

from platform_assets.core import registry

EventKind = Literal["traffic", "run", "failure", "materialization", "registry"]

#: The loop's assets: how the timeline names a materialization, and the metadata entries it shows (those
#: present, in this order).
TRACKED: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "default_risk_model": ("version trained", ("model_version", "validation_roc_auc", "best_epoch")),
    "credit_risk_deployment": ("deployed", ("model_version", "action", "champion", "challenger", "shadow")),
    "shadow_comparison": (
        "shadow report",
        ("model_version", "stage", "live_verdict", "shadow_pairs", "labelled_pairs"),
    ),
    "promotion_approval": ("approval", ("model_version", "approved_by", "auto", "expires_at")),
    "promotion_decision": (
        "promotion decision",
        ("model_version", "stage", "verdict", "action", "approval", "reasons"),
    ),
    "canary_decision": (
        "canary decision",
        ("action", "challenger", "from_weight_percent", "to_weight_percent", "reasons"),
    ),
}
#: Registered-model tags that are part of the rollout's state beside the aliases (percent).
STATE_TAGS: Final = {registry.WEIGHT_TAG: "challenger weight", registry.SHADOW_SHARE_TAG: "shadow share"}
#: Runs in these states may still move the registry: no decision is final while one exists.
ACTIVE_RUNS: Final = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)
FAILED_RUNS: Final = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
#: Run tag of a per-version run that carries its training run's tags on (``model_version_sensor``).
HANDED_ON_TAG: Final = "platform/training_run_id"
#: A tag value is shown up to this many characters (a trigger's reason can be long).
REASON_CHARS: Final = 160
#: Roles a candidate version holds before it is decided.
CANDIDATE_ROLES: Final = ("shadow", "challenger")


@dataclass(frozen=True)
class LoopEvent:
    """One thing that happened: ``at`` is UTC (the instance's timestamp, or when a registry move was seen)."""

    at: datetime
    kind: EventKind
    title: str
    detail: str = ""
    #: Identity across polls (run id, storage id, ...): the same event read twice is kept once.
    key: str = ""
    #: The model version the event is about, when it names one.
    model_version: str | None = None


@dataclass(frozen=True)
class RegistryState:
    """The rollout's state in the registry: ``aliases`` ({"champion": "v1", "shadow": "v2"}) and ``tags``
    (``STATE_TAGS`` only, as stored)."""

    aliases: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    def role_of(self, version: str) -> str | None:
        return next((alias for alias, named in sorted(self.aliases.items()) if named == version), None)

    def describe(self) -> str:
        aliases = ", ".join(f"{alias} {version}" for alias, version in sorted(self.aliases.items())) or "no aliases"
        tags = [f"{STATE_TAGS[k]} {_percent(v)} %" for k, v in sorted(self.tags.items()) if _percent(v)]
        return "; ".join([aliases, *tags])


def _percent(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:g}" if number else ""


def read_registry(tracking_uri: str, model_name: str = registry.MODEL_NAME) -> RegistryState:
    """The registered model's aliases and rollout tags now; empty when the model is not registered yet."""
    from mlflow.exceptions import MlflowException

    try:
        model = registry.client(tracking_uri).get_registered_model(model_name)
    except MlflowException:
        return RegistryState()
    tags = {k: v for k, v in (model.tags or {}).items() if k in STATE_TAGS}
    return RegistryState({alias: f"v{version}" for alias, version in model.aliases.items()}, tags)


def registry_change(before: RegistryState, after: RegistryState, at: datetime) -> LoopEvent | None:
    """The move from ``before`` to ``after`` as one event (``None`` when nothing changed)."""
    moves = []
    for alias in sorted(set(before.aliases) | set(after.aliases)):
        old, new = before.aliases.get(alias), after.aliases.get(alias)
        if old != new:
            moves.append(f"{alias} {old or 'none'} -> {new or 'none'}")
    for tag, name in STATE_TAGS.items():
        old, new = _percent(before.tags.get(tag, "0")), _percent(after.tags.get(tag, "0"))
        if old != new:
            moves.append(f"{name} {old or '0'} -> {new or '0'} %")
    if not moves:
        return None
    return LoopEvent(
        at, "registry", "registry: " + "; ".join(moves), after.describe(), key=f"registry@{at.isoformat()}"
    )


def _metadata_value(entry: Any) -> Any:
    value = getattr(entry, "value", entry)
    if isinstance(value, list):  # a decision's reasons: all of them, shortened
        return "; ".join(str(v) for v in value)[:REASON_CHARS]
    if isinstance(value, dict) and "state" in value:  # an approval's status: its state and who approved
        approval = value.get("approval") or {}
        return f"{value['state']}" + (f" ({approval['approved_by']})" if approval.get("approved_by") else "")
    return f"{value:.4g}" if isinstance(value, float) else value


def materialization_event(record: Any) -> LoopEvent:
    """A materialization record of a ``TRACKED`` asset as an event (its partition and headline metadata)."""
    materialization = record.asset_materialization
    name = materialization.asset_key.to_user_string()
    title, keys = TRACKED[name]
    metadata = materialization.metadata
    values = {key: _metadata_value(metadata[key]) for key in keys if key in metadata}
    shown = [f"{key}={value}" for key, value in values.items() if value is not None]
    version = metadata.get("model_version")
    label = str(_metadata_value(version)) if version is not None else materialization.partition
    partition = f" [{materialization.partition}]" if materialization.partition else ""
    return LoopEvent(
        datetime.fromtimestamp(record.timestamp, UTC),
        "materialization",
        f"{title}: {name}{partition}",
        ", ".join(shown),
        key=f"materialization:{record.storage_id}",
        model_version=label,
    )


def partitions_of(tags: Mapping[str, str]) -> str | None:
    """A run's partition, or its range of partitions as ``first...last`` (a single-run backfill's)."""
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return start if start == end else f"{start}...{end}"
    return tags.get("dagster/partition")


def run_events(record: Any) -> list[LoopEvent]:
    """A run's events: its request when a sensor (or the loop) asked for it, and its failure if it failed."""
    run = record.dagster_run
    tags = run.tags
    partition = tags.get("dagster/partition")
    where = f" [{partitions_of(tags)}]" if partitions_of(tags) else ""
    events = []
    sensor = tags.get("dagster/sensor_name")
    if sensor or "loop/trigger" in tags:
        loop_tags = {k.removeprefix("loop/"): v for k, v in sorted(tags.items()) if k.startswith("loop/")}
        detail = ", ".join(f"{k}={v[:REASON_CHARS]}" for k, v in loop_tags.items())
        if HANDED_ON_TAG in tags:  # its loop tags are the training run's, handed on with the version
            detail = f"the version of training run {tags[HANDED_ON_TAG][:8]}"
        events.append(
            LoopEvent(
                _utc(record.create_timestamp),
                "run",
                f"{sensor or 'loop'} requested {run.job_name}{where}",
                detail,
                key=f"run:{run.run_id}",
                model_version=partition or loop_tags.get("model_version"),
            )
        )
    if run.status in FAILED_RUNS:
        at = datetime.fromtimestamp(record.end_time, UTC) if record.end_time else _utc(record.update_timestamp)
        events.append(
            LoopEvent(
                at,
                "failure",
                f"{run.job_name}{where} {run.status.value.lower()}",
                f"run {run.run_id}",
                key=f"failed:{run.run_id}",
                model_version=partition,
            )
        )
    return events


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_events(instance: dg.DagsterInstance, since: datetime) -> list[LoopEvent]:
    """Every event since ``since`` (UTC) in the instance, in time order."""
    events: list[LoopEvent] = []
    for run in instance.get_run_records(filters=dg.RunsFilter(created_after=since)):
        events.extend(run_events(run))
    for name in TRACKED:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_user_string(name), after_timestamp=since.timestamp()),
            limit=1000,
        ).records
        events.extend(materialization_event(record) for record in records)
    return sorted(events, key=lambda e: (e.at, e.key))


def run_table(instance: dg.DagsterInstance, since: datetime) -> str:
    """Every run created since ``since`` (UTC), oldest first, as a Markdown table: job [partition], the sensor
    that requested it, seconds from the request to the run's start (the queue and the launch of its process),
    seconds it ran, and its status."""
    records = sorted(
        instance.get_run_records(filters=dg.RunsFilter(created_after=since)), key=lambda r: r.create_timestamp
    )
    lines = ["| run | requested by | queued s | ran s | status |", "|---|---|---|---|---|"]
    for record in records:
        run = record.dagster_run
        partition = partitions_of(run.tags)
        created = _utc(record.create_timestamp).timestamp()
        queued = f"{record.start_time - created:.1f}" if record.start_time else "-"
        ran = f"{record.end_time - record.start_time:.1f}" if record.start_time and record.end_time else "-"
        job = f"{run.job_name} [{partition}]" if partition else run.job_name
        lines.append(
            f"| {job} | {run.tags.get('dagster/sensor_name', '-')} | {queued} | {ran} | {run.status.value.lower()} |"
        )
    return "\n".join(lines)


def runs_in_progress(instance: dg.DagsterInstance) -> list[str]:
    """``job [partition]`` of every run queued or running now."""
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=list(ACTIVE_RUNS)))
    return [
        f"{r.dagster_run.job_name} [{partitions_of(r.dagster_run.tags) or '-'}]".replace(" [-]", "") for r in records
    ]


def sensor_waits(instance: dg.DagsterInstance, since: datetime) -> dict[str, str]:
    """Why each sensor requested nothing on its newest tick since ``since``: the tick's skip reason, or the first
    line of its error (what the UI shows on the sensor's page), by sensor name."""
    waits = {}
    for state in instance.all_instigator_state():
        if state.instigator_type.value != "SENSOR":
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
        if not ticks or ticks[0].timestamp < since.timestamp():
            continue
        tick = ticks[0]
        error = tick.error.message.strip().splitlines()[0] if tick.error and tick.error.message.strip() else None
        if tick.skip_reason or error:
            waits[state.instigator_name] = tick.skip_reason or f"tick failed: {error}"
    return waits


@dataclass(frozen=True)
class Outcome:
    """How the rollout ended: ``promoted`` (``version`` is champion), ``retired`` (no candidate left in a role:
    its gate failed or its canary rolled back) or ``failed`` (a run failed)."""

    result: Literal["promoted", "retired", "failed"]
    version: str | None
    at: datetime
    reason: str


class Timeline:
    """Events since ``onset`` (UTC), each kept once, with the registry's moves as polled."""

    def __init__(self, onset: datetime, start: RegistryState | None = None) -> None:
        self.onset = onset
        self.start = start
        self.registry = start
        self._events: dict[str, LoopEvent] = {}
        self.candidates: set[str] = set()
        self.seen_in_role: set[str] = set()
        #: Each registry state that differed from the one before, with when it was seen.
        self.moves: list[tuple[datetime, RegistryState]] = []
        if start is not None:
            self._roles(start)

    @property
    def events(self) -> list[LoopEvent]:
        return sorted(self._events.values(), key=lambda e: (e.at, e.key))

    def seconds(self, event: LoopEvent) -> float:
        """Seconds from drift onset to ``event``."""
        return (event.at - self.onset).total_seconds()

    def add(self, event: LoopEvent) -> bool:
        """Keep ``event``; False when one with its key is already kept."""
        key = event.key or f"{event.kind}:{event.title}@{event.at.isoformat()}"
        if key in self._events:
            return False
        self._events[key] = event
        if event.title.startswith("version trained") and event.model_version:
            self.candidates.add(event.model_version)
        return True

    def note(self, title: str, detail: str = "", at: datetime | None = None) -> LoopEvent:
        """Record something the caller did (drift sent, traffic stopped)."""
        event = LoopEvent(at or datetime.now(UTC), "traffic", title, detail)
        self.add(event)
        return event

    def _roles(self, state: RegistryState) -> None:
        for alias in CANDIDATE_ROLES:
            if alias in state.aliases:
                self.seen_in_role.add(state.aliases[alias])
                self.candidates.add(state.aliases[alias])

    def poll(
        self, instance: dg.DagsterInstance, state: RegistryState | None = None, now: datetime | None = None
    ) -> list[LoopEvent]:
        """Read the instance (and take the registry ``state`` seen ``now``); return the new events in order."""
        fresh = [e for e in read_events(instance, self.onset) if self.add(e)]
        if state is not None:
            if self.registry is None:
                self.registry = self.start = state
            else:
                change = registry_change(self.registry, state, now or datetime.now(UTC))
                if change is not None and self.add(change):
                    fresh.append(change)
                    self.moves.append((change.at, state))
                self.registry = state
            self._roles(state)
        return sorted(fresh, key=lambda e: (e.at, e.key))

    def outcome(self, in_progress: Iterable[str] = ()) -> Outcome | None:
        """The rollout's end once the registry shows it and no run is in progress (``in_progress``); a failed
        run ends it at once. None while it is undecided."""
        failures = [e for e in self.events if e.kind == "failure"]
        if failures:
            first = failures[0]
            return Outcome("failed", first.model_version, first.at, first.title)
        if list(in_progress) or self.registry is None or self.start is None:
            return None
        now = self.registry
        champion, first_champion = now.aliases.get("champion"), self.start.aliases.get("champion")
        if champion is not None and champion != first_champion and champion in self.candidates:
            return Outcome("promoted", champion, self._last_at(), f"{champion} replaced {first_champion} as champion")
        holding = [v for v in self.seen_in_role if now.role_of(v) is not None]
        if self.seen_in_role and not holding:
            gone = ", ".join(sorted(self.seen_in_role))
            return Outcome("retired", gone, self._last_at(), f"{gone} left every role; {champion} is still champion")
        return None

    def _last_at(self) -> datetime:
        moves = [e for e in self.events if e.kind == "registry"]
        return moves[-1].at if moves else datetime.now(UTC)

    def render(self) -> str:
        """The timeline as a table: seconds since onset, event, detail."""
        rows = [(f"{self.seconds(e):8.1f}", e.title, e.detail) for e in self.events]
        width = max([len(r[1]) for r in rows] + [5])
        lines = [f"{'t (s)':>8}  {'event':<{width}}  detail", f"{'-' * 8}  {'-' * width}  {'-' * 6}"]
        lines += [f"{t}  {title:<{width}}  {detail}".rstrip() for t, title, detail in rows]
        return "\n".join(lines)

    def line(self, event: LoopEvent) -> str:
        """One event as the demo prints it when it happens."""
        detail = f"  ({event.detail})" if event.detail else ""
        return f"[{self.seconds(event):7.1f} s] {event.title}{detail}"
