"""End to end: failover through real gunicorn, between two local fake providers.

The primary is a fake Twilio, the secondary a fake Kaleyra, each its own server on its
own port. Each row of the fault matrix breaks the primary in one way and asserts which
fake received the message and how many SMS exist in total; the matrix runs for the
pairs twilio->kaleyra, vonage->twilio and twilio->vonage.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support.fake_provider import FakeProvider
from support.fake_vonage import vonage_env
from support.payloads import message
from support.service import TWILIO_TOKEN, Service, kaleyra_env, twilio_env

pytestmark = pytest.mark.e2e

SECRET = "e2e-callback-secret-0123456789"
VONAGE_SIGNATURE_SECRET = "e2e-vonage-signature-secret-42"
ENVS = {"twilio": twilio_env, "kaleyra": kaleyra_env,
        "vonage": lambda url: vonage_env(url, VONAGE_SIGNATURE_SECRET)}
PAIRS = [("twilio", "kaleyra"), ("vonage", "twilio"), ("twilio", "vonage")]


@pytest.fixture(scope="module")
def fakes():
    primary, secondary = FakeProvider().start(), FakeProvider().start()
    yield primary, secondary
    primary.stop()
    secondary.stop()


@pytest.fixture
def twins(fakes):
    for fake in fakes:
        fake.reset()
        fake.slow_seconds = 3.0
    return fakes


def failover_env(primary: FakeProvider, secondary: FakeProvider, **extra: str) -> dict[str, str]:
    return {**twilio_env(primary.url), **kaleyra_env(secondary.url), "SERVICE_PROVIDER": "twilio,kaleyra",
            "RATE_LIMIT_MAX_REQUESTS": "10000", **extra}


@pytest.fixture(scope="module")
def service(fakes):
    primary, secondary = fakes
    # A threshold no row reaches: the matrix is about one send each, not about circuits.
    # No balance check here: a refused connection must meet the send itself, not the balance read.
    env = failover_env(primary, secondary, PROVIDER_TIMEOUT="1",
                       FAILOVER_FAILURE_THRESHOLD="1000", CALLBACK_SECRET=SECRET)
    svc = Service(env, workers=2)
    svc.env["PUBLIC_BASE_URL"] = svc.url
    with svc:
        yield svc


@pytest.fixture(scope="module", params=PAIRS, ids=["->".join(p) for p in PAIRS])
def pair(request, fakes):
    """A service failing over from the pair's first provider to its second, each on its own fake."""
    first, second = request.param
    if request.param == ("twilio", "kaleyra"):
        yield request.getfixturevalue("service"), first, second
        return
    primary, secondary = fakes
    for fake in fakes:  # a fake in Vonage's role signs its webhooks, as the service expects
        fake.vonage_signature_secret = VONAGE_SIGNATURE_SECRET
    env = {**ENVS[first](primary.url), **ENVS[second](secondary.url), "SERVICE_PROVIDER": f"{first},{second}",
           "RATE_LIMIT_MAX_REQUESTS": "10000", "PROVIDER_TIMEOUT": "1", "FAILOVER_FAILURE_THRESHOLD": "1000",
           "CALLBACK_SECRET": SECRET}
    svc = Service(env, workers=2)
    svc.env["PUBLIC_BASE_URL"] = svc.url
    with svc:
        yield svc, first, second


def counts(primary: FakeProvider, secondary: FakeProvider) -> tuple[int, int]:
    return primary.count(), secondary.count()


def _refused(fake: FakeProvider) -> None:
    fake.refuse()


MATRIX = [
    # (row, break the primary, status, SMS received by (primary, secondary), sender)
    ("connection refused", _refused, 200, (0, 1), "secondary"),
    ("timeout", lambda f: setattr(f, "mode", "slow"), 504, (1, 0), None),
    ("500", lambda f: setattr(f, "mode", "error500"), 502, (1, 0), None),
    ("503", lambda f: setattr(f, "mode", "error503"), 502, (1, 0), None),
    ("garbage 200", lambda f: setattr(f, "mode", "not_json"), 502, (1, 0), None),
    ("throttled", lambda f: setattr(f, "mode", "rate_limited"), 200, (1, 1), "secondary"),
    ("credentials refused", lambda f: setattr(f, "mode", "auth"), 200, (1, 1), "secondary"),
    ("invalid number", lambda f: setattr(f, "mode", "reject"), 400, (1, 0), None),
    ("opted out or barred", lambda f: setattr(f, "mode", "unsubscribed"), 400, (1, 0), None),
    # Vonage's own HTTP 200 refusals: an internal error may hide a sent SMS, no credit proves none.
    ("vonage internal error 5", lambda f: setattr(f, "mode", "internal"), 502, (1, 0), None),
    ("vonage partner quota 9", lambda f: setattr(f, "mode", "quota"), 200, (1, 1), "secondary"),
]
# What a rejection's message names, per primary.
REJECTION_CODES = {"twilio": {"invalid number": "21211", "opted out or barred": "21610"},
                   "vonage": {"invalid number": "vonage error 3", "opted out or barred": "vonage error 7"}}


@pytest.mark.parametrize(("row", "breaks", "status", "received", "sender"), MATRIX, ids=[r[0] for r in MATRIX])
def test_fault_matrix(pair, twins, row, breaks, status, received, sender):
    service, first, second = pair
    if row.startswith("vonage") and first != "vonage":
        pytest.skip("a Vonage status code: only a Vonage primary answers it")
    primary, secondary = twins
    breaks(primary)
    try:
        answer = service.send(message())
    finally:
        if row == "connection refused":
            primary.listen()
    assert answer.status_code == status, (row, answer.text)
    # Which fake received the message, and how many SMS exist in total: never two.
    if row == "timeout":
        time.sleep(primary.slow_seconds)  # the primary's late answer, and nothing after it
    assert counts(primary, secondary) == received, row
    body = answer.json()
    if sender == "secondary":
        sent = secondary.messages[-1]
        assert sent["provider"] == second and body["sid"] == sent["_sid"]
        record = requests.get(f"{service.url}/messages/{body['sid']}", timeout=10).json()
        assert record["provider"] == second
    else:
        assert set(body) == {"statusCode", "error", "message"}
    if row in REJECTION_CODES[first]:
        assert REJECTION_CODES[first][row] in body["message"]


@pytest.mark.parametrize("balance", ["0.00", "-1.50", "unreadable"])
def test_fault_matrix_balance_empty_or_unknown_the_secondary_sends(twins, balance):
    primary, secondary = twins
    if balance == "unreadable":
        primary.balance_status = 500
    else:
        primary.balance = balance
    env = failover_env(primary, secondary, TWILIO_EMPTY_BALANCE_CHECK="true")
    with Service(env, workers=1) as svc:
        answer = svc.send(message())
        assert answer.status_code == 200
        assert counts(primary, secondary) == (0, 1) and primary.balance_calls == 1
        assert answer.json()["sid"] == secondary.messages[-1]["_sid"]
        check = requests.get(f"{svc.url}/-/check-up", timeout=10).json()
    expected = "KO" if balance == "unreadable" else "empty"
    assert check["providers"][0] == {"name": "twilio", "circuit": "closed", "failures": 1, "balance": expected}


def test_a_refused_credential_that_fails_over_is_logged_at_error_without_secrets(service, twins):
    primary, _ = twins
    primary.mode = "auth"
    answer = service.send(message())
    assert answer.status_code == 200
    request_id = answer.headers["X-Request-Id"]
    # The access line is written after the answer has gone: wait for it (and the ERROR line).
    errors, access = [], []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (errors and access):
        records = [r for r in _complete_records(service) if r.get("request_id") == request_id]
        errors = [r for r in records if r.get("level") == "ERROR"
                  and r.get("message") == "provider refused our credentials; trying the next provider"]
        access = [r for r in records if r.get("logger") == "gunicorn.access"]
        time.sleep(0.1)
    assert errors and errors[-1]["provider"] == "twilio" and errors[-1]["next_provider"] == "kaleyra"
    assert access and access[-1]["provider"] == "kaleyra" and access[-1]["failover_from"] == "twilio"
    assert TWILIO_TOKEN not in service.log_text()


def _complete_records(service: Service) -> list[dict]:
    # Only whole lines: the last one may still be being written.
    text = service.log_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


def test_both_providers_down_is_502_and_nothing_is_sent(service, twins):
    primary, secondary = twins
    primary.refuse()
    secondary.refuse()
    try:
        answer = service.send(message())
    finally:
        primary.listen()
        secondary.listen()
    assert answer.status_code == 502
    assert "twilio: " in answer.json()["message"] and "kaleyra: " in answer.json()["message"]
    assert counts(primary, secondary) == (0, 0)


def test_a_replayed_idempotency_key_returns_the_secondarys_receipt(service, twins):
    primary, secondary = twins
    primary.mode = "auth"
    payload, headers = message(), {"Idempotency-Key": f"failover-{time.time_ns()}"}
    first = service.send(payload, headers=headers)
    assert first.status_code == 200 and counts(primary, secondary) == (1, 1)
    primary.mode = "ok"
    again = service.send(payload, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert counts(primary, secondary) == (1, 1)


def test_each_pair_takes_the_secondarys_signed_callbacks(pair, twins):
    service, _, second = pair
    primary, secondary = twins
    primary.refuse()
    try:
        answer = service.send(message())
    finally:
        primary.listen()
    assert answer.status_code == 200, answer.text
    word = {"kaleyra": "DELIVRD", "twilio": "delivered", "vonage": "delivered"}[second]
    forged = {"token": "not-the-token"} if second == "kaleyra" else {"forge": True}
    assert secondary.post_status(secondary.messages[-1], word, **forged).status_code == 403
    assert secondary.post_status(secondary.messages[-1], word).status_code == 200
    record = requests.get(f"{service.url}/messages/{answer.json()['sid']}", timeout=10).json()
    assert (record["provider"], record["status"]) == (second, "delivered")


def test_check_up_and_metrics_name_each_provider(service, twins):
    body = requests.get(f"{service.url}/-/check-up", timeout=10).json()
    assert [p["name"] for p in body["providers"]] == ["twilio", "kaleyra"]
    assert all(p["circuit"] == "closed" for p in body["providers"])
    metrics = requests.get(f"{service.url}/-/metrics", timeout=10).text
    assert 'sms_failover_total{from="twilio",reason="provider_unreachable",to="kaleyra"}' in metrics
    assert 'sms_circuit_state{provider="twilio",state="closed"} 1.0' in metrics
    assert 'sms_messages_accepted_total{provider="kaleyra"}' in metrics


# -- circuits ------------------------------------------------------------------------------


def test_the_circuit_opens_skips_the_primary_then_lets_exactly_one_trial_through(twins):
    primary, secondary = twins
    env = failover_env(primary, secondary, PROVIDER_TIMEOUT="5", FAILOVER_FAILURE_THRESHOLD="2",
                       FAILOVER_RESET_AFTER="2s")
    with Service(env, workers=2) as svc:
        primary.mode = "error500"
        assert [svc.send(message()).status_code for _ in range(2)] == [502, 502]
        # Open: the primary is skipped without being touched.
        for _ in range(4):
            assert svc.send(message()).status_code == 200
        assert counts(primary, secondary) == (2, 4)
        check = requests.get(f"{svc.url}/-/check-up", timeout=10).json()
        assert check["providers"][0]["circuit"] == "open" and check["checks"]["providers"] == "OK"
        time.sleep(2.3)
        # Half-open: many sends at once, across both workers; the one trial is slow, so
        # all the others come while it is in flight.
        primary.mode, primary.slow_seconds = "slow", 1.5
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: svc.send(message()), range(8)))
        assert [a.status_code for a in answers] == [200] * 8
        assert primary.count() == 3  # exactly one trial reached it
        assert secondary.count() == 4 + 7
        # The trial succeeded: the circuit is closed and the primary sends again.
        primary.mode = "ok"
        assert svc.send(message()).status_code == 200
        assert counts(primary, secondary) == (4, 11)
        metrics = requests.get(f"{svc.url}/-/metrics", timeout=10).text
        assert 'sms_failover_total{from="twilio",reason="circuit_open",to="kaleyra"} 11.0' in metrics


def test_the_circuit_state_is_shared_by_two_instances_on_redis(twins, redis_uri):
    primary, secondary = twins
    env = failover_env(primary, secondary, STORAGE_URI=redis_uri, FAILOVER_FAILURE_THRESHOLD="1",
                       FAILOVER_RESET_AFTER="1m")
    with Service(env, workers=1) as one, Service(env, workers=1) as two:
        primary.mode = "error503"
        assert one.send(message()).status_code == 502  # opens the primary's circuit
        assert counts(primary, secondary) == (1, 0)
        # The other instance skips the primary without touching it.
        for _ in range(3):
            assert two.send(message()).status_code == 200
        assert counts(primary, secondary) == (1, 3)
        check = requests.get(f"{two.url}/-/check-up", timeout=10).json()
        assert check["providers"][0] == {"name": "twilio", "circuit": "open", "failures": 1}


def test_a_single_provider_behaves_as_before_failover(twins):
    primary, _ = twins
    env = {**twilio_env(primary.url), "FAILOVER_FAILURE_THRESHOLD": "1"}
    with Service(env, workers=1) as svc:
        primary.mode = "error503"
        # No circuit with nothing to fail over to: every send reaches the provider.
        assert [svc.send(message()).status_code for _ in range(3)] == [502] * 3
        assert primary.count() == 3
        check = requests.get(f"{svc.url}/-/check-up", timeout=10).json()
        assert check["providers"] == [{"name": "twilio", "circuit": "off"}]
        assert "sms_circuit_state" not in requests.get(f"{svc.url}/-/metrics", timeout=10).text


def test_a_duplicate_provider_stops_start_up_with_one_line(twins):
    primary, _ = twins
    svc = Service({**twilio_env(primary.url), "SERVICE_PROVIDER": "twilio,twilio"}, workers=1)
    with pytest.raises(RuntimeError):
        svc.start()
    lines = [line for line in svc.log_text().splitlines() if "SERVICE_PROVIDER" in line]
    assert len(lines) == 1 and "names twilio more than once" in lines[0]

