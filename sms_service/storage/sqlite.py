"""sqlite:// storage: an embedded file shared by every worker on one host, kept across restarts.

Runs on the stdlib `sqlite3`: WAL mode (readers never wait for the writer), one short
``BEGIN IMMEDIATE`` transaction per operation (the write lock is taken up front, so two
transactions never deadlock on an upgrade), one connection per thread, and a busy
timeout: a lock held longer than that raises, and the caller answers 503 (fail closed).
The clock is the host's wall clock, shared by every process and kept across restarts.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sms_service.storage.base import Storage

T = TypeVar("T")

BUSY_TIMEOUT_S = 3.0
# How long opening may wait for another process that is creating the file or switching
# it to WAL: that switch can answer "locked" at once, without the busy handler.
OPEN_PATIENCE_S = 15.0
# The moving window counts hits per bucket, WINDOW_BUCKETS buckets per window, so its
# cost stays the same however many hits the window holds.
WINDOW_BUCKETS = 100
SWEEP_EVERY_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS window_buckets (
  key TEXT NOT NULL, bucket INTEGER NOT NULL, hits INTEGER NOT NULL, expires REAL NOT NULL,
  PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streaks (
  key TEXT PRIMARY KEY, k INTEGER NOT NULL, last REAL NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
"""


def _now_ms() -> float:
    return time.time() * 1000


def _create_tables(conn: sqlite3.Connection) -> None:
    # Statement by statement: executescript would commit the open transaction first.
    for statement in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(statement)


class SqliteStorage(Storage):
    """State in one SQLite file, for any number of worker processes on one host."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        # One transaction at a time per process: threads queue on this lock, which wakes
        # them at once, instead of polling SQLite's busy handler in sleeps of milliseconds.
        self._lock = threading.Lock()
        self._next_sweep = 0.0
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
                    with self._lock:
                        self._run(conn, _create_tables)
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
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False,
        )
        # WAL with synchronous=NORMAL never loses the database, and fsyncs only at
        # checkpoints: a power cut may forget the last transactions, a crash does not.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            # A connection must never cross a fork: each process opens its own.
            conn = self._local.conn = self._connect()
            self._local.pid = os.getpid()
            self._connections.append(conn)
        return conn

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn()
        with self._lock:
            now = _now_ms()
            if now >= self._next_sweep:
                self._next_sweep = now + SWEEP_EVERY_MS
                self._run(conn, lambda c: self._sweep(c, now))
            return self._run(conn, work)

    @staticmethod
    def _run(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _sweep(conn: sqlite3.Connection, now: float) -> None:
        for table in ("window_buckets", "streaks", "records"):
            conn.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,))  # noqa: S608  (fixed names)

    # -- operations --------------------------------------------------------------------

    def window_acquire(self, key: str, limit: int, window_ms: int) -> int:
        size = max(1, math.ceil(window_ms / WINDOW_BUCKETS))
        key = f"{key}:{size}"  # a new window length never reads buckets of another size

        def acquire(conn: sqlite3.Connection) -> int:
            now = _now_ms()
            current = math.floor(now / size)
            # Every bucket that may hold a hit of the last window_ms counts whole: a hit
            # counts until its bucket has left the window, so the count errs high, never low.
            first = math.floor((now - window_ms) / size)
            conn.execute("DELETE FROM window_buckets WHERE key = ? AND bucket < ?", (key, first))
            rows = conn.execute(
                "SELECT bucket, hits FROM window_buckets WHERE key = ? AND bucket >= ? ORDER BY bucket",
                (key, first),
            ).fetchall()
            total = sum(hits for _, hits in rows)
            if total < limit:
                conn.execute(
                    "INSERT INTO window_buckets VALUES (?, ?, 1, ?) "
                    "ON CONFLICT (key, bucket) DO UPDATE SET hits = hits + 1",
                    (key, current, (current + 1) * size + window_ms),
                )
                return 0
            # The oldest buckets leave first: wait until enough of them have gone.
            for bucket, hits in rows:
                total -= hits
                if total < limit:
                    return max(1, math.ceil((bucket + 1) * size + window_ms - now))
            return window_ms  # a limit below 1 never admits: unreachable with a valid limit

        return self._transaction(acquire)

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        def acquire(conn: sqlite3.Connection) -> int:
            now = _now_ms()
            row = conn.execute(
                "SELECT k, last FROM streaks WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            k = 1
            if row is not None:
                streak, last = row
                if now - last < reset_after_ms:
                    wait = 1000 * 2 ** (streak - 1)
                    if now - last < wait:
                        return max(1, math.ceil(last + wait - now))
                    k = streak + 1
            conn.execute(
                "INSERT OR REPLACE INTO streaks VALUES (?, ?, ?, ?)",
                (key, k, now, now + reset_after_ms),
            )
            return 0

        return self._transaction(acquire)

    @staticmethod
    def _live(conn: sqlite3.Connection, key: str, now: float) -> str | None:
        row = conn.execute("SELECT value FROM records WHERE key = ? AND expires > ?", (key, now)).fetchone()
        return None if row is None else row[0]

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        def reserve(conn: sqlite3.Connection) -> str | None:
            now = _now_ms()
            existing = self._live(conn, key, now)
            if existing is None:
                conn.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (key, value, now + ttl_ms))
            return existing

        return self._transaction(reserve)

    def record_swap(self, key: str, expected: str, value: str, ttl_ms: int) -> bool:
        def swap(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            if self._live(conn, key, now) != expected:
                return False
            conn.execute("UPDATE records SET value = ?, expires = ? WHERE key = ?",
                         (value, now + ttl_ms, key))
            return True

        return self._transaction(swap)

    def record_delete(self, key: str, expected: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            if self._live(conn, key, _now_ms()) != expected:
                return False
            conn.execute("DELETE FROM records WHERE key = ?", (key,))
            return True

        return self._transaction(delete)

    def ping(self) -> bool:
        try:
            self._conn().execute("SELECT 1 FROM records LIMIT 1").fetchall()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        for conn in self._connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._connections.clear()
        self._local = threading.local()
