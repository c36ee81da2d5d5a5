"""Shared state for the guards, chosen by STORAGE_URI: process memory or Redis.

Every operation that decides whether an SMS may go out is atomic: a lock in memory, a
Lua script (one round trip, timed by the Redis clock) on Redis. A storage that cannot be
reached raises `StorageUnavailable`, and callers refuse to send (fail closed).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import limits.errors
import limits.storage
import redis
from limits import RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from sms_service.exceptions import StorageUnavailable

KEY_PREFIX = "sms-service"
T = TypeVar("T")

# Redis must answer fast or not at all: a dead Redis may never hang a request.
REDIS_CONNECT_TIMEOUT = 0.5
REDIS_SOCKET_TIMEOUT = 0.5

# Returns 0 when the message may go, else the milliseconds left to wait.
_DELAY_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reset = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'k', 'last')
local k = tonumber(state[1])
local last = tonumber(state[2])
if k and last and now - last < reset then
  local wait = 1000 * 2 ^ (k - 1)
  if now - last < wait then
    return math.ceil(last + wait - now)
  end
  k = k + 1
else
  k = 1
end
redis.call('HSET', KEYS[1], 'k', k, 'last', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(reset))
return 0
"""


class Storage:
    """Guard state: the moving-window rate limit, receiver streaks, idempotency records."""

    def window_acquire(self, key: str, limit: int, window_s: int) -> float:
        """Count one hit in a moving window of `window_s` seconds holding at most `limit`.

        Returns 0 when the hit is admitted, else the seconds until the oldest hit leaves
        the window. Raises `StorageUnavailable`.
        """
        raise NotImplementedError

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        """Record an accepted message for `key` unless its delay has not passed.

        Returns 0 when accepted, else the milliseconds left to wait. Raises
        `StorageUnavailable`.
        """
        raise NotImplementedError

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        """Store `value` under `key` unless a live record exists; return that record if so."""
        raise NotImplementedError

    def record_put(self, key: str, value: str, ttl_ms: int) -> None:
        """Store `value` under `key`, replacing any record."""
        raise NotImplementedError

    def record_delete(self, key: str) -> None:
        """Forget the record under `key`."""
        raise NotImplementedError

    def ping(self) -> bool:
        """Tell whether the storage answers."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def guarded(self, call: Callable[[], T]) -> T:
        """Run a storage operation, turning any storage failure into `StorageUnavailable`."""
        try:
            return call()
        except (redis.RedisError, limits.errors.StorageError, OSError) as exc:
            raise StorageUnavailable(
                f"shared storage is unavailable ({type(exc).__name__}); nothing was sent"
            ) from None


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


class RedisStorage(Storage):
    """State in Redis, shared by every worker and replica that points at it."""

    def __init__(self, uri: str) -> None:
        options = {
            "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
            "health_check_interval": 15,
            "retry": Retry(NoBackoff(), 1),
        }
        url = uri.replace("redis+unix://", "unix://", 1)
        self.pool = redis.ConnectionPool.from_url(url, **options)
        self.client = redis.Redis(connection_pool=self.pool)
        self._limiter = MovingWindowRateLimiter(limits.storage.storage_from_string(
            uri, connection_pool=self.pool, wrap_exceptions=True,
            key_prefix=f"{KEY_PREFIX}:rate",
        ))
        self._delay = self.client.register_script(_DELAY_SCRIPT)

    def window_acquire(self, key: str, limit: int, window_s: int) -> float:
        item = RateLimitItemPerSecond(limit, window_s)
        if self._limiter.hit(item, key):
            return 0.0
        return max(0.0, self._limiter.get_window_stats(item, key).reset_time - time.time())

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        return int(self._delay(keys=[f"{KEY_PREFIX}:delay:{key}"], args=[reset_after_ms]))

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        name = f"{KEY_PREFIX}:record:{key}"
        for _ in range(2):  # the record may expire between SET NX and GET
            if self.client.set(name, value, nx=True, px=ttl_ms):
                return None
            existing = self.client.get(name)
            if existing is not None:
                return existing.decode()
        raise redis.RedisError("record flapped between SET NX and GET")

    def record_put(self, key: str, value: str, ttl_ms: int) -> None:
        self.client.set(f"{KEY_PREFIX}:record:{key}", value, px=ttl_ms)

    def record_delete(self, key: str) -> None:
        self.client.delete(f"{KEY_PREFIX}:record:{key}")

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        self.pool.disconnect()


def open_storage(uri: str) -> Storage:
    """Build the storage for a validated STORAGE_URI (no connection is made yet)."""
    return MemoryStorage() if uri.startswith("memory://") else RedisStorage(uri)
