"""Storage for the commands that work on the stored data (`suppressions`, `templates`): STORAGE_URI alone.

They run beside the service, against its storage, and need none of its other settings:
no provider, no keys.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TextIO, TypeVar

from sms_service.config import storage_uri
from sms_service.exceptions import ConfigError, StorageUnavailable
from sms_service.storage import Storage, open_configured_storage

T = TypeVar("T")


def open_data_storage(env: Mapping[str, str] | None = None) -> Storage:
    """Open the service's storage as STORAGE_URI (or the state directory) names it; close it when done.

    Raises `ConfigError` naming the variable when the URI is malformed, when the storage
    cannot be opened or written, or when it is memory:// (a process's own, not the service's).
    """
    if storage_uri(env).startswith("memory://"):
        raise ConfigError("STORAGE_URI is memory://: this process's data is not the service's; point "
                          "STORAGE_URI at the service's sqlite:// file or redis://")
    return open_configured_storage(env)


def transfer(command: str, args: argparse.Namespace, export: Callable[[Storage, TextIO], int],
             take: Callable[[Storage, Iterable[str]], T], noun: str, *,
             newline: str | None = None, errors: tuple[type[Exception], ...] = ()) -> tuple[int, T | None]:
    """Run `command` ``export|import [FILE]`` against the service's storage (FILE '-' or none: stdio).

    An export writes with `export` and says how many `noun` it wrote; an import reads
    with `take`. Returns the exit status so far and the import's result (None when there
    was no import, or it failed). Every failure is one line on stderr: the storage
    unusable (naming the variable), the file unreadable, or `errors` raised by the reader.
    """
    try:
        storage = open_data_storage()
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 1, None
    try:
        if args.action == "export":
            if args.file in (None, "-"):
                count = export(storage, sys.stdout)
            else:
                with open(args.file, "w", newline=newline, encoding="utf-8") as out:
                    count = export(storage, out)
            print(f"exported {count} {noun}", file=sys.stderr)
            return 0, None
        if args.file in (None, "-"):
            return 0, take(storage, sys.stdin)
        with open(args.file, newline=newline, encoding="utf-8-sig") as lines:
            return 0, take(storage, lines)
    except (OSError, UnicodeDecodeError, *errors) as exc:
        print(f"{command} {args.action}: {exc}", file=sys.stderr)
        return 1, None
    except StorageUnavailable as exc:
        print(f"{command} {args.action}: {exc.message}", file=sys.stderr)
        return 1, None
    finally:
        storage.close()
