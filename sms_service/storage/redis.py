"""redis:// storage: state shared by every worker and replica that points at one Redis.

Every operation is one Lua script: one round trip, atomic, and timed by the Redis clock,
so replicas with skewed clocks still agree.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sms_service.status import model
from sms_service.storage.base import KEY_PREFIX, Storage

SUPPRESSIONS_KEY = f"{KEY_PREFIX}:suppressions"

# Redis must answer fast or not at all: a dead Redis may never hang a request.
REDIS_CONNECT_TIMEOUT = 0.5
REDIS_SOCKET_TIMEOUT = 0.5

# Milliseconds of the Redis clock, shared by the scripts below.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The list holds the times of the last `limit` admitted hits, newest first. A hit in the
# same millisecond as the window's edge still counts: never looser by a rounding.
_WINDOW_SCRIPT = _NOW + """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local oldest = redis.call('LINDEX', KEYS[1], limit - 1)
if oldest and now - tonumber(oldest) <= window then
  return math.max(1, tonumber(oldest) + window - now)
end
redis.call('LPUSH', KEYS[1], now)
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('PEXPIRE', KEYS[1], window + 1)
return 0
"""

# Returns 0 when the message may go, else the milliseconds left to wait.
_DELAY_SCRIPT = _NOW + """
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

_RESERVE_SCRIPT = """
local existing = redis.call('GET', KEYS[1])
if existing then
  return existing
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

_SWAP_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

_DELETE_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""


# The sticky-state rule of sms_service.status.model, in Lua: the same answers, held equal
# by the storage conformance suite. Values are JSON strings (never numbers, so cjson
# keeps them exact); a history is never empty, so cjson never turns it into an object.
_RULE = """
local RANK = {queued = 0, sent = 1, delivered = 2, undelivered = 2, failed = 2}
local MAX_HISTORY = """ + str(model.MAX_HISTORY) + """
local function apply(record, entry)
  for _, old in ipairs(record.history) do
    if old.status == entry.status and old.providerStatus == entry.providerStatus
        and old.errorCode == entry.errorCode then
      return false
    end
  end
  if #record.history < MAX_HISTORY then
    table.insert(record.history, entry)
  end
  record.updatedAt = entry.at
  local current = record.status
  if current == nil or current == cjson.null
      or (RANK[current] < 2 and RANK[entry.status] >= RANK[current]) then
    record.status = entry.status
    record.providerStatus = entry.providerStatus
    record.errorCode = entry.errorCode
  end
  return true
end
"""

_MESSAGE_CREATE_SCRIPT = _RULE + """
local existing = redis.call('GET', KEYS[1])
if not existing then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
local old = cjson.decode(existing)
if not old.orphan then
  return 0
end
local record = cjson.decode(ARGV[1])
for _, entry in ipairs(old.history) do
  apply(record, entry)
end
redis.call('SET', KEYS[1], cjson.encode(record), 'PX', ARGV[2])
return 2
"""

_MESSAGE_UPDATE_SCRIPT = _RULE + """
local entry = cjson.decode(ARGV[1])
local existing = redis.call('GET', KEYS[1])
local record, before
if existing then
  record = cjson.decode(existing)
  before = record.status
  apply(record, entry)
else
  record = cjson.decode(ARGV[2])
  record.orphan = true
  record.status = cjson.null
  record.providerStatus = cjson.null
  record.errorCode = cjson.null
  record.history = {}
  apply(record, entry)
end
local encoded = cjson.encode(record)
redis.call('SET', KEYS[1], encoded, 'PX', ARGV[3])
if before == nil or before == cjson.null then
  before = false
end
return {before, encoded}
"""

# A first opt-out stays as it was; the time is the Redis clock's, like every other.
_SUPPRESS_ADD_SCRIPT = _NOW + """
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now))
"""


# Failover circuits: one hash per provider, f (failures), r (reset time, 0: closed),
# l (trial lease end), in Redis clock milliseconds. Each operation is one script: one
# round trip, whatever the state.
_CIRCUIT_CLAIM_SCRIPT = _NOW + """
local state = redis.call('HMGET', KEYS[1], 'f', 'r', 'l')
local failures = tonumber(state[1]) or 0
local retry_at = tonumber(state[2]) or 0
local lease_until = tonumber(state[3]) or 0
if retry_at == 0 then
  return {'closed', failures}
end
local wait = math.max(retry_at, lease_until) - now
if wait > 0 then
  return {'open', math.max(1, math.ceil(wait))}
end
redis.call('HSET', KEYS[1], 'l', now + tonumber(ARGV[1]))
return {'trial', 0}
"""

_CIRCUIT_RECORD_SCRIPT = _NOW + """
local ok, trial = ARGV[1] == '1', ARGV[2] == '1'
local threshold, reset = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'f', 'r', 'l')
local failures = tonumber(state[1]) or 0
local retry_at = tonumber(state[2]) or 0
local lease_until = tonumber(state[3]) or 0
local before = retry_at == 0 and 'closed' or 'open'
if ok then
  failures, retry_at, lease_until = 0, 0, 0
elseif trial then
  failures, retry_at, lease_until = failures + 1, now + reset, 0
else
  failures = failures + 1
  if retry_at == 0 and failures >= threshold then
    retry_at = now + reset
  end
end
redis.call('HSET', KEYS[1], 'f', failures, 'r', retry_at, 'l', lease_until)
return {before, retry_at == 0 and 'closed' or 'open'}
"""

_CIRCUIT_GET_SCRIPT = _NOW + """
local state = redis.call('HMGET', KEYS[1], 'f', 'r')
local failures = tonumber(state[1]) or 0
local retry_at = tonumber(state[2]) or 0
if retry_at == 0 then
  return {'closed', failures, 0}
end
if retry_at > now then
  return {'open', failures, math.max(1, math.ceil(retry_at - now))}
end
return {'half-open', failures, 0}
"""


class RedisStorage(Storage):
    """State in Redis, shared by every worker and replica that points at it."""

    def __init__(self, uri: str) -> None:
        options = {
            "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
            "health_check_interval": 15,
            # No command is ever sent twice: a reply that timed out may hide a script
            # that ran, and running it again would count a hit or a streak twice.
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
        }
        url = uri.replace("redis+unix://", "unix://", 1)
        self.pool = redis.ConnectionPool.from_url(url, **options)
        self.client = redis.Redis(connection_pool=self.pool)
        register = self.client.register_script
        self._window = register(_WINDOW_SCRIPT)
        self._delay = register(_DELAY_SCRIPT)
        self._reserve = register(_RESERVE_SCRIPT)
        self._swap = register(_SWAP_SCRIPT)
        self._delete = register(_DELETE_SCRIPT)
        self._message_create = register(_MESSAGE_CREATE_SCRIPT)
        self._message_update = register(_MESSAGE_UPDATE_SCRIPT)
        self._suppress_add = register(_SUPPRESS_ADD_SCRIPT)
        self._circuit_claim = register(_CIRCUIT_CLAIM_SCRIPT)
        self._circuit_record = register(_CIRCUIT_RECORD_SCRIPT)
        self._circuit_get = register(_CIRCUIT_GET_SCRIPT)

    def window_acquire(self, key: str, limit: int, window_ms: int) -> int:
        return int(self._window(keys=[f"{KEY_PREFIX}:window:{key}"], args=[limit, window_ms]))

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        return int(self._delay(keys=[f"{KEY_PREFIX}:delay:{key}"], args=[reset_after_ms]))

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        existing = self._reserve(keys=[f"{KEY_PREFIX}:record:{key}"], args=[value, ttl_ms])
        return None if existing is None else existing.decode()

    def record_swap(self, key: str, expected: str, value: str, ttl_ms: int) -> bool:
        return bool(self._swap(keys=[f"{KEY_PREFIX}:record:{key}"], args=[expected, value, ttl_ms]))

    def record_delete(self, key: str, expected: str) -> bool:
        return bool(self._delete(keys=[f"{KEY_PREFIX}:record:{key}"], args=[expected]))

    def message_create(self, key: str, record: dict[str, Any], ttl_ms: int) -> None:
        value = json.dumps(record, separators=(",", ":"))
        self._message_create(keys=[f"{KEY_PREFIX}:message:{key}"], args=[value, ttl_ms])

    def message_update(self, key: str, entry: dict[str, Any], orphan: dict[str, Any],
                       ttl_ms: int) -> tuple[str | None, dict[str, Any]]:
        before, encoded = self._message_update(
            keys=[f"{KEY_PREFIX}:message:{key}"],
            args=[json.dumps(entry), json.dumps(orphan), ttl_ms])
        return (before.decode() if before else None), _decoded(encoded)

    def message_get(self, key: str) -> dict[str, Any] | None:
        value = self.client.get(f"{KEY_PREFIX}:message:{key}")
        return None if value is None else _decoded(value)

    # The list is one hash, number -> "source since": without a TTL, read by one HGET on
    # the hot path, exported by HSCAN.

    def suppression_add(self, number: str, source: str) -> bool:
        return bool(self._suppress_add(keys=[SUPPRESSIONS_KEY], args=[number, source]))

    def suppression_remove(self, number: str) -> bool:
        return bool(self.client.hdel(SUPPRESSIONS_KEY, number))

    def suppression_get(self, number: str) -> tuple[str, int] | None:
        value = self.client.hget(SUPPRESSIONS_KEY, number)
        return None if value is None else _suppression(value)

    def suppression_all(self) -> list[tuple[str, str, int]]:
        return sorted((number.decode(), *_suppression(value))
                      for number, value in self.client.hscan_iter(SUPPRESSIONS_KEY, count=1000))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        self.pool.disconnect()

    # -- circuit breakers of provider failover (SPEC section 13) ------------------------

    def circuit_admit(self, key: str, lease_ms: int) -> tuple[str, int]:
        state, value = self._circuit_claim(keys=[f"{KEY_PREFIX}:circuit:{key}"], args=[lease_ms])
        return state.decode(), int(value)

    def circuit_record(self, key: str, ok: bool, trial: bool, threshold: int,
                       reset_after_ms: int) -> tuple[str, str]:
        before, after = self._circuit_record(
            keys=[f"{KEY_PREFIX}:circuit:{key}"],
            args=[int(ok), int(trial), threshold, reset_after_ms])
        return before.decode(), after.decode()

    def circuit_get(self, key: str) -> tuple[str, int, int]:
        state, failures, ms = self._circuit_get(keys=[f"{KEY_PREFIX}:circuit:{key}"])
        return state.decode(), int(failures), int(ms)


def _decoded(value: bytes) -> dict[str, Any]:
    record = json.loads(value)
    # cjson writes an empty Lua table as {}: an orphan's fields it never filled.
    if not isinstance(record.get("history"), list):
        record["history"] = []
    return record


def _suppression(value: bytes) -> tuple[str, int]:
    source, _, since = value.decode().partition(" ")
    return source, int(since)
