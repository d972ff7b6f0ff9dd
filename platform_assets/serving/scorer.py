"""Micro-batching inference: one thread per worker featurizes and scores whatever requests are waiting.

Requests are not held back to fill a batch: when the thread is idle a lone request is scored at once;
while it is busy, arriving requests queue and the next pass takes them all (up to ``max_rows``). Each
pass applies ``features.featurize`` once to all its rows, and calls each model once on the rows
routed to it. A request whose rows fail validation gets its own 422; the others in the pass are unaffected.

A row is declined when its probability (as float64, the value the response reports) is at least its model's
threshold. Declined rows (and every row of a request that asks ``"reasons": "all"``) are then explained: all
their coalitions go to their model in one more call per model (``ml.reason_codes``).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from platform_assets.ml import features, schema
from platform_assets.serving.model_loading import LoadedModel
from platform_assets.serving.payloads import MATRIX_COLUMNS, RequestError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """One request's result, in row order: float32 probabilities of default, the decline mask, and each row's
    reasons (``ml.reason_codes`` dicts; ``None`` for a row that was not explained)."""

    probabilities: np.ndarray
    declined: np.ndarray
    reasons: list[list[dict[str, Any]] | None]


@dataclass
class Job:
    #: The request's rows as a float64 matrix in ``payloads.MATRIX_COLUMNS`` order.
    matrix: np.ndarray
    #: (model, row positions in this job) for each model the job's rows are routed to.
    groups: list[tuple[LoadedModel, np.ndarray]]
    future: Future[Scored]
    #: Explain approvals too, not only declines.
    explain_all: bool = False

    def __len__(self) -> int:
        return len(self.matrix)


class ModelFailure(Exception):
    """``model`` raised while scoring; the requests with rows routed to it get this (a 500)."""

    def __init__(self, model: LoadedModel, cause: BaseException) -> None:
        super().__init__(f"model {model.label} failed to score: {type(cause).__name__}: {cause}")
        self.model = model


class InjectedFault(RuntimeError):
    """The failure ``CREDIT_RISK_FAULT_INJECTION`` asks for (test-only; refused outside local)."""


def field_of(reason: str) -> str:
    """The column a ``quarantine_reasons`` message is about (messages start with the column name)."""
    first = reason.split(" ", 1)[0].strip("'")
    return first if first in schema.RAW_COLUMNS else reason


def invalid_rows(reasons: np.ndarray, valid: np.ndarray) -> RequestError | None:
    """The 422 naming the first of a request's rows that ``valid`` marks invalid (``reasons``: why), or None."""
    if valid.all():
        return None
    bad = np.flatnonzero(~valid)
    row, reason = int(bad[0]), reasons[bad[0]]
    return RequestError(
        422,
        f"row {row}: {reason}" + (f" ({len(bad)} invalid rows in all)" if len(bad) > 1 else ""),
        field=field_of(reason),
        row=row,
    )


class Scorer:
    """``faulty``: labels of models whose scoring raises ``InjectedFault`` (``ServingSettings.fault_injection``)."""

    def __init__(self, max_rows: int = 4096, faulty: frozenset[str] = frozenset()) -> None:
        self._max_rows = max_rows
        self._faulty = faulty
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="scorer", daemon=True)
        self._thread.start()

    def submit(
        self, matrix: np.ndarray, groups: list[tuple[LoadedModel, np.ndarray]], *, explain_all: bool = False
    ) -> Future[Scored]:
        """Score one request; the future holds its ``Scored`` result, or a ``RequestError``."""
        job = Job(matrix, groups, Future(), explain_all)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, rows = [job], len(job)
            while rows < self._max_rows:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                jobs.append(more)
                rows += len(more)
            try:
                self._score(jobs)
            except Exception as exc:  # a bug or an ONNX Runtime failure: fail these requests, keep the thread
                logger.exception("scoring %d request(s) failed", len(jobs))
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)

    def _score(self, jobs: list[Job]) -> None:
        values = jobs[0].matrix if len(jobs) == 1 else np.concatenate([j.matrix for j in jobs])
        include_protected = any(m.include_protected for j in jobs for m, _ in j.groups)
        featurized = features.featurize_matrix(values, MATRIX_COLUMNS, include_protected=include_protected)
        reasons, valid = featurized.reasons, featurized.valid
        starts = np.cumsum([0] + [len(j) for j in jobs])
        all_valid = bool(valid.all())
        accepted: list[int] = []
        for index, job in enumerate(jobs):
            own = slice(starts[index], starts[index + 1])
            error = None if all_valid else invalid_rows(reasons[own], valid[own])
            if error is not None:
                job.future.set_exception(error)
            else:
                accepted.append(index)
        if not accepted:
            return
        if len(accepted) == len(jobs):  # every row valid: the batch is already in job order
            batch, raw = featurized.batch, values
        else:
            positions = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in accepted])
            # The batch holds valid rows only; every row of an accepted request is valid.
            in_batch = (np.cumsum(valid) - 1)[positions]
            batch = features.FeatureBatch(featurized.batch.tensor[in_batch], featurized.batch.static[in_batch])
            raw = values[positions]  # the raw rows of the batch, what reasons are computed from
        # Rows of the batch per model: positions within each accepted job, shifted to the batch.
        per_model: dict[int, tuple[LoadedModel, list[np.ndarray]]] = {}
        offset = 0
        for index in accepted:
            for model, rows in jobs[index].groups:
                per_model.setdefault(id(model), (model, []))[1].append(rows + offset)
            offset += len(jobs[index])
        # One model taking every row (each row goes to exactly one model) scores the batch as it is.
        whole = len(per_model) == 1
        probabilities = np.empty(len(batch), dtype="float32")
        thresholds = np.empty(len(batch), dtype="float64")
        rows_of: dict[int, tuple[LoadedModel, np.ndarray]] = {}
        failed: dict[int, ModelFailure] = {}
        for key, (model, parts) in per_model.items():
            idx = np.arange(len(batch)) if whole else np.concatenate(parts)
            rows_of[key] = (model, idx)
            try:
                if model.label in self._faulty:
                    raise InjectedFault(f"CREDIT_RISK_FAULT_INJECTION names {model.label}")
                if whole:
                    probabilities = model.predict(batch.tensor, batch.static)
                else:
                    probabilities[idx] = model.predict(batch.tensor[idx], batch.static[idx])
                thresholds[idx] = model.threshold
            except Exception as exc:  # this model's requests fail; the other model's are still answered
                logger.exception("model %s failed to score a pass of %d row(s)", model.label, len(batch))
                failed[key] = ModelFailure(model, exc)
        declined = probabilities.astype("float64") >= thresholds
        explain = declined.copy()
        offset = 0
        for index in accepted:
            if jobs[index].explain_all:
                explain[offset : offset + len(jobs[index])] = True
            offset += len(jobs[index])
        explained = _explain(raw, rows_of, explain, failed)
        offset = 0
        for index in accepted:
            job = jobs[index]
            part = slice(offset, offset + len(job))
            failure = next((failed[id(model)] for model, _ in job.groups if id(model) in failed), None)
            if failure is not None:
                job.future.set_exception(failure)
            else:
                job.future.set_result(Scored(probabilities[part], declined[part], explained[part]))
            offset = part.stop


def _explain(
    raw: np.ndarray,
    rows_of: dict[int, tuple[LoadedModel, np.ndarray]],
    explain: np.ndarray,
    failed: dict[int, ModelFailure],
) -> list[list[dict[str, Any]] | None]:
    """Reasons of the rows of ``raw`` where ``explain`` is set (None elsewhere): one call per model that has not
    ``failed``. A model whose explanation raises is added to ``failed``: its requests fail, the others do not."""
    out: list[list[dict[str, Any]] | None] = [None] * len(raw)
    for key, (model, idx) in rows_of.items():
        chosen = idx[explain[idx]]
        if key in failed or not len(chosen):
            continue
        try:
            reasons = model.explain(raw[chosen]).reasons
        except Exception as exc:
            logger.exception("model %s failed to explain %d row(s)", model.label, len(chosen))
            failed[key] = ModelFailure(model, exc)
            continue
        for row, row_reasons in zip(chosen.tolist(), reasons, strict=True):
            out[row] = row_reasons
    return out
