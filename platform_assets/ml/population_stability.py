"""Population stability index (PSI) of a score and characteristic stability index (CSI) of each input, with an
alarm threshold that knows how many rows were compared.

``PSI = sum_b (c_b - r_b) ln(c_b / r_b)`` over bins ``b``, with ``r_b`` and ``c_b`` the shares of the reference
and the current rows in the bin (CSI is the same index on one model input). Bins are the reference's quantiles,
so each holds about ``1 / bins`` of the reference; where the reference has ties (codes, amounts of 0) equal
quantiles are merged, so the effective number of bins can be smaller, and every bin holds reference rows.

The customary fixed alarm (0.1 "watch", 0.25 "act") ignores the sample sizes: on a few hundred applications pure
sampling noise exceeds it, on a million a real shift stays below it. Yurdakul (2018), "Statistical properties of
population stability index", Western Michigan University, shows that with no shift
``PSI ~ (1/n + 1/m) * chi2(bins - 1)`` for ``n`` reference and ``m`` current rows; ``psi_alarm_threshold`` is
that distribution's ``confidence`` quantile, so a stable population raises a false alarm with probability
``1 - confidence``.

No Dagster and no I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import stats

from platform_assets.core import slo

#: Floor of a bin's share in the PSI sum. An empty bin would make ``ln(c / r)`` infinite; 1e-4 (0.01 % of the
#: rows) keeps a bin that empties completely at a large but finite contribution (about 0.1 for a bin of
#: one tenth: ``0.1 * ln(0.1 / 1e-4)``), and it only acts on bins with fewer than one row in ten thousand.
PSI_EPSILON: Final = 1e-4
DEFAULT_BINS: Final = 10


def _values(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype="float64").reshape(-1)
    if len(array) == 0:
        raise ValueError(f"{name} has no rows")
    missing = int(np.count_nonzero(~np.isfinite(array)))
    if missing:
        raise ValueError(f"{name} has {missing} missing or non-finite value(s) of {len(array)}")
    return array


def quantile_bin_edges(reference: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """The upper edges of up to ``bins`` quantile bins of ``reference`` (the last bin is open); bin ``i`` holds
    ``edges[i-1] < x <= edges[i]``, i.e. ``searchsorted(edges, x, side="left")``. An edge that would leave a bin
    without reference rows (ties) is dropped, so the effective number of bins is ``len(edges) + 1``, and a value
    repeated in many rows (a code, an amount of 0) gets a bin of its own."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    ordered = np.sort(reference)
    kept: list[float] = []
    at_or_below = 0
    for edge in np.unique(np.quantile(ordered, np.arange(1, bins) / bins)):
        rows = int(np.searchsorted(ordered, edge, side="right"))
        if at_or_below < rows < len(ordered):
            kept.append(float(edge))
            at_or_below = rows
    return np.asarray(kept, dtype="float64")


def _psi(reference: np.ndarray, current: np.ndarray, bins: int, name: str) -> tuple[float, int]:
    """PSI and the effective number of bins."""
    edges = quantile_bin_edges(reference, bins)
    if len(edges) == 0:
        raise ValueError(f"{name}: the reference holds a single value ({reference[0]:g}), PSI needs two bins")
    effective = len(edges) + 1
    shares = [
        np.maximum(np.bincount(np.searchsorted(edges, x, side="left"), minlength=effective) / len(x), PSI_EPSILON)
        for x in (reference, current)
    ]
    ref, cur = shares
    return float(np.sum((cur - ref) * np.log(cur / ref))), effective


def psi(reference: Any, current: Any, bins: int = DEFAULT_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (e.g. probabilities of default), on up to
    ``bins`` quantile bins of the reference; 0 for identical distributions, unitless."""
    value, _ = _psi(_values(reference, "reference"), _values(current, "current"), bins, "psi")
    return value


def psi_alarm_threshold(
    n_reference: int, n_current: int, bins: int = DEFAULT_BINS, confidence: float = slo.DRIFT.psi_confidence
) -> float:
    """The PSI that ``n_reference`` and ``n_current`` rows of one stable population exceed with probability
    ``1 - confidence`` (Yurdakul 2018: ``(1/n + 1/m) * chi2.ppf(confidence, bins - 1)``); ``bins`` is the
    effective number of bins."""
    if n_reference < 1 or n_current < 1:
        raise ValueError(f"row counts must be positive, got reference {n_reference} and current {n_current}")
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float((1.0 / n_reference + 1.0 / n_current) * stats.chi2.ppf(confidence, bins - 1))


def csi(
    reference_frame: pd.DataFrame,
    current_frame: pd.DataFrame,
    columns: Sequence[str],
    bins: int = DEFAULT_BINS,
    confidence: float = slo.DRIFT.psi_confidence,
) -> dict[str, tuple[float, float]]:
    """Per column, ``(CSI, alarm threshold)``: the column's stability index and the critical value for the row
    counts and that column's effective bins. A column shifted beyond chance has CSI above its threshold."""
    for frame_name, frame in (("reference_frame", reference_frame), ("current_frame", current_frame)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{frame_name} lacks the column(s) {missing}")
    out = {}
    for column in columns:
        reference = _values(reference_frame[column], f"reference column {column!r}")
        current = _values(current_frame[column], f"current column {column!r}")
        value, effective = _psi(reference, current, bins, f"column {column!r}")
        out[column] = (value, psi_alarm_threshold(len(reference), len(current), effective, confidence))
    return out
