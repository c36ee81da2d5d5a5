"""Shared state of the guards and records, chosen by STORAGE_URI: one module per backend.

`sqlite:///path` (the default: one host, any number of workers, kept across restarts),
`memory://` (one process: tests and trials) and `redis://` (several hosts; also through
Sentinel or on a Cluster) implement the same operations with the same semantics
(`base.Storage`).
"""

from __future__ import annotations

import sqlite3

import redis

from sms_service.config import Settings
from sms_service.exceptions import ConfigError
from sms_service.storage.base import Storage
from sms_service.storage.memory import MemoryStorage
from sms_service.storage.redis import RedisStorage
from sms_service.storage.sqlite import SqliteStorage

__all__ = [
    "MemoryStorage", "RedisStorage", "SqliteStorage", "Storage",
    "connect_storage", "open_storage", "sqlite_path",
]

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> str:
    """The file of a ``sqlite:///path`` URI: ``sqlite:////abs/file.db`` is absolute,
    ``sqlite:///file.db`` relative to the working directory (as SQLAlchemy reads them)."""
    return uri[len(SQLITE_PREFIX):]


def open_storage(uri: str) -> Storage:
    """Build the storage for a validated STORAGE_URI.

    Redis connects on first use; an SQLite file is created and opened now, raising
    `OSError` or `sqlite3.Error` when it cannot be.
    """
    if uri.startswith("memory://"):
        return MemoryStorage()
    if uri.startswith(SQLITE_PREFIX):
        return SqliteStorage(sqlite_path(uri))
    return RedisStorage(uri)


def connect_storage(settings: Settings) -> Storage:
    """Open the storage of `settings`; raises `ConfigError` naming STORAGE_URI when it cannot."""
    if settings.redis_topology is not None:  # read once, by the configuration
        try:
            return RedisStorage(settings.redis_topology)
        except redis.RedisError as exc:  # unreachable is fine (fail closed); a refusal is not
            raise ConfigError(f"STORAGE_URI: Redis refused the start-up key upgrade "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        return open_storage(settings.storage_uri)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"STORAGE_URI {settings.storage_uri} cannot be opened ({reason}); point STATE_DIR "
            "or STORAGE_URI at a writable place"
        ) from None
