"""Conformance of the reconciler's storage (SPEC section 18) on memory, SQLite and Redis: the
`unknown` status in the sticky rule (Python and Lua alike), and the due-time index."""

from __future__ import annotations

import time

import pytest

from sms_service.status import model
from sms_service.storage import open_storage

TTL_MS = 60_000


@pytest.fixture
def storage(storage_uri):
    store = open_storage(storage_uri)
    yield store
    store.close()


def _record(sid: str, check_at: float | None = None) -> dict:
    at = model.timestamp()
    record = {"sid": sid, "provider": "twilio", "receiver": "+1***10", "country": "US", "numSegments": "1",
              "encoding": "GSM-7", "dateEvent": at, "status": "queued", "providerStatus": "queued",
              "errorCode": None, "updatedAt": at, "owner": "",
              "history": [model.entry("queued", "queued", None, at)]}
    if check_at is not None:
        record["checkAt"] = check_at
    return record


def _update(storage, key: str, status: str, word: str | None = None, code: str | None = None):
    entry = model.entry(status, word or status, code, model.timestamp())
    return storage.message_update(key, entry, {"sid": key, "provider": "twilio"}, TTL_MS)


# -- unknown in the sticky rule --------------------------------------------------------


@pytest.mark.parametrize("before", ["queued", "sent"])
def test_unknown_ends_a_record_and_a_real_final_report_still_replaces_it(storage, before):
    storage.message_create("m", _record("m"), TTL_MS)
    if before == "sent":
        _update(storage, "m", "sent")
    assert _update(storage, "m", "unknown", word=before)[1]["status"] == "unknown"
    for late in ("sent", "queued"):  # older news never moves it back
        _, record = _update(storage, "m", late, word=f"late-{late}")
        assert record["status"] == "unknown"
    before_status, record = _update(storage, "m", "undelivered", code="30005")
    assert (before_status, record["status"], record["errorCode"]) == ("unknown", "undelivered", "30005")
    # Now final for real: unknown cannot come back, nor another final.
    assert _update(storage, "m", "unknown", word="again")[1]["status"] == "undelivered"
    assert _update(storage, "m", "delivered")[1]["status"] == "undelivered"
    statuses = [h["status"] for h in record["history"]]
    assert statuses.index("unknown") < statuses.index("undelivered")


@pytest.mark.parametrize("final", ["delivered", "undelivered", "failed"])
def test_a_reported_final_status_is_never_made_unknown(storage, final):
    storage.message_create("m", _record("m"), TTL_MS)
    _update(storage, "m", final)
    before, record = _update(storage, "m", "unknown", word="late")
    assert before == final and record["status"] == final
    assert record["history"][-1]["status"] == "unknown"  # still in the history, as every late report


def test_python_and_lua_agree_on_every_pair_of_statuses(storage_uri):
    # The same sequences on this storage and on the Python rule alone give the same records.
    store = open_storage(storage_uri)
    try:
        for first in model.ALL_STATUSES:
            for second in model.ALL_STATUSES:
                key = f"pair:{first}:{second}"
                store.message_create(key, _record(key), TTL_MS)
                expected = _record(key)
                for status in (first, second):
                    entry = model.entry(status, f"w-{status}", None, "2026-11-26T08:00:01.000Z")
                    store.message_update(key, entry, {"sid": key}, TTL_MS)
                    model.apply_entry(expected, entry)
                got = store.message_get(key)
                assert (got["status"], got["providerStatus"]) == (expected["status"], expected["providerStatus"]), \
                    (first, second)
    finally:
        store.close()


# -- the due-time index ------------------------------------------------------------------


def test_due_records_come_oldest_first_and_only_when_due(storage):
    now = time.time() * 1000
    for i, offset in enumerate((-3000, -1000, -2000, 60_000)):
        storage.message_create(f"twilio:D{i}", _record(f"D{i}", check_at=now + offset), TTL_MS)
    storage.message_create("twilio:never", _record("never"), TTL_MS)  # no check time: never due
    due = storage.message_due(now, 10)
    assert [key for key, _ in due] == ["twilio:D0", "twilio:D2", "twilio:D1"]
    assert due[0][1]["sid"] == "D0" and due[0][1]["checkAt"] == pytest.approx(now - 3000)
    assert [key for key, _ in storage.message_due(now, 2)] == ["twilio:D0", "twilio:D2"]
    assert [key for key, _ in storage.message_due(now + 61_000, 10)][-1] == "twilio:D3"


def test_scheduling_moves_a_record_and_none_takes_it_out(storage):
    now = time.time() * 1000
    storage.message_create("twilio:S", _record("S", check_at=now - 10), TTL_MS)
    assert [key for key, _ in storage.message_due(now, 10)] == ["twilio:S"]
    assert storage.message_schedule("twilio:S", now + 5000, looked_at_ms=now)
    assert storage.message_due(now, 10) == []
    record = storage.message_get("twilio:S")
    assert record["checkAt"] == pytest.approx(now + 5000) and record["lookedAt"] == pytest.approx(now)
    assert [key for key, _ in storage.message_due(now + 5000, 10)] == ["twilio:S"]
    assert storage.message_schedule("twilio:S", None)
    assert storage.message_due(now + 10**9, 10) == []
    assert storage.message_get("twilio:S")["lookedAt"] == pytest.approx(now)  # kept when not given
    assert not storage.message_schedule("twilio:missing", now)


def test_final_and_expired_records_are_never_due(storage):
    now = time.time() * 1000
    storage.message_create("twilio:F", _record("F", check_at=now - 10), TTL_MS)
    storage.message_create("twilio:U", _record("U", check_at=now - 10), TTL_MS)
    storage.message_create("twilio:E", _record("E", check_at=now - 10), 200)
    _update(storage, "twilio:F", "delivered")
    _update(storage, "twilio:U", "unknown")
    time.sleep(0.3)
    assert storage.message_due(now, 10) == []


def test_orphans_are_never_scheduled(storage):
    _update(storage, "twilio:O", "sent")
    assert not storage.message_schedule("twilio:O", time.time() * 1000)
    assert storage.message_due(time.time() * 1000 + 10**9, 10) == []
