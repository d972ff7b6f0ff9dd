"""Sticky champion/challenger routing: an application ID always lands in the same one of 10,000 buckets.

``bucket = int(sha256(str(ID))[:8 bytes]) mod 10000``; the challenger takes the buckets below
``weight_percent * 100``. Raising the weight only adds buckets, so an ID that went to the challenger
at 10 % still does at 50 %.

The shadow's sample is sticky the same way, over buckets of a salted hash (``shadow:<ID>``): which applications
the shadow scores is independent of which ones the challenger answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

BUCKETS = 10_000


#: Prefix of the shadow's hash input.
SHADOW_SALT = "shadow:"


def bucket(application_id: int, salt: str = "") -> int:
    digest = hashlib.sha256(f"{salt}{application_id}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def challenger_cutoff(weight_percent: float) -> int:
    return round(min(max(weight_percent, 0.0), 100.0) * BUCKETS / 100.0)


def to_challenger(application_ids: Sequence[int], weight_percent: float) -> list[bool]:
    """For each ID, whether it is routed to the challenger at ``weight_percent`` (0..100)."""
    return _in_share(application_ids, weight_percent, "")


def to_shadow(application_ids: Sequence[int], share_percent: float) -> list[bool]:
    """For each ID, whether the shadow scores it at ``share_percent`` (0..100)."""
    return _in_share(application_ids, share_percent, SHADOW_SALT)


def _in_share(application_ids: Sequence[int], percent: float, salt: str) -> list[bool]:
    cutoff = challenger_cutoff(percent)
    if cutoff <= 0:
        return [False] * len(application_ids)
    if cutoff >= BUCKETS:
        return [True] * len(application_ids)
    return [bucket(i, salt) < cutoff for i in application_ids]
