"""End to end: failover between the plivo and telnyx fakes, each way, through real gunicorn.

Each row breaks the primary in one way and asserts which fake received the message and
how many SMS exist in total: the service moves on only when the failure proves no SMS
went out (no connection, refused credentials, throttled), never after a 5xx, an
unreadable answer or a rejection of the message itself.
"""

from __future__ import annotations

import time

import pytest
import requests
from support.fake_plivo import FakePlivo, plivo_env
from support.fake_telnyx import FakeTelnyx
from support.payloads import fresh_receiver, message
from support.service import Service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fakes():
    plivo, telnyx = FakePlivo().start(), FakeTelnyx().start()
    yield {"plivo": plivo, "telnyx": telnyx}
    plivo.stop()
    telnyx.stop()


@pytest.fixture(scope="module", params=["plivo,telnyx", "telnyx,plivo"])
def pair(request, fakes):
    """(primary name, primary fake, secondary name, secondary fake, service)."""
    first, second = request.param.split(",")
    env = {**plivo_env(fakes["plivo"].url), **fakes["telnyx"].env(), "SERVICE_PROVIDER": request.param,
           # A threshold no row reaches: each row is about one send, not about circuits.
           "PROVIDER_TIMEOUT": "1", "FAILOVER_FAILURE_THRESHOLD": "1000", "RATE_LIMIT_MAX_REQUESTS": "10000"}
    service = Service(env, workers=2)
    service.env["PUBLIC_BASE_URL"] = service.url
    with service:
        yield first, fakes[first], second, fakes[second], service


@pytest.fixture
def twins(pair):
    for fake in (pair[1], pair[3]):
        fake.reset()
        fake.slow_seconds = 3.0
    return pair


MATRIX = [
    # (row, mode of the primary, status, SMS received by (primary, secondary), sent by the secondary)
    ("connection refused", "refused", 200, (0, 1), True),
    ("401", "auth", 200, (1, 1), True),
    ("429", "rate_limited", 200, (1, 1), True),
    ("500", "error500", 502, (1, 0), False),
    ("garbage 2xx", "not_json", 502, (1, 0), False),
    ("timeout", "slow", 504, (1, 0), False),
    ("invalid number", "reject", 400, (1, 0), False),
]


@pytest.mark.parametrize(("row", "mode", "status", "received", "secondary_sends"), MATRIX, ids=[r[0] for r in MATRIX])
def test_fault_matrix(twins, row, mode, status, received, secondary_sends):
    _first, primary, second, secondary, service = twins
    if mode == "refused":
        primary.refuse()
    else:
        primary.mode = mode
    try:
        answer = service.send(message())
    finally:
        if mode == "refused":
            primary.listen()
    assert answer.status_code == status, (row, answer.text)
    if mode == "slow":
        time.sleep(primary.slow_seconds)  # the primary's late answer, and nothing after it
    assert (primary.count(), secondary.count()) == received, row
    body = answer.json()
    if secondary_sends:
        assert body["sid"] == secondary.messages[-1]["_sid"]
        record = requests.get(f"{service.url}/messages/{body['sid']}", timeout=10).json()
        assert record["provider"] == second
        # The secondary asks for its own callbacks: its report reaches its own route.
        assert secondary.post_status(secondary.messages[-1], "delivered").status_code == 200
        assert requests.get(f"{service.url}/messages/{body['sid']}", timeout=10).json()["status"] == "delivered"
    else:
        assert set(body) == {"statusCode", "error", "message"}


def test_telnyx_40300_at_send_never_fails_over_and_is_learned(fakes):
    telnyx, plivo = fakes["telnyx"], fakes["plivo"]
    for fake in (telnyx, plivo):
        fake.reset()
    env = {**plivo_env(plivo.url), **telnyx.env(), "SERVICE_PROVIDER": "telnyx,plivo"}
    with Service(env, workers=1) as service:
        person = fresh_receiver()
        telnyx.mode = "unsubscribed"
        answer = service.send(message(receiver=person))
        assert answer.status_code == 400 and "40300" in answer.json()["message"]
        assert (telnyx.count(), plivo.count()) == (1, 0)
        # Learned: neither provider sees this receiver again, while others still go.
        telnyx.mode = "ok"
        refused = service.send(message(receiver=person))
        assert refused.status_code == 403 and refused.json()["message"] == "receiver: this number has opted out"
        assert (telnyx.count(), plivo.count()) == (1, 0)
        assert service.send(message()).status_code == 200
        assert (telnyx.count(), plivo.count()) == (2, 0)


@pytest.mark.parametrize("order", ["plivo,telnyx", "telnyx,plivo"])
def test_an_empty_balance_moves_the_send_to_the_other_provider(fakes, order):
    first, second = order.split(",")
    for fake in fakes.values():
        fake.reset()
    fakes[first].balance = "0.00"
    env = {**plivo_env(fakes["plivo"].url), **fakes["telnyx"].env(), "SERVICE_PROVIDER": order,
           f"{first.upper()}_EMPTY_BALANCE_CHECK": "true"}
    with Service(env, workers=1) as service:
        answer = service.send(message())
        assert answer.status_code == 200, answer.text
        assert (fakes[first].count(), fakes[second].count()) == (0, 1)
        assert answer.json()["sid"] == fakes[second].messages[-1]["_sid"]
