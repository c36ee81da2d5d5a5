"""End to end: the plivo and telnyx plugins through real gunicorn, each against its local fake.

Each fake answers the sends and calls back over real HTTP, signed as the provider signs
(Plivo V3, Telnyx Ed25519): delivery reports, inbound STOP and START, and the
provider's own opt-out signals (Plivo error code 200, Telnyx 40300).
"""

from __future__ import annotations

import time

import pytest
import requests
from support.fake_plivo import AUTH_TOKEN, FakePlivo, plivo_env
from support.fake_telnyx import API_KEY, FakeTelnyx
from support.payloads import fresh_receiver, message
from support.service import Service

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WORDS = {"plivo": ("queued", "sent", "delivered"), "telnyx": ("queued", "sent", "delivered")}


@pytest.fixture(scope="module")
def fakes():
    plivo, telnyx = FakePlivo().start(), FakeTelnyx().start()
    yield {"plivo": plivo, "telnyx": telnyx}
    plivo.stop()
    telnyx.stop()


@pytest.fixture(scope="module", params=["plivo", "telnyx"])
def running(request, fakes):
    """(name, fake, service): the service on one provider, with callbacks and the admin API on."""
    fake = fakes[request.param]
    env = plivo_env(fake.url) if request.param == "plivo" else fake.env()
    service = Service({**env, "ADMIN_API_KEYS": ADMIN_KEY}, workers=2)
    service.env["PUBLIC_BASE_URL"] = service.url  # http on loopback: allowed for local runs
    with service:
        yield request.param, fake, service


@pytest.fixture
def case(running):
    running[1].reset()
    return running


def record(service: Service, sid: str) -> dict:
    return requests.get(f"{service.url}/messages/{sid}", timeout=10).json()


def entry(service: Service, number: str) -> requests.Response:
    return requests.get(f"{service.url}/suppressions/{number}", headers=ADMIN, timeout=10)


def send(service: Service, fake, payload: dict | None = None) -> tuple[dict, dict]:
    payload = payload or message()
    answer = service.send(payload)
    assert answer.status_code == 200, answer.text
    sent = fake.messages[-1]
    assert sent["_sid"] == answer.json()["sid"]
    return answer.json(), sent


def test_send_reaches_the_provider_with_our_credentials_and_callback_url(case):
    name, fake, service = case
    payload = message(body="hello from the e2e test")
    receipt, sent = send(service, fake, payload)
    if name == "plivo":
        assert (sent["src"], sent["dst"], sent["text"], sent["type"]) == \
            (payload["sender"], payload["receiver"], payload["body"], "sms")
        assert sent["url"] == f"{service.url}/callbacks/plivo/status" and sent["method"] == "POST"
        assert sent["_auth"].startswith("Basic ")
    else:
        assert (sent["from"], sent["to"], sent["text"]) == (payload["sender"], payload["receiver"], payload["body"])
        assert sent["webhook_url"] == f"{service.url}/callbacks/telnyx/status"
        assert sent["_auth"] == f"Bearer {API_KEY}"
    body = record(service, receipt["sid"])
    assert (body["provider"], body["status"]) == (name, "queued")


def test_signed_delivery_reports_in_any_order_end_delivered(case):
    name, fake, service = case
    receipt, sent = send(service, fake)
    for word in reversed(WORDS[name]):  # the final report first, the older ones late
        assert fake.post_status(sent, word).status_code == 200
    body = record(service, receipt["sid"])
    assert body["status"] == "delivered"
    assert {h["status"] for h in body["history"]} == {"queued", "sent", "delivered"}


def test_an_undelivered_report_keeps_the_providers_error_code(case):
    name, fake, service = case
    receipt, sent = send(service, fake)
    word, code = ("undelivered", "50") if name == "plivo" else ("delivery_failed", "40008")
    assert fake.post_status(sent, word, error_code=code).status_code == 200
    body = record(service, receipt["sid"])
    assert (body["status"], body["providerStatus"], body["errorCode"]) == ("undelivered", word, code)


def test_forged_reports_are_403_and_change_nothing(case):
    name, fake, service = case
    receipt, sent = send(service, fake)
    before = record(service, receipt["sid"])
    attempts = [fake.post_status(sent, "failed" if name == "plivo" else "sending_failed", forge=True)]
    if name == "telnyx":
        attempts.append(fake.post_status(sent, "sending_failed", age=301))  # well signed, too old
    assert {a.status_code for a in attempts} == {403}
    assert all(a.json()["statusCode"] == "403" for a in attempts)
    assert record(service, receipt["sid"]) == before


def test_inbound_stop_refuses_the_next_send_and_start_lets_it_go(case):
    _name, fake, service = case
    person = fresh_receiver()
    assert fake.post_inbound(service.url, person, "Stop").status_code == 200
    before = fake.count()
    refused = service.send(message(receiver=person))
    assert refused.status_code == 403 and refused.json()["message"] == "receiver: this number has opted out"
    assert fake.count() == before  # the provider saw nothing
    assert entry(service, person).json()["source"] == "inbound"
    assert fake.post_inbound(service.url, person, "START").status_code == 200
    assert service.send(message(receiver=person)).status_code == 200
    assert fake.count() == before + 1


def test_a_forged_inbound_stop_is_403_and_changes_nothing(case):
    _name, fake, service = case
    person = fresh_receiver()
    forged = fake.post_inbound(service.url, person, "STOP", forge=True)
    assert forged.status_code == 403
    assert entry(service, person).status_code == 404
    assert service.send(message(receiver=person)).status_code == 200


def test_an_opt_out_reported_on_a_delivery_report_is_learned(case):
    name, fake, service = case
    person = fresh_receiver()
    receipt, sent = send(service, fake, message(receiver=person))
    word, code = ("failed", "200") if name == "plivo" else ("sending_failed", "40300")
    assert fake.post_status(sent, word, error_code=code).status_code == 200
    assert record(service, receipt["sid"])["errorCode"] == code
    before = fake.count()
    assert service.send(message(receiver=person)).status_code == 403
    assert fake.count() == before
    assert entry(service, person).json()["source"] == "provider"


def test_logs_never_show_a_secret_a_body_or_a_full_number(case):
    name, fake, service = case
    person = fresh_receiver()
    _receipt, sent = send(service, fake, message(receiver=person, body="your secret code is 44556677"))
    fake.post_status(sent, WORDS[name][-1])
    fake.post_inbound(service.url, person, "STOP")
    fake.mode = "auth"
    assert service.send(message()).status_code == 502
    time.sleep(0.3)
    log = service.log_text()
    assert f"+1***{person[-2:]}" in log
    for secret in (AUTH_TOKEN, API_KEY, person, person[1:], "44556677"):
        assert secret not in log
