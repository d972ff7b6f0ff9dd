"""ASGI middleware in front of the service's endpoints: API-key roles, body-size limit, request metrics.

* ``/predict`` needs role ``predict``, ``/feedback`` role ``feedback``, ``/admin/*`` role ``admin``
  (an admin key may call everything). Missing/unknown key -> 401, wrong role -> 403.
* Paths in ``CREDIT_RISK_PROTECTED_PATHS`` (e.g. ``/metrics``) need an admin key; every other path
  (``/livez``, ``/readyz``, ``/metrics``, the docs) stays open.
* A method a route does not take -> 405 with ``Allow``, before the key is checked (the endpoints take POST;
  protected paths, BentoML's own GET endpoints, take GET and HEAD).
* ``/docs.json`` is the service's own OpenAPI document (``openapi``), in place of BentoML's; ``/docs``
  redirects to the Swagger UI that BentoML serves at ``/``.
* A body larger than ``CREDIT_RISK_MAX_BODY_BYTES`` -> 413: by Content-Length before it is read, or, for a
  chunked body, as soon as the bytes read exceed it.
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
from platform_assets.serving import metrics, openapi
from platform_assets.serving.settings import ServingSettings

ROUTE_ROLES = {"/predict": "predict", "/feedback": "feedback"}
ADMIN_PREFIX = "/admin/"
#: Admin routes the service defines; any other ``/admin/...`` path is counted as ``/admin/other`` so a
#: client cannot create metric series at will.
ADMIN_ROUTES = frozenset({"/admin/status"})
#: Every route the service's own endpoints answer on.
API_ROUTES = (*ROUTE_ROLES, *sorted(ADMIN_ROUTES))
REASON_HEADER = openapi.REASON_HEADER.lower().encode()
MODEL_VERSION_HEADER = openapi.MODEL_VERSION_HEADER.lower()
MODEL_ROLE_HEADER = openapi.MODEL_ROLE_HEADER.lower()
_VERSION, _ROLE = MODEL_VERSION_HEADER.encode(), MODEL_ROLE_HEADER.encode()
#: The methods each route takes; a path in ``CREDIT_RISK_PROTECTED_PATHS`` takes ``INFRASTRUCTURE_METHODS``.
ROUTE_METHODS = {route: ("POST",) for route in API_ROUTES}
INFRASTRUCTURE_METHODS = ("GET", "HEAD")


def _role_for(path: str, protected: frozenset[str]) -> str | None:
    if path in ROUTE_ROLES:
        return ROUTE_ROLES[path]
    if path.startswith(ADMIN_PREFIX) or path in protected:
        return "admin"
    return None


async def _reply(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    await _reply_bytes(send, status, json.dumps(body).encode(), headers)


async def _reply_bytes(send: Any, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]) -> None:
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
    """Which key may call which path, the largest request body accepted (bytes), and the OpenAPI document
    (JSON) that states it all."""

    keys: KeyStore
    max_body_bytes: int
    protected_paths: frozenset[str]
    openapi: bytes

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> AccessPolicy:
        return cls(
            KeyStore(settings.api_keys_file, settings.api_keys),
            settings.max_body_bytes,
            settings.protected_paths,
            openapi.document_bytes(settings.max_batch, settings.protected_paths),
        )


async def _read_at_most(receive: Any, limit: int) -> tuple[bytes, bool]:
    """The request body, as long as it is at most ``limit`` bytes; (what was read, whether it was complete)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see an empty body
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replaying(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands the app ``body`` (already read), then whatever the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replay


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
        method = scope["method"]
        if path == "/docs.json" and method in INFRASTRUCTURE_METHODS:
            return await _reply_bytes(send, 200, policy.openapi, [])
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
            await self._admit(scope, receive, send_and_record, policy, role)
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

    async def _admit(self, scope: dict[str, Any], receive: Any, send: Any, policy: AccessPolicy, role: str) -> None:
        """Hand the request to the app, or answer 405, 401, 403 or 413 (checked in this order)."""
        path, method = scope["path"], scope["method"]
        allowed = ROUTE_METHODS.get(path, INFRASTRUCTURE_METHODS if path in policy.protected_paths else None)
        if allowed is not None and method not in allowed:
            return await _reply(
                send,
                405,
                {"error": f"{path} takes {' or '.join(allowed)}, not {method}"},
                [(b"allow", ", ".join(allowed).encode()), (REASON_HEADER, b"method_not_allowed")],
            )
        headers = dict(scope["headers"])
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        record = policy.keys.authenticate(token) if token else None
        if record is None:
            message = "missing API key" if token is None else "unknown API key"
            return await _reply(
                send,
                401,
                {"error": f"{message}: send 'Authorization: Bearer <key>' with a key of role {role!r}"},
                [(b"www-authenticate", b"Bearer"), (REASON_HEADER, b"unauthorized")],
            )
        if not record.allows(role):
            return await _reply(
                send,
                403,
                {"error": f"key {record.key_id} has roles {list(record.roles)}; {path} needs role {role!r}"},
                [(REASON_HEADER, b"forbidden")],
            )
        length = headers.get(b"content-length")
        if length is None:  # a chunked body (or none): read it here, up to the limit
            body, complete = await _read_at_most(receive, policy.max_body_bytes)
            if not complete:
                return await self._too_large(send, policy)
            receive = _replaying(body, receive)
        elif int(length) > policy.max_body_bytes:
            return await self._too_large(send, policy)
        await self.app(scope, receive, send)

    @staticmethod
    async def _too_large(send: Any, policy: AccessPolicy) -> None:
        await _reply(
            send,
            413,
            {"error": f"request body larger than {policy.max_body_bytes} bytes"},
            [(REASON_HEADER, b"body_too_large")],
        )
