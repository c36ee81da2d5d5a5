"""A replay of a stored Idempotency-Key answer comes before every guard and costs nothing (issue 22, 4)."""

from __future__ import annotations

import time

import pytest
import responses
from support.payloads import message
from support.service import TWILIO_SID, TWILIO_TOKEN

from sms_service.app import create_app

TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
OK = {"sid": "SM" + "d" * 32, "status": "queued", "num_segments": "1",
      "date_created": "Thu, 24 Aug 2023 05:01:45 +0000"}


@pytest.fixture(params=["memory", "redis"])
def uri(request):
    return "memory://" if request.param == "memory" else request.getfixturevalue("redis_uri")


def _app(uri: str, limit: int, window: str = "1 minute"):
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": uri,
                       "RATE_LIMIT_MAX_REQUESTS": str(limit), "RATE_LIMIT_TIME_WINDOW": window})


def test_a_replay_is_answered_when_the_rate_limit_is_full_and_takes_no_slot(uri):
    client, payload = _app(uri, 2).test_client(), message()
    key = {"Idempotency-Key": "order-77"}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        first = client.post("/send", json=payload, headers=key)
        replays = [client.post("/send", json=payload, headers=key) for _ in range(5)]
        # Five replays took no slot: the second slot is still free for another send.
        other = client.post("/send", json=message())
        assert len(mock.calls) == 2
    assert first.status_code == 200 and other.status_code == 200
    for replay in replays:
        assert replay.status_code == 200, replay.get_json()
        assert replay.get_json() == first.get_json()
        assert replay.headers["Idempotent-Replayed"] == "true"
    # The limit is full now, and a replay still gets its receipt, not 429.
    assert client.post("/send", json=message()).status_code == 429
    late = client.post("/send", json=payload, headers=key)
    assert late.status_code == 200 and late.get_json() == first.get_json()


def test_a_pending_key_keeps_its_409_even_when_the_limit_is_full(uri):
    app = _app(uri, 1)
    client, payload = app.test_client(), message()
    services = app.extensions["sms_service"]
    held = services.idempotency.begin("in-flight", "", payload)  # a request that is still running
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        assert client.post("/send", json=message()).status_code == 200  # the one slot
        assert len(mock.calls) == 1
    answer = client.post("/send", json=payload, headers={"Idempotency-Key": "in-flight"})
    assert answer.status_code == 409, answer.get_json()
    assert answer.headers["Retry-After"] == "1"
    services.idempotency.release(held)


def test_a_rate_limited_first_request_frees_its_key(uri):
    client, payload = _app(uri, 1, "700ms").test_client(), message()
    key = {"Idempotency-Key": "order-78"}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        assert client.post("/send", json=message()).status_code == 200
        refused = client.post("/send", json=payload, headers=key)
        assert refused.status_code == 429 and "Idempotent-Replayed" not in refused.headers
        # The 429 was not kept as the key's answer, nor is the key left pending (409).
        again = client.post("/send", json=payload, headers=key)
        assert again.status_code == 429 and "Idempotent-Replayed" not in again.headers
        time.sleep(0.8)
        sent = client.post("/send", json=payload, headers=key)
        assert sent.status_code == 200 and "Idempotent-Replayed" not in sent.headers
        assert len(mock.calls) == 2


def test_an_invalid_body_with_a_key_still_counts_against_the_limit_first(uri):
    # Only a replay skips the limit: SPEC 6's order (rate limit, then validation) stays.
    client = _app(uri, 1).test_client()
    bad = client.post("/send", json={"sender": "x"}, headers={"Idempotency-Key": "k"})
    assert bad.status_code == 400
    assert client.post("/send", json={"sender": "x"}, headers={"Idempotency-Key": "k"}).status_code == 429
