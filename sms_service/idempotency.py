"""Idempotent sends: the same Idempotency-Key and payload answer once, and send once.

Records live in the guards' storage, so a retry that lands on another worker or replica
finds them. A record holds hashes and the receipt, never the message body.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass

from sms_service.exceptions import IdempotencyConflict, IdempotencyKeyInvalid, IdempotencyMismatch
from sms_service.storage import Storage

KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class StoredAnswer:
    """An answer to replay: status, JSON body and Retry-After."""

    status: int
    body: dict[str, str]
    retry_after: int | None = None


class Idempotency:
    """Reserve, complete or release the record of one Idempotency-Key."""

    def __init__(self, storage: Storage, ttl_s: float, pending_ttl_s: float) -> None:
        self.storage = storage
        self.ttl_ms = math.ceil(ttl_s * 1000)
        # A pending record outlives any real request, yet frees the key if a worker dies.
        self.pending_ttl_ms = math.ceil(pending_ttl_s * 1000)

    @staticmethod
    def check_key(header: str) -> str:
        """Validate the header value; raises `IdempotencyKeyInvalid`."""
        if not KEY_PATTERN.fullmatch(header):
            raise IdempotencyKeyInvalid("Idempotency-Key must be 1 to 255 printable ASCII characters")
        return header

    def begin(self, key: str, scope: str, payload: dict[str, str]) -> StoredAnswer | None:
        """Reserve `key` for this payload, or return the answer already stored for it.

        Raises `IdempotencyConflict` (in flight), `IdempotencyMismatch` (other payload)
        or `StorageUnavailable`.
        """
        name, fingerprint = self._name(key, scope), _fingerprint(payload)
        pending = json.dumps({"state": "pending", "fingerprint": fingerprint})
        existing = self.storage.guarded(
            lambda: self.storage.record_reserve(name, pending, self.pending_ttl_ms)
        )
        if existing is None:
            return None
        record = json.loads(existing)
        if record["fingerprint"] != fingerprint:
            raise IdempotencyMismatch("Idempotency-Key was already used with a different request")
        if record["state"] == "pending":
            raise IdempotencyConflict(
                "a request with this Idempotency-Key is still in progress", retry_after=1
            )
        return StoredAnswer(record["status"], record["body"], record.get("retry_after"))

    def complete(self, key: str, scope: str, payload: dict[str, str], answer: StoredAnswer) -> None:
        """Store the final answer of the request that reserved `key`."""
        record = json.dumps({"state": "done", "fingerprint": _fingerprint(payload), "status": answer.status,
                             "body": answer.body, "retry_after": answer.retry_after})
        self.storage.guarded(lambda: self.storage.record_put(self._name(key, scope), record, self.ttl_ms))

    def release(self, key: str, scope: str) -> None:
        """Free `key` after a request that provably sent nothing, so it may be retried."""
        self.storage.guarded(lambda: self.storage.record_delete(self._name(key, scope)))

    @staticmethod
    def _name(key: str, scope: str) -> str:
        # Scoped by API key, so two callers cannot see or block each other's records.
        return "idem:" + hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()


def _fingerprint(payload: dict[str, str]) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
