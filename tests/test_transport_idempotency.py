"""An Idempotency-Key is freed only when the provider provably got nothing (real loopback sockets)."""

import time

import pytest
from support.drip_provider import DripProvider
from support.payloads import message
from support.ports import free_port
from support.service import TWILIO_SID, TWILIO_TOKEN

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
