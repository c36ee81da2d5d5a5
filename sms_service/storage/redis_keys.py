"""Redis key names: the one place that writes them, one hash tag per entity.

Every key of one entity shares the hash tag `{<kind>:<id>}`, so the entity lives in one
Redis Cluster slot and each script or transaction over it runs on a cluster as on one
node. A script is given every key it touches (never a name built inside Lua). Keys of
different entities never meet in one call: the webhook outbox index (`{outbox}`) is
updated by calls of its own, see `RedisStorage` for how nothing is lost between them.

A user part containing `}` ends the tag early, but at the same place in every key of
that entity, so they still share one slot.

Before this scheme (version 1) keys were `sms-service:<kind>:<id>` and the outbox lived
in three global keys; `LEGACY` names them for the one-time upgrade.
"""

from __future__ import annotations

from sms_service.storage.base import KEY_PREFIX

P = KEY_PREFIX


def window(key: str) -> str:
    """The admitted hits of moving window `key`."""
    return f"{P}:{{window:{key}}}"


def delay(key: str) -> str:
    """The exponential-delay streak of receiver `key`."""
    return f"{P}:{{delay:{key}}}"


def record(key: str) -> str:
    """An idempotency record."""
    return f"{P}:{{record:{key}}}"


def message(key: str) -> str:
    """A message record (or orphan)."""
    return f"{P}:{{msg:{key}}}"


def message_event(key: str, event_id: str) -> str:
    """A webhook event of message `key`: in the message's slot, written with the record."""
    return f"{P}:{{msg:{key}}}:event:{event_id}"


def budget(key: str) -> list[str]:
    """A segment budget window: its entries, then their running total."""
    return [f"{P}:{{budget:{key}}}", f"{P}:{{budget:{key}}}:total"]


def circuit(key: str) -> str:
    """A provider's circuit breaker."""
    return f"{P}:{{circuit:{key}}}"


def message_index(owner: str | None) -> str:
    """The hash tag of the listing index of `owner`'s records (None: every owner's); the
    index's keys are this name with a suffix (``:by-time``, ...)."""
    return f"{P}:{{msgidx}}" if owner is None else f"{P}:{{msgidx:{owner}}}"


def secret(name: str) -> str:
    """A deployment secret made once (the receiver filter's key)."""
    return f"{P}:{{secret:{name}}}"


def template(name: str) -> list[str]:
    """A template: its meta hash (latest number, archived flag), then its versions hash."""
    return [f"{P}:{{tpl:{name}}}:meta", f"{P}:{{tpl:{name}}}:versions"]


# The names of the templates: an index spanning templates, so a key (and a call) of its
# own, written before a put (a name may dangle, never go missing).
TEMPLATE_NAMES = f"{P}:{{templates}}:names"

# The reconciler's due set: message keys by checkAt, under a hash tag of its own.
RECONCILE_DUE = f"{P}:{{reconcile}}:due"

# The suppression list is one hash: one slot, read by one HGET, exported by HSCAN.
SUPPRESSIONS = f"{P}:{{suppressions}}"

# The outbox index, all in the slot of `{outbox}`: event ids by due time (claims) and by
# creation (stats), the message key of each id, and the lease of each claimed id.
OUTBOX_DUE = f"{P}:{{outbox}}:due"
OUTBOX_CREATED = f"{P}:{{outbox}}:created"
OUTBOX_MESSAGES = f"{P}:{{outbox}}:messages"
OUTBOX_LEASES = f"{P}:{{outbox}}:leases"


def outbox() -> list[str]:
    """The outbox index keys, in the order the outbox scripts take them."""
    return [OUTBOX_DUE, OUTBOX_CREATED, OUTBOX_MESSAGES, OUTBOX_LEASES]


# Which key scheme a plain or Sentinel-managed Redis holds (absent: version 1 or empty).
SCHEME = f"{P}:{{meta}}:key-scheme"
SCHEME_VERSION = "2"


class LEGACY:
    """The version 1 names, read only by the one-time upgrade."""

    PREFIXES = {  # old prefix -> the function naming the new key
        f"{P}:window:": window,
        f"{P}:delay:": delay,
        f"{P}:record:": record,
        f"{P}:message:": message,
        f"{P}:circuit:": circuit,
    }
    BUDGET = f"{P}:budget:{{"  # sms-service:budget:{US} and sms-service:budget:{US}:total
    SUPPRESSIONS = f"{P}:suppressions"
    OUTBOX_DUE = f"{P}:webhooks:due"
    OUTBOX_CREATED = f"{P}:webhooks:created"
    OUTBOX_EVENT = f"{P}:webhook:"
