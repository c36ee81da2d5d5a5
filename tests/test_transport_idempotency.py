"""An Idempotency-Key is freed only when the provider provably got nothing (real loopback sockets)."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from support.drip_provider import DripProvider
from support.payloads import message
from support.ports import free_port
from support.service import TWILIO_SID, TWILIO_TOKEN
from test_transport_faults import JSON_BODY, faults

from sms_service.app import create_app


def _client(base_url):
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_BASE_URL": base_url,
                       "STORAGE_URI": "memory://", "PROVIDER_TIMEOUT": "0.5"}).test_client()


def test_a_refused_provider_frees_the_key_so_a_retry_sends_once():
    port = free_port()
    client, payload = _client(f"http://127.0.0.1:{port}"), message()
    first = client.post("/send", json=payload, headers={"Idempotency-Key": "unreachable-1"})
    assert first.status_code == 502
    assert first.get_json()["message"] == "could not connect to twilio"
    time.sleep(1.05)  # the receiver's delay was taken by the first attempt
    with DripProvider("answer", port=port) as server:
        second = client.post("/send", json=payload, headers={"Idempotency-Key": "unreachable-1"})
        assert second.status_code == 200, second.get_json()
        assert "Idempotent-Replayed" not in second.headers
        assert server.requests == 1


@pytest.mark.parametrize(
    ("behaviour", "status", "words"),
    [("close_after_reading", 502, "may have gone"), ("close_before_reading", 502, "may have gone"),
     ("hang", 504, "did not answer within 0.5 s")],
)
def test_a_call_that_may_have_sent_keeps_its_answer(behaviour, status, words):
    with DripProvider(behaviour) as server:
        client, payload = _client(server.url()), message()
        first = client.post("/send", json=payload, headers={"Idempotency-Key": f"maybe-{behaviour}"})
        second = client.post("/send", json=payload, headers={"Idempotency-Key": f"maybe-{behaviour}"})
        assert server.connections == 1
    assert first.status_code == second.status_code == status
    assert words in first.get_json()["message"]
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(fault=faults)
def test_per_idempotency_key_at_most_one_post_and_the_stored_answer_agrees(fault):
    """Any transport fault, then two retries with the same key: at most one POST reaches the
    provider, and the answers replayed are exactly the first one whenever the POST may have
    arrived; only a call that provably sent nothing leaves the key free."""
    name, options = fault
    payload = message()
    key = {"Idempotency-Key": f"prop-{time.monotonic_ns()}"}
    if name == "refuse":
        client = _client(f"http://127.0.0.1:{free_port()}")
        answers = [client.post("/send", json=payload, headers=key) for _ in range(3)]
        assert answers[0].status_code == 502
        assert all("Idempotent-Replayed" not in a.headers for a in answers)  # the key was freed
        return
    with DripProvider(name, **options) as server:
        client = _client(server.url())
        answers = [client.post("/send", json=payload, headers=key) for _ in range(3)]
        time.sleep(0.05)  # let the server's thread finish counting what it read
        posts = server.received.count(b"POST ")
    assert posts <= 1 and server.requests <= 1
    first, replays = answers[0], answers[1:]
    if server.received:  # something reached the provider: the SMS may have gone
        for replay in replays:
            assert replay.headers.get("Idempotent-Replayed") == "true"
            assert (replay.status_code, replay.get_json()) == (first.status_code, first.get_json())
    if first.status_code == 200:
        assert name == "answer" and options["body"] == JSON_BODY
