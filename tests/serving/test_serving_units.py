"""Fast tests of the serving package without a server: routing, keys, payload validation, metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from platform_assets.core import api_keys as auth
from platform_assets.ml import schema
from platform_assets.serving import payloads, routing
from platform_assets.serving.payloads import RequestError

RAW_ROW = {
    "ID": 7,
    "LIMIT_BAL": 50_000,
    "AGE": 31,
    **{c: 0 for c in schema.PAY_COLUMNS},
    **{c: 1000 for c in schema.BILL_COLUMNS},
    **{c: 500 for c in schema.PAY_AMT_COLUMNS},
}


def body(rows: object) -> bytes:
    return json.dumps({"applications": rows}).encode()


def test_routing_is_sticky_and_proportional() -> None:
    ids = list(range(1, 20_001))
    first = routing.to_challenger(ids, 10.0)
    assert first == routing.to_challenger(ids, 10.0)
    assert 0.09 <= sum(first) / len(ids) <= 0.11
    # Raising the weight only adds IDs to the challenger.
    wider = routing.to_challenger(ids, 50.0)
    assert all(w for f, w in zip(first, wider, strict=True) if f)
    assert not any(routing.to_challenger(ids[:100], 0.0)) and all(routing.to_challenger(ids[:100], 100.0))


def test_keys_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, record = auth.create_key(path, ["predict"])
    assert key not in path.read_text() and record.sha256 in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    store = auth.KeyStore(path)
    found = store.authenticate(key)
    assert found is not None and found.allows("predict") and not found.allows("feedback")
    assert store.authenticate(key + "x") is None
    assert auth.bearer_token("Bearer abc") == "abc" and auth.bearer_token("Basic abc") is None


def test_inline_keys_and_bad_key_documents() -> None:
    digest = auth.hash_key("secret")
    store = auth.KeyStore(inline=json.dumps([{"sha256": digest, "role": "admin"}]))
    record = store.authenticate("secret")
    assert record is not None and record.allows("feedback")
    with pytest.raises(auth.KeyFileError, match="roles"):
        auth.parse_keys(json.dumps({"keys": [{"sha256": digest, "roles": ["root"]}]}), "test")
    with pytest.raises(auth.KeyFileError, match="sha256"):
        auth.parse_keys(json.dumps({"keys": [{"sha256": "abc", "roles": ["admin"]}]}), "test")


def test_keys_cli_prints_the_key_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    done = subprocess.run(
        [sys.executable, "-m", "platform_assets.serving.keys", "create", "--role", "feedback", "--file", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    key = done.stdout.strip()
    assert key.startswith(auth.KEY_PREFIX) and key not in path.read_text()
    record = auth.KeyStore(path).authenticate(key)
    assert record is not None and record.roles == ("feedback",)


def test_keys_revoke_list_and_concurrent_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    created = []
    threads = [threading.Thread(target=lambda: created.append(auth.create_key(path, ["predict"]))) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(auth.parse_keys(path.read_text(), "test")) == 16, "a concurrent create lost a key"
    key, record = created[0]
    assert auth.revoke_key(path, record.key_id) == record
    assert auth.KeyStore(path).authenticate(key) is None and len(auth.parse_keys(path.read_text(), "test")) == 15
    with pytest.raises(KeyError, match=record.key_id):
        auth.revoke_key(path, record.key_id)
    listing = subprocess.run(
        [sys.executable, "-m", "platform_assets.serving.keys", "list", "--file", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(listing.splitlines()) == 15 and record.key_id not in listing and record.sha256[8:] not in listing


def test_parse_predict_accepts_valid_rows_and_fills_protected_placeholders() -> None:
    apps = payloads.parse_predict(body([RAW_ROW, {**RAW_ROW, "ID": 8, "SEX": 2, "LIMIT_BAL": 1e5}]), 10)
    assert apps.ids == [7, 8]
    assert apps.columns["LIMIT_BAL"].tolist() == [50_000, 100_000]
    assert apps.sent["SEX"].tolist() == [False, True] and apps.columns["SEX"].tolist() == [1, 2]
    assert apps.sent["AGE"].tolist() == [True, True]
    assert not apps.explain_all  # reasons for declines only, unless the request asks for all
    assert payloads.parse_predict(json.dumps({"applications": [RAW_ROW], "reasons": "all"}).encode(), 10).explain_all


@pytest.mark.parametrize(
    ("document", "status", "field", "row"),
    [
        (b"{not json", 400, None, None),
        (b"", 400, None, None),
        (body([]), 422, "applications", None),
        (body([RAW_ROW] * 11), 413, "applications", None),
        (json.dumps({"rows": []}).encode(), 422, "rows", None),
        (body("nope"), 422, "applications", None),
        (body([RAW_ROW, {k: v for k, v in RAW_ROW.items() if k != "PAY_3"}]), 422, "PAY_3", 1),
        (body([RAW_ROW, {**RAW_ROW, "LIMIT_BAL": "lots"}]), 422, "LIMIT_BAL", 1),
        (body([{**RAW_ROW, "BILL_AMT2": 1.5}]), 422, "BILL_AMT2", 0),
        (body([RAW_ROW, RAW_ROW, {**RAW_ROW, "PAY_0": True}]), 422, "PAY_0", 2),
        (body([{**RAW_ROW, "SEX": "F"}]), 422, "SEX", 0),
        (body([{**RAW_ROW, "ID": -1}]), 422, "ID", 0),
        (body([{**RAW_ROW, "ID": 2**70}]), 422, "ID", 0),
        (json.dumps({"applications": [RAW_ROW], "model_version": 3}).encode(), 422, "model_version", None),
        (json.dumps({"applications": [RAW_ROW], "reasons": "approvals"}).encode(), 422, "reasons", None),
        (json.dumps({"applications": [RAW_ROW], "reasons": ["all"]}).encode(), 422, "reasons", None),
        (json.dumps({"applications": [RAW_ROW], "model_version": ""}).encode(), 422, "model_version", None),
        (json.dumps({"applications": [RAW_ROW], "model_version": "v" * 65}).encode(), 422, "model_version", None),
        (body([RAW_ROW, {**RAW_ROW, "default payment next month": 1}]), 422, "default payment next month", 1),
        (json.dumps([RAW_ROW]).encode(), 422, None, None),
    ],
)
def test_parse_predict_rejects_bad_input(document: bytes, status: int, field: str | None, row: int | None) -> None:
    with pytest.raises(RequestError) as caught:
        payloads.parse_predict(document, 10)
    assert (caught.value.status, caught.value.field, caught.value.row) == (status, field, row)
    if row is not None:
        assert f"row {row}" in caught.value.message and field in caught.value.message


def test_parse_predict_rejects_nan_and_infinity() -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        document = body([RAW_ROW]).replace(b'"LIMIT_BAL": 50000', b'"LIMIT_BAL": ' + literal)
        with pytest.raises(RequestError, match="row 0: field 'LIMIT_BAL'") as caught:
            payloads.parse_predict(document, 10)
        assert caught.value.status == 422
    assert math.isnan(json.loads(b"NaN"))


def test_parse_feedback() -> None:
    outcomes = [{"prediction_id": "abc", "defaulted": 1}, {"application_id": 5, "defaulted": 0}]
    items = payloads.parse_feedback(json.dumps({"outcomes": outcomes}).encode(), 10)
    assert items[1] == {"prediction_id": None, "application_id": 5, "defaulted": 0}
    # A whole number is a whole number in JSON, as the schema says: 1.0 is 1.
    whole = payloads.parse_feedback(b'{"outcomes": [{"application_id": 5.0, "defaulted": 1.0}]}', 10)
    assert whole == [{"prediction_id": None, "application_id": 5, "defaulted": 1}]
    with pytest.raises(RequestError) as bare:  # the body is an object, not a bare list
        payloads.parse_feedback(json.dumps(outcomes).encode(), 10)
    assert bare.value.status == 422 and "JSON object" in bare.value.message
    for bad, field in [
        ([{"defaulted": 1}], "prediction_id"),
        ([{"prediction_id": "a", "defaulted": 2}], "defaulted"),
        ([{"prediction_id": "a"}], "defaulted"),
        ([{"application_id": "x", "defaulted": 1}], "application_id"),
        ([{"prediction_id": "a", "defaulted": 1, "extra": 1}], "extra"),
        ([{"prediction_id": "", "defaulted": 1}], "prediction_id"),
        ([{"prediction_id": "a" * 65, "defaulted": 1}], "prediction_id"),
        ([{"application_id": -1, "defaulted": 1}], "application_id"),
        ([{"prediction_id": "a", "defaulted": True}], "defaulted"),
    ]:
        with pytest.raises(RequestError) as caught:
            payloads.parse_feedback(json.dumps({"outcomes": bad}).encode(), 10)
        assert caught.value.status == 422 and caught.value.field == field and caught.value.row == 0


def test_parse_predict_matrix_holds_the_columns_for_the_feature_code() -> None:
    apps = payloads.parse_predict(body([RAW_ROW, {**RAW_ROW, "ID": 8, "SEX": 2, "BILL_AMT3": -7}]), 10)
    assert apps.matrix.dtype == "float64" and apps.matrix.shape == (2, len(payloads.MATRIX_COLUMNS))
    for position, name in enumerate(payloads.MATRIX_COLUMNS):
        assert apps.matrix[:, position].tolist() == apps.columns[name].tolist(), name
    # The slow path (a float that is a whole number) builds the same matrix as the fast path.
    slow = payloads.parse_predict(body([{**RAW_ROW, "LIMIT_BAL": 50_000.0}, {**RAW_ROW, "ID": 8}]), 10)
    fast = payloads.parse_predict(body([RAW_ROW, {**RAW_ROW, "ID": 8}]), 10)
    assert (slow.matrix == fast.matrix).all()


def test_parse_status() -> None:
    assert payloads.parse_status(b"") is False and payloads.parse_status(b"{}") is False
    assert payloads.parse_status(b'{"refresh": true}') is True
    for document, status, field in [
        (b"{", 400, None),
        (b"[]", 422, None),
        (b'{"refresh": 1}', 422, "refresh"),
        (b'{"refresh": true, "now": 1}', 422, "now"),
    ]:
        with pytest.raises(RequestError) as caught:
            payloads.parse_status(document)
        assert (caught.value.status, caught.value.field) == (status, field)


def test_observe_many_buckets_exactly_like_observe() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from platform_assets.core import observability
    from platform_assets.serving import metrics

    bounds = observability.SCORE_BUCKETS
    values = [0.0, *bounds[:-1], *(b + 1e-12 for b in bounds[:-1]), 0.37, 0.99999, 1.0, 2.0, float("nan")] * 3
    one, many = (
        Histogram("h", "h", ["role"], buckets=bounds, registry=CollectorRegistry()).labels(role="x") for _ in range(2)
    )
    for value in values:
        one.observe(value)
    metrics.observe_many(many, values)

    def samples(child: Histogram) -> dict[str, float]:
        samples = child._child_samples()  # type: ignore[attr-defined]
        return {f"{s.name}{s.labels}": s.value for s in samples if s.name != "_created"}

    got, expected = samples(many), samples(one)
    assert got.keys() == expected.keys() and len(got) > 5
    assert all(got[k] == expected[k] or (got[k] != got[k] and expected[k] != expected[k]) for k in got), got
