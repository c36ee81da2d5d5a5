"""sqlite:// storage: an embedded file shared by every worker on one host, kept across restarts.

Runs on the stdlib `sqlite3`: WAL mode (readers never wait for the writer), one short
``BEGIN IMMEDIATE`` transaction per operation (the write lock is taken up front, so two
transactions never deadlock on an upgrade), one connection per process, and a busy
timeout: a lock held longer than that raises, and the caller answers 503 (fail closed).
The clock is the host's wall clock, shared by every process and kept across restarts.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sms_service.status import events, listing, model
from sms_service.storage import base
from sms_service.storage.base import BudgetAsk, CircuitAsk, GuardsAnswer, OutboxEvent, Storage

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 3.0
BUSY_RETRY_S = 0.0002
# How long opening may wait for another process that is creating the file or switching
# it to WAL: that switch can answer "locked" at once, without the busy handler.
OPEN_PATIENCE_S = 15.0
# The moving window counts hits per bucket, WINDOW_BUCKETS buckets per window, so its
# cost stays the same however many hits the window holds.
WINDOW_BUCKETS = 100
SWEEP_EVERY_MS = 10_000
CHECKPOINT_EVERY_S = 1.0

# Stamped in the file (PRAGMA user_version); a change of the tables below is a new version.
SCHEMA_VERSION = 3
# Versions a file may have that this one upgrades in place, because the versions between
# only added tables (CREATE TABLE IF NOT EXISTS below creates them; nothing is altered).
# A version that alters or drops must bring its own migration step instead.
_UPGRADABLE_BY_ADDING_TABLES = frozenset({1, 2})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS window_buckets (
  key TEXT NOT NULL, bucket INTEGER NOT NULL, hits INTEGER NOT NULL, expires REAL NOT NULL,
  PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streaks (
  key TEXT PRIMARY KEY, k INTEGER NOT NULL, last REAL NOT NULL, expires REAL NOT NULL, token TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_expiry ON messages (expires);
CREATE TABLE IF NOT EXISTS suppressions (
  number TEXT PRIMARY KEY, source TEXT NOT NULL, since INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_outbox (
  id TEXT PRIMARY KEY, message_key TEXT NOT NULL, record TEXT NOT NULL, created REAL NOT NULL,
  due REAL NOT NULL, attempts INTEGER NOT NULL, lease TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (due);
CREATE INDEX IF NOT EXISTS webhook_outbox_created ON webhook_outbox (created);
CREATE TABLE IF NOT EXISTS circuits (
  key TEXT PRIMARY KEY, failures INTEGER NOT NULL, retry_at REAL NOT NULL, lease_until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS message_index (
  key TEXT PRIMARY KEY, owner TEXT NOT NULL, at INTEGER NOT NULL, status TEXT, provider TEXT,
  template TEXT, receiver_hash TEXT, country TEXT, check_at REAL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_index_owner_at ON message_index (owner, at, key, status, provider);
CREATE INDEX IF NOT EXISTS message_index_at ON message_index (at, key, status, provider);
CREATE INDEX IF NOT EXISTS message_index_receiver ON message_index (receiver_hash, at, key)
  WHERE receiver_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS message_index_template ON message_index (template, at, key)
  WHERE template IS NOT NULL;
CREATE INDEX IF NOT EXISTS message_index_check ON message_index (check_at) WHERE check_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS templates (
  name TEXT PRIMARY KEY, latest INTEGER NOT NULL, archived INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS template_versions (
  name TEXT NOT NULL, version INTEGER NOT NULL, content TEXT NOT NULL, created INTEGER NOT NULL,
  PRIMARY KEY (name, version)) WITHOUT ROWID;
"""

# (The time indexes carry status and provider, so those filters read no table row: two
# more indexes of their own doubled the cost of a send's insert.)
# The listing's index follows the messages table by triggers: every write of a record
# (the send's, a callback's, a merge, the sweep's delete) keeps its row right, inside the
# same statement, so no code path can forget it and /send stays one statement. Orphans
# are not listed. `at` is the send's dateEvent in Unix ms (julianday keeps the ms);
# `check_at` is when the reconciler looks next, kept only while the status is not final.
_INDEX_ROW = """
INSERT INTO message_index (key, owner, at, status, provider, template, receiver_hash, country, check_at)
SELECT {row}.key, coalesce(json_extract({row}.value, '$.owner'), ''),
  coalesce(CAST(round((julianday(json_extract({row}.value, '$.dateEvent')) - 2440587.5) * 86400000.0)
                AS INTEGER), 0),
  json_extract({row}.value, '$.status'), json_extract({row}.value, '$.provider'),
  json_extract({row}.value, '$.template.name'), json_extract({row}.value, '$.receiverHash'),
  json_extract({row}.value, '$.country'),
  CASE WHEN json_extract({row}.value, '$.status') IN ('delivered', 'undelivered', 'failed', 'unknown')
       THEN NULL ELSE json_extract({row}.value, '$.checkAt') END
{source} WHERE json_extract({row}.value, '$.orphan') IS NULL
ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, at = excluded.at, status = excluded.status,
  provider = excluded.provider, template = excluded.template, receiver_hash = excluded.receiver_hash,
  country = excluded.country, check_at = excluded.check_at
"""
# (An upsert, not INSERT OR REPLACE: inside a trigger the outer statement's conflict rule wins.)
_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS message_index_insert AFTER INSERT ON messages BEGIN "
    + _INDEX_ROW.format(row="NEW", source="") + "; END",
    "CREATE TRIGGER IF NOT EXISTS message_index_update AFTER UPDATE OF value ON messages BEGIN "
    + _INDEX_ROW.format(row="NEW", source="") + "; END",
    "CREATE TRIGGER IF NOT EXISTS message_index_delete AFTER DELETE ON messages BEGIN "
    "DELETE FROM message_index WHERE key = OLD.key; END",
)
# A file of an older schema gains the index of the records it holds (once, at open).
_INDEX_BACKFILL = _INDEX_ROW.format(row="messages", source="FROM messages")


# Admits a hit by counting it, only while the window's buckets hold fewer than the limit;
# returns a row when admitted, none when refused.
# Every bucket that may hold a hit of the last window counts whole: a hit counts until
# its bucket has left the window, so the count errs high, never low. (Times are positive,
# so CAST is floor.)
_FIRST_BUCKET = "CAST((:now - :window) / :size AS INTEGER)"
_WINDOW_HIT = f"""
INSERT INTO window_buckets (key, bucket, hits, expires)
SELECT :key, CAST(:now / :size AS INTEGER), 1, (CAST(:now / :size AS INTEGER) + 1) * :size + :window
WHERE (SELECT coalesce(sum(hits), 0) FROM window_buckets
       WHERE key = :key AND bucket >= {_FIRST_BUCKET}) < :limit
ON CONFLICT (key, bucket) DO UPDATE SET hits = hits + 1
RETURNING hits
"""  # noqa: S608  (no input is formatted in: _FIRST_BUCKET is a constant)
_WINDOW_BUCKETS = f"""
SELECT bucket, hits FROM window_buckets WHERE key = :key AND bucket >= {_FIRST_BUCKET} ORDER BY bucket
"""  # noqa: S608

# The streak moves on (or starts again) only when its wait has passed; the row always
# comes back, carrying our token exactly when this message was accepted. SET reads the
# row as it was before the update.
_ADMIT = "(:now - last >= :reset OR :now - last >= 1000 * (1 << (k - 1)))"
_DELAY = f"""
INSERT INTO streaks (key, k, last, expires, token) VALUES (:key, 1, :now, :now + :reset, :token)
ON CONFLICT (key) DO UPDATE SET
  k = CASE WHEN :now - last >= :reset THEN 1 WHEN {_ADMIT} THEN k + 1 ELSE k END,
  token = CASE WHEN {_ADMIT} THEN :token ELSE token END,
  expires = CASE WHEN {_ADMIT} THEN :now + :reset ELSE expires END,
  last = CASE WHEN {_ADMIT} THEN :now ELSE last END
RETURNING token, k, last
"""  # noqa: S608  (no input is formatted in: _ADMIT is a constant)

# A live record stays as it is; a missing or expired one becomes ours. The stored value
# always comes back.
_RESERVE = """
INSERT INTO records (key, value, expires) VALUES (:key, :value, :now + :ttl)
ON CONFLICT (key) DO UPDATE SET
  value = CASE WHEN expires <= :now THEN excluded.value ELSE value END,
  expires = CASE WHEN expires <= :now THEN excluded.expires ELSE expires END
RETURNING value
"""
_SWAP = """
UPDATE records SET value = :value, expires = :now + :ttl
WHERE key = :key AND value = :expected AND expires > :now
"""
_DELETE = "DELETE FROM records WHERE key = :key AND value = :expected AND expires > :now"

# The send's record on the hot path: one statement when nothing is there yet (nearly
# always); a live or expired row under the key takes the transaction below. Records
# live for days, so the table grows large: the index on `expires` keeps the periodic
# sweep from reading all of it, under the lock, inside some request.
_MESSAGE_INSERT = """
INSERT INTO messages (key, value, expires) VALUES (:key, :value, :now + :ttl)
ON CONFLICT (key) DO NOTHING
"""
_MESSAGE_READ = "SELECT value FROM messages WHERE key = :key AND expires > :now"
_MESSAGE_WRITE = """
INSERT INTO messages (key, value, expires) VALUES (:key, :value, :now + :ttl)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires
"""

# The suppression list never expires (the sweep leaves it alone): a first opt-out stays.
_SUPPRESS_ADD = """
INSERT INTO suppressions (number, source, since) VALUES (:number, :source, CAST(:now AS INTEGER))
ON CONFLICT (number) DO NOTHING
"""
_SUPPRESS_REMOVE = "DELETE FROM suppressions WHERE number = :number"
_SUPPRESS_GET = "SELECT source, since FROM suppressions WHERE number = :number"
_SUPPRESS_ALL = "SELECT number, source, since FROM suppressions ORDER BY number"

# The status webhook outbox (SPEC section 11). A claim moves the due time past the lease:
# a worker that dies mid-attempt leaves the event due again when the lease runs out.
_OUTBOX_ADD = """
INSERT INTO webhook_outbox (id, message_key, record, created, due, attempts, lease)
VALUES (:id, :key, :record, :now, :now, 0, '')
"""
_OUTBOX_ANY_DUE = "SELECT 1 FROM webhook_outbox WHERE due <= :now LIMIT 1"
# A damaged `created` (not a number) gives no age, and the claim then removes the event.
_OUTBOX_CLAIM = """
UPDATE webhook_outbox SET due = :now + :lease_ms, lease = lower(hex(randomblob(16)))
WHERE id IN (SELECT id FROM webhook_outbox WHERE due <= :now ORDER BY due LIMIT :limit)
RETURNING id, message_key, record, attempts,
  CASE WHEN typeof(created) IN ('real', 'integer') THEN :now - created END, lease
"""
# Bounds (issue 22): events past their retry period, and the oldest beyond the cap, are
# dropped by a claim unless an attempt holds them (a live lease). Each step reads an index.
_OUTBOX_ANY_BEYOND = """
SELECT EXISTS (SELECT 1 FROM webhook_outbox WHERE created <= :now - :retry_for),
       EXISTS (SELECT 1 FROM webhook_outbox ORDER BY created LIMIT 1 OFFSET :cap)
"""
_OUTBOX_DROP_EXPIRED = """
DELETE FROM webhook_outbox WHERE id IN (
  SELECT id FROM webhook_outbox WHERE created <= :now - :retry_for AND NOT (lease != '' AND due > :now)
  ORDER BY created LIMIT :batch)
RETURNING id, message_key, record, attempts, :now - created
"""
_OUTBOX_COUNT = "SELECT count(*) FROM webhook_outbox"
_OUTBOX_DROP_OLDEST = """
DELETE FROM webhook_outbox WHERE id IN (
  SELECT id FROM webhook_outbox WHERE NOT (lease != '' AND due > :now) ORDER BY created LIMIT :over)
RETURNING id, message_key, record, attempts, :now - created
"""
_OUTBOX_DELIVERED = "DELETE FROM webhook_outbox WHERE id = :id"
_OUTBOX_DROP = "DELETE FROM webhook_outbox WHERE id = :id AND lease = :lease"
_OUTBOX_RETRY = """
UPDATE webhook_outbox SET due = :now + :delay, attempts = attempts + 1, lease = ''
WHERE id = :id AND lease = :lease
"""
_OUTBOX_EXHAUSTED = "DELETE FROM webhook_outbox WHERE id = :id AND lease = :lease RETURNING message_key"
_MESSAGE_KEEP_TTL = "UPDATE messages SET value = :value WHERE key = :key AND expires > :now"
# Two subqueries, so that min() is one step down the index on created and count(*) reads
# an index (a few bytes a row), never the table with its records.
_OUTBOX_STATS = ("SELECT (SELECT count(*) FROM webhook_outbox), "
                 ":now - (SELECT min(created) FROM webhook_outbox)")

# Failover circuits (a handful of rows, never swept): retry_at 0 means closed.
_CIRCUIT_READ = "SELECT failures, retry_at, lease_until FROM circuits WHERE key = :key"
_CIRCUIT_WRITE = """
INSERT INTO circuits (key, failures, retry_at, lease_until) VALUES (:key, :failures, :retry_at, :lease_until)
ON CONFLICT (key) DO UPDATE SET
  failures = excluded.failures, retry_at = excluded.retry_at, lease_until = excluded.lease_until
"""

T = TypeVar("T")


def _now_ms() -> float:
    return time.time() * 1000


def _past_other_writers(attempt: Callable[[], T]) -> T:
    """Run `attempt`, trying again while another process holds the write lock, up to BUSY_TIMEOUT_S.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ms and more between tries: a worker
    whose storage waited that long at every collision with another worker ran at half
    its speed. A write that met the lock changed nothing (the lock is taken before any
    change, and a transaction is rolled back), so trying it again is safe.
    """
    deadline = None
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + BUSY_TIMEOUT_S
            elif now >= deadline:
                raise
            time.sleep(BUSY_RETRY_S)


def _in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], None]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _outbox_record(value: object) -> dict[str, Any]:
    """An outbox row's record; ValueError (or TypeError) when it is not a JSON object."""
    record = json.loads(value)  # type: ignore[arg-type]
    if not isinstance(record, dict):
        raise ValueError("an outbox record is not a JSON object")
    return record


def _log_unreadable_event(event_id: object) -> None:
    log.error("status webhook event unreadable: removed from the outbox",
              extra={"webhook_id": str(event_id)[:100]})


def _enqueue(conn: sqlite3.Connection, now: float, event_id: str, key: str, record: dict[str, Any]) -> None:
    """Put one webhook event in the outbox, inside the caller's transaction."""
    conn.execute(_OUTBOX_ADD, {"id": event_id, "key": key, "now": now,
                               "record": json.dumps(events.snapshot(record), separators=(",", ":"))})


def _create_tables(conn: sqlite3.Connection) -> None:
    """Create the tables of a new file, upgrade an older one, or check that it has this schema.

    Raises `sqlite3.DatabaseError` for a file this version cannot read (newer, or
    unversioned): it is never altered or emptied, since it holds idempotency records and
    the opt-out list. An older file gains the new tables and keeps every row.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    upgradable = version in _UPGRADABLE_BY_ADDING_TABLES
    if version != SCHEMA_VERSION and not upgradable and (version or tables):
        found = f"schema {version}" if version else "an unversioned schema (a development build)"
        raise sqlite3.DatabaseError(
            f"the file has {found}, this sms-service reads schema {SCHEMA_VERSION}; "
            "keep it aside and start with a new file"
        )
    # Statement by statement: executescript would commit the open transaction first.
    for statement in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(statement)
    for trigger in _TRIGGERS:
        conn.execute(trigger)
    if upgradable and version != SCHEMA_VERSION:
        conn.execute(_INDEX_BACKFILL)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class SqliteStorage(Storage):
    """State in one SQLite file, for any number of worker processes on one host."""

    def __init__(self, path: str) -> None:
        self.path = path
        # One connection per process, used under the lock below: every statement runs
        # under that lock anyway, and one connection keeps one page cache warm. A
        # connection per thread (64 of them) re-read its pages after every other
        # thread's write and held 64 page caches: measured, 80 -> 68 MB per worker
        # after load, 1.29x -> 1.19x the naive relay's CPU (16 threads, one process).
        self._shared: sqlite3.Connection | None = None
        self._shared_pid = 0
        self._connections: list[sqlite3.Connection] = []
        # One transaction at a time per process: threads queue on this lock, which wakes
        # them at once, instead of polling SQLite's busy handler in sleeps of milliseconds.
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self._checkpointer_pid = 0
        self._closed = threading.Event()
        self._create()

    # -- connections -------------------------------------------------------------------

    def _create(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        # The file holds receipts (and, later, opted-out numbers): readable by us alone.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        deadline = time.monotonic() + OPEN_PATIENCE_S
        while True:
            try:
                conn = self._connect()
                try:
                    if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                        raise sqlite3.OperationalError("could not switch the database to WAL mode")
                    _in_transaction(conn, _create_tables)
                finally:
                    conn.close()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            # No busy handler of SQLite's own: _past_other_writers waits instead.
            self.path, timeout=0, isolation_level=None, check_same_thread=False,
        )
        # WAL with synchronous=NORMAL never loses the database, and fsyncs only at
        # checkpoints: a power cut may forget the last transactions, a crash does not.
        # Checkpoints (copying the WAL back, with an fsync) are the checkpointer thread's
        # work, not a request's: one in the middle of a send held every other send up.
        # (A first statement may meet a lock while another process opens the file.)
        _past_other_writers(lambda: conn.execute("PRAGMA synchronous=NORMAL").fetchall())
        _past_other_writers(lambda: conn.execute("PRAGMA wal_autocheckpoint=0").fetchall())
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = self._shared
        if conn is None or self._shared_pid != os.getpid():
            # A connection must never cross a fork: each process opens its own.
            with self._lock:
                if self._shared is None or self._shared_pid != os.getpid():
                    self._shared, self._shared_pid = self._connect(), os.getpid()
                    self._connections.append(self._shared)
                conn = self._shared
            self._start_checkpointer()
        return conn

    def _start_checkpointer(self) -> None:
        with self._lock:
            if self._checkpointer_pid == os.getpid():
                return
            self._checkpointer_pid = os.getpid()  # one per process: threads do not survive a fork
        threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpointer", daemon=True).start()

    def _checkpoint_loop(self) -> None:
        conn = self._connect()
        # PASSIVE never waits for, nor blocks, the writers; another process's
        # checkpointer may be at work at the same moment, which is fine.
        while not self._closed.wait(CHECKPOINT_EVERY_S):
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                pass  # the next round tries again; requests never depend on it
        conn.close()

    def _execute(self, sql: str, params: dict[str, Any]) -> tuple[list[tuple], int, float]:
        """Run one statement to its end: its rows, the rows it changed, and its `:now`.

        The time is read under the lock, so the statements of one process see it only
        move forward.
        """
        conn = self._conn()
        with self._lock:
            started = _now_ms()
            if started >= self._next_sweep:
                self._next_sweep = started + SWEEP_EVERY_MS
                _past_other_writers(lambda: self._sweep(conn, started))

            def attempt() -> tuple[list[tuple], int, float]:
                now = params["now"] = _now_ms()
                # Fetched under the lock: a statement's transaction ends with its last row.
                cursor = conn.execute(sql, params)
                return cursor.fetchall(), cursor.rowcount, now

            return _past_other_writers(attempt)

    def _transaction(self, work: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run `work(conn, now)` in one BEGIN IMMEDIATE transaction, under the process lock."""
        conn = self._conn()
        result: list[T] = []

        def attempt() -> None:
            _in_transaction(conn, lambda conn: result.append(work(conn, _now_ms())))

        with self._lock:
            _past_other_writers(attempt)
        return result[-1]

    @staticmethod
    def _sweep(conn: sqlite3.Connection, now: float) -> None:
        def sweep(conn: sqlite3.Connection) -> None:
            for table in ("window_buckets", "streaks", "records", "messages"):
                conn.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,))  # noqa: S608  (fixed names)

        _in_transaction(conn, sweep)

    # -- operations --------------------------------------------------------------------
    #
    # Each operation is ONE statement. A statement that writes takes the write lock
    # before it reads anything and is its own transaction, so it is exactly a short
    # BEGIN IMMEDIATE transaction; one statement instead of five (BEGIN, read, write,
    # COMMIT...) hands the GIL to the other threads once instead of five times, which
    # measured 20% of a busy worker's throughput.

    def window_acquire(self, key: str, limit: int, window_ms: int) -> int:
        size = max(1, math.ceil(window_ms / WINDOW_BUCKETS))
        # A new window length never reads the buckets of another size.
        params = {"key": f"{key}:{size}", "size": size, "window": window_ms, "limit": limit}
        admitted, _, _ = self._execute(_WINDOW_HIT, params)
        if admitted:
            return 0
        # Refused (the rare path): the oldest buckets leave first; wait until enough have.
        rows, _, now = self._execute(_WINDOW_BUCKETS, params)
        total = sum(hits for _, hits in rows)
        for bucket, hits in rows:
            total -= hits
            if total < limit:
                return max(1, math.ceil((bucket + 1) * size + window_ms - now))
        return max(1, window_ms)

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        token = os.urandom(8).hex()
        ((got_token, k, last),), _, now = self._execute(
            _DELAY, {"key": key, "reset": reset_after_ms, "token": token})
        if got_token == token:
            return 0
        return max(1, math.ceil(last + 1000 * 2 ** (k - 1) - now))

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        ((stored,),), _, _ = self._execute(_RESERVE, {"key": key, "value": value, "ttl": ttl_ms})
        # Values carry a nonce: the stored value is ours exactly when we reserved it.
        return None if stored == value else stored

    def record_swap(self, key: str, expected: str, value: str, ttl_ms: int) -> bool:
        params = {"key": key, "expected": expected, "value": value, "ttl": ttl_ms}
        return self._execute(_SWAP, params)[1] == 1

    def record_delete(self, key: str, expected: str) -> bool:
        return self._execute(_DELETE, {"key": key, "expected": expected})[1] == 1

    def message_create(self, key: str, record: dict[str, Any], ttl_ms: int,
                       event_id: str | None = None) -> bool:
        value = json.dumps(record, separators=(",", ":"))
        if self._execute(_MESSAGE_INSERT, {"key": key, "value": value, "ttl": ttl_ms})[1] == 1:
            return False

        def merge(conn: sqlite3.Connection, now: float) -> bool:
            row = conn.execute(_MESSAGE_READ, {"key": key, "now": now}).fetchone()
            merged_orphan = False
            if row is not None:
                existing = json.loads(row[0])
                if not existing.get("orphan"):
                    return False
                merged_orphan = True
                merged_record = model.merge(json.loads(value), existing)
                merged = json.dumps(merged_record, separators=(",", ":"))
                if event_id and events.makes_event(record.get("status"), merged_record):
                    _enqueue(conn, now, event_id, key, merged_record)
            else:  # an expired row: replaced
                merged = value
            conn.execute(_MESSAGE_WRITE, {"key": key, "value": merged, "now": now, "ttl": ttl_ms})
            return merged_orphan

        return self._transaction(merge)

    def message_update(self, key: str, entry: dict[str, Any], orphan: dict[str, Any],
                       ttl_ms: int, event_id: str | None = None) -> tuple[str | None, dict[str, Any]]:
        def update(conn: sqlite3.Connection, now: float) -> tuple[str | None, dict[str, Any]]:
            row = conn.execute(_MESSAGE_READ, {"key": key, "now": now}).fetchone()
            if row is None:
                before, record = None, model.orphan_with(orphan, entry)
            else:
                record = json.loads(row[0])
                before = record.get("status")
                model.apply_entry(record, entry)
            value = json.dumps(record, separators=(",", ":"))
            conn.execute(_MESSAGE_WRITE, {"key": key, "value": value, "now": now, "ttl": ttl_ms})
            if event_id and events.makes_event(before, record):
                _enqueue(conn, now, event_id, key, record)
            return before, record

        return self._transaction(update)

    def message_get(self, key: str) -> dict[str, Any] | None:
        rows, _, _ = self._execute(_MESSAGE_READ, {"key": key})
        return json.loads(rows[0][0]) if rows else None

    def suppression_add(self, number: str, source: str) -> bool:
        return self._execute(_SUPPRESS_ADD, {"number": number, "source": source})[1] == 1

    def suppression_remove(self, number: str) -> bool:
        return self._execute(_SUPPRESS_REMOVE, {"number": number})[1] == 1

    def suppression_get(self, number: str) -> tuple[str, int] | None:
        rows, _, _ = self._execute(_SUPPRESS_GET, {"number": number})
        return (rows[0][0], int(rows[0][1])) if rows else None

    def suppression_all(self) -> list[tuple[str, str, int]]:
        rows, _, _ = self._execute(_SUPPRESS_ALL, {})
        return [(number, source, int(since)) for number, source, since in rows]

    def ping(self) -> bool:
        try:
            conn = self._conn()
            with self._lock:
                conn.execute("SELECT 1 FROM records LIMIT 1").fetchall()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        self._closed.set()
        for conn in self._connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._connections.clear()
        self._shared = None

    # -- segment budgets and estimates (SPEC section 14) --------------------------------
    #
    # A budget is a moving window of the rate limit's kind (buckets in window_buckets,
    # under keys of their own), weighted: a bucket holds the units admitted in it.

    def budget_spend(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int, float]:
        params = _budget_params(key, cost, limit, window_ms)
        # One statement, as window_acquire: a transaction of four cost a fifth of the throughput.
        admitted, _, now = self._execute(_BUDGET_SPEND, params)
        if admitted:
            return 0, int(admitted[0][0]), now
        # Refused (the rare path): read the buckets for the wait.
        rows, _, now = self._execute(_WINDOW_BUCKETS, params)
        return (*_budget_answer(rows, params, now), 0.0)

    def budget_peek(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int]:
        params = _budget_params(key, cost, limit, window_ms)
        rows, _, now = self._execute(_WINDOW_BUCKETS, params)
        return _budget_answer(rows, params, now)

    def delay_peek(self, key: str, reset_after_ms: int) -> int:
        rows, _, now = self._execute(_DELAY_PEEK, {"key": key})
        if not rows:
            return 0
        k, last = rows[0]
        wait = 1000 * 2 ** (k - 1)
        if now - last >= reset_after_ms or now - last >= wait:
            return 0
        return max(1, math.ceil(last + wait - now))


    # -- status webhook outbox (SPEC section 11) -----------------------------------------

    def webhook_claim(self, limit: int, lease_ms: int, retry_for_ms: float | None = None,
                      max_backlog: int | None = None) -> list[OutboxEvent]:
        dropped = self._drop_beyond_bounds(retry_for_ms, max_backlog)
        # Every worker polls: nothing due costs one read, never the write lock.
        if limit <= 0 or not self._execute(_OUTBOX_ANY_DUE, {})[0]:
            return dropped
        rows, _, _ = self._execute(_OUTBOX_CLAIM, {"limit": limit, "lease_ms": lease_ms})
        claimed = []
        for event_id, key, record, attempts, age, lease in rows:
            try:
                claimed.append(OutboxEvent(str(event_id), str(key), _outbox_record(record), int(attempts),
                                           float(age), str(lease)))
            except (TypeError, ValueError, UnicodeDecodeError):
                # Removed under our own lease: no other worker holds it now.
                self._execute(_OUTBOX_DROP, {"id": event_id, "lease": lease})
                _log_unreadable_event(event_id)
        return dropped + claimed

    def _drop_beyond_bounds(self, retry_for_ms: float | None, max_backlog: int | None) -> list[OutboxEvent]:
        if retry_for_ms is None and max_backlog is None:
            return []
        # Within bounds (nearly always): one read, never the write lock.
        bounds = {"retry_for": math.inf if retry_for_ms is None else retry_for_ms,
                  "cap": -1 if max_backlog is None else max_backlog}
        ((expired, over),), _, _ = self._execute(_OUTBOX_ANY_BEYOND, bounds)
        if not (expired and retry_for_ms is not None) and not (over and max_backlog is not None):
            return []

        def drop(conn: sqlite3.Connection, now: float) -> list[OutboxEvent]:
            rows: list[tuple[tuple, str]] = []
            if retry_for_ms is not None:
                found = conn.execute(_OUTBOX_DROP_EXPIRED, {"now": now, "retry_for": retry_for_ms,
                                                            "batch": base.OUTBOX_DROP_BATCH}).fetchall()
                rows += [(row, "expired") for row in found]
            if max_backlog is not None and len(rows) < base.OUTBOX_DROP_BATCH:
                (count,) = conn.execute(_OUTBOX_COUNT).fetchone()
                excess = min(count - max_backlog, base.OUTBOX_DROP_BATCH - len(rows))
                if excess > 0:
                    found = conn.execute(_OUTBOX_DROP_OLDEST, {"now": now, "over": excess}).fetchall()
                    rows += [(row, "backlog") for row in found]
            return [self._dropped(conn, now, row, reason) for row, reason in rows]

        return [event for event in self._transaction(drop) if event is not None]

    @staticmethod
    def _dropped(conn: sqlite3.Connection, now: float, row: tuple, reason: str) -> OutboxEvent | None:
        """Mark one dropped event's record, inside the drop's transaction; its OutboxEvent."""
        event_id, key, value, attempts, age = row
        try:
            record = _outbox_record(value)
        except (TypeError, ValueError, UnicodeDecodeError):
            _log_unreadable_event(event_id)
            return None
        message = conn.execute(_MESSAGE_READ, {"key": key, "now": now}).fetchone()
        if message is not None:
            stored = json.loads(message[0])
            events.add_failure(stored, events.dropped_failure(
                str(event_id), record.get("status"), int(attempts), reason, model.timestamp()))
            conn.execute(_MESSAGE_KEEP_TTL, {"key": key, "now": now,
                                             "value": json.dumps(stored, separators=(",", ":"))})
        return OutboxEvent(str(event_id), str(key), record, int(attempts), float(age or 0), "", reason)

    def webhook_delivered(self, event_id: str) -> bool:
        return self._execute(_OUTBOX_DELIVERED, {"id": event_id})[1] == 1

    def webhook_retry(self, event_id: str, lease: str, delay_ms: int) -> bool:
        return self._execute(_OUTBOX_RETRY, {"id": event_id, "lease": lease, "delay": delay_ms})[1] == 1

    def webhook_exhausted(self, event_id: str, lease: str, failure: dict[str, Any]) -> bool:
        def drop(conn: sqlite3.Connection, now: float) -> bool:
            row = conn.execute(_OUTBOX_EXHAUSTED, {"id": event_id, "lease": lease}).fetchone()
            if row is None:
                return False
            message = conn.execute(_MESSAGE_READ, {"key": row[0], "now": now}).fetchone()
            if message is not None:
                record = json.loads(message[0])
                events.add_failure(record, failure)
                conn.execute(_MESSAGE_KEEP_TTL, {"key": row[0], "now": now,
                                                 "value": json.dumps(record, separators=(",", ":"))})
            return True

        return self._transaction(drop)

    def webhook_stats(self) -> tuple[int, float | None]:
        ((count, age),), _, _ = self._execute(_OUTBOX_STATS, {})
        return int(count), (None if age is None else float(age))


    # -- circuit breakers of provider failover (SPEC section 13) ------------------------

    def circuit_admit(self, key: str, lease_ms: int) -> tuple[str, int]:
        # Closed (nearly always): one read, no write lock. Only an open circuit takes the
        # transaction in which one caller claims the trial.
        rows, _, _ = self._execute(_CIRCUIT_READ, {"key": key})
        if not rows or not rows[0][1]:
            return "closed", int(rows[0][0]) if rows else 0

        def claim(conn: sqlite3.Connection, now: float) -> tuple[str, int]:
            row = conn.execute(_CIRCUIT_READ, {"key": key}).fetchone()
            if row is None or not row[1]:
                return "closed", int(row[0]) if row else 0
            failures, retry_at, lease_until = row
            wait = max(retry_at, lease_until) - now
            if wait > 0:
                return "open", max(1, math.ceil(wait))
            conn.execute(_CIRCUIT_WRITE, {"key": key, "failures": failures, "retry_at": retry_at,
                                          "lease_until": now + lease_ms})
            return "trial", 0

        return self._transaction(claim)

    def circuit_record(self, key: str, ok: bool, trial: bool, threshold: int,
                       reset_after_ms: int) -> tuple[str, str]:
        if ok:
            # Every success of a multi-provider route lands here: closed and healthy (nearly
            # always) is one plain read, no write lock. A failure recorded after this read
            # came after the success, which is consecutive enough.
            rows, _, _ = self._execute(_CIRCUIT_READ, {"key": key})
            if not rows or not (rows[0][0] or rows[0][1]):
                return "closed", "closed"

        def record(conn: sqlite3.Connection, now: float) -> tuple[str, str]:
            row = conn.execute(_CIRCUIT_READ, {"key": key}).fetchone()
            failures, retry_at, lease_until = row or (0, 0.0, 0.0)
            before = "open" if retry_at else "closed"
            if ok:
                failures, retry_at, lease_until = 0, 0.0, 0.0
            elif trial:
                failures, retry_at, lease_until = failures + 1, now + reset_after_ms, 0.0
            else:
                failures += 1
                if not retry_at and failures >= threshold:
                    retry_at = now + reset_after_ms
            conn.execute(_CIRCUIT_WRITE, {"key": key, "failures": failures, "retry_at": retry_at,
                                          "lease_until": lease_until})
            return before, "open" if retry_at else "closed"

        return self._transaction(record)

    def circuit_get(self, key: str) -> tuple[str, int, int]:
        rows, _, now = self._execute(_CIRCUIT_READ, {"key": key})
        if not rows:
            return "closed", 0, 0
        failures, retry_at, lease_until = rows[0]
        if not retry_at:
            return "closed", int(failures), 0
        wait = max(retry_at, lease_until) - now  # a trial in flight keeps it open, as circuit_admit says
        if wait > 0:
            return "open", int(failures), max(1, math.ceil(wait))
        return "half-open", int(failures), 0

    # -- review fixes: taking back a budget spend that sent nothing ---------------------

    def budget_refund(self, key: str, cost: int, window_ms: int, at: float) -> bool:
        # The spend went into the bucket of its time: one statement takes it back there.
        params = {**_budget_params(key, cost, 1, window_ms), "at": at}
        return self._execute(_BUDGET_REFUND, params)[1] == 1

    # -- templates (SPEC section 16): never swept, never expire --------------------------

    def template_put(self, name: str, content: str) -> tuple[int, bool]:
        def put(conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
            row = conn.execute(_TEMPLATE_LATEST, {"name": name}).fetchone()
            if row is not None and not row[1] and row[2] == content:
                return int(row[0]), False
            number = int(row[0]) + 1 if row is not None else 1
            conn.execute(_TEMPLATE_ADD_VERSION, {"name": name, "version": number, "content": content,
                                                 "created": int(now)})
            conn.execute(_TEMPLATE_SET, {"name": name, "latest": number, "archived": 0})
            return number, True

        return self._transaction(put)

    def template_version(self, name: str, version: int | None) -> tuple[int, str, int, bool] | None:
        rows, _, _ = self._execute(_TEMPLATE_VERSION, {"name": name, "version": version})
        if not rows:
            return None
        number, content, created, archived = rows[0]
        return int(number), content, int(created), bool(archived)

    def template_versions(self, name: str) -> tuple[bool, list[tuple[int, str, int]]] | None:
        rows, _, _ = self._execute(_TEMPLATE_VERSIONS, {"name": name})
        if not rows:
            return None
        return bool(rows[0][0]), [(int(n), content, int(created)) for _, n, content, created in rows]

    def template_archive(self, name: str) -> bool:
        return self._execute(_TEMPLATE_ARCHIVE, {"name": name})[1] == 1

    def template_names(self) -> list[str]:
        rows, _, _ = self._execute(_TEMPLATE_NAMES, {})
        return [name for (name,) in rows]

    def template_restore(self, name: str, versions: list[tuple[int, str, int]], archived: bool) -> bool:
        def restore(conn: sqlite3.Connection, now: float) -> bool:
            if conn.execute(_TEMPLATE_LATEST, {"name": name}).fetchone() is not None:
                return False
            for number, content, created in versions:
                conn.execute(_TEMPLATE_ADD_VERSION, {"name": name, "version": int(number), "content": content,
                                                     "created": int(created)})
            conn.execute(_TEMPLATE_SET, {"name": name, "latest": max(int(n) for n, _, _ in versions),
                                         "archived": int(bool(archived))})
            return True

        return self._transaction(restore)

    # -- message listing and overview (SPEC section 18) --------------------------------

    def message_list(self, owner: str | None, *, status: str | None = None, provider: str | None = None,
                     template: str | None = None, since_ms: float | None = None,
                     until_ms: float | None = None, receiver_hash: str | None = None,
                     limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {
            "owner": owner, "status": status, "provider": provider, "template": template,
            "since_ms": since_ms, "until_ms": until_ms, "receiver_hash": receiver_hash, "limit": limit + 1}
        if cursor:
            params["cursor_at"], params["cursor_key"] = listing.decode_cursor(cursor)
            params["cursor"] = True
        where = " AND ".join(clause for name, clause in _LIST_CLAUSES.items() if params.get(name) is not None)
        rows, _, _ = self._execute(_LIST.format(where=where or "1"), params)
        page = rows[:limit]
        following = listing.encode_cursor(page[-1][0], page[-1][1]) if len(rows) > limit else None
        return [json.loads(value) for _, _, value in page], following

    def message_stats(self, since_ms: float) -> dict[str, Any]:
        rows, _, _ = self._execute(_STATS, {"since_ms": since_ms})
        return listing.stats_of([json.loads(value) for (value,) in rows])

    def secret_once(self, name: str, candidate: str) -> str:
        self._execute(_SECRET_ADD, {"name": name, "value": candidate})
        ((value,),), _, _ = self._execute(_SECRET_GET, {"name": name})
        return value

    # -- prices (SPEC section 18) -------------------------------------------------------

    def message_price(self, key: str, price: str, unit: str) -> dict[str, Any] | None:
        def priced(conn: sqlite3.Connection, now: float) -> dict[str, Any] | None:
            row = conn.execute(_MESSAGE_READ, {"key": key, "now": now}).fetchone()
            if row is None:
                return None
            record = json.loads(row[0])
            if not model.set_price(record, price, unit):
                return None
            conn.execute(_MESSAGE_KEEP_TTL, {"key": key, "now": now,
                                             "value": json.dumps(record, separators=(",", ":"))})
            return record

        return self._transaction(priced)

    # -- the reconciler's schedule (SPEC section 18) -------------------------------------

    def message_schedule(self, key: str, check_at_ms: float | None,
                         looked_at_ms: float | None = None) -> bool:
        def scheduled(conn: sqlite3.Connection, now: float) -> bool:
            row = conn.execute(_MESSAGE_READ, {"key": key, "now": now}).fetchone()
            if row is None:
                return False
            record = json.loads(row[0])
            if record.get("orphan"):
                return False
            model.schedule(record, check_at_ms, looked_at_ms)
            # The trigger moves message_index.check_at with the record.
            conn.execute(_MESSAGE_KEEP_TTL, {"key": key, "now": now,
                                             "value": json.dumps(record, separators=(",", ":"))})
            return True

        return self._transaction(scheduled)

    def message_due(self, now_ms: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        rows, _, _ = self._execute(_DUE, {"due": now_ms, "limit": limit})
        return [(key, record) for key, value in rows
                if model.is_due(record := json.loads(value), now_ms)]

    # -- the guards of one send in one operation (SPEC section 22) ----------------------
    #
    # Not one BEGIN IMMEDIATE transaction of five statements: each statement hands the
    # GIL over (see the operations above). The guards fold into the statements that
    # write: the delay's upsert (and, with a budget, the budget's insert before it) runs
    # only while the number is not suppressed (and the delay would admit), and returns
    # the circuit's row. Each write stays one atomic statement, so the answers are the
    # composed ones; a refusal (rare) then reads which guard refused.

    def guards_admit(self, number: str, delay_key: str, reset_after_ms: int,
                     budget: BudgetAsk | None = None, circuit: CircuitAsk | None = None) -> GuardsAnswer:
        used, at = None, 0.0
        if budget is not None:
            params = {**_budget_params(*budget), "number": number, "delay_key": delay_key,
                      "reset": reset_after_ms}
            admitted, _, at = self._execute(_GUARDED_BUDGET_SPEND, params)
            if not admitted:
                return self._guards_refused(number, delay_key, reset_after_ms, budget, circuit)
            used = int(admitted[0][0])
        token = os.urandom(8).hex()
        try:
            rows, _, now = self._execute(_GUARDED_DELAY, {
                "key": delay_key, "reset": reset_after_ms, "token": token, "number": number,
                "circuit": circuit.key if circuit else ""})
            if not rows:
                # Suppressed (without a budget: that is the first guard this statement met).
                if budget is not None:
                    self._refund_quietly(budget, at)
                    return super().guards_admit(number, delay_key, reset_after_ms, budget, circuit)
                return GuardsAnswer("suppressed")
            got_token, k, last, failures, retry_at, _ = rows[0]
            if got_token != token:
                # Another send to this receiver took the turn since the budget's statement.
                if budget is not None:
                    self._refund_quietly(budget, at)
                return GuardsAnswer("delay", max(1, math.ceil(last + 1000 * 2 ** (k - 1) - now)), used)
            state = None
            if circuit is not None:
                # Closed (nearly always): the row read above. Open: the claim's transaction.
                state = ("closed", int(failures or 0)) if not retry_at else self.circuit_admit(*circuit)
        except BaseException:
            if budget is not None:
                self._refund_quietly(budget, at)
            raise
        return GuardsAnswer(None, 0, used, at if budget is not None else 0.0, state)

    def _guards_refused(self, number: str, delay_key: str, reset_after_ms: int,
                        budget: BudgetAsk, circuit: CircuitAsk | None) -> GuardsAnswer:
        # The guarded spend counted nothing: name the first guard that refuses now. Should
        # none refuse any more (the state moved on meanwhile), the composed sequence runs.
        rows, _, now = self._execute(_GUARDS_READ, {"number": number, "key": delay_key})
        suppressed, k, last = rows[0]
        if suppressed:
            return GuardsAnswer("suppressed")
        if k is not None and now - last < reset_after_ms and now - last < 1000 * 2 ** (k - 1):
            return GuardsAnswer("delay", max(1, math.ceil(last + 1000 * 2 ** (k - 1) - now)))
        wait, used = self.budget_peek(*budget)
        if wait:
            return GuardsAnswer("budget", wait, used)
        return super().guards_admit(number, delay_key, reset_after_ms, budget, circuit)


# A refund leaves the buckets that have left the window alone (they count nothing).
_BUDGET_REFUND = f"""
UPDATE window_buckets SET hits = max(0, hits - :cost)
WHERE key = :key AND bucket = CAST(:at / :size AS INTEGER) AND bucket >= {_FIRST_BUCKET} AND hits > 0
"""  # noqa: S608  (no input is formatted in: _FIRST_BUCKET is a constant)

# The rate limit's window weighted by :cost; the RETURNING subquery sees the row just
# written, so an admitted spend comes back with the window's total after it.
_BUDGET_SPEND = f"""
INSERT INTO window_buckets (key, bucket, hits, expires)
SELECT :key, CAST(:now / :size AS INTEGER), :cost, (CAST(:now / :size AS INTEGER) + 1) * :size + :window
WHERE (SELECT coalesce(sum(hits), 0) FROM window_buckets
       WHERE key = :key AND bucket >= {_FIRST_BUCKET}) + :cost <= :limit
ON CONFLICT (key, bucket) DO UPDATE SET hits = hits + :cost
RETURNING (SELECT sum(hits) FROM window_buckets WHERE key = :key AND bucket >= {_FIRST_BUCKET})
"""  # noqa: S608  (no input is formatted in: _FIRST_BUCKET is a constant)
_DELAY_PEEK = "SELECT k, last FROM streaks WHERE key = :key"


_TEMPLATE_LATEST = """
SELECT t.latest, t.archived, v.content FROM templates t
JOIN template_versions v ON v.name = t.name AND v.version = t.latest WHERE t.name = :name
"""
_TEMPLATE_ADD_VERSION = """
INSERT INTO template_versions (name, version, content, created) VALUES (:name, :version, :content, :created)
"""
_TEMPLATE_SET = """
INSERT INTO templates (name, latest, archived) VALUES (:name, :latest, :archived)
ON CONFLICT (name) DO UPDATE SET latest = excluded.latest, archived = excluded.archived
"""
_TEMPLATE_VERSION = """
SELECT v.version, v.content, v.created, t.archived FROM templates t
JOIN template_versions v ON v.name = t.name AND v.version = coalesce(:version, t.latest) WHERE t.name = :name
"""
_TEMPLATE_VERSIONS = """
SELECT t.archived, v.version, v.content, v.created FROM templates t
JOIN template_versions v ON v.name = t.name WHERE t.name = :name ORDER BY v.version
"""
_TEMPLATE_ARCHIVE = "UPDATE templates SET archived = 1 WHERE name = :name AND archived = 0"
_TEMPLATE_NAMES = "SELECT name FROM templates"


def _budget_params(key: str, cost: int, limit: int, window_ms: int) -> dict[str, Any]:
    size = max(1, math.ceil(window_ms / WINDOW_BUCKETS))
    return {"key": f"budget:{key}:{size}", "size": size, "window": window_ms, "limit": limit, "cost": cost}


def _budget_answer(rows: list[tuple], params: dict[str, Any], now: float) -> tuple[int, int]:
    """`(0, used)` when `cost` fits in the buckets `rows`, else the wait until it does, and `used`."""
    used = sum(hits for _, hits in rows)
    cost, limit, size, window = params["cost"], params["limit"], params["size"], params["window"]
    if used + cost <= limit:
        return 0, used
    # The oldest buckets leave first; a bucket leaves once all of it is past the window.
    left = used
    for bucket, hits in rows:
        left -= hits
        if left + cost <= limit:
            return max(1, math.ceil((bucket + 1) * size + window - now)), used
    return max(1, window), used


# -- message listing and overview (SPEC section 18) ---------------------------------------

# A page is one walk down an index of message_index, newest first, joined to the live
# records; the filters are fixed clauses (no input is formatted in).
_LIST_CLAUSES = {
    "owner": "i.owner = :owner", "status": "i.status = :status", "provider": "i.provider = :provider",
    "template": "i.template = :template", "since_ms": "i.at >= :since_ms", "until_ms": "i.at < :until_ms",
    "receiver_hash": "i.receiver_hash = :receiver_hash",
    "cursor": "(i.at < :cursor_at OR (i.at = :cursor_at AND i.key < :cursor_key))",
}
_LIST = """
SELECT i.at, i.key, m.value FROM message_index i JOIN messages m ON m.key = i.key
WHERE m.expires > :now AND {where} ORDER BY i.at DESC, i.key DESC LIMIT :limit
"""
_STATS = """
SELECT m.value FROM message_index i JOIN messages m ON m.key = i.key
WHERE i.at >= :since_ms AND m.expires > :now
"""
# The reconciler's due records, one walk down the partial index on check_at.
_DUE = """
SELECT i.key, m.value FROM message_index i JOIN messages m ON m.key = i.key
WHERE i.check_at <= :due AND m.expires > :now ORDER BY i.check_at, i.key LIMIT :limit
"""
_SECRET_ADD = "INSERT INTO secrets (name, value) VALUES (:name, :value) ON CONFLICT (name) DO NOTHING"  # noqa: S105
_SECRET_GET = "SELECT value FROM secrets WHERE name = :name"  # noqa: S105  (SQL, not a secret)


# The guards of one send (SqliteStorage.guards_admit): the budget's spend only while the
# number is not suppressed and its delay would admit; then the delay's turn only while
# the number is not suppressed, returning the circuit's row as it is.
_NOT_SUPPRESSED = "NOT EXISTS (SELECT 1 FROM suppressions WHERE number = :number)"
_DELAY_ADMITS = f"NOT EXISTS (SELECT 1 FROM streaks WHERE key = :delay_key AND NOT {_ADMIT})"  # noqa: S608
_GUARDED_BUDGET_SPEND = _BUDGET_SPEND.replace(
    "+ :cost <= :limit", f"+ :cost <= :limit AND {_NOT_SUPPRESSED} AND {_DELAY_ADMITS}", 1)
_GUARDED_DELAY = f"""
INSERT INTO streaks (key, k, last, expires, token)
SELECT :key, 1, :now, :now + :reset, :token WHERE {_NOT_SUPPRESSED}
ON CONFLICT {_DELAY.partition("ON CONFLICT")[2].rpartition("RETURNING")[0]}
RETURNING token, k, last, (SELECT failures FROM circuits WHERE key = :circuit),
  (SELECT retry_at FROM circuits WHERE key = :circuit),
  (SELECT lease_until FROM circuits WHERE key = :circuit)
"""  # noqa: S608  (no input is formatted in: constants of this module)
_GUARDS_READ = ("SELECT EXISTS (SELECT 1 FROM suppressions WHERE number = :number),"
                " (SELECT k FROM streaks WHERE key = :key), (SELECT last FROM streaks WHERE key = :key)")
