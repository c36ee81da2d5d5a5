"""Segment budgets per country (SPEC section 14): the SEGMENT_BUDGETS grammar, and the guard
through the app on memory:// and on a real redis-server shared by two app instances."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
import responses
from prometheus_client import REGISTRY
from support.payloads import fresh_receiver, message

from sms_service.app import create_app
from sms_service.budgets import Budget, BudgetTable
from sms_service.config import load_settings
from sms_service.exceptions import ConfigError
from sms_service.segments import count_segments

THREE_SEGMENTS = "a" * 400  # GSM-7: 153 + 153 + 94
TWO_SEGMENTS = "a" * 200
FR, DE, GB = "+33612345678", "+4915123456789", "+447400123456"

assert count_segments(THREE_SEGMENTS).count == 3 and count_segments(TWO_SEGMENTS).count == 2


def budgets_of(text: str) -> BudgetTable | None:
    return load_settings({"SERVICE_PROVIDER": "console", "SEGMENT_BUDGETS": text}).segment_budgets


# -- grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "countries", "others"),
    [
        ("US=20000/1d", {"US": Budget(20000, 86_400_000, "1d")}, None),
        ("US=20000/1d,IN=5000/1d,*=500/1h",
         {"US": Budget(20000, 86_400_000, "1d"), "IN": Budget(5000, 86_400_000, "1d")},
         Budget(500, 3_600_000, "1h")),
        ("*=10/30s", {}, Budget(10, 30_000, "30s")),
        (" us = 5 / 2 hours , gb=1/60000 ", {"US": Budget(5, 7_200_000, "2 hours"), "GB": Budget(1, 60_000, "60000")},
         None),
        ("JM=3/1.5h", {"JM": Budget(3, 5_400_000, "1.5h")}, None),
        ("US=1000000000/366d", {"US": Budget(1_000_000_000, 366 * 86_400_000, "366d")}, None),
    ],
)
def test_grammar_accepts(text, countries, others):
    assert budgets_of(text) == BudgetTable(countries, others)


@pytest.mark.parametrize("text", ["", "   "])
def test_unset_or_empty_means_off(text):
    assert budgets_of(text) is None
    assert load_settings({"SERVICE_PROVIDER": "console"}).segment_budgets is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("XX=5/1d", "'XX' is not an ISO 3166 alpha-2 country code"),
        ("UK=5/1d", "'UK' is not an ISO 3166 alpha-2 country code"),  # the UK is GB
        ("USA=5/1d", "'USA' is not an ISO 3166 alpha-2 country code"),
        ("001=5/1d", "'001' is not an ISO 3166 alpha-2 country code"),
        ("=5/1d", "'' is not an ISO 3166"),
        ("US=0/1d", "whole number from 1 to"),
        ("US=-5/1d", "whole number from 1 to"),
        ("US=2.5/1d", "whole number from 1 to"),
        ("US=５/1d", "whole number from 1 to"),  # a full-width digit
        ("US=٥/1d", "whole number from 1 to"),  # an Arabic-Indic digit
        ("US=/1d", "whole number from 1 to"),
        ("US=1000000001/1d", "whole number from 1 to"),
        ("US=5/0", "shorter than 1 ms"),
        ("US=5/-1h", "shorter than 1 ms"),
        ("US=5/1 fortnight", "unknown unit 'fortnight'"),
        ("US=5/soon", "is not a duration"),
        ("US=5/", "is not a duration"),
        ("US=5/367d", "at most 366 days"),
        ("US=5", "is not COUNTRY=SEGMENTS/WINDOW"),
        ("US", "is not COUNTRY=SEGMENTS/WINDOW"),
        ("US:5/1d", "is not COUNTRY=SEGMENTS/WINDOW"),
        ("US=5/1d,US=6/1h", "names US twice"),
        ("us=5/1d,US=6/1h", "names US twice"),
        ("*=5/1d,*=6/1h", "names * twice"),
        ("US=5/1d,,IN=3/1h", "has an empty entry"),
        ("US=5/1d,", "has an empty entry"),
        (",", "has an empty entry"),
    ],
)
def test_grammar_refuses_with_one_line_naming_the_variable(text, says):
    with pytest.raises(ConfigError) as info:
        budgets_of(text)
    assert str(info.value).startswith("SEGMENT_BUDGETS ")
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_app_does_not_start_with_a_bad_budget():
    with pytest.raises(ConfigError, match="SEGMENT_BUDGETS"):
        create_app({"SERVICE_PROVIDER": "console", "SEGMENT_BUDGETS": "ZZ=1/1d"})


# -- the guard, through the app --------------------------------------------------------


def budget_app(uri: str = "memory://", budgets: str = "US=10/1h", **extra):
    return create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": uri, "SEGMENT_BUDGETS": budgets,
                       "RATE_LIMIT_MAX_REQUESTS": "100000", **extra})


@pytest.fixture(params=["memory", "redis"])
def two_instances(request):
    """Two app instances sharing one budget: one app on memory://, two apps on one redis-server."""
    def make(budgets: str, **extra):
        if request.param == "memory":
            app = budget_app("memory://", budgets, **extra)
            return app, app
        uri = request.getfixturevalue("redis_uri")
        return budget_app(uri, budgets, **extra), budget_app(uri, budgets, **extra)
    return make


def send_in_parallel(apps, bodies, receiver=None):
    def post(i):
        app = apps[i % len(apps)]
        return app.test_client().post("/send", json=message(body=bodies[i], **({"receiver": receiver()}
                                                                                 if receiver else {})))
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(post, range(len(bodies))))


def test_budget_10_three_segment_messages_in_parallel_exactly_three_go_out(two_instances):
    apps = two_instances("US=10/1h")
    answers = send_in_parallel(apps, [THREE_SEGMENTS] * 24)
    assert sorted(a.status_code for a in answers) == [200] * 3 + [429] * 21
    refused = next(a for a in answers if a.status_code == 429)
    assert "US" in refused.json["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600


def test_a_mix_of_one_and_two_segment_messages_never_exceeds_the_budget(two_instances):
    apps = two_instances("US=25/1h")
    bodies = ["short", TWO_SEGMENTS] * 30
    answers = send_in_parallel(apps, bodies)
    sent = sum(count_segments(body).count for body, a in zip(bodies, answers, strict=True)
               if a.status_code == 200)
    assert 24 <= sent <= 25  # full but for less than the largest message
    assert {a.status_code for a in answers} == {200, 429}
    assert sum(int(a.json["numSegments"]) for a in answers if a.status_code == 200) == sent


def test_the_window_slides_and_retry_after_is_for_this_message(two_instances):
    first, second = two_instances("US=4/2s")
    assert first.test_client().post("/send", json=message(body=TWO_SEGMENTS)).status_code == 200
    time.sleep(1.0)
    assert second.test_client().post("/send", json=message(body=TWO_SEGMENTS)).status_code == 200
    refused = first.test_client().post("/send", json=message(body="one"))
    assert refused.status_code == 429
    # One segment fits once the first message leaves (~1 s), four only once both have (~2 s).
    assert refused.headers["Retry-After"] == "1"
    assert second.test_client().post("/send", json=message(body="a" * 600)).headers["Retry-After"] == "2"
    time.sleep(1.1)
    # Slid, not reset: the first message left, the second still counts.
    assert first.test_client().post("/send", json=message(body=THREE_SEGMENTS)).status_code == 429
    assert second.test_client().post("/send", json=message(body=TWO_SEGMENTS)).status_code == 200
    assert first.test_client().post("/send", json=message(body="one")).status_code == 429


def test_the_refusal_names_the_country_and_the_budget():
    client = budget_app(budgets="GB=2/1h").test_client()
    assert client.post("/send", json=message(receiver=GB, body=TWO_SEGMENTS)).status_code == 200
    refused = client.post("/send", json=message(receiver="+447400123457", body="hi"))
    assert refused.status_code == 429
    assert refused.json == {
        "statusCode": "429", "error": "Too Many Requests",
        "message": "receiver: the segment budget for GB (2 segments per 1h) has no room for this "
                   "message of 1 segment",
    }
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3600


def test_a_message_larger_than_the_whole_budget_is_403_not_a_wait_that_never_ends():
    client = budget_app(budgets="US=2/1h").test_client()
    refused = client.post("/send", json=message(body=THREE_SEGMENTS))
    assert refused.status_code == 403 and "Retry-After" not in refused.headers
    assert refused.json["message"] == (
        "receiver: a message of 3 segments is more than the whole budget for US (2 segments per 1h); "
        "it can never be sent there")
    # It consumed nothing: the budget is whole.
    assert client.post("/send", json=message(body=TWO_SEGMENTS)).status_code == 200


def test_each_other_country_has_its_own_count_and_unlisted_ones_are_free():
    client = budget_app(budgets="GB=1/1h,*=2/1h").test_client()
    for receiver in (FR, DE):
        assert client.post("/send", json=message(receiver=receiver, body=TWO_SEGMENTS)).status_code == 200
    assert client.post("/send", json=message(receiver="+33612345679", body="x")).status_code == 429
    assert client.post("/send", json=message(receiver="+4915123456780", body="x")).status_code == 429
    free = budget_app(budgets="GB=1/1h").test_client()
    for _ in range(3):
        assert free.post("/send", json=message(body=THREE_SEGMENTS)).status_code == 200  # US: no budget


def test_a_send_refused_by_an_earlier_guard_leaves_the_budget_unconsumed():
    client = budget_app(budgets="US=2/1h", ALLOWED_COUNTRIES="US").test_client()
    receiver = fresh_receiver()
    assert client.post("/send", json=message(receiver=receiver, body="one")).status_code == 200
    assert client.post("/send", json=message(receiver=receiver, body="one")).status_code == 429  # delay
    assert client.post("/send", json=message(receiver="+19005551234", body="one")).status_code == 403
    assert client.post("/send", json=message(body="one")).status_code == 200  # the 2nd segment was still free
    assert client.post("/send", json=message(body="one")).status_code == 429


def test_warning_once_per_window_at_80_percent_for_the_whole_deployment(two_instances, caplog):
    apps = two_instances("US=10/1500ms")
    caplog.set_level(logging.WARNING, logger="sms_service.budgets")

    def warnings():
        return [r for r in caplog.records if r.name == "sms_service.budgets"]

    for i in range(4):  # 2, 4, 6, 8: at 80% on the fourth
        assert apps[i % 2].test_client().post("/send", json=message(body=TWO_SEGMENTS)).status_code == 200
    assert len(warnings()) == 1
    record = warnings()[0]
    assert record.getMessage() == "segment budget of US is 80% used"
    assert (record.country, record.segments_used, record.segments_budget) == ("US", 8, 10)
    for i in range(2):  # 9, 10: the other instance too, in the same window
        assert apps[(i + 1) % 2].test_client().post("/send", json=message(body="x")).status_code == 200
    assert len(warnings()) == 1
    time.sleep(1.6)  # a new window
    for _ in range(4):
        apps[1].test_client().post("/send", json=message(body=TWO_SEGMENTS))
    assert len(warnings()) == 2


def gauge(country: str) -> float | None:
    return REGISTRY.get_sample_value("sms_segment_budget_use_ratio", {"country": country})


def test_gauge_shows_use_with_configured_countries_and_other_only():
    client = budget_app(budgets="US=10/1h,*=4/1h").test_client()
    client.post("/send", json=message(body=THREE_SEGMENTS))
    assert gauge("US") == pytest.approx(0.3)
    client.post("/send", json=message(receiver=FR, body="x"))
    client.post("/send", json=message(receiver=DE, body=TWO_SEGMENTS))
    client.post("/send", json=message(receiver="+33612345679", body="x"))
    assert gauge("other") == pytest.approx(0.5)  # the fullest of FR (2/4) and DE (2/4)
    assert gauge("FR") is None and gauge("DE") is None


def test_with_budgets_off_the_guard_is_not_even_built():
    app = create_app({"SERVICE_PROVIDER": "console"})
    assert app.extensions["sms_service"].guards.budgets is None


def test_the_budget_fails_closed_when_its_storage_fails(monkeypatch):
    app = budget_app(budgets="US=10/1h")
    storage = app.extensions["sms_service"].storage

    def down(*args):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(storage, "budget_spend", down)
    monkeypatch.setattr(storage, "budget_peek", down)
    for route in ("/send", "/estimate"):
        answer = app.test_client().post(route, json=message())
        assert answer.status_code == 503, answer.json
        assert answer.json["message"] == "shared storage is unavailable (ConnectionError); nothing was sent"


# -- review fixes: what a send that sent nothing, or a refusal, leaves counted -------------


TWILIO = {"TWILIO_ACCOUNT_SID": "AC" + "1f" * 16, "TWILIO_AUTH_TOKEN": "tok3n" + "9" * 27}
KALEYRA = {"KALEYRA_SID": "HXAP1234567890KL", "KALEYRA_API_KEY": "Akey" + "7" * 28}
TWILIO_SEND = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO['TWILIO_ACCOUNT_SID']}/Messages.json"
KALEYRA_SEND = f"https://api.kaleyra.io/v1/{KALEYRA['KALEYRA_SID']}/messages"
TWILIO_OK = {"sid": "SM" + "a" * 32, "status": "queued", "num_segments": "1",
             "date_created": "Thu, 26 Nov 2026 10:00:00 +0000"}


def failover_budget_app(budgets: str = "US=2/1d"):
    return create_app({"SERVICE_PROVIDER": "twilio,kaleyra", **TWILIO, **KALEYRA, "STORAGE_URI": "memory://",
                       "SEGMENT_BUDGETS": budgets, "RATE_LIMIT_MAX_REQUESTS": "100000"})


def test_an_outage_of_every_provider_does_not_drain_the_budget():
    client = failover_budget_app("US=2/1d").test_client()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=401, json={"code": 20003, "message": "Authenticate"})
        mock.post(KALEYRA_SEND, body=requests.ConnectionError("connection refused"))
        for _ in range(3):  # before circuits open (5): each provider is tried, each sends nothing
            answer = client.post("/send", json=message(body="one"))
            assert answer.status_code == 502, answer.json
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=201, json=TWILIO_OK)
        # The whole day's budget is still there: two segments fit, a third does not.
        assert client.post("/send", json=message(body=TWO_SEGMENTS)).status_code == 200
        refused = client.post("/send", json=message(body="one"))
    assert refused.status_code == 429 and "US" in refused.json["message"]


def test_a_send_that_may_have_gone_keeps_its_segments_counted():
    client = failover_budget_app("US=2/1d").test_client()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=500, json={"message": "internal"})
        assert client.post("/send", json=message(body="one")).status_code == 502
    # One of the two segments is spent: the SMS may have gone.
    refused = client.post("/send", json=message(body=TWO_SEGMENTS))
    assert refused.status_code == 429 and "US" in refused.json["message"]


def test_a_refusal_by_the_budget_does_not_lengthen_the_receivers_delay():
    client = budget_app(budgets="US=2/1h").test_client()
    receiver = fresh_receiver()
    assert client.post("/send", json=message(receiver=receiver, body="one")).status_code == 200
    time.sleep(1.1)  # the delay after one message is 1 s
    refused = client.post("/send", json=message(receiver=receiver, body=TWO_SEGMENTS))
    assert refused.status_code == 429 and "segment budget" in refused.json["message"]
    # The refusal took no turn of the delay: the receiver's next message goes now.
    assert client.post("/send", json=message(receiver=receiver, body="one")).status_code == 200


def test_a_refusal_by_the_delay_does_not_spend_the_budget():
    client = budget_app(budgets="US=2/1h").test_client()
    receiver = fresh_receiver()
    assert client.post("/send", json=message(receiver=receiver, body="one")).status_code == 200
    for _ in range(3):
        too_soon = client.post("/send", json=message(receiver=receiver, body="one"))
        assert too_soon.status_code == 429 and "wait before sending again" in too_soon.json["message"]
    assert client.post("/send", json=message(body="one")).status_code == 200  # the 2nd segment is free


def test_a_concurrent_send_that_wins_the_receivers_delay_gets_the_budget_back(monkeypatch):
    app = budget_app(budgets="US=3/1h")
    storage = app.extensions["sms_service"].storage
    # The peek saw the way clear; by the time the delay is taken, another send has it.
    monkeypatch.setattr(storage, "delay_acquire", lambda key, reset_after_ms: 700)
    answer = app.test_client().post("/send", json=message(body=TWO_SEGMENTS))
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert "wait before sending again" in answer.json["message"]
    assert storage.budget_peek("US", 3, 3, 3_600_000) == (0, 0)


def test_a_refund_that_fails_is_logged_and_changes_no_answer(monkeypatch, caplog):
    app = failover_budget_app("US=2/1d")
    storage = app.extensions["sms_service"].storage

    def down(*args):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(storage, "budget_refund", down)
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=401, json={"code": 20003, "message": "Authenticate"})
        mock.post(KALEYRA_SEND, status=401, json={"message": "unauthorized"})
        answer = app.test_client().post("/send", json=message(body="hello there"))
    assert answer.status_code == 502 and answer.json["message"].startswith("no provider could take")
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "take back" in r.getMessage()]
    assert [(r.country, r.segments, r.error_class) for r in errors] == [("US", 1, "StorageUnavailable")]
    assert "hello there" not in caplog.text
