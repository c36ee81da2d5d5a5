"""Idempotent sends: the same Idempotency-Key and payload answer once, and send once.

Records live in the guards' storage, so a retry that lands on another worker or replica
finds them. A record holds hashes and the receipt, never the message body nor a
template's personalisation. The request's fingerprint is an HMAC keyed by the caller's
Idempotency-Key (which the record's name holds only hashed): a plain hash of a request
whose one unknown is a six-digit code would give the code back to anyone who reads the
storage, in a million guesses.

A key is reserved by a *pending* record that carries a random nonce, and it stays
reserved for the whole IDEMPOTENCY_TTL: it never silently becomes free, even when the
request that holds it dies. Only that request may settle it (compare-and-set on the
record it wrote): with its answer, or by freeing it when provably nothing was sent. A
retry that finds a pending record older than any live request could be learns that the
outcome is unknown, and sends nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from sms_service.errors import error_body
from sms_service.exceptions import (
    IdempotencyConflict,
    IdempotencyKeyInvalid,
    IdempotencyMismatch,
    StorageUnavailable,
)
from sms_service.storage import Storage

KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")

@dataclass(frozen=True)
class StoredAnswer:
    """An answer to replay: status, JSON body and Retry-After."""

    status: int
    body: dict[str, str]
    retry_after: int | None = None


# What a retry hears when the request that holds its key cannot be alive any more.
OUTCOME_UNKNOWN = StoredAnswer(504, error_body(504, (
    "the first request with this Idempotency-Key did not finish, so whether its SMS was sent "
    "is unknown; nothing was sent now, and this key will not send again"
)))


@dataclass(frozen=True)
class Reservation:
    """The pending record one request holds on its key, and what it was for."""

    name: str
    pending: str
    fingerprint: str


class Idempotency:
    """Reserve, complete or release the record of one Idempotency-Key."""

    def __init__(self, storage: Storage, ttl_s: float, stale_after_s: float) -> None:
        self.storage = storage
        self.ttl_ms = math.ceil(ttl_s * 1000)
        # A pending record older than this cannot belong to a live request any more: the
        # whole request, provider call included, is bounded well below it.
        self.stale_after_s = stale_after_s

    @staticmethod
    def check_key(header: str) -> str:
        """Validate the header value; raises `IdempotencyKeyInvalid`."""
        if not KEY_PATTERN.fullmatch(header):
            raise IdempotencyKeyInvalid("Idempotency-Key must be 1 to 255 printable ASCII characters")
        return header

    def begin(self, key: str, scope: str, payload: dict[str, Any]) -> Reservation | StoredAnswer:
        """Reserve `key` for this payload, or return the answer already known for it.

        Raises `IdempotencyConflict` (still in flight), `IdempotencyMismatch` (another
        payload) or `StorageUnavailable`.
        """
        name, fingerprint = self._name(key, scope), _fingerprint(payload, f"{scope}\x00{key}")
        pending = json.dumps({"state": "pending", "fingerprint": fingerprint,
                              "nonce": os.urandom(12).hex(), "started": time.time()})
        try:
            existing = self.storage.guarded(lambda: self.storage.record_reserve(name, pending, self.ttl_ms))
        except StorageUnavailable:
            # The reply was lost, not necessarily the write: take back what may be ours,
            # so that a retry is not blocked by a request that never ran.
            self._try(lambda: self.storage.record_delete(name, pending))
            raise
        if existing is None:
            return Reservation(name, pending, fingerprint)
        record = json.loads(existing)
        if record["fingerprint"] != fingerprint and record["fingerprint"] != _legacy_fingerprint(payload):
            raise IdempotencyMismatch("Idempotency-Key was already used with a different request")
        if record["state"] == "pending":
            if time.time() - record.get("started", 0) < self.stale_after_s:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still in progress", retry_after=1
                )
            return OUTCOME_UNKNOWN
        return StoredAnswer(record["status"], record["body"], record.get("retry_after"))

    def complete(self, reservation: Reservation, answer: StoredAnswer) -> bool:
        """Store the final answer, only while the key still holds this request's record.

        Returns whether it was stored. Raises `StorageUnavailable`.
        """
        record = json.dumps({"state": "done", "fingerprint": reservation.fingerprint, "status": answer.status,
                             "body": answer.body, "retry_after": answer.retry_after})
        return self.storage.guarded(
            lambda: self.storage.record_swap(reservation.name, reservation.pending, record, self.ttl_ms)
        )

    def release(self, reservation: Reservation) -> bool:
        """Free the key after a request that provably sent nothing, so it may be retried.

        Only this request's own pending record is removed. Raises `StorageUnavailable`.
        """
        return self.storage.guarded(lambda: self.storage.record_delete(reservation.name, reservation.pending))

    def _try(self, call) -> None:
        try:
            self.storage.guarded(call)
        except StorageUnavailable:
            pass  # best effort: the caller reports the first failure

    @staticmethod
    def _name(key: str, scope: str) -> str:
        # Scoped by the caller's identity, so two callers cannot see or block each other's records.
        return "idem:" + hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()


def _canonical(payload: dict[str, Any]) -> bytes:
    # The request as sent: a template's version is in it only when asked for, and the
    # personalisation as given (keys as spelled).
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def _fingerprint(payload: dict[str, Any], secret: str) -> str:
    return hmac.new(secret.encode("utf-8", "surrogatepass"), _canonical(payload), hashlib.sha256).hexdigest()


def _legacy_fingerprint(payload: dict[str, Any]) -> str:
    # What records written before the keyed fingerprint hold (kept IDEMPOTENCY_TTL at most):
    # a retry across the upgrade still replays instead of hearing 422.
    return hashlib.sha256(_canonical(payload)).hexdigest()
