"""The service's behaviour without the web framework: predict, feedback, status, readiness, shutdown.

``bentos/credit_risk/service.py`` only adapts HTTP to these methods, so everything here can be driven
directly from Python as well.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic_core

from platform_assets.core.inference_log.migrate import SchemaNotCurrent
from platform_assets.core.inference_log.schema import PROTECTED_LOG_COLUMNS, new_prediction_ids, utcnow
from platform_assets.ml import features, schema
from platform_assets.serving import metrics, routing
from platform_assets.serving.bias import BiasWindow, group_decisions, protected_groups
from platform_assets.serving.inference_log.writer import InferenceLog, explained_log_fields
from platform_assets.serving.model_loading import LoadedModel
from platform_assets.serving.payloads import (
    MATRIX_COLUMNS,
    Applications,
    RequestError,
    parse_feedback,
    parse_predict,
    parse_status,
)
from platform_assets.serving.registry_polling import ModelManager, ModelSet
from platform_assets.serving.scorer import ModelFailure, Scored, Scorer, invalid_rows
from platform_assets.serving.settings import ServingSettings
from platform_assets.serving.shadow import ShadowBatch, ShadowScorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    reason: str | None = None  # short cause of an error, for the error metric
    #: (model version label, role) that answered, for the request metrics; None when no model was involved.
    model: tuple[str, str] | None = None

    def json_bytes(self) -> bytes:
        # pydantic-core's serializer: compact JSON like json.dumps(separators=(",", ":")), 5x faster
        # on a 1,000-prediction reply.
        return pydantic_core.to_json(self.body)


def freeze_heap() -> None:
    """Move every object alive now (MLflow, BentoML, pandas, the loaded models) out of the garbage collector's
    reach. Otherwise every full collection walks them all, a pause that lands on the requests in flight (the
    p99). Still kept without TensorFlow because it still measurably helps: benchmarks/serving/run_benchmark.py
    --duration 10 (2-core AMD EPYC, shared, 2026-11-30) gave p99 36 ms at 32 connections with it against 454 ms
    without (row service-nofreeze). Run when the models change: the heap is unfrozen and collected first, so a
    replaced model's objects are freed rather than kept frozen forever. That one collection pauses the worker
    once (logged with its duration)."""
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    logger.info(
        "froze %d objects out of the garbage collector's scans in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - start) * 1000,
    )


def _on_swap(old: ModelSet, new: ModelSet) -> None:
    _publish(old, new)
    if {id(m) for _, m in old.roles()} != {id(m) for _, m in new.roles()}:
        freeze_heap()  # a model came or went (not just a weight or share change)


def _publish(old: ModelSet, new: ModelSet) -> None:
    weight = new.effective_weight / 100.0
    shares = {"champion": 1.0 - weight, "challenger": weight, "shadow": new.effective_shadow_share / 100.0}
    current = {role: (model.label, shares[role]) for role, model in new.roles()}
    metrics.publish_models(current, {role: model.label for role, model in old.roles()})


def answered_by(plan: list[tuple[LoadedModel, str, np.ndarray]]) -> tuple[str, str]:
    """The (version label, role) a request's metrics are counted under: the challenger's when any of its rows
    went to the challenger (its outcome and latency then depend on the challenger), else the champion's. So
    the champion's series hold only requests the challenger never touched: the canary's control group."""
    model, role, _ = next((p for p in plan if p[1] == "challenger"), plan[0])
    return model.label, role


def _unless_invalid(apps: Applications, error: RequestError) -> RequestError:
    """``error`` (the service's state refuses the request), unless a row is invalid: then that row's 422, as the
    contract answers 409 and 503 to valid bodies only. Runs the range rules on the error path alone."""
    checked = features.featurize_matrix(apps.matrix, MATRIX_COLUMNS)
    return invalid_rows(checked.reasons, checked.valid) or error


class CreditRiskEngine:
    """One worker's service: built once from ``settings`` (read when the worker starts, never per request)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.max_batch = settings.max_batch  # read per request: a plain attribute (10 ns, the model's takes 30)
        package_logger = logging.getLogger("platform_assets")
        if package_logger.level == logging.NOTSET:  # model loads/swaps/refusals belong in the server log
            package_logger.setLevel(logging.INFO)
        self.log = InferenceLog(settings.inference_db)
        self.scorer = Scorer(max_rows=max(4096, settings.max_batch), faulty=settings.fault_injection)
        self.bias = BiasWindow(settings.bias_window, settings.bias_window_seconds, settings.bias_min_group)
        self.shadow = ShadowScorer(
            self.log,
            settings.shadow_queue_batches,
            max_rows=max(4096, settings.max_batch),
            fails=settings.shadow_fails,
            delay_seconds=settings.shadow_delay_seconds,
        )
        self.models = ModelManager(settings, on_swap=_on_swap)
        metrics.publish_models({}, {})
        self.models.refresh()
        if self.models.current.champion is None:
            logger.error(
                "no champion model: set the MLflow alias 'champion' on a version of %s (%s); not ready until then",
                settings.model_name,
                settings.tracking_uri,
            )
            freeze_heap()  # loading a model would have frozen the heap (_on_swap)
        self.models.start()

    def not_ready_reasons(self) -> list[str]:
        """Why this worker must not take traffic yet (empty when it may): the inference log cannot be
        written, or no champion model is loaded (the registry is unreachable, or nothing verified)."""
        reasons = [] if self.log.ready else [self.log.problem or "the inference log is not ready"]
        if self.models.current.champion is None:
            status = self.models.status()
            if status["last_error"]:
                reasons.append(f"the model registry {self.settings.tracking_uri} failed: {status['last_error']}")
            elif status["refused"]:
                refused = "; ".join(f"{v}: {why}" for v, why in status["refused"].items())
                reasons.append(f"no verified champion model: refused {refused}")
            else:
                reasons.append(f"no version of {self.settings.model_name!r} has the alias 'champion'")
        return reasons

    def ready(self) -> bool:
        return self.log.ready and self.models.current.champion is not None

    def close(self) -> None:
        """Stop polling and scoring (the shadow gets a few seconds for what waits), then write every queued
        prediction."""
        self.models.stop()
        self.scorer.close()
        self.shadow.close()
        self.log.close()

    # -- predict ----------------------------------------------------------------------------------
    def _plan(self, snapshot: ModelSet, apps: Applications) -> list[tuple[LoadedModel, str, np.ndarray]]:
        """(model, role, row positions) for each model the batch is routed to."""
        n = len(apps)
        if apps.model_version is not None:
            found = snapshot.find(apps.model_version)
            if found is None:
                serving = ", ".join(
                    f"{m.label} ({r})"
                    for r, m in (("champion", snapshot.champion), ("challenger", snapshot.challenger))
                    if m
                )
                # 409, not 422: the body is valid, the version is just not one this service serves now.
                raise _unless_invalid(
                    apps,
                    RequestError(
                        409,
                        f"unknown model_version {apps.model_version!r}: this service serves {serving}",
                        field="model_version",
                        reason="unknown_model_version",
                    ),
                )
            return [(found[0], found[1], np.arange(n))]
        assert snapshot.champion is not None
        plan = [(snapshot.champion, "champion", np.arange(n))]
        if snapshot.challenger is not None and snapshot.effective_weight > 0:
            flags = np.fromiter(routing.to_challenger(apps.ids, snapshot.effective_weight), dtype=bool, count=n)
            plan = [
                (snapshot.champion, "champion", np.flatnonzero(~flags)),
                (snapshot.challenger, "challenger", np.flatnonzero(flags)),
            ]
        for model, _, rows in plan:
            if model.include_protected:
                for column in schema.PROTECTED_COLUMNS:
                    missing = rows[~apps.sent[column][rows]]
                    if len(missing):
                        raise RequestError(
                            422,
                            f"row {int(missing[0])}: missing field {column!r}, an input of model {model.label}",
                            field=column,
                            row=int(missing[0]),
                        )
        return [p for p in plan if len(p[2])]

    async def predict(self, body: bytes) -> Reply:
        served = None
        try:
            apps = parse_predict(body, self.max_batch)
            if not self.log.ready:  # a prediction that cannot be logged cannot get its outcome later
                raise _unless_invalid(
                    apps, RequestError(503, f"not serving: {self.log.problem}", reason="inference_log_unavailable")
                )
            snapshot = self.models.current  # one read: the whole request uses this set
            if snapshot.champion is None:
                raise _unless_invalid(
                    apps,
                    RequestError(
                        503,
                        f"no model is serving: no version of {self.settings.model_name!r} has the alias "
                        "'champion' (or it failed verification)",
                        reason="no_model",
                    ),
                )
            plan = self._plan(snapshot, apps)
            served = answered_by(plan)
            scored = await asyncio.wrap_future(
                self.scorer.submit(apps.matrix, [(m, r) for m, _, r in plan], explain_all=apps.explain_all)
            )
        except RequestError as exc:
            return Reply(exc.status, exc.body(), exc.reason, served)
        except ModelFailure as failure:
            role = next(r for m, r, _ in plan if m is failure.model)
            return Reply(500, {"error": str(failure)}, "model_error", (failure.model.label, role))
        return Reply(200, self._respond(apps, plan, scored, snapshot), model=served)

    def _respond(
        self, apps: Applications, plan: list[tuple[LoadedModel, str, np.ndarray]], scored: Scored, snapshot: ModelSet
    ) -> dict[str, Any]:
        """The response body; logs the answered rows and offers them to the shadow (which never delays this)."""
        n = len(apps)
        probs: list[float] = scored.probabilities.astype("float64").tolist()
        if len(plan) == 1:  # one model scored every row (the usual case): no per-row assembly
            model, role, _ = plan[0]
            labels, roles, thresholds = [model.label] * n, [role] * n, [model.threshold] * n
        else:
            labels, roles = [""] * n, [""] * n
            per_row = np.empty(n, dtype="float64")
            for model, role, rows in plan:
                for i in rows.tolist():
                    labels[i] = model.label
                    roles[i] = role
                per_row[rows] = model.threshold
            thresholds = per_row.tolist()
        decisions = ["decline" if d else "approve" for d in scored.declined.tolist()]
        reasons = scored.reasons
        ids = new_prediction_ids(n)
        protected = {
            log_name: [v if s else None for v, s in zip(apps.columns[c].tolist(), apps.sent[c].tolist(), strict=True)]
            for c, log_name in PROTECTED_LOG_COLUMNS.items()
        }
        logged_reasons, inputs = explained_log_fields(apps.matrix, reasons)
        self.log.log_rows(  # ROW_COLUMNS order: protected columns (PROTECTED_LOG_COLUMNS order), reasons, served id
            utcnow(),
            list(
                zip(
                    ids,
                    labels,
                    roles,
                    apps.ids,
                    probs,
                    thresholds,
                    decisions,
                    *protected.values(),
                    logged_reasons,
                    inputs,
                    [None] * n,  # served_prediction_id: these rows answered
                    strict=True,
                )
            ),
        )
        if snapshot.shadow is not None and snapshot.shadow_share > 0:
            self.shadow.offer(
                ShadowBatch(snapshot.shadow, snapshot.shadow_share, apps.matrix, apps.ids, ids, protected)
            )
        groups = protected_groups(protected, self.bias.age_edges)  # once for the window and the counters
        if self.bias.observe_groups(groups, decisions):
            metrics.observe_group_decisions(group_decisions(groups, decisions, labels))
        if len(plan) == 1:
            metrics.observe_predictions(labels[0], roles[0], probs, decisions)
        else:
            for model, role, rows in plan:
                picked = rows.tolist()
                metrics.observe_predictions(
                    model.label, role, [probs[i] for i in picked], [decisions[i] for i in picked]
                )
        return {
            "predictions": [
                {
                    "application_id": application_id,
                    "probability_of_default": probability,
                    "decision": decision,
                    "model_version": label,
                    "role": role,
                    "prediction_id": prediction_id,
                    "reasons": row_reasons,
                }
                for application_id, probability, decision, label, role, prediction_id, row_reasons in zip(
                    apps.ids, probs, decisions, labels, roles, ids, reasons, strict=True
                )
            ]
        }

    # -- feedback ---------------------------------------------------------------------------------
    def feedback(self, body: bytes) -> Reply:
        """Store outcomes synchronously; the 200 means they are committed."""
        try:
            items = parse_feedback(body, self.max_batch)
        except RequestError as exc:
            return Reply(exc.status, exc.body(), exc.reason)
        try:
            results = self.log.record_feedback(items)
        except SchemaNotCurrent as exc:
            return Reply(503, {"error": f"feedback not stored, retry later: {exc}"}, "inference_log_unavailable")
        except Exception as exc:
            logger.exception("storing %d feedback record(s) failed", len(items))
            return Reply(503, {"error": f"feedback not stored, retry later: {type(exc).__name__}"}, "storage_error")
        known = sum(r.known for r in results)
        if known:
            metrics.FEEDBACK.labels(known="true").inc(known)
        if len(results) - known:
            metrics.FEEDBACK.labels(known="false").inc(len(results) - known)
        return Reply(
            200,
            {
                "stored": len(results),
                "known": known,
                "unknown": len(results) - known,
                "outcomes": [
                    {
                        "feedback_id": r.feedback_id,
                        "prediction_id": r.prediction_id,
                        "application_id": r.application_id,
                        "known": r.known,
                    }
                    for r in results
                ],
            },
        )

    # -- admin ------------------------------------------------------------------------------------
    def status(self, body: bytes = b"") -> Reply:
        """The status document; a body of ``{"refresh": true}`` re-reads the registry first."""
        try:
            refresh = parse_status(body)
        except RequestError as exc:
            return Reply(exc.status, exc.body(), exc.reason)
        if refresh:
            self.models.refresh()
        return Reply(
            200,
            {
                **self.models.status(),
                "ready": self.ready(),
                "not_ready_reasons": self.not_ready_reasons(),
                "inference_log_ready": self.log.ready,
                "worker_pid": os.getpid(),  # the deployer tells workers apart by it (each polls the registry)
                "inference_log_pending": self.log.pending,
                "inference_log_dropped": self.log.dropped,
                "inference_log_write_retries": self.log.write_retries,
                "live_bias": self.bias.snapshot(),
                "shadow_scoring": self.shadow.status(),
            },
        )
