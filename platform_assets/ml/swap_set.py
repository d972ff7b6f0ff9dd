"""The swap set of a challenger: which applications it decides differently from the champion, and how the
applicants in each cell turned out.

Decisions are booleans per application, ``True`` = declined (the inference log's ``decision == "decline"``);
``defaulted`` is 1 (defaulted), 0 (repaid) or NaN/NA (no outcome yet). Rates are fractions in [0, 1]. A bad rate
is measured on the labelled applicants of a cell only: in a live swap set the champion's declines have no
outcome, so ``decline_to_approve`` usually has none (that is what reject inference is about).

No Dagster and no I/O here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SwapCell:
    """Applications in one cell of the swap set; ``bad_rate`` is the default rate of the labelled ones (NaN when
    none is labelled yet)."""

    count: int
    labelled: int
    bad_rate: float


@dataclass(frozen=True)
class SwapSet:
    """How the challenger's decisions differ from the champion's on the same applications.

    ``approve_to_decline``: approved by the champion, declined by the challenger (swap-out);
    ``decline_to_approve``: the reverse (swap-in). Approval rates are fractions; the delta is challenger -
    champion, rate points.
    """

    both_approve: SwapCell
    approve_to_decline: SwapCell
    decline_to_approve: SwapCell
    both_decline: SwapCell
    n: int
    approval_rate_champion: float
    approval_rate_challenger: float
    approval_rate_delta: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """The four cells as a Markdown table, then the approval rates."""
        lines = ["| champion | challenger | applications | labelled | bad rate |", "|---|---|---:|---:|---:|"]
        for name, champion, challenger in (
            ("both_approve", "approve", "approve"),
            ("approve_to_decline", "approve", "decline"),
            ("decline_to_approve", "decline", "approve"),
            ("both_decline", "decline", "decline"),
        ):
            cell: SwapCell = getattr(self, name)
            bad = "-" if math.isnan(cell.bad_rate) else f"{cell.bad_rate:.1%}"
            lines.append(f"| {champion} | {challenger} | {cell.count:,} | {cell.labelled:,} | {bad} |")
        lines.append(
            f"\nApproval rate: champion {self.approval_rate_champion:.1%}, challenger "
            f"{self.approval_rate_challenger:.1%} ({100 * self.approval_rate_delta:+.1f} points), "
            f"{self.n:,} applications."
        )
        return "\n".join(lines)


def decision_vector(values: Any, name: str) -> np.ndarray:
    """A decision vector as booleans (True = declined), or a ValueError naming ``name``."""
    array = np.asarray(values)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional vector, got shape {array.shape}")
    if array.dtype != bool:
        try:
            unexpected = sorted(set(np.unique(array.astype("float64")).tolist()) - {0.0, 1.0})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be booleans or 0/1 (1 = declined), got {array.dtype} values") from error
        if unexpected:
            raise ValueError(f"{name} must be booleans or 0/1 (1 = declined), found {unexpected[:5]}")
    return array.astype(bool)


def _outcomes(defaulted: Any, n: int) -> np.ndarray:
    """Float64 with NaN for unlabelled; accepts pandas' nullable Int64 (``read_predictions``'s ``defaulted``)."""
    if isinstance(defaulted, pd.Series | pd.api.extensions.ExtensionArray):
        values: np.ndarray = pd.Series(defaulted).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    else:
        values = np.asarray(defaulted, dtype="float64")
    if values.shape != (n,):
        raise ValueError(f"defaulted has shape {values.shape} but the decisions have {n} rows")
    unexpected = sorted(set(np.unique(values[np.isfinite(values)]).tolist()) - {0.0, 1.0})
    if unexpected:
        raise ValueError(f"defaulted must be 0, 1 or missing, found {unexpected[:5]}")
    return values


def swap_set(declined_champion: Any, declined_challenger: Any, defaulted: Any | None = None) -> SwapSet:
    """The swap set of two decision vectors on the same applications (``True`` = declined), with each cell's
    labelled count and bad rate when ``defaulted`` is given."""
    champion = decision_vector(declined_champion, "declined_champion")
    challenger = decision_vector(declined_challenger, "declined_challenger")
    if champion.shape != challenger.shape:
        raise ValueError(f"declined_champion has {len(champion)} rows but declined_challenger has {len(challenger)}")
    outcomes = np.full(len(champion), np.nan) if defaulted is None else _outcomes(defaulted, len(champion))

    def cell(mask: np.ndarray) -> SwapCell:
        known = outcomes[mask & np.isfinite(outcomes)]
        return SwapCell(int(mask.sum()), len(known), float(known.mean()) if len(known) else math.nan)

    rate_champion, rate_challenger = 1.0 - float(champion.mean()), 1.0 - float(challenger.mean())
    return SwapSet(
        both_approve=cell(~champion & ~challenger),
        approve_to_decline=cell(~champion & challenger),
        decline_to_approve=cell(champion & ~challenger),
        both_decline=cell(champion & challenger),
        n=len(champion),
        approval_rate_champion=rate_champion,
        approval_rate_challenger=rate_challenger,
        approval_rate_delta=rate_challenger - rate_champion,
    )
