"""Worker processes that hammer one storage at once, for the conformance suite.

Each function runs in its own process (multiprocessing, spawn), opens the storage
itself, waits for a common start time so that all of them collide, and reports what it
was admitted or which error it met.
"""

from __future__ import annotations

import threading
import time

from sms_service.storage import open_storage


def _wait_until(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def _threads(count: int, work) -> list:
    results: list = []
    lock = threading.Lock()

    def run() -> None:
        try:
            outcome = work()
        except Exception as exc:  # reported, never swallowed
            outcome = f"error: {type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def hammer_window(uri: str, start_at: float, threads: int, per_thread: int, limit: int, window_ms: int):
    """Hit one window from `threads` threads; return [(before, after, wait) ...] or errors."""
    storage = open_storage(uri)
    _wait_until(start_at)

    def work():
        out = []
        for _ in range(per_thread):
            before = time.time()
            wait = storage.window_acquire("hammer", limit, window_ms)
            out.append((before, time.time(), wait))
        return out

    results = _threads(threads, work)
    storage.close()
    return results


def hammer_delay(uri: str, start_at: float, threads: int) -> list:
    """Ask the delay of one receiver from every thread at once; return the waits or errors."""
    storage = open_storage(uri)
    _wait_until(start_at)
    results = _threads(threads, lambda: storage.delay_acquire("hammer-receiver", 120_000))
    storage.close()
    return results


def hammer_reserve(uri: str, start_at: float, threads: int, tag: str) -> list:
    """Reserve one record from every thread at once; return who won (None) or what was found."""
    storage = open_storage(uri)
    _wait_until(start_at)
    counter = iter(range(threads))
    results = _threads(threads, lambda: storage.record_reserve("hammer-record", f"{tag}-{next(counter)}", 60_000))
    storage.close()
    return results


def open_and_hit(uri: str, start_at: float) -> str:
    """Open a storage exactly when every other process does, then use it once."""
    _wait_until(start_at)
    try:
        storage = open_storage(uri)
        storage.window_acquire("open-race", 1_000_000, 60_000)
        storage.close()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"


def hammer_message(uri: str, start_at: float, threads: int, name: str):
    """Apply one distinct status entry per thread to the record "shared"; report errors only."""
    from sms_service.status import model

    storage = open_storage(uri)
    _wait_until(start_at)
    words = iter(range(threads))
    lock = threading.Lock()

    def work():
        with lock:
            i = next(words)
        entry = model.entry("sent", f"{name}-{i}", None, "2026-11-26T08:00:00.000Z")
        storage.message_update("shared", entry, {"sid": "shared", "provider": "p"}, 60_000)
        return "ok"

    return _threads(threads, work)


def hammer_budget(uri: str, start_at: float, threads: int, costs: list[int], limit: int, window_ms: int):
    """Spend `costs` (three rounds) from `threads` threads on one budget; return [(cost, wait) ...] or errors."""
    storage = open_storage(uri)
    _wait_until(start_at)

    def work():
        return [(cost, storage.budget_spend("hammer", cost, limit, window_ms)[0]) for cost in costs * 3]

    results = _threads(threads, work)
    storage.close()
    return results


def hammer_outbox_claim(uri: str, start_at: float, threads: int) -> list:
    """Claim webhook events from every thread at once, one at a time until none is due; return the ids."""
    storage = open_storage(uri)
    _wait_until(start_at)

    def work():
        claimed = []
        while events := storage.webhook_claim(1, 60_000):
            claimed += [event.id for event in events]
        return claimed

    results = _threads(threads, work)
    storage.close()
    return results


def hammer_circuit_trial(uri: str, start_at: float, threads: int) -> list:
    """Race `threads` callers of this process for the trial of one open circuit."""
    store = open_storage(uri)
    _wait_until(start_at)
    try:
        return _threads(threads, lambda: store.circuit_admit("racing", 60_000)[0])
    finally:
        store.close()
