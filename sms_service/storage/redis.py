"""redis:// storage: state shared by every worker and replica that points at one Redis.

Every operation is one Lua script: one round trip, atomic, and timed by the Redis clock,
so replicas with skewed clocks still agree.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cached_property
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sms_service.status import events, model
from sms_service.storage.base import KEY_PREFIX, BudgetAsk, CircuitAsk, GuardsAnswer, OutboxEvent, Storage

log = logging.getLogger(__name__)

SUPPRESSIONS_KEY = f"{KEY_PREFIX}:suppressions"
# The status webhook outbox: event ids by due time and by creation, and one hash per event.
OUTBOX_DUE_KEY = f"{KEY_PREFIX}:webhooks:due"
OUTBOX_CREATED_KEY = f"{KEY_PREFIX}:webhooks:created"
OUTBOX_EVENT_PREFIX = f"{KEY_PREFIX}:webhook:"

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

# sms_service.status.events in Lua: with an event id (ARGV[event]) and the outbox's keys
# (KEYS[2..4]), a record whose status changed puts its event in the outbox, in the same
# script as the change. An orphan waits for its record's merge.
_ENQUEUE = _NOW + """
local function enqueue(event_id, record, before)
  if event_id == '' or record.orphan or record.status == before then
    return
  end
  local owner = record.owner
  record.owner = nil
  local snapshot = cjson.encode(record)
  record.owner = owner
  redis.call('HSET', KEYS[4], 'key', KEYS[1], 'record', snapshot, 'created', now, 'attempts', 0, 'lease', '')
  redis.call('ZADD', KEYS[2], now, event_id)
  redis.call('ZADD', KEYS[3], now, event_id)
end
"""

_MESSAGE_CREATE_SCRIPT = _RULE + _ENQUEUE + """
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
local own_status = record.status
for _, entry in ipairs(old.history) do
  apply(record, entry)
end
redis.call('SET', KEYS[1], cjson.encode(record), 'PX', ARGV[2])
enqueue(ARGV[3] or '', record, own_status)
return 2
"""

_MESSAGE_UPDATE_SCRIPT = _RULE + _ENQUEUE + """
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
enqueue(ARGV[4] or '', record, before)
if before == nil or before == cjson.null then
  before = false
end
return {before, encoded}
"""

# A first opt-out stays as it was; the time is the Redis clock's, like every other.
_SUPPRESS_ADD_SCRIPT = _NOW + """
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now))
"""


# -- segment budgets and estimates (SPEC section 14) -----------------------------------

# KEYS[1] lists the admitted messages of the window, newest first, as "time:cost";
# KEYS[2] holds their total, so a hit reads only the entries leaving the window. Both
# live as long as the newest entry counts. ARGV[4] is 1 to count the cost, 0 to peek
# (a peek only forgets entries that have left the window, which changes no answer).
_BUDGET_SCRIPT = _NOW + """
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local consume = ARGV[4] == '1'
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local pruned = false
while true do
  local oldest = redis.call('LINDEX', KEYS[1], -1)
  if not oldest then
    total = 0
    break
  end
  local sep = string.find(oldest, ':', 1, true)
  if now - tonumber(string.sub(oldest, 1, sep - 1)) < window then
    break
  end
  redis.call('RPOP', KEYS[1])
  total = total - tonumber(string.sub(oldest, sep + 1))
  pruned = true
end
if total + cost <= limit then
  if consume then
    total = total + cost
    redis.call('LPUSH', KEYS[1], now .. ':' .. cost)
    redis.call('PEXPIRE', KEYS[1], window)
    redis.call('SET', KEYS[2], total, 'PX', window)
    return {0, total, now}
  end
end
if pruned then
  if total > 0 then
    redis.call('SET', KEYS[2], total, 'KEEPTTL')
  else
    redis.call('DEL', KEYS[1], KEYS[2])
  end
end
if total + cost <= limit then
  return {0, total}
end
-- Each entry is at least one unit: the wait is decided within the oldest `need`.
local need = total + cost - limit
local freed = 0
local oldest = redis.call('LRANGE', KEYS[1], -need, -1)
for i = #oldest, 1, -1 do
  local sep = string.find(oldest[i], ':', 1, true)
  freed = freed + tonumber(string.sub(oldest[i], sep + 1))
  if freed >= need then
    return {math.max(1, tonumber(string.sub(oldest[i], 1, sep - 1)) + window - now), total}
  end
end
return {math.max(1, window), total}
"""

_DELAY_PEEK_SCRIPT = _NOW + """
local reset = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'k', 'last')
local k = tonumber(state[1])
local last = tonumber(state[2])
if not (k and last) or now - last >= reset then
  return 0
end
local wait = 1000 * 2 ^ (k - 1)
if now - last < wait then
  return math.ceil(last + wait - now)
end
return 0
"""


# -- status webhook outbox (SPEC section 11) ---------------------------------------------
# A claim moves the event's due time past its lease and gives it a new lease token: a
# worker that dies mid-attempt leaves it due again when the lease runs out. Event hashes
# are named from their ids inside the scripts (one Redis, never a cluster).

_OUTBOX_CLAIM_SCRIPT = _NOW + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local claimed = {}
for i, id in ipairs(ids) do
  local hash = '""" + OUTBOX_EVENT_PREFIX + """' .. id
  local fields = redis.call('HMGET', hash, 'key', 'record', 'attempts', 'created')
  if not fields[1] then
    redis.call('ZREM', KEYS[1], id)
  else
    local lease = ARGV[3] .. ':' .. i
    redis.call('HSET', hash, 'lease', lease)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    -- A damaged 'created' gives an empty age: the caller removes the event (never a Lua
    -- error, which would fail every event of the batch, every poll).
    local created = tonumber(fields[4])
    local age = created and tostring(now - created) or ''
    claimed[#claimed + 1] = {id, fields[1], fields[2], fields[3], age, lease}
  end
end
return claimed
"""

_OUTBOX_DELIVERED_SCRIPT = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

_OUTBOX_RETRY_SCRIPT = _NOW + """
if redis.call('HGET', KEYS[2], 'lease') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[2], 'lease', '')
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""

_OUTBOX_DROP_SCRIPT = """
if redis.call('HGET', KEYS[3], 'lease') ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""

_OUTBOX_EXHAUSTED_SCRIPT = """
if redis.call('HGET', KEYS[3], 'lease') ~= ARGV[2] then
  return 0
end
local key = redis.call('HGET', KEYS[3], 'key')
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
local existing = redis.call('GET', key)
if existing then
  local record = cjson.decode(existing)
  if type(record.webhookFailures) ~= 'table' then
    record.webhookFailures = {}
  end
  table.insert(record.webhookFailures, cjson.decode(ARGV[3]))
  while #record.webhookFailures > """ + str(events.MAX_WEBHOOK_FAILURES) + """ do
    table.remove(record.webhookFailures, 1)
  end
  redis.call('SET', key, cjson.encode(record), 'KEEPTTL')
end
return 1
"""

_OUTBOX_STATS_SCRIPT = _NOW + """
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if not oldest[2] then
  return {0, false}
end
return {redis.call('ZCARD', KEYS[1]), tostring(now - tonumber(oldest[2]))}
"""

# Takes back one "time:cost" entry a spend pushed, and its cost from the total. An entry
# that has left the window was popped already (or will be, counted by the total until
# then): LREM finds it, or nothing, and the total stays the entries' sum either way.
_BUDGET_REFUND_SCRIPT = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local total = redis.call('DECRBY', KEYS[2], tonumber(ARGV[2]))
if total <= 0 then
  if redis.call('LLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
  else
    redis.call('SET', KEYS[2], 0, 'KEEPTTL')
  end
end
return 1
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
if ok and failures == 0 and retry_at == 0 then
  return {'closed', 'closed'}  -- closed and healthy: nothing to clear, nothing written
end
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

# A trial in flight keeps the circuit open, as the claim script says.
_CIRCUIT_GET_SCRIPT = _NOW + """
local state = redis.call('HMGET', KEYS[1], 'f', 'r', 'l')
local failures = tonumber(state[1]) or 0
local retry_at = tonumber(state[2]) or 0
local lease_until = tonumber(state[3]) or 0
if retry_at == 0 then
  return {'closed', failures, 0}
end
local wait = math.max(retry_at, lease_until) - now
if wait > 0 then
  return {'open', failures, math.max(1, math.ceil(wait))}
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
        self._budget = register(_BUDGET_SCRIPT)
        self._delay_peek = register(_DELAY_PEEK_SCRIPT)
        self._outbox_claim = register(_OUTBOX_CLAIM_SCRIPT)
        self._outbox_drop = register(_OUTBOX_DROP_SCRIPT)
        self._outbox_delivered = register(_OUTBOX_DELIVERED_SCRIPT)
        self._outbox_retry = register(_OUTBOX_RETRY_SCRIPT)
        self._outbox_exhausted = register(_OUTBOX_EXHAUSTED_SCRIPT)
        self._outbox_stats = register(_OUTBOX_STATS_SCRIPT)
        self._circuit_claim = register(_CIRCUIT_CLAIM_SCRIPT)
        self._circuit_record = register(_CIRCUIT_RECORD_SCRIPT)
        self._circuit_get = register(_CIRCUIT_GET_SCRIPT)
        self._budget_refund = register(_BUDGET_REFUND_SCRIPT)

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

    def message_create(self, key: str, record: dict[str, Any], ttl_ms: int,
                       event_id: str | None = None) -> bool:
        value = json.dumps(record, separators=(",", ":"))
        # The script answers 2 when it merged an orphan in.
        answer = self._message_create(keys=_message_keys(key, event_id), args=[value, ttl_ms, event_id or ""])
        return answer == 2

    def message_update(self, key: str, entry: dict[str, Any], orphan: dict[str, Any],
                       ttl_ms: int, event_id: str | None = None) -> tuple[str | None, dict[str, Any]]:
        before, encoded = self._message_update(
            keys=_message_keys(key, event_id),
            args=[json.dumps(entry), json.dumps(orphan), ttl_ms, event_id or ""])
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

    # -- segment budgets and estimates (SPEC section 14) --------------------------------

    def budget_spend(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int, float]:
        return self._run_budget(key, cost, limit, window_ms, 1)

    def budget_peek(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int]:
        return self._run_budget(key, cost, limit, window_ms, 0)[:2]

    def _run_budget(self, key: str, cost: int, limit: int, window_ms: int,
                    consume: int) -> tuple[int, int, float]:
        wait, used, *at = self._budget(keys=_budget_keys(key), args=[cost, limit, window_ms, consume])
        return int(wait), int(used), float(at[0]) if at else 0.0

    def delay_peek(self, key: str, reset_after_ms: int) -> int:
        return int(self._delay_peek(keys=[f"{KEY_PREFIX}:delay:{key}"], args=[reset_after_ms]))

    # -- status webhook outbox (SPEC section 11) -----------------------------------------

    def webhook_claim(self, limit: int, lease_ms: int) -> list[OutboxEvent]:
        rows = self._outbox_claim(keys=[OUTBOX_DUE_KEY], args=[limit, lease_ms, os.urandom(12).hex()])
        claimed = []
        for event_id, key, record, attempts, age, lease in rows:
            try:
                message_key = key.decode().removeprefix(f"{KEY_PREFIX}:message:")
                claimed.append(OutboxEvent(event_id.decode(), message_key, _decoded(record), int(attempts),
                                           float(age), lease.decode()))
            except (TypeError, ValueError, AttributeError, UnicodeDecodeError):
                # Removed under our own lease (the raw id: it may not even be UTF-8).
                self._outbox_drop(keys=[OUTBOX_DUE_KEY, OUTBOX_CREATED_KEY,
                                        OUTBOX_EVENT_PREFIX.encode() + event_id], args=[event_id, lease])
                log.error("status webhook event unreadable: removed from the outbox",
                          extra={"webhook_id": event_id.decode("utf-8", "replace")[:100]})
        return claimed

    def webhook_delivered(self, event_id: str) -> bool:
        return bool(self._outbox_delivered(
            keys=[OUTBOX_DUE_KEY, OUTBOX_CREATED_KEY, OUTBOX_EVENT_PREFIX + event_id], args=[event_id]))

    def webhook_retry(self, event_id: str, lease: str, delay_ms: int) -> bool:
        return bool(self._outbox_retry(
            keys=[OUTBOX_DUE_KEY, OUTBOX_EVENT_PREFIX + event_id], args=[event_id, lease, delay_ms]))

    def webhook_exhausted(self, event_id: str, lease: str, failure: dict[str, Any]) -> bool:
        return bool(self._outbox_exhausted(
            keys=[OUTBOX_DUE_KEY, OUTBOX_CREATED_KEY, OUTBOX_EVENT_PREFIX + event_id],
            args=[event_id, lease, json.dumps(failure)]))

    def webhook_stats(self) -> tuple[int, float | None]:
        count, age = self._outbox_stats(keys=[OUTBOX_CREATED_KEY])
        return int(count), (None if age is None else float(age))


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

    # -- review fixes: taking back a budget spend that sent nothing ---------------------

    def budget_refund(self, key: str, cost: int, window_ms: int, at: float) -> bool:
        # The entry as the spend's script wrote it: Lua prints a whole number of ms as such.
        entry = f"{int(at)}:{cost}"
        return bool(self._budget_refund(keys=_budget_keys(key), args=[entry, cost]))

    # -- the guards of one send in one operation (SPEC section 22) ----------------------

    def guards_admit(self, number: str, delay_key: str, reset_after_ms: int,
                     budget: BudgetAsk | None = None, circuit: CircuitAsk | None = None) -> GuardsAnswer:
        if not self._guards_in_one_script():
            return super().guards_admit(number, delay_key, reset_after_ms, budget, circuit)
        args = [number, reset_after_ms, *(("1", *budget[1:]) if budget else ("0", 0, 0, 0)),
                *(("1", circuit.lease_ms) if circuit else ("0", 0))]
        answer = self._guards_script(keys=_guards_keys(delay_key, budget, circuit), args=args)
        verdict = answer[0].decode()
        if verdict == "suppressed":
            return GuardsAnswer("suppressed")
        if verdict == "delay":
            return GuardsAnswer("delay", int(answer[1]))
        if verdict == "budget":
            return GuardsAnswer("budget", int(answer[1]), int(answer[2]))
        used = None if answer[1] is None else int(answer[1])
        at = 0.0 if answer[2] is None else float(answer[2])
        state = (answer[3].decode(), int(answer[4])) if len(answer) > 3 else None
        return GuardsAnswer(None, 0, used, at, state)

    def _guards_in_one_script(self) -> bool:
        # Every key of one send in one script: one node only. (A Redis Cluster spreads
        # them over slots and keeps the composed default.)
        return True

    @cached_property
    def _guards_script(self):
        return self.client.register_script(_GUARDS_SCRIPT)


def _budget_keys(key: str) -> list[str]:
    # One hash tag: both keys land on one Redis Cluster slot, as a script needs.
    return [f"{KEY_PREFIX}:budget:{{{key}}}", f"{KEY_PREFIX}:budget:{{{key}}}:total"]


def _message_keys(key: str, event_id: str | None) -> list[str]:
    keys = [f"{KEY_PREFIX}:message:{key}"]
    if event_id:
        keys += [OUTBOX_DUE_KEY, OUTBOX_CREATED_KEY, OUTBOX_EVENT_PREFIX + event_id]
    return keys


def _decoded(value: bytes) -> dict[str, Any]:
    record = json.loads(value)
    # cjson writes an empty Lua table as {}: an orphan's fields it never filled.
    if not isinstance(record.get("history"), list):
        record["history"] = []
    return record


def _suppression(value: bytes) -> tuple[str, int]:
    source, _, since = value.decode().partition(" ")
    return source, int(since)


def _guards_keys(delay_key: str, budget: BudgetAsk | None, circuit: CircuitAsk | None) -> list[str]:
    """Every key `_GUARDS_SCRIPT` touches, in its order: the one place that names them."""
    keys = [SUPPRESSIONS_KEY, f"{KEY_PREFIX}:delay:{delay_key}"]
    if budget is not None:
        keys += _budget_keys(budget.key)
    if circuit is not None:
        keys.append(f"{KEY_PREFIX}:circuit:{circuit.key}")
    return keys


# The storage side of a send's guards in one round trip, atomic: what guards_admit's
# composed default answers (suppression, delay, budget spend, circuit admit), each
# step's Lua as in its own script above. Atomic, so the delay is read once and taken
# after the budget admitted: no spend to take back. KEYS: suppressions, delay, [budget
# entries, budget total], [circuit]. ARGV: number, reset, budget?, cost, limit, window,
# circuit?, lease. Answers {'suppressed'}, {'delay', wait}, {'budget', wait, used} or
# {'ok', used|nil, at|nil[, state, value]}.
_GUARDS_SCRIPT = _NOW + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return {'suppressed'}
end
local reset = tonumber(ARGV[2])
local streak = redis.call('HMGET', KEYS[2], 'k', 'last')
local k = tonumber(streak[1])
local last = tonumber(streak[2])
if k and last and now - last < reset then
  local wait = 1000 * 2 ^ (k - 1)
  if now - last < wait then
    return {'delay', math.ceil(last + wait - now)}
  end
  k = k + 1
else
  k = 1
end
local n = 3
local used, at = false, false
if ARGV[3] == '1' then
  local cost, limit, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local entries, totals = KEYS[3], KEYS[4]
  n = 5
  local total = tonumber(redis.call('GET', totals) or '0')
  local pruned = false
  while true do
    local oldest = redis.call('LINDEX', entries, -1)
    if not oldest then
      total = 0
      break
    end
    local sep = string.find(oldest, ':', 1, true)
    if now - tonumber(string.sub(oldest, 1, sep - 1)) < window then
      break
    end
    redis.call('RPOP', entries)
    total = total - tonumber(string.sub(oldest, sep + 1))
    pruned = true
  end
  if total + cost > limit then
    if pruned then
      if total > 0 then
        redis.call('SET', totals, total, 'KEEPTTL')
      else
        redis.call('DEL', entries, totals)
      end
    end
    local need = total + cost - limit
    local freed = 0
    local oldest = redis.call('LRANGE', entries, -need, -1)
    for i = #oldest, 1, -1 do
      local sep = string.find(oldest[i], ':', 1, true)
      freed = freed + tonumber(string.sub(oldest[i], sep + 1))
      if freed >= need then
        return {'budget', math.max(1, tonumber(string.sub(oldest[i], 1, sep - 1)) + window - now), total}
      end
    end
    return {'budget', math.max(1, window), total}
  end
  total = total + cost
  redis.call('LPUSH', entries, now .. ':' .. cost)
  redis.call('PEXPIRE', entries, window)
  redis.call('SET', totals, total, 'PX', window)
  used, at = total, now
end
redis.call('HSET', KEYS[2], 'k', k, 'last', now)
redis.call('PEXPIRE', KEYS[2], math.ceil(reset))
if ARGV[7] ~= '1' then
  return {'ok', used, at}
end
local state = redis.call('HMGET', KEYS[n], 'f', 'r', 'l')
local failures = tonumber(state[1]) or 0
local retry_at = tonumber(state[2]) or 0
local lease_until = tonumber(state[3]) or 0
if retry_at == 0 then
  return {'ok', used, at, 'closed', failures}
end
local wait = math.max(retry_at, lease_until) - now
if wait > 0 then
  return {'ok', used, at, 'open', math.max(1, math.ceil(wait))}
end
redis.call('HSET', KEYS[n], 'l', now + tonumber(ARGV[8]))
return {'ok', used, at, 'trial', 0}
"""
