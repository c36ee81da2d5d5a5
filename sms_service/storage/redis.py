"""redis:// storage: state shared by every worker and replica that points at one Redis.

One node, a primary followed through its Sentinels, or a Cluster (`redis_clients`).
Every operation is one Lua script over the keys of one entity (`redis_keys`): atomic,
one round trip (the webhook outbox, which spans two slots, says below how it stays
whole), and timed by the Redis clock, so replicas with skewed clocks still agree.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

import redis

from sms_service.redis_topology import RedisTopology, parse_redis_uri
from sms_service.status import events, listing, model
from sms_service.storage import base
from sms_service.storage import redis_clients as clients
from sms_service.storage import redis_keys as keys
from sms_service.storage.base import BudgetAsk, CircuitAsk, GuardsAnswer, OutboxEvent, Storage, T
from sms_service.storage.redis_upgrade import upgrade_key_scheme

log = logging.getLogger(__name__)

# Every call answers within this, or raises (the webhook lease is sized on it).
REDIS_SOCKET_TIMEOUT = clients.REDIS_SOCKET_TIMEOUT
# An event outlives the longest STATUS_WEBHOOK_RETRY_FOR (7 days) whatever its record's TTL.
EVENT_TTL_MS = 8 * 86_400_000
# How long an outbox index entry waits for its event before a claim may call it dangling.
INDEX_GRACE_MS = 60_000
# WAIT for a replica at most this long: well within the 0.5 s socket timeout.
WAIT_TIMEOUT_MS = 200
# Cluster redirections followed by a durable write before it gives up (redis-py: 16).
MAX_REDIRECTIONS = 16
# Whether the primary has replicas is asked again this often (a failover changes it).
REPLICA_CHECK_S = 5.0

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
local RANK = {queued = 0, sent = 1, delivered = 2, undelivered = 2, failed = 2, unknown = 2}
local REPORTED_FINAL = {delivered = true, undelivered = true, failed = true}
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
      or (RANK[current] < 2 and RANK[entry.status] >= RANK[current])
      or (current == 'unknown' and REPORTED_FINAL[entry.status]) then
    record.status = entry.status
    record.providerStatus = entry.providerStatus
    record.errorCode = entry.errorCode
  end
  return true
end
"""

# sms_service.status.events in Lua. With an event id, a record whose status changed puts
# its event (KEYS[2], in the message's own slot) beside it in the same script. The outbox
# index lives in another slot and is written by separate calls (see RedisStorage's
# outbox block): ARGV 'indexed' says whether the index already holds the id. When it
# does not, a change that would make an event returns 'index' and changes nothing; when
# the event key already exists (a claim found the id dangling and left a tombstone),
# 'stale' and nothing either. An orphan waits for its record's merge.
_ENQUEUE = _NOW + """
local function makes_event(event_id, record, before)
  return event_id ~= '' and not record.orphan and record.status ~= before
end
local function blocked(indexed)
  if indexed ~= '1' then
    return 'index'
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return 'stale'
  end
  return false
end
local function enqueue(record, event_ttl)
  local owner = record.owner
  record.owner = nil
  local snapshot = cjson.encode(record)
  record.owner = owner
  redis.call('HSET', KEYS[2], 'record', snapshot, 'created', now, 'attempts', 0)
  redis.call('PEXPIRE', KEYS[2], event_ttl)
end
"""

# ARGV: record, ttl, event id, indexed, event ttl. Answers {code, status, event}: code 1
# stored, 0 left alone, 2 merged an orphan (status: the record's after the merge); event
# 'event' (enqueued), 'index', 'stale' or ''.
_MESSAGE_CREATE_BODY = """
local existing = redis.call('GET', KEYS[1])
if not existing then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, '', ''}
end
local old = cjson.decode(existing)
if not old.orphan then
  return {0, '', ''}
end
local record = cjson.decode(ARGV[1])
local own_status = record.status
for _, entry in ipairs(old.history) do
  apply(record, entry)
end
local event = makes_event(ARGV[3], record, own_status)
if event then
  local stop = blocked(ARGV[4])
  if stop then
    return {0, '', stop}
  end
end
redis.call('SET', KEYS[1], cjson.encode(record), 'PX', ARGV[2])
if event then
  enqueue(record, ARGV[5])
  return {2, record.status, 'event'}
end
return {2, record.status, ''}
"""
_MESSAGE_CREATE_SCRIPT = _RULE + _ENQUEUE + _MESSAGE_CREATE_BODY

# ARGV: entry, orphan fields, ttl, event id, indexed, event ttl. Answers
# {before, record, event} with event as for the create script.
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
local event = makes_event(ARGV[4], record, before)
if event then
  local stop = blocked(ARGV[5])
  if stop then
    return {false, false, stop}
  end
end
local encoded = cjson.encode(record)
redis.call('SET', KEYS[1], encoded, 'PX', ARGV[3])
if event then
  enqueue(record, ARGV[6])
end
if before == nil or before == cjson.null then
  before = false
end
return {before, encoded, event and 'event' or ''}
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
# The index scripts take redis_keys.outbox() as KEYS: due (zset), created (zset), messages
# (id -> message key), leases (id -> lease token). The event itself is a hash in its
# message's slot, written by the message scripts above.

# Before the message script that may write the event: index the id, due only after
# ARGV[3] ms, so a writer that dies before its event exists leaves an entry no claim
# looks at until then. Answers the due time, which `_OUTBOX_READY_SCRIPT` compares.
_OUTBOX_INDEX_SCRIPT = _NOW + """
local due = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], due, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return due
"""

# The event exists: due now, unless a claim moved it meanwhile (then it is the claim's).
_OUTBOX_READY_SCRIPT = _NOW + """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
"""

# The message script made no event after all: forget the id, unless a claim has it.
_OUTBOX_UNINDEX_SCRIPT = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# A claim moves the id's due time past its lease and gives it a new lease token: a
# worker that dies mid-attempt leaves it due again when the lease runs out. Answers
# {id, message key, lease} for each; an id without a message key is removed.
_OUTBOX_CLAIM_SCRIPT = _NOW + """
-- Bounds (issue 22), before the claim: ids past their retry period (ARGV[4] ms, or '')
-- and the oldest beyond the cap (ARGV[5], or ''), at most ARGV[6] of them, leave the
-- index unless an attempt holds them (a live lease). The event and its record live in
-- the message's slot, so the caller finishes each drop there (`_OUTBOX_DROPPED_SCRIPT`).
-- Answers {claimed, dropped}, dropped as {id, message key, age, reason}.
local dropped = {}
local function drop(id, reason)
  local lease = redis.call('HGET', KEYS[4], id)
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if lease and lease ~= '' and due and due > now then
    return false
  end
  local key = redis.call('HGET', KEYS[3], id)
  local created = tonumber(redis.call('ZSCORE', KEYS[2], id))
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  if key then
    dropped[#dropped + 1] = {id, key, created and tostring(now - created) or '', reason}
  end
  return true
end
local batch = tonumber(ARGV[6])
if ARGV[4] ~= '' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]), 'LIMIT', 0, batch)
  for _, id in ipairs(old) do
    drop(id, 'expired')
  end
end
if ARGV[5] ~= '' then
  local over = math.min(redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5]), batch - #dropped)
  -- The oldest events not held by an attempt: those held are skipped and stay.
  local skipped = 0
  while over > 0 do
    local oldest = redis.call('ZRANGE', KEYS[2], skipped, skipped + over - 1)
    if #oldest == 0 then
      break
    end
    for _, id in ipairs(oldest) do
      if drop(id, 'backlog') then
        over = over - 1
      else
        skipped = skipped + 1
      end
    end
  end
end
-- The claim itself, as before the bounds.
local ids = {}
if tonumber(ARGV[1]) > 0 then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
end
local claimed = {}
for i, id in ipairs(ids) do
  local key = redis.call('HGET', KEYS[3], id)
  if not key then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
  else
    local lease = ARGV[3] .. ':' .. i
    redis.call('HSET', KEYS[4], id, lease)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    claimed[#claimed + 1] = {id, key, lease}
  end
end
return {claimed, dropped}
"""

# Reads a claimed event from its message's slot. An event that is not there is a
# dangling index entry (its writer died, or it was delivered and the index not yet
# told): a tombstone keeps a late writer from creating it now (it re-indexes under a
# new id instead), and the caller removes the entry. A damaged 'created' gives an empty
# age: the caller removes the event (never a Lua error, which would fail the batch).
_OUTBOX_READ_SCRIPT = _NOW + """
local fields = redis.call('HMGET', KEYS[1], 'record', 'attempts', 'created', 'gone')
if fields[4] then
  return false
end
if not fields[1] then
  redis.call('HSET', KEYS[1], 'gone', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return false
end
local created = tonumber(fields[3])
local age = created and tostring(now - created) or ''
return {fields[1], fields[2] or '', age}
"""

# Under the caller's lease: answers the id's message key (false when the lease is not
# ours). ARGV[3] 'retry': the attempt failed, due again in ARGV[4] ms, lease freed.
_OUTBOX_LEASED_SCRIPT = _NOW + """
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  return false
end
if ARGV[3] == 'retry' then
  redis.call('HSET', KEYS[4], ARGV[1], '')
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
end
return redis.call('HGET', KEYS[3], ARGV[1])
"""

# Removes the id from the index: under ARGV[2] as lease, or whoever holds it when empty.
_OUTBOX_REMOVE_SCRIPT = """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

_OUTBOX_ATTEMPT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 and not redis.call('HGET', KEYS[1], 'gone') then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
return 1
"""

# KEYS: the message record, its event. Appends the failure and drops the event.
_OUTBOX_EXHAUSTED_SCRIPT = """
redis.call('DEL', KEYS[2])
local existing = redis.call('GET', KEYS[1])
if existing then
  local record = cjson.decode(existing)
  if type(record.webhookFailures) ~= 'table' then
    record.webhookFailures = {}
  end
  table.insert(record.webhookFailures, cjson.decode(ARGV[1]))
  while #record.webhookFailures > """ + str(events.MAX_WEBHOOK_FAILURES) + """ do
    table.remove(record.webhookFailures, 1)
  end
  redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
end
return 1
"""

# The message-slot half of a drop (issue 22): the event leaves, and its record's
# webhookFailures says why, in one step. An event that is not there (its writer has not
# written it yet) gets a tombstone, as a claim's read gives one: a writer stalled past
# the drop then indexes a new id. ARGV: reason, at. Answers {event record, attempts}.
_OUTBOX_DROPPED_SCRIPT = """
local fields = redis.call('HMGET', KEYS[2], 'record', 'attempts', 'gone')
if fields[3] then
  return false
end
if not fields[1] then
  redis.call('HSET', KEYS[2], 'gone', 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return false
end
redis.call('DEL', KEYS[2])
local ok, event = pcall(cjson.decode, fields[1])
local status = (ok and type(event) == 'table' and event.status) or cjson.null
local existing = redis.call('GET', KEYS[1])
if existing then
  local record = cjson.decode(existing)
  if type(record.webhookFailures) ~= 'table' then
    record.webhookFailures = {}
  end
  table.insert(record.webhookFailures, {webhookId = ARGV[4], status = status,
                                        attempts = tonumber(fields[2]) or 0,
                                        lastResult = cjson.null, reason = ARGV[1], at = ARGV[2]})
  while #record.webhookFailures > """ + str(events.MAX_WEBHOOK_FAILURES) + """ do
    table.remove(record.webhookFailures, 1)
  end
  redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
end
return {fields[1], fields[2] or '0'}
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


# Templates (SPEC section 16): KEYS[1] the template's meta hash (latest, archived),
# KEYS[2] its versions hash (number -> "created content"), both under {tpl:<name>}.
_TEMPLATE_PUT_SCRIPT = _NOW + """
local meta = redis.call('HMGET', KEYS[1], 'latest', 'archived')
local latest = tonumber(meta[1]) or 0
if latest > 0 and meta[2] == '0' then
  local stored = redis.call('HGET', KEYS[2], latest)
  if stored and string.sub(stored, string.find(stored, ' ', 1, true) + 1) == ARGV[1] then
    return {latest, 0}
  end
end
local number = latest + 1
redis.call('HSET', KEYS[2], number, string.format('%d', now) .. ' ' .. ARGV[1])
redis.call('HSET', KEYS[1], 'latest', number, 'archived', '0')
return {number, 1}
"""

# ARGV[1]: the version number, or '' for the latest.
_TEMPLATE_VERSION_SCRIPT = """
local meta = redis.call('HMGET', KEYS[1], 'latest', 'archived')
if not meta[1] then
  return false
end
local number = ARGV[1] ~= '' and ARGV[1] or meta[1]
local stored = redis.call('HGET', KEYS[2], number)
if not stored then
  return false
end
return {number, stored, meta[2]}
"""

_TEMPLATE_VERSIONS_SCRIPT = """
local archived = redis.call('HGET', KEYS[1], 'archived')
if not archived then
  return false
end
return {archived, redis.call('HGETALL', KEYS[2])}
"""

_TEMPLATE_ARCHIVE_SCRIPT = """
if redis.call('HGET', KEYS[1], 'archived') ~= '0' then
  return 0
end
redis.call('HSET', KEYS[1], 'archived', '1')
return 1
"""

# ARGV: archived, latest, then number and "created content" of each version.
_TEMPLATE_RESTORE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'latest', ARGV[2], 'archived', ARGV[1])
return 1
"""


class RedisStorage(Storage):
    """State in Redis, shared by every worker and replica that points at it.

    One node, a primary followed through its Sentinels, or a Cluster: every script and
    transaction keeps its keys in one slot (`redis_keys`), so each runs alike on all three.
    """

    def __init__(self, uri: str | RedisTopology) -> None:
        self.topology = uri if isinstance(uri, RedisTopology) else parse_redis_uri(uri)
        self.client = clients.connect(self.topology)
        self._replica_check: tuple[float, bool] = (-math.inf, False)
        register = self.client.register_script
        self._window = register(_WINDOW_SCRIPT)
        self._delay = register(_DELAY_SCRIPT)
        self._reserve = register(_RESERVE_SCRIPT)
        self._swap = register(_SWAP_SCRIPT)
        self._delete = register(_DELETE_SCRIPT)
        self._message_create = register(_MESSAGE_CREATE_SCRIPT)
        self._message_create_indexed = register(_MESSAGE_CREATE_INDEXED_SCRIPT)
        self._message_update = register(_MESSAGE_UPDATE_SCRIPT)
        self._suppress_add = register(_SUPPRESS_ADD_SCRIPT)
        self._budget = register(_BUDGET_SCRIPT)
        self._delay_peek = register(_DELAY_PEEK_SCRIPT)
        self._outbox_index = register(_OUTBOX_INDEX_SCRIPT)
        self._outbox_ready = register(_OUTBOX_READY_SCRIPT)
        self._outbox_unindex = register(_OUTBOX_UNINDEX_SCRIPT)
        self._outbox_claim = register(_OUTBOX_CLAIM_SCRIPT)
        self._outbox_read = register(_OUTBOX_READ_SCRIPT)
        self._outbox_leased = register(_OUTBOX_LEASED_SCRIPT)
        self._outbox_remove = register(_OUTBOX_REMOVE_SCRIPT)
        self._outbox_attempt = register(_OUTBOX_ATTEMPT_SCRIPT)
        self._outbox_exhausted = register(_OUTBOX_EXHAUSTED_SCRIPT)
        self._outbox_dropped = register(_OUTBOX_DROPPED_SCRIPT)
        self._outbox_stats = register(_OUTBOX_STATS_SCRIPT)
        self._circuit_claim = register(_CIRCUIT_CLAIM_SCRIPT)
        self._circuit_record = register(_CIRCUIT_RECORD_SCRIPT)
        self._circuit_get = register(_CIRCUIT_GET_SCRIPT)
        self._budget_refund = register(_BUDGET_REFUND_SCRIPT)
        self._index = register(_INDEX_SCRIPT)
        self._secret = register(_SET_ONCE_SCRIPT)
        self._price = register(_PRICE_SCRIPT)
        self._schedule = register(_SCHEDULE_SCRIPT)
        self._upgrade_pending = self.topology.kind != "cluster"
        self._try_upgrade()
        self._template_put = register(_TEMPLATE_PUT_SCRIPT)
        self._template_version = register(_TEMPLATE_VERSION_SCRIPT)
        self._template_versions = register(_TEMPLATE_VERSIONS_SCRIPT)
        self._template_archive = register(_TEMPLATE_ARCHIVE_SCRIPT)
        self._template_restore = register(_TEMPLATE_RESTORE_SCRIPT)

    def window_acquire(self, key: str, limit: int, window_ms: int) -> int:
        return int(self._window(keys=[keys.window(key)], args=[limit, window_ms]))

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        return int(self._delay(keys=[keys.delay(key)], args=[reset_after_ms]))

    # An idempotency reservation and its outcome must survive a failover: a lost one
    # would let a retry send the same message again.

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        name = keys.record(key)
        (existing,) = self._durable(name, lambda pipe: self._reserve(
            keys=[name], args=[value, ttl_ms], client=pipe))
        return None if existing is None else existing.decode()

    def record_swap(self, key: str, expected: str, value: str, ttl_ms: int) -> bool:
        name = keys.record(key)
        (swapped,) = self._durable(name, lambda pipe: self._swap(
            keys=[name], args=[expected, value, ttl_ms], client=pipe))
        return bool(swapped)

    def record_delete(self, key: str, expected: str) -> bool:
        return bool(self._delete(keys=[keys.record(key)], args=[expected]))

    def message_create(self, key: str, record: dict[str, Any], ttl_ms: int,
                       event_id: str | None = None) -> bool:
        value = json.dumps(record, separators=(",", ":"))
        if self._one_node():
            return self._message_create_with_index(key, record, value, ttl_ms, event_id)
        # The script answers {1, ...} when it stored the record, {2, status, ...} when it
        # merged an orphan in, {0, ...} when it left a live record alone.
        answer = self._with_event(key, event_id, lambda names, event, indexed: self._message_create(
            keys=names, args=[value, ttl_ms, event, indexed, EVENT_TTL_MS]))
        if answer[0] == 0:
            return False
        status = answer[1].decode() if answer[0] == 2 else record.get("status")
        self._index_message(key, {**record, "status": status}, ttl_ms)
        return answer[0] == 2

    def _message_create_with_index(self, key: str, record: dict[str, Any], value: str, ttl_ms: int,
                                   event_id: str | None) -> bool:
        """message_create in one round trip: the record, its listing index and its due time.

        Only a new record is indexed in the script; an orphan's merge (rare) takes the
        status the merge gave it, so it is indexed after, as on a cluster.
        """
        calls = self._index_calls(key, record, ttl_ms, "add")
        index_keys = [name for call in calls for name in call[1:1 + call[0]]]
        index_args: list[Any] = [len(calls)]
        for call in calls:
            index_args += [call[0], *call[1 + call[0]:]]
        check_at = record.get("checkAt")
        due = check_at if isinstance(check_at, int | float) else ""
        answer = self._with_event(key, event_id, lambda names, event, indexed: self._message_create_indexed(
            keys=[*names, *index_keys, keys.RECONCILE_DUE],
            args=[value, ttl_ms, event, indexed, EVENT_TTL_MS, *index_args, due, key]))
        if answer[0] == 0:
            return False
        if answer[0] == 2:
            self._index_message(key, {**record, "status": answer[1].decode()}, ttl_ms)
            return True
        if not answer[3]:
            log.warning("message listing index not updated", extra={"key": key[:200], "reason": "script"})
        return False

    def message_update(self, key: str, entry: dict[str, Any], orphan: dict[str, Any],
                       ttl_ms: int, event_id: str | None = None) -> tuple[str | None, dict[str, Any]]:
        args = [json.dumps(entry), json.dumps(orphan), ttl_ms]
        before, encoded, _ = self._with_event(key, event_id, lambda names, event, indexed: (
            self._message_update(keys=names, args=[*args, event, indexed, EVENT_TTL_MS])))
        before, record = (before.decode() if before else None), _decoded(encoded)
        if before is not None and record.get("status") != before and not record.get("orphan"):
            self._index_status(key, record, ttl_ms)
        return before, record

    def message_get(self, key: str) -> dict[str, Any] | None:
        value = self.client.get(keys.message(key))
        return None if value is None else _decoded(value)

    # The list is one hash, number -> "source since": without a TTL, read by one HGET on
    # the hot path, exported by HSCAN. An opt-out must survive a failover.

    def suppression_add(self, number: str, source: str) -> bool:
        (added,) = self._durable(keys.SUPPRESSIONS, lambda pipe: self._suppress_add(
            keys=[keys.SUPPRESSIONS], args=[number, source], client=pipe))
        return bool(added)

    def suppression_remove(self, number: str) -> bool:
        return bool(self.client.hdel(keys.SUPPRESSIONS, number))

    def suppression_get(self, number: str) -> tuple[str, int] | None:
        value = self.client.hget(keys.SUPPRESSIONS, number)
        return None if value is None else _suppression(value)

    def suppression_all(self) -> list[tuple[str, str, int]]:
        return sorted((number.decode(), *_suppression(value))
                      for number, value in self.client.hscan_iter(keys.SUPPRESSIONS, count=1000))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError):
            return False

    def close(self) -> None:
        clients.close(self.client)

    # -- segment budgets and estimates (SPEC section 14) --------------------------------

    def budget_spend(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int, float]:
        return self._run_budget(key, cost, limit, window_ms, 1)

    def budget_peek(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int]:
        return self._run_budget(key, cost, limit, window_ms, 0)[:2]

    def _run_budget(self, key: str, cost: int, limit: int, window_ms: int,
                    consume: int) -> tuple[int, int, float]:
        wait, used, *at = self._budget(keys=keys.budget(key), args=[cost, limit, window_ms, consume])
        return int(wait), int(used), float(at[0]) if at else 0.0

    def delay_peek(self, key: str, reset_after_ms: int) -> int:
        return int(self._delay_peek(keys=[keys.delay(key)], args=[reset_after_ms]))

    # -- status webhook outbox (SPEC section 11) -----------------------------------------
    #
    # On a cluster the message record and the outbox index live in different slots, so no
    # one script can change a record, write its event and index it. The event is written
    # in the message's slot by the same script as the record change (a change is never
    # kept without its event); the index, in the `{outbox}` slot, is written by separate
    # calls placed so that a process dying between any two of them loses nothing:
    #
    # 1. the message script runs with indexed=0; a change that makes an event answers
    #    'index' and writes nothing (no event: one round trip, as before);
    # 2. the id is indexed, due only INDEX_GRACE_MS from now;
    # 3. the message script runs again with indexed=1: the change and its event together;
    # 4. the index entry is made due now (or removed, when the script made no event).
    #
    # A death after 2 leaves an entry whose event may not exist: after the grace a claim
    # reads the message slot, finds nothing, leaves a tombstone there and removes the
    # entry. The tombstone makes a writer stalled past the grace answer 'stale' at 3, and
    # it indexes a fresh id. A death after 3 leaves the event indexed, due after the grace.
    # Delivery removes the event before its index entry, for the same reason.

    def _with_event(self, key: str, event_id: str | None,
                    run: Callable[[list[str], str, str], list[Any]]) -> list[Any]:
        if not event_id:
            return run([keys.message(key), keys.message_event(key, "-")], "", "0")
        answer = run([keys.message(key), keys.message_event(key, event_id)], event_id, "0")
        while _event_flag(answer) in ("index", "stale"):
            if _event_flag(answer) == "stale":
                event_id = events.new_event_id()
            due = self._outbox_index(keys=keys.outbox(), args=[event_id, key, INDEX_GRACE_MS])
            answer = run([keys.message(key), keys.message_event(key, event_id)], event_id, "1")
            if _event_flag(answer) == "event":
                self._outbox_ready(keys=keys.outbox(), args=[event_id, due])
            elif _event_flag(answer) != "stale":
                self._outbox_unindex(keys=keys.outbox(), args=[event_id, due])
        return answer

    def webhook_claim(self, limit: int, lease_ms: int, retry_for_ms: float | None = None,
                      max_backlog: int | None = None) -> list[OutboxEvent]:
        # The bounds ride in the claim's own script (issue 22); each drop is then finished
        # in its message's slot.
        rows, dropped_rows = self._outbox_claim(
            keys=keys.outbox(),
            args=[limit, lease_ms, os.urandom(12).hex(),
                  "" if retry_for_ms is None else int(retry_for_ms),
                  "" if max_backlog is None else max_backlog,
                  base.OUTBOX_DROP_BATCH])
        claimed = self._dropped_events(dropped_rows)
        for raw_id, raw_key, raw_lease in rows:
            event_key = keys.message_event(raw_key.decode("utf-8", "surrogateescape"),
                                           raw_id.decode("utf-8", "surrogateescape"))
            try:
                fields = self._outbox_read(keys=[event_key], args=[EVENT_TTL_MS])
            except UnicodeEncodeError:
                fields = None
            if fields is None:  # dangling: its event is gone or never came
                self._outbox_remove(keys=keys.outbox(), args=[raw_id, raw_lease])
                continue
            record, attempts, age = fields
            try:
                claimed.append(OutboxEvent(raw_id.decode(), raw_key.decode(), _decoded(record),
                                           int(attempts), float(age), raw_lease.decode()))
            except (TypeError, ValueError, AttributeError, UnicodeDecodeError):
                # Removed under our own lease (the raw id: it may not even be UTF-8).
                self.client.delete(event_key)
                self._outbox_remove(keys=keys.outbox(), args=[raw_id, raw_lease])
                log.error("status webhook event unreadable: removed from the outbox",
                          extra={"webhook_id": raw_id.decode("utf-8", "replace")[:100]})
        return claimed

    def _dropped_events(self, rows: list) -> list[OutboxEvent]:
        dropped, at = [], model.timestamp()
        for raw_id, raw_key, age, reason in rows:
            try:
                event_id, key = raw_id.decode(), raw_key.decode()
                fields = self._outbox_dropped(keys=[keys.message(key), keys.message_event(key, event_id)],
                                              args=[reason, at, EVENT_TTL_MS, event_id])
                if fields is None:  # its writer never wrote it: nothing was dropped
                    continue
                record, attempts = fields
                dropped.append(OutboxEvent(event_id, key, _decoded(record), int(attempts or 0),
                                           float(age or 0), "", reason.decode()))
            except (TypeError, ValueError, AttributeError, UnicodeError):
                log.error("status webhook event unreadable: removed from the outbox",
                          extra={"webhook_id": raw_id.decode("utf-8", "replace")[:100]})
        return dropped

    def webhook_delivered(self, event_id: str) -> bool:
        message_key = self.client.hget(keys.OUTBOX_MESSAGES, event_id)
        if message_key is not None:
            self.client.delete(keys.message_event(message_key.decode(), event_id))
        return bool(self._outbox_remove(keys=keys.outbox(), args=[event_id, ""]))

    def webhook_retry(self, event_id: str, lease: str, delay_ms: int) -> bool:
        message_key = self._outbox_leased(keys=keys.outbox(), args=[event_id, lease, "retry", delay_ms])
        if message_key is None:
            return False
        # After the lease check: a crash in between forgets one attempt, never counts one twice.
        self._outbox_attempt(keys=[keys.message_event(message_key.decode(), event_id)])
        return True

    def webhook_exhausted(self, event_id: str, lease: str, failure: dict[str, Any]) -> bool:
        message_key = self._outbox_leased(keys=keys.outbox(), args=[event_id, lease, "", 0])
        if message_key is None:
            return False
        key = message_key.decode()
        self._outbox_exhausted(keys=[keys.message(key), keys.message_event(key, event_id)],
                               args=[json.dumps(failure)])
        return bool(self._outbox_remove(keys=keys.outbox(), args=[event_id, lease]))

    def webhook_stats(self) -> tuple[int, float | None]:
        count, age = self._outbox_stats(keys=[keys.OUTBOX_CREATED])
        return int(count), (None if age is None else float(age))

    # -- circuit breakers of provider failover (SPEC section 13) ------------------------

    def circuit_admit(self, key: str, lease_ms: int) -> tuple[str, int]:
        state, value = self._circuit_claim(keys=[keys.circuit(key)], args=[lease_ms])
        return state.decode(), int(value)

    def circuit_record(self, key: str, ok: bool, trial: bool, threshold: int,
                       reset_after_ms: int) -> tuple[str, str]:
        before, after = self._circuit_record(
            keys=[keys.circuit(key)], args=[int(ok), int(trial), threshold, reset_after_ms])
        return before.decode(), after.decode()

    def circuit_get(self, key: str) -> tuple[str, int, int]:
        state, failures, ms = self._circuit_get(keys=[keys.circuit(key)])
        return state.decode(), int(failures), int(ms)

    # -- review fixes: taking back a budget spend that sent nothing ---------------------

    def budget_refund(self, key: str, cost: int, window_ms: int, at: float) -> bool:
        # The entry as the spend's script wrote it: Lua prints a whole number of ms as such.
        entry = f"{int(at)}:{cost}"
        return bool(self._budget_refund(keys=keys.budget(key), args=[entry, cost]))

    # -- Sentinel and Cluster (SPEC section 19) ------------------------------------------

    def guarded(self, call: Callable[[], T]) -> T:
        if self._upgrade_pending:
            super().guarded(self._upgrade)
        return super().guarded(call)

    def describe(self) -> dict[str, Any]:
        """The topology and where its primary is now, for check-config and the check-up.

        Raises `redis.RedisError` or `OSError` when Redis cannot be asked.
        """
        return clients.describe(self.client, self.topology)

    def _durable(self, key: str, queue: Callable[[Any], None]) -> list[Any]:
        """Run the commands `queue` puts on a pipeline; then, when the primary holding `key`
        has a replica, wait until one acknowledges them (WAIT 1) before answering.

        For writes a failover must not lose (idempotency records, opt-outs, template
        versions). One connection carries the writes and the WAIT, as WAIT requires, in
        one round trip. Queue ONE script (or one command) on keys of `key`'s slot: a
        Cluster redirection (MOVED, ASK, TRYAGAIN: nothing ran) is followed by sending
        the pipeline again. A WAIT that times out is logged, and the answer stands: the
        write is on the primary, and only a failover in that moment could lose it.
        Returns the replies of the queued commands. Raises `redis.RedisError`.
        """
        replicated = self._has_replicas(key)
        target = clients.node_client(self.client, self.topology, key)
        asking = False
        for _ in range(MAX_REDIRECTIONS):
            pipe = target.pipeline(transaction=False)
            if asking:
                pipe.execute_command("ASKING")
            queue(pipe)
            # Scripts are sent by their sha alone: a pipeline would ask SCRIPT EXISTS first,
            # a round trip each time; a NOSCRIPT is answered below instead.
            scripts = set(pipe.scripts)
            pipe.scripts.clear()
            if replicated:
                pipe.execute_command("WAIT", 1, WAIT_TIMEOUT_MS)
            try:
                replies = pipe.execute()
                break
            except redis.exceptions.NoScriptError:
                # A new primary after a failover, or a slot's new node: an empty script
                # cache, and nothing ran.
                for script in scripts:
                    script.sha = target.script_load(script.script)
            except (redis.exceptions.AskError, redis.exceptions.MovedError) as exc:
                asking = isinstance(exc, redis.exceptions.AskError)
                target = clients.node_client_at(self.client, exc, moved=not asking)
            except redis.exceptions.TryAgainError:
                asking = False
                time.sleep(0.05)  # a slot half-migrated: its keys are moving
        else:
            raise redis.exceptions.ClusterError(f"still redirected after {MAX_REDIRECTIONS} attempts")
        if asking:
            replies.pop(0)
        if replicated:
            acknowledged = replies.pop()
            if int(acknowledged) < 1:
                log.warning("no replica acknowledged a write within %d ms: a failover now could lose it",
                            WAIT_TIMEOUT_MS)
        return replies

    def _has_replicas(self, key: str) -> bool:
        checked_at, answer = self._replica_check
        if time.monotonic() - checked_at < REPLICA_CHECK_S:
            return answer
        answer = clients.has_replicas(self.client, self.topology, key)
        self._replica_check = (time.monotonic(), answer)
        return answer

    def _try_upgrade(self) -> None:
        try:
            self._upgrade()
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException, OSError):
            pass  # Redis is down at start-up: the first call that reaches it upgrades

    def _upgrade(self) -> None:
        if self._upgrade_pending:
            upgrade_key_scheme(self.client)
            self._upgrade_pending = False

    # -- message listing and overview (SPEC section 18) --------------------------------

    def _index_message(self, key: str, record: dict[str, Any], ttl_ms: int) -> None:
        """Index a new record for its owner and for every owner: one round trip (a pipeline)."""
        self._write_index(key, record, ttl_ms, "add")

    def _index_status(self, key: str, record: dict[str, Any], ttl_ms: int) -> None:
        """Move a record to its new status's sets: one round trip."""
        self._write_index(key, record, ttl_ms, "status")

    def _write_index(self, key: str, record: dict[str, Any], ttl_ms: int, mode: str) -> None:
        calls = self._index_calls(key, record, ttl_ms, mode)
        try:
            self._pipeline_index(calls, record.get("checkAt") if mode == "add" else None, key)
        except (redis.RedisError, OSError) as exc:
            # The record is stored: only the listing misses it (or shows its old status).
            log.warning("message listing index not updated", extra={"key": key[:200],
                                                                     "reason": type(exc).__name__})

    @staticmethod
    def _index_calls(key: str, record: dict[str, Any], ttl_ms: int, mode: str) -> list[tuple]:
        """The index script's calls for `record`: (key count, *keys, *args), one per owner scope."""
        status = record.get("status")
        new_status = _INDEXED_STATUSES.index(status) + 1 if status in _INDEXED_STATUSES else 0
        score = listing.sent_ms(record)
        keep = ttl_ms + _INDEX_MARGIN_MS
        calls = []
        for owner in {str(record.get("owner") or ""), None}:
            tag = keys.message_index(owner)
            static = []
            if mode == "add":
                static.append(f"{tag}:provider:{record.get('provider')}")
                if record.get("receiverHash"):
                    static.append(f"{tag}:rcpt:{record['receiverHash']}")
                if listing.template_name(record) is not None:
                    static.append(f"{tag}:tpl:{listing.template_name(record)}")
            # A new record is in no status set yet: only its own is written.
            statuses = _INDEXED_STATUSES if mode == "status" else (status,) if new_status else ()
            names = [f"{tag}:by-time", *static, *(f"{tag}:status:{name}" for name in statuses)]
            position = new_status if mode == "status" else 1
            calls.append((len(names), *names, key, score, keep, keep, 2 + len(static), position, mode))
        return calls

    def _pipeline_index(self, calls: list[tuple], check_at: object, key: str) -> None:
        """Run the index scripts (and the due time) in one round trip.

        EVALSHA straight into the pipeline: redis-py's Script in a pipeline asks SCRIPT
        EXISTS first, one more round trip per send. A Redis that lost its scripts (a
        restart) answers NOSCRIPT once: they are loaded and the writes sent again (each
        is idempotent).
        """
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(self._index.sha, *call)
            if isinstance(check_at, int | float):
                pipe.zadd(keys.RECONCILE_DUE, {key: check_at})  # the reconciler's, in the same round trip
            try:
                pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self.client.script_load(_INDEX_SCRIPT)

    def message_list(self, owner: str | None, *, status: str | None = None, provider: str | None = None,
                     template: str | None = None, since_ms: float | None = None,
                     until_ms: float | None = None, receiver_hash: str | None = None,
                     limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        after = listing.decode_cursor(cursor) if cursor else None
        filters = listing.Filters(status, provider, template, since_ms, until_ms, receiver_hash)
        tag = keys.message_index(owner)
        # The most selective set that holds every match; the filters are checked on each record.
        if receiver_hash is not None:
            walked = f"{tag}:rcpt:{receiver_hash}"
        elif template is not None:
            walked = f"{tag}:tpl:{template}"
        elif status is not None:
            walked = f"{tag}:status:{status}"
        elif provider is not None:
            walked = f"{tag}:provider:{provider}"
        else:
            walked = f"{tag}:by-time"
        high: float | str = "+inf" if until_ms is None else f"({int(until_ms)}"
        if after is not None and (until_ms is None or after[0] < until_ms):
            high = after[0]
        low = "-inf" if since_ms is None else int(since_ms)
        found: list[tuple[float, str, dict[str, Any]]] = []
        offset = 0
        while len(found) <= limit:
            batch = self.client.zrevrangebyscore(walked, high, low, start=offset, num=_LIST_BATCH,
                                                 withscores=True)
            offset += len(batch)
            rows = [(member.decode(), score) for member, score in batch
                    if listing.before_cursor(score, member.decode(), after)]
            pipe = self.client.pipeline(transaction=False)
            for key, _ in rows:
                pipe.get(keys.message(key))
            for (key, score), value in zip(rows, pipe.execute() if rows else [], strict=True):
                if value is None:
                    continue  # a dangling entry: the record has expired
                record = _decoded(value)
                if (owner is None or record.get("owner") == owner) and filters.matches(record):
                    found.append((score, key, record))
            if len(batch) < _LIST_BATCH:
                break
        page = found[:limit]
        following = listing.encode_cursor(page[-1][0], page[-1][1]) if len(found) > limit else None
        return [record for _, _, record in page], following

    def message_stats(self, since_ms: float) -> dict[str, Any]:
        members = self.client.zrangebyscore(f"{keys.message_index(None)}:by-time", int(since_ms), "+inf")
        records = []
        for start in range(0, len(members), 500):
            pipe = self.client.pipeline(transaction=False)
            for key in members[start:start + 500]:
                pipe.get(keys.message(key.decode()))
            records += [_decoded(value) for value in pipe.execute() if value is not None]
        return listing.stats_of([record for record in records if listing.sent_ms(record) >= since_ms])

    def secret_once(self, name: str, candidate: str) -> str:
        return self._secret(keys=[keys.secret(name)], args=[candidate]).decode()

    # -- prices (SPEC section 18) -------------------------------------------------------

    def message_price(self, key: str, price: str, unit: str) -> dict[str, Any] | None:
        encoded = self._price(keys=[keys.message(key)], args=[price, unit])
        return None if encoded is None else _decoded(encoded)

    # -- the reconciler's schedule (SPEC section 18) -------------------------------------

    def message_schedule(self, key: str, check_at_ms: float | None,
                         looked_at_ms: float | None = None) -> bool:
        # Whole ms, as model.schedule keeps them (cjson would round a fraction up).
        args = ["" if check_at_ms is None else str(math.floor(check_at_ms)),
                "" if looked_at_ms is None else str(math.floor(looked_at_ms))]
        if not self._schedule(keys=[keys.message(key)], args=args):
            return False
        # The due set is another slot: a separate call, which message_due checks against the record.
        if check_at_ms is None:
            self.client.zrem(keys.RECONCILE_DUE, key)
        else:
            self.client.zadd(keys.RECONCILE_DUE, {key: math.floor(check_at_ms)})
        return True

    def message_due(self, now_ms: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        due: list[tuple[str, dict[str, Any]]] = []
        while len(due) < limit:
            # The due ones found so far stay in the set, first: read past them.
            rows = self.client.zrangebyscore(keys.RECONCILE_DUE, "-inf", now_ms, start=len(due),
                                             num=limit - len(due), withscores=True)
            if not rows:
                break
            pipe = self.client.pipeline(transaction=False)
            for member, _ in rows:
                pipe.get(keys.message(member.decode()))
            stale = []
            for (member, _), value in zip(rows, pipe.execute(), strict=True):
                record = None if value is None else _decoded(value)
                if record is not None and model.is_due(record, now_ms):
                    due.append((member.decode(), record))
                elif record is not None and isinstance(record.get("checkAt"), int | float) \
                        and record.get("status") not in model.FINAL:
                    # Moved on: due at its own time.
                    self.client.zadd(keys.RECONCILE_DUE, {member: record["checkAt"]})
                else:
                    stale.append(member)  # expired, final, or never again
            if stale:
                self.client.zrem(keys.RECONCILE_DUE, *stale)
            if len(rows) < limit and not stale:
                break
        return due

    # -- templates (SPEC section 16): no TTL, one hash tag per template -----------------

    def template_put(self, name: str, content: str) -> tuple[int, bool]:
        self.client.sadd(keys.TEMPLATE_NAMES, name)  # the index first: a failed put leaves a dangling name
        # A new template version must survive a failover (SPEC section 19): WAIT 1.
        names = keys.template(name)
        ((number, created),) = self._durable(names[0], lambda pipe: self._template_put(
            keys=names, args=[content], client=pipe))
        return int(number), bool(created)

    def template_version(self, name: str, version: int | None) -> tuple[int, str, int, bool] | None:
        asked = "" if version is None else int(version)
        found = self._template_version(keys=keys.template(name), args=[asked])
        if not found:
            return None
        number, stored, archived = found
        created, content = _template_value(stored)
        return int(number), content, created, archived == b"1"

    def template_versions(self, name: str) -> tuple[bool, list[tuple[int, str, int]]] | None:
        found = self._template_versions(keys=keys.template(name))
        if not found:
            return None
        archived, flat = found
        versions = []
        for number, stored in zip(flat[::2], flat[1::2], strict=True):
            created, content = _template_value(stored)
            versions.append((int(number), content, created))
        return archived == b"1", sorted(versions)

    def template_archive(self, name: str) -> bool:
        return bool(self._template_archive(keys=keys.template(name)))

    def template_names(self) -> list[str]:
        return [name.decode() for name in self.client.sscan_iter(keys.TEMPLATE_NAMES, count=1000)]

    def template_restore(self, name: str, versions: list[tuple[int, str, int]], archived: bool) -> bool:
        self.client.sadd(keys.TEMPLATE_NAMES, name)
        args: list[Any] = [int(bool(archived)), max(int(n) for n, _, _ in versions)]
        for number, content, created in versions:
            args += [int(number), f"{int(created)} {content}"]
        names = keys.template(name)
        (restored,) = self._durable(names[0], lambda pipe: self._template_restore(
            keys=names, args=args, client=pipe))
        return bool(restored)

    # -- the guards of one send in one operation (SPEC section 22) ----------------------

    def guards_admit(self, number: str, delay_key: str, reset_after_ms: int,
                     budget: BudgetAsk | None = None, circuit: CircuitAsk | None = None) -> GuardsAnswer:
        if not self._one_node():
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

    def _one_node(self) -> bool:
        # Every key of one send in one script (the guards; the record with its index):
        # one node only. A Redis Cluster spreads them over slots and keeps separate calls.
        return self.topology.kind != "cluster"

    @cached_property
    def _guards_script(self):
        return self.client.register_script(_GUARDS_SCRIPT)


def _template_value(stored: bytes) -> tuple[int, str]:
    created, _, content = stored.decode().partition(" ")
    return int(created), content


# -- message listing and overview (SPEC section 18) ---------------------------------------
#
# Sorted sets of message keys scored by the send's time (Unix ms), per owner under the
# hash tag {msgidx:<owner>} and for every owner under {msgidx}: by time, and by
# provider, template, receiver hash and status, so a filter walks only its own set.
# They are written by a separate call after the record's (a record and its index are
# on different slots), so a reader skips a member whose record has expired or whose
# status has moved on; entries a MESSAGE_TTL (and a day) older than a set's newest are
# trimmed at each write.
_INDEX_FUNCTION = """
local function index(names, member, score, keep, ttl, first_status, new_status, mode)
  if mode == 'status' and not redis.call('ZSCORE', names[1], member) then
    return 0  -- trimmed or never indexed: a status change brings back nothing
  end
  for i = 1, #names do
    if i >= first_status and i - first_status + 1 ~= new_status then
      redis.call('ZREM', names[i], member)
    elseif mode ~= 'status' or i >= first_status then
      redis.call('ZADD', names[i], score, member)
      -- Measured from the set's newest entry, not a clock: a provider's skewed dateEvent
      -- never makes a live record fall out of its sets.
      local newest = redis.call('ZREVRANGE', names[i], 0, 0, 'WITHSCORES')[2]
      redis.call('ZREMRANGEBYSCORE', names[i], '-inf', '(' .. (tonumber(newest) - keep))
      redis.call('PEXPIRE', names[i], ttl)
    end
  end
  return 1
end
"""
# KEYS: the sets; ARGV: member, score, keep, ttl, first status set, new status, mode.
_INDEX_SCRIPT = _INDEX_FUNCTION + """
return index(KEYS, ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
             tonumber(ARGV[6]), ARGV[7])
"""
# The create script, then, when it stored a new record, its listing index and due time in
# the same call (one node only: on a Redis Cluster these keys sit in other slots). KEYS:
# the create script's two, each index call's sets, the reconciler's due set. ARGV: the
# create script's five, the number of index calls, each call's key count and its seven
# index arguments, then the due time ('' for none) and the message key. Answers the
# create script's answer and a 4th item: 1 when the index was written, 0 when it failed
# (the record stands; only the listing misses it, as with separate calls).
_MESSAGE_CREATE_INDEXED_SCRIPT = _RULE + _ENQUEUE + _INDEX_FUNCTION + (
    "local function create()\n" + _MESSAGE_CREATE_BODY + "\nend\n") + """
local answer = create()
if answer[1] ~= 1 then
  return answer
end
local written, k, a = 1, 3, 7
for _ = 1, tonumber(ARGV[6]) do
  local count, names = tonumber(ARGV[a]), {}
  for j = 1, count do
    names[j] = KEYS[k + j - 1]
  end
  if not pcall(index, names, ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]),
               tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), ARGV[a + 7]) then
    written = 0
  end
  k, a = k + count, a + 8
end
if ARGV[a] ~= '' and not pcall(redis.call, 'ZADD', KEYS[k], ARGV[a], ARGV[a + 1]) then
  written = 0
end
answer[4] = written
return answer
"""
_SET_ONCE_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""
_INDEXED_STATUSES = model.ALL_STATUSES

# sms_service.status.model.schedule in Lua (ARGV[1] '' is never; ARGV[2] '' leaves lookedAt).
_SCHEDULE_SCRIPT = """
local existing = redis.call('GET', KEYS[1])
if not existing then
  return 0
end
local record = cjson.decode(existing)
if record.orphan then
  return 0
end
record.checkAt = ARGV[1] == '' and cjson.null or tonumber(ARGV[1])
if ARGV[2] ~= '' then
  record.lookedAt = tonumber(ARGV[2])
end
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return 1
"""

# sms_service.status.model.set_price in Lua: an orphan or a record with a price keeps it.
_PRICE_SCRIPT = """
local existing = redis.call('GET', KEYS[1])
if not existing then
  return false
end
local record = cjson.decode(existing)
if record.orphan or (record.price ~= nil and record.price ~= cjson.null) then
  return false
end
record.price = ARGV[1]
record.priceUnit = ARGV[2]
local encoded = cjson.encode(record)
redis.call('SET', KEYS[1], encoded, 'KEEPTTL')
return encoded
"""
_LIST_BATCH = 200
# Index entries outlive their records by this much (sent times are the provider's clock).
_INDEX_MARGIN_MS = 86_400_000


def _event_flag(answer: list[Any]) -> str:
    flag = answer[-1]
    return flag.decode() if isinstance(flag, bytes) else (flag or "")


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
    names = [keys.SUPPRESSIONS, keys.delay(delay_key)]
    if budget is not None:
        names += keys.budget(budget.key)
    if circuit is not None:
        names.append(keys.circuit(circuit.key))
    return names


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
