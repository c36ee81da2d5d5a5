"""redis:// storage: state shared by every worker and replica that points at one Redis.

Every operation that decides whether an SMS may go out is one Lua script (one round
trip, timed by the Redis clock).
"""

from __future__ import annotations

import time

import limits.storage
import redis
from limits import RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from sms_service.storage.base import KEY_PREFIX, Storage

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
