"""Drive the closed loop: send applications to the service's /predict and, after a delay, their true outcomes
to /feedback, the way a lender's systems would.

    python -m platform_assets.replay --url http://127.0.0.1:3001 --api-key-file predict.key \\
        --feedback-key-file feedback.key --source synthetic --shift 0.5 --rows 2000 --rate 200 --label-delay 5

Labels (``--labels``): ``all`` posts every application's outcome (a test bench that knows every outcome);
``realistic`` posts what a lender learns: an outcome only for applications it approved (a declined applicant
never gets a loan, so never repays or defaults on one), ``--label-delay`` seconds after the decision, by
prediction id, and only for a ``--label-share`` of them (the rest never report back within the window).
``--feedback-delay`` is the older name of ``--label-delay``.

Sources: ``synthetic`` (the platform's generator, for a day after the training data) or ``uci_csv``
(``--csv`` or ``$PLATFORM_UCI_CSV``, a random sample). ``--shift S`` (0..1) degrades the model on purpose:
a share S of the applications get two more months of repayment delay and a 30 % higher bill while their
outcome is redrawn at the base default rate, so the signal the model learned no longer holds for them
(covariate and concept drift at once). Bounded: at most ``--rows`` applications and ``--max-seconds``
of sending; outcomes still pending at the end are posted once due. The keys are read from files (one
key per file, as ``python -m platform_assets.serving.keys create`` prints it): a ``predict`` key, and a
``feedback`` key (the same file when one key has both roles).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd

from platform_assets.core.decisions import APPROVE
from platform_assets.core.service_tls import TLSFiles, verify
from platform_assets.ml import schema, synthetic

SHIFT_DELAY_MONTHS = 2
SHIFT_BILL_FACTOR = 1.3


def apply_shift(frame: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    """A copy of ``frame`` where ``share`` of the rows have longer delays and higher bills, and an outcome
    drawn at the base default rate regardless of them."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"shift must be within 0..1, got {share}")
    out = frame.copy()
    if share == 0.0 or out.empty:
        return out
    rng = np.random.default_rng(seed)
    rows = rng.random(len(out)) < share
    for column in schema.PAY_COLUMNS[:3]:
        out.loc[rows, column] = np.clip(np.maximum(out.loc[rows, column], 0) + SHIFT_DELAY_MONTHS, -2, 8)
    for column in schema.BILL_COLUMNS:
        out.loc[rows, column] = np.round(out.loc[rows, column] * SHIFT_BILL_FACTOR).astype("int64")
    if schema.TARGET in out:
        out.loc[rows, schema.TARGET] = (rng.random(int(rows.sum())) < synthetic.DEFAULT_RATE).astype("int64")
    return out


def synthetic_source(rows: int, seed: int, day: date) -> pd.DataFrame:
    """``rows`` synthetic applications with outcomes, from consecutive days starting at ``day``."""
    parts, left, current = [], rows, day
    while left > 0:
        n = min(left, 50_000)
        parts.append(synthetic.generate_partition(current, n, seed))
        left -= n
        current += timedelta(days=1)
    return pd.concat(parts, ignore_index=True)


def uci_source(path: Path, rows: int, seed: int) -> pd.DataFrame:
    from platform_assets.ml.uci import read_uci_csv

    frame = read_uci_csv(path.read_bytes(), str(path))
    return frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)


#: ``all``: every outcome is posted; ``realistic``: only approved applications' outcomes, and a share of them.
LabelMode = Literal["all", "realistic"]
LABEL_MODES: tuple[LabelMode, ...] = ("all", "realistic")


@dataclass
class ReplayStats:
    """What a replay sent; ``labels_posted`` and ``labels_withheld`` count outcomes by the service's decision
    (``approve`` / ``decline``): posted and stored, or never sent by the label mode."""

    sent: int = 0
    predict_failures: int = 0
    feedback_sent: int = 0
    feedback_failures: int = 0
    elapsed_seconds: float = 0.0
    by_version: dict[str, int] = field(default_factory=dict)
    labels_posted: dict[str, int] = field(default_factory=dict)
    labels_withheld: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _applications(batch: pd.DataFrame) -> list[dict[str, int]]:
    columns = [c for c in schema.RAW_COLUMNS if c != schema.TARGET]
    return [{k: int(v) for k, v in row.items()} for row in batch[columns].to_dict("records")]


def labelled(decisions: list[str], mode: LabelMode, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which of these predictions ever get their outcome posted (boolean per row).

    ``all``: every one. ``realistic``: approved ones only (a declined applicant gets no loan, so has no
    outcome), each with probability ``share``.
    """
    if mode == "all":
        return np.ones(len(decisions), dtype=bool)
    if mode != "realistic":
        raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
    approved = np.array([d == APPROVE for d in decisions], dtype=bool)
    return approved & (rng.random(len(decisions)) < share)


#: Outcomes waiting to be posted: (when due, monotonic seconds; the outcomes; their decisions counted).
PendingOutcomes = deque[tuple[float, list[dict[str, Any]], Counter[str]]]


def replay(
    url: str,
    frame: pd.DataFrame,
    predict_key: str,
    feedback_key: str,
    *,
    rate: float = 100.0,
    batch_size: int = 50,
    feedback_delay: float = 0.0,
    max_seconds: float = 300.0,
    labels: LabelMode = "all",
    label_share: float = 1.0,
    seed: int = 0,
    client: httpx.Client | None = None,
    tls: TLSFiles | None = None,
    pending: PendingOutcomes | None = None,
    wait_for_outcomes: bool = True,
) -> ReplayStats:
    """Send ``frame``'s applications (raw columns, with the target) at about ``rate`` per second in batches,
    and post outcomes by prediction id ``feedback_delay`` seconds after their prediction: all of them, or with
    ``labels="realistic"`` those of approved applications only, a ``label_share`` (0..1) of them drawn with
    ``seed``.

    ``pending`` carries outcomes not yet due from one call to the next (a caller that replays chunk after chunk):
    each call posts those due from it first. With ``wait_for_outcomes=False`` the call returns once its last batch
    is sent and leaves the outcomes not yet due in ``pending``, so the next chunk is not held back by the label
    delay; a last call (an empty ``frame`` will do) posts them. An outcome counts in the stats of the call that
    posts it."""
    if rate <= 0 or batch_size <= 0:
        raise ValueError("rate and batch size must be positive")
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    if not 0.0 <= label_share <= 1.0:
        raise ValueError(f"label_share must be within 0..1, got {label_share}")
    if labels == "all" and label_share != 1.0:
        raise ValueError("label_share applies to labels='realistic' only (labels='all' posts every outcome)")
    if feedback_delay < 0:
        raise ValueError(f"the label delay must not be negative, got {feedback_delay} s")
    http = client or httpx.Client(base_url=url.rstrip("/"), timeout=30, verify=verify(tls))
    stats, versions = ReplayStats(), Counter[str]()
    posted, withheld = Counter[str](), Counter[str]()
    rng = np.random.default_rng(seed)
    pending = deque() if pending is None else pending
    start = time.monotonic()
    deadline = start + max_seconds

    def post_feedback(outcomes: list[dict[str, Any]], decisions: Counter[str]) -> None:
        try:
            response = http.post(
                "/feedback", json={"outcomes": outcomes}, headers={"Authorization": f"Bearer {feedback_key}"}
            )
            ok = response.status_code == 200
            detail = f"/feedback {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as error:
            ok, detail = False, f"/feedback: {type(error).__name__}: {error}"
        if ok:
            stats.feedback_sent += len(outcomes)
            posted.update(decisions)
        else:
            stats.feedback_failures += len(outcomes)
            stats.errors.append(detail)

    def flush_due(now: float) -> None:
        while pending and pending[0][0] <= now:
            _, outcomes, decisions = pending.popleft()
            post_feedback(outcomes, decisions)

    for offset in range(0, len(frame), batch_size):
        if time.monotonic() >= deadline:
            break
        batch = frame.iloc[offset : offset + batch_size]
        due_to_send = start + offset / rate
        if (wait := due_to_send - time.monotonic()) > 0:
            time.sleep(wait)
        try:
            response = http.post(
                "/predict",
                json={"applications": _applications(batch)},
                headers={"Authorization": f"Bearer {predict_key}"},
            )
        except httpx.HTTPError as error:
            response = None
            stats.errors.append(f"/predict: {type(error).__name__}: {error}")
        stats.sent += len(batch)
        if response is None or response.status_code != 200:
            stats.predict_failures += len(batch)
            if response is not None:
                stats.errors.append(f"/predict {response.status_code}: {response.text[:200]}")
        else:
            predictions = response.json()["predictions"]
            versions.update(p["model_version"] for p in predictions)
            if schema.TARGET in batch:
                decisions = [str(p.get("decision") or "unknown") for p in predictions]
                chosen = labelled(decisions, labels, label_share, rng)
                withheld.update(d for d, c in zip(decisions, chosen, strict=True) if not c)
                outcomes = [
                    {"prediction_id": p["prediction_id"], "defaulted": int(y)}
                    for p, y, c in zip(predictions, batch[schema.TARGET].tolist(), chosen, strict=True)
                    if c
                ]
                if outcomes:
                    due = Counter(d for d, c in zip(decisions, chosen, strict=True) if c)
                    pending.append((time.monotonic() + feedback_delay, outcomes, due))
        flush_due(time.monotonic())
    if pending and wait_for_outcomes:
        time.sleep(max(0.0, pending[-1][0] - time.monotonic()))
        flush_due(float("inf"))
    stats.elapsed_seconds = round(time.monotonic() - start, 3)
    stats.by_version = dict(sorted(versions.items()))
    stats.labels_posted = dict(sorted(posted.items()))
    stats.labels_withheld = dict(sorted(withheld.items()))
    stats.errors = stats.errors[:20]
    if client is None:
        http.close()
    return stats


def _read_key(path: str) -> str:
    key = Path(path).read_text().strip()
    if not key:
        raise SystemExit(f"{path} is empty: put one API key in it")
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3001", help="service base URL")
    parser.add_argument("--api-key-file", required=True, help="file with a key that has the predict role")
    parser.add_argument("--feedback-key-file", help="file with a key that has the feedback role (default: same)")
    parser.add_argument("--source", choices=("synthetic", "uci_csv"), default="synthetic")
    parser.add_argument("--csv", default=os.environ.get("PLATFORM_UCI_CSV"), help="UCI CSV for --source uci_csv")
    parser.add_argument("--shift", type=float, default=0.0, help="share 0..1 of applications drifted (see above)")
    parser.add_argument("--rows", type=int, default=1000, help="applications to send (upper bound)")
    parser.add_argument("--rate", type=float, default=100.0, help="applications per second")
    parser.add_argument("--batch", type=int, default=50, help="applications per /predict request")
    parser.add_argument("--labels", choices=LABEL_MODES, default="all", help="which outcomes are posted (see above)")
    parser.add_argument(
        "--label-delay",
        "--feedback-delay",
        dest="label_delay",
        type=float,
        default=5.0,
        help="seconds after its prediction an outcome is posted (--feedback-delay: the older name)",
    )
    parser.add_argument(
        "--label-share", type=float, default=1.0, help="realistic: share 0..1 of approved applications that get one"
    )
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long")
    parser.add_argument("--tls-dir", type=Path, help="client certificate dir (ca.crt, tls.crt, tls.key) for mutual TLS")
    parser.add_argument("--seed", type=int, default=2027, help="sampling and shift seed")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2027, 1, 1), help="synthetic: first day")
    args = parser.parse_args(argv)
    if args.rows <= 0:
        parser.error("--rows must be positive")
    if args.label_delay < 0:
        parser.error("--label-delay must not be negative")
    if not 0.0 <= args.label_share <= 1.0:
        parser.error("--label-share must be within 0..1")
    if args.labels == "all" and args.label_share != 1.0:
        parser.error("--label-share needs --labels realistic (--labels all posts every outcome)")
    if args.source == "uci_csv":
        if not args.csv or not Path(args.csv).is_file():
            parser.error("--source uci_csv needs --csv PATH (or PLATFORM_UCI_CSV) naming an existing file")
        frame = uci_source(Path(args.csv), args.rows, args.seed)
    else:
        frame = synthetic_source(args.rows, args.seed, args.day)
    frame = apply_shift(frame, args.shift, args.seed)
    predict_key = _read_key(args.api_key_file)
    feedback_key = _read_key(args.feedback_key_file) if args.feedback_key_file else predict_key
    stats = replay(
        args.url,
        frame,
        predict_key,
        feedback_key,
        rate=args.rate,
        batch_size=args.batch,
        feedback_delay=args.label_delay,
        max_seconds=args.max_seconds,
        labels=args.labels,
        label_share=args.label_share,
        seed=args.seed,
        tls=TLSFiles(args.tls_dir).check() if args.tls_dir else None,
    )
    print(json.dumps(asdict(stats), indent=2))
    return 0 if stats.predict_failures == 0 and stats.feedback_failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
