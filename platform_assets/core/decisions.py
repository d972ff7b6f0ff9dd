"""The credit decision at a model version's threshold, as the service makes it (``serving/engine.py``)."""

from __future__ import annotations

from typing import Final

import numpy as np

APPROVE: Final = "approve"
DECLINE: Final = "decline"


def declines(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean per row: decline when the probability of default is at or above ``threshold``."""
    return np.asarray(probabilities) >= threshold


def labels(declined: np.ndarray) -> list[str]:
    """``"decline"`` / ``"approve"`` per row of ``declines``' result."""
    return np.where(declined, DECLINE, APPROVE).tolist()  # type: ignore[no-any-return]
