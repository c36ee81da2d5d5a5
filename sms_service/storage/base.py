"""The storage interface: the atomic operations every backend implements alike.

A storage that cannot be reached raises `StorageUnavailable`, and callers refuse to
send (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import limits.errors
import redis

from sms_service.exceptions import StorageUnavailable

KEY_PREFIX = "sms-service"
T = TypeVar("T")


class Storage:
    """Guard state: the moving-window rate limit, receiver streaks, idempotency records."""

    def window_acquire(self, key: str, limit: int, window_s: int) -> float:
        """Count one hit in a moving window of `window_s` seconds holding at most `limit`.

        Returns 0 when the hit is admitted, else the seconds until the oldest hit leaves
        the window. Raises `StorageUnavailable`.
        """
        raise NotImplementedError

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        """Record an accepted message for `key` unless its delay has not passed.

        Returns 0 when accepted, else the milliseconds left to wait. Raises
        `StorageUnavailable`.
        """
        raise NotImplementedError

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        """Store `value` under `key` unless a live record exists; return that record if so."""
        raise NotImplementedError

    def record_put(self, key: str, value: str, ttl_ms: int) -> None:
        """Store `value` under `key`, replacing any record."""
        raise NotImplementedError

    def record_delete(self, key: str) -> None:
        """Forget the record under `key`."""
        raise NotImplementedError

    def ping(self) -> bool:
        """Tell whether the storage answers."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def guarded(self, call: Callable[[], T]) -> T:
        """Run a storage operation, turning any storage failure into `StorageUnavailable`."""
        try:
            return call()
        except (redis.RedisError, limits.errors.StorageError, OSError) as exc:
            raise StorageUnavailable(
                f"shared storage is unavailable ({type(exc).__name__}); nothing was sent"
            ) from None
