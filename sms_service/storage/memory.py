"""memory:// storage: state in this process only (tests, single-process trials)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from sms_service.storage.base import Storage


class MemoryStorage(Storage):
    """State in this process only: right for one worker, wrong for several.

    The moving window is a deque of hit times rather than `limits`' in-memory storage,
    which inserts at the head of a list (O(n) per hit) and starts a timer thread every
    10 ms: together a fifth of a worker's CPU under load (bench/README.md).
    """

    def __init__(self) -> None:
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._streaks: dict[str, tuple[int, float]] = {}
        self._records: dict[str, tuple[float, str]] = {}
        self._next_sweep = 0.0

    def window_acquire(self, key: str, limit: int, window_s: int) -> float:
        now = time.monotonic()
        with self._lock:
            hits = self._windows.setdefault(key, deque())
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            if len(hits) < limit:
                hits.append(now)
                return 0.0
            return hits[0] + window_s - now

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        now = time.monotonic() * 1000
        with self._lock:
            self._sweep(now, reset_after_ms)
            k, last = self._streaks.get(key, (0, -math.inf))
            if k and now - last < reset_after_ms:
                wait = 1000 * 2 ** (k - 1)
                if now - last < wait:
                    return math.ceil(last + wait - now)
                k += 1
            else:
                k = 1
            self._streaks[key] = (k, now)
            return 0

    def _sweep(self, now: float, reset_after_ms: int) -> None:
        # Bounded memory: forget streaks that have reset anyway, at most once a second.
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1000
        stale = [key for key, (_, last) in self._streaks.items() if now - last >= reset_after_ms]
        for key in stale:
            del self._streaks[key]
        for key in [key for key, (expires, _) in self._records.items() if expires <= now]:
            del self._records[key]

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        now = time.monotonic() * 1000
        with self._lock:
            expires, existing = self._records.get(key, (0.0, ""))
            if expires > now:
                return existing
            self._records[key] = (now + ttl_ms, value)
            return None

    def record_put(self, key: str, value: str, ttl_ms: int) -> None:
        with self._lock:
            self._records[key] = (time.monotonic() * 1000 + ttl_ms, value)

    def record_delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def ping(self) -> bool:
        return True
