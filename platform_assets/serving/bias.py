"""Live bias: selection rates per protected group and the disparate impact ratio over recent predictions.

The same definitions as the ``fairness_report`` asset (``platform_assets.ml.fairness_metrics``): the *selection
rate* of a group is its share of declined applications (Fairlearn's selection rate of the "flagged as a
likely defaulter" decision); the *disparate impact ratio* of an attribute is the lowest group approval
rate divided by the highest (the four-fifths rule passes at >= 0.8). Groups are sex, age band, marriage
and education, labelled as in the report.

The window holds the most recent predictions that carried at least one protected attribute: at most
``max_predictions`` (``CREDIT_RISK_BIAS_WINDOW``, default 1,000) and none older than ``max_age_seconds``
(``CREDIT_RISK_BIAS_WINDOW_SECONDS``, default 600). Each attribute is measured over the predictions
that carried *it*. A group with fewer than ``min_group_size`` predictions in the window
(``CREDIT_RISK_BIAS_MIN_GROUP``, default 30) still has its selection rate exported, but takes no part
in the ratio; with fewer than two measurable groups the ratio is NaN (no data, never a division by zero).
The window is per worker process and only ``/admin/status`` shows it. What Prometheus alerts on is fleet-wide:
the service counts every decision per group (``group_decisions`` -> ``credit_risk_group_decisions_total``)
and the recording rules of ``grafana/prometheus/rules.yml`` compute the rates and the ratio from those
counters, summed over workers and pods.
"""

from __future__ import annotations

import bisect
import functools
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from platform_assets.ml import fairness_metrics

#: Inference-log column -> fairness attribute name.
ATTRIBUTE_OF_COLUMN = {"sex": "sex", "age": "age_band", "marriage": "marriage", "education": "education"}


_LABELS = {
    "sex": fairness_metrics.SEX_LABELS,
    "marriage": fairness_metrics.MARRIAGE_LABELS,
    "education": fairness_metrics.EDUCATION_LABELS,
}


#: One attribute's group label per row (None: the attribute was not sent).
Labels = list[str | None]


@functools.lru_cache(maxsize=8)
def _bands(age_edges: tuple[int, ...]) -> tuple[list[float], list[str]]:
    return [float(e) for e in age_edges], fairness_metrics.age_band_labels(age_edges)


def group_labels(column: str, values: Sequence[int | None], age_edges: Sequence[int]) -> list[str | None]:
    """The fairness report's group label of each value (None where the attribute was not sent)."""
    if column == "age":
        # fairness_metrics.age_bands' banding (np.digitize, right=False, is bisect_right) without numpy's
        # per-call cost on a request's few values.
        edges, bands = _bands(tuple(age_edges))
        right = bisect.bisect_right
        return [None if v is None else bands[right(edges, v)] for v in values]
    table = _LABELS[column]
    return [None if v is None else table.get(v) or f"code {int(v)}" for v in values]


def protected_groups(protected: Mapping[str, Sequence[int | None]], age_edges: Sequence[int]) -> dict[str, Labels]:
    """attribute -> the fairness report's group label per row (None: not sent), from the log columns."""
    return {
        ATTRIBUTE_OF_COLUMN[c]: group_labels(c, values, age_edges)
        for c, values in protected.items()
        if c in ATTRIBUTE_OF_COLUMN
    }


def group_decisions(
    groups: Mapping[str, Labels], decisions: Sequence[str], model_versions: Sequence[str]
) -> Counter[tuple[str, str, str, str]]:
    """``(attribute, group, decision, model_version) -> applications`` of one batch: ``groups`` from
    ``protected_groups``, ``decisions`` and ``model_versions`` per row."""
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for attribute, labels in groups.items():
        for (group, decision, version), n in Counter(zip(labels, decisions, model_versions, strict=True)).items():
            if group is not None:
                counts[(attribute, group, decision, version)] += n
    return counts


@dataclass
class GroupRates:
    predictions: int
    selection_rate: float  # declined share
    approval_rate: float
    measured: bool  # enough predictions to enter the ratio


@dataclass
class _Chunk:
    """The rows of one ``observe`` call that carried an attribute; ``start`` rows are already evicted."""

    time: float
    declined: list[bool]
    labels: dict[str, list[str | None]]  # attribute -> group per row (None: not sent)
    start: int = 0

    def __len__(self) -> int:
        return len(self.declined) - self.start


@dataclass
class BiasWindow:
    max_predictions: int = 1000
    max_age_seconds: float = 600.0
    min_group_size: int = 30
    age_edges: Sequence[int] = fairness_metrics.DEFAULT_AGE_EDGES
    clock: Callable[[], float] = time.monotonic
    #: The predictions in the window, a chunk per batch, oldest first (counting per batch rather
    #: than per row keeps a 1,000-row request's cost to a few C-level passes).
    _chunks: deque[_Chunk] = field(default_factory=deque, repr=False)
    _size: int = field(default=0, repr=False)
    #: attribute -> group -> [predictions, declined]
    _counts: dict[str, dict[str, list[int]]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.max_predictions < 1:
            raise ValueError(f"the bias window must hold at least 1 prediction, got {self.max_predictions}")
        if not self.max_age_seconds > 0:
            raise ValueError(f"the bias window must span more than 0 seconds, got {self.max_age_seconds}")
        fairness_metrics.age_band_labels(self.age_edges)  # validates the edges

    def observe(self, protected: Mapping[str, Sequence[int | None]], decisions: Sequence[str]) -> bool:
        """Add a batch: ``protected`` maps log columns (sex, age, marriage, education) to per-row values
        (None = not sent), ``decisions`` the per-row approve/decline. Returns whether anything was added."""
        return self.observe_groups(protected_groups(protected, self.age_edges), decisions)

    def observe_groups(self, groups: Mapping[str, Labels], decisions: Sequence[str]) -> bool:
        """``observe`` with the rows' group labels already computed (``protected_groups``)."""
        labelled = dict(groups)
        declined = [d == "decline" for d in decisions]
        sent = {a: sum(label is not None for label in labels) for a, labels in labelled.items()}
        if not any(sent.values()):
            return False
        if not all(n == len(declined) for n in sent.values()):
            # Some rows carry no attribute at all: they are not part of the window.
            keep = [i for i in range(len(declined)) if any(labels[i] is not None for labels in labelled.values())]
            declined = [declined[i] for i in keep]
            labelled = {a: [labels[i] for i in keep] for a, labels in labelled.items()}
        chunk = _Chunk(self.clock(), declined, {a: labels for a, labels in labelled.items() if sent[a]})
        with self._lock:
            self._count(chunk, slice(None), +1)
            self._chunks.append(chunk)
            self._size += len(chunk)
            self._evict(chunk.time)
        return True

    def _count(self, chunk: _Chunk, rows: slice, sign: int) -> None:
        declined = chunk.declined[rows]
        for attribute, labels in chunk.labels.items():
            groups = self._counts.setdefault(attribute, {})
            for (group, was_declined), n in Counter(zip(labels[rows], declined, strict=True)).items():
                if group is not None:
                    cell = groups.setdefault(group, [0, 0])
                    cell[0] += sign * n
                    cell[1] += sign * n * was_declined

    def _evict(self, now: float) -> None:
        while self._chunks and now - self._chunks[0].time > self.max_age_seconds:
            old = self._chunks.popleft()
            self._count(old, slice(old.start, None), -1)
            self._size -= len(old)
        while self._size > self.max_predictions:
            old = self._chunks[0]
            k = min(len(old), self._size - self.max_predictions)
            self._count(old, slice(old.start, old.start + k), -1)
            old.start += k
            self._size -= k
            if not len(old):
                self._chunks.popleft()

    def __len__(self) -> int:
        with self._lock:
            self._evict(self.clock())
            return self._size

    def rates(self) -> dict[str, dict[str, GroupRates]]:
        """attribute -> group -> rates over the window (groups that left the window have 0 predictions)."""
        with self._lock:
            self._evict(self.clock())
            out: dict[str, dict[str, GroupRates]] = {}
            for attribute, groups in self._counts.items():
                out[attribute] = {}
                for group, (n, declined) in groups.items():
                    selection = declined / n if n else math.nan
                    out[attribute][group] = GroupRates(
                        n, selection, 1.0 - selection if n else math.nan, n >= self.min_group_size
                    )
            return out

    def disparate_impact(self) -> dict[str, float]:
        """attribute -> min/max approval rate over measurable groups; NaN with fewer than two (or no approvals)."""
        out = {}
        for attribute, groups in self.rates().items():
            approvals = [g.approval_rate for g in groups.values() if g.measured]
            if len(approvals) < 2 or max(approvals) <= 0.0:
                out[attribute] = math.nan
            else:
                out[attribute] = min(approvals) / max(approvals)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The window as JSON-able numbers (None for NaN), for /admin/status."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        rates = self.rates()
        ratios = self.disparate_impact()
        return {
            "window_predictions": len(self),
            "max_predictions": self.max_predictions,
            "max_age_seconds": self.max_age_seconds,
            "min_group_size": self.min_group_size,
            "attributes": {
                attribute: {
                    "disparate_impact_ratio": num(ratios.get(attribute, math.nan)),
                    "groups": {
                        group: {"predictions": r.predictions, "selection_rate": num(r.selection_rate)}
                        for group, r in sorted(groups.items())
                    },
                }
                for attribute, groups in sorted(rates.items())
            },
        }
