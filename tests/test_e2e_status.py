"""End to end: delivery status through real gunicorn, the fake provider calling back over HTTP."""

from __future__ import annotations

import itertools
import time

import pytest
import requests
from support.payloads import message
from support.service import Service, kaleyra_env, twilio_env

pytestmark = pytest.mark.e2e

SECRET = "e2e-callback-secret-0123456789"
TWILIO_WORDS = ("queued", "sent", "delivered")
KALEYRA_WORDS = ("SUBMITTED", "SENT", "DELIVRD")


def status_service(env: dict[str, str], workers: int = 2, public: str | None = None) -> Service:
    service = Service({**env, "CALLBACK_SECRET": SECRET}, workers=workers)
    service.env["PUBLIC_BASE_URL"] = public or service.url  # http on loopback: allowed for local runs
    return service


@pytest.fixture(scope="module", params=["twilio", "kaleyra"])
def provider_service(request, fake_provider_server):
    env = (twilio_env if request.param == "twilio" else kaleyra_env)(fake_provider_server.url)
    with status_service(env) as service:
        yield request.param, service


def words(name: str) -> tuple[str, ...]:
    return TWILIO_WORDS if name == "twilio" else KALEYRA_WORDS


def record(service: Service, sid: str) -> requests.Response:
    return requests.get(f"{service.url}/messages/{sid}", timeout=10)


def send(service: Service, fake, payload=None) -> tuple[dict, dict]:
    payload = payload or message()
    answer = service.send(payload)
    assert answer.status_code == 200, answer.text
    sent = fake.messages[-1]
    assert sent["_sid"] == answer.json()["sid"]
    return answer.json(), sent


def test_shuffled_statuses_end_delivered_with_all_three_in_history(provider_service, fake_provider):
    name, service = provider_service
    for order in itertools.permutations(words(name)):
        receipt, sent = send(service, fake_provider)
        for word in order:
            assert fake_provider.post_status(sent, word).status_code == 200
        body = record(service, receipt["sid"]).json()
        assert body["status"] == "delivered", (order, body)
        assert set(words(name)) <= {h["providerStatus"] for h in body["history"]}
        assert {h["status"] for h in body["history"]} == {"queued", "sent", "delivered"}


def test_a_callback_racing_the_sends_own_answer_is_merged(provider_service, fake_provider):
    name, service = provider_service
    fake_provider.callback_first = words(name)[-1]
    receipt, _ = send(service, fake_provider)
    assert fake_provider.early_answers == [200]  # taken while the send waited for its answer
    body = record(service, receipt["sid"]).json()
    assert body["status"] == "delivered"
    assert [h["status"] for h in body["history"]] == ["queued", "delivered"]


def test_a_forged_callback_is_403_and_changes_nothing(provider_service, fake_provider):
    name, service = provider_service
    receipt, sent = send(service, fake_provider)
    before = record(service, receipt["sid"]).json()
    if name == "twilio":
        attempts = [fake_provider.post_status(sent, "failed", forge=True),
                    fake_provider.post_status(sent, "failed", token="x" * 32)]
    else:
        attempts = [fake_provider.post_status(sent, "NOT-SENT", token="wrong-token"),
                    fake_provider.post_status(sent, "NOT-SENT", token="")]
    assert [a.status_code for a in attempts] == [403, 403]
    assert all(a.json()["statusCode"] == "403" for a in attempts)
    assert record(service, receipt["sid"]).json() == before
    assert any(r.get("message") == "status callback refused" and r["level"] == "WARNING"
               for r in service.log_records())


def test_logs_and_records_never_show_a_body_or_a_full_number(provider_service, fake_provider):
    name, service = provider_service
    payload = message(body="your secret code is 987123")
    receipt, sent = send(service, fake_provider, payload)
    fake_provider.post_status(sent, words(name)[-1], error_code="30003" if name == "twilio" else "OPT-OUT")
    body = record(service, receipt["sid"])
    assert payload["receiver"] not in body.text and "987123" not in body.text
    assert body.json()["receiver"] == f"+1***{payload['receiver'][-2:]}"
    time.sleep(0.2)
    log = service.log_text()
    assert payload["receiver"] not in log and payload["receiver"][1:] not in log and "987123" not in log
    lines = [r for r in service.log_records() if r.get("message") == "delivery status" and r["sid"] == receipt["sid"]]
    assert len(lines) == 1
    assert (lines[0]["old_status"], lines[0]["new_status"]) == ("queued", "delivered")
    assert lines[0]["receiver"] == body.json()["receiver"]
    metrics = requests.get(f"{service.url}/-/metrics", timeout=10).text
    assert f'sms_delivery_status_total{{country="US",provider="{name}",status="delivered"}}' in metrics


@pytest.mark.parametrize("name", ["twilio", "kaleyra"])
def test_two_instances_share_redis_a_callback_to_one_is_read_from_the_other(name, fake_provider, redis_uri):
    env = {**(twilio_env if name == "twilio" else kaleyra_env)(fake_provider.url), "STORAGE_URI": redis_uri}
    first = status_service(env, workers=1)
    # Behind one load balancer both answer for the same public URL.
    second = status_service(env, workers=1, public=first.url)
    with first, second:
        receipt, sent = send(first, fake_provider)
        assert fake_provider.post_status(sent, words(name)[1]).status_code == 200  # reaches the first
        assert record(second, receipt["sid"]).json()["status"] == "sent"
        # The same report sent to the second instance's address: signed (or tokened) for the public URL.
        final = dict(sent)
        if name == "twilio":
            final["StatusCallback"] = sent["StatusCallback"].replace(first.url, second.url)
            forged = fake_provider.post_status(final, "delivered")
            assert forged.status_code == 403  # signed over the second's own address: not the public URL
            from support.fake_provider import twilio_signature

            fields = {"MessageSid": sent["_sid"], "AccountSid": sent["_account"], "MessageStatus": "delivered",
                      "To": sent["To"]}
            signature = twilio_signature(fake_provider.twilio_token, sent["StatusCallback"], fields)
            answer = requests.post(f"{second.url}/callbacks/twilio/status", data=fields,
                                   headers={"X-Twilio-Signature": signature}, timeout=10)
        else:
            final["callback"] = sent["callback"].replace(first.url, second.url)
            answer = fake_provider.post_status(final, "DELIVRD")
        assert answer.status_code == 200
        assert record(first, receipt["sid"]).json()["status"] == "delivered"
        assert record(second, receipt["sid"]).json()["status"] == "delivered"


def test_console_marks_its_messages_delivered_through_the_callback_route():
    with status_service({"SERVICE_PROVIDER": "console"}, workers=2) as service:
        receipt = service.send(message()).json()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = record(service, receipt["sid"]).json()
            if body["status"] == "delivered":
                break
            time.sleep(0.1)
        assert body["status"] == "delivered"
        assert [h["status"] for h in body["history"]] == ["queued", "sent", "delivered"]
