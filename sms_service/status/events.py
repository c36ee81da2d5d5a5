"""What a status webhook event holds, and when a record's change makes one (SPEC section 11).

The storages apply these rules inside their atomic operations (the Redis backend in Lua,
`storage/redis.py`); the conformance suite holds them equal.
"""

from __future__ import annotations

import uuid
from typing import Any

from sms_service.status.model import Record

# A record keeps its last failures; a receiver down for days does not grow it forever.
MAX_WEBHOOK_FAILURES = 8
# Fields of a record an event never carries: whose API key sent it is ours alone.
PRIVATE_FIELDS = ("owner",)


def new_event_id() -> str:
    """A fresh `webhook-id`: fixed when the event is created, the same on every retry."""
    return f"evt_{uuid.uuid4().hex}"


def makes_event(before: str | None, record: Record) -> bool:
    """Tell whether an update from status `before` to `record` is a change a receiver hears of.

    An orphan (callbacks for a send whose record is not stored yet) waits for its record:
    the merge at the send makes the event then.
    """
    return not record.get("orphan") and record.get("status") != before


def snapshot(record: Record) -> Record:
    """The record as an event carries it: a copy without the private fields."""
    return {name: value for name, value in record.items() if name not in PRIVATE_FIELDS}


def dropped_failure(event_id: str, status: object, attempts: int, reason: str, at: str) -> dict[str, Any]:
    """The ``webhookFailures`` entry of an event the outbox dropped unsent: `reason` is
    ``expired`` (its STATUS_WEBHOOK_RETRY_FOR passed) or ``backlog`` (the outbox was full)."""
    return {"webhookId": event_id, "status": status, "attempts": attempts, "lastResult": None,
            "reason": reason, "at": at}


def add_failure(record: Record, failure: dict[str, Any]) -> None:
    """Append an exhausted event's `failure` to the record, keeping the last few."""
    failures = record.get("webhookFailures")
    if not isinstance(failures, list):
        failures = record["webhookFailures"] = []
    failures.append(dict(failure))
    del failures[:-MAX_WEBHOOK_FAILURES]
