"""End to end: opt-out suppression through real gunicorn, the fake provider posting replies over HTTP."""

from __future__ import annotations

import pytest
import requests
from support.payloads import fresh_receiver, message
from support.service import Service, kaleyra_env, twilio_env

pytestmark = pytest.mark.e2e

SECRET = "e2e-callback-secret-0123456789"
ADMIN_KEY = "e2e-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def suppression_service(env: dict[str, str], workers: int = 2) -> Service:
    service = Service({**env, "CALLBACK_SECRET": SECRET, "ADMIN_API_KEYS": ADMIN_KEY}, workers=workers)
    service.env["PUBLIC_BASE_URL"] = service.url  # http on loopback: allowed for local runs
    return service


@pytest.fixture(scope="module")
def twilio_service(fake_provider_server):
    with suppression_service(twilio_env(fake_provider_server.url)) as service:
        yield service


def entry(service: Service, number: str) -> requests.Response:
    return requests.get(f"{service.url}/suppressions/{number}", headers=ADMIN, timeout=10)


def test_signed_stop_refuses_the_next_send_and_start_lets_it_go(twilio_service, fake_provider):
    person = fresh_receiver()
    answer = fake_provider.post_inbound(twilio_service.url, person, "Stop")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/xml") and answer.content == b"<Response/>"
    before = fake_provider.count()
    for _ in range(2):  # each worker refuses it
        refused = twilio_service.send(message(receiver=person))
        assert refused.status_code == 403
        assert refused.json()["message"] == "receiver: this number has opted out"
    assert fake_provider.count() == before  # the provider saw nothing
    assert entry(twilio_service, person).json()["source"] == "inbound"
    assert fake_provider.post_inbound(twilio_service.url, person, "START").content == b"<Response/>"
    sent = twilio_service.send(message(receiver=person))
    assert sent.status_code == 200, sent.text
    assert fake_provider.count() == before + 1 and fake_provider.messages[-1]["To"] == person


def test_opt_out_type_stop_counts_whatever_the_body(twilio_service, fake_provider):
    person = fresh_receiver()
    assert fake_provider.post_inbound(twilio_service.url, person, "arret svp", opt_out_type="STOP").status_code == 200
    assert twilio_service.send(message(receiver=person)).status_code == 403


def test_a_forged_inbound_post_is_403_and_changes_nothing(twilio_service, fake_provider):
    person = fresh_receiver()
    forged = fake_provider.post_inbound(twilio_service.url, person, "STOP", forge=True)
    assert forged.status_code == 403 and forged.json()["statusCode"] == "403"
    assert entry(twilio_service, person).status_code == 404
    assert twilio_service.send(message(receiver=person)).status_code == 200


def test_help_and_other_text_change_nothing(twilio_service, fake_provider):
    person = fresh_receiver()
    for body in ("HELP", "stop it now", "thanks"):
        assert fake_provider.post_inbound(twilio_service.url, person, body).status_code == 200
    assert entry(twilio_service, person).status_code == 404


def test_twilio_21610_is_learned_and_no_provider_sees_the_number_again(twilio_service, fake_provider):
    person = fresh_receiver()
    fake_provider.mode = "unsubscribed"
    rejected = twilio_service.send(message(receiver=person))
    assert rejected.status_code == 400 and "21610" in rejected.json()["message"]
    fake_provider.mode = "ok"
    before = fake_provider.count()
    assert twilio_service.send(message(receiver=person)).status_code == 403
    assert fake_provider.count() == before
    assert entry(twilio_service, person).json()["source"] == "provider"


def test_admin_api_over_http(twilio_service, fake_provider):
    person = fresh_receiver()
    url = f"{twilio_service.url}/suppressions/{person}"
    assert requests.put(url, timeout=10).status_code == 401
    assert requests.put(url, headers={"Authorization": "Bearer wrong-key-0123456789"}, timeout=10).status_code == 401
    put = requests.put(url, headers=ADMIN, timeout=10)
    assert put.status_code == 200 and put.json()["source"] == "admin" and person not in put.text
    assert twilio_service.send(message(receiver=person)).status_code == 403
    assert requests.delete(url, headers=ADMIN, timeout=10).status_code == 204
    assert twilio_service.send(message(receiver=person)).status_code == 200


def test_no_full_number_in_the_logs(twilio_service, fake_provider):
    person = fresh_receiver()
    fake_provider.post_inbound(twilio_service.url, person, "STOP")
    twilio_service.send(message(receiver=person))
    fake_provider.post_inbound(twilio_service.url, person, "START")
    text = twilio_service.log_text()
    assert f"+1***{person[-2:]}" in text  # the lines are there, masked
    assert person not in text and person[1:] not in text


def test_kaleyra_opt_out_trace_is_learned(fake_provider_server, fake_provider):
    with suppression_service(kaleyra_env(fake_provider_server.url), workers=1) as service:
        person = fresh_receiver()
        assert service.send(message(receiver=person)).status_code == 200
        assert fake_provider.post_status(fake_provider.messages[-1], "NOT-SENT", error_code="OPT-OUT").status_code == 200
        before = fake_provider.count()
        assert service.send(message(receiver=person)).status_code == 403
        assert fake_provider.count() == before
        assert entry(service, person).json()["source"] == "provider"


def test_two_instances_on_one_redis_share_the_list_across_a_restart(fake_provider_server, fake_provider, redis_uri):
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri}
    first, second = suppression_service(env), suppression_service(env)
    person = fresh_receiver()
    with first, second:
        assert fake_provider.post_inbound(first.url, person, "STOP").status_code == 200
        assert second.send(message(receiver=person)).status_code == 403
        second.stop()
        second.start()
        assert second.send(message(receiver=person)).status_code == 403
        assert entry(second, person).json()["source"] == "inbound"
        assert fake_provider.post_inbound(second.url, person, "UNSTOP").status_code == 200
        assert first.send(message(receiver=person)).status_code == 200
