"""ASGI middleware in front of the service's endpoints: API-key roles, body-size limit, request metrics.

* ``/predict`` needs role ``predict``, ``/feedback`` role ``feedback``, ``/admin/*`` role ``admin``
  (an admin key may call everything). Missing/unknown key -> 401, wrong role -> 403.
* Paths in ``CREDIT_RISK_PROTECTED_PATHS`` (e.g. ``/metrics``) need an admin key; every other path
  (``/livez``, ``/readyz``, ``/metrics``, the docs) stays open.
* ``/docs`` redirects to the Swagger UI that BentoML serves at ``/`` (spec at ``/docs.json``).
* A body larger than ``CREDIT_RISK_MAX_BODY_BYTES`` (by Content-Length) -> 413 before it is read.
* Requests, latency and errors of the protected endpoints are counted with ``observability``'s names;
  handlers name an error's cause in the ``X-Error-Reason`` response header, and the model version and role
  that answered in ``X-Model-Version`` / ``X-Model-Role`` (``none`` when no model was involved), so the
  canary's gates compare challenger with champion rather than the whole service.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from platform_assets.core.api_keys import KeyStore, bearer_token
from platform_assets.core.observability import NO_MODEL
from platform_assets.serving import metrics
from platform_assets.serving.settings import ServingSettings

ROUTE_ROLES = {"/predict": "predict", "/feedback": "feedback"}
ADMIN_PREFIX = "/admin/"
#: Admin routes the service defines; any other ``/admin/...`` path is counted as ``/admin/other`` so a
#: client cannot create metric series at will.
ADMIN_ROUTES = frozenset({"/admin/status"})
#: Every route the service's own endpoints answer on.
API_ROUTES = (*ROUTE_ROLES, *sorted(ADMIN_ROUTES))
REASON_HEADER = b"x-error-reason"
MODEL_VERSION_HEADER = "x-model-version"
MODEL_ROLE_HEADER = "x-model-role"
_VERSION, _ROLE = MODEL_VERSION_HEADER.encode(), MODEL_ROLE_HEADER.encode()


def _role_for(path: str, protected: frozenset[str]) -> str | None:
    if path in ROUTE_ROLES:
        return ROUTE_ROLES[path]
    if path.startswith(ADMIN_PREFIX) or path in protected:
        return "admin"
    return None


async def _reply(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            + headers,
        }
    )
    await send({"type": "http.response.body", "body": payload})


@dataclass(frozen=True)
class AccessPolicy:
    """Which key may call which path, and the largest request body accepted (bytes)."""

    keys: KeyStore
    max_body_bytes: int
    protected_paths: frozenset[str]

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> AccessPolicy:
        return cls(
            KeyStore(settings.api_keys_file, settings.api_keys), settings.max_body_bytes, settings.protected_paths
        )


class ServingMiddleware:
    """The gate in front of the service. ``policy`` returns the service's ``AccessPolicy``; it is called once,
    at the first request, because BentoML builds its middleware before the service instance (which reads
    the settings) exists."""

    def __init__(self, app: Any, policy: Callable[[], AccessPolicy]) -> None:
        self.app = app
        self._policy_of = policy
        self._policy: AccessPolicy | None = None
        self._counted: dict[tuple[str, int, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/docs":
            return await _reply(send, 307, {"docs": "/", "openapi": "/docs.json"}, [(b"location", b"/")])
        policy = self._policy
        if policy is None:
            policy = self._policy = self._policy_of()
        role = _role_for(path, policy.protected_paths)
        if role is None:
            await self.app(scope, receive, send)
            return
        metered = path in ROUTE_ROLES or path.startswith(ADMIN_PREFIX)
        endpoint = path if path in ROUTE_ROLES or path in ADMIN_ROUTES else "/admin/other"
        start = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "reason": "internal", "model_version": NO_MODEL, "role": NO_MODEL}

        async def send_and_record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    name = name.lower()
                    if name == REASON_HEADER:
                        seen["reason"] = value.decode("latin-1")
                    elif name == _VERSION:
                        seen["model_version"] = value.decode("latin-1")
                    elif name == _ROLE:
                        seen["role"] = value.decode("latin-1")
            await send(message)

        try:
            headers = dict(scope["headers"])
            token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
            record = policy.keys.authenticate(token) if token else None
            if record is None:
                message = "missing API key" if token is None else "unknown API key"
                await _reply(
                    send_and_record,
                    401,
                    {"error": f"{message}: send 'Authorization: Bearer <key>' with a key of role {role!r}"},
                    [(b"www-authenticate", b"Bearer"), (REASON_HEADER, b"unauthorized")],
                )
            elif not record.allows(role):
                await _reply(
                    send_and_record,
                    403,
                    {"error": f"key {record.key_id} has roles {list(record.roles)}; {path} needs role {role!r}"},
                    [(REASON_HEADER, b"forbidden")],
                )
            elif int(headers.get(b"content-length", b"0") or 0) > policy.max_body_bytes:
                await _reply(
                    send_and_record,
                    413,
                    {"error": f"request body larger than {policy.max_body_bytes} bytes"},
                    [(REASON_HEADER, b"body_too_large")],
                )
            else:
                await self.app(scope, receive, send_and_record)
        finally:
            if metered:
                elapsed = time.perf_counter() - start
                model = {"model_version": seen["model_version"], "role": seen["role"]}
                key = (endpoint, seen["status"], model["model_version"], model["role"])
                counted = self._counted.get(key)
                if counted is None:  # label lookups cost more than the increments: once per label set
                    counted = self._counted[key] = (
                        metrics.REQUESTS.labels(endpoint=endpoint, status=str(seen["status"]), **model),
                        metrics.LATENCY.labels(endpoint=endpoint, **model),
                    )
                counted[0].inc()
                counted[1].observe(elapsed)
                if seen["status"] >= 400:
                    metrics.ERRORS.labels(
                        endpoint=endpoint, status=str(seen["status"]), reason=seen["reason"], **model
                    ).inc()
