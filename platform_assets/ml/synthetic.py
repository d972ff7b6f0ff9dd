"""A seeded generator of raw credit records shaped like the UCI "default of credit card clients" data.

Same columns and code sets (undocumented EDUCATION 0/5/6, MARRIAGE 0, PAY -2/0 included), marginals
close to the real ones, about 22 % defaults, and a learnable signal: default risk rises with recent
repayment delays and utilisation and falls with the share of the bill that is paid.
Same ``seed`` and ``day`` always give identical rows, generated in chunks of bounded size.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from platform_assets.ml import schema

DEFAULT_RATE = 0.2212
#: Rows generated (and written as one lake part, one Spark task downstream) at a time: bounds memory at any
#: rows per day. Generating 1M rows peaks at about +310 MB with chunks of 250,000, +150 MB with 100,000.
CHUNK_ROWS = 100_000
#: IDs are ``YYYYMMDD * ID_DAY_FACTOR + row`` (row from 1): unique across days below 10 billion rows a
#: day, and below 2**63 (int64) for any date up to year 9999.
ID_DAY_FACTOR = 10**10
_EDUCATION = ([0, 1, 2, 3, 4, 5, 6], [0.0005, 0.353, 0.468, 0.164, 0.004, 0.009, 0.0015])
_MARRIAGE = ([0, 1, 2, 3], [0.002, 0.455, 0.532, 0.011])


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def _repayment_history(rng: np.random.Generator, risk: np.ndarray) -> np.ndarray:
    """(n, 6) PAY codes, oldest month first, from a per-client habit plus a delay process."""
    n = len(risk)
    habit = np.stack([np.full(n, -1.9), np.full(n, -1.2) - 0.3 * risk, np.full(n, 0.0), -1.6 + 1.1 * risk], 1)
    habit_p = np.exp(habit) / np.exp(habit).sum(axis=1, keepdims=True)
    kind = (rng.random((n, 1)) > habit_p.cumsum(axis=1)).sum(axis=1)  # 0 idle, 1 full, 2 revolving, 3 late
    base = np.array([-2, -1, 0, 0])[kind]
    late_p = _sigmoid(-3.2 + 1.3 * risk + 1.8 * (kind == 3))
    pay = np.zeros((n, schema.N_MONTHS), dtype="int64")
    delay = np.where(kind == 3, rng.integers(0, 3, n), 0)
    for month in range(schema.N_MONTHS):
        slips = rng.random(n) < late_p
        recovers = rng.random(n) < 0.45
        delay = np.where(slips, np.minimum(delay + 1, 8), np.where(recovers, 0, delay))
        # Occasionally a month breaks the habit (as in the real data, codes change month to month).
        habit_month = np.where(rng.random(n) < 0.12, rng.choice([-2, -1, 0], n), base)
        pay[:, month] = np.where(delay > 0, delay, habit_month)
    return pay


def generate_partition(day: date, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` raw records for the daily partition ``day`` (columns and dtypes of ``schema.RAW_COLUMNS``)
    in one frame: the chunks of ``generate_chunks`` concatenated (use that for large days)."""
    return pd.concat(list(generate_chunks(day, rows, seed)), ignore_index=True)


def chunk_count(rows: int, chunk_rows: int = CHUNK_ROWS) -> int:
    """How many chunks (lake parts, Spark tasks) a day of ``rows`` rows comes in."""
    _check_sizes(rows, chunk_rows)
    return -(-rows // chunk_rows)


def generate_chunks(day: date, rows: int, seed: int, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """``rows`` raw records for ``day`` as frames of at most ``chunk_rows`` rows, in ID order."""
    for chunk in range(chunk_count(rows, chunk_rows)):
        yield generate_chunk(day, rows, seed, chunk, chunk_rows)


def generate_chunk(day: date, rows: int, seed: int, chunk: int, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """Chunk ``chunk`` (from 0) of the ``rows`` records of ``day``: IDs ``chunk * chunk_rows + 1`` on.

    Chunk k draws from its own generator seeded by (seed, day, k), so any chunk can be produced alone (one
    Spark task each) and a day's rows depend only on ``seed``, ``day`` and ``chunk_rows``.
    """
    if not 0 <= chunk < chunk_count(rows, chunk_rows):
        raise ValueError(f"chunk must be in [0, {chunk_count(rows, chunk_rows)}) for {rows} rows, got {chunk}")
    base_id = int(day.strftime("%Y%m%d")) * ID_DAY_FACTOR
    start = chunk * chunk_rows
    # Chunk 0 keeps the seeding of the one-frame generator, so small days are the rows they were.
    entropy = [seed, day.toordinal()] if chunk == 0 else [seed, day.toordinal(), chunk]
    n = min(chunk_rows, rows - start)
    return _generate(np.random.default_rng(entropy), n, first_id=base_id + start + 1)


def _check_sizes(rows: int, chunk_rows: int) -> None:
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if rows >= ID_DAY_FACTOR:
        raise ValueError(f"rows must be below {ID_DAY_FACTOR} per day to keep IDs unique, got {rows}")
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")


def _generate(rng: np.random.Generator, n: int, first_id: int) -> pd.DataFrame:
    """``n`` records with IDs ``first_id``, ``first_id + 1``, ..."""
    limit = np.clip(np.round(np.exp(rng.normal(11.75, 0.8, n)) / 10_000) * 10_000, 10_000, 1_000_000)
    risk = rng.normal(0.0, 1.0, n) - 0.45 * (np.log(limit) - 11.75)
    sex = np.where(rng.random(n) < 0.604, 2, 1)
    education = rng.choice(_EDUCATION[0], n, p=_EDUCATION[1])
    marriage = rng.choice(_MARRIAGE[0], n, p=_MARRIAGE[1])
    age = np.clip(np.round(21 + rng.gamma(2.3, 6.4, n)), 21, 79).astype("int64")

    pay = _repayment_history(rng, risk)  # oldest first
    utilisation = np.clip(rng.beta(1.2, 2.2, n) + 0.12 * risk, 0.0, 1.1)
    bill = np.zeros((n, schema.N_MONTHS))
    paid = np.zeros((n, schema.N_MONTHS))
    level = utilisation * limit
    for month in range(schema.N_MONTHS):
        level = np.maximum(level * rng.normal(1.0, 0.12, n) + rng.normal(0, 0.02, n) * limit, 0.0)
        status = pay[:, month]
        month_bill = np.where(status == -2, 0.0, np.where(status == -1, 0.25 * level, level))
        refund = rng.random(n) < 0.02  # credit balances: the real data has negative bills
        month_bill = np.where(refund, -rng.exponential(800, n), month_bill)
        previous = bill[:, month - 1] if month else month_bill
        share = np.where(status == -1, 1.0, np.where(status > 0, rng.beta(0.6, 8.0, n), rng.beta(1.1, 6.0, n)))
        share = np.clip(share - 0.05 * risk, 0.0, 1.0)
        paid[:, month] = np.where(
            status == -2, rng.exponential(300, n) * (rng.random(n) < 0.3), share * np.maximum(previous, 0)
        )
        bill[:, month] = month_bill

    recent_delay = np.clip(pay[:, -1], 0, 8)
    coverage = paid[:, -3:].sum(axis=1) / np.maximum(bill[:, -4:-1].clip(min=0).sum(axis=1), 1.0)
    score = (
        0.95 * recent_delay
        + 0.25 * np.clip(pay[:, :-1], 0, 8).max(axis=1)
        + 0.9 * np.clip(bill[:, -1] / limit, -0.2, 1.2)
        - 1.1 * np.clip(coverage, 0, 1)
        + 0.35 * risk
        + rng.logistic(0, 0.6, n)
    )
    # Choose the intercept so that the expected default rate matches the real data's 22 %.
    lo, hi = -10.0, 10.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(score + mid).mean() < DEFAULT_RATE else (lo, mid)
    default = (rng.random(n) < _sigmoid(score + lo)).astype("int64")

    columns: dict[str, np.ndarray] = {
        schema.ID: first_id + np.arange(n, dtype="int64"),
        "LIMIT_BAL": limit.astype("int64"),
        "SEX": sex,
        "EDUCATION": education,
        "MARRIAGE": marriage,
        "AGE": age,
    }
    newest_first = slice(None, None, -1)
    for i, name in enumerate(schema.PAY_COLUMNS):
        columns[name] = pay[:, newest_first][:, i]
    for i, name in enumerate(schema.BILL_COLUMNS):
        columns[name] = np.round(bill[:, newest_first][:, i]).astype("int64")
    for i, name in enumerate(schema.PAY_AMT_COLUMNS):
        columns[name] = np.round(paid[:, newest_first][:, i]).astype("int64")
    columns[schema.TARGET] = default
    return pd.DataFrame(columns)[list(schema.RAW_COLUMNS)].astype("int64")
