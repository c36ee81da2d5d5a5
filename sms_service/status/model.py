"""The normalised delivery status and the one rule that moves a message record.

``queued`` -> ``sent`` -> ``delivered`` | ``undelivered`` | ``failed``. The three last
are final and sticky: callbacks arrive out of order, and a late, older status never
moves a record out of a final state, nor back from ``sent`` to ``queued``; it is still
appended to ``history``. ``unknown`` (SPEC section 18) is the final status the service
gives a record no final report reached within MESSAGE_FINAL_AFTER: sticky against
``queued`` and ``sent``, but a real final report that comes later still replaces it.
The Redis backend runs the same rule in Lua (`storage/redis.py`); the conformance
suite holds the two equal.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

# What providers report (a plugin's StatusUpdate says one of these).
STATUSES = ("queued", "sent", "delivered", "undelivered", "failed")
UNKNOWN = "unknown"
# Every status a record can have, in the order answers list them.
ALL_STATUSES = (*STATUSES, UNKNOWN)
REPORTED_FINAL = frozenset({"delivered", "undelivered", "failed"})
FINAL = REPORTED_FINAL | {UNKNOWN}
RANK = {"queued": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2, UNKNOWN: 2}
# A record never grows without bound: a provider that repeats itself, or a long life of
# retries, keeps the first entries and still moves the status.
MAX_HISTORY = 32

Record = dict[str, Any]


def timestamp(when: dt.datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``, as in the receipt."""
    when = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def entry(status: str, provider_status: str, error_code: str | None, at: str) -> Record:
    """One history entry."""
    return {"status": status, "providerStatus": provider_status, "errorCode": error_code, "at": at}


def _same(a: Record, b: Record) -> bool:
    return all(a[name] == b[name] for name in ("status", "providerStatus", "errorCode"))


def apply_entry(record: Record, new: Record) -> bool:
    """Append `new` to the record's history and move its status by the sticky rule.

    An entry equal to one already in the history (a provider's retry) changes nothing.
    Returns whether the record changed.
    """
    history = record.setdefault("history", [])
    if any(_same(old, new) for old in history):
        return False
    if len(history) < MAX_HISTORY:
        history.append(dict(new))
    record["updatedAt"] = new["at"]
    current = record.get("status")
    if (current is None or (current not in FINAL and RANK[new["status"]] >= RANK[current])
            or (current == UNKNOWN and new["status"] in REPORTED_FINAL)):
        record["status"] = new["status"]
        record["providerStatus"] = new["providerStatus"]
        record["errorCode"] = new["errorCode"]
    return True


def merge(record: Record, orphan: Record) -> Record:
    """Fold an orphan's history (callbacks that came before the send's record) into `record`."""
    for old in orphan.get("history") or []:
        apply_entry(record, old)
    return record


def orphan_with(base: Record, new: Record) -> Record:
    """A new orphan: what the callback told of its message, and its first entry."""
    orphan = {**base, "orphan": True, "status": None, "providerStatus": None, "errorCode": None,
              "updatedAt": new["at"], "history": []}
    apply_entry(orphan, new)
    return orphan


def set_price(record: Record, price: str, unit: str) -> bool:
    """Give a record (never an orphan) its price unless it has one; tell whether it did."""
    if record.get("orphan") or record.get("price") is not None:
        return False
    record["price"], record["priceUnit"] = price, unit
    return True


_PRICE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
_CURRENCY = re.compile(r"[A-Z]{3}")


def clean_price(price: object, unit: object) -> tuple[str, str] | None:
    """A provider's price as records keep it: a positive decimal string (sign dropped) and an
    ISO 4217 code; None when either is missing or unreadable (a record then has no price)."""
    if not isinstance(price, str) or not isinstance(unit, str):
        return None
    text = price.strip().removeprefix("-").removeprefix("+")
    code = unit.strip().upper()
    if not _PRICE.fullmatch(text) or not _CURRENCY.fullmatch(code):
        return None
    return text, code


def schedule(record: Record, check_at_ms: float | None, looked_at_ms: float | None = None) -> None:
    """Set when the reconciler looks at `record` next (None: never), and when it last asked.

    Whole milliseconds, rounded down: Redis's cjson keeps 14 digits, which a fraction
    would round up past the moment asked for.
    """
    record["checkAt"] = None if check_at_ms is None else math.floor(check_at_ms)
    if looked_at_ms is not None:
        record["lookedAt"] = math.floor(looked_at_ms)


def is_due(record: Record, now_ms: float) -> bool:
    """Tell whether the reconciler should look at `record` (not final, its time come)."""
    at = record.get("checkAt")
    return (not record.get("orphan") and record.get("status") not in FINAL
            and isinstance(at, int | float) and at <= now_ms)
