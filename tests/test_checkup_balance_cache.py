"""`/-/check-up` reads provider balances at most once per 30 s for the whole deployment (issue 22, 5).

It is open without a key (probes call it), so each hit must not spend the account's API
quota: balances come from a reading shared through STORAGE_URI.
"""

from __future__ import annotations

import threading
import time

import pytest
import responses
from support.service import TWILIO_SID, TWILIO_TOKEN

from sms_service import balance_cache
from sms_service.app import create_app

TWILIO_BALANCE = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Balance.json"


def _app(uri: str):
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": uri,
                       "TWILIO_EMPTY_BALANCE_CHECK": "true"})


@pytest.fixture
def shared_uri(request, tmp_path):
    # Storages that several workers or replicas share: each app below stands for one.
    return request.getfixturevalue("redis_uri") if request.param == "redis" else f"sqlite:///{tmp_path}/s.db"


@pytest.mark.parametrize("shared_uri", ["sqlite", "redis"], indirect=True)
def test_many_hits_on_several_workers_read_the_balance_once(shared_uri):
    clients = [_app(shared_uri).test_client() for _ in range(3)]
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(TWILIO_BALANCE, json={"balance": "12.50", "currency": "USD"})
        answers = [clients[i % 3].get("/-/check-up") for i in range(30)]
        assert len(mock.calls) == 1
    for answer in answers:
        assert answer.status_code == 200
        body = answer.get_json()
        assert body["checks"]["provider_balance"] == "OK" and body["providers"][0]["balance"] == "OK"


def test_concurrent_hits_read_it_once_and_all_see_the_reading(storage_uri):
    app = _app(storage_uri)
    release = threading.Event()
    answers = []

    def slow_balance(_request):
        release.wait(5)
        return 200, {}, '{"balance": "0.00", "currency": "USD"}'

    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add_callback("GET", TWILIO_BALANCE, callback=slow_balance)
        threads = [threading.Thread(target=lambda: answers.append(app.test_client().get("/-/check-up")))
                   for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        release.set()
        for thread in threads:
            thread.join(10)
        assert len(mock.calls) == 1
    assert len(answers) == 6
    for answer in answers:  # every one of them shows the one reading, the waiting ones included
        assert answer.status_code == 200
        assert answer.get_json()["providers"][0]["balance"] == "empty"


def test_the_reading_is_refreshed_once_it_is_stale(monkeypatch):
    monkeypatch.setattr(balance_cache, "FRESH_MS", 400)
    client = _app("memory://").test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(TWILIO_BALANCE, json={"balance": "5", "currency": "USD"})
        assert client.get("/-/check-up").status_code == 200
        assert client.get("/-/check-up").status_code == 200
        assert len(mock.calls) == 1
        time.sleep(0.5)
        mock.replace(responses.GET, TWILIO_BALANCE, status=500, json={"code": 20500, "message": "down"})
        stale = client.get("/-/check-up")
        assert len(mock.calls) == 2
    assert stale.status_code == 503 and stale.get_json()["checks"]["provider_balance"] == "KO"


def test_the_default_is_thirty_seconds():
    assert balance_cache.FRESH_MS == 30_000
