"""Shared state of the guards and records, chosen by STORAGE_URI: one module per backend."""

from __future__ import annotations

from sms_service.storage.base import Storage
from sms_service.storage.memory import MemoryStorage
from sms_service.storage.redis import RedisStorage

__all__ = ["MemoryStorage", "RedisStorage", "Storage", "open_storage"]


def open_storage(uri: str) -> Storage:
    """Build the storage for a validated STORAGE_URI (no connection is made yet)."""
    return MemoryStorage() if uri.startswith("memory://") else RedisStorage(uri)
