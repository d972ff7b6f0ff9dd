"""The request-timeout fix for BentoML 1.4 (``platform_assets.serving.bentoml_fixes``): same answers as
the released middleware, but no timer left behind per request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from bentoml._internal.server.http import traffic

from platform_assets.serving import bentoml_fixes


@pytest.fixture
def released() -> Iterator[Any]:
    """BentoML's own ``__call__``, installed for the test; what was installed before is put back after."""
    installed = traffic.TimeoutMiddleware.__dict__["__call__"]
    original = bentoml_fixes.RELEASED.get("TimeoutMiddleware.__call__", installed)
    traffic.TimeoutMiddleware.__call__ = original  # type: ignore[method-assign]
    yield original
    traffic.TimeoutMiddleware.__call__ = installed  # type: ignore[method-assign]


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(middleware: traffic.TimeoutMiddleware, requests: int) -> tuple[list[dict[str, Any]], int]:
    """Run ``requests`` through the middleware; the messages sent and the timers still scheduled."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def main() -> int:
        for _ in range(requests):
            await middleware({"type": "http", "path": "/predict"}, receive, send)
        await asyncio.sleep(0.01)  # let cancelled handlers unwind (their own timers go with them)
        loop = asyncio.get_running_loop()
        return sum(not handle.cancelled() for handle in loop._scheduled)  # type: ignore[attr-defined]

    return sent, asyncio.run(main())


def test_released_middleware_leaves_a_timer_per_request(released: Any) -> None:
    """The bug the fix is for (if BentoML fixes it, the fix's source check stops applying it)."""
    _, pending = _serve(traffic.TimeoutMiddleware(_ok, timeout=60), 50)
    assert pending == 50


def test_fixed_middleware_answers_the_same_and_cancels_its_timers(released: Any) -> None:
    expected, _ = _serve(traffic.TimeoutMiddleware(_ok, timeout=60), 3)
    assert bentoml_fixes.apply() and bentoml_fixes.apply(), "applies, and applying twice is harmless"
    assert traffic.TimeoutMiddleware.__call__ is bentoml_fixes._timeout_call
    sent, pending = _serve(traffic.TimeoutMiddleware(_ok, timeout=60), 50)
    assert pending == 0
    assert sent[:6] == expected and len(sent) == 100


def test_fixed_middleware_still_times_out_with_504(released: Any) -> None:
    bentoml_fixes.apply()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    sent, pending = _serve(traffic.TimeoutMiddleware(slow, timeout=0.05), 1)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 504
    assert b"Not able to process the request in 0.05 seconds" in sent[1]["body"]
    assert pending == 0


def test_an_app_failing_before_its_response_fails_at_once(released: Any) -> None:
    bentoml_fixes.apply()

    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("handler bug")

    middleware = traffic.TimeoutMiddleware(broken, timeout=30)

    async def main() -> None:
        async def noop(*_: Any) -> Any:
            return {"type": "http.request", "body": b""}

        await asyncio.wait_for(middleware({"type": "http", "path": "/"}, noop, noop), timeout=5)

    with pytest.raises(RuntimeError, match="handler bug"):
        asyncio.run(main())


def test_a_changed_middleware_is_left_alone(released: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bentoml_fixes, "PATCHED_SOURCE_SHA256", "0" * 64)
    assert not bentoml_fixes.apply()
    assert traffic.TimeoutMiddleware.__dict__["__call__"] is released
