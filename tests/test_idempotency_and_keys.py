"""Idempotency-Key (on memory:// and Redis) and the optional API keys."""

import threading
import time

import pytest
import responses
from support.payloads import message
from support.service import TWILIO_SID, TWILIO_TOKEN

from sms_service.app import create_app

TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
OK = {"sid": "SM" + "c" * 32, "status": "queued", "num_segments": "1",
      "date_created": "Thu, 24 Aug 2023 05:01:45 +0000"}


@pytest.fixture(params=["memory", "redis"])
def twilio_app(request):
    uri = "memory://" if request.param == "memory" else request.getfixturevalue("redis_uri")
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": uri})


def test_same_key_same_payload_replays_and_sends_once(twilio_app):
    client, payload = twilio_app.test_client(), message()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        first = client.post("/send", json=payload, headers={"Idempotency-Key": "order-42"})
        second = client.post("/send", json=payload, headers={"Idempotency-Key": "order-42"})
        assert len(mock.calls) == 1
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_same_key_other_payload_is_422(twilio_app):
    client, payload = twilio_app.test_client(), message()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        client.post("/send", json=payload, headers={"Idempotency-Key": "k-1"})
        other = client.post("/send", json={**payload, "body": "another text"}, headers={"Idempotency-Key": "k-1"})
        assert len(mock.calls) == 1
    assert other.status_code == 422 and other.get_json()["statusCode"] == "422"


def test_in_flight_duplicate_is_409(twilio_app):
    client, payload = twilio_app.test_client(), message()
    release = threading.Event()
    results = {}

    def slow_callback(request):
        release.wait(5)
        return (201, {}, __import__("json").dumps(OK))

    with responses.RequestsMock() as mock:
        mock.add_callback("POST", TWILIO_URL, callback=slow_callback)
        first = threading.Thread(target=lambda: results.setdefault(
            "first", twilio_app.test_client().post("/send", json=payload, headers={"Idempotency-Key": "dup"})))
        first.start()
        time.sleep(0.3)
        results["second"] = client.post("/send", json=payload, headers={"Idempotency-Key": "dup"})
        release.set()
        first.join(5)
        assert len(mock.calls) == 1
    assert results["first"].status_code == 200
    assert results["second"].status_code == 409 and results["second"].headers["Retry-After"] == "1"


def test_key_is_freed_when_nothing_was_sent(twilio_app):
    client, payload = twilio_app.test_client(), message()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, status=400, json={"code": 21211, "message": "bad To"})
        assert client.post("/send", json=payload, headers={"Idempotency-Key": "retry-me"}).status_code == 400
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        # the first attempt consumed the receiver's delay slot; wait it out
        time.sleep(1.05)
        assert client.post("/send", json=payload, headers={"Idempotency-Key": "retry-me"}).status_code == 200
        assert len(mock.calls) == 1


def test_ambiguous_failure_is_replayed_not_resent(twilio_app):
    import requests

    client, payload = twilio_app.test_client(), message()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, body=requests.exceptions.ReadTimeout("slow"))
        first = client.post("/send", json=payload, headers={"Idempotency-Key": "maybe-sent"})
        second = client.post("/send", json=payload, headers={"Idempotency-Key": "maybe-sent"})
        assert len(mock.calls) == 1
    assert first.status_code == second.status_code == 504
    assert first.get_json() == second.get_json()


@pytest.mark.parametrize("key", ["", "with space", "é", "x" * 256, "tab\there"])
def test_malformed_key_is_400(twilio_app, key):
    response = twilio_app.test_client().post("/send", json=message(), headers={"Idempotency-Key": key})
    assert response.status_code == 400 and "Idempotency-Key" in response.get_json()["message"]


def test_records_hold_no_body(redis_uri):
    import redis

    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": redis_uri})
    payload = message(body="ZZuniqueBODYtext")
    app.test_client().post("/send", json=payload, headers={"Idempotency-Key": "nobody"})
    client = redis.Redis.from_url(redis_uri)
    dump = b"".join(client.get(k) or b"" for k in client.keys("sms-service:{record:*"))
    assert dump and b"ZZuniqueBODYtext" not in dump and payload["receiver"].encode() not in dump
    assert not any(b"nobody" in k for k in client.keys("*"))


# -- API keys ------------------------------------------------------------------------------

KEY_A, KEY_B = "alpha-" + "a" * 20, "bravo-" + "b" * 20


@pytest.fixture
def keyed_client():
    return create_app({"SERVICE_PROVIDER": "console", "API_KEYS": f"{KEY_A},{KEY_B}"}).test_client()


@pytest.mark.parametrize("header", [None, "", "Bearer", f"Bearer {KEY_A}x", f"Basic {KEY_A}", "Bearer wrong",
                                    f"Bearer {KEY_A[:-1]}", "Bearer \u00e9t\u00e9"])
def test_send_requires_a_valid_key(keyed_client, header):
    headers = {} if header is None else {"Authorization": header}
    response = keyed_client.post("/send", json=message(), headers=headers)
    assert response.status_code == 401
    assert response.get_json()["statusCode"] == "401"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert KEY_A not in response.get_data(as_text=True)


@pytest.mark.parametrize("key", [KEY_A, KEY_B])
def test_any_listed_key_is_accepted(keyed_client, key):
    assert keyed_client.post("/send", json=message(), headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_probes_and_metrics_stay_open(keyed_client):
    for path in ("/-/healthz", "/-/ready", "/-/check-up", "/-/metrics", "/documentation/json"):
        assert keyed_client.get(path).status_code == 200


def test_unauthorized_requests_do_not_spend_the_rate_limit():
    client = create_app({"SERVICE_PROVIDER": "console", "API_KEYS": KEY_A,
                         "RATE_LIMIT_MAX_REQUESTS": "1"}).test_client()
    for _ in range(5):
        assert client.post("/send", json=message()).status_code == 401
    assert client.post("/send", json=message(), headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200


def test_idempotency_keys_are_scoped_per_api_key(keyed_client):
    payload = message()
    a = keyed_client.post("/send", json=payload, headers={"Authorization": f"Bearer {KEY_A}", "Idempotency-Key": "same"})
    b = keyed_client.post("/send", json={**payload, "body": "different"},
                          headers={"Authorization": f"Bearer {KEY_B}", "Idempotency-Key": "same"})
    assert a.status_code == 200
    assert b.status_code == 429  # the receiver's delay, not a 422 from the other caller's key


def test_idempotency_scope_survives_a_rotation_of_api_keys(tmp_path):
    """A,B then B,C on the same storage: nobody reads another's receipt, nobody sends twice."""
    key_c = "charlie-" + "c" * 20
    uri = f"sqlite:///{tmp_path}/rotation.db"
    before = create_app({"SERVICE_PROVIDER": "console", "API_KEYS": f"{KEY_A},{KEY_B}",
                         "STORAGE_URI": uri}).test_client()
    payload_a, payload_b = message(), message()
    first_a = before.post("/send", json=payload_a, headers={"Authorization": f"Bearer {KEY_A}",
                                                           "Idempotency-Key": "order-1"})
    first_b = before.post("/send", json=payload_b, headers={"Authorization": f"Bearer {KEY_B}",
                                                           "Idempotency-Key": "order-2"})
    assert first_a.status_code == first_b.status_code == 200

    after = create_app({"SERVICE_PROVIDER": "console", "API_KEYS": f"{KEY_B},{key_c}",
                        "STORAGE_URI": uri}).test_client()
    # B's retry of its own request replays its receipt: no second SMS.
    retry_b = after.post("/send", json=payload_b, headers={"Authorization": f"Bearer {KEY_B}",
                                                          "Idempotency-Key": "order-2"})
    assert retry_b.status_code == 200 and retry_b.headers["Idempotent-Replayed"] == "true"
    assert retry_b.get_json() == first_b.get_json()
    # C now sits where B was in the list: it must not see B's receipt (a fresh send, here
    # refused by B's receiver delay rather than replayed).
    c_same = after.post("/send", json=payload_b, headers={"Authorization": f"Bearer {key_c}",
                                                         "Idempotency-Key": "order-2"})
    assert "Idempotent-Replayed" not in c_same.headers and c_same.status_code == 429
    # B now sits where A was: it must not see A's receipt.
    b_on_a = after.post("/send", json=payload_a, headers={"Authorization": f"Bearer {KEY_B}",
                                                         "Idempotency-Key": "order-1"})
    assert "Idempotent-Replayed" not in b_on_a.headers and b_on_a.status_code == 429


def test_no_api_key_is_stored(tmp_path):
    uri = f"sqlite:///{tmp_path}/keys.db"
    client = create_app({"SERVICE_PROVIDER": "console", "API_KEYS": KEY_A, "STORAGE_URI": uri}).test_client()
    assert client.post("/send", json=message(), headers={"Authorization": f"Bearer {KEY_A}",
                                                         "Idempotency-Key": "k-9"}).status_code == 200
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert KEY_A.encode() not in raw
