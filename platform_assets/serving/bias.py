"""Live bias: selection rates per protected group and the disparate impact ratio over recent predictions.

The same definitions as the ``fairness_report`` asset (``platform_assets.ml.fairness``): the *selection
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
The window is per worker process: with several workers each exports the ratio over its own traffic.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from platform_assets.ml import fairness

#: Inference-log column -> fairness attribute name.
ATTRIBUTE_OF_COLUMN = {"sex": "sex", "age": "age_band", "marriage": "marriage", "education": "education"}


def group_labels(column: str, values: Sequence[int | None], age_edges: Sequence[int]) -> list[str | None]:
    """The fairness report's group label of each value (None where the attribute was not sent)."""
    out: list[str | None] = [None] * len(values)
    present = [i for i, v in enumerate(values) if v is not None]
    if not present:
        return out
    if column == "age":
        bands = fairness.age_bands(np.asarray([values[i] for i in present]), age_edges)
        for i, band in zip(present, bands, strict=True):
            out[i] = str(band)
        return out
    labels = {"sex": fairness.SEX_LABELS, "marriage": fairness.MARRIAGE_LABELS, "education": fairness.EDUCATION_LABELS}
    table = labels[column]
    for i in present:
        value = int(values[i])  # type: ignore[arg-type]
        out[i] = table.get(value, f"code {value}")
    return out


@dataclass
class GroupRates:
    predictions: int
    selection_rate: float  # declined share
    approval_rate: float
    measured: bool  # enough predictions to enter the ratio


@dataclass
class BiasWindow:
    max_predictions: int = 1000
    max_age_seconds: float = 600.0
    min_group_size: int = 30
    age_edges: Sequence[int] = fairness.DEFAULT_AGE_EDGES
    clock: Callable[[], float] = time.monotonic
    #: (time, declined, {attribute: group}) per prediction, oldest first.
    _entries: deque[tuple[float, bool, dict[str, str]]] = field(default_factory=deque, repr=False)
    #: attribute -> group -> [predictions, declined]
    _counts: dict[str, dict[str, list[int]]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.max_predictions < 1:
            raise ValueError(f"the bias window must hold at least 1 prediction, got {self.max_predictions}")
        if not self.max_age_seconds > 0:
            raise ValueError(f"the bias window must span more than 0 seconds, got {self.max_age_seconds}")
        fairness.age_band_labels(self.age_edges)  # validates the edges

    def observe(self, protected: Mapping[str, Sequence[int | None]], decisions: Sequence[str]) -> bool:
        """Add a batch: ``protected`` maps log columns (sex, age, marriage, education) to per-row values
        (None = not sent), ``decisions`` the per-row approve/decline. Returns whether anything was added."""
        labelled = {
            ATTRIBUTE_OF_COLUMN[c]: group_labels(c, values, self.age_edges)
            for c, values in protected.items()
            if c in ATTRIBUTE_OF_COLUMN
        }
        now = self.clock()
        added = False
        with self._lock:
            for i, decision in enumerate(decisions):
                groups = {a: labels[i] for a, labels in labelled.items() if labels[i] is not None}
                if not groups:
                    continue
                declined = decision == "decline"
                self._entries.append((now, declined, groups))  # type: ignore[arg-type]
                for attribute, group in groups.items():
                    cell = self._counts.setdefault(attribute, {}).setdefault(group, [0, 0])  # type: ignore[arg-type]
                    cell[0] += 1
                    cell[1] += int(declined)
                added = True
            self._evict(now)
        return added

    def _evict(self, now: float) -> None:
        while self._entries and (
            len(self._entries) > self.max_predictions or now - self._entries[0][0] > self.max_age_seconds
        ):
            _, declined, groups = self._entries.popleft()
            for attribute, group in groups.items():
                cell = self._counts[attribute][group]
                cell[0] -= 1
                cell[1] -= int(declined)

    def __len__(self) -> int:
        with self._lock:
            self._evict(self.clock())
            return len(self._entries)

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
