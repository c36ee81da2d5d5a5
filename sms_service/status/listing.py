"""What the message listing and its overview read from a record (SPEC section 18), for every storage.

The storages keep an index beside the records (SQLite: a table kept by triggers; Redis:
sorted sets per owner); what each index entry holds, how a filter matches, the opaque
cursor and the overview's sums are decided here once, so every backend answers alike.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sms_service import phone
from sms_service.status.model import Record

if TYPE_CHECKING:
    from sms_service.storage.base import Storage

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
# The receiver hash's key is made once per deployment and kept in STORAGE_URI under this name.
RECEIVER_KEY_NAME = "receiver-hash-key"
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Filters:
    """What a listing keeps: each field None matches every record."""

    status: str | None = None
    provider: str | None = None
    template: str | None = None
    since_ms: float | None = None
    until_ms: float | None = None
    receiver_hash: str | None = None

    def matches(self, record: Record) -> bool:
        """Tell whether `record` (a stored record, not an orphan) passes every filter."""
        if record.get("orphan"):
            return False
        at = sent_ms(record)
        return ((self.status is None or record.get("status") == self.status)
                and (self.provider is None or record.get("provider") == self.provider)
                and (self.template is None or template_name(record) == self.template)
                and (self.receiver_hash is None or record.get("receiverHash") == self.receiver_hash)
                and (self.since_ms is None or at >= self.since_ms)
                and (self.until_ms is None or at < self.until_ms))


def sent_ms(record: Record) -> int:
    """When the message was accepted (its dateEvent), in Unix milliseconds; 0 when unreadable."""
    try:
        return round(dt.datetime.fromisoformat(str(record.get("dateEvent"))).timestamp() * 1000)
    except ValueError:
        return 0


def template_name(record: Record) -> str | None:
    """The name of the template a record was sent from; None for a plain body (or no field)."""
    template = record.get("template")
    name = template.get("name") if isinstance(template, dict) else None
    return name if isinstance(name, str) else None


def receiver_hash(key: bytes, number: str) -> str:
    """The keyed hash of a full E.164 number that records keep beside its masked form."""
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()


# -- the cursor: where the last page ended (its time and key), opaque to the caller ------


def encode_cursor(at_ms: float, key: str) -> str:
    """The cursor of the page after the record `key` sent at `at_ms`."""
    raw = json.dumps([int(at_ms), key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The `(at_ms, key)` of a cursor; raises ValueError when it is not one of ours."""
    try:
        at, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("not a cursor of this listing") from None
    if not isinstance(at, int) or not isinstance(key, str):
        raise ValueError("not a cursor of this listing")
    return at, key


def before_cursor(at_ms: float, key: str, cursor: tuple[int, str] | None) -> bool:
    """Tell whether `(at_ms, key)` comes after the cursor in newest-first order."""
    return cursor is None or at_ms < cursor[0] or (at_ms == cursor[0] and key < cursor[1])


# -- the overview of the last hours (the operator console) ---------------------------


def stats_of(records: list[Record]) -> dict[str, Any]:
    """Counts by status, provider, country, error code and hour; segments and spend per country.

    `byHour` keys are the start of each hour (Unix ms, as a string) of the sends' times.

    Spend is summed per currency, as exact decimal strings.
    """
    by: dict[str, dict[str, int]] = {"status": {}, "provider": {}, "country": {}, "errorCode": {}}
    segments: dict[str, int] = {}
    spend: dict[str, dict[str, Decimal]] = {}
    by_hour: dict[str, int] = {}
    total = 0
    for record in records:
        if record.get("orphan"):
            continue
        total += 1
        hour = str(sent_ms(record) // HOUR_MS * HOUR_MS)
        by_hour[hour] = by_hour.get(hour, 0) + 1
        country = record.get("country") or "unknown"
        for field, value in (("status", record.get("status")), ("provider", record.get("provider")),
                             ("country", country), ("errorCode", record.get("errorCode"))):
            if value is not None:
                by[field][str(value)] = by[field].get(str(value), 0) + 1
        try:
            segments[country] = segments.get(country, 0) + int(record.get("numSegments") or 0)
        except ValueError:
            pass
        price, unit = record.get("price"), record.get("priceUnit")
        if price is not None and unit:
            try:
                amount = Decimal(str(price))
            except InvalidOperation:
                continue
            per_currency = spend.setdefault(country, {})
            per_currency[unit] = per_currency.get(unit, Decimal(0)) + amount
    return {
        "total": total,
        "byStatus": by["status"], "byProvider": by["provider"], "byCountry": by["country"],
        "byErrorCode": by["errorCode"], "segmentsByCountry": segments,
        "byHour": by_hour,
        "spendByCountry": {country: {unit: str(amount) for unit, amount in units.items()}
                           for country, units in spend.items()},
    }


class ReceiverKey:
    """The deployment's key of the receiver hash: created once in STORAGE_URI, read once per worker."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def load(self) -> bytes:
        """The key: made (atomically, if absent) and read at start-up; raises `StorageUnavailable`."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    stored = self.storage.guarded(
                        lambda: self.storage.secret_once(RECEIVER_KEY_NAME, secrets.token_hex(32)))
                    self._key = bytes.fromhex(stored)
        return self._key

    def hash(self, number: str) -> str:
        """The keyed hash of a full E.164 `number`; raises `StorageUnavailable` without the key."""
        # Two spellings of one number are one receiver, as the guards count them.
        return receiver_hash(self.load(), phone.canonical(number))
