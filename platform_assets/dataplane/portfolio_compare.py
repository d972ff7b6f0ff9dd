"""Two model versions' ``portfolio_scores`` of the same past days, side by side with the known outcomes.

A candidate's first evidence comes before any live traffic: the champion and the candidate scored the same
clients of past daily partitions (``portfolio_scores``), and those clients' outcomes are in the tensor
partitions (the label column the tensors carry along). ``paired_scores`` joins them by client ID into one frame
per client: both versions' probabilities and decisions, the outcome and the protected attributes, the columns
the shadow comparison reads from the inference log for live traffic.

Memory: the frame is read on the driver, four numbers and four small ints a client; ``max_rows`` caps it with a
seeded sample per day (the share kept is the same for every day, so days weigh as in the portfolio).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from platform_assets.core import lake_keys
from platform_assets.dataplane import partitions
from platform_assets.dataplane.objects import ObjectStore
from platform_assets.dataplane.scoring import DECISION, PROBABILITY
from platform_assets.ml import schema

#: The columns of ``paired_scores``: those of the inference log's shadow pairs, with the day instead of a time.
PAIRED_COLUMNS = (
    "partition",
    "application_id",
    "champion_probability",
    "champion_decision",
    "candidate_probability",
    "candidate_decision",
    "defaulted",
    *(c.lower() for c in schema.PROTECTED_COLUMNS),
)


@dataclass(frozen=True)
class PairedPortfolio:
    """The joined frame and which days it covers (days missing either version's scores are listed apart)."""

    frame: pd.DataFrame
    days: tuple[str, ...]
    missing: dict[str, list[str]]  # day -> the versions without committed scores that day
    rows_before_sampling: int


def committed_days(store: ObjectStore, version: str, days: Sequence[str]) -> list[str]:
    """Those of ``days`` with a committed ``portfolio_scores`` partition of ``version``."""
    return [d for d in days if partitions.is_committed(store, lake_keys.portfolio_scores(version, d))]


def _scores(store: ObjectStore, version: str, day: str) -> pd.DataFrame:
    folder = lake_keys.portfolio_scores(version, day)
    with partitions.reading(store, folder) as manifest:
        frame = partitions.read_partition(store, folder, manifest)
    return frame[[schema.ID, PROBABILITY, DECISION]]


def _outcomes(store: ObjectStore, day: str) -> pd.DataFrame:
    """ID, outcome and protected attributes of a tensor partition's rows (not the tensors themselves)."""
    folder = lake_keys.tensors(day)
    columns = [schema.ID, schema.TARGET, *schema.PROTECTED_COLUMNS]
    with partitions.reading(store, folder) as manifest:
        frames = [
            batch.to_pandas()
            for part in manifest.parts
            for batch in partitions.iter_part_batches(store, folder, part, columns)
        ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def paired_scores(
    store: ObjectStore,
    champion: str,
    candidate: str,
    days: Sequence[str],
    *,
    max_rows: int = 200_000,
    seed: int = 0,
) -> PairedPortfolio:
    """Both versions' scores of every client of ``days`` that both scored, with outcome and protected columns.

    Days where either version has no committed scores are skipped and reported in ``missing``.
    """
    if champion == candidate:
        raise ValueError(f"compare two different versions, got {champion} twice")
    missing: dict[str, list[str]] = {}
    joined: list[pd.DataFrame] = []
    for day in days:
        absent = [
            v for v in (champion, candidate) if not partitions.is_committed(store, lake_keys.portfolio_scores(v, day))
        ]
        if absent:
            missing[day] = absent
            continue
        a = _scores(store, champion, day).rename(
            columns={PROBABILITY: "champion_probability", DECISION: "champion_decision"}
        )
        b = _scores(store, candidate, day).rename(
            columns={PROBABILITY: "candidate_probability", DECISION: "candidate_decision"}
        )
        both = a.merge(b, on=schema.ID, how="inner", validate="one_to_one")
        both = both.merge(_outcomes(store, day), on=schema.ID, how="left", validate="one_to_one")
        both.insert(0, "partition", day)
        joined.append(both)
    if not joined:
        return PairedPortfolio(pd.DataFrame(columns=list(PAIRED_COLUMNS)), (), missing, 0)
    frame = pd.concat(joined, ignore_index=True).rename(
        columns={
            schema.ID: "application_id",
            schema.TARGET: "defaulted",
            **{c: c.lower() for c in schema.PROTECTED_COLUMNS},
        }
    )
    total = len(frame)
    if total > max_rows:
        keep = np.random.default_rng(seed).random(total) < max_rows / total
        frame = frame[keep].reset_index(drop=True)
    frame["defaulted"] = frame["defaulted"].astype("Int64")
    return PairedPortfolio(frame[list(PAIRED_COLUMNS)], tuple(sorted(set(frame["partition"]))), missing, total)
