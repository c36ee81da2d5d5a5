"""One conformance suite for every storage: memory, a real SQLite file, a real redis-server.

Each backend must give the same answers: a moving window that never admits more than its
limit in any span of its length, the exponential delay, compare-and-set records, and
atomicity under threads and, for the shared ones, under several processes.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from support import storage_hammer
from support.slow_proxy import SlowProxy

from sms_service.exceptions import StorageUnavailable
from sms_service.idempotency import Idempotency, Reservation
from sms_service.status import model
from sms_service.storage import MemoryStorage, RedisStorage, SqliteStorage, open_storage
from sms_service.storage import sqlite as sqlite_backend
from sms_service.storage.sqlite import WINDOW_BUCKETS


@pytest.fixture
def storage(storage_uri):
    store = open_storage(storage_uri)
    yield store
    store.close()


def test_open_storage_picks_the_backend(tmp_path, redis_uri):
    assert isinstance(open_storage("memory://"), MemoryStorage)
    assert isinstance(open_storage(f"sqlite:///{tmp_path}/a.db"), SqliteStorage)
    assert isinstance(open_storage(redis_uri), RedisStorage)


def _slack_ms(storage_uri: str, window_ms: int) -> float:
    # SQLite counts a hit until its whole bucket has left the window: up to one bucket late.
    return window_ms / WINDOW_BUCKETS + 1 if storage_uri.startswith("sqlite") else 1


# -- moving window ---------------------------------------------------------------------


def test_window_admits_the_limit_then_refuses_without_counting_refusals(storage):
    assert [storage.window_acquire("w", 3, 2000) for _ in range(3)] == [0, 0, 0]
    waits = [storage.window_acquire("w", 3, 2000) for _ in range(5)]
    assert all(1 <= w <= 2000 + 21 for w in waits), waits
    # Another key is another window.
    assert storage.window_acquire("other", 3, 2000) == 0


def test_window_admits_again_exactly_when_it_said(storage, storage_uri):
    window = 600
    assert storage.window_acquire("edge", 2, window) == 0
    time.sleep(0.2)
    assert storage.window_acquire("edge", 2, window) == 0
    wait = storage.window_acquire("edge", 2, window)
    # The first hit leaves 600 ms after it was made, about 400 ms from now.
    assert 300 <= wait <= 400 + _slack_ms(storage_uri, window) + 20, wait
    time.sleep((wait - 40) / 1000)
    assert storage.window_acquire("edge", 2, window) > 0, "admitted before the window had moved"
    time.sleep(0.06)
    assert storage.window_acquire("edge", 2, window) == 0
    # Only one slot freed: the second hit is still inside the window.
    assert storage.window_acquire("edge", 2, window) > 0


def test_window_slides_instead_of_resetting_at_a_boundary(storage):
    window = 1000
    assert storage.window_acquire("slide", 2, window) == 0
    time.sleep(0.55)
    assert storage.window_acquire("slide", 2, window) == 0
    time.sleep(0.55)
    # A fixed window would have reset by now; a moving one still holds the second hit.
    assert storage.window_acquire("slide", 2, window) == 0
    assert storage.window_acquire("slide", 2, window) > 0


def _definite_violations(hits, limit, window_ms):
    """Spans shorter than the window that surely held more than `limit` admitted hits."""
    admitted = sorted((before, after) for before, after, wait in hits if wait == 0)
    found = []
    for i in range(len(admitted) - limit):
        group = admitted[i:i + limit + 1]
        span_ms = (max(after for _, after in group) - group[0][0]) * 1000
        if span_ms < window_ms:
            found.append(span_ms)
    return found


def test_window_never_admits_more_than_the_limit_in_any_span_under_threads(storage):
    limit, window = 5, 400
    hits: list = []
    lock = threading.Lock()

    end = time.time() + 1.6

    def hammer():
        while time.time() < end:
            before = time.time()
            wait = storage.window_acquire("span", limit, window)
            with lock:
                hits.append((before, time.time(), wait))
            time.sleep(0.01)

    with ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(hammer) for _ in range(8)]:
            f.result()
    admitted = sum(1 for *_, wait in hits if wait == 0)
    # 1.6 s of hammering at 5 per 400 ms: 20 admitted, 25 at most, and never a burst.
    assert 15 <= admitted <= 25, admitted
    assert _definite_violations(hits, limit, window) == []


def test_window_exact_count_under_concurrency(storage):
    with ThreadPoolExecutor(16) as pool:
        waits = list(pool.map(lambda _: storage.window_acquire("burst", 10, 60_000), range(64)))
    assert waits.count(0) == 10
    assert all(w > 0 for w in waits if w != 0)


def test_window_cost_does_not_grow_with_hits_on_sqlite(tmp_path):
    store = SqliteStorage(str(tmp_path / "buckets.db"))
    for _ in range(3000):
        store.window_acquire("many", 1_000_000, 60_000)
    with sqlite3.connect(str(tmp_path / "buckets.db")) as conn:
        rows = conn.execute("SELECT count(*) FROM window_buckets").fetchone()[0]
    assert rows <= WINDOW_BUCKETS + 1, rows


# -- exponential delay -----------------------------------------------------------------


def test_delay_doubles_and_refusals_do_not_lengthen_it(storage):
    assert storage.delay_acquire("r", 60_000) == 0
    first = storage.delay_acquire("r", 60_000)
    assert 900 <= first <= 1000
    time.sleep(0.3)
    later = storage.delay_acquire("r", 60_000)
    assert 600 <= later <= 720, later  # the refusal above did not restart the wait
    time.sleep(later / 1000 + 0.05)
    assert storage.delay_acquire("r", 60_000) == 0
    assert 1900 <= storage.delay_acquire("r", 60_000) <= 2000  # after the 2nd message: 2 s
    assert storage.delay_acquire("another", 60_000) == 0


def test_delay_streak_resets_after_silence(storage):
    assert storage.delay_acquire("quiet", 1200) == 0
    time.sleep(1.05)
    assert storage.delay_acquire("quiet", 1200) == 0  # 1 s passed: second of the streak
    assert storage.delay_acquire("quiet", 1200) > 1000  # now 2 s
    time.sleep(1.3)  # 1.2 s of silence resets the streak
    assert storage.delay_acquire("quiet", 1200) == 0
    assert storage.delay_acquire("quiet", 1200) <= 1000  # a new streak: 1 s again


def test_delay_admits_one_of_many_concurrent(storage):
    with ThreadPoolExecutor(16) as pool:
        waits = list(pool.map(lambda _: storage.delay_acquire("crowd", 60_000), range(40)))
    assert waits.count(0) == 1


# -- records ---------------------------------------------------------------------------


def test_record_reserve_swap_delete_compare_the_whole_value(storage):
    assert storage.record_reserve("k", "pending-1", 60_000) is None
    assert storage.record_reserve("k", "pending-2", 60_000) == "pending-1"
    assert storage.record_swap("k", "pending-2", "done-2", 60_000) is False
    assert storage.record_reserve("k", "x", 60_000) == "pending-1"
    assert storage.record_swap("k", "pending-1", "done-1", 60_000) is True
    assert storage.record_reserve("k", "x", 60_000) == "done-1"
    assert storage.record_delete("k", "pending-1") is False
    assert storage.record_delete("k", "done-1") is True
    assert storage.record_reserve("k", "again", 60_000) is None
    assert storage.record_swap("missing", "a", "b", 60_000) is False
    assert storage.record_delete("missing", "a") is False


def test_records_expire(storage):
    assert storage.record_reserve("short", "v1", 200) is None
    time.sleep(0.3)
    assert storage.record_swap("short", "v1", "v2", 60_000) is False  # gone, not revived
    assert storage.record_reserve("short", "v3", 60_000) is None


def test_one_reservation_wins_under_concurrency(storage):
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: storage.record_reserve("race", f"v{i}", 60_000), range(40)))
    assert results.count(None) == 1
    winner = f"v{results.index(None)}"
    assert all(r == winner for r in results if r is not None)


def test_ping(storage):
    assert storage.ping() is True


# -- several processes -----------------------------------------------------------------


def _in_processes(target, args_list):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(args_list)) as pool:
        return pool.starmap(target, args_list, chunksize=1)


def test_processes_hammering_one_window_never_exceed_the_limit(shared_storage_uri):
    start = time.time() + 2.0  # every process is up and waiting before the first hit
    limit, window = 20, 1500
    per_process = _in_processes(storage_hammer.hammer_window,
                                [(shared_storage_uri, start, 8, 30, limit, window)] * 4)
    outcomes = [o for proc in per_process for o in proc]
    errors = [o for o in outcomes if isinstance(o, str)]
    assert errors == []  # no "database is locked" or any other error reaches a caller
    hits = [h for thread in outcomes for h in thread]
    assert len(hits) == 4 * 8 * 30
    assert _definite_violations(hits, limit, window) == []
    assert sum(1 for *_, wait in hits if wait == 0) >= limit


def test_processes_racing_for_one_receiver_admit_one(shared_storage_uri):
    start = time.time() + 2.0
    results = [r for proc in _in_processes(storage_hammer.hammer_delay, [(shared_storage_uri, start, 8)] * 4)
               for r in proc]
    assert [r for r in results if isinstance(r, str)] == []
    assert results.count(0) == 1


def test_processes_racing_for_one_record_reserve_it_once(shared_storage_uri):
    start = time.time() + 2.0
    results = [r for proc in _in_processes(
        storage_hammer.hammer_reserve, [(shared_storage_uri, start, 8, f"p{i}") for i in range(4)]) for r in proc]
    assert [r for r in results if isinstance(r, str) and r.startswith("error")] == []
    assert results.count(None) == 1


def test_processes_updating_one_message_record_lose_no_status(shared_storage_uri):
    start = time.time() + 2.0
    results = _in_processes(storage_hammer.hammer_message, [(shared_storage_uri, start, 8, f"p{i}") for i in range(4)])
    assert [r for proc in results for r in proc] == ["ok"] * 32
    record = open_storage(shared_storage_uri).message_get("shared")
    # The first update kept an orphan; every one of the 32 is in its history.
    assert sorted(h["providerStatus"] for h in record["history"]) == sorted(
        f"p{i}-{j}" for i in range(4) for j in range(8))
    assert record["orphan"] is True and record["status"] == "sent"


def test_many_processes_opening_a_new_sqlite_file_at_once(tmp_path):
    storage_uri = f"sqlite:///{tmp_path}/fresh/state.db"
    start = time.time() + 2.0
    assert _in_processes(storage_hammer.open_and_hit, [(storage_uri, start)] * 8) == ["ok"] * 8


# -- SQLite specifics ------------------------------------------------------------------


def test_sqlite_keeps_its_state_across_a_restart(tmp_path):
    path = str(tmp_path / "keep.db")
    first = SqliteStorage(path)
    assert first.record_reserve("idem", "done", 60_000) is None
    assert first.delay_acquire("receiver", 60_000) == 0
    assert first.window_acquire("send", 1, 60_000) == 0
    first.close()
    second = SqliteStorage(path)
    assert second.record_reserve("idem", "other", 60_000) == "done"
    assert second.delay_acquire("receiver", 60_000) > 0
    assert second.window_acquire("send", 1, 60_000) > 0


def test_sqlite_keeps_message_records_across_a_restart(tmp_path):
    path = str(tmp_path / "records.db")
    first = SqliteStorage(path)
    first.message_create("m", _sent_record(), 60_000)
    _update(first, "m", "delivered")
    _update(first, "early", "sent")
    first.close()
    second = SqliteStorage(path)
    assert second.message_get("m")["status"] == "delivered"
    second.message_create("early", _sent_record("early"), 60_000)
    assert _words(second.message_get("early")) == ["queued", "sent"]


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path):
    path = tmp_path / "private" / "state.db"
    SqliteStorage(str(path)).close()
    assert path.stat().st_mode & 0o077 == 0
    assert path.parent.stat().st_mode & 0o077 == 0
    with sqlite3.connect(str(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_lock_held_too_long_fails_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT_S", 0.2)
    path = str(tmp_path / "busy.db")
    store = SqliteStorage(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.guarded(lambda: store.delay_acquire("r", 60_000))
        assert time.monotonic() - started < 2
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.guarded(lambda: store.delay_acquire("r", 60_000)) == 0  # recovers at once


def test_sqlite_unwritable_directory_is_a_clear_start_up_error(tmp_path):
    from sms_service.app import create_app
    from sms_service.exceptions import ConfigError

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    with pytest.raises(ConfigError) as info:
        create_app({"SERVICE_PROVIDER": "console", "STATE_DIR": str(blocked / "state")})
    assert str(info.value).startswith("STORAGE_URI")
    assert "\n" not in str(info.value)


# -- Redis: nothing is ever run twice ------------------------------------------------


@pytest.fixture
def slow_redis(redis_server, redis_uri):
    proxy = SlowProxy(redis_server.port)
    store = RedisStorage(f"redis://127.0.0.1:{proxy.port}/0")
    yield store, redis.Redis.from_url(redis_uri), proxy
    store.close()
    proxy.close()


def test_redis_delay_whose_reply_times_out_is_not_run_again(slow_redis):
    store, direct, proxy = slow_redis
    assert store.delay_acquire("warm-up", 60_000) == 0  # connection made, script loaded
    proxy.delay_next_reply(0.8)
    with pytest.raises(StorageUnavailable):
        store.guarded(lambda: store.delay_acquire("fresh-receiver", 60_000))
    # Ran once: the streak holds one message, and the caller heard 503, not a 429 to itself.
    assert direct.hget("sms-service:delay:fresh-receiver", "k") == b"1"


def test_redis_reservation_whose_reply_times_out_does_not_block_the_key(slow_redis):
    store, _, proxy = slow_redis
    idempotency = Idempotency(store, ttl_s=60, stale_after_s=60)
    assert isinstance(idempotency.begin("warm", "", {"a": "1"}), Reservation)
    proxy.delay_next_reply(0.8)
    with pytest.raises(StorageUnavailable):
        idempotency.begin("order-7", "", {"a": "1"})
    time.sleep(0.9)  # the held reply has gone by
    # The request that timed out took its pending record back: a retry may proceed.
    assert isinstance(idempotency.begin("order-7", "", {"a": "1"}), Reservation)



# -- message records (SPEC section 10) -------------------------------------------------


def _sent_record(sid: str = "SM1") -> dict:
    at = "2026-11-26T08:00:00.000Z"
    return {"sid": sid, "provider": "twilio", "receiver": "+1***10", "country": "US", "numSegments": "1",
            "encoding": "GSM-7", "dateEvent": at, "status": "queued", "providerStatus": "queued",
            "errorCode": None, "updatedAt": at, "owner": "",
            "history": [model.entry("queued", "queued", None, at)]}


def _update(storage, key: str, status: str, word: str | None = None, code: str | None = None, at: int = 1):
    entry = model.entry(status, word or status, code, f"2026-11-26T08:00:{at:02d}.000Z")
    return storage.message_update(key, entry, {"sid": key, "provider": "twilio"}, 60_000)


def _words(record: dict) -> list[str]:
    return [h["providerStatus"] for h in record["history"]]


def test_message_record_is_stored_and_read_back(storage):
    assert storage.message_get("m") is None
    storage.message_create("m", _sent_record(), 60_000)
    assert storage.message_get("m") == _sent_record()


def test_shuffled_statuses_end_final_with_every_one_in_history(storage):
    storage.message_create("m", _sent_record(), 60_000)
    assert _update(storage, "m", "delivered", at=3)[0] == "queued"
    before, record = _update(storage, "m", "sent", at=4)
    assert before == "delivered"
    assert record["status"] == "delivered" and record["providerStatus"] == "delivered"
    assert record["updatedAt"] == "2026-11-26T08:00:04.000Z"
    # A late "queued" repeats the send's own entry: nothing is appended for it.
    _, record = _update(storage, "m", "queued", at=5)
    assert record["status"] == "delivered"
    assert _words(record) == ["queued", "delivered", "sent"]
    assert storage.message_get("m") == record


@pytest.mark.parametrize("final", ["delivered", "undelivered", "failed"])
def test_final_states_are_sticky(storage, final):
    storage.message_create("m", _sent_record(), 60_000)
    _update(storage, "m", final, code="30003" if final != "delivered" else None)
    for later in ("sent", "queued", "delivered", "failed", "undelivered"):
        _, record = _update(storage, "m", later, word=f"late-{later}")
        assert record["status"] == final
    assert len(record["history"]) == 7


def test_a_late_older_status_never_moves_sent_back(storage):
    storage.message_create("m", _sent_record(), 60_000)
    _update(storage, "m", "sent", word="sending")
    _, record = _update(storage, "m", "sent", word="sent")  # same rank moves on
    assert (record["status"], record["providerStatus"]) == ("sent", "sent")
    _, record = _update(storage, "m", "queued", word="accepted")
    assert (record["status"], record["providerStatus"]) == ("sent", "sent")
    assert _words(record) == ["queued", "sending", "sent", "accepted"]


def test_a_repeated_callback_is_recorded_once(storage):
    storage.message_create("m", _sent_record(), 60_000)
    _update(storage, "m", "undelivered", code="30005", at=2)
    _, record = _update(storage, "m", "undelivered", code="30005", at=9)
    assert len(record["history"]) == 2 and record["errorCode"] == "30005"
    assert record["updatedAt"] == "2026-11-26T08:00:02.000Z"


def test_orphan_callbacks_are_kept_and_merged_into_the_send_record(storage):
    before, orphan = _update(storage, "early", "delivered", at=2)
    assert before is None and orphan["orphan"] is True and orphan["status"] == "delivered"
    before, orphan = _update(storage, "early", "sent", at=3)
    assert before == "delivered" and orphan["orphan"] is True
    assert storage.message_get("early")["orphan"] is True
    storage.message_create("early", _sent_record("early"), 60_000)
    record = storage.message_get("early")
    assert "orphan" not in record
    assert record["status"] == "delivered" and record["sid"] == "early" and record["country"] == "US"
    assert _words(record) == ["queued", "delivered", "sent"]
    assert record["updatedAt"] == "2026-11-26T08:00:03.000Z"


def test_a_second_create_never_replaces_a_record(storage):
    storage.message_create("m", _sent_record(), 60_000)
    _update(storage, "m", "delivered")
    storage.message_create("m", {**_sent_record(), "receiver": "+1***99"}, 60_000)
    record = storage.message_get("m")
    assert record["status"] == "delivered" and record["receiver"] == "+1***10"


def test_message_records_expire_and_a_late_callback_becomes_an_orphan(storage):
    storage.message_create("short", _sent_record("short"), 200)
    time.sleep(0.3)
    assert storage.message_get("short") is None
    before, record = _update(storage, "short", "delivered")
    assert before is None and record["orphan"] is True
    storage.message_create("again", _sent_record("again"), 200)
    _update(storage, "again", "sent")  # an update starts the TTL again, here a minute
    time.sleep(0.3)
    assert storage.message_get("again")["status"] == "sent"


def test_history_is_bounded_but_the_status_still_moves(storage):
    storage.message_create("m", _sent_record(), 60_000)
    for i in range(model.MAX_HISTORY + 5):
        _update(storage, "m", "sent", word=f"hop-{i}")
    _, record = _update(storage, "m", "failed", word="failed", code="30008")
    assert len(record["history"]) == model.MAX_HISTORY
    assert (record["status"], record["errorCode"]) == ("failed", "30008")


def test_concurrent_callbacks_lose_nothing(storage):
    storage.message_create("busy", _sent_record("busy"), 60_000)
    words = [f"w{i}" for i in range(20)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda w: _update(storage, "busy", "sent", word=w), words))
    _update(storage, "busy", "delivered")
    record = storage.message_get("busy")
    assert sorted(_words(record)[1:-1]) == sorted(words)
    assert record["status"] == "delivered"


def test_concurrent_orphans_and_send_record_merge_whatever_the_order(storage):
    def callback(word):
        _update(storage, "race", "sent" if word != "delivered" else "delivered", word=word)

    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(callback, w) for w in ("sending", "sent", "delivered")]
        jobs.append(pool.submit(storage.message_create, "race", _sent_record("race"), 60_000))
        for job in jobs:
            job.result()
    record = storage.message_get("race")
    assert "orphan" not in record and record["status"] == "delivered"
    assert sorted(_words(record)) == ["delivered", "queued", "sending", "sent"]


# -- suppression list (SPEC section 12) ------------------------------------------------


def test_suppression_add_get_remove(storage):
    before = int(time.time() * 1000)
    assert storage.suppression_get("+15558675310") is None
    assert storage.suppression_add("+15558675310", "inbound") is True
    source, since = storage.suppression_get("+15558675310")
    assert source == "inbound"
    assert before - 1000 <= since <= int(time.time() * 1000) + 1000
    # Another number is another entry; the list is not hashed and exports as stored.
    assert storage.suppression_get("+15558675311") is None
    assert storage.suppression_remove("+15558675310") is True
    assert storage.suppression_get("+15558675310") is None
    assert storage.suppression_remove("+15558675310") is False


def test_suppression_keeps_the_first_source_and_time(storage):
    assert storage.suppression_add("+447700900123", "provider") is True
    first = storage.suppression_get("+447700900123")
    time.sleep(0.01)
    assert storage.suppression_add("+447700900123", "admin") is False
    assert storage.suppression_get("+447700900123") == first == ("provider", first[1])


def test_suppression_list_exports_every_entry_sorted(storage):
    for number, source in [("+447700900123", "admin"), ("+15558675310", "inbound"), ("+919876543210", "provider")]:
        storage.suppression_add(number, source)
    storage.suppression_remove("+919876543210")
    entries = storage.suppression_all()
    assert [(number, source) for number, source, _ in entries] == [
        ("+15558675310", "inbound"), ("+447700900123", "admin")]
    assert all(isinstance(since, int) and since > 0 for *_, since in entries)


def test_suppression_entries_do_not_expire_with_the_sweep(storage):
    storage.suppression_add("+15558675310", "inbound")
    storage.record_reserve("short", "v", 1)
    time.sleep(0.02)
    storage.record_reserve("other", "v", 1)  # runs the periodic sweep where there is one
    assert storage.suppression_get("+15558675310")[0] == "inbound"


def test_one_of_many_concurrent_adds_wins(storage):
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: storage.suppression_add("+15558675310", f"s{i}"), range(32)))
    assert results.count(True) == 1
    assert storage.suppression_get("+15558675310")[0] == f"s{results.index(True)}"


def test_suppression_list_is_shared_and_survives_reopening(shared_storage_uri):
    first = open_storage(shared_storage_uri)
    second = open_storage(shared_storage_uri)
    assert first.suppression_add("+15558675310", "inbound") is True
    assert second.suppression_get("+15558675310")[0] == "inbound"
    first.close()
    third = open_storage(shared_storage_uri)
    assert third.suppression_get("+15558675310")[0] == "inbound"
    assert third.suppression_remove("+15558675310") is True
    assert second.suppression_get("+15558675310") is None
    second.close()
    third.close()


def test_sqlite_file_of_another_schema_is_a_clear_start_up_error_and_left_alone(tmp_path):
    from sms_service.app import create_app
    from sms_service.exceptions import ConfigError

    path = tmp_path / "state" / "sms-service.db"
    path.parent.mkdir()
    with sqlite3.connect(str(path)) as conn:  # a development build's file: tables, no version
        conn.execute("CREATE TABLE streaks (key TEXT PRIMARY KEY, k INTEGER)")
        conn.execute("INSERT INTO streaks VALUES ('kept', 1)")
    with pytest.raises(ConfigError) as info:
        create_app({"SERVICE_PROVIDER": "console", "STATE_DIR": str(path.parent)})
    message = str(info.value)
    assert message.startswith("STORAGE_URI") and "schema" in message and "\n" not in message
    with sqlite3.connect(str(path)) as conn:
        assert conn.execute("SELECT key FROM streaks").fetchall() == [("kept",)]
    with sqlite3.connect(str(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="schema 99"):
        create_app({"SERVICE_PROVIDER": "console", "STATE_DIR": str(path.parent)})


def test_sqlite_new_file_is_stamped_and_reopens(tmp_path):
    from sms_service.storage.sqlite import SCHEMA_VERSION

    path = str(tmp_path / "v.db")
    SqliteStorage(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    SqliteStorage(path).close()


def test_sqlite_file_of_schema_1_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    from sms_service.storage.sqlite import SCHEMA_VERSION

    path = str(tmp_path / "old.db")
    store = SqliteStorage(path)
    store.suppression_add("+15558675310", "inbound")
    assert store.record_reserve("idem", "v", 60_000) is None
    store.close()
    with sqlite3.connect(path) as conn:  # what the first release of the embedded store wrote
        conn.execute("PRAGMA user_version = 1")
    reopened = SqliteStorage(path)
    assert reopened.suppression_get("+15558675310")[0] == "inbound"
    assert reopened.record_reserve("idem", "other", 60_000) == "v"
    reopened.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- segment budgets and estimates (SPEC section 14) -----------------------------------


def test_budget_admits_costs_up_to_the_limit_and_refuses_without_counting(storage):
    assert storage.budget_spend("US", 3, 10, 60_000)[:2] == (0, 3)
    assert storage.budget_spend("US", 3, 10, 60_000)[:2] == (0, 6)
    assert storage.budget_spend("US", 3, 10, 60_000)[:2] == (0, 9)
    wait, used, at = storage.budget_spend("US", 3, 10, 60_000)
    assert 1 <= wait <= 60_000 + 601 and used == 9 and at == 0
    # The refusal counted nothing: one unit still fits, exactly.
    assert storage.budget_spend("US", 1, 10, 60_000)[:2] == (0, 10)
    assert storage.budget_spend("US", 1, 10, 60_000)[0] >= 1
    # Another key is another budget.
    assert storage.budget_spend("IN", 10, 10, 60_000)[:2] == (0, 10)


def test_budget_peek_answers_like_spend_and_counts_nothing(storage):
    assert storage.budget_peek("FR", 4, 5, 60_000) == (0, 0)
    assert storage.budget_peek("FR", 4, 5, 60_000) == (0, 0)
    assert storage.budget_spend("FR", 4, 5, 60_000)[:2] == (0, 4)
    assert storage.budget_peek("FR", 1, 5, 60_000) == (0, 4)
    peek_wait, used = storage.budget_peek("FR", 2, 5, 60_000)
    assert used == 4 and peek_wait >= 1
    spend_wait, used, _ = storage.budget_spend("FR", 2, 5, 60_000)
    assert used == 4 and abs(spend_wait - peek_wait) <= 50
    assert storage.budget_spend("FR", 1, 5, 60_000)[:2] == (0, 5)


def test_budget_slides_and_its_wait_is_for_this_cost(storage, storage_uri):
    window = 1000
    slack = _slack_ms(storage_uri, window)
    assert storage.budget_spend("s", 2, 4, window)[0] == 0
    time.sleep(0.4)
    assert storage.budget_spend("s", 2, 4, window)[0] == 0
    # A cost of 2 fits once the first entry leaves (~0.6 s), a cost of 4 only once both have (~1 s).
    wait_2 = storage.budget_peek("s", 2, 4, window)[0]
    wait_4 = storage.budget_peek("s", 4, 4, window)[0]
    assert 500 <= wait_2 <= 600 + slack, wait_2
    assert 900 <= wait_4 <= 1000 + slack, wait_4
    time.sleep((wait_2 + 30) / 1000)
    assert storage.budget_spend("s", 3, 4, window)[0] >= 1  # only the first entry has left
    assert storage.budget_spend("s", 2, 4, window)[0] == 0  # it slid; not reset at a boundary
    assert storage.budget_spend("s", 1, 4, window)[0] >= 1


def _spend_all(storage, costs, limit, window_ms, key="crowd"):
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda cost: (cost, storage.budget_spend(key, cost, limit, window_ms)[0]), costs))


def test_budget_exact_under_concurrency(storage):
    # Budget 10, twelve 3-segment messages at once: exactly three go out.
    results = _spend_all(storage, [3] * 12, 10, 60_000)
    assert sum(1 for _, wait in results if wait == 0) == 3
    # A mix of 1 and 2 never exceeds the budget; it is full but for at most one unit
    # (when every 1 went first, the 2s stop at 24).
    mixed = _spend_all(storage, [2, 1] * 20, 25, 60_000, key="mixed")
    assert 24 <= sum(cost for cost, wait in mixed if wait == 0) <= 25


def test_delay_peek_answers_like_acquire_and_records_nothing(storage):
    assert storage.delay_peek("p", 60_000) == 0
    assert storage.delay_peek("p", 60_000) == 0
    assert storage.delay_acquire("p", 60_000) == 0
    peek = storage.delay_peek("p", 60_000)
    assert 900 <= peek <= 1000
    assert abs(storage.delay_acquire("p", 60_000) - peek) <= 50
    time.sleep(1.05)
    assert storage.delay_peek("p", 60_000) == 0
    assert storage.delay_peek("p", 60_000) == 0
    assert storage.delay_acquire("p", 60_000) == 0  # the peeks did not take the slot
    assert 1900 <= storage.delay_peek("p", 60_000) <= 2000
    time.sleep(0.55)
    assert storage.delay_peek("p", 500) == 0  # past a reset of 0.5 s: a new streak would start
    assert storage.delay_peek("p", 60_000) >= 1


def test_processes_spending_one_budget_never_exceed_it(shared_storage_uri):
    start = time.time() + 2.0
    per_process = _in_processes(storage_hammer.hammer_budget,
                                [(shared_storage_uri, start, 6, [3, 2, 1, 2], 40, 60_000)] * 4)
    outcomes = [o for proc in per_process for o in proc]
    assert [o for o in outcomes if isinstance(o, str)] == []
    spent = sum(cost for thread in outcomes for cost, wait in thread if wait == 0)
    assert 38 <= spent <= 40  # never over; full but for less than the largest cost


# -- status webhook outbox (SPEC section 11) --------------------------------------------


def _changed(storage, key: str, status: str, event_id: str, word: str | None = None):
    entry = model.entry(status, word or status, None, "2026-11-26T08:00:05.000Z")
    return storage.message_update(key, entry, {"sid": key, "provider": "twilio"}, 60_000, event_id)


def test_a_status_change_puts_one_event_in_the_outbox_with_the_record(storage):
    storage.message_create("m", {**_sent_record(), "owner": "caller-identity"}, 60_000)
    assert storage.webhook_stats() == (0, None)
    _changed(storage, "m", "sent", "evt_1")
    (event,) = storage.webhook_claim(10, 30_000)
    assert (event.id, event.message_key, event.attempts) == ("evt_1", "m", 0)
    assert event.record["status"] == "sent" and event.record["sid"] == "SM1"
    assert "owner" not in event.record  # whose key sent it never leaves the service
    assert 0 <= event.age_ms < 5_000 and event.lease
    count, age = storage.webhook_stats()
    assert count == 1 and 0 <= age < 5_000


def test_no_event_when_the_status_stays_or_without_an_event_id(storage):
    storage.message_create("m", _sent_record(), 60_000)
    _changed(storage, "m", "queued", "evt_same", word="accepted")  # a new entry, the same status
    _update(storage, "m", "sent")  # no event id: webhooks off
    _changed(storage, "m", "delivered", "evt_final")
    _changed(storage, "m", "sent", "evt_late", word="sending")  # a late older status: sticky
    _changed(storage, "m", "delivered", "evt_repeat")  # a provider's repeat
    assert [e.id for e in storage.webhook_claim(10, 30_000)] == ["evt_final"]


def test_an_orphan_makes_no_event_until_its_record_merges_it(storage):
    _changed(storage, "early", "delivered", "evt_orphan")
    assert storage.webhook_claim(10, 30_000) == []
    storage.message_create("early", _sent_record("early"), 60_000, "evt_merged")
    (event,) = storage.webhook_claim(10, 30_000)
    assert event.id == "evt_merged" and event.record["status"] == "delivered"
    assert "orphan" not in event.record
    # A record created with nothing to merge, or merging no change, makes none.
    storage.message_create("plain", _sent_record("plain"), 60_000, "evt_plain")
    _update(storage, "quiet", "queued", word="queued")
    storage.message_create("quiet", _sent_record("quiet"), 60_000, "evt_quiet")
    assert storage.webhook_claim(10, 30_000) == []


def test_a_claimed_event_is_hidden_for_its_lease_then_claimable_again(storage):
    storage.message_create("m", _sent_record(), 60_000)
    _changed(storage, "m", "sent", "evt_1")
    (first,) = storage.webhook_claim(10, 300)
    assert storage.webhook_claim(10, 300) == []
    time.sleep(0.45)  # the worker that claimed it died mid-attempt
    (again,) = storage.webhook_claim(10, 30_000)
    assert again.id == "evt_1" and again.lease != first.lease and again.attempts == 0
    # The first claimant's lease is gone: it can no longer reschedule or drop the event.
    assert storage.webhook_retry("evt_1", first.lease, 0) is False
    assert storage.webhook_exhausted("evt_1", first.lease, {"webhookId": "evt_1"}) is False
    assert storage.webhook_retry("evt_1", again.lease, 0) is True


def test_retry_counts_the_attempt_and_makes_it_due_later(storage):
    storage.message_create("m", _sent_record(), 60_000)
    _changed(storage, "m", "sent", "evt_1")
    (event,) = storage.webhook_claim(10, 30_000)
    assert storage.webhook_retry("evt_1", event.lease, 300) is True
    assert storage.webhook_retry("evt_1", event.lease, 300) is False  # the lease was spent
    assert storage.webhook_claim(10, 30_000) == []
    time.sleep(0.45)
    (event,) = storage.webhook_claim(10, 30_000)
    assert event.attempts == 1 and event.age_ms >= 300
    assert storage.webhook_retry("evt_1", event.lease, 0) is True
    (event,) = storage.webhook_claim(10, 30_000)
    assert event.attempts == 2


def test_delivered_removes_the_event_whoever_holds_it(storage):
    storage.message_create("m", _sent_record(), 60_000)
    _changed(storage, "m", "sent", "evt_1")
    _changed(storage, "m", "delivered", "evt_2")
    events_ = storage.webhook_claim(1, 30_000)
    assert [e.id for e in events_] == ["evt_1"]  # oldest due first, at most the limit
    assert storage.webhook_delivered("evt_1") is True
    assert storage.webhook_delivered("evt_1") is False
    assert storage.webhook_retry("evt_1", events_[0].lease, 0) is False  # gone: never comes back
    assert storage.webhook_delivered("evt_2") is True  # delivered by a worker whose lease ran out
    assert storage.webhook_stats() == (0, None)
    assert storage.webhook_claim(10, 30_000) == []


def test_exhausted_drops_the_event_and_marks_the_record(storage):
    storage.message_create("m", {**_sent_record(), "owner": "me"}, 60_000)
    _changed(storage, "m", "sent", "evt_1")
    (event,) = storage.webhook_claim(10, 30_000)
    failure = {"webhookId": "evt_1", "status": "sent", "attempts": 9, "at": "2026-11-27T08:00:05.000Z"}
    assert storage.webhook_exhausted("evt_1", event.lease, failure) is True
    assert storage.webhook_stats() == (0, None)
    record = storage.message_get("m")
    assert record["webhookFailures"] == [failure] and record["status"] == "sent" and record["owner"] == "me"
    # The next change's event, exhausted too, joins the first on the record.
    _changed(storage, "m", "delivered", "evt_2")
    (event,) = storage.webhook_claim(10, 30_000)
    assert event.record["webhookFailures"] == [failure]  # the event carries the record as it was
    second = {**failure, "webhookId": "evt_2", "status": "delivered"}
    assert storage.webhook_exhausted("evt_2", event.lease, second) is True
    assert storage.message_get("m")["webhookFailures"] == [failure, second]


def test_exhausted_on_an_expired_record_still_drops_the_event(storage):
    storage.message_create("short", _sent_record("short"), 60_000)
    entry = model.entry("sent", "sent", None, "2026-11-26T08:00:05.000Z")
    storage.message_update("short", entry, {"sid": "short", "provider": "twilio"}, 200, "evt_1")
    (event,) = storage.webhook_claim(10, 30_000)
    time.sleep(0.3)
    assert storage.webhook_exhausted("evt_1", event.lease, {"webhookId": "evt_1"}) is True
    assert storage.message_get("short") is None
    assert storage.webhook_stats() == (0, None)


def test_concurrent_claims_never_share_an_event(storage):
    storage.message_create("m", _sent_record(), 60_000)
    for i in range(30):
        storage.message_create(f"m{i}", _sent_record(f"m{i}"), 60_000)
        _changed(storage, f"m{i}", "sent", f"evt_{i}")

    def drain(_):
        got = []
        while batch := storage.webhook_claim(2, 60_000):
            got += [e.id for e in batch]
        return got

    with ThreadPoolExecutor(8) as pool:
        claimed = [i for got in pool.map(drain, range(8)) for i in got]
    assert sorted(claimed) == sorted(f"evt_{i}" for i in range(30))


def test_processes_claiming_one_outbox_claim_each_event_once(shared_storage_uri):
    storage = open_storage(shared_storage_uri)
    for i in range(40):
        storage.message_create(f"m{i}", _sent_record(f"m{i}"), 60_000)
        _changed(storage, f"m{i}", "sent", f"evt_{i}")
    storage.close()
    start = time.time() + 2.0
    results = _in_processes(storage_hammer.hammer_outbox_claim, [(shared_storage_uri, start, 4)] * 4)
    outcomes = [o for proc in results for o in proc]
    assert [o for o in outcomes if isinstance(o, str)] == []
    assert sorted(i for got in outcomes for i in got) == sorted(f"evt_{i}" for i in range(40))


def test_the_outbox_survives_reopening(shared_storage_uri):
    storage = open_storage(shared_storage_uri)
    storage.message_create("m", _sent_record(), 60_000)
    _changed(storage, "m", "sent", "evt_1")
    storage.close()
    reopened = open_storage(shared_storage_uri)
    assert [e.id for e in reopened.webhook_claim(10, 30_000)] == ["evt_1"]
    reopened.close()


# -- circuit breakers of provider failover (SPEC section 13) ----------------------------


def _open_circuit(storage, key: str, reset_ms: int, threshold: int = 3) -> None:
    for _ in range(threshold):
        storage.circuit_record(key, ok=False, trial=False, threshold=threshold, reset_after_ms=reset_ms)


def test_circuit_is_closed_until_the_threshold_of_consecutive_failures(storage):
    assert storage.circuit_admit("p", 5000) == ("closed", 0)
    assert storage.circuit_get("p") == ("closed", 0, 0)
    assert storage.circuit_record("p", ok=False, trial=False, threshold=3, reset_after_ms=5000) == ("closed", "closed")
    assert storage.circuit_record("p", ok=False, trial=False, threshold=3, reset_after_ms=5000) == ("closed", "closed")
    assert storage.circuit_admit("p", 5000) == ("closed", 2)
    # A success in between starts the count again: only consecutive failures open it.
    assert storage.circuit_record("p", ok=True, trial=False, threshold=3, reset_after_ms=5000) == ("closed", "closed")
    assert storage.circuit_admit("p", 5000) == ("closed", 0)
    _open_circuit(storage, "p", 5000)
    state, wait = storage.circuit_admit("p", 5000)
    assert state == "open" and 4000 < wait <= 5000
    state, failures, wait = storage.circuit_get("p")
    assert (state, failures) == ("open", 3) and 4000 < wait <= 5000
    # Another provider's circuit is another key.
    assert storage.circuit_admit("q", 5000) == ("closed", 0)


def test_circuit_lets_exactly_one_trial_through_after_the_reset_time(storage):
    _open_circuit(storage, "p", 300)
    assert storage.circuit_admit("p", 10_000)[0] == "open"
    time.sleep(0.35)
    assert storage.circuit_get("p")[0] == "half-open"
    assert storage.circuit_admit("p", 10_000) == ("trial", 0)
    # While the trial holds its lease, everyone else skips the provider.
    for _ in range(5):
        state, wait = storage.circuit_admit("p", 10_000)
        assert state == "open" and 9000 < wait <= 10_000
    # ... and a read says so too (what /estimate and the check-up see), until the lease ends.
    state, failures, wait = storage.circuit_get("p")
    assert (state, failures) == ("open", 3) and 9000 < wait <= 10_000


def test_a_successful_trial_closes_the_circuit(storage):
    _open_circuit(storage, "p", 100)
    time.sleep(0.15)
    assert storage.circuit_admit("p", 10_000) == ("trial", 0)
    assert storage.circuit_record("p", ok=True, trial=True, threshold=3, reset_after_ms=100) == ("open", "closed")
    assert storage.circuit_admit("p", 10_000) == ("closed", 0)
    assert storage.circuit_get("p") == ("closed", 0, 0)


def test_a_failed_trial_opens_the_circuit_for_another_reset_time(storage):
    _open_circuit(storage, "p", 300)
    time.sleep(0.35)
    assert storage.circuit_admit("p", 10_000) == ("trial", 0)
    assert storage.circuit_record("p", ok=False, trial=True, threshold=3, reset_after_ms=300) == ("open", "open")
    state, wait = storage.circuit_admit("p", 10_000)
    assert state == "open" and 200 < wait <= 300  # the lease is gone, the new reset time counts
    time.sleep(0.35)
    assert storage.circuit_admit("p", 10_000) == ("trial", 0)


def test_a_trial_whose_caller_vanished_frees_itself_when_its_lease_ends(storage):
    _open_circuit(storage, "p", 100)
    time.sleep(0.15)
    assert storage.circuit_admit("p", 300) == ("trial", 0)  # ... and never reports
    assert storage.circuit_admit("p", 300)[0] == "open"
    time.sleep(0.35)
    assert storage.circuit_admit("p", 300) == ("trial", 0)


def test_a_late_failure_of_an_earlier_call_does_not_push_the_reset_time(storage):
    _open_circuit(storage, "p", 400)
    time.sleep(0.2)
    assert storage.circuit_record("p", ok=False, trial=False, threshold=3, reset_after_ms=400) == ("open", "open")
    state, wait = storage.circuit_admit("p", 10_000)
    assert state == "open" and wait <= 250
    assert storage.circuit_get("p")[1] == 4


def test_one_trial_among_many_concurrent_callers(storage):
    _open_circuit(storage, "p", 50)
    time.sleep(0.1)
    with ThreadPoolExecutor(16) as pool:
        states = list(pool.map(lambda _: storage.circuit_admit("p", 60_000)[0], range(64)))
    assert states.count("trial") == 1
    assert states.count("open") == 63


def test_processes_racing_for_one_trial_get_exactly_one(shared_storage_uri):
    store = open_storage(shared_storage_uri)
    _open_circuit(store, "racing", 1)
    store.close()
    start = time.time() + 2.0
    results = [r for proc in _in_processes(storage_hammer.hammer_circuit_trial, [(shared_storage_uri, start, 8)] * 4)
               for r in proc]
    assert [r for r in results if r.startswith("error")] == []
    assert results.count("trial") == 1 and results.count("open") == 31


def test_sqlite_file_of_schema_1_gains_the_circuits_table(tmp_path):
    path = str(tmp_path / "old.db")
    SqliteStorage(path).close()
    with sqlite3.connect(path) as conn:  # a file of the first release: no circuits table yet
        conn.execute("DROP TABLE circuits")
        conn.execute("PRAGMA user_version = 1")
    store = SqliteStorage(path)
    assert store.circuit_record("p", ok=False, trial=False, threshold=1, reset_after_ms=5000) == ("closed", "open")
    assert store.circuit_admit("p", 1000)[0] == "open"
    store.close()


# -- review fixes: a budget spend taken back, circuits read as send reads them ------------


def test_budget_refund_takes_back_exactly_that_spend(storage):
    wait, used, first = storage.budget_spend("US", 3, 10, 60_000)
    assert (wait, used) == (0, 3) and first > 0
    assert storage.budget_spend("US", 4, 10, 60_000)[:2] == (0, 7)
    assert storage.budget_refund("US", 3, 60_000, first) is True
    assert storage.budget_peek("US", 1, 10, 60_000) == (0, 4)
    # Its room is free again, exactly: six units fit, a seventh does not.
    assert storage.budget_spend("US", 6, 10, 60_000)[:2] == (0, 10)
    assert storage.budget_spend("US", 1, 10, 60_000)[0] >= 1
    # Another key's budget is untouched by a refund, and a refund elsewhere takes nothing.
    assert storage.budget_spend("IN", 2, 2, 60_000)[:2] == (0, 2)
    assert storage.budget_refund("FR", 3, 60_000, first) is False
    assert storage.budget_peek("IN", 1, 2, 60_000)[1] == 2


def test_budget_refund_of_the_last_spend_leaves_an_empty_budget(storage):
    _, _, at = storage.budget_spend("DE", 5, 5, 60_000)
    assert storage.budget_spend("DE", 1, 5, 60_000)[0] >= 1
    assert storage.budget_refund("DE", 5, 60_000, at) is True
    assert storage.budget_peek("DE", 5, 5, 60_000) == (0, 0)
    assert storage.budget_spend("DE", 5, 5, 60_000)[:2] == (0, 5)


def test_budget_refund_of_a_spend_that_left_the_window_changes_nothing(storage):
    _, _, old = storage.budget_spend("GB", 2, 4, 300)
    time.sleep(0.45)
    assert storage.budget_spend("GB", 4, 4, 300)[:2] == (0, 4)
    assert storage.budget_refund("GB", 2, 300, old) is False
    # The spend in the window still counts whole: nothing was taken from it.
    assert storage.budget_peek("GB", 1, 4, 300)[1] == 4


def test_budget_refunds_under_concurrency_give_back_exactly_what_they_took(storage):
    with ThreadPoolExecutor(16) as pool:
        spends = list(pool.map(lambda _: storage.budget_spend("crowd", 2, 100, 60_000), range(40)))
    assert all(wait == 0 for wait, _, _ in spends)
    with ThreadPoolExecutor(16) as pool:
        refunded = list(pool.map(lambda s: storage.budget_refund("crowd", 2, 60_000, s[2]), spends[:25]))
    assert refunded == [True] * 25
    assert storage.budget_peek("crowd", 1, 100, 60_000)[1] == 30


def test_circuit_get_answers_what_admit_would_at_every_step_of_a_trial(storage):
    _open_circuit(storage, "p", 200)
    state, _, wait = storage.circuit_get("p")
    assert state == "open" and 100 < wait <= 200
    time.sleep(0.25)
    assert storage.circuit_get("p")[:2] == ("half-open", 3)  # a trial may be claimed
    assert storage.circuit_admit("p", 300) == ("trial", 0)
    state, _, read_wait = storage.circuit_get("p")  # the trial holds its lease: skipped
    assert state == "open" and 200 < read_wait <= 300
    admit_state, admit_wait = storage.circuit_admit("p", 300)
    assert admit_state == "open" and abs(admit_wait - read_wait) <= 50
    time.sleep(0.35)  # the trial's caller vanished: its lease ended
    assert storage.circuit_get("p")[:2] == ("half-open", 3)
    assert storage.circuit_admit("p", 300) == ("trial", 0)


def test_a_success_clears_whatever_failures_were_recorded_before_it(storage):
    assert storage.circuit_record("fresh", ok=True, trial=False, threshold=2, reset_after_ms=5000) == (
        "closed", "closed")
    assert storage.circuit_get("fresh") == ("closed", 0, 0)
    storage.circuit_record("p", ok=False, trial=False, threshold=2, reset_after_ms=5000)
    assert storage.circuit_record("p", ok=True, trial=False, threshold=2, reset_after_ms=5000) == ("closed", "closed")
    assert storage.circuit_record("p", ok=False, trial=False, threshold=2, reset_after_ms=5000) == ("closed", "closed")
    assert storage.circuit_get("p")[:2] == ("closed", 1)
    # A success of a call admitted before the circuit opened closes it: the provider works.
    storage.circuit_record("p", ok=False, trial=False, threshold=2, reset_after_ms=5000)
    assert storage.circuit_get("p")[0] == "open"
    assert storage.circuit_record("p", ok=True, trial=False, threshold=2, reset_after_ms=5000) == ("open", "closed")
    assert storage.circuit_get("p") == ("closed", 0, 0)


# -- status webhook review fixes ---------------------------------------------------------


def test_message_create_tells_whether_it_merged_an_orphan(storage):
    assert storage.message_create("plain", _sent_record("plain"), 60_000, "evt_plain") is False
    assert storage.message_create("plain", _sent_record("plain"), 60_000, "evt_again") is False
    _changed(storage, "early", "delivered", "evt_orphan")
    assert storage.message_create("early", _sent_record("early"), 60_000, "evt_merged") is True
    # Without webhooks, too: the caller only learns that a merge happened.
    _changed(storage, "early2", "delivered", None)
    assert storage.message_create("early2", _sent_record("early2"), 60_000) is True


def test_webhook_stats_follow_the_oldest_event_left(storage):
    for sid in ("a", "b", "c"):
        storage.message_create(sid, _sent_record(sid), 60_000)
    _changed(storage, "a", "sent", "evt_a")
    time.sleep(0.3)
    _changed(storage, "b", "sent", "evt_b")
    _changed(storage, "c", "sent", "evt_c")
    count, age = storage.webhook_stats()
    assert count == 3 and 250 <= age < 5_000
    # Retried (claimed, rescheduled) events keep their age; the delivered oldest leaves.
    for event in storage.webhook_claim(10, 30_000):
        assert storage.webhook_retry(event.id, event.lease, 60_000)
    assert storage.webhook_delivered("evt_a")
    count, age = storage.webhook_stats()
    assert count == 2 and 0 <= age < 250
    assert storage.webhook_delivered("evt_b") and storage.webhook_delivered("evt_c")
    assert storage.webhook_stats() == (0, None)


def test_sqlite_file_without_the_outbox_created_index_gains_it_at_open(tmp_path):
    path = str(tmp_path / "old.db")
    SqliteStorage(path).close()
    for version in (1, 2):  # a file of the first release, and one of schema 2 before the index
        with sqlite3.connect(path) as conn:
            conn.execute("DROP INDEX webhook_outbox_created")
            conn.execute(f"PRAGMA user_version = {version}")
        store = SqliteStorage(path)
        store.message_create(f"m{version}", _sent_record(f"m{version}"), 60_000)
        _changed(store, f"m{version}", "sent", f"evt_{version}")
        assert store.webhook_stats()[0] == version
        store.close()
        with sqlite3.connect(path) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            plan = " ".join(str(row) for row in conn.execute(
                "EXPLAIN QUERY PLAN " + sqlite_backend._OUTBOX_STATS, {"now": 0}))
            assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_backend.SCHEMA_VERSION
        assert "webhook_outbox_created" in names
        # The stats read the index, never the table with its records.
        assert "USING COVERING INDEX webhook_outbox_created" in plan and "SCAN webhook_outbox\n" not in plan


def _damage_outbox_row(storage, event_id: str, how: str) -> None:
    """Make the stored form of one outbox event unreadable, as a disk fault or a hand edit would."""
    if isinstance(storage, SqliteStorage):
        column, value = {"record": ("record", "{not json"), "array": ("record", "[1, 2]"),
                         "created": ("created", "yesterday")}[how]
        with sqlite3.connect(storage.path) as conn:
            conn.execute(f"UPDATE webhook_outbox SET {column} = ? WHERE id = ?", (value, event_id))
    else:
        from sms_service.storage.redis import OUTBOX_EVENT_PREFIX

        field, value = {"record": ("record", "{not json"), "array": ("record", "[1, 2]"),
                        "created": ("created", "yesterday")}[how]
        storage.client.hset(OUTBOX_EVENT_PREFIX + event_id, field, value)


@pytest.mark.parametrize("how", ["record", "array", "created"])
def test_an_unreadable_outbox_event_is_removed_and_never_fails_its_batch(shared_storage_uri, how, caplog):
    storage = open_storage(shared_storage_uri)
    try:
        for sid in ("a", "b", "c"):
            storage.message_create(sid, _sent_record(sid), 60_000)
            _changed(storage, sid, "sent", f"evt_{sid}")
        _damage_outbox_row(storage, "evt_b", how)
        with caplog.at_level("ERROR", logger="sms_service.storage"):
            claimed = storage.webhook_claim(10, 30_000)
        assert sorted(e.id for e in claimed) == ["evt_a", "evt_c"]
        assert storage.webhook_stats()[0] == 2  # the damaged one is gone, not leased to come back
        (line,) = [r for r in caplog.records if "unreadable" in r.getMessage()]
        assert line.webhook_id == "evt_b"
        for event in claimed:
            assert storage.webhook_delivered(event.id)
        assert storage.webhook_stats() == (0, None)
    finally:
        storage.close()
