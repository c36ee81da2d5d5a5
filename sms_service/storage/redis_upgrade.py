"""The one-time upgrade of a Redis written by sms-service before the hash-tagged key scheme.

Version 1 named keys `sms-service:<kind>:<id>` and kept the webhook outbox in three global
keys. A plain or Sentinel-managed Redis (one primary: any keys can meet in one script
there) is upgraded once, at the first start that reaches it: each key is renamed (TTL
kept), the suppression list merged, and each outbox event moved into its message's slot
and indexed with its due and creation times. Every step is idempotent and the marker is
written last, so workers starting together, or a start that dies half-way, lose nothing.
Stop the old version before starting this one: a process of the old version would keep
writing the old names.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from sms_service.storage import redis_keys as keys

log = logging.getLogger(__name__)

# KEYS: old hash, new hash. A number on both lists keeps its first (new-list) entry.
_MERGE_SUPPRESSIONS = """
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  redis.call('HSETNX', KEYS[2], entries[i], entries[i + 1])
end
redis.call('DEL', KEYS[1])
return #entries / 2
"""

# KEYS: old event hash, old due, old created, new event hash, index (due, created,
# messages, leases). ARGV: event id, message key, event TTL.
_MOVE_EVENT = """
local fields = redis.call('HMGET', KEYS[1], 'record', 'created', 'attempts')
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
local created = redis.call('ZSCORE', KEYS[3], ARGV[1])
if fields[1] then
  redis.call('HSET', KEYS[4], 'record', fields[1], 'created', fields[2] or '', 'attempts', fields[3] or 0)
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
  redis.call('HSET', KEYS[7], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[5], due or 0, ARGV[1])
  redis.call('ZADD', KEYS[6], created or fields[2] or 0, ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1])
return fields[1] and 1 or 0
"""

EVENT_TTL_MS = 8 * 86_400_000


def upgrade_key_scheme(client: Any) -> int:
    """Upgrade the version 1 keys of `client`'s Redis, once; returns how many keys moved.

    Raises `redis.RedisError` (the next start, or call, tries again).
    """
    if client.get(keys.SCHEME) == keys.SCHEME_VERSION.encode():
        return 0
    moved = 0
    old_prefix = (keys.P + ":").encode()
    for name in client.scan_iter(match=keys.P.encode() + b":*", count=1000):
        new = _new_name(name)
        if new is None or not name.startswith(old_prefix):
            continue
        try:
            if not client.renamenx(name, new):
                client.delete(name)  # a newer write under the new name already won
            moved += 1
        except redis.ResponseError:
            pass  # renamed by a worker starting beside this one
    if client.exists(keys.LEGACY.SUPPRESSIONS):
        moved += int(client.eval(_MERGE_SUPPRESSIONS, 2, keys.LEGACY.SUPPRESSIONS, keys.SUPPRESSIONS))
    moved += _move_outbox(client)
    client.set(keys.SCHEME, keys.SCHEME_VERSION)
    if moved:
        log.warning("Redis keys upgraded to the hash-tagged scheme (Sentinel and Cluster ready)",
                    extra={"keys": moved})
    return moved


def _new_name(name: bytes) -> bytes | None:
    text = name.decode("latin-1")  # any bytes, and back
    for prefix, new in keys.LEGACY.PREFIXES.items():
        if text.startswith(prefix):
            return new(text[len(prefix):]).encode("latin-1")
    if text.startswith(keys.LEGACY.BUDGET):
        rest = text[len(keys.LEGACY.BUDGET):]
        if rest.endswith("}:total"):
            return keys.budget(rest[:-len("}:total")])[1].encode("latin-1")
        if rest.endswith("}"):
            return keys.budget(rest[:-1])[0].encode("latin-1")
    return None


def _move_outbox(client: Any) -> int:
    moved = 0
    message_prefix = b"sms-service:message:"
    while True:
        ids = client.zrange(keys.LEGACY.OUTBOX_DUE, 0, 99)
        if not ids:
            break
        for event_id in ids:
            old_hash = keys.LEGACY.OUTBOX_EVENT.encode() + event_id
            message_key = (client.hget(old_hash, "key") or b"").removeprefix(message_prefix)
            text_id, text_key = event_id.decode("latin-1"), message_key.decode("latin-1")
            moved += int(client.eval(
                _MOVE_EVENT, 8, old_hash, keys.LEGACY.OUTBOX_DUE, keys.LEGACY.OUTBOX_CREATED,
                keys.message_event(text_key, text_id).encode("latin-1"), *keys.outbox(),
                event_id, message_key, EVENT_TTL_MS))
    client.delete(keys.LEGACY.OUTBOX_CREATED)
    return moved
