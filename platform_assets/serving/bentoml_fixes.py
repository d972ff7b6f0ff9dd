"""A fix for BentoML 1.4's request timeout, applied by the service module before the server builds its app.

``bentoml._internal.server.http.traffic.TimeoutMiddleware`` arms ``loop.call_later(timeout, ...)``
for every request and never cancels it. Each timer keeps its future and a copy of the request's
context (with the tracing span and its attributes) alive for the whole timeout, 60 s by default: at
2,000 requests/s that is over a hundred thousand timers and a few million objects, which the
garbage collector walks on every full collection. Measured on the trivial endpoint: collections of
50-150 ms several times a second under load, the whole of the p99 (see ``benchmarks/serving``).

The replacement keeps the middleware's behaviour (a 504 with the same message when no response has
started within the timeout) and cancels the timer once the request is done; a handler that fails
before sending anything also ends the wait at once instead of holding the connection until the
timeout. It is applied only to the class whose shape it was written for (checked by its source), so
an upgraded BentoML that changes the middleware is left alone (and logged).

The upstream change this stands for, against ``src/bentoml/_internal/server/http/traffic.py`` of
BentoML 1.4.40 (the same code is on upstream ``main`` as of 2026-11; no upstream issue or pull request
reports it: the nearest, bentoml/BentoML#5642 "request barging on sync @bentoml.api endpoints after
traffic.timeout", is about sync handlers outliving the timeout, and #5621 wraps mounted ASGI apps in the
same middleware; neither cancels the timer)::

    -        loop.call_later(self.timeout, self._set_timer_out, waiter)
    +        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)
             ...
             fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    +        fut.add_done_callback(lambda _: waiter.done() or waiter.set_result(None))
    -        try:
    -            await waiter
    -        ...
    +        try:
    +            try:
    +                await waiter
    +            ...
    +        finally:
    +            timer.cancel()

When to delete this module: when the pinned BentoML's ``TimeoutMiddleware.__call__`` cancels the handle
``call_later`` returns once the request is answered (or bounds the wait another way, e.g.
``asyncio.timeout`` around the wait for the first message). Its source then no longer hashes to
``PATCHED_SOURCE_SHA256``: ``apply`` logs that it left the middleware alone and
``tests/serving/test_bentoml_fixes.py::test_released_middleware_leaves_a_timer_per_request`` fails. If
that test's released middleware leaves 0 timers pending, delete this module, its ``apply()`` calls
(``bentos/credit_risk/service.py``, ``benchmarks/serving/trivial_service.py``) and its test, and re-run
``make bench-serving`` to confirm the p99 at 32 connections holds. If the source changed but timers
still pile up, re-derive the fix for the new source and update the hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from typing import Any

logger = logging.getLogger(__name__)

#: sha256 of ``inspect.getsource(TimeoutMiddleware.__call__)`` in the BentoML release this fixes (1.4.40).
PATCHED_SOURCE_SHA256 = "fd8b9e3da28ed2b44cfd508d641617e049fcd4986138197ce7bb227332505896"


#: What ``apply`` replaced, by name.
RELEASED: dict[str, Any] = {}


async def _timeout_call(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] not in ("http", "websocket"):
        await self.app(scope, receive, send)
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message: dict[str, Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    def _finished(_: asyncio.Future[Any]) -> None:
        if not waiter.done():  # ended without a response (an error): stop waiting, re-raise below
            waiter.set_result(None)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    fut.add_done_callback(_finished)
    try:
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                from starlette.responses import JSONResponse

                resp = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504
                )
                await resp(scope, receive, send)
        else:
            await fut  # wait for the response to finish
    finally:
        timer.cancel()


def source_sha256(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def apply() -> bool:
    """Install the fixed ``TimeoutMiddleware.__call__``; returns whether it is (now) installed."""
    from bentoml._internal.server.http import traffic

    middleware = traffic.TimeoutMiddleware
    if middleware.__call__ is _timeout_call:
        return True
    found = source_sha256(middleware.__call__)
    if found != PATCHED_SOURCE_SHA256:
        logger.warning(
            "BentoML's TimeoutMiddleware is not the one platform_assets.serving.bentoml_fixes was written for "
            "(source sha256 %s); left as it is",
            found,
        )
        return False
    RELEASED["TimeoutMiddleware.__call__"] = middleware.__call__
    middleware.__call__ = _timeout_call  # type: ignore[method-assign, assignment]
    return True
