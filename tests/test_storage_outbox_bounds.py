"""The webhook outbox is bounded (issue 22, 3): by STATUS_WEBHOOK_RETRY_FOR and STATUS_WEBHOOK_MAX_BACKLOG.

A claim drops (without an attempt) an event whose retry period has passed, and the
oldest events beyond the cap; each drop is listed in the record's ``webhookFailures``.
Conformance on every storage, then the deliverer against a receiver that hangs.
"""

from __future__ import annotations

import logging
import time

import pytest
from support.webhook_receiver import SECRET, WebhookReceiver

from sms_service import metrics
from sms_service.config import load_settings
from sms_service.exceptions import ConfigError
from sms_service.status import model
from sms_service.status.deliverer import Deliverer
from sms_service.status.webhooks import WebhookClient
from sms_service.storage import open_storage


@pytest.fixture
def storage(storage_uri):
    store = open_storage(storage_uri)
    yield store
    store.close()


def _record(sid: str) -> dict:
    at = "2026-11-26T08:00:00.000Z"
    return {"sid": sid, "provider": "twilio", "receiver": "+1***10", "country": "US", "numSegments": "1",
            "encoding": "GSM-7", "dateEvent": at, "status": "queued", "providerStatus": "queued",
            "errorCode": None, "updatedAt": at, "owner": "",
            "history": [model.entry("queued", "queued", None, at)]}


def _event(storage, sid: str, status: str = "sent") -> str:
    """A record `sid` whose status changed: one event ``evt_<sid>`` in the outbox."""
    storage.message_create(sid, _record(sid), 60_000)
    entry = model.entry(status, status, None, model.timestamp())
    storage.message_update(sid, entry, {"sid": sid, "provider": "twilio"}, 60_000, f"evt_{sid}")
    return f"evt_{sid}"


# -- conformance ------------------------------------------------------------------------


def test_an_expired_event_is_dropped_by_a_claim_without_an_attempt(storage):
    _event(storage, "old1")
    _event(storage, "old2", "delivered")
    time.sleep(0.35)
    _event(storage, "new")
    got = storage.webhook_claim(10, 30_000, retry_for_ms=300)
    dropped = [e for e in got if e.dropped]
    claimed = [e for e in got if not e.dropped]
    assert sorted(e.id for e in dropped) == ["evt_old1", "evt_old2"]
    assert {e.dropped for e in dropped} == {"expired"}
    assert [e.id for e in claimed] == ["evt_new"]
    assert all(e.attempts == 0 for e in got)
    assert next(e for e in dropped if e.id == "evt_old2").record["status"] == "delivered"
    assert storage.webhook_stats()[0] == 1  # only the claimed one is left
    (failure,) = storage.message_get("old2")["webhookFailures"]
    assert failure["webhookId"] == "evt_old2" and failure["status"] == "delivered"
    assert failure["attempts"] == 0 and failure["reason"] == "expired" and failure["at"]
    # Gone for good: no later claim sees it, with or without bounds.
    assert storage.webhook_claim(10, 30_000) == []


def test_a_retried_event_that_expires_is_dropped_when_it_comes_due(storage):
    _event(storage, "r")
    (event,) = storage.webhook_claim(10, 30_000, retry_for_ms=60_000)
    assert storage.webhook_retry(event.id, event.lease, 200)
    time.sleep(0.3)
    (again,) = storage.webhook_claim(10, 30_000, retry_for_ms=250)
    assert again.dropped == "expired" and again.attempts == 1
    (failure,) = storage.message_get("r")["webhookFailures"]
    assert failure["attempts"] == 1 and failure["reason"] == "expired"


def test_an_event_under_a_live_lease_is_never_dropped(storage):
    _event(storage, "busy")
    (held,) = storage.webhook_claim(10, 30_000)
    time.sleep(0.25)
    assert storage.webhook_claim(10, 30_000, retry_for_ms=100, max_backlog=1) == []
    assert storage.webhook_stats()[0] == 1
    # Its holder still settles it as usual.
    assert storage.webhook_delivered(held.id) is True


def test_beyond_the_cap_the_oldest_events_are_dropped(storage):
    for i in range(5):
        _event(storage, f"c{i}")
        time.sleep(0.01)
    got = storage.webhook_claim(0, 30_000, max_backlog=2)
    assert [e.id for e in got] == ["evt_c0", "evt_c1", "evt_c2"]
    assert {e.dropped for e in got} == {"backlog"}
    assert storage.webhook_stats()[0] == 2
    assert storage.message_get("c0")["webhookFailures"][0]["reason"] == "backlog"
    assert "webhookFailures" not in storage.message_get("c4") or not storage.message_get("c4")["webhookFailures"]
    assert sorted(e.id for e in storage.webhook_claim(10, 30_000, max_backlog=2)) == ["evt_c3", "evt_c4"]


def test_without_bounds_a_claim_drops_nothing(storage):
    _event(storage, "keep")
    time.sleep(0.15)
    (event,) = storage.webhook_claim(10, 30_000)
    assert event.dropped is None and event.id == "evt_keep"


def test_drops_per_claim_are_bounded(storage, monkeypatch):
    from sms_service.storage import base

    monkeypatch.setattr(base, "OUTBOX_DROP_BATCH", 3)
    for i in range(5):
        _event(storage, f"b{i}")
    first = storage.webhook_claim(0, 30_000, max_backlog=1)
    assert len(first) == 3
    second = storage.webhook_claim(0, 30_000, max_backlog=1)
    assert len(second) == 1 and storage.webhook_stats()[0] == 1


# -- the variable -------------------------------------------------------------------------


def _settings(**env):
    return load_settings({"SERVICE_PROVIDER": "console", "STATUS_WEBHOOK_URL": "https://hooks.example.com/x",
                          "STATUS_WEBHOOK_SECRET": SECRET, **env})


def test_max_backlog_defaults_to_100000_and_is_validated():
    assert _settings().status_webhook_max_backlog == 100_000
    assert _settings(STATUS_WEBHOOK_MAX_BACKLOG="500").status_webhook_max_backlog == 500
    for bad in ("0", "-3", "lots", "1.5", "100000001"):
        with pytest.raises(ConfigError, match=r"^STATUS_WEBHOOK_MAX_BACKLOG "):
            _settings(STATUS_WEBHOOK_MAX_BACKLOG=bad)


# -- the deliverer against a receiver that hangs -------------------------------------------


@pytest.fixture
def hanging():
    server = WebhookReceiver().start()
    server.set_mode("hang")
    server.hang_s = 30.0  # past the attempt's 5 s deadline: every attempt times out
    yield server
    server.set_mode("ok")
    server.stop()


def _inflow(storage, prefix: str, per_s: float, seconds: float, backlog: list[int]) -> None:
    started, n = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        _event(storage, f"{prefix}{n}")
        n += 1
        backlog.append(storage.webhook_stats()[0])
        time.sleep(max(0.0, started + n / per_s - time.monotonic()))


def test_with_a_hanging_receiver_and_a_steady_inflow_the_backlog_stays_bounded(hanging, caplog, storage):
    before = metrics.WEBHOOK_DROPPED.labels("expired")._value.get()
    # Two threads, both soon held by the hanging receiver for 5 s each; 40 events a second.
    deliverer = Deliverer(storage, WebhookClient(hanging.url, SECRET, 2, "t"), retry_for_ms=1_000,
                          threads=2, poll_s=0.2)
    deliverer.start()
    backlog: list[int] = []
    try:
        with caplog.at_level(logging.ERROR, logger="sms_service.status.deliverer"):
            _inflow(storage, "h", 40, 6.0, backlog)
            time.sleep(0.5)
            count = storage.webhook_stats()[0]
    finally:
        deliverer.stop(timeout=0.5)
    sent = len(backlog)  # events made (about 240; fewer when the machine is slow)
    assert sent >= 100
    # Without bounds every event stays (about 240). With them, only events younger than
    # the 1 s retry period (about 40), plus a poll's and a busy machine's slack, plus the
    # two in flight.
    assert max(backlog) <= 90, max(backlog)
    assert count <= 90
    dropped = metrics.WEBHOOK_DROPPED.labels("expired")._value.get() - before
    assert dropped >= sent - 90 - 2
    lines = [r for r in caplog.records if r.levelno == logging.ERROR and "dropped" in r.getMessage()]
    assert len(lines) >= sent - 90 - 2
    assert {"sid", "webhook_id"} <= set(vars(lines[0]))
    failures = storage.message_get(lines[0].sid)["webhookFailures"]
    assert [f["reason"] for f in failures] == ["expired"] and failures[0]["attempts"] == 0
    assert len(hanging.attempts) <= 2 * 2 + 2  # drops spend no attempt


def test_the_cap_holds_with_a_long_retry_period(hanging, storage):
    deliverer = Deliverer(storage, WebhookClient(hanging.url, SECRET, 2, "t"), retry_for_ms=86_400_000,
                          threads=2, poll_s=0.2, max_backlog=30)
    deliverer.start()
    backlog: list[int] = []
    try:
        _inflow(storage, "k", 50, 3.0, backlog)
        time.sleep(0.5)
        count = storage.webhook_stats()[0]
    finally:
        deliverer.stop(timeout=0.5)
    assert count <= 30
    assert max(backlog) <= 30 + 50  # at most a poll's inflow over the cap between two claims


def test_the_backlog_gauge_shows_the_bounded_outbox(hanging):
    storage = open_storage("memory://")
    deliverer = Deliverer(storage, WebhookClient(hanging.url, SECRET, 2, "t"), retry_for_ms=86_400_000,
                          threads=2, poll_s=0.1, max_backlog=5)
    for i in range(20):
        _event(storage, f"g{i}")
    metrics.show_webhook_outbox(999, 0)  # what an earlier reading said
    deliverer.start()
    try:
        assert _wait(lambda: metrics.WEBHOOK_BACKLOG.get() <= 5, 5)
        assert storage.webhook_stats()[0] <= 5
    finally:
        deliverer.stop(timeout=0.5)


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()




def test_the_cap_counts_held_events_but_drops_only_free_ones(storage):
    for i in range(4):
        _event(storage, f"l{i}")
        time.sleep(0.01)
    held = storage.webhook_claim(2, 30_000)  # the two oldest, in flight
    assert [e.id for e in held] == ["evt_l0", "evt_l1"]
    got = storage.webhook_claim(0, 30_000, max_backlog=3)
    assert [(e.id, e.dropped) for e in got] == [("evt_l2", "backlog")]
    assert storage.webhook_stats()[0] == 3
