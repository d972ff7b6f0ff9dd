"""``make loop-demo``'s parts that need no daemon: the traffic thread counts every failed request, and the demo
refuses to start without a key or without a serving champion. ``test_bench_loop.py`` drives the traffic, the
timeline and the decision against a real service."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from net_support import free_port

from platform_assets.loop_demo import (
    CHUNK_SECONDS,
    Traffic,
    add_up,
    describe_traffic,
    failed_requests,
    main,
    wait_for_key,
)
from platform_assets.replay import ReplayStats


def test_traffic_counts_every_request_that_fails() -> None:
    # Nothing listens on the port: every /predict fails to connect, and each one is counted.
    traffic = Traffic(f"http://127.0.0.1:{free_port()}", "key", rate=50, shift=0.7, label_delay=0.1).start()
    deadline = time.monotonic() + 60
    while traffic.snapshot().sent == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    stats = traffic.stop()
    assert stats.sent > 0 and stats.predict_failures == stats.sent == failed_requests(stats), stats
    assert stats.feedback_sent == 0 and stats.by_version == {}
    assert any("ConnectError" in error for error in stats.errors), stats.errors
    assert f"{stats.sent} applications sent, {stats.sent} failed" in describe_traffic(stats)


def test_replays_add_up_count_by_count() -> None:
    first = ReplayStats(sent=50, predict_failures=1, feedback_sent=49, by_version={"v1": 49}, errors=["a"])
    second = ReplayStats(sent=25, feedback_sent=25, feedback_failures=2, by_version={"v1": 5, "v2": 20}, errors=["b"])
    total = add_up(first, second)
    assert (total.sent, total.predict_failures, total.feedback_sent, total.feedback_failures) == (75, 1, 74, 2)
    assert total.by_version == {"v1": 54, "v2": 20} and total.errors == ["a", "b"]
    assert failed_requests(total) == 3
    assert add_up(ReplayStats(errors=["x"] * 15), ReplayStats(errors=["y"] * 15)).errors == ["x"] * 15 + ["y"] * 5


def test_traffic_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        Traffic("http://127.0.0.1:1", "key", rate=0, shift=0.0, label_delay=0.0)


def test_the_demo_needs_a_key(platform_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = platform_home / "empty.key"
    empty.write_text("\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--api-key-file", str(empty)])
    assert exit_.value.code == 2
    assert f"--api-key-file {empty}: no key in it" in capsys.readouterr().err


def test_the_demo_needs_a_serving_champion(platform_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = platform_home / "loop-demo.key"
    key.write_text("some-key\n")
    assert main(["--api-key-file", str(key), "--timeout", "5"]) == 2
    assert "nothing serves: run `make demo` first" in capsys.readouterr().err


def test_the_demo_refuses_a_shift_outside_0_to_1(platform_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = platform_home / "loop-demo.key"
    key.write_text("some-key\n")
    with pytest.raises(SystemExit):
        main(["--api-key-file", str(key), "--shift-after", "1.5"])
    assert "--shift-after must be within 0..1" in capsys.readouterr().err


class KeyStoreLag(BaseHTTPRequestHandler):
    """Answers like the service does while its key file is re-read: 401 for the first requests, then ``final``."""

    unknown_for = 2
    final = 422
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.path)
        status = 401 if len(self.seen) <= self.unknown_for else self.final
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lagging_service() -> Iterator[tuple[str, type[KeyStoreLag]]]:
    handler = type("Handler", (KeyStoreLag,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    thread.join()


def test_the_demo_waits_until_the_service_knows_its_new_key(lagging_service: tuple[str, type[KeyStoreLag]]) -> None:
    url, handler = lagging_service
    wait_for_key(url, "new-key", timeout=10)
    assert handler.seen == ["/predict", "/predict", "/predict", "/feedback"]


def test_a_key_without_the_role_or_never_known_is_refused(lagging_service: tuple[str, type[KeyStoreLag]]) -> None:
    url, handler = lagging_service
    handler.final = 403
    with pytest.raises(RuntimeError, match=r"/predict refuses the key \(403\)"):
        wait_for_key(url, "predict-less key", timeout=10)
    handler.seen, handler.unknown_for = [], 1000
    with pytest.raises(RuntimeError, match=r"/predict does not know the key \(401\) after 1 s"):
        wait_for_key(url, "unknown key", timeout=1)


class ApprovingService(BaseHTTPRequestHandler):
    """/predict approves every application; both endpoints log what they get, in order: (path, prediction ids)."""

    events: list[tuple[str, list[str]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer: dict[str, Any]
        if self.path == "/predict":
            ids = [f"p{a['ID']}" for a in body["applications"]]
            answer = {
                "predictions": [
                    {"prediction_id": i, "model_version": "v1", "role": "champion", "decision": "approve"} for i in ids
                ]
            }
        else:
            ids = [o["prediction_id"] for o in body["outcomes"]]
            answer = {"stored": len(ids)}
        type(self).events.append((self.path, ids))
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_traffic_sends_on_while_outcomes_are_due_and_posts_every_one_by_the_time_it_stops() -> None:
    """A chunk does not wait for its outcomes: they are posted while the next chunk is sent (waiting cut the rate
    to 5/(5 + delay) of the asked one). Stopping posts the last ones: every application gets its outcome once."""
    handler: type[ApprovingService] = type("Handler", (ApprovingService,), {"events": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rate = 400
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        traffic = Traffic(url, "key", rate=rate, shift=0.0, label_delay=1.0, batch_size=50).start()
        deadline = time.monotonic() + 60
        while traffic.snapshot().sent < rate * CHUNK_SECONDS and time.monotonic() < deadline:  # the first chunk
            time.sleep(0.2)
        stats = traffic.stop()
    finally:
        server.shutdown()
        thread.join()
    assert stats.sent >= 2 * rate * CHUNK_SECONDS and failed_requests(stats) == 0, stats  # two chunks at least
    predicted = [i for path, ids in handler.events if path == "/predict" for i in ids]
    posted = [i for path, ids in handler.events if path == "/feedback" for i in ids]
    assert stats.feedback_sent == stats.sent == len(predicted) and sorted(posted) == sorted(predicted), stats
    first_chunk = set(predicted[: int(rate * CHUNK_SECONDS)])
    second_chunk_starts = next(
        n for n, (path, ids) in enumerate(handler.events) if path == "/predict" and ids[0] not in first_chunk
    )
    last_of_first_chunk = max(
        n for n, (path, ids) in enumerate(handler.events) if path == "/feedback" and first_chunk & set(ids)
    )
    assert last_of_first_chunk > second_chunk_starts
