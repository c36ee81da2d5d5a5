"""An Idempotency-Key never becomes free while its SMS may have gone, on every storage."""

from __future__ import annotations

import time

import pytest
import redis
import responses
from support.payloads import message
from support.service import TWILIO_SID, TWILIO_TOKEN

from sms_service.app import create_app
from sms_service.idempotency import Idempotency, Reservation, StoredAnswer

TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
OK = {"sid": "SM" + "d" * 32, "status": "queued", "num_segments": "1",
      "date_created": "Thu, 24 Aug 2023 05:01:45 +0000"}


@pytest.fixture
def app(storage_uri):
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": storage_uri})


def _services(app):
    return app.extensions["sms_service"]


def test_a_request_that_never_finished_leaves_its_key_taken_then_outcome_unknown(app):
    """A worker died mid-send: its pending record stays, and retries never send."""
    services, payload = _services(app), message()
    services.idempotency.stale_after_s = 2.0  # generous: the 409 below must come before it
    held = services.idempotency.begin("died-1", "", payload)  # the dead request's reservation
    assert isinstance(held, Reservation)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        in_flight = client.post("/send", json=payload, headers={"Idempotency-Key": "died-1"})
        time.sleep(2.1)
        unknown = client.post("/send", json=payload, headers={"Idempotency-Key": "died-1"})
        again = client.post("/send", json=payload, headers={"Idempotency-Key": "died-1"})
        assert len(mock.calls) == 0
    assert in_flight.status_code == 409
    assert unknown.status_code == again.status_code == 504
    assert unknown.headers["Idempotent-Replayed"] == "true"
    body = unknown.get_json()
    assert body["statusCode"] == "504" and "unknown" in body["message"]
    # The key is not free: another payload under it is still a mismatch, not a new send.
    other = client.post("/send", json={**payload, "body": "other"}, headers={"Idempotency-Key": "died-1"})
    assert other.status_code == 422


def test_the_late_answer_of_the_first_request_is_kept_for_later_replays(app):
    """The first request finishes after a retry heard "unknown": replays then tell the truth."""
    services, payload = _services(app), message()
    services.idempotency.stale_after_s = 0.2
    held = services.idempotency.begin("late-1", "", payload)
    time.sleep(0.3)
    client = app.test_client()
    assert client.post("/send", json=payload, headers={"Idempotency-Key": "late-1"}).status_code == 504
    receipt = {"dateEvent": "2026-01-01T00:00:00.000Z", "numSegments": "1", "sid": "SMx", "status": "queued"}
    assert services.idempotency.complete(held, StoredAnswer(200, receipt)) is True
    replay = client.post("/send", json=payload, headers={"Idempotency-Key": "late-1"})
    assert replay.status_code == 200 and replay.get_json() == receipt


def test_an_outcome_is_stored_only_while_the_record_is_still_the_requests_own(storage_uri):
    """A late 504 can never overwrite the 200 of another request under the same key."""
    from sms_service.storage import open_storage

    idem = Idempotency(open_storage(storage_uri), ttl_s=0.3, stale_after_s=60)
    first = idem.begin("k", "", {"m": "1"})
    time.sleep(0.4)  # its record expired (a TTL far shorter than any real one)
    second = idem.begin("k", "", {"m": "1"})
    assert isinstance(first, Reservation) and isinstance(second, Reservation)
    idem.ttl_ms = 60_000
    assert idem.complete(second, StoredAnswer(200, {"sid": "SM2"})) is True
    assert idem.complete(first, StoredAnswer(504, {"statusCode": "504"})) is False
    assert idem.release(first) is False
    replay = idem.begin("k", "", {"m": "1"})
    assert replay == StoredAnswer(200, {"sid": "SM2"})


def test_a_failed_write_of_the_outcome_after_a_send_never_frees_the_key(app, monkeypatch):
    services, payload = _services(app), message()
    services.idempotency.stale_after_s = 2.0  # generous: the 409 below must come before it

    def broken_swap(*args, **kwargs):
        raise redis.ConnectionError("storage went away after the send")

    monkeypatch.setattr(services.storage, "record_swap", broken_swap)
    client = app.test_client()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        sent = client.post("/send", json=payload, headers={"Idempotency-Key": "lost-1"})
        monkeypatch.undo()
        assert client.post("/send", json=payload, headers={"Idempotency-Key": "lost-1"}).status_code == 409
        time.sleep(2.1)
        retry = client.post("/send", json=payload, headers={"Idempotency-Key": "lost-1"})
        assert len(mock.calls) == 1
    assert sent.status_code == 200  # the SMS went: the caller hears so
    assert retry.status_code == 504


def test_nothing_sent_frees_only_the_requests_own_key(app):
    """A provider rejection frees the key, so the corrected retry really sends."""
    client, payload = app.test_client(), message()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, status=429, json={"code": 20429, "message": "Too Many Requests"})
        assert client.post("/send", json=payload, headers={"Idempotency-Key": "free-1"}).status_code == 429
    time.sleep(1.05)  # the receiver's delay slot of the first attempt
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_URL, status=201, json=OK)
        assert client.post("/send", json=payload, headers={"Idempotency-Key": "free-1"}).status_code == 200
        assert len(mock.calls) == 1


def test_a_plugin_error_that_turns_off_nothing_sent_keeps_the_key_taken(app, monkeypatch):
    """A 401 that the plugin says came after the message was queued: the key is not freed."""
    from sms_service.exceptions import ProviderAuthError, proves_nothing_sent

    services, payload, calls = _services(app), message(), []

    def send(message):
        calls.append(message)
        raise ProviderAuthError("refused after the message was queued", nothing_sent=False)

    monkeypatch.setattr(services.failover.routes[0].provider, "send", send)
    client = app.test_client()
    first = client.post("/send", json=payload, headers={"Idempotency-Key": "auth-late-1"})
    again = client.post("/send", json=payload, headers={"Idempotency-Key": "auth-late-1"})
    assert first.status_code == again.status_code == 502
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(calls) == 1
    assert not proves_nothing_sent(ProviderAuthError("x", nothing_sent=False))
    assert proves_nothing_sent(ProviderAuthError("x"))
