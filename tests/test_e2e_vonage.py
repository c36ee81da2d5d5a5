"""End to end: the vonage plugin through real gunicorn, a local fake Vonage calling back over HTTP.

Sends, signed delivery receipts in each of Vonage's webhook shapes (GET query, POST
form, POST JSON), inbound STOP and START, the opt-out learned from a receipt's
err-code 9, and the CALLBACK_SECRET token path of an account without signatures.
"""

from __future__ import annotations

import base64

import pytest
import requests
from support import fake_vonage
from support.fake_provider import FakeProvider
from support.payloads import fresh_receiver, message
from support.service import Service

pytestmark = pytest.mark.e2e

SECRET = "e2e-callback-secret-0123456789"
SIGNATURE_SECRET = "e2e-vonage-signature-secret-42"
ADMIN_KEY = "e2e-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def vonage_fake():
    fake = FakeProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(vonage_fake):
    vonage_fake.reset()
    vonage_fake.vonage_signature_secret = SIGNATURE_SECRET
    vonage_fake.vonage_signature_method = "sha256"
    return vonage_fake


def vonage_service(fake: FakeProvider, signed: bool, workers: int = 2) -> Service:
    env = {"SERVICE_PROVIDER": "vonage", "ADMIN_API_KEYS": ADMIN_KEY,
           **fake_vonage.vonage_env(fake.url, SIGNATURE_SECRET if signed else None, "sha256")}
    if not signed:
        env["CALLBACK_SECRET"] = SECRET
    service = Service(env, workers=workers)
    service.env["PUBLIC_BASE_URL"] = service.url  # http on loopback: allowed for local runs
    return service


@pytest.fixture(scope="module")
def signed_service(vonage_fake):
    with vonage_service(vonage_fake, signed=True) as service:
        yield service


def record(service: Service, sid: str) -> dict:
    return requests.get(f"{service.url}/messages/{sid}", timeout=10).json()


def entry(service: Service, number: str) -> requests.Response:
    return requests.get(f"{service.url}/suppressions/{number}", headers=ADMIN, timeout=10)


def test_send_goes_out_with_basic_auth_and_the_callback(signed_service, fake):
    payload = message()
    answer = signed_service.send(payload)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    sent = fake.messages[-1]
    assert sent["provider"] == "vonage" and body["sid"] == sent["_sid"]
    credentials = f"{fake_vonage.API_KEY}:{fake_vonage.API_SECRET}".encode()
    assert sent["_auth"] == "Basic " + base64.b64encode(credentials).decode()
    assert "api_secret" not in sent
    assert (sent["to"], sent["from"], sent["text"]) == (payload["receiver"][1:], payload["sender"][1:], payload["body"])
    assert sent["callback"] == f"{signed_service.url}/callbacks/vonage/status"  # signed: no token
    assert sent["status-report-req"] == "1"
    assert record(signed_service, body["sid"])["provider"] == "vonage"


@pytest.mark.parametrize("how", ["GET", "POST", "POST-JSON"])
def test_signed_receipts_in_each_shape_move_the_record(signed_service, fake, how):
    fake.vonage_webhook = how
    answer = signed_service.send(message())
    assert answer.status_code == 200, answer.text
    sent = fake.messages[-1]
    assert fake.post_status(sent, "accepted").status_code == 200
    assert fake.post_status(sent, "delivered").status_code == 200
    got = record(signed_service, sent["_sid"])
    assert (got["status"], got["providerStatus"]) == ("delivered", "delivered")
    assert [h["status"] for h in got["history"]] == ["queued", "sent", "delivered"]


def test_a_forged_receipt_is_403_and_changes_nothing(signed_service, fake):
    sent_sid = signed_service.send(message()).json()["sid"]
    forged = fake.post_status(fake.messages[-1], "failed", forge=True)
    assert forged.status_code == 403 and forged.json()["statusCode"] == "403"
    assert record(signed_service, sent_sid)["status"] == "queued"


def test_a_multipart_send_counts_vonages_parts(signed_service, fake):
    fake.vonage_parts = 3
    answer = signed_service.send(message())
    assert answer.status_code == 200, answer.text
    assert answer.json()["numSegments"] == "3"  # strings, as every number in the answer


def test_inbound_stop_refuses_the_next_send_and_start_lets_it_go(signed_service, fake):
    person = fresh_receiver()
    inbound = f"{signed_service.url}/callbacks/vonage/inbound"
    fake.vonage_webhook = "GET"
    assert fake_vonage.post_inbound(fake, inbound, person, "Stop").status_code == 200
    before = fake.count()
    for _ in range(2):  # each worker refuses it
        refused = signed_service.send(message(receiver=person))
        assert refused.status_code == 403
        assert refused.json()["message"] == "receiver: this number has opted out"
    assert fake.count() == before
    assert entry(signed_service, person).json()["source"] == "inbound"
    forged = fake_vonage.post_inbound(fake, inbound, person, "START", forge=True)
    assert forged.status_code == 403
    assert signed_service.send(message(receiver=person)).status_code == 403
    assert fake_vonage.post_inbound(fake, inbound, person, "START").status_code == 200
    assert signed_service.send(message(receiver=person)).status_code == 200


def test_err_code_9_on_a_receipt_is_an_opt_out_no_provider_sees_again(signed_service, fake):
    person = fresh_receiver()
    answer = signed_service.send(message(receiver=person))
    assert answer.status_code == 200, answer.text
    assert fake.post_status(fake.messages[-1], "rejected", error_code="9").status_code == 200
    got = record(signed_service, answer.json()["sid"])
    assert (got["status"], got["errorCode"]) == ("failed", "9")
    assert entry(signed_service, person).json()["source"] == "provider"
    before = fake.count()
    assert signed_service.send(message(receiver=person)).status_code == 403
    assert fake.count() == before


def test_no_secret_or_full_number_in_the_log(signed_service, fake):
    person = fresh_receiver()
    assert signed_service.send(message(receiver=person)).status_code == 200
    assert fake.post_status(fake.messages[-1], "delivered").status_code == 200
    fake.mode = "auth"
    assert signed_service.send(message()).status_code == 502
    log = signed_service.log_text()
    # The failure was logged (code 4, at ERROR), without any of what follows.
    assert '"message": "provider refused our credentials", "provider": "vonage"' in log
    for secret in (fake_vonage.API_SECRET, SIGNATURE_SECRET, person):
        assert secret not in log


def test_without_signatures_the_token_authenticates(fake):
    fake.vonage_signature_secret = None
    fake.vonage_webhook = "GET"
    with vonage_service(fake, signed=False, workers=1) as service:
        answer = service.send(message())
        assert answer.status_code == 200, answer.text
        sent = fake.messages[-1]
        assert sent["callback"].startswith(f"{service.url}/callbacks/vonage/status?token=")
        assert len(sent["callback"]) <= 100
        assert fake.post_status(sent, "delivered", forge=True).status_code == 403  # the token left out
        assert record(service, sent["_sid"])["status"] == "queued"
        assert fake.post_status(sent, "delivered").status_code == 200
        assert record(service, sent["_sid"])["status"] == "delivered"


def test_the_balance_check_reads_get_balance(fake):
    fake.balance = "0.00"
    env = {"SERVICE_PROVIDER": "vonage", "VONAGE_EMPTY_BALANCE_CHECK": "true", **fake_vonage.vonage_env(fake.url)}
    with Service(env, workers=1) as service:
        refused = service.send(message())
        assert refused.status_code == 503, refused.text
        assert fake.balance_calls >= 1 and fake.count() == 0
        check = requests.get(f"{service.url}/-/check-up", timeout=10).json()
        assert check["providers"][0]["name"] == "vonage" and check["providers"][0]["balance"] == "empty"
