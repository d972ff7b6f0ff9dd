"""The shadow: a candidate version scores the applications the champion (or challenger) answered, on a thread of
its own, after their response is computed. Its scores go to the inference log with role ``shadow`` and the
prediction id that answered each application (``served_prediction_id``), never to a client.

The request path only offers the batch (``ShadowScorer.offer``: one non-blocking put on a bounded queue). A full
queue drops the batch (counted, ``reason="queue_full"``), so a shadow that is slow or stalled costs the
responses nothing but a dropped sample; a shadow that raises is counted (``reason="error"``) and logged at most
once per ``LOG_EVERY`` failures. Which applications it scores is sticky by application ID
(``routing.to_shadow`` at the registry's ``shadow_share``). The thread scores whatever batches are waiting in
one featurization and one model call per model, like the scorer; the shadow's ONNX session is used by this
thread only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from platform_assets.core.inference_log.schema import new_prediction_ids, utcnow
from platform_assets.core.observability import SHADOW_ROLE
from platform_assets.ml import features
from platform_assets.serving import metrics, routing
from platform_assets.serving.inference_log.writer import InferenceLog
from platform_assets.serving.model_loading import LoadedModel
from platform_assets.serving.payloads import MATRIX_COLUMNS
from platform_assets.serving.scorer import InjectedFault

logger = logging.getLogger(__name__)

#: A failing shadow logs its first failure, then one line per this many more (the counter has every one).
LOG_EVERY = 100
#: Reasons a shadowed application was not scored (the ``reason`` label of ``credit_risk_shadow_failures_total``).
ERROR, QUEUE_FULL, MISSING_INPUT, SHUTDOWN = "error", "queue_full", "missing_input", "shutdown"


@dataclass(frozen=True)
class ShadowBatch:
    """One answered request, as the shadow needs it: the rows (``payloads.MATRIX_COLUMNS``), their application IDs,
    the prediction ids that answered them, and the protected values as logged (``None``: not sent)."""

    model: LoadedModel
    share_percent: float
    matrix: np.ndarray
    application_ids: list[int]
    served_prediction_ids: list[str]
    protected: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.application_ids)


class ShadowScorer:
    """Scores ``ShadowBatch``es with their shadow model on one daemon thread and logs them to ``log``.

    ``queue_batches``: batches that may wait (more are dropped); ``max_rows``: rows gathered into one pass;
    ``fails`` / ``delay_seconds``: the fault drill (``ServingSettings.shadow_fails``, ``shadow_delay_seconds``).
    """

    def __init__(
        self,
        log: InferenceLog,
        queue_batches: int,
        *,
        max_rows: int = 4096,
        fails: bool = False,
        delay_seconds: float = 0.0,
    ) -> None:
        self._log = log
        self._max_rows = max_rows
        self._fails = fails
        self._delay = delay_seconds
        self._queue: queue.Queue[ShadowBatch] = queue.Queue(maxsize=queue_batches)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._deadline = float("inf")  # monotonic time after which a closing scorer drops what still waits
        self.scored = 0
        self.not_scored: dict[str, int] = {ERROR: 0, QUEUE_FULL: 0, MISSING_INPUT: 0, SHUTDOWN: 0}
        self._failures = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    # -- the request path ---------------------------------------------------------------------------
    def offer(self, batch: ShadowBatch) -> bool:
        """Queue ``batch`` for the shadow without waiting; False (and counted) when the queue is full or the
        scorer is closing."""
        if not len(batch):
            return True
        if self._closing.is_set():
            self._count(batch.model.label, SHUTDOWN, len(batch))
            return False
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._count(batch.model.label, QUEUE_FULL, len(batch))
            return False
        return True

    # -- status and shutdown ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """This worker's shadow counts: applications scored and not scored (by reason), batches waiting."""
        with self._lock:
            counts = dict(self.not_scored)
            scored = self.scored
        return {
            "scored": scored,
            "failed": counts[ERROR],
            "dropped": counts[QUEUE_FULL],
            "missing_input": counts[MISSING_INPUT],
            "pending_batches": self._queue.qsize(),
            "queue_batches": self._queue.maxsize,
            "last_error": self.last_error,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Score what waits for up to ``timeout`` seconds, drop (and count) the rest, stop the thread."""
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            logger.error("the shadow scorer did not stop within %.0f s", timeout)

    # -- the shadow's thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            batches, rows = [first], len(first)
            while rows < self._max_rows:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                batches.append(more)
                rows += len(more)
            if self._closing.is_set() and time.monotonic() > self._deadline:
                for batch in batches:
                    self._count(batch.model.label, SHUTDOWN, len(batch))
                continue
            try:
                self._score(batches)
            except Exception as exc:  # a bug here must not stop the thread: count it with the shadow's failures
                for batch in batches:
                    self._failed(batch.model.label, len(batch), exc)

    def _score(self, batches: list[ShadowBatch]) -> None:
        if self._delay:
            time.sleep(self._delay)  # the fault drill: a stalled shadow
        by_model: dict[int, list[ShadowBatch]] = {}
        for batch in batches:
            by_model.setdefault(id(batch.model), []).append(batch)
        for group in by_model.values():
            self._score_model(group[0].model, group)

    def _score_model(self, model: LoadedModel, batches: list[ShadowBatch]) -> None:
        """One featurization and one model call for the sampled rows of ``batches``, then their log rows."""
        picked = [self._sample(model, batch) for batch in batches]
        n = sum(len(rows) for rows in picked)
        if n == 0:
            return
        matrix = np.concatenate([batch.matrix[rows] for batch, rows in zip(batches, picked, strict=True)])
        try:
            if self._fails:
                raise InjectedFault(f"CREDIT_RISK_FAULT_INJECTION makes the shadow {model.label} fail")
            featurized = features.featurize_matrix(matrix, MATRIX_COLUMNS, include_protected=model.include_protected)
            if not featurized.valid.all():  # the answering model accepted these rows: they are valid
                raise ValueError(f"{int((~featurized.valid).sum())} answered row(s) do not featurize")
            probabilities = model.predict(featurized.batch.tensor, featurized.batch.static)
        except Exception as exc:
            self._failed(model.label, n, exc)
            return
        probs: list[float] = probabilities.astype("float64").tolist()
        decisions = ["decline" if p >= model.threshold else "approve" for p in probs]
        ids = new_prediction_ids(n)
        rows_out: list[tuple[Any, ...]] = []
        position = 0
        for batch, rows in zip(batches, picked, strict=True):
            for row in rows.tolist():
                rows_out.append(
                    (
                        ids[position],
                        model.label,
                        SHADOW_ROLE,
                        batch.application_ids[row],
                        probs[position],
                        model.threshold,
                        decisions[position],
                        *(values[row] for values in batch.protected.values()),
                        None,  # reasons: a shadow's decision is never sent, so it is not explained
                        None,  # inputs
                        batch.served_prediction_ids[row],
                    )
                )
                position += 1
        self._log.log_rows(utcnow(), rows_out)  # ROW_COLUMNS order, as the engine's rows
        metrics.observe_predictions(model.label, SHADOW_ROLE, probs, decisions)
        with self._lock:
            self.scored += n

    def _sample(self, model: LoadedModel, batch: ShadowBatch) -> np.ndarray:
        """Row positions of ``batch`` the shadow scores: its share by application ID, less the rows without a
        protected value the model reads (counted)."""
        chosen = np.fromiter(
            routing.to_shadow(batch.application_ids, batch.share_percent), dtype=bool, count=len(batch)
        )
        if model.include_protected:
            complete = np.ones(len(batch), dtype=bool)
            for values in batch.protected.values():
                complete &= np.fromiter((v is not None for v in values), dtype=bool, count=len(batch))
            missing = int((chosen & ~complete).sum())
            if missing:
                self._count(model.label, MISSING_INPUT, missing)
            chosen &= complete
        return np.flatnonzero(chosen)

    def _failed(self, label: str, rows: int, exc: BaseException) -> None:
        self.last_error = f"{label}: {type(exc).__name__}: {exc}"
        with self._lock:
            self._failures += 1
            failures = self._failures
        if (failures - 1) % LOG_EVERY == 0:
            logger.error(
                "shadow %s failed to score %d application(s) (failure %d; logged once per %d): %s",
                label,
                rows,
                failures,
                LOG_EVERY,
                self.last_error,
                exc_info=failures == 1,
            )
        self._count(label, ERROR, rows)

    def _count(self, label: str, reason: str, rows: int) -> None:
        with self._lock:
            self.not_scored[reason] += rows
        metrics.SHADOW_FAILURES.labels(model_version=label, reason=reason).inc(rows)
