"""Conformance of the message listing and overview (SPEC section 18) on memory, SQLite and Redis."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from sms_service.status import listing, model
from sms_service.storage import open_storage

# Records live two days; the indexes forget what was sent longer than a TTL ago.
TTL_MS = 2 * 86_400_000
BASE = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


@pytest.fixture
def storage(storage_uri):
    store = open_storage(storage_uri)
    yield store
    store.close()


def _record(sid: str, owner: str, at: dt.datetime, *, provider: str = "twilio", receiver_hash: str = "h0",
            template: str | None = None, country: str = "US", price: str | None = None) -> dict:
    stamp = model.timestamp(at)
    record = {
        "sid": sid, "provider": provider, "receiver": "+1***10", "country": country, "numSegments": "2",
        "encoding": "GSM-7", "dateEvent": stamp, "status": "queued", "providerStatus": "queued",
        "errorCode": None, "updatedAt": stamp, "owner": owner, "receiverHash": receiver_hash,
        "history": [model.entry("queued", "queued", None, stamp)],
    }
    if template is not None:
        record["template"] = {"name": template, "version": 1}
    if price is not None:
        record["price"], record["priceUnit"] = price, "USD"
    return record


def _create(storage, record: dict, ttl_ms: int = TTL_MS) -> None:
    storage.message_create(f"{record['provider']}:{record['sid']}", record, ttl_ms)


def _all_pages(storage, owner, limit, **filters) -> list[str]:
    sids, cursor, pages = [], None, 0
    while True:
        records, cursor = storage.message_list(owner, limit=limit, cursor=cursor, **filters)
        pages += 1
        assert len(records) <= limit
        sids += [record["sid"] for record in records]
        if cursor is None:
            return sids
        assert pages < 1000, "the cursor never ends"


def test_pagination_across_250_records_newest_first_and_scoped_to_the_owner(storage):
    # Groups of records share one millisecond: the cursor must still neither skip nor repeat.
    for i in range(250):
        _create(storage, _record(f"SM{i:04d}", "alice", BASE + dt.timedelta(milliseconds=(i // 3) * 7)))
    for i in range(20):
        _create(storage, _record(f"OT{i:04d}", "bob", BASE + dt.timedelta(milliseconds=i * 5 + 1)))

    first, cursor = storage.message_list("alice", limit=50)
    assert len(first) == 50 and cursor is not None
    assert all(record["owner"] == "alice" for record in first)
    times = [listing.sent_ms(record) for record in first]
    assert times == sorted(times, reverse=True)

    alice = _all_pages(storage, "alice", 50)
    assert len(alice) == 250 and len(set(alice)) == 250
    assert set(alice) == {f"SM{i:04d}" for i in range(250)}
    assert alice[0] in {"SM0249", "SM0248"}  # the newest first
    # Another page size walks the same order.
    assert _all_pages(storage, "alice", 7) == alice
    assert _all_pages(storage, "alice", 100) == alice

    bob = _all_pages(storage, "bob", 50)
    assert sorted(bob) == [f"OT{i:04d}" for i in range(20)]
    # Every owner at once (the operator console), each record with its owner.
    everyone = _all_pages(storage, None, 40)
    assert len(everyone) == 270 and set(everyone) == set(alice) | set(bob)
    assert storage.message_list("carol", limit=50) == ([], None)


def test_a_full_last_page_says_there_is_no_next(storage):
    for i in range(4):
        _create(storage, _record(f"SM{i}", "alice", BASE + dt.timedelta(seconds=i)))
    records, cursor = storage.message_list("alice", limit=4)
    assert [r["sid"] for r in records] == ["SM3", "SM2", "SM1", "SM0"] and cursor is None
    records, cursor = storage.message_list("alice", limit=2)
    assert [r["sid"] for r in records] == ["SM3", "SM2"]
    records, cursor = storage.message_list("alice", limit=2, cursor=cursor)
    assert [r["sid"] for r in records] == ["SM1", "SM0"] and cursor is None


def test_each_filter(storage):
    _create(storage, _record("A", "alice", BASE, provider="twilio", receiver_hash="h1", template="otp"))
    _create(storage, _record("B", "alice", BASE + dt.timedelta(minutes=1), provider="kaleyra", receiver_hash="h2"))
    _create(storage, _record("C", "alice", BASE + dt.timedelta(minutes=2), provider="twilio", receiver_hash="h1",
                             template="welcome"))
    _create(storage, _record("D", "bob", BASE + dt.timedelta(minutes=3), provider="twilio", receiver_hash="h1",
                             template="otp"))
    storage.message_update("twilio:C", model.entry("delivered", "delivered", None, model.timestamp()),
                           {"sid": "C"}, TTL_MS)

    def sids(owner="alice", **filters):
        records, _ = storage.message_list(owner, limit=50, **filters)
        return [record["sid"] for record in records]

    assert sids() == ["C", "B", "A"]
    assert sids(status="delivered") == ["C"]
    assert sids(status="queued") == ["B", "A"]
    assert sids(status="failed") == []
    assert sids(provider="kaleyra") == ["B"]
    assert sids(provider="twilio") == ["C", "A"]
    assert sids(template="otp") == ["A"]
    assert sids(None, template="otp") == ["D", "A"]
    assert sids(receiver_hash="h1") == ["C", "A"]
    assert sids(None, receiver_hash="h1") == ["D", "C", "A"]
    assert sids(receiver_hash="nobody") == []
    at = listing.sent_ms(_record("x", "", BASE))
    assert sids(since_ms=at + 60_000) == ["C", "B"]  # inclusive
    assert sids(until_ms=at + 60_000) == ["A"]  # exclusive
    assert sids(since_ms=at, until_ms=at + 120_000) == ["B", "A"]
    assert sids(status="queued", provider="twilio", receiver_hash="h1") == ["A"]
    assert sids(status="delivered", receiver_hash="h1", since_ms=at + 1) == ["C"]
    # The status filter follows a record's later moves, back to none of the old sets.
    storage.message_update("twilio:A", model.entry("sent", "sent", None, model.timestamp()), {"sid": "A"}, TTL_MS)
    assert sids(status="queued") == ["B"]
    assert sids(status="sent") == ["A"]


def test_orphans_are_not_listed_until_their_send_is_merged(storage):
    storage.message_update("twilio:E", model.entry("delivered", "delivered", None, model.timestamp()),
                           {"sid": "E", "provider": "twilio", "receiver": None, "country": None}, TTL_MS)
    assert storage.message_list(None, limit=50) == ([], None)
    _create(storage, _record("E", "alice", BASE))
    records, _ = storage.message_list("alice", limit=50, status="delivered")
    assert [r["sid"] for r in records] == ["E"]
    assert records[0]["status"] == "delivered"


def test_expired_records_leave_the_listing(storage):
    now = dt.datetime.now(dt.UTC)
    _create(storage, _record("old", "alice", now), ttl_ms=300)
    _create(storage, _record("new", "alice", now + dt.timedelta(milliseconds=1)))
    assert [r["sid"] for r in storage.message_list("alice", limit=50)[0]] == ["new", "old"]
    time.sleep(0.45)
    assert [r["sid"] for r in storage.message_list("alice", limit=50)[0]] == ["new"]
    assert [r["sid"] for r in storage.message_list(None, limit=50, status="queued")[0]] == ["new"]


def test_a_foreign_cursor_is_refused(storage):
    with pytest.raises(ValueError):
        storage.message_list("alice", limit=5, cursor="not-a-cursor")


def test_stats_count_the_last_hours_of_every_owner(storage):
    now = dt.datetime.now(dt.UTC)
    _create(storage, _record("S1", "alice", now - dt.timedelta(hours=1), country="US", price="0.0079"))
    _create(storage, _record("S2", "bob", now - dt.timedelta(hours=2), country="US", price="0.0079"))
    _create(storage, _record("S3", "bob", now - dt.timedelta(hours=3), country="IT", provider="kaleyra"))
    _create(storage, _record("S4", "bob", now - dt.timedelta(hours=30), country="IT"))
    storage.message_update("twilio:S2", model.entry("failed", "failed", "30003", model.timestamp()),
                           {"sid": "S2"}, TTL_MS)
    stats = storage.message_stats((now - dt.timedelta(hours=24)).timestamp() * 1000)
    assert stats["total"] == 3
    assert stats["byStatus"] == {"queued": 2, "failed": 1}
    assert stats["byProvider"] == {"twilio": 2, "kaleyra": 1}
    assert stats["byCountry"] == {"US": 2, "IT": 1}
    assert stats["byErrorCode"] == {"30003": 1}
    assert stats["segmentsByCountry"] == {"US": 4, "IT": 2}
    assert stats["spendByCountry"] == {"US": {"USD": "0.0158"}}


def test_secret_once_keeps_the_first_value(storage_uri):
    first, second = open_storage(storage_uri), open_storage(storage_uri)
    try:
        assert first.secret_once("k", "aaaa") == "aaaa"
        assert first.secret_once("k", "bbbb") == "aaaa"
        if not storage_uri.startswith("memory"):  # shared by every worker and replica
            assert second.secret_once("k", "cccc") == "aaaa"
        assert first.secret_once("other", "dddd") == "dddd"
    finally:
        first.close()
        second.close()


def test_a_schema_2_sqlite_file_gains_the_index_of_the_records_it_holds(tmp_path):
    import sqlite3

    from sms_service.storage.sqlite import SqliteStorage

    path = str(tmp_path / "v2.db")
    store = SqliteStorage(path)
    _create(store, _record("kept", "alice", BASE))
    store.close()
    with sqlite3.connect(path) as conn:  # what schema 2 had: the records, no index
        for trigger in ("message_index_insert", "message_index_update", "message_index_delete"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE message_index")
        conn.execute("DROP TABLE secrets")
        conn.execute("PRAGMA user_version = 2")
    reopened = SqliteStorage(path)
    try:
        records, _ = reopened.message_list("alice", limit=10, receiver_hash="h0")
        assert [r["sid"] for r in records] == ["kept"]
    finally:
        reopened.close()


@pytest.mark.parametrize(("filters", "index"), [
    ({"owner": "a"}, "message_index_owner_at"),
    ({}, "message_index_at"),
    ({"owner": "a", "status": "sent", "provider": "twilio"}, "message_index_owner_at"),
    ({"receiver_hash": "h"}, "message_index_receiver"),
    ({"owner": "a", "receiver_hash": "h"}, "message_index_receiver"),
    ({"template": "otp"}, "message_index_template"),
    ({"owner": "a", "since_ms": 1, "until_ms": 2}, "message_index_owner_at"),
])
def test_sqlite_lists_through_an_index_never_a_scan(tmp_path, filters, index):
    from sms_service.storage import sqlite as backend

    store = backend.SqliteStorage(str(tmp_path / "plan.db"))
    try:
        params = {"now": 0, "limit": 5, **filters}
        where = " AND ".join(clause for name, clause in backend._LIST_CLAUSES.items() if name in filters)
        plan = [row[3] for row in store._conn().execute(
            "EXPLAIN QUERY PLAN " + backend._LIST.format(where=where or "1"), params)]
        assert any(index in step for step in plan), plan
        assert not any(step.startswith("SCAN") and "INDEX" not in step for step in plan), plan
        due = [row[3] for row in store._conn().execute(
            "EXPLAIN QUERY PLAN " + backend._DUE, {"due": 1, "now": 0, "limit": 5})]
        assert any("message_index_check" in step for step in due), due
    finally:
        store.close()


def test_redis_indexes_again_after_losing_its_scripts(redis_uri):
    import redis as redis_client

    store = open_storage(redis_uri)
    try:
        _create(store, _record("before", "alice", BASE))
        redis_client.Redis.from_url(redis_uri).script_flush()  # as after a Redis restart
        _create(store, _record("after", "alice", BASE + dt.timedelta(seconds=1)))
        records, _ = store.message_list("alice", limit=10, receiver_hash="h0")
        assert [r["sid"] for r in records] == ["after", "before"]
    finally:
        store.close()
