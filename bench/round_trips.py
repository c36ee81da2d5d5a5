"""Storage round trips per send: what a configuration asks of its storage, counted, not timed.

    .venv/bin/python bench/round_trips.py --provider-base http://127.0.0.1:PORT [--env NAME=VALUE ...]

Builds the service in this process with the bench's settings (`--env` on top), sends
`--sends` messages through it (each to a new receiver) after a few of warm-up, and
counts every storage round trip: each SQLite statement the storage executes (a counting
wrapper around its connection; a trigger's work is part of its statement) and each Redis
request (a counting wrapper around the client's `execute_command`, a script being one,
and around a pipeline's `execute`, a pipeline being one). Prints one JSON line: the round
trips per send in all and before the provider call. The count does not depend on the machine or its load.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

import redis

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-token-0123456789abcdef0123"


class Counter:
    """Storage commands so far, and the count each send had reached at its provider call."""

    def __init__(self) -> None:
        self.total = 0
        self.lock = threading.Lock()

    def add(self, *_: object) -> None:
        with self.lock:
            self.total += 1


class CountedConnection:
    """A sqlite3 connection that counts the statements run through it.

    Not the connection's trace callback: SQLite calls that for every trigger a
    statement fires too, which would count the listing index's triggers as round trips.
    """

    def __init__(self, conn: sqlite3.Connection, counter: Counter) -> None:
        self._conn, self._counter = conn, counter

    def execute(self, *args, **kwargs):
        self._counter.add()
        return self._conn.execute(*args, **kwargs)

    def executemany(self, *args, **kwargs):
        self._counter.add()
        return self._conn.executemany(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def count_storage(counter: Counter) -> None:
    """Count every SQLite statement and every Redis request from now on."""
    from sms_service.storage import sqlite as sqlite_backend

    connect = sqlite_backend.SqliteStorage._connect

    def counted_connect(self) -> CountedConnection:
        return CountedConnection(connect(self), counter)

    sqlite_backend.SqliteStorage._connect = counted_connect
    execute = redis.Redis.execute_command

    def counted_execute(self, *args, **options):
        counter.add()
        return execute(self, *args, **options)

    redis.Redis.execute_command = counted_execute
    # A pipeline's commands wait in its buffer (its own execute_command) and go in one
    # request when it is executed.
    pipeline_execute = redis.client.Pipeline.execute

    def counted_pipeline(self, *args, **options):
        counter.add()
        return pipeline_execute(self, *args, **options)

    redis.client.Pipeline.execute = counted_pipeline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider-base", required=True, help="the fake provider's base URL")
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    counter = Counter()
    count_storage(counter)
    from sms_service.app import create_app
    from sms_service.failover import Failover

    before_provider: list[int] = []
    through = Failover._through

    def counted_through(self, route, message, *rest):
        before_provider.append(counter.total)
        return through(self, route, message, *rest)

    Failover._through = counted_through
    state = Path(tempfile.mkdtemp(prefix="sms-round-trips-"))
    env = {"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "TWILIO_BASE_URL": args.provider_base, "RATE_LIMIT_MAX_REQUESTS": "1000000000",
           "STATE_DIR": str(state), "LOG_LEVEL": "warning"}
    env.update(item.split("=", 1) for item in args.env)
    client = create_app(env).test_client()

    send_starts: list[int] = []

    def send(i: int) -> None:
        send_starts.append(counter.total)
        receiver = f"+1{202 + i // 10000}555{i % 10000:04d}"
        answer = client.post("/send", json={"sender": "+15017122661", "receiver": receiver,
                                             "body": "Your verification code is 123456"})
        if answer.status_code != 200:
            raise SystemExit(f"send {i} answered {answer.status_code}: {answer.get_data(as_text=True)}")

    for i in range(10):  # warm-up: connections opened, scripts loaded, tables created
        send(i)
    start = counter.total
    send_starts[:], before_provider[:] = [], []
    for i in range(10, 10 + args.sends):
        send(i)
    total = (counter.total - start) / args.sends
    pairs = zip(send_starts, before_provider, strict=True)
    before = sum(reached - begun for begun, reached in pairs) / args.sends
    print(json.dumps({"per_send": round(total, 2), "before_provider": round(before, 2),
                      "after_provider": round(total - before, 2), "sends": args.sends}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
