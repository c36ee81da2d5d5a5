"""Shared state of the guards and records, chosen by STORAGE_URI: one module per backend.

`sqlite:///path` (the default: one host, any number of workers, kept across restarts),
`memory://` (one process: tests and trials) and `redis://` (several hosts; also through
Sentinel or on a Cluster) implement the same operations with the same semantics
(`base.Storage`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

# Not `import redis`: importing the submodule sms_service.storage.redis below rebinds that
# name in this package's namespace, where `redis.RedisError` then names nothing.
from redis.exceptions import RedisClusterException, RedisError

from sms_service import config
from sms_service.config import Settings
from sms_service.exceptions import ConfigError
from sms_service.storage.base import Storage
from sms_service.storage.memory import MemoryStorage
from sms_service.storage.redis import RedisStorage
from sms_service.storage.sqlite import SqliteStorage

__all__ = [
    "MemoryStorage", "RedisStorage", "SqliteStorage", "Storage",
    "check_storage", "connect_storage", "open_configured_storage", "open_storage", "shown_uri", "sqlite_path",
    "state_location",
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
    """Open the storage of `settings`; raises `ConfigError` naming STORAGE_URI or STATE_DIR when it cannot."""
    if settings.redis_topology is not None:  # read once, by the configuration
        try:
            return RedisStorage(settings.redis_topology)
        except RedisError as exc:  # unreachable is found by the probe; a refusal is here
            raise ConfigError(f"STORAGE_URI: Redis refused the start-up key upgrade "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return _opened(settings.storage_uri, settings.storage_variable)


# -- start-up checks and data commands (SPEC section 21) --------------------------------

# A key of its own, written and deleted again: the storage must take writes, not only answer.
_PROBE_KEY = "startup-check:"
_PROBE_TTL_MS = 60_000


def open_configured_storage(env: Mapping[str, str] | None = None) -> Storage:
    """Open the storage that STORAGE_URI (or the state directory) names, from nothing else.

    For the commands that work on the stored data: they need no provider. Raises
    `ConfigError` naming the variable when the URI is malformed or the storage cannot be
    opened or written.
    """
    env = os.environ if env is None else env
    storage = _opened(config.storage_uri(env), config.storage_variable(env))
    try:
        _probe(storage, config.storage_uri(env), config.storage_variable(env))
    except BaseException:
        storage.close()
        raise
    return storage


def check_storage(settings: Settings) -> str:
    """Open, write and close the storage of `settings`, as start-up needs it; returns where the state lives.

    Raises `ConfigError` naming STORAGE_URI (or STATE_DIR, for the default file) when the
    storage cannot be opened, reached or written.
    """
    storage = connect_storage(settings)
    try:
        _probe(storage, settings.storage_uri, settings.storage_variable)
    finally:
        storage.close()
    return state_location(settings.storage_uri)


def state_location(uri: str) -> str:
    """Where the state of `uri` lives, in words, with no password."""
    if uri.startswith("memory://"):
        return "in each process's memory (memory://): lost at every restart"
    if uri.startswith(SQLITE_PREFIX):
        return f"in the SQLite file {os.path.abspath(sqlite_path(uri))}"
    return f"in the Redis at {shown_uri(uri)}"


def shown_uri(uri: str) -> str:
    """`uri` fit for a log line: any password replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _opened(uri: str, variable: str) -> Storage:
    try:
        return open_storage(uri)
    except (OSError, sqlite3.Error) as exc:
        raise _unusable(uri, variable, exc) from None


def _probe(storage: Storage, uri: str, variable: str) -> None:
    key = _PROBE_KEY + os.urandom(8).hex()
    try:
        storage.record_reserve(key, "1", _PROBE_TTL_MS)
        storage.record_delete(key, "1")
    except (OSError, sqlite3.Error, RedisError, RedisClusterException) as exc:
        raise _unusable(uri, variable, exc) from None


def _unusable(uri: str, variable: str, exc: BaseException) -> ConfigError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    # redis-py's Sentinel errors carry the repr of a whole client: keep the words only.
    reason = reason.split(" : <", 1)[0][:200]
    if uri.startswith(SQLITE_PREFIX):
        path = os.path.abspath(sqlite_path(uri))
        folder = os.path.dirname(path)
        if os.path.exists(folder) and not os.path.isdir(folder):
            reason = f"{folder} is not a folder"
        if type(exc) is sqlite3.DatabaseError:  # opened, but not a file this version reads (its schema)
            where = "STORAGE_URI names the file"
            if variable == "STATE_DIR":
                where = "STATE_DIR holds the state file"
            return ConfigError(f"{where} {path}, which this sms-service cannot use: {reason}")
        if variable == "STATE_DIR":
            return ConfigError(f"STATE_DIR cannot hold the state file {path} ({reason}): point STATE_DIR "
                               "at a folder this user can write, or set STORAGE_URI")
        return ConfigError(f"STORAGE_URI {uri} cannot be opened and written ({reason}): point it at a file "
                           "in a folder this user can write")
    if uri.startswith("memory://"):  # memory cannot fail; kept for completeness of the message
        return ConfigError(f"STORAGE_URI memory:// failed ({reason})")
    return ConfigError(f"STORAGE_URI {shown_uri(uri)} cannot be reached or written ({type(exc).__name__}: "
                       f"{reason}): start that Redis, or point STORAGE_URI at one that runs")
