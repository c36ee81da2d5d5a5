"""The reconciler in process (SPEC section 18): its schedule, lookups through the callback path,
a throttling provider, the lease, and its configuration. Twilio is faked with `responses`."""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import pytest
import responses
from prometheus_client import REGISTRY
from support.payloads import message
from support.service import TWILIO_SID
from test_status import TWILIO_URL, twilio_app

from sms_service.config import load_settings
from sms_service.exceptions import ConfigError
from sms_service.status import model, reconcile
from sms_service.status.reconcile import SLOTS_MS, Reconciler, lookup_due, next_check, rate_window
from sms_service.storage import open_storage

HOUR = 3_600_000
LOOKUP_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages/{{sid}}.json"


def _lookups(outcome: str) -> float:
    return REGISTRY.get_sample_value("sms_status_lookups_total", {"provider": "twilio", "outcome": outcome}) or 0


# -- the schedule, as pure functions -----------------------------------------------------


def _rec(sent_ms: float, changed_ms: float | None = None, looked: float | None = None) -> dict:
    def iso(ms):
        return model.timestamp(dt.datetime.fromtimestamp(ms / 1000, dt.UTC))

    record = {"dateEvent": iso(sent_ms), "updatedAt": iso(changed_ms or sent_ms), "status": "sent"}
    if looked is not None:
        record["lookedAt"] = looked
    return record


def test_first_lookup_after_the_last_change_then_at_each_slot():
    sent, after = 1_800_000_000_000, 15 * 60_000
    record = _rec(sent)
    assert not lookup_due(record, sent + after - 1, after)
    assert lookup_due(record, sent + after, after)
    # A callback moved it later: the first lookup waits for its last change.
    moved = _rec(sent, changed_ms=sent + 10 * 60_000)
    assert not lookup_due(moved, sent + after, after)
    assert next_check(moved, sent + after, after, 72 * HOUR, True) == sent + 25 * 60_000
    looked = _rec(sent, looked=sent + after)
    assert next_check(looked, sent + after, after, 72 * HOUR, True) == sent + HOUR
    assert not lookup_due(looked, sent + HOUR - 1, after) and lookup_due(looked, sent + HOUR, after)
    after_six = _rec(sent, looked=sent + 6 * HOUR + 5)
    assert next_check(after_six, sent + 6 * HOUR + 5, after, 72 * HOUR, True) == sent + 24 * HOUR
    last = _rec(sent, looked=sent + 24 * HOUR)
    assert next_check(last, sent + 24 * HOUR, after, 72 * HOUR, True) == sent + 72 * HOUR  # then unknown
    # A provider that cannot look up, or RECONCILE_AFTER=off: only the end.
    assert next_check(record, sent, after, 72 * HOUR, False) == sent + 72 * HOUR
    assert next_check(record, sent, None, 72 * HOUR, True) == sent + 72 * HOUR
    assert SLOTS_MS == (HOUR, 6 * HOUR, 24 * HOUR)


@pytest.mark.parametrize(("rate", "expected"), [(5, (5, 1000)), (1, (1, 1000)), (0.5, (1, 2000)),
                                                (2.5, (3, 1200))])
def test_the_rate_as_a_moving_window(rate, expected):
    assert rate_window(rate) == expected


# -- configuration ----------------------------------------------------------------------


def test_defaults_and_the_grammar():
    settings = load_settings({"SERVICE_PROVIDER": "console"})
    assert (settings.reconcile_after_ms, settings.reconcile_rate, settings.message_final_after_ms) == \
        (15 * 60_000, 5, 72 * HOUR)
    settings = load_settings({"SERVICE_PROVIDER": "console", "RECONCILE_AFTER": "off", "RECONCILE_RATE": "0.5",
                              "MESSAGE_FINAL_AFTER": "2s"})
    assert (settings.reconcile_after_ms, settings.reconcile_rate, settings.message_final_after_ms) == \
        (None, 0.5, 2000)


@pytest.mark.parametrize(("env", "named"), [
    ({"RECONCILE_AFTER": "soon"}, "RECONCILE_AFTER"),
    ({"RECONCILE_AFTER": "0"}, "RECONCILE_AFTER"),
    ({"RECONCILE_RATE": "0"}, "RECONCILE_RATE"),
    ({"RECONCILE_RATE": "fast"}, "RECONCILE_RATE"),
    ({"RECONCILE_RATE": "1e9"}, "RECONCILE_RATE"),
    ({"MESSAGE_FINAL_AFTER": "3 eons"}, "MESSAGE_FINAL_AFTER"),
    ({"MESSAGE_FINAL_AFTER": "8d"}, "MESSAGE_FINAL_AFTER"),  # past the default MESSAGE_TTL of 7 days
    ({"MESSAGE_FINAL_AFTER": "2h", "MESSAGE_TTL": "3600"}, "MESSAGE_FINAL_AFTER"),
])
def test_a_bad_variable_is_one_line_that_names_it(env, named):
    with pytest.raises(ConfigError) as caught:
        load_settings({"SERVICE_PROVIDER": "console", **env})
    assert caught.value.message.startswith(named) and "\n" not in caught.value.message


# -- in process, against a faked Twilio ---------------------------------------------------


def _send(client, sid: str) -> None:
    now = email.utils.format_datetime(dt.datetime.now(dt.UTC))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json={"sid": sid, "status": "queued", "num_segments": "1",
                                                "date_created": now})
        assert client.post("/send", json={**message(), "receiver": f"+1415555{int(sid[-4:], 16) % 10000:04d}"},
                           ).status_code == 200


class Clock:
    """The reconciler's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


@pytest.fixture
def clock():
    return Clock()


def _app(storage_uri, clock, **env):
    app = twilio_app(storage_uri, RATE_LIMIT_MAX_REQUESTS="1000", **env)
    app.extensions["sms_service"].reconciler.clock = clock
    return app


def test_a_lookup_goes_through_the_callback_path(storage_uri, clock):
    app = _app(storage_uri, clock, RECONCILE_AFTER="15m")
    client, reconciler = app.test_client(), app.extensions["sms_service"].reconciler
    sid = "SM" + "d0" * 15 + "0001"
    _send(client, sid)
    assert reconciler.run_once() == 0  # nothing due yet
    clock.offset_s = 15 * 60 + 1
    changed = _lookups("changed")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(LOOKUP_URL.format(sid=sid), json={"sid": sid, "status": "delivered", "error_code": None,
                                                   "price": "-0.0079", "price_unit": "USD"})
        assert reconciler.run_once() == 1
    record = client.get(f"/messages/{sid}").get_json()
    assert record["status"] == "delivered" and record["price"] == "0.0079"
    assert record["history"][-1] == {**record["history"][-1], "status": "delivered", "source": "lookup"}
    assert _lookups("changed") == changed + 1
    clock.offset_s = 100 * 3600  # final: never due again, not even for unknown
    assert reconciler.run_once() == 0


def test_a_record_looked_up_at_each_slot_then_made_unknown(storage_uri, clock):
    app = _app(storage_uri, clock, RECONCILE_AFTER="15m")
    client, reconciler = app.test_client(), app.extensions["sms_service"].reconciler
    sid = "SM" + "d1" * 15 + "0002"
    _send(client, sid)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(LOOKUP_URL.format(sid=sid), json={"sid": sid, "status": "sent", "error_code": None,
                                                   "price": None, "price_unit": "USD"})
        for hours in (0.26, 0.5, 1.01, 3, 6.01, 12, 24.01, 48):
            clock.offset_s = hours * 3600
            reconciler.run_once()
        assert len(mock.calls) == 4  # 15 min, 1 h, 6 h, 24 h: never in between
        clock.offset_s = 72 * 3600 + 1
        assert reconciler.run_once() == 1
        assert len(mock.calls) == 4  # the end asks nobody
    record = client.get(f"/messages/{sid}").get_json()
    assert record["status"] == "unknown" and record["providerStatus"] == "sent"
    assert record["history"][-1]["source"] == "final_after"
    assert [h["status"] for h in record["history"]] == ["queued", "sent", "unknown"]


def test_a_throttling_provider_is_left_alone_for_a_while(storage_uri, clock):
    app = _app(storage_uri, clock, RECONCILE_AFTER="15m")
    client, reconciler = app.test_client(), app.extensions["sms_service"].reconciler
    sids = ["SM" + "d2" * 15 + f"{i:04x}" for i in range(3)]
    for sid in sids:
        _send(client, sid)
    clock.offset_s = 16 * 60
    throttled = _lookups("rate_limited")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for sid in sids:
            mock.get(LOOKUP_URL.format(sid=sid), status=429, headers={"Retry-After": "30"},
                     json={"code": 20429, "message": "Too Many Requests", "status": 429})
        assert reconciler.run_once() == 3
        assert len(mock.calls) == 1  # the others wait for the back-off, unasked
        assert _lookups("rate_limited") == throttled + 1
        clock.offset_s += 10
        assert reconciler.run_once() == 0 and len(mock.calls) == 1
    clock.offset_s += 25  # past Retry-After: asked again
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for sid in sids:
            mock.get(LOOKUP_URL.format(sid=sid), json={"sid": sid, "status": "delivered", "error_code": None,
                                                       "price": None, "price_unit": "USD"})
        assert reconciler.run_once() == 3 and len(mock.calls) == 3
    assert {client.get(f"/messages/{sid}").get_json()["status"] for sid in sids} == {"delivered"}


def test_one_reconciler_holds_the_lease_and_another_takes_it_when_it_dies(shared_storage_uri):
    stores = [open_storage(shared_storage_uri) for _ in range(2)]
    try:
        first, second = (Reconciler(store, {}, None, after_ms=None, rate=5, final_after_ms=1000, lease_ms=400)
                         for store in stores)
        assert first.hold_lease() and not second.hold_lease()
        assert first.hold_lease() and not second.hold_lease()  # renewed
        time.sleep(0.25)
        assert first.hold_lease()
        time.sleep(0.25)
        assert not second.hold_lease()  # renewal kept it
        # The holder dies (no stop, no release): its lease runs out and the other takes it.
        time.sleep(0.45)
        assert second.hold_lease() and not first.hold_lease()
        # A clean stop gives it back at once.
        second.stop()
        assert first.hold_lease()
    finally:
        for store in stores:
            store.close()


def test_the_lease_is_taken_over_within_a_minute():
    assert reconcile.LEASE_MS + reconcile.POLL_S * 1000 < 60_000


def test_a_failed_lookup_holds_up_no_other_record_and_waits_a_minute(storage_uri, clock):
    app = _app(storage_uri, clock, RECONCILE_AFTER="15m")
    client, reconciler = app.test_client(), app.extensions["sms_service"].reconciler
    sids = ["SM" + "d3" * 15 + f"{i:04x}" for i in range(2)]
    for sid in sids:
        _send(client, sid)
    clock.offset_s = 16 * 60
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(LOOKUP_URL.format(sid=sids[0]), body="{not json", content_type="application/json")
        mock.get(LOOKUP_URL.format(sid=sids[1]), json={"sid": sids[1], "status": "delivered", "error_code": None,
                                                       "price": None, "price_unit": "USD"})
        assert reconciler.run_once() == 2
    statuses = [client.get(f"/messages/{sid}").get_json()["status"] for sid in sids]
    assert statuses == ["queued", "delivered"]
    clock.offset_s += 30  # the failed one waits a minute, unasked meanwhile
    assert reconciler.run_once() == 0
