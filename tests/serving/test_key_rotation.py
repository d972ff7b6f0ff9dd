"""API keys on a running service: rotation without a restart, and no key ever in its logs or metrics."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
from serving_support import Server, Stores

from platform_assets.core import api_keys


def status(server: Server, key: str, body: dict[str, object]) -> int:
    return httpx.post(f"{server.url}/predict", json=body, headers={"Authorization": f"Bearer {key}"}).status_code


def eventually(server: Server, key: str, body: dict[str, object], expected: int, timeout: float = 10) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if status(server, key, body) == expected:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"the key did not get {expected} within {timeout} s")


def test_a_key_rotates_without_a_restart(server: Server, stores: Stores) -> None:
    assert server.process is not None
    pid = server.process.pid
    body = {"applications": stores.raw.head(1).to_dict(orient="records")}
    old, old_record = api_keys.create_key(stores.keys_file, ["predict"], note="rotation: old")
    eventually(server, old, body, 200)
    new, _ = api_keys.create_key(stores.keys_file, ["predict"], note="rotation: new")
    eventually(server, new, body, 200)
    assert status(server, old, body) == 200, "the old key works until it is revoked"
    revoke = [sys.executable, "-m", "platform_assets.serving.keys", "revoke", old_record.key_id]
    subprocess.run([*revoke, "--file", str(stores.keys_file)], check=True, capture_output=True)
    refused_after = eventually(server, old, body, 401)
    assert status(server, new, body) == 200
    assert server.process.pid == pid and server.process.poll() is None
    print(f"\nrevoked key refused after {refused_after:.2f} s, without a restart")


def test_no_key_in_the_logs_or_metrics(server: Server, stores: Stores) -> None:
    body = {"applications": stores.raw.head(2).to_dict(orient="records")}
    wrong = api_keys.generate_key()
    for key in [*stores.keys.values(), wrong]:
        status(server, key, body)
    metrics = httpx.get(f"{server.url}/metrics").text
    log = server.log_path.read_text(errors="replace")
    for key in [*stores.keys.values(), wrong]:
        assert key not in log and key not in metrics
        assert key[len(api_keys.KEY_PREFIX) :][:12] not in log, "a prefix of a key is in the log"
        assert api_keys.hash_key(key) not in log and api_keys.hash_key(key) not in metrics
